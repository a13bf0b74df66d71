// SPDX-License-Identifier: MIT
/*
 * Ready-made producers: one that emits the items of an array, and one that
 * calls a generator with each demand. Both finish by themselves (gs_done)
 * when their input runs out, so a pipeline fed by them runs to completion.
 */
#ifndef GENSTAGE_SOURCES_H
#define GENSTAGE_SOURCES_H

#include <stddef.h>

#include "error.h"
#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A producer emitting events[0..n) in order, then finishing (as soon as the
 * last one is emitted: a consumer that asked for exactly n sees the end
 * without asking more). The array is
 * copied, so the caller may free it at once; the events themselves pass to
 * the library as gs_emit says (those never emitted, because the pipeline
 * stopped first, go to opts->event_free, counted and logged). `opts` as for
 * gs_stage_new. GS_EINVAL for NULL p or out, NULL events with n > 0, or an
 * n whose copy's size would overflow (that one with a message).
 */
gs_err gs_from_array(gs_pipeline *p, void *const *events, size_t n,
		     const gs_stage_opts *opts, gs_stage **out);

/*
 * A generator: fills out[0..max) with up to `max` new events and returns how
 * many it wrote; returning fewer than max (0 included) means the input is
 * exhausted, and the producer finishes once they are delivered. A negative
 * return is an error: the producer stops with reason -ret. Called on the
 * producer's run, one call at a time.
 */
typedef long (*gs_gen_fn)(void *arg, void **out, size_t max);

/* A producer that asks `gen` for as many events as consumers demand. `arg`
 * stays the caller's. `opts` as for gs_stage_new. */
gs_err gs_from_fn(gs_pipeline *p, gs_gen_fn gen, void *arg,
		  const gs_stage_opts *opts, gs_stage **out);

#ifdef __cplusplus
}
#endif

#endif
