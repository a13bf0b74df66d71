// SPDX-License-Identifier: MIT
/*
 * The producer-consumer behind every partition, shuffle, merge and join
 * layer: it runs the fused operations on each batch, then either emits the
 * results or folds them into its windows, and fires the final triggers
 * once every input has ended.
 */
#include <stdlib.h>

#include "flow_internal.h"

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

static int stage_subscribe(void *state, gs_stage *stage, gs_sub *sub,
			   gs_role role)
{
	(void)stage;
	gs__flow_stage *st = state;
	if (role != GS_ROLE_CONSUMER)
		return 0;
	return add_input(st, sub) ? 0 : GS_ENOMEM;
}

static int stage_events(void *state, gs_stage *stage, gs_sub *from,
			void **events, size_t n)
{
	(void)stage;
	gs__flow_stage *st = state;
	/* A departition merge's operations apply to what it gives. */
	if (st->layer->is_departition)
		return gs__flow_departition_events(st, events, n);
	void **res;
	size_t nres;
	int r = gs__flow_ops_run(st, events, n, &res, &nres);
	if (r)
		return r;
	if (!reducing(st->layer))
		return gs__flow_send(st, res, nres);
	/* The engine calls handle_subscribe before a subscription's first
	 * ask, so every input is known by the time its events arrive. */
	return gs__flow_window_events(st, input_of(st, from), res, nres);
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
