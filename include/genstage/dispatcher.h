// SPDX-License-Identifier: MIT
/*
 * Dispatchers: how a producer spreads its events over its subscriptions.
 * Pass one as gs_stage_opts.dispatcher; the zero value is the demand
 * dispatcher.
 *
 * Where we differ from GenStage, and why:
 * - Demand: GenStage's `shuffle_demands_on_first_dispatch` and
 *   `max_demand` options are not offered: batches already go to the
 *   subscription with the most pending demand, which is what both tune.
 * - Partition: gs_stage_opts.buffer_size (per partition, default 10000) is
 *   where a partition's queue stops the demand: while a queue holds that
 *   many, the producer passes no new demand to handle_demand, so a slow
 *   partition slows the producer instead of growing memory without limit
 *   (GenStage #282). It is not a cap: events the producer emits anyway
 *   (beyond its demand, or from handle_info or handle_cast with no demand)
 *   still wait in the queue, and buffer_keep does not apply; none is
 *   dropped for back-pressure, so a producer that emits without demand
 *   bounds its own memory. A queue that cannot grow for lack of memory
 *   drops what it could not take (counted, logged, to event_free) and the
 *   producer stops with GS_ENOMEM, as one whose buffer cannot grow does. A
 *   partition is held by one subscription,
 *   or shared by a group (gs_sub_opts.share_partition, GenStage #320).
 * - Partition demand is passed on by level, not by increment: the producer
 *   is asked for the unmet demand of the partitions whose queues are empty,
 *   and a partition with a queue asks again once it has emptied. Since the
 *   hash, not the asker, decides where an event goes, an increment asked
 *   for one partition could be spent on another's events and leave it
 *   starving.
 * - A cancelled partition's queue is kept for the partition's next
 *   subscriber, which receives it first: events are never stranded
 *   (GenStage #311). They are dropped (counted, to event_free) only when
 *   the producer stops.
 * - A hash that returns a partition out of range (neither below n nor
 *   GS_DISCARD) is a bug in the hash: the event is dropped as a discarded
 *   one is (counted, passed to event_free) and a warning is logged for
 *   each batch where it happens, where GenStage would crash the producer.
 *   Events the hash discards (GS_DISCARD) are its choice, not a loss:
 *   counted and passed to event_free, but not logged.
 * - Partitions are numbered 0..n-1 (GenStage also takes a list of names),
 *   and the hash picks a partition without rewriting the event (GenStage's
 *   returns {event, partition}): change events in a stage before it.
 */
#ifndef GENSTAGE_DISPATCHER_H
#define GENSTAGE_DISPATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gs_dispatcher_kind {
	GS_DISPATCH_DEMAND = 0,
	GS_DISPATCH_BROADCAST,
	GS_DISPATCH_PARTITION,
} gs_dispatcher_kind;

/* Returned by a partition hash to drop the event (counted, and passed to
 * the producer's event_free). */
#define GS_DISCARD SIZE_MAX

/* Maps an event to a partition in [0, n), or GS_DISCARD. Called on the
 * producer's run, once per event. */
typedef size_t (*gs_hash_fn)(void *arg, const void *event);

typedef struct gs_dispatcher {
	gs_dispatcher_kind kind;
	size_t partitions;
	gs_hash_fn hash;
	void *arg;
} gs_dispatcher;

/* Each batch goes to the subscription with the most pending demand. */
gs_dispatcher gs_dispatcher_demand(void);

/*
 * Every subscription receives every event its selector (gs_sub_opts) lets
 * through; the slowest subscription sets the pace. Every subscriber gets
 * the same pointers, so no consumer owns them: consumers borrow each event
 * for the duration of handle_events and must neither free nor keep it.
 * The producer keeps ownership: with an event_free, it calls it exactly
 * once per event, after every subscription is done with the event (its
 * consumer's handle_events returned, its selector turned it down, or it
 * was dropped when that subscription ended), and events that never went
 * out (a full buffer, a stop) once as drops. So heap events are safe with
 * event_free = free. Without one, broadcast values, or data that outlives
 * the pipeline. Per subscription, sent = received + dropped holds
 * (gs_sub_stats). A consumer that keeps events past handle_events (a
 * stream, a pool, a flow, Broadway's processors, an AMQP sink, or a stage
 * of yours with keeps_events) cannot borrow them: gs_subscribe refuses it
 * such a producer with an event_free (GS_EINVAL, logged).
 */
gs_dispatcher gs_dispatcher_broadcast(void);

/* `hash` maps each event to one of `n` partitions, each taken by the
 * subscription that names it (gs_sub_opts.partition), or shared by a
 * group of subscriptions among which its events are demand-dispatched.
 * gs_stage_new refuses n == 0 or a NULL hash with GS_EINVAL. */
gs_dispatcher gs_dispatcher_partition(size_t n, gs_hash_fn hash, void *arg);

#ifdef __cplusplus
}
#endif

#endif
