// SPDX-License-Identifier: MIT
/*
 * The stream consumer: an ordinary thread pulls events with gs_stream_next.
 * The stage reads from its subscriptions only while it has credit, and the
 * puller gives credit back as it takes events, so at most the stream's size
 * waits for the puller and the rest stays upstream under demand.
 */
#include <stdlib.h>
#include <string.h>

#include "annotate.h"
#include "internal.h"
#include "struct_version.h"
#include "waitq.h"

typedef struct stream {
	gs__waitq w; /* cv: signalled when events arrive or it ends */
	bool ended;  /* w.lock */
	int reason;  /* w.lock: why it ended */
	/* credit ever given: the stream's size plus all the puller took */
	_Atomic uint64_t given;
} stream;

static void drop_cb(void *ctx, void *const *events, size_t n)
{
	gs__drop(ctx, events, n);
}

static int on_events(void *state, gs_stage *s, gs_sub *from, void **events,
		     size_t n)
{
	(void)from;
	stream *st = state;
	pthread_mutex_lock(&st->w.lock);
	bool room = gs__buffer_reserve(&st->w.q, n);
	if (room) {
		gs__buffer_put(&st->w.q, events, n, drop_cb, s);
		pthread_cond_broadcast(&st->w.cv);
	}
	pthread_mutex_unlock(&st->w.lock);
	if (room)
		return GS_OK;
	/* A stream that cannot hold what it was given stops, loudly. */
	gs__log(s, GS_LOG_ERROR, "out of memory: dropped %zu events", n);
	gs__drop(s, events, n);
	return GS_ENOMEM;
}

/* Credit from totals, not increments: a chunk may overshoot the credit
 * left, and the overshoot must be paid back before the next read, or the
 * queue would creep past the stream's size over time. */
static bool take_credit(gs_stage *s, void *state)
{
	stream *st = state;
	uint64_t given = atomic_load_explicit(&st->given, memory_order_acquire);
	GS__HA(&st->given);
	uint64_t taken = atomic_load_explicit(&s->st_in, memory_order_relaxed);
	uint64_t credit = given > taken ? given - taken : 0;
	bool more = credit > s->credit;
	s->credit = credit;
	return more;
}

static void on_terminate(void *state, gs_stage *s, int reason)
{
	(void)s;
	stream *st = state;
	pthread_mutex_lock(&st->w.lock);
	st->ended = true;
	st->reason = reason;
	pthread_cond_broadcast(&st->w.cv);
	pthread_mutex_unlock(&st->w.lock);
}

/* Never started, and never will: it ends as at a stop. */
static void on_abandon(gs_stage *s, void *state)
{
	on_terminate(state, s, GS_OK);
}

static void cleanup(gs_stage *s, void *state)
{
	stream *st = state;
	size_t dropped = gs__waitq_fini(&st->w, s);
	if (dropped)
		gs__log(s, GS_LOG_WARN,
			"freed: dropped %zu events never pulled", dropped);
	free(st);
}

static const gs_stage_ops stream_ops = {
	.handle_events = on_events,
	.terminate = on_terminate,
};

GS__API gs_err gs_stream(gs_pipeline *p, const gs_stage_opts *opts,
			 gs_stage **out)
{
	if (!p || !out)
		return GS_EINVAL;
	GS__REFUSE_NEWER(&p->opts, opts, GS_STAGE_OPTS_VERSION);
	if (opts && opts->buffer_size == GS_BUFFER_NONE)
		return gs__refuse(&p->opts, GS_EINVAL,
				  "gs_stream: GS_BUFFER_NONE is no queue size");
	stream *st = calloc(1, sizeof *st);
	if (!st)
		return GS_ENOMEM;
	/* The credit bounds the queue; a chunk may overshoot it by less
	 * than one max_demand, so the queue itself never drops. */
	if (gs__waitq_init(&st->w, GS_UNBOUNDED, GS_KEEP_FIRST)) {
		free(st);
		return GS_ENOMEM;
	}
	size_t cap = opts && opts->buffer_size ? opts->buffer_size : 1000;
	atomic_init(&st->given, cap);
	GS__ATOMIC(st->given);
	static const gs__hooks hooks = {
		.tag = GS__STREAM,
		.poll = take_credit,
		.pull = true,
		.cleanup = cleanup,
		.abandon = on_abandon,
	};
	gs_err err = gs__stage_create(p, GS_CONSUMER, &stream_ops, st, opts,
				      &hooks, out);
	if (err)
		cleanup(NULL, st);
	else
		(*out)->keeps_events = true; /* until the puller takes them */
	return err;
}

GS__API gs_err gs_stream_next(gs_stage *s, void **events, size_t max, size_t *n,
			      int timeout_ms)
{
	stream *st = s && s->hooks.tag == GS__STREAM ? s->state : NULL;
	if (!st || !events || !max || !n)
		return GS_EINVAL;
	if (gs__is_current(s) || (timeout_ms && gs__in_scheduled_stage()))
		return GS_ETHREAD;
	struct timespec until = gs__deadline(timeout_ms);
	gs_err err = GS_OK;
	size_t taken = 0;
	pthread_mutex_lock(&st->w.lock);
	while (!st->w.q.count && !st->ended)
		if (gs__cond_wait(&st->w.cv, &st->w.lock, timeout_ms, &until) &&
		    !st->w.q.count && !st->ended)
			break;
	while (taken < max && st->w.q.count) {
		void **ev = NULL;
		size_t k = gs__buffer_peek(&st->w.q, &ev);
		if (k > max - taken)
			k = max - taken;
		memcpy(events + taken, ev, k * sizeof *ev);
		gs__buffer_consume(&st->w.q, k);
		taken += k;
	}
	if (!taken && st->ended)
		err = st->reason ? st->reason : GS_ECLOSED;
	else if (!taken)
		err = GS_ETIMEDOUT;
	pthread_mutex_unlock(&st->w.lock);
	if (taken) {
		*n = taken; /* a failing call leaves it untouched (README) */
		GS__HB(&st->given);
		atomic_fetch_add_explicit(&st->given, taken,
					  memory_order_release);
		gs__wake(s);
	}
	return err;
}
