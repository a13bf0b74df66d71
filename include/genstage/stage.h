// SPDX-License-Identifier: MIT
/*
 * Stages: producers, producer-consumers and consumers, each a table of
 * GenStage callbacks run by the pipeline's executor (see executor.h). A
 * stage's callbacks run one at a time, each seeing the effects of the ones
 * before it, so the state needs no lock; a scheduled stage may move from
 * one worker thread to another between callbacks, a blocking stage stays
 * on a thread of its own.
 */
#ifndef GENSTAGE_STAGE_H
#define GENSTAGE_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dispatcher.h"
#include "error.h"
#include "pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gs_sub gs_sub;

typedef enum gs_kind {
	GS_PRODUCER = 1,
	GS_PRODUCER_CONSUMER,
	GS_CONSUMER,
} gs_kind;

/* Which end of a subscription a callback's stage is on. */
typedef enum gs_role {
	GS_ROLE_PRODUCER = 0,
	GS_ROLE_CONSUMER,
} gs_role;

/* Versions of the structs below (see genstage/version.h). */
#define GS_STAGE_OPS_VERSION 0
#define GS_STAGE_OPTS_VERSION 1

/*
 * The callbacks. Every one is optional but handle_demand (producers) and
 * handle_events (producer-consumers and consumers). They run one at a time,
 * on a worker of the executor, or on the stage's own thread when it is a
 * blocking stage. A scheduled stage's callbacks must not block (sleep, wait
 * on I/O or on a lock held long): the worker runs no other stage meanwhile.
 * gs_pipeline_opts.warn_callback_ms can name one that holds its worker.
 * Returning non-zero stops the stage with that reason.
 */
typedef struct gs_stage_ops {
	uint32_t version; /* GS_STAGE_OPS_VERSION, or 0 */
	/* The first call, before any other; gs_pipeline_start waits for it. */
	int (*init)(void *state, gs_stage *stage);
	/* Producers: consumers asked for `demand` more events than the buffer
	 * holds. Emit them now or later with gs_emit; emitting more fills the
	 * buffer. Never called for producer-consumers: their demand goes
	 * upstream. Unlike GenStage, which calls it once per ask, asks that
	 * arrive between two turns of the stage (from several subscriptions,
	 * or several asks of one) reach it summed in one call. */
	int (*handle_demand)(void *state, gs_stage *stage, size_t demand);
	/* Consumers and producer-consumers: `n` events from `from`. The array
	 * is lent for the call: the callee may overwrite its entries (map in
	 * place) and pass it to gs_emit, but not keep it. The events in it now
	 * belong to the callee (broadcast ones are borrowed: see
	 * gs_dispatcher_broadcast). A producer-consumer passes what it makes
	 * downstream with gs_emit. Chunks follow the batch rule
	 * (subscription.h), but unlike GenStage one chunk may hold events of
	 * two gs_emit calls: it takes what the ring holds, however it got
	 * there. */
	int (*handle_events)(void *state, gs_stage *stage, gs_sub *from,
			     void **events, size_t n);
	/* A subscription was attached, on either end (`role` says which). */
	int (*handle_subscribe)(void *state, gs_stage *stage, gs_sub *sub,
				gs_role role);
	/* A subscription ended with `reason` (GS_OK: the producer finished;
	 * GS_ECANCELED: gs_cancel; anything else: the stage at the other end
	 * stopped with that error). Its return value is ignored when the stage
	 * is stopping anyway. */
	int (*handle_cancel)(void *state, gs_stage *stage, gs_sub *sub,
			     gs_role role, int reason);
	/* gs_call: answer `request` by setting *reply (NULL by default). A
	 * non-zero return stops the stage; the caller gets that code. */
	int (*handle_call)(void *state, gs_stage *stage, void *request,
			   void **reply);
	/* gs_cast: `msg` now belongs to the callee. */
	int (*handle_cast)(void *state, gs_stage *stage, void *msg);
	/* A timer set with gs_send_after fired: `msg` now belongs to the
	 * callee. Re-arm from here for periodic work. */
	int (*handle_info)(void *state, gs_stage *stage, void *msg);
	/* The last call, with the reason the stage stops. */
	void (*terminate)(void *state, gs_stage *stage, int reason);
} gs_stage_ops;

