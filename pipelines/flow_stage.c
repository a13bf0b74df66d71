// SPDX-License-Identifier: MIT
/*
 * The producer-consumer behind every layer of ours (the one after the
 * sources, and every partition, shuffle, merge, join and through_stages):
 * it runs the fused operations on each batch, then either emits the
 * results or folds them into its windows, and fires the final triggers
 * once every input has ended.
 */
#include <stdlib.h>

#include "flow_internal.h"

/* Paced inputs (see gs__flow_input): asked by hand, so that what one
 * batch of raw items expands into stays about one subscription's demand
 * (PACE_DEFAULT when the layer says 0), however much each item expands. */
#define PACE_DEFAULT 1000

/* Whether the layer folds its input into windows (reduce or join). */
static bool reducing(const gs__flow_layer *l)
{
	return l->has_reduce || l->is_join;
}

static int stage_init(void *state, gs_stage *stage)
{
	gs__flow_stage *st = state;
	st->stage = stage;
	gs_err e = gs__flow_ops_init(st);
	if (!e && reducing(st->layer))
		e = gs__flow_window_init(st);
	return e;
}

static gs__flow_input *input_of(gs__flow_stage *st, gs_sub *sub)
{
	for (size_t i = 0; i < st->ninputs; i++)
		if (st->inputs[i].sub == sub)
			return &st->inputs[i];
	return NULL;
}

/* Records input `sub` and which input layer (join side) its producer
 * belongs to. */
static gs__flow_input *add_input(gs__flow_stage *st, gs_sub *sub)
{
	gs__flow_input *ins = realloc(st->inputs,
				      (st->ninputs + 1) * sizeof(*ins));
	if (!ins)
		return NULL;
	st->inputs = ins;
	gs__flow_input *in = &ins[st->ninputs++];
	*in = (gs__flow_input){ .sub = sub, .live = true };
	gs_stage *prod = gs_sub_producer(sub);
	gs__flow_layer *l = st->layer;
	for (size_t k = 0; k < l->ninputs; k++)
		for (size_t i = 0; i < l->inputs[k]->nbuilt; i++)
			if (l->inputs[k]->stages[i] == prod)
				in->side = l->inputs[k]->side;
	return in;
}

/*
 * A stage right after our sources whose operations expand (flat_map,
 * map_batch) asks its inputs by hand, as the source did before it had a
 * layer of its own: one raw item first, then after each batch as many as
 * the events made per raw item so far say will make about one demand's
 * worth (at least one, so the input is never left without an ask). What
 * waits in the stage's buffer past its downstream demand is then about
 * one batch, and an input holds at most that many raw items.
 */
static int pace(gs__flow_stage *st, gs__flow_input *in)
{
	size_t cap = st->layer->max_demand ? st->layer->max_demand
					   : PACE_DEFAULT;
	double want = 1; /* the first ask: no ratio to go by yet */
	if (st->made)
		want = (double)cap * (double)st->pulled / (double)st->made;
	else if (st->pulled)
		want = (double)cap; /* raw items that made nothing */
	size_t w = want < 1 ? 1 : want > (double)cap ? cap : (size_t)want;
	uint64_t out = in->asked - in->received;
	if (out >= w)
		return 0;
	in->asked += w - out;
	return gs_ask(in->sub, (size_t)(w - out));
}

static int stage_subscribe(void *state, gs_stage *stage, gs_sub *sub,
			   gs_role role)
{
	(void)stage;
	gs__flow_stage *st = state;
	if (role != GS_ROLE_CONSUMER)
		return 0;
	gs__flow_input *in = add_input(st, sub);
	if (!in)
		return GS_ENOMEM;
	return st->layer->paced ? pace(st, in) : 0;
}

static int stage_events(void *state, gs_stage *stage, gs_sub *from,
			void **events, size_t n)
{
	(void)stage;
	gs__flow_stage *st = state;
	/* A departition merge's operations apply to what it gives. */
	if (st->layer->is_departition)
		return gs__flow_departition_events(st, events, n);
	/* The engine calls handle_subscribe before a subscription's first
	 * ask, so every input is known by the time its events arrive. */
	gs__flow_input *in = input_of(st, from);
	/* A join's operations apply to what it pairs (flow_window.c). */
	if (st->layer->is_join)
		return gs__flow_window_events(st, in, events, n);
	void **res;
	size_t nres;
	int r = gs__flow_ops_run(st, events, n, &res, &nres);
	if (r)
		return r;
	if (st->layer->paced) {
		in->received += n;
		st->pulled += n;
		st->made += nres;
	}
	r = reducing(st->layer) ? gs__flow_window_events(st, in, res, nres)
				: gs__flow_send(st, res, nres);
	return r || !st->layer->paced ? r : pace(st, in);
}

int gs__flow_send(gs__flow_stage *st, void **ev, size_t n)
{
	int r = n ? (int)gs_emit(st->stage, ev, n) : 0;
	if (r)
		for (size_t i = 0; i < n; i++)
			gs__flow_drop_output(ev[i], st->layer);
	return r;
}

static int stage_cancel(void *state, gs_stage *stage, gs_sub *sub, gs_role role,
			int reason)
{
	(void)stage;
	gs__flow_stage *st = state;
	if (role != GS_ROLE_CONSUMER || reason != GS_OK || st->ended)
		return 0;
	gs__flow_input *in = input_of(st, sub);
	if (in)
		in->live = false;
	if (++st->nended < st->nexpected)
		return reducing(st->layer) ? gs__flow_window_input_ended(st)
					   : 0;
	/* The last input ended: fire the final triggers now, while the
	 * stage can still emit; the engine then delivers and finishes. */
	st->ended = true;
	if (st->layer->is_departition)
		return gs__flow_departition_end(st);
	return reducing(st->layer) ? gs__flow_window_end(st) : 0;
}

static int stage_info(void *state, gs_stage *stage, void *msg)
{
	(void)stage;
	return gs__flow_window_info(state, msg);
}

static void stage_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	gs__flow_stage *st = state;
	if (reason != GS_OK)
		gs__flow_abort(st->flow, reason);
	gs__flow_window_fini(st);
	gs__flow_departition_fini(st);
	gs__flow_ops_fini(st);
	free(st->inputs);
	st->inputs = NULL;
	st->ninputs = 0;
}

const gs_stage_ops gs__flow_stage_ops = {
	.init = stage_init,
	.handle_events = stage_events,
	.handle_subscribe = stage_subscribe,
	.handle_cancel = stage_cancel,
	.handle_info = stage_info,
	.terminate = stage_terminate,
};
