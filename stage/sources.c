// SPDX-License-Identifier: MIT
/*
 * gs_from_array and gs_from_fn: producers built on the public stage API,
 * one generator-driven loop serving both (an array is a generator that
 * copies out its next slice).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Events per gs_emit: large enough to amortize dispatch, small enough to
 * live on the stack. */
#define CHUNK 512

typedef struct source {
	gs_gen_fn gen;
	void *arg;
	/* gs_from_array's input, owned here */
	void **events;
	size_t n, next;
} source;

static int on_demand(void *state, gs_stage *stage, size_t demand)
{
	source *src = state;
	void *chunk[CHUNK];
	while (demand) {
		size_t want = demand < CHUNK ? demand : CHUNK;
		long got = src->gen(src->arg, chunk, want);
		if (got < 0)
			return (int)-got;
		if ((size_t)got > want)
			return GS_EINVAL; /* the generator broke its contract */
		gs_err err = gs_emit(stage, chunk, (size_t)got);
		if (err)
			return err;
		/* An array's end is known once its last item is out: a
		 * consumer that asked for exactly that many asks no more. */
		if ((size_t)got < want || (src->events && src->next == src->n))
			return gs_done(stage);
		demand -= want;
	}
	return GS_OK;
}

/* An empty array has nothing to wait for, not even a subscriber. */
static int on_init(void *state, gs_stage *stage)
{
	source *src = state;
	return src->events && src->n == 0 ? gs_done(stage) : GS_OK;
}

/* Array items never emitted were given to the library: they are dropped,
 * counted, and passed to event_free. */
static void drop_rest(gs_stage *stage, source *src)
{
	size_t left = src->n - src->next;
	if (left) {
		gs__drop(stage, src->events + src->next, left);
		gs__log(stage, GS_LOG_WARN,
			"stopped: dropped %zu events never emitted", left);
	}
	src->next = src->n;
}

static void on_terminate(void *state, gs_stage *stage, int reason)
{
	(void)reason;
	drop_rest(stage, state);
}

static void cleanup(gs_stage *stage, void *state)
{
	source *src = state;
	drop_rest(stage, src);
	free(src->events);
	free(src);
}

static long from_array_gen(void *arg, void **out, size_t max)
{
	source *src = arg;
	size_t k = src->n - src->next < max ? src->n - src->next : max;
	memcpy(out, src->events + src->next, k * sizeof *out);
	src->next += k;
	return (long)k;
}

static const gs_stage_ops source_ops = {
	.init = on_init,
	.handle_demand = on_demand,
	.terminate = on_terminate,
};

static gs_err source_new(gs_pipeline *p, source *src, const gs_stage_opts *opts,
			 gs_stage **out)
{
	static const gs__hooks hooks = { .cleanup = cleanup };
	gs_err err = gs__stage_create(p, GS_PRODUCER, &source_ops, src, opts,
				      &hooks, out);
	if (err) {
		free(src->events);
		free(src);
	}
	return err;
}

GS__API gs_err gs_from_array(gs_pipeline *p, void *const *events, size_t n,
			     const gs_stage_opts *opts, gs_stage **out)
{
	if (!p || !out || (!events && n))
		return GS_EINVAL;
	if (n > SIZE_MAX / sizeof(void *))
		return gs__refuse(&p->opts, GS_EINVAL,
				  "gs_from_array: %zu events cannot be copied "
				  "(their size overflows)",
				  n);
	source *src = calloc(1, sizeof *src);
	void **copy = malloc((n ? n : 1) * sizeof *copy);
	if (!src || !copy) {
		free(src);
		free(copy);
		return GS_ENOMEM;
	}
	if (n)
		memcpy(copy, events, n * sizeof *copy);
	*src = (source){
		.gen = from_array_gen,
		.events = copy,
		.n = n,
	};
	src->arg = src;
	return source_new(p, src, opts, out);
}

GS__API gs_err gs_from_fn(gs_pipeline *p, gs_gen_fn gen, void *arg,
			  const gs_stage_opts *opts, gs_stage **out)
{
	if (!p || !gen || !out)
		return GS_EINVAL;
	source *src = calloc(1, sizeof *src);
	if (!src)
		return GS_ENOMEM;
	*src = (source){ .gen = gen, .arg = arg };
	return source_new(p, src, opts, out);
}
