// SPDX-License-Identifier: MIT
/*
 * The event bus: parts of a program publish events on dotted topics
 * ("orders.created") without knowing who listens; subscriptions come and go
 * while it runs and each gets the events whose topic its patterns match, in
 * a bounded queue of its own, so a slow listener is never overloaded and
 * nothing is lost without being counted.
 *
 * Model. gs_bus_publish wraps each payload in an envelope (ids, topic,
 * source, time) shared by every matching subscription and reference
 * counted by the bus: when every matched subscription is done with it
 * (handled, skipped, dropped or failed), on_complete fires once and the
 * payload's free function runs once. Each subscription has its own queue
 * and, in the bus's own pipeline, a stage that takes batches from it and
 * calls the handler one event at a time, in order (concurrency 1), or a
 * worker pool (pool.h) of N threads fed from it (concurrency N, no order).
 * The stage of a concurrency-1 subscription is a scheduled one unless the
 * subscription says `blocking`: its handler must then not block (see
 * executor.h). Pool threads may block.
 *
 * Back-pressure, per subscription (gs_bus_overflow): a full queue under
 * GS_BUS_BLOCK (the default) makes publishers wait, and only those whose
 * events match it; under GS_BUS_DROP_OLDEST or GS_BUS_DROP_NEWEST the
 * publisher never waits and the drop is counted. A publish is all or
 * nothing: if any matched GS_BUS_BLOCK queue lacks room for its events, no
 * subscription gets any of them. A waiting publisher is woken once the full
 * queue has drained to half (or far enough for its events, if that is
 * more), not as each event leaves, which spares a wake-up per event; at its
 * timeout it looks once more, and publishes if there is room by then.
 *
 * Conservation, per subscription, at every moment: accepted = handled +
 * dropped + failed + in_flight, with in_flight 0 once the subscription or
 * the bus is closed. (handled counts done and skipped.) A concurrency-1
 * subscription's handler stage takes its events in batches (at most
 * GS_BUS_MAX_BATCH) and counts and completes them in runs that double: 1,
 * 2, 4 ... events, so its counters move by runs and an event's
 * on_complete waits at most for as many later handler calls as came
 * before it in the batch.
 *
 * Out of memory. A publish that cannot allocate is refused (GS_ENOMEM) and
 * delivers nothing. A subscription whose stage stops on an error (out of
 * memory, no thread) ends as on an immediate unsubscribe: it leaves the
 * routes and its queued events are dropped, counted and logged. A close
 * or unsubscribe never waits for ever on a stage that could not be woken:
 * a wake-up that could not be sent is sent again while anyone waits.
 *
 * Threads. Every call may be made from any thread unless its comment says
 * otherwise. Hooks run on the threads named at each; none runs with a bus
 * lock held except the trace hook's PUBLISH and publisher-side DROP reports.
 * Calls that wait are refused with GS_ETHREAD from inside a bus handler or
 * hook: gs_bus_close and gs_bus_free always, gs_bus_unsubscribe with a
 * timeout, and a publish with a timeout where the thread may not block (a
 * concurrency-1 handler without `blocking`, or a hook running there).
 *
 * Memory. A subscription costs a few KiB (its handle, its matcher, its
 * stages; for concurrency N, a pool of N threads) plus its queue (8 bytes
 * per slot). It stays after gs_bus_unsubscribe, for its counters, until its
 * handle is given back with gs_bus_sub_release: then the bus frees it once
 * it has ended and finished every event it accepted, and adds its counters
 * to the bus's retired totals (gs_bus_stats). So listeners that come and go
 * for ever run in bounded memory. Handles never released go at gs_bus_free.
 * The topic table keeps max_topics topics. Envelope blocks are recycled, at
 * most 1 MiB kept per size class (eleven classes, from 256 bytes for a
 * single publish to 256 KiB), half of it on the side publishers take
 * from and half on the side subscribers give back to.
 */
#ifndef GENSTAGE_BUS_H
#define GENSTAGE_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "executor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gs_bus gs_bus;
typedef struct gs_bus_sub gs_bus_sub;

/*
 * What a handler sees: filled by the bus, read-only, valid for the call it
 * is given to (handler, dead_letter, on_complete, unrouted, trace), strings
 * included. New fields are only ever added at the end.
 */
