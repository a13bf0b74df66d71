// SPDX-License-Identifier: MIT
/*
 * The rate limiter: a stage between the producers and the processors that
 * takes manual demand from the producers and asks them only for what the
 * rate allows (allowed_messages per interval) and what the processors have
 * room for. Excess demand never reaches a producer, so nothing is emitted
 * beyond the rate and nothing is dropped. Its token count refills once per
 * interval, measured from the stage's start; a shorter tick re-checks the
 * room downstream, since a producer-consumer hears of no demand itself.
 */
#include <stdlib.h>
#include <time.h>

#include "broadway_internal.h"

typedef struct in {
	gs_sub *sub;
	uint64_t outstanding; /* asked and not received yet */
} in;

typedef struct limiter {
	gs_broadway *bw;
	in *ins;
	size_t n_ins, cap_ins, rr;
	uint64_t tokens;      /* left in this interval */
	uint64_t outstanding; /* over all inputs */
	uint64_t room;        /* outstanding + buffered stays within it */
	uint64_t interval_ns, window_end_ns;
	unsigned tick_ms;
} limiter;

/* The timer's message: a static token, so nothing to free. */
static char tick_token;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pump(limiter *l, gs_stage *stage)
{
	gs_stats st = { 0 };
	gs_stage_stats(stage, &st);
	uint64_t used = l->outstanding + st.buffered;
	uint64_t want = l->room > used ? l->room - used : 0;
	if (want > l->tokens)
		want = l->tokens;
	if (!want || !l->n_ins)
		return;
	uint64_t each = want / l->n_ins, extra = want % l->n_ins;
	for (size_t i = 0; i < l->n_ins; i++) {
		in *x = &l->ins[(l->rr + i) % l->n_ins];
		uint64_t k = each + (i < extra);
		if (k && gs_ask(x->sub, k) == GS_OK) {
			x->outstanding += k;
			l->outstanding += k;
			l->tokens -= k;
		}
	}
	l->rr++;
}

static int on_init(void *state, gs_stage *stage)
{
	limiter *l = state;
	l->window_end_ns = now_ns() + l->interval_ns;
	return gs_send_after(stage, l->tick_ms, &tick_token);
}

static int on_tick(void *state, gs_stage *stage, void *msg)
{
	(void)msg;
	limiter *l = state;
	uint64_t now = now_ns();
	if (now >= l->window_end_ns) {
		/* Windows start one interval apart, never earlier: at most
		 * allowed_messages leave per interval, whatever the ticks. */
		while (l->window_end_ns <= now)
			l->window_end_ns += l->interval_ns;
		l->tokens = l->bw->o.rate_limiting.allowed_messages;
	}
	pump(l, stage);
	return gs_send_after(stage, l->tick_ms, &tick_token);
}

static in *find(limiter *l, const gs_sub *sub)
{
	for (size_t i = 0; i < l->n_ins; i++)
		if (l->ins[i].sub == sub)
			return &l->ins[i];
	return NULL;
}

static int on_events(void *state, gs_stage *stage, gs_sub *from, void **ev,
		     size_t n)
{
	limiter *l = state;
	in *x = find(l, from);
	if (x) {
		x->outstanding -= n;
		l->outstanding -= n;
	}
	if (gs_emit(stage, ev, n))
		for (size_t i = 0; i < n; i++)
			gs__bw_drop_message(ev[i], l->bw);
	pump(l, stage);
	return GS_OK;
}

static int on_subscribe(void *state, gs_stage *stage, gs_sub *sub, gs_role role)
{
	limiter *l = state;
	if (role != GS_ROLE_CONSUMER)
		return GS_OK;
	if (l->n_ins == l->cap_ins) {
		size_t cap = l->cap_ins ? 2 * l->cap_ins : 4;
		in *v = realloc(l->ins, cap * sizeof *v);
		if (!v)
			return GS_ENOMEM;
		l->ins = v;
		l->cap_ins = cap;
	}
	l->ins[l->n_ins++] = (in){ .sub = sub };
	pump(l, stage);
	return GS_OK;
}

static int on_cancel(void *state, gs_stage *stage, gs_sub *sub, gs_role role,
		     int reason)
{
	(void)stage;
	(void)reason;
	limiter *l = state;
	in *x = role == GS_ROLE_CONSUMER ? find(l, sub) : NULL;
	if (x) {
		l->outstanding -= x->outstanding;
		*x = l->ins[--l->n_ins];
	}
	return GS_OK;
}

static void on_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	limiter *l = state;
	gs__bw_failed(l->bw, reason);
}

static const gs_stage_ops limiter_ops = {
	.init = on_init,
	.handle_events = on_events,
	.handle_info = on_tick,
	.handle_subscribe = on_subscribe,
	.handle_cancel = on_cancel,
	.terminate = on_terminate,
};

static void limiter_free(void *state)
{
	limiter *l = state;
	free(l->ins);
	free(l);
}

gs_err gs__bw_rate_limiter_new(gs_broadway *bw, const gs_stage_opts *so,
			       gs_stage **out)
{
	limiter *l = calloc(1, sizeof *l);
	if (!l)
		return GS_ENOMEM;
	unsigned interval = bw->o.rate_limiting.interval;
	l->bw = bw;
	l->tokens = bw->o.rate_limiting.allowed_messages;
	l->interval_ns = (uint64_t)interval * 1000000u;
	l->tick_ms = interval / 10 < 1    ? 1
		     : interval / 10 > 50 ? 50
					  : interval / 10;
	/* What waits here is bounded by what the processors hold, or by
	 * one interval's worth if that is more: a smaller bound would let
	 * through only `room` per tick, below the rate. */
	l->room = (uint64_t)bw->o.processors.concurrency *
		  bw->o.processors.max_demand;
	if (l->room < bw->o.rate_limiting.allowed_messages)
		l->room = bw->o.rate_limiting.allowed_messages;
	gs_err err = gs__bw_keep(bw, l, limiter_free);
	if (err)
		return err;
	gs_stage_opts o = *so;
	o.version = GS_STAGE_OPTS_VERSION;
	o.keeps_events = true; /* it holds messages until the rate allows */
	return gs_stage_new(bw->p, GS_PRODUCER_CONSUMER, &limiter_ops, l, &o,
			    out);
}
