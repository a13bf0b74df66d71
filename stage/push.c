// SPDX-License-Identifier: MIT
/*
 * The push producer: ordinary threads put events into a bounded queue
 * under a lock (once per gs_push call, not per event); the stage's worker
 * moves them out only as far as consumers' demand reaches, so a full queue
 * is back-pressure that reaches the pushing threads.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "struct_version.h"
#include "waitq.h"

/* Events moved from the queue per gs_emit. */
#define CHUNK 512

typedef struct pusher {
	gs__waitq w;     /* cv: signalled when events leave the queue */
	bool closed;     /* w.lock: gs_push_close was called */
	bool stopped;    /* w.lock: the stage has finished */
	uint64_t demand; /* worker-own: demand not met yet */
} pusher;

static void drop_cb(void *ctx, void *const *events, size_t n)
{
	gs__drop(ctx, events, n);
}

/* Moves up to `demand` events from the queue into gs_emit. */
static bool pump(gs_stage *s, void *state)
{
	pusher *ps = state;
	bool moved = false;
	for (;;) {
		void *chunk[CHUNK];
		size_t k = 0;
		pthread_mutex_lock(&ps->w.lock);
		while (k < CHUNK && k < ps->demand && ps->w.q.count) {
			void **ev = NULL;
			size_t n = gs__buffer_peek(&ps->w.q, &ev);
			size_t want = CHUNK - k;
			if (want > ps->demand - k)
				want = ps->demand - k;
			if (n > want)
				n = want;
			memcpy(chunk + k, ev, n * sizeof *ev);
			gs__buffer_consume(&ps->w.q, n);
			k += n;
		}
		/* A drain with nobody to deliver to: the queue is dropped
		 * (counted and logged) rather than waited on for ever. */
		size_t dropped = 0;
		if (s->draining && !s->n_outs) {
			dropped = ps->w.q.count;
			gs__buffer_clear(&ps->w.q, drop_cb, s);
		}
		if (k || dropped)
			pthread_cond_broadcast(&ps->w.cv);
		bool finished = ps->closed && !ps->w.q.count;
		pthread_mutex_unlock(&ps->w.lock);
		if (dropped)
			gs__log(s, GS_LOG_WARN,
				"drained with no subscriber: dropped %zu "
				"pushed events",
				dropped);
		if (k) {
			ps->demand -= k;
			moved = true;
			if (gs_emit(s, chunk, k))
				gs__drop(s, chunk, k); /* stopping: not lost */
		}
		if (finished && !s->done) {
			gs__enter_done(s);
			moved = true;
		}
		if (k < CHUNK)
			return moved;
	}
}

static int on_demand(void *state, gs_stage *s, size_t demand)
{
	pusher *ps = state;
	ps->demand += demand;
	pump(s, ps);
	return GS_OK;
}

/* Nothing more will leave the queue: drop what is there and release the
 * waiting pushers. */
static void on_terminate(void *state, gs_stage *s, int reason)
{
	(void)reason;
	pusher *ps = state;
	pthread_mutex_lock(&ps->w.lock);
	ps->stopped = true;
	size_t dropped = ps->w.q.count;
	gs__buffer_clear(&ps->w.q, drop_cb, s);
	pthread_cond_broadcast(&ps->w.cv);
	pthread_mutex_unlock(&ps->w.lock);
	if (dropped)
		gs__log(s, GS_LOG_WARN, "stopped: dropped %zu pushed events",
			dropped);
}

/* Never started, and never will: as at a stop. */
static void on_abandon(gs_stage *s, void *state)
{
	on_terminate(state, s, GS_OK);
}

/* A pipeline drain closes the push producer: what was pushed before is
 * delivered, then it finishes. */
static void close_queue(pusher *ps)
{
	pthread_mutex_lock(&ps->w.lock);
	ps->closed = true;
	pthread_cond_broadcast(&ps->w.cv);
	pthread_mutex_unlock(&ps->w.lock);
}

static void on_drain(gs_stage *s, void *state)
{
	(void)s;
	close_queue(state);
}