typedef struct gs_bus_envelope {
	/* unique per bus: 1, 2, 3 ... in the order envelopes were accepted
	 * (a refused publish takes none) */
	uint64_t id;
	/* The id of the first envelope of the chain this one belongs to: its
	 * own id, unless published from a handler (inherited) or set by the
	 * publisher. */
	uint64_t correlation_id;
	/* The id of the envelope whose handler published this one; 0 if it
	 * was not published from a handler of this bus. */
	uint64_t causation_id;
	uint64_t published_ns; /* CLOCK_REALTIME, nanoseconds */
	const char *topic;
	const char *source; /* as the publisher named it; "" if it did not */
	void *payload;
} gs_bus_envelope;

/* Frees a payload; called once per accepted envelope, after on_complete. */
typedef void (*gs_bus_free_fn)(void *payload);

/* What a handler returns: GS_BUS_DONE, GS_BUS_SKIP (not for me: counted as
 * handled and skipped), or an error code (> 0: a gs_err or your own from
 * GS_EUSER up), which is retried and then failed. */
#define GS_BUS_DONE 0
#define GS_BUS_SKIP (-1)

/* Called once per delivery, and once more per retry: for concurrency 1 in
 * the subscription's stage (one call at a time, in publish order), else on
 * one of its pool's threads (up to `concurrency` at once). May block only
 * if the subscription says so (blocking, or concurrency > 1). */
typedef int (*gs_bus_handler_fn)(void *arg, const gs_bus_envelope *env);

/* Called once for a delivery whose retries are spent, on the handler's
 * thread, with the handler's last error. */
typedef void (*gs_bus_dead_letter_fn)(void *arg, const gs_bus_envelope *env,
				      int error);

typedef enum gs_bus_overflow {
	GS_BUS_BLOCK = 0, /* publishers wait for room (lossless) */
	/* The oldest event still in the queue goes (the incoming one, if
	 * every event counted has left it). Events leave the queue a batch
	 * at a time (see GS_BUS_MAX_BATCH), and with concurrency N up to 2N
	 * wait in the pool's buffer: those are not dropped. */
	GS_BUS_DROP_OLDEST,
	GS_BUS_DROP_NEWEST, /* the incoming event goes */
} gs_bus_overflow;

/* How gs_bus_close and gs_bus_unsubscribe end. */
typedef enum gs_bus_close_mode {
	/* Every accepted event reaches its handler first. */
	GS_BUS_DRAIN = 0,
	/* Queued events are dropped (counted, completed, freed), and so are
	 * those the handler's stage took and has not begun; the one in the
	 * handler is still handled, but its retries stop (it then fails, to
	 * the dead letter). For a pool, events it holds may still be handled:
	 * up to 2 x concurrency. */
	GS_BUS_IMMEDIATE,
} gs_bus_close_mode;

/* Wait for ever, as a timeout. */
#define GS_BUS_FOREVER (-1)

/* How an envelope ended, over the subscriptions it matched when it was
 * published: matched = handled + dropped + failed; skipped is part of
 * handled. */
typedef struct gs_bus_summary {
	uint32_t matched, handled, skipped, dropped, failed;
} gs_bus_summary;

typedef enum gs_bus_trace_kind {
	GS_BUS_TRACE_PUBLISH = 0, /* accepted (subscriber NULL) */
	GS_BUS_TRACE_UNROUTED,    /* matched nobody (subscriber NULL) */
	GS_BUS_TRACE_DELIVER,     /* about to be handled */
	GS_BUS_TRACE_RETRY,       /* the handler failed; called again now,
				     after the backoff */
	GS_BUS_TRACE_FAIL,        /* retries spent: failed */
	GS_BUS_TRACE_DROP,        /* dropped from the subscriber's queue */
	GS_BUS_TRACE_COMPLETE,    /* every subscription is done with it */
} gs_bus_trace_kind;

/* Called where it happened, possibly on several threads at once, with the
 * subscription's name (NULL for PUBLISH, UNROUTED and COMPLETE). PUBLISH,
 * and DROP when a publish pushes an event out, are called with the bus's
 * publish lock held: keep the hook short and never call the bus from it. */
typedef void (*gs_bus_trace_fn)(void *arg, gs_bus_trace_kind kind,
				const gs_bus_envelope *env,
				const char *subscriber);

#define GS_BUS_OPTS_VERSION 0
/* Topics whose routes are cached and counted one by one; beyond, topics
 * are matched on every publish and counted together (gs_bus_write_json's
 * "other_topics"). */
#define GS_BUS_DEFAULT_MAX_TOPICS 4096

