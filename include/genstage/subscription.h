// SPDX-License-Identifier: MIT
/*
 * Subscriptions connect a consumer to a producer: events flow down, demand
 * flows up, and a producer never sends more than was asked.
 *
 * The batch rule (GenStage's, as its source implements it): the consumer
 * first asks max_demand. It hands what arrives to handle_events in chunks of
 * at most max_demand - min_demand events; after each chunk it subtracts the
 * chunk from its outstanding demand and, if that is now min_demand or less,
 * asks for max_demand - outstanding, so outstanding is max_demand again.
 * With max 1000 and min 500: ask 1000, chunks of up to 500, ask 500 after
 * each full chunk. With min 0 (GS_MIN_DEMAND_ZERO): chunks of up to
 * max_demand and a new ask only when all of it has arrived. A manual
 * subscription (gs_ask) gets chunks of at most max_demand, where GenStage
 * hands each batch over whole.
 */
#ifndef GENSTAGE_SUBSCRIPTION_H
#define GENSTAGE_SUBSCRIPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the consumer does when the producer's end goes away. Unlike
 * GenStage, a consumer whose last subscription has ended finishes (with
 * GS_OK) whatever the mode if any of its producers finished normally, so
 * that a finite pipeline completes by itself; "keep running" holds while
 * it has other subscriptions, or when every producer it had failed
 * (until a drain: nothing more can come then). A failure that stops the
 * consumer stops it as soon as it is known, even while events of that
 * producer wait for demand in a producer-consumer's input (they go to
 * the producer's event_free, counted). */
typedef enum gs_cancel_mode {
	GS_CANCEL_PERMANENT = 0, /* stop with the producer's reason */
	GS_CANCEL_TRANSIENT,     /* stop only if the producer failed */
	GS_CANCEL_TEMPORARY,     /* keep running */
} gs_cancel_mode;

/* max_demand when none is given, and the largest accepted. Demand is the
 * promise that a subscription's ring never overflows, so the ring holds
 * max_demand events rounded up to a power of two, 8 bytes each: 8 KiB for
 * the default, 8 MiB for 2^20, 16 GiB of address space for GS_MAX_DEMAND.
 * gs_subscribe logs the cost above 2^23 (64 MiB). */
#define GS_DEFAULT_MAX_DEMAND 1000
#define GS_MAX_DEMAND ((size_t)1 << 31)

/* min_demand of zero, since a zero field means "the default". */
#define GS_MIN_DEMAND_ZERO SIZE_MAX

/* Partition i of a partition dispatcher; a zero field means "the lowest
 * partition nobody holds". */
#define GS_PARTITION(i) ((size_t)(i) + 1)

/* Broadcast only: whether this subscription wants `event`. Called on the
 * producer's run, once per event and subscription. */
typedef bool (*gs_selector_fn)(void *arg, const void *event);

/* The version of gs_sub_opts (see genstage/version.h). */
#define GS_SUB_OPTS_VERSION 0

typedef struct gs_sub_opts {
	uint32_t version;  /* GS_SUB_OPTS_VERSION, or 0 */
	size_t max_demand; /* 0: GS_DEFAULT_MAX_DEMAND; at most GS_MAX_DEMAND */
	size_t min_demand; /* 0: max_demand / 2; GS_MIN_DEMAND_ZERO for 0 */
	gs_cancel_mode cancel;
	/* No automatic asks: the consumer calls gs_ask itself. */
	bool manual;
	/* Partition dispatcher: GS_PARTITION(i), or 0 for the lowest free. */
	size_t partition;
	/* Partition dispatcher: join the partition's group instead of taking
	 * it alone (GenStage #320): its events are demand-dispatched among
	 * the subscriptions that share it, each batch to the one with the
	 * most room. A partition held alone refuses sharers (GS_EBUSY) and
	 * the other way round. */
	bool share_partition;
	/* Broadcast dispatcher: NULL receives everything. */
	gs_selector_fn selector;
	void *selector_arg;
} gs_sub_opts;

/*
 * Subscribes `consumer` to `producer` (same pipeline), before start or while
 * running, from any thread but not from inside either stage's callbacks
 * (GS_ETHREAD). `opts` may be NULL. Refused: NULL stages (GS_EINVAL), a
 * producer that cannot produce or a consumer that cannot consume
 * (GS_EKIND), a stage subscribing to itself (GS_ESELF), stages of two
 * pipelines (GS_EPIPELINE), a consumer already subscribed to this producer
 * (GS_EEXIST, as GenStage refuses it), a cycle (GS_ECYCLE), min_demand >=
 * max_demand (GS_EDEMAND), max_demand above GS_MAX_DEMAND (GS_EINVAL), a
 * stopped stage (GS_ECLOSED); with a partition dispatcher, a partition out
 * of range (GS_EINVAL) or already held, or none left (GS_EBUSY); a selector
 * on a producer that does not broadcast (GS_EINVAL). The checks cost time
 * in the live graph only.
 *
 * With `out` NULL the subscription's memory goes as soon as it has ended.
 * With `out` set, *out is a handle the caller holds until gs_sub_release
 * (or gs_pipeline_free); until then it stays valid for gs_cancel, gs_ask
 * and the getters, also after the subscription has ended. Inside callbacks
 * the `sub` and `from` pointers the library passes are valid until the
 * stage's handle_cancel for that subscription has returned; a stage that
 * stops gets no handle_cancel: its subscriptions end as it stops, before
 * its terminate, where a pointer kept from them is no longer valid.
 *
 * A consumer with at least one subscription finishes (GS_OK) once every one
 * of them has ended because its producer finished; a producer whose every
 * consumer has stopped finishes too, so a finite pipeline always completes.
 * One exception: a partition producer keeps the events of a partition
 * nobody has subscribed to for its first subscriber (GenStage #311), so it
 * finishes only once every partition with events has had one, or when a
 * drain (GS_STOP_DRAIN) drops them, counted and logged.
 */