/* What a full producer buffer keeps. */
typedef enum gs_keep {
	GS_KEEP_LAST = 0, /* drop the oldest events (GenStage's default) */
	GS_KEEP_FIRST,    /* drop the incoming events */
} gs_keep;

/* What a producer does with demand (GenStage's `demand` option). */
typedef enum gs_demand_mode {
	GS_DEMAND_FORWARD = 0, /* pass it to handle_demand as it arrives */
	GS_DEMAND_ACCUMULATE,  /* hold it until gs_stage_demand(FORWARD) */
} gs_demand_mode;

/* buffer_size for a buffer that never drops. */
#define GS_UNBOUNDED SIZE_MAX

/* buffer_size for no buffer (GenStage's buffer_size: 0, since a zero field
 * means the default): events emitted where no subscription has demand are
 * dropped at once (counted, logged, to event_free). With the demand and
 * broadcast dispatchers only: gs_stage_new refuses it with a partition
 * dispatcher (its queues never drop), and gs_push_producer and gs_stream
 * refuse it as a queue size (GS_EINVAL). */
#define GS_BUFFER_NONE (SIZE_MAX - 1)

typedef struct gs_stage_opts {
	uint32_t version;   /* GS_STAGE_OPTS_VERSION, or 0 */
	const char *name;   /* copied (its first 63 bytes); NULL: "stage-N" */
	size_t buffer_size; /* 0: 10000 for producers, GS_UNBOUNDED for
			       producer-consumers; GS_BUFFER_NONE */
	/* What a full buffer drops. The partition dispatcher's queues drop
	 * nothing (see dispatcher.h). */
	gs_keep buffer_keep;
	/* Producers: GS_DEMAND_ACCUMULATE starts with demand held (events
	 * already emitted are still delivered). */
	gs_demand_mode demand;
	/* Producers and producer-consumers; zero: the demand dispatcher. */
	gs_dispatcher dispatcher;
	/* Receives every event the library drops (full buffer, stop without
	 * drain, consumer gone), once. With the broadcast dispatcher it
	 * releases every event, delivered or not, once every subscription is
	 * done with it (see gs_dispatcher_broadcast). Called from any thread,
	 * possibly concurrently, so it must be thread-safe. NULL: dropped
	 * events are only counted and logged. */
	void (*event_free)(void *event, void *arg);
	void *event_free_arg;
	/* Receives gs_cast and gs_send_after messages the stage stopped
	 * before handling (same thread rules as event_free). NULL: none. */
	void (*msg_free)(void *msg, void *arg);
	void *msg_free_arg;
	/* Receives the request of every gs_call whose caller stopped
	 * waiting (GS_ETIMEDOUT), in the stage, once: with the reply after
	 * handle_call returns if it was running, with a NULL reply and never
	 * handled if it had not begun (when the stage reaches it, or stops).
	 * So after a GS_ETIMEDOUT the request is request_free's, always.
	 * With it, a timed-out gs_call returns at its deadline; without it,
	 * a call already in handle_call at the deadline is waited for.
	 * NULL: none. */
	void (*request_free)(void *request, void *reply, void *arg);
	void *request_free_arg;
	/* The callbacks may block (sleep, disk, network, a slow webhook):
	 * the stage runs on a thread of its own (named after the stage)
	 * instead of on the executor's workers. Inside its callbacks the
	 * blocking calls (gs_call, gs_push and gs_stream_next with a timeout)
	 * are allowed. */
	bool blocking;
	/* (Version 1.) Consumers and producer-consumers: the stage keeps
	 * events after handle_events returns (queues them for another
	 * thread or a later callback, or emits the same pointers), as
	 * gs_stream, gs_pool, Broadway's processors and a flow's first
	 * stages do. gs_subscribe then refuses it a broadcast producer with
	 * an event_free (GS_EINVAL, logged), which frees each event once
	 * every subscriber's handle_events has returned: the stage would
	 * read freed memory. Without an event_free the events outlive the
	 * pipeline, and keeping them is safe. */
	bool keeps_events;
} gs_stage_opts;