typedef struct gs_bus_opts {
	uint32_t version;  /* GS_BUS_OPTS_VERSION */
	const char *name;  /* copied (its first 63 bytes); NULL: "bus" */
	size_t max_topics; /* 0: GS_BUS_DEFAULT_MAX_TOPICS; at most 2^29 */
	/* Once per accepted envelope, when every matched subscription is done
	 * with it (for one that matched none: right after `unrouted`), on the
	 * thread that finished it last: a handler's, a publisher's, or the
	 * one closing. Envelopes published together in one call complete
	 * together, when the last of them is done. Then the payload is
	 * freed. */
	void (*on_complete)(void *arg, const gs_bus_envelope *env,
			    const gs_bus_summary *summary);
	void *complete_arg;
	/* Once per envelope that matched no subscription, on the publisher's
	 * thread after the publish returned its lock. */
	void (*unrouted)(void *arg, const gs_bus_envelope *env);
	void *unrouted_arg;
	gs_bus_trace_fn trace; /* NULL: no tracing */
	void *trace_arg;
	/* Why a call was refused, and anomalies; on the caller's thread.
	 * NULL: one line on stderr. */
	void (*log)(void *arg, const char *msg);
	void *log_arg;
	/* The workers that run the subscriptions' scheduled stages (the
	 * bus's pipeline holds a reference). NULL: the process's shared
	 * executor (see executor.h). */
	gs_executor *executor;
} gs_bus_opts;

#define GS_BUS_SUB_OPTS_VERSION 0
/* Events a subscription's handler stage takes at once: at most this many,
 * and a quarter of queue_size, leave the rest in the queue where
 * GS_BUS_DROP_OLDEST can still drop them. */
#define GS_BUS_MAX_BATCH 256
/* The largest queue_size: a queue holds a pointer per event (8 GiB). */
#define GS_BUS_MAX_QUEUE ((size_t)1 << 30)

typedef struct gs_bus_sub_opts {
	uint32_t version; /* GS_BUS_SUB_OPTS_VERSION */
	const char *name; /* copied (its first 63 bytes); NULL: "sub-N" */
	/* NULL-terminated AMQP topic-exchange patterns: dot-separated words,
	 * where a word "*" matches exactly one word and "#" zero or more
	 * ("orders.*", "#.created", "audit.#"). */
	const char *const *patterns;
	/* NULL-terminated POSIX extended regular expressions, matched against
	 * the whole topic (anchored at both ends). At least one pattern or
	 * regex is required. */
	const char *const *regexes;
	gs_bus_handler_fn handler; /* required */
	void *arg;                 /* passed to handler and dead_letter */
	/* Events accepted and not yet finished, at most; required, 1 to
	 * GS_BUS_MAX_QUEUE. */
	size_t queue_size;
	gs_bus_overflow overflow;
	/* 0 or 1: one at a time, in order, on a stage; N: a worker pool of N
	 * threads (no order). */
	size_t concurrency;
	/* Concurrency 1: the handler may block (sleep, disk, network), so
	 * its stage gets a thread of its own. Implied by retry_backoff_ms. */
	bool blocking;
	/* Retries after a handler error; the n-th waits retry_backoff_ms <<
	 * (n - 1) milliseconds (at most a minute) first. Then dead_letter. */
	unsigned max_retries;
	unsigned retry_backoff_ms;
	gs_bus_dead_letter_fn dead_letter; /* NULL: failures only counted */
} gs_bus_sub_opts;

/* One event of a batch. */
typedef struct gs_bus_msg {
	const char *topic;
	void *payload;
} gs_bus_msg;

#define GS_BUS_PUBLISH_OPTS_VERSION 0

typedef struct gs_bus_publish_opts {
	uint32_t version;       /* GS_BUS_PUBLISH_OPTS_VERSION */
	const char *source;     /* copied; NULL: "" */
	gs_bus_free_fn free_fn; /* NULL: payloads are not freed */
	/* 0: inherited from the envelope being handled on this thread, or
	 * each envelope's own id. */
	uint64_t correlation_id;
	/* While a GS_BUS_BLOCK queue lacks room: 0 refuses at once
	 * (GS_EFULL), > 0 waits up to that many milliseconds
	 * (GS_ETIMEDOUT), GS_BUS_FOREVER waits for ever. */
	int timeout_ms;
} gs_bus_publish_opts;

typedef struct gs_bus_sub_stats {
	uint64_t accepted;  /* events routed to it */
	uint64_t delivered; /* handed to the handler (first attempts) */
	uint64_t handled;   /* done or skipped */
	uint64_t skipped;
	uint64_t failed; /* retries spent */
	/* handler calls after a failure; one a cut (GS_BUS_IMMEDIATE) ends
	 * during its backoff never runs and is not counted */
	uint64_t retried;
	uint64_t dropped;
	uint64_t in_flight;   /* accepted - handled - dropped - failed */
	uint64_t queue_depth; /* waiting in its queue, not yet handed over */
	uint64_t handler_ns;  /* time inside the handler */
} gs_bus_sub_stats;

