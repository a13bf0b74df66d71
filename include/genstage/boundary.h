// SPDX-License-Identifier: MIT
/*
 * The boundary with ordinary threads: a producer any thread can push into,
 * with back-pressure, and a consumer any thread can pull from, with demand
 * (like GenStage.stream).
 */
#ifndef GENSTAGE_BOUNDARY_H
#define GENSTAGE_BOUNDARY_H

#include <stddef.h>

#include "error.h"
#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A producer fed by gs_push. Its queue holds opts->buffer_size events
 * (default 10000); pushers wait while it is full. `opts` as for
 * gs_stage_new (dispatcher, event_free, name...).
 */
gs_err gs_push_producer(gs_pipeline *p, const gs_stage_opts *opts,
			gs_stage **out);

/*
 * Pushes n events, all or none, from any thread; inside a scheduled
 * stage's callbacks only with timeout_ms 0 (GS_ETHREAD otherwise). While
 * the queue lacks room for all n, waits up to timeout_ms (negative: for
 * ever), then GS_ETIMEDOUT; with timeout_ms 0, GS_EFULL at once. n above
 * the queue's size is GS_EINVAL. Events pushed by one thread keep their
 * order. On GS_OK the stage owns the events; on error they stay the
 * caller's. GS_ECLOSED once the stage has stopped or gs_push_close was
 * called.
 */
gs_err gs_push(gs_stage *stage, void *const *events, size_t n, int timeout_ms);

/* No more pushes: the producer finishes once what was pushed is delivered.
 * From any thread; idempotent. */
gs_err gs_push_close(gs_stage *stage);

/*
 * A consumer that an ordinary thread pulls from with gs_stream_next. It
 * takes events from its producers only as the puller makes room: about
 * opts->buffer_size (default 1000) wait for the puller, and at most that
 * plus one chunk of each subscription (its max_demand - min_demand: a
 * chunk already asked for is taken whole). Subscribe it to producers as
 * any consumer; a small max_demand keeps the bound tight. Events it still
 * holds when the pipeline is freed go to opts->event_free and are counted
 * as dropped. It keeps events past handle_events (keeps_events in
 * stage.h), so a broadcast producer with an event_free is refused to it;
 * fed by a broadcast producer without one, the events are shared: give the
 * stream no event_free, and free none that gs_stream_next returns.
 */
gs_err gs_stream(gs_pipeline *p, const gs_stage_opts *opts, gs_stage **out);

/*
 * Takes up to `max` events into events[] and sets *n (untouched when the
 * call fails, as every out-parameter). Waits up to
 * timeout_ms (negative: for ever) for at least one: GS_ETIMEDOUT if none
 * came. Once the stream has ended and nothing is left: GS_ECLOSED if it
 * ended normally (its producers are done, or it was stopped without a
 * reason), else the reason it stopped for (a producer's failure through a
 * permanent or transient subscription, or gs_stage_stop's reason), as
 * GenStage.stream exits with it. The events taken belong to the caller.
 * Any thread; inside a scheduled stage's callbacks only with timeout_ms 0
 * (GS_ETHREAD otherwise). One puller at a time gives order, several
 * share the events.
 */
gs_err gs_stream_next(gs_stage *stage, void **events, size_t max, size_t *n,
		      int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