typedef struct gs_stats {
	uint64_t events_in;      /* received through handle_events */
	uint64_t events_out;     /* sent to subscriptions */
	uint64_t batches_in;     /* handle_events calls */
	uint64_t batches_out;    /* batches sent to subscriptions */
	uint64_t pending_demand; /* demand consumers asked that is unmet */
	uint64_t buffered;       /* events waiting in the buffer */
	/* Events not delivered: dropped from the buffer or a queue, or left
	 * in a subscription that ended (for broadcast: per subscription, so
	 * an event two subscriptions lost counts twice). Each was handed to
	 * event_free, but broadcast ones once, as `released`. */
	uint64_t dropped;
	/* Broadcast with an event_free: events released once every
	 * subscription was done with them. */
	uint64_t released;
	uint64_t busy_ns; /* time spent inside callbacks */
} gs_stats;

/*
 * Creates a stage owned by `p`. `ops` is copied; `opts` may be NULL and is
 * read once; `state` is passed to every callback and stays the caller's.
 * On a running pipeline the stage starts at once (and on one asked to
 * stop, it is stopped as the others were). On error *out is
 * untouched and no callback is called. Refused, with a message through
 * the pipeline's log hook (NULL stage, GS_LOG_ERROR) naming opts.name: an
 * unknown kind, a producer without handle_demand or another kind without
 * handle_events, an unknown buffer_keep or demand mode, an invalid
 * dispatcher (GS_EINVAL), a dispatcher on a consumer (GS_EKIND); NULL
 * p, ops or out is GS_EINVAL with no message.
 */
gs_err gs_stage_new(gs_pipeline *p, gs_kind kind, const gs_stage_ops *ops,
		    void *state, const gs_stage_opts *opts, gs_stage **out);

/* A copy of *opts with the fields its version has and the newer ones zero
 * (their defaults), for code that takes a caller's gs_stage_opts, changes
 * some fields and passes it on: a struct from an older header may end
 * before the newer fields, so `*opts` would read past it. The version is
 * kept when newer than this library's (gs_stage_new then refuses it), else
 * it becomes GS_STAGE_OPTS_VERSION. NULL gives the defaults. */
gs_stage_opts gs_stage_opts_copy(const gs_stage_opts *opts);

/* Sends `n` events downstream, or into the buffer where no subscription has
 * demand. Only from inside a producer's or producer-consumer's callbacks. On
 * GS_OK the library owns the events (a full buffer drops some, see
 * buffer_keep); on error they stay the caller's. */
gs_err gs_emit(gs_stage *stage, void *const *events, size_t n);

/* Finishes a producer once its buffer is delivered: no more handle_demand,
 * then every subscription ends with GS_OK. Only from the stage's own
 * callbacks. Idempotent. */
gs_err gs_done(gs_stage *stage);

/* Stops a stage from any thread with `reason` (GS_OK for a normal stop):
 * buffered events are dropped and its subscriptions end. Asynchronous: the
 * stage stops at its next turn. Allocates nothing; GS_OK also when the
 * stage has already stopped (the first reason given wins). */
gs_err gs_stage_stop(gs_stage *stage, int reason);