typedef struct gs_bus_topic_stats {
	uint64_t published;  /* envelopes */
	uint64_t deliveries; /* routed to subscriptions */
	uint64_t unrouted;
	uint64_t handled; /* deliveries handled (done or skipped) */
	uint64_t dropped;
	uint64_t failed;
	uint64_t retried;
	uint64_t in_flight; /* envelopes not yet completed */
} gs_bus_topic_stats;

/* The bus as a whole. */
typedef struct gs_bus_stats {
	uint64_t published; /* envelopes accepted */
	uint64_t unrouted;
	uint64_t completed;
	uint64_t in_flight; /* published - completed */
	/* Subscriptions the bus holds now: routed to, or ended and not yet
	 * freed (the handle not released, or events or stages not finished). */
	uint64_t held;
	uint64_t routed; /* subscribed now */
	/* Subscriptions freed (released, or never made whole), and their
	 * counters summed (in_flight and queue_depth 0): with those held,
	 * every delivery the bus ever made is counted. */
	uint64_t retired;
	gs_bus_sub_stats retired_totals;
} gs_bus_stats;

/* Creates a bus and its pipeline, on the process's shared executor.
 * `opts` may be NULL; read once. GS_EVERSION for a version above
 * GS_BUS_OPTS_VERSION (logged). On error *out is untouched. */
gs_err gs_bus_new(const gs_bus_opts *opts, gs_bus **out);

/*
 * Adds a subscription; events published after this returns are routed to
 * it. With concurrency N its pool's threads exist by then, unless it was
 * called inside a scheduled stage's callback (which may not wait for
 * them). `opts` is read once. *out is the caller's handle: valid, even after
 * gs_bus_unsubscribe (for its counters), until gs_bus_sub_release or
 * gs_bus_free. `out` may be NULL: the subscription then lasts until the bus
 * is closed, and is freed once it has ended. Refused with a log
 * message: NULL bus or opts, no handler, no pattern, an empty or malformed
 * pattern ("a..b", "a*", "#x"), an invalid regex, queue_size 0 or above
 * GS_BUS_MAX_QUEUE, an unknown
 * overflow, concurrency above GS_POOL_MAX_WORKERS (GS_EINVAL); a version
 * above GS_BUS_SUB_OPTS_VERSION (GS_EVERSION); a closed bus (GS_ECLOSED).
 */
gs_err gs_bus_subscribe(gs_bus *bus, const gs_bus_sub_opts *opts,
			gs_bus_sub **out);

/*
 * Ends a subscription: events published after this returns no longer reach
 * it; GS_BUS_DRAIN hands every event already accepted to its handler,
 * GS_BUS_IMMEDIATE drops those still queued (counted). Then waits up to
 * timeout_ms (GS_BUS_FOREVER: for ever; 0: not at all) until every event
 * it accepted is finished: GS_OK, or GS_ETIMEDOUT while it finishes in the
 * background. A second call waits again; with GS_BUS_IMMEDIATE it first
 * drops what is still queued, so a drain that takes too long can be cut
 * short. A timeout other than 0 from a bus
 * handler or hook is GS_ETHREAD. The handle stays valid (its counters can
 * be read) until gs_bus_sub_release.
 */
gs_err gs_bus_unsubscribe(gs_bus_sub *sub, gs_bus_close_mode mode,
			  int timeout_ms);

/*
 * Gives the handle back; the subscription's memory goes once nothing needs
 * it. One still subscribed is unsubscribed first, with GS_BUS_DRAIN and
 * without waiting: its accepted events still reach its handler. The bus
 * frees it (queue, matcher, stages, pool threads joined) once it has ended
 * and finished every event it accepted, on whichever thread finishes last,
 * and adds its counters to the bus's retired totals (gs_bus_stats_get,
 * gs_bus_write_json); topic counters are not affected. Never waits: from
 * any thread, a handler, dead letter, on_complete or unrouted hook
 * included, the subscription's own handler too (it is freed after that
 * handler returns); not from the trace hook. After it, `sub` must not be
 * used: call it once no other call on the handle runs or will be made.
 * Before or after gs_bus_close; not after gs_bus_free (which frees the
 * handles not released). NULL is a no-op.
 */
void gs_bus_sub_release(gs_bus_sub *sub);