gs_err gs_subscribe(gs_stage *consumer, gs_stage *producer,
		    const gs_sub_opts *opts, gs_sub **out);

/*
 * gs_subscribe, then waits up to timeout_ms (negative: for ever) until both
 * ends have attached and run handle_subscribe, as GenStage.sync_subscribe:
 * GS_OK (and *out set, when not NULL: a handle as gs_subscribe's), or the
 * first failure: what gs_subscribe refuses, a handle_subscribe's non-zero
 * return (that stage stops with it), GS_ECLOSED if an end was stopping or
 * the consumer was done (a producer-consumer that takes no more input; a
 * done producer still delivering its buffer takes the subscriber), or
 * GS_ETIMEDOUT (the subscription is then cancelled). On failure
 * *out is untouched. Any thread, but not inside either stage's callbacks
 * nor inside any scheduled stage's callbacks (GS_ETHREAD).
 */
gs_err gs_subscribe_sync(gs_stage *consumer, gs_stage *producer,
			 const gs_sub_opts *opts, gs_sub **out, int timeout_ms);

/* Ends the subscription from the consumer's side, from any thread. Events
 * the producer already sent are still delivered; then both ends see
 * handle_cancel with GS_ECANCELED, and the consumer keeps running.
 * Idempotent. Same as gs_cancel_reason(sub, GS_ECANCELED). */
gs_err gs_cancel(gs_sub *sub);

/* Ends the subscription with `reason`, as GenStage.cancel/3 does, from any
 * thread, inside either end's callbacks included. Events already sent are
 * still delivered; then both ends see handle_cancel with `reason`. With
 * GS_ECANCELED or GS_OK the consumer keeps running; with any other reason
 * the consumer's cancel mode applies as if its producer had failed with it
 * (permanent and transient stop with it, temporary runs on). The first
 * cancel's reason wins; later ones do nothing. A producer that has already
 * ended the subscription (it finished, as gs_from_array does with its last
 * item, or failed) has the first word: the consumer sees its reason, as a
 * GenStage consumer that cancels a producer already gone sees the exit. */
gs_err gs_cancel_reason(gs_sub *sub, int reason);

/* Manual subscriptions only (GS_ESTATE on an automatic one), from any
 * thread, as GenStage.ask/3 works from any process: asks the producer for
 * `n` more events. Demand above max_demand outstanding waits until the
 * earlier events are taken: the producer is never asked for more than the
 * subscription holds, so an ask of any size loses nothing. Asks on a
 * subscription that has ended are ignored. GS_EINVAL for an n above
 * GS_MAX_DEMAND (a negative size, say). */
gs_err gs_ask(gs_sub *sub, size_t n);

/* From the consumer's handle_subscribe only (GS_ETHREAD elsewhere, GS_ESTATE
 * once demand was asked): this subscription takes manual demand, as if
 * gs_sub_opts.manual were set (GenStage's {:manual, state}). */
gs_err gs_sub_manual(gs_sub *sub);

/* Gives up the handle gs_subscribe set: the subscription is not cancelled,
 * but its memory goes once it has ended (at once if it has), so that a
 * graph that subscribes and cancels for ever stays bounded. The handle is
 * invalid afterwards. Any thread; NULL is a no-op. */
void gs_sub_release(gs_sub *sub);

/* A subscription's counters. sent = received + dropped once it has ended
 * (before that, the difference is in its ring). */
typedef struct gs_sub_counts {
	uint64_t sent;     /* events the producer put into it */
	uint64_t received; /* events handed to the consumer's handle_events */
	uint64_t dropped;  /* events left in it when it ended */
	uint64_t filtered; /* broadcast: events its selector turned down */
} gs_sub_counts;

/* A snapshot of the subscription's counters, from any thread (each counter
 * exact, the set not taken atomically). GS_EINVAL on NULL arguments. */
gs_err gs_sub_stats(const gs_sub *sub, gs_sub_counts *out);

/* The two ends; NULL for NULL. Thread-safe. */
gs_stage *gs_sub_producer(const gs_sub *sub);
gs_stage *gs_sub_consumer(const gs_sub *sub);

#ifdef __cplusplus
}
#endif

#endif
