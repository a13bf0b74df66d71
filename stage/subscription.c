// SPDX-License-Identifier: MIT
/*
 * Subscriptions: checking and creating them, attaching each end on its own
 * thread, the consumer's side of the demand protocol, and how each end
 * lets go. A subscription's ring is freed by whichever end lets go last;
 * the small struct lives until the pipeline is freed, so a gs_sub handle
 * stays valid for gs_cancel at any time.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "struct_version.h"

static bool push_sub(gs_sub ***arr, size_t *n, size_t *cap, gs_sub *sub)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		gs_sub **a = realloc(*arr, ncap * sizeof *a);
		if (!a)
			return false;
		*arr = a;
		*cap = ncap;
	}
	(*arr)[(*n)++] = sub;
	return true;
}

static void remove_at(gs_sub **arr, size_t *n, size_t idx)
{
	memmove(arr + idx, arr + idx + 1, (*n - idx - 1) * sizeof *arr);
	(*n)--;
}

void gs__grant(gs_sub *sub, uint64_t n)
{
	/* One writer (the consumer) for automatic demand; release pairs with
	 * the producer's acquire, which must also see the slots released
	 * before this. Manual demand may come from any thread (gs_ask), so
	 * it adds atomically. */
	if (atomic_load_explicit(&sub->manual, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&sub->granted, n,
					  memory_order_acq_rel);
	} else {
		uint64_t g = atomic_load_explicit(&sub->granted,
						  memory_order_relaxed);
		atomic_store_explicit(&sub->granted, g + n,
				      memory_order_release);
	}
	gs__wake(sub->producer);
}