/*
 * Publishes one event on `topic` (copied). On GS_OK the bus owns `payload`
 * and passes it to free_fn (if not NULL) once, when the envelope completes;
 * on error it stays the caller's and nothing was delivered. timeout_ms as
 * in gs_bus_publish_opts. Refused: NULL bus or topic, a topic that is empty,
 * longer than 255 bytes, has an empty word or contains '*' or '#'
 * (GS_EINVAL, logged); a closed bus (GS_ECLOSED); a full GS_BUS_BLOCK queue
 * (GS_EFULL at timeout 0, else GS_ETIMEDOUT); a timeout other than 0 from a
 * handler that may not block (GS_ETHREAD). From a bus handler, the new
 * envelope's causation id is the handled envelope's id and its correlation
 * id is inherited.
 */
gs_err gs_bus_publish(gs_bus *bus, const char *topic, void *payload,
		      gs_bus_free_fn free_fn, int timeout_ms);

/*
 * Publishes n events at once, all or none: one lock, one allocation and one
 * clock read for the lot, and every one accepted or none (the refusals are
 * gs_bus_publish's; n above a matched GS_BUS_BLOCK queue_size is GS_EINVAL).
 * `opts` may be NULL (no free function, no source, timeout 0). Ids follow
 * the order of msgs. A publisher with many events to send should batch
 * them: a single publish also wakes each subscription whose queue had
 * run dry, which a fast subscriber's usually has. On a 2-CPU machine,
 * batches of 64 delivered four to ten times as many events per second as
 * single calls (gs-bench's bus-fanout against bus-fanout/1: 80M against
 * 21M deliveries/s in one run, 64M against 7M in another; the ratio moves
 * with how far apart the two CPUs are).
 */
gs_err gs_bus_publish_batch(gs_bus *bus, const gs_bus_msg *msgs, size_t n,
			    const gs_bus_publish_opts *opts);

/*
 * Closes the bus: publishes and subscriptions are refused from now on
 * (GS_ECLOSED, waking publishers that wait). GS_BUS_DRAIN first lets every
 * accepted event reach its handlers, and still takes what the bus's own
 * handlers and hooks publish meanwhile (a chain of causes is never cut by
 * a drain), until no handler has anything left; GS_BUS_IMMEDIATE drops
 * what is queued (counted) and refuses every publish at once. Then every
 * subscription ends, and the call waits until each has finished. Not from
 * a bus handler or hook (GS_ETHREAD). Afterwards every accepted envelope
 * has completed and been freed. A call made while another runs waits for
 * it, then returns GS_OK (an immediate call does not cut a drain short);
 * a call after it returns GS_OK at once.
 */
gs_err gs_bus_close(gs_bus *bus, gs_bus_close_mode mode);

/* Closes (GS_BUS_DRAIN) if not closed, then frees the bus, its pipeline and
 * every subscription handle not released. Only once no other call on the
 * bus is running or will be made; not from a bus handler or hook (logged,
 * and nothing is freed). NULL is a no-op. */
void gs_bus_free(gs_bus *bus);

/* How many subscriptions `topic` reaches now; sets *n. The same refusals
 * as gs_bus_publish for a bad topic. */
gs_err gs_bus_route_count(gs_bus *bus, const char *topic, size_t *n);

/* Whether an AMQP topic pattern matches a topic, as subscriptions match:
 * sets *match. GS_EINVAL (no log) for a malformed pattern or topic. Pure;
 * thread-safe. */
gs_err gs_bus_pattern_matches(const char *pattern, const char *topic,
			      bool *match);

/* The envelope being handled on this thread (inside a handler or
 * dead_letter, and in the trace hook's RETRY and FAIL reports of it);
 * NULL elsewhere. */
const gs_bus_envelope *gs_bus_current(void);

/* The subscription's name; never NULL for a valid handle. */
const char *gs_bus_sub_name(const gs_bus_sub *sub);

/* Counters, each exact, the set not taken atomically. GS_EINVAL on NULL;
 * a topic never published reads as zeros. */
gs_err gs_bus_sub_stats_get(const gs_bus_sub *sub, gs_bus_sub_stats *out);
gs_err gs_bus_topic_stats_get(gs_bus *bus, const char *topic,
			      gs_bus_topic_stats *out);
gs_err gs_bus_stats_get(gs_bus *bus, gs_bus_stats *out);

/* Every topic's and subscription's counters as one JSON object, written
 * and flushed to f: the bus's own, "retired" (subscriptions freed),
 * "topics" (one object per topic of the table, with its name),
 * "other_topics" (the topics beyond max_topics, together) and
 * "subscriptions". GS_EINVAL on NULL arguments, GS_EIO if a write or the
 * flush failed. */
gs_err gs_bus_write_json(gs_bus *bus, FILE *f);

#ifdef __cplusplus
}
#endif

#endif
