// SPDX-License-Identifier: MIT
/*
 * Processors: stages that run handle_message on each message. A failed
 * message is acknowledged here; a successful one is acknowledged here too
 * when there are no batchers, or sent on to its batcher (the processor's
 * partition dispatcher has one partition per batcher).
 */
#include <stdlib.h>

#include "broadway_internal.h"

typedef struct processor {
	gs_broadway *bw;
	size_t index;
	gs__bw_acker acker;
	gs_message **done; /* scratch: acknowledged here */
	gs_message **fwd;  /* scratch: sent to batchers */
} processor;

static int on_events(void *state, gs_stage *stage, gs_sub *from, void **ev,
		     size_t n)
{
	(void)from;
	processor *pr = state;
	gs_broadway *bw = pr->bw;
	size_t nb = bw->o.n_batchers, n_done = 0, n_fwd = 0;
	atomic_fetch_add_explicit(&bw->counts.received, n,
				  memory_order_relaxed);
	gs__bw_trace(bw, GS_BROADWAY_TRACE_MESSAGE, stage, (gs_message **)ev,
		     n);
	for (size_t i = 0; i < n; i++) {
		gs_message *m = ev[i];
		int r = bw->ops.handle_message(bw->arg, pr->index, m);
		if (r)
			gs_message_failed(m, r);
		if (!m->status && nb && m->batcher >= nb)
			gs_message_failed(m, GS_EINVAL);
		if (m->status || !nb)
			pr->done[n_done++] = m;
		else
			pr->fwd[n_fwd++] = m;
	}
	gs__bw_ack(bw, &pr->acker, stage, pr->done, n_done);
	if (n_fwd && gs_emit(stage, (void **)pr->fwd, n_fwd))
		for (size_t i = 0; i < n_fwd; i++)
			gs__bw_drop_message(pr->fwd[i], bw);
	return GS_OK;
}

static void on_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	processor *pr = state;
	gs__bw_failed(pr->bw, reason);
}

static const gs_stage_ops processor_ops = {
	.handle_events = on_events,
	.terminate = on_terminate,
};

static size_t by_batcher(void *arg, const void *event)
{
	(void)arg;
	return ((const gs_message *)event)->batcher;
}

static void processor_free(void *state)
{
	processor *pr = state;
	gs__bw_acker_fini(&pr->acker);
	free(pr->done);
	free(pr);
}

gs_err gs__bw_processor_new(gs_broadway *bw, size_t index,
			    const gs_stage_opts *so, gs_stage **out)
{
	/* A chunk never exceeds max_demand (the batch rule), so scratch of
	 * that size is allocated once, here. */
	size_t cap = bw->o.processors.max_demand;
	processor *pr = calloc(1, sizeof *pr);
	gs_message **scratch = calloc(2 * cap, sizeof *scratch);
	if (!pr || !scratch || gs__bw_acker_reserve(&pr->acker, cap)) {
		free(pr);
		free(scratch);
		return GS_ENOMEM;
	}
	pr->bw = bw;
	pr->index = index;
	pr->done = scratch;
	pr->fwd = scratch + cap;
	gs_err err = gs__bw_keep(bw, pr, processor_free);
	if (err)
		return err;
	gs_stage_opts o = *so;
	o.version = GS_STAGE_OPTS_VERSION;
	o.keeps_events = true; /* acked later, or passed to a batcher */
	gs_kind kind = GS_CONSUMER;
	if (bw->o.n_batchers) {
		kind = GS_PRODUCER_CONSUMER;
		o.dispatcher = gs_dispatcher_partition(bw->o.n_batchers,
						       by_batcher, NULL);
	}
	return gs_stage_new(bw->p, kind, &processor_ops, pr, &o, out);
}