void gs__detach(gs_sub *sub)
{
	if (atomic_fetch_sub_explicit(&sub->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Both ends are gone: what is still in the ring was never delivered
	 * and goes back to its producer's event_free. */
	size_t dropped = 0;
	void **ev = NULL;
	size_t n;
	while ((n = gs__ring_peek(&sub->ring, &ev, SIZE_MAX))) {
		gs__drop(sub->producer, ev, n);
		gs__ring_release(&sub->ring, n);
		dropped += n;
	}
	if (dropped)
		gs__log(sub->producer, GS_LOG_WARN,
			"dropped %zu events in flight to '%s'", dropped,
			sub->consumer->name);
	gs__ring_fini(&sub->ring);
	gs_pipeline *p = sub->producer->p;
	pthread_mutex_lock(&p->lock);
	sub->live = false;
	gs__partition_release(sub);
	pthread_mutex_unlock(&p->lock);
}

void gs__sub_free(gs_sub *sub)
{
	if (atomic_load_explicit(&sub->refs, memory_order_acquire) > 0) {
		atomic_store_explicit(&sub->refs, 1, memory_order_relaxed);
		gs__detach(sub);
	}
	free(sub);
}

void gs__attach_out(gs_stage *s, gs_sub *sub)
{
	if (!push_sub(&s->outs, &s->n_outs, &s->cap_outs, sub)) {
		/* Cannot track it: end it at once so the consumer moves on. */
		sub->prod_reason = GS_ENOMEM;
		atomic_store_explicit(&sub->prod_end, 1, memory_order_release);
		gs__wake(sub->consumer);
		gs__detach(sub);
		gs__stop(s, GS_ENOMEM);
		return;
	}
	if (s->disp->attach)
		s->disp->attach(s, sub);
	if (s->stopping || !s->ops.handle_subscribe)
		return;
	uint64_t t0 = gs__now_ns();
	int r = s->ops.handle_subscribe(s->state, s, sub, GS_ROLE_PRODUCER);
	gs__busy_add(s, t0);
	if (r)
		gs__stop(s, r);
}

void gs__attach_in(gs_stage *s, gs_sub *sub)
{
	if (!push_sub(&s->ins, &s->n_ins, &s->cap_ins, sub)) {
		sub->cons_reason = GS_ENOMEM;
		atomic_store_explicit(&sub->cons_cancel, GS__CONS_GONE,
				      memory_order_release);
		gs__wake(sub->producer);
		gs__detach(sub);
		gs__stop(s, GS_ENOMEM);
		return;
	}
	if (s->stopping)
		return;
	if (s->done) {
		gs__release_in(s, s->n_ins - 1, GS_OK);
		return;
	}
	if (s->ops.handle_subscribe) {
		uint64_t t0 = gs__now_ns();
		int r = s->ops.handle_subscribe(s->state, s, sub,
						GS_ROLE_CONSUMER);
		gs__busy_add(s, t0);
		if (r) {
			gs__stop(s, r);
			return;
		}
	}
	if (!atomic_load_explicit(&sub->manual, memory_order_relaxed))
		gs__grant(sub, gs__demand_start(&sub->demand));
}

void gs__end_out(gs_stage *s, size_t idx, int reason, int notify_reason,
		 bool notify)
{
	gs_sub *sub = s->outs[idx];
	remove_at(s->outs, &s->n_outs, idx);
	sub->prod_reason = reason;
	atomic_store_explicit(&sub->prod_end, 1, memory_order_release);
	gs__wake(sub->consumer);
	if (notify && s->ops.handle_cancel) {
		int r = s->ops.handle_cancel(s->state, s, sub, GS_ROLE_PRODUCER,
					     notify_reason);
		if (r)
			gs__stop(s, r);
	}
	gs__detach(sub);
}

void gs__release_in(gs_stage *s, size_t idx, int reason)
{
	gs_sub *sub = s->ins[idx];
	remove_at(s->ins, &s->n_ins, idx);
	sub->cons_reason = reason;
	atomic_store_explicit(&sub->cons_cancel, GS__CONS_GONE,
			      memory_order_release);
	gs__wake(sub->producer);
	gs__detach(sub);
}

/* A normal end: a consumer stops; a producer-consumer first delivers what
 * it holds. */
static void finish(gs_stage *s)
{
	if (s->kind == GS_CONSUMER)
		gs__stop(s, GS_OK);
	else
		gs__enter_done(s);
}

/* The producer's end went away and everything it sent has been handled:
 * tell the callback, then apply the cancel mode. */
static void end_in(gs_stage *s, size_t idx)
{
	gs_sub *sub = s->ins[idx];
	int reason = sub->prod_reason;
	bool by_us = reason == GS_ECANCELED &&
		     atomic_load_explicit(&sub->cons_cancel,
					  memory_order_relaxed) ==
			     GS__CONS_CANCEL;
	remove_at(s->ins, &s->n_ins, idx);
	int r = GS_OK;
	if (s->ops.handle_cancel) {
		uint64_t t0 = gs__now_ns();
		r = s->ops.handle_cancel(s->state, s, sub, GS_ROLE_CONSUMER,
					 reason);
		gs__busy_add(s, t0);
	}
	gs__detach(sub);
	if (r) {
		gs__stop(s, r);
		return;
	}
	if (by_us) {
		/* Our own cancel keeps the stage running, unless a drain
		 * came while it was on its way and found this input, and
		 * left the stage to finish with its producers. */
		if (s->draining && !s->n_ins)
			finish(s);
		return;
	}
	bool stop = sub->cancel == GS_CANCEL_PERMANENT ||
		    (sub->cancel == GS_CANCEL_TRANSIENT && reason != GS_OK);
	if (stop && reason != GS_OK) {
		gs__stop(s, reason);
		return;
	}
	if (!stop && s->n_ins)
		return;
	finish(s);
}

/* A chunk that runs past a ring's end is gathered here, one array per
 * thread (a stage's callbacks run on one thread at a time, and the array
 * is lent only for the call), so idle stages hold none. */
static _Thread_local struct {
	void **v;
	size_t cap;
} scratch;

void gs__scratch_release(void)
{
	free(scratch.v);
	scratch.v = NULL;
	scratch.cap = 0;
}

/* Room for n gathered events; false (chunks then just break at the wrap)
 * when out of memory. */
static bool scratch_reserve(size_t n)
{
	if (n <= scratch.cap)
		return true;
	void **v = realloc(scratch.v, n * sizeof *v);
	if (!v)
		return false;
	scratch.v = v;
	scratch.cap = n;
	return true;
}

/* Hands one chunk from `sub` to handle_events; false if none was there. */
static bool take_chunk(gs_stage *s, gs_sub *sub)
{
	bool manual = atomic_load_explicit(&sub->manual, memory_order_relaxed);
	size_t chunk = manual ? sub->max_demand
			      : gs__demand_chunk(&sub->demand);
	void **ev = NULL;
	size_t n = gs__ring_peek(&sub->ring, &ev, chunk);
	if (!n)
		return false;
	/* A chunk that runs past the ring's end is gathered into one array
	 * (a copy at most once per lap) so batches keep their size. */
	if (n < chunk) {
		size_t ready = gs__ring_ready(&sub->ring);
		if (ready > n && scratch_reserve(chunk)) {
			n = ready < chunk ? ready : chunk;
			gs__ring_gather(&sub->ring, scratch.v, n);
			ev = scratch.v;
		}
	}
	gs_pipeline *p = s->p;
	if (p->opts.trace)
		p->opts.trace(p->opts.trace_arg, sub->producer, s, n);
	gs__count(&s->st_in, n);
	gs__count(&s->st_bin, 1);
	uint64_t t0 = gs__now_ns();
	int r = s->ops.handle_events(s->state, s, sub, ev, n);
	gs__busy_add(s, t0);
	gs__ring_release(&sub->ring, n);
	/* Demand beyond the ring's capacity (manual asks) leaves the
	 * producer waiting for room: tell it there is some now. */
	bool blocked = manual &&
		       atomic_load_explicit(&sub->asked, memory_order_relaxed) -
				       sub->received >
			       gs__ring_capacity(&sub->ring);
	sub->received += n;
	/* A pull stream pays for what it receives; a producer-consumer pays
	 * for what it sends on (gs_emit), as GenStage does, so one that
	 * filters or reduces keeps reading. */
	if (s->hooks.pull)
		s->credit -= n < s->credit ? n : s->credit;
	if (r) {
		gs__stop(s, r);
		return true;
	}
	if (!manual) {
		size_t ask = gs__demand_taken(&sub->demand, n);
		if (ask)
			gs__grant(sub, ask);
	} else if (blocked) {
		gs__wake(sub->producer);
	}
	return true;
}

/* One pass over the inputs, a chunk from each, starting from a different
 * one each time so that no producer is starved. A producer-consumer reads
 * only while its downstream has demand it has not yet met: back-pressure
 * passes through it. */
bool gs__read_inputs(gs_stage *s)
{
	bool progress = false;
	size_t n = s->n_ins;
	for (size_t k = 0; k < n && !s->stopping && !s->done; k++) {
		size_t idx = (s->in_cursor + k) % n;
		gs_sub *sub = s->ins[idx];
		bool may_take = (s->kind != GS_PRODUCER_CONSUMER &&
				 !s->hooks.pull) ||
				s->credit;
		if (may_take && take_chunk(s, sub)) {
			progress = true;
			continue;
		}
		if (atomic_load_explicit(&sub->prod_end,
					 memory_order_acquire) &&
		    gs__ring_count(&sub->ring) == 0) {
			end_in(s, idx);
			return true; /* the array changed under the loop */
		}
	}
	s->in_cursor++;
	return progress;
}

/* Is `to` downstream of `from` along live subscriptions? */
static bool reaches(gs_pipeline *p, gs_stage *from, gs_stage *to)
{
	gs_stage **seen = malloc((p->n_stages + 1) * sizeof *seen);
	if (!seen)
		return true; /* refuse rather than risk a cycle */
	size_t n_seen = 0, next = 0;
	seen[n_seen++] = from;
	bool found = false;
	while (next < n_seen && !found) {
		gs_stage *at = seen[next++];
		for (gs_sub *e = p->subs; e && !found; e = e->next) {
			if (!e->live || e->producer != at)
				continue;
			if (e->consumer == to)
				found = true;
			size_t i = 0;
			while (i < n_seen && seen[i] != e->consumer)
				i++;
			if (i == n_seen && n_seen <= p->n_stages)
				seen[n_seen++] = e->consumer;
		}
	}
	free(seen);
	return found;
}

static gs_err check(gs_stage *c, gs_stage *pr, const gs_sub_opts *o)
{
	if (!c || !pr)
		return GS_EINVAL;
	if (c == pr)
		return GS_ESELF;
	if (c->kind == GS_PRODUCER || pr->kind == GS_CONSUMER)
		return GS_EKIND;
	if (c->p != pr->p)
		return GS_EPIPELINE;
	if (o->max_demand > ((size_t)1 << 31))
		return GS_EINVAL;
	if (o->cancel != GS_CANCEL_PERMANENT &&
	    o->cancel != GS_CANCEL_TRANSIENT &&
	    o->cancel != GS_CANCEL_TEMPORARY)
		return GS_EINVAL;
	if (o->selector && pr->dconf.kind != GS_DISPATCH_BROADCAST)
		return GS_EINVAL;
	return GS_OK;
}

static gs_sub *sub_new(gs_stage *c, gs_stage *pr, const gs_sub_opts *o,
		       size_t max, size_t min)
{
	size_t size = (sizeof(gs_sub) + GS__CACHELINE - 1) &
		      ~(size_t)(GS__CACHELINE - 1);
	gs_sub *sub = aligned_alloc(GS__CACHELINE, size);
	if (!sub)
		return NULL;
	memset(sub, 0, sizeof *sub);
	if (gs__ring_init(&sub->ring, max)) {
		free(sub);
		return NULL;
	}
	atomic_init(&sub->refs, 2);
	sub->producer = pr;
	sub->consumer = c;
	sub->max_demand = max;
	sub->min_demand = min;
	sub->demand = (gs__demand){ .max = max, .min = min };
	sub->cancel = o->cancel;
	atomic_init(&sub->manual, o->manual);
	sub->selector = o->selector;
	sub->selector_arg = o->selector_arg;
	return sub;
}

/* Queues both attach messages, or neither if either stage has closed its
 * inbox. Lock order: pipeline, then inboxes by address. */
static gs_err post_attach(gs_sub *sub, gs__msg *in, gs__msg *out)
{
	gs_stage *a = sub->consumer, *b = sub->producer;
	if ((uintptr_t)a > (uintptr_t)b) {
		gs_stage *t = a;
		a = b;
		b = t;
	}
	pthread_mutex_lock(&a->inbox_lock);
	pthread_mutex_lock(&b->inbox_lock);
	bool closed = a->inbox_closed || b->inbox_closed;
	if (!closed) {
		gs__inbox_push_locked(sub->consumer, in);
		gs__inbox_push_locked(sub->producer, out);
	}
	pthread_mutex_unlock(&b->inbox_lock);
	pthread_mutex_unlock(&a->inbox_lock);
	return closed ? GS_ECLOSED : GS_OK;
}

GS__API gs_err gs_subscribe(gs_stage *c, gs_stage *pr, const gs_sub_opts *opts,
			    gs_sub **out)
{
	gs_sub_opts o = opts ? *opts : (gs_sub_opts){ 0 };
	gs_err err = check(c, pr, &o);
	if (err)
		return err;
	GS__REFUSE_NEWER(&c->p->opts, opts, GS_SUB_OPTS_VERSION);
	size_t max = o.max_demand ? o.max_demand : 1000;
	size_t min = o.min_demand == GS_MIN_DEMAND_ZERO ? 0
		     : o.min_demand                     ? o.min_demand
							: max / 2;
	if (min >= max)
		return GS_EDEMAND;

	gs_sub *sub = sub_new(c, pr, &o, max, min);
	gs__msg *in = gs__msg_new(GS__MSG_ATTACH_IN, sub, 0);
	gs__msg *outm = gs__msg_new(GS__MSG_ATTACH_OUT, sub, 0);
	if (!sub || !in || !outm) {
		if (sub)
			gs__ring_fini(&sub->ring);
		free(sub);
		free(in);
		free(outm);
		return GS_ENOMEM;
	}
	gs_pipeline *p = c->p;
	pthread_mutex_lock(&p->lock);
	err = reaches(p, c, pr) ? GS_ECYCLE
				: gs__partition_claim(pr, sub, o.partition);
	if (!err) {
		err = post_attach(sub, in, outm);
		if (err)
			gs__partition_release(sub);
	}
	if (!err) {
		sub->live = true;
		sub->next = p->subs;
		p->subs = sub;
	}
	pthread_mutex_unlock(&p->lock);
	if (err) {
		gs__ring_fini(&sub->ring);
		free(sub);
		free(in);
		free(outm);
		return err;
	}
	gs__wake(c);
	gs__wake(pr);
	if (out)
		*out = sub;
	return GS_OK;
}

GS__API gs_err gs_cancel(gs_sub *sub)
{
	if (!sub)
		return GS_EINVAL;
	int live = GS__CONS_LIVE;
	if (atomic_compare_exchange_strong_explicit(
		    &sub->cons_cancel, &live, GS__CONS_CANCEL,
		    memory_order_acq_rel, memory_order_relaxed))
		gs__wake(sub->producer);
	return GS_OK;
}

GS__API gs_err gs_ask(gs_sub *sub, size_t n)
{
	if (!sub)
		return GS_EINVAL;
	if (!atomic_load_explicit(&sub->manual, memory_order_acquire))
		return GS_ESTATE;
	if (n) {
		atomic_fetch_add_explicit(&sub->asked, n, memory_order_relaxed);
		gs__grant(sub, n);
	}
	return GS_OK;
}

GS__API gs_err gs_sub_manual(gs_sub *sub)
{
	if (!sub)
		return GS_EINVAL;
	if (!gs__is_current(sub->consumer))
		return GS_ETHREAD;
	if (sub->received || sub->demand.outstanding ||
	    atomic_load_explicit(&sub->asked, memory_order_relaxed))
		return GS_ESTATE;
	atomic_store_explicit(&sub->manual, true, memory_order_release);
	return GS_OK;
}

GS__API gs_stage *gs_sub_producer(const gs_sub *sub)
{
	return sub ? sub->producer : NULL;
}

GS__API gs_stage *gs_sub_consumer(const gs_sub *sub)
{
	return sub ? sub->consumer : NULL;
}