static size_t queued(const gs_stage *s, void *state)
{
	(void)s;
	pusher *ps = state;
	pthread_mutex_lock(&ps->w.lock);
	size_t n = ps->w.q.count;
	pthread_mutex_unlock(&ps->w.lock);
	return n;
}

static void cleanup(gs_stage *s, void *state)
{
	pusher *ps = state;
	size_t dropped = gs__waitq_fini(&ps->w, s);
	if (dropped) /* a pipeline freed without having run */
		gs__log(s, GS_LOG_WARN, "freed: dropped %zu pushed events",
			dropped);
	free(ps);
}

static const gs_stage_ops push_ops = {
	.handle_demand = on_demand,
	.terminate = on_terminate,
};

GS__API gs_err gs_push_producer(gs_pipeline *p, const gs_stage_opts *opts,
				gs_stage **out)
{
	if (!p || !out)
		return GS_EINVAL;
	GS__REFUSE_NEWER(&p->opts, opts, GS_STAGE_OPTS_VERSION);
	if (opts && opts->buffer_size == GS_BUFFER_NONE)
		return gs__refuse(&p->opts, GS_EINVAL,
				  "gs_push_producer: GS_BUFFER_NONE is no "
				  "queue size");
	pusher *ps = calloc(1, sizeof *ps);
	if (!ps)
		return GS_ENOMEM;
	size_t cap = opts && opts->buffer_size ? opts->buffer_size : 10000;
	if (gs__waitq_init(&ps->w, cap, GS_KEEP_FIRST)) {
		free(ps);
		return GS_ENOMEM;
	}
	static const gs__hooks hooks = {
		.tag = GS__PUSH,
		.poll = pump,
		.drain = on_drain,
		.buffered = queued,
		.cleanup = cleanup,
		.abandon = on_abandon,
	};
	gs_err err = gs__stage_create(p, GS_PRODUCER, &push_ops, ps, opts,
				      &hooks, out);
	if (err)
		cleanup(NULL, ps);
	return err;
}

static pusher *as_pusher(gs_stage *s)
{
	return s && s->hooks.tag == GS__PUSH ? s->state : NULL;
}

GS__API gs_err gs_push(gs_stage *s, void *const *events, size_t n,
		       int timeout_ms)
{
	pusher *ps = as_pusher(s);
	if (!ps || (!events && n))
		return GS_EINVAL;
	if (gs__is_current(s) || (timeout_ms && gs__in_scheduled_stage()))
		return GS_ETHREAD;
	if (n > ps->w.q.limit)
		return GS_EINVAL;
	struct timespec until = gs__deadline(timeout_ms);
	gs_err err = GS_OK;
	pthread_mutex_lock(&ps->w.lock);
	for (;;) {
		if (ps->stopped || ps->closed) {
			err = GS_ECLOSED;
			break;
		}
		if (ps->w.q.limit - ps->w.q.count >= n) {
			if (!gs__buffer_reserve(&ps->w.q, n))
				err = GS_ENOMEM; /* the events stay ours */
			break;
		}
		if (timeout_ms == 0) {
			err = GS_EFULL;
			break;
		}
		if (gs__cond_wait(&ps->w.cv, &ps->w.lock, timeout_ms, &until) &&
		    ps->w.q.limit - ps->w.q.count < n) {
			err = GS_ETIMEDOUT;
			break;
		}
	}
	if (!err)
		gs__buffer_put(&ps->w.q, events, n, drop_cb, s);
	pthread_mutex_unlock(&ps->w.lock);
	if (!err && n)
		gs__wake(s);
	return err;
}

bool gs__push_closed(gs_stage *s)
{
	pusher *ps = as_pusher(s);
	if (!ps)
		return false;
	pthread_mutex_lock(&ps->w.lock);
	bool closed = ps->closed;
	pthread_mutex_unlock(&ps->w.lock);
	return closed;
}

GS__API gs_err gs_push_close(gs_stage *s)
{
	pusher *ps = as_pusher(s);
	if (!ps)
		return GS_EINVAL;
	close_queue(ps);
	gs__wake(s);
	return GS_OK;
}
