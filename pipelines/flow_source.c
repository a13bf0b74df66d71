// SPDX-License-Identifier: MIT
/*
 * Source producers of a flow (from an array or a generator) that run the
 * operations fused after them before emitting, so a source and its
 * mappers are one stage.
 */
#include <stdlib.h>

#include "flow_internal.h"

/* The most raw events asked of the input per step. */
#define SOURCE_STEP 256

static int source_init(void *state, gs_stage *stage)
{
	gs__flow_stage *st = state;
	st->stage = stage;
	for (size_t k = 0; k < st->layer->nops; k++)
		st->expands |= st->layer->ops[k].kind == GS__OP_FLAT_MAP;
	return gs__flow_ops_init(st);
}

/*
 * How many raw events to take for `left` more events. Without a flat_map
 * one raw event gives at most one event. With one, a raw event may give
 * thousands (a file's block, split into words), and whatever a step
 * makes past the demand waits in the stage's buffer: so the first step
 * takes one raw event, and later steps as many as the events made per
 * raw event so far say `left` needs. The buffer then holds at most about
 * one raw event's worth past the demand.
 */
static size_t step(const gs__flow_stage *st, size_t left)
{
	double want = (double)left;
	if (st->expands)
		want = st->made ? want * (double)st->pulled / (double)st->made
				: 1;
	if (want < 1)
		return 1;
	return want > SOURCE_STEP ? SOURCE_STEP : (size_t)want;
}

/* Takes up to `want` raw events into *raw. */
static int pull(gs__flow_stage *st, size_t want, void ***raw, size_t *n)
{
	gs__flow_layer *l = st->layer;
	if (l->kind == GS__L_ARRAY) {
		size_t left = l->nevents - st->pos;
		*n = want < left ? want : left;
		*raw = l->events + st->pos;
		st->pos += *n;
		if (st->pos == l->nevents)
			st->exhausted = true;
		return 0;
	}
	st->raw.n = 0;
	if (gs__flow_vec_reserve(&st->raw, want))
		return GS_ENOMEM;
	long got = l->gen(l->gen_arg, st->raw.v, want);
	if (got < 0)
		return (int)-got;
	if ((size_t)got > want)
		return GS_EINVAL;
	if ((size_t)got < want)
		st->exhausted = true;
	*raw = st->raw.v;
	*n = (size_t)got;
	return 0;
}

static int source_demand(void *state, gs_stage *stage, size_t demand)
{
	gs__flow_stage *st = state;
	size_t emitted = 0;
	while (emitted < demand && !st->exhausted) {
		void **raw = NULL, **res = NULL;
		size_t n = 0, nres = 0;
		int r = pull(st, step(st, demand - emitted), &raw, &n);
		if (!r)
			r = gs__flow_ops_run(st, raw, n, &res, &nres);
		if (r)
			return r;
		st->pulled += n;
		st->made += nres;
		if (nres && (r = gs_emit(stage, res, nres))) {
			for (size_t i = 0; i < nres; i++)
				gs__flow_drop(st->flow, res[i]);
			return r;
		}
		emitted += nres;
	}
	if (st->exhausted)
		return gs_done(stage);
	return 0;
}

static void source_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	gs__flow_stage *st = state;
	gs__flow_layer *l = st->layer;
	if (reason != GS_OK)
		gs__flow_abort(st->flow, reason);
	if (l->kind == GS__L_ARRAY) {
		for (size_t i = st->pos; i < l->nevents; i++)
			gs__flow_drop(st->flow, l->events[i]);
		st->pos = l->nevents;
	}
	gs__flow_vec_free(&st->raw);
	gs__flow_ops_fini(st);
}

const gs_stage_ops gs__flow_source_ops = {
	.init = source_init,
	.handle_demand = source_demand,
	.terminate = source_terminate,
};
