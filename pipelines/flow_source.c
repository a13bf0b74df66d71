// SPDX-License-Identifier: MIT
/*
 * Source producers of a flow, one per array or generator. They hand out
 * raw items only, as the demand asks: the operations that follow run in
 * the layer of stages the sources feed (Flow's mapper stages), so a
 * generator's items are expanded and mapped in parallel.
 */
#include <stdlib.h>

#include "flow_internal.h"

/* The most items asked of a generator per call, so the scratch array
 * stays small whatever the demand. */
#define SOURCE_STEP 1024

static int source_init(void *state, gs_stage *stage)
{
	gs__flow_stage *st = state;
	st->stage = stage;
	return 0;
}

/* Takes up to `want` items into *items. */
static int pull(gs__flow_stage *st, size_t want, void ***items, size_t *n)
{
	gs__flow_src *s = st->src;
	if (!s->gen) {
		size_t left = s->nevents - st->pos;
		*n = want < left ? want : left;
		*items = s->events + st->pos;
		st->pos += *n;
		st->exhausted = st->pos == s->nevents;
		return 0;
	}
	if (want > SOURCE_STEP)
		want = SOURCE_STEP;
	st->raw.n = 0;
	if (gs__flow_vec_reserve(&st->raw, want))
		return GS_ENOMEM;
	long got = s->gen(s->gen_arg, st->raw.v, want);
	if (got < 0)
		return (int)-got;
	if ((size_t)got > want)
		return GS_EINVAL;
	st->exhausted = (size_t)got < want;
	*items = st->raw.v;
	*n = (size_t)got;
	return 0;
}

static int source_demand(void *state, gs_stage *stage, size_t demand)
{
	gs__flow_stage *st = state;
	while (demand > 0 && !st->exhausted) {
		void **items = NULL;
		size_t n = 0;
		int r = pull(st, demand, &items, &n);
		if (r)
			return r;
		if (n && (r = gs_emit(stage, items, n))) {
			for (size_t i = 0; i < n; i++)
				gs__flow_drop(st->flow, items[i]);
			return r;
		}
		demand -= n;
	}
	return st->exhausted ? gs_done(stage) : 0;
}

/* Drops the array items the source never handed out. */
void gs__flow_source_fini(gs__flow_stage *st)
{
	gs__flow_src *s = st->src;
	for (; !s->gen && st->pos < s->nevents; st->pos++)
		gs__flow_drop(st->flow, s->events[st->pos]);
	gs__flow_vec_free(&st->raw);
}

static void source_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	gs__flow_stage *st = state;
	if (reason != GS_OK)
		gs__flow_abort(st->flow, reason);
	gs__flow_source_fini(st);
}

const gs_stage_ops gs__flow_source_ops = {
	.init = source_init,
	.handle_demand = source_demand,
	.terminate = source_terminate,
};