/*
 * Calls the stage's handle_call with `request` and waits up to timeout_ms
 * (negative: forever; 0 waits for nothing, so the call is abandoned,
 * GS_ETIMEDOUT, unless the stage took it that instant) for its reply. From any thread outside the
 * executor's workers: refused with GS_ETHREAD from inside the stage's own
 * callbacks and from inside any scheduled stage's callbacks (the wait would
 * hold a worker; blocking stages may call). Returns GS_OK with *reply set;
 * GS_ECLOSED if the stage stopped first; GS_EINVAL if it has no
 * handle_call; the non-zero code handle_call returned; or GS_ETIMEDOUT.
 * The request is lent. A call the stage had not begun by the deadline is
 * never handled (GS_ETIMEDOUT). With a request_free, the request of every
 * timed-out call goes to it (GS_ETIMEDOUT at once, begun or not: the
 * caller never frees it). Without one, a call not begun leaves the
 * request untouched and the caller's again, and one in handle_call at the
 * deadline is waited for; so the request is never used after gs_call
 * returns unless request_free takes it.
 */
gs_err gs_call(gs_stage *stage, void *request, void **reply, int timeout_ms);

/* Queues `msg` for handle_cast and returns at once, from any thread. On
 * GS_OK the stage owns msg (see msg_free); on error it stays the caller's.
 * GS_EINVAL if the stage has no handle_cast. */
gs_err gs_cast(gs_stage *stage, void *msg);

/* Arranges for handle_info(msg) to run in the stage after `ms`
 * milliseconds, from any thread. Ownership as for gs_cast. Timers that
 * have not fired when the stage stops go to msg_free. */
gs_err gs_send_after(gs_stage *stage, unsigned ms, void *msg);

/*
 * GenStage.async_info: queues `msg` for handle_info behind what the
 * stage's buffer holds now, so it runs once every event buffered before it
 * has left the buffer (dispatched, or dropped); with nothing buffered (a
 * consumer's case) at the stage's next turn. From any thread; ownership as
 * for gs_cast. The partition dispatcher's own queues are not waited for.
 */
gs_err gs_async_info(gs_stage *stage, void *msg);

/* GenStage.sync_info: as gs_async_info, and waits up to timeout_ms
 * (negative: for ever) until the stage has queued it: GS_OK (the stage owns
 * msg), GS_ECLOSED (it stopped first; msg stays the caller's), GS_ENOMEM
 * (no memory to queue it; msg stays the caller's, and the stage stops) or
 * GS_ETIMEDOUT (the stage owns msg, and queues it or passes it to
 * msg_free). Not inside the stage's own or any scheduled stage's callbacks
 * (GS_ETHREAD). */
gs_err gs_sync_info(gs_stage *stage, void *msg, int timeout_ms);

/* Switches a producer's demand mode, from any thread. Going to
 * GS_DEMAND_FORWARD passes the demand held so far to handle_demand at once.
 * Asynchronous, like gs_stage_stop. */
gs_err gs_stage_demand(gs_stage *stage, gs_demand_mode mode);

/* A producer's demand mode (GenStage.demand/1): the one last set by
 * gs_stage_demand, or at creation; a switch takes effect at the stage's
 * next turn. Any thread. GS_EKIND for a consumer. */
gs_err gs_stage_demand_mode(const gs_stage *stage, gs_demand_mode *out);

/* The dispatcher the producer was made with (gs_stage_opts.dispatcher),
 * for a library that is handed a stage and must check how it dispatches
 * (gs_broadway does). Any thread. GS_EKIND for a consumer. */
gs_err gs_stage_dispatcher(const gs_stage *stage, gs_dispatcher *out);

/* The state given to gs_stage_new; NULL for NULL. Thread-safe. */
void *gs_stage_state(const gs_stage *stage);

/* The stage's name; never NULL for a valid stage. Thread-safe. */
const char *gs_stage_name(const gs_stage *stage);

/* The pipeline the stage was made in; NULL for NULL. Thread-safe. */
gs_pipeline *gs_stage_pipeline(const gs_stage *stage);

/* A snapshot of the stage's counters, from any thread; each counter is
 * exact, the set is not taken atomically. */
gs_err gs_stage_stats(const gs_stage *stage, gs_stats *out);

#ifdef __cplusplus
}
#endif

#endif
