// SPDX-License-Identifier: MIT
/*
 * The worker pool: GenStage's ConsumerSupervisor for C. A consumer stage
 * that runs a handler for each event on a pool of threads of its own, with
 * at most max_demand events in flight per producer, and asks for more as
 * handlers finish: once min_demand of them have completed, it asks for that
 * many (with GS_MIN_DEMAND_ZERO, after each one). Handlers may block (sleep,
 * disk, network): they run on the pool's threads, never on the pipeline's.
 * Since the pool's stage waits for its handlers when it stops, a handler
 * may not stop, wait for or free the pool's own pipeline: those calls
 * return GS_ETHREAD there (gs_stage_stop, which does not wait, works).
 *
 * Subscribe the pool's stage (gs_pool_stage) to producers with gs_subscribe
 * like any consumer, to as many as needed. The pool makes each of its
 * subscriptions manual and asks for its own max_demand on it; the
 * subscription's cancel mode applies as usual, and its max_demand only sizes
 * the ring (leave it 0, or at least the pool's max_demand, for full batches).
 *
 * The pool's stage is marked blocking: it never blocks on an event, but when
 * it stops it waits for the handlers still running, so that no handler
 * outlives gs_pipeline_wait or gs_pipeline_stop. It is also marked as
 * keeping events past handle_events (keeps_events in stage.h): a broadcast
 * producer with an event_free is refused to it, and events from a
 * broadcast producer without one are shared, not the pool's to free.
 */
#ifndef GENSTAGE_POOL_H
#define GENSTAGE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "pipeline.h"
#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gs_pool gs_pool;

/* The version of gs_pool_opts this header describes. */
#define GS_POOL_OPTS_VERSION 0
/* Defaults: GenStage's demand, and workers = max_demand up to this many. */
#define GS_POOL_DEFAULT_MAX_DEMAND 1000
#define GS_POOL_DEFAULT_WORKERS_CAP 64
/* The most workers a pool may be given. */
#define GS_POOL_MAX_WORKERS 4096

/*
 * Runs on one of the pool's threads, once per event, possibly on several
 * threads at once (never more than `workers`). Returns GS_OK, or an error
 * code: the error is counted and passed to on_done, and the pool goes on.
 * The event belongs to the pool until on_done has been called.
 */
typedef int (*gs_pool_handler_fn)(void *arg, void *event);

/*
 * Called exactly once per event the pool received, on the thread that
 * handled it, right after the handler, with what the handler returned; or
 * with GS_ECANCELED, without the handler having run, for events still
 * queued when the pool's stage was stopped (gs_stage_stop, GS_STOP_NOW,
 * gs_pipeline_free, a producer's failure through a permanent subscription);
 * or with GS_ENOMEM, without the handler having run, for events that
 * arrived when there was no memory to queue them (the pool's stage then
 * stops with GS_ENOMEM). Both count as cancelled in gs_pool_stats.
 * The event is the callee's from here: free it here if it needs freeing.
 */
typedef void (*gs_pool_done_fn)(void *arg, void *event, int result);

typedef struct gs_pool_opts {
	uint32_t version; /* GS_POOL_OPTS_VERSION */
	/* The stage's name, copied (its first 63 bytes); NULL: "pool". */
	const char *name;
	/* Handler threads; 0: max_demand, at most
	 * GS_POOL_DEFAULT_WORKERS_CAP. */
	size_t workers;
	/* Events in flight (queued or being handled) per producer; 0:
	 * GS_POOL_DEFAULT_MAX_DEMAND. */
	size_t max_demand;
	/* Completions to wait for before asking again, as
	 * ConsumerSupervisor; 0: max_demand / 2; GS_MIN_DEMAND_ZERO: ask
	 * after each one. */
	size_t min_demand;
	gs_pool_handler_fn handler; /* required */
	gs_pool_done_fn on_done;    /* NULL: none */
	void *arg;                  /* passed to both, stays the caller's */
} gs_pool_opts;

typedef struct gs_pool_stats {
	uint64_t received; /* events the stage took from its producers */
	uint64_t handled;  /* handler returned GS_OK */
	uint64_t failed;   /* handler returned an error */
	uint64_t cancelled; /* never run: the stage stopped first, or no memory to queue it */
	uint64_t running;      /* handlers running now */
	uint64_t queued;       /* received, waiting for a worker */
	uint64_t peak_running; /* the most handlers ever running at once */
} gs_pool_stats;

/*
 * Creates a pool and its consumer stage in `p` (before or after start; the
 * threads start with the stage). `opts` is read once. Refused: NULL p, opts,
 * handler or out (GS_EINVAL), opts->version above GS_POOL_OPTS_VERSION
 * (GS_EVERSION), min_demand >= max_demand (GS_EDEMAND), workers above
 * GS_POOL_MAX_WORKERS or max_demand above GS_MAX_DEMAND (GS_EINVAL); each
 * with a line on stderr. On error *out
 * is untouched and no callback is ever called. Any thread but a stage's.
 */
gs_err gs_pool_new(gs_pipeline *p, const gs_pool_opts *opts, gs_pool **out);

/* The pool's consumer stage, to subscribe to producers; NULL for NULL.
 * Owned by the pipeline. Thread-safe. */
gs_stage *gs_pool_stage(const gs_pool *pool);

/* A snapshot of the pool's counters, from any thread; each is exact, the
 * set is taken at once. GS_EINVAL on NULL. */
gs_err gs_pool_stats_get(gs_pool *pool, gs_pool_stats *out);

/*
 * Frees the pool. Only once its stage can run no more: after
 * gs_pipeline_wait or gs_pipeline_stop returned, after gs_pipeline_free, or
 * on a pipeline never started (which must then not be started). NULL is a
 * no-op.
 */
void gs_pool_free(gs_pool *pool);

#ifdef __cplusplus
}
#endif

#endif
