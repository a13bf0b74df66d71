// SPDX-License-Identifier: MIT
/*
 * Subscriptions at run time: attaching each end in its own stage, the
 * consumer's side of the demand protocol, and how each end lets go. A
 * subscription's ring is freed by whichever end lets go last (graph.c
 * then frees the rest unless the user holds the handle).
 */
#include <stdlib.h>
#include <string.h>

#include "annotate.h"
#include "internal.h"

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

/* The stage's shape, for observers on other threads (observe.c). */
static void mirror(gs_stage *s)
{
	atomic_store_explicit(&s->st_ins, (uint32_t)s->n_ins,
			      memory_order_relaxed);
	atomic_store_explicit(&s->st_outs, (uint32_t)s->n_outs,
			      memory_order_relaxed);
}

static void remove_at(gs_sub **arr, size_t *n, size_t idx)
{
	memmove(arr + idx, arr + idx + 1, (*n - idx - 1) * sizeof *arr);
	(*n)--;
}

void gs__grant(gs_sub *sub, uint64_t n)
{
	/* One writer, the consumer (manual asks too: see release_asked);
	 * release pairs with the producer's acquire, which must also see the
	 * slots released before this. */
	GS__HB(&sub->granted);
	uint64_t g = atomic_load_explicit(&sub->granted, memory_order_relaxed);
	atomic_store_explicit(&sub->granted, g + n, memory_order_release);
	gs__wake(sub->producer);
}

/* On the consumer's run: what gs_ask asked of a manual subscription
 * becomes the producer's demand as far as max_demand beyond what the
 * consumer has received; the rest waits until earlier events are taken.
 * Granted whole, it reached handle_demand at once, and what the ring
 * could not hold overflowed the producer's buffer and was dropped. */
static void release_asked(gs_sub *sub)
{
	uint64_t asked = atomic_load_explicit(&sub->asked,
					      memory_order_relaxed);
	uint64_t cap = sub->received + sub->max_demand;
	uint64_t upto = asked < cap ? asked : cap;
	uint64_t granted = atomic_load_explicit(&sub->granted,
						memory_order_relaxed);
	if (upto > granted)
		gs__grant(sub, upto - granted);
}

void gs__detach(gs_sub *sub)
{
	GS__HB(&sub->ends);
	if (atomic_fetch_sub_explicit(&sub->ends, 1, memory_order_acq_rel) != 1)
		return;
	GS__HA(&sub->ends);
	/* Both ends are gone: what is still in the ring was never delivered
	 * and goes back to its producer's event_free, unless the events are
	 * shared (broadcast), which the dispatcher releases once each. */
	gs_stage *pr = sub->producer;
	size_t dropped = 0;
	void **ev = NULL;
	size_t n;
	while ((n = gs__ring_peek(&sub->ring, &ev, SIZE_MAX))) {
		if (pr->disp->shares_events)
			gs__count_dropped(pr, n);
		else
			gs__drop(pr, ev, n);
		gs__ring_release(&sub->ring, n);
		dropped += n;
	}
	atomic_fetch_add_explicit(&sub->st_dropped, dropped,
				  memory_order_relaxed);
	if (dropped)
		gs__log(sub->producer, GS_LOG_WARN,
			"dropped %zu events in flight to '%s'", dropped,
			sub->consumer->name);
	gs__ring_fini(&sub->ring);
	gs__sub_ended(sub);
}

/* Runs handle_subscribe, if any, for `role`; its result. */
static int subscribed(gs_stage *s, gs_sub *sub, gs_role role)
{
	if (!s->ops.handle_subscribe)
		return GS_OK;
	uint64_t t0 = gs__now_ns();
	int r = s->ops.handle_subscribe(s->state, s, sub, role);
	gs__busy_add(s, t0);
	return r;
}

void gs__attach_out(gs_stage *s, gs_sub *sub)
{
	bool tracked = push_sub(&s->outs, &s->n_outs, &s->cap_outs, sub);
	mirror(s);
	if (!tracked) {
		/* Cannot track it: end it at once so the consumer moves on. */
		gs__sync_report(sub, GS_ENOMEM);
		sub->prod_reason = GS_ENOMEM;
		GS__HB(&sub->prod_end);
		atomic_store_explicit(&sub->prod_end, 1, memory_order_release);
		gs__wake(sub->consumer);
		gs__detach(sub);
		gs__stop(s, GS_ENOMEM);
		return;
	}
	if (s->disp->attach)
		s->disp->attach(s, sub);
	int r = s->stopping ? GS_ECLOSED : subscribed(s, sub, GS_ROLE_PRODUCER);
	gs__sync_report(sub, r);
	if (r && !s->stopping)
		gs__stop(s, r);
}

void gs__attach_in(gs_stage *s, gs_sub *sub)
{
	bool tracked = push_sub(&s->ins, &s->n_ins, &s->cap_ins, sub);
	mirror(s);
	if (!tracked) {
		gs__sync_report(sub, GS_ENOMEM);
		sub->cons_reason = GS_ENOMEM;
		GS__HB(&sub->cons_cancel);
		atomic_store_explicit(&sub->cons_cancel, GS__CONS_GONE,
				      memory_order_release);
		gs__wake(sub->producer);
		gs__detach(sub);
		gs__stop(s, GS_ENOMEM);
		return;
	}
	if (s->stopping || s->done) {
		/* A done stage takes no new input. */
		gs__sync_report(sub, GS_ECLOSED);
		if (!s->stopping)
			gs__release_in(s, s->n_ins - 1, GS_OK);
		return;
	}
	s->subscribing = sub; /* gs_sub_manual is for this callback */
	int r = subscribed(s, sub, GS_ROLE_CONSUMER);
	s->subscribing = NULL;
	gs__sync_report(sub, r);
	if (r) {
		gs__stop(s, r);
		return;
	}
	if (atomic_load_explicit(&sub->manual, memory_order_relaxed))
		release_asked(sub); /* asked before it was attached */
	else
		gs__grant(sub, gs__demand_start(&sub->demand));
}

void gs__end_out(gs_stage *s, size_t idx, int reason, int notify_reason,
		 bool notify)
{
	gs_sub *sub = s->outs[idx];
	remove_at(s->outs, &s->n_outs, idx);
	mirror(s);
	sub->prod_reason = reason;
	GS__HB(&sub->prod_end);
	atomic_store_explicit(&sub->prod_end, 1, memory_order_release);
	gs__wake(sub->consumer);
	if (notify && s->ops.handle_cancel) {
		uint64_t t0 = gs__now_ns();
		int r = s->ops.handle_cancel(s->state, s, sub, GS_ROLE_PRODUCER,
					     notify_reason);
		gs__busy_add(s, t0);
		if (r)
			gs__stop(s, r);
	}
	if (!s->disp->linger || !s->disp->linger(s, sub))
		gs__detach(sub);
}

void gs__release_in(gs_stage *s, size_t idx, int reason)
{
	gs_sub *sub = s->ins[idx];
	remove_at(s->ins, &s->n_ins, idx);
	mirror(s);
	sub->cons_reason = reason;
	GS__HB(&sub->cons_cancel);
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

/* Whether the consumer's own cancel, with this reason, ended sub. */
static bool cancelled_by_us(const gs_sub *sub, int reason)
{
	return atomic_load_explicit(&sub->cons_cancel, memory_order_relaxed) ==
		       GS__CONS_CANCEL &&
	       atomic_load_explicit(&sub->cancel_why, memory_order_relaxed) ==
		       reason;
}

/* The producer's end went away and everything it sent has been handled
 * (or will never be: see read_inputs): tell the callback, then apply the
 * cancel mode. */
static void end_in(gs_stage *s, size_t idx)
{
	gs_sub *sub = s->ins[idx];
	int reason = sub->prod_reason;
	bool by_us = cancelled_by_us(sub, reason);
	gs_cancel_mode mode = sub->cancel;
	remove_at(s->ins, &s->n_ins, idx);
	mirror(s);
	int r = GS_OK;
	if (s->ops.handle_cancel) {
		uint64_t t0 = gs__now_ns();
		r = s->ops.handle_cancel(s->state, s, sub, GS_ROLE_CONSUMER,
					 reason);
		gs__busy_add(s, t0);
	}
	gs__detach(sub); /* it may be freed now */
	if (r) {
		gs__stop(s, r);
		return;
	}
	if (by_us && (reason == GS_ECANCELED || reason == GS_OK)) {
		/* Our own plain cancel keeps the stage running, unless a
		 * drain came while it was on its way and found this input,
		 * and left the stage to finish with its producers. */
		if (s->draining && !s->n_ins)
			finish(s);
		return;
	}
	/* A cancel with another reason is applied like a producer's
	 * failure with it, by the cancel mode. */
	/* A producer that failed stops a permanent or transient consumer
	 * with its reason; a temporary one keeps running. A producer that
	 * finished ends a permanent consumer. A consumer whose last input
	 * has gone finishes if some input of it finished normally, whatever
	 * the order, or if the pipeline drains; one whose every input failed
	 * (temporary) otherwise runs on. */
	/* "Last" counts the inputs still to be attached from the backlog. */
	bool last = !s->n_ins && !s->backlog_attaches;
	if (reason != GS_OK) {
		if (mode != GS_CANCEL_TEMPORARY)
			gs__stop(s, reason);
		else if (last && (s->inputs_finished || s->draining))
			finish(s); /* a drain: nothing more will come */
		return;
	}
	s->inputs_finished++;
	if (mode == GS_CANCEL_PERMANENT || last)
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
	size_t capacity = gs__ring_capacity(&sub->ring);
	size_t chunk = manual ? sub->max_demand
			      : gs__demand_chunk(&sub->demand);
	if (chunk > capacity)
		chunk = capacity;
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
	gs__count(&sub->st_received, n);
	uint64_t t0 = gs__now_ns();
	int r = s->ops.handle_events(s->state, s, sub, ev, n);
	gs__busy_add(s, t0);
	gs__ring_release(&sub->ring, n);
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
	if (manual) {
		release_asked(sub);
		return true;
	}
	size_t ask = gs__demand_taken(&sub->demand, n);
	if (ask)
		gs__grant(sub, ask); /* wakes the producer */
	return true;
}

/*
 * A producer-consumer takes input only as far as demand downstream
 * reaches; the rest waits in the ring. After its producer has ended, that
 * wait is for nothing when the end stops the stage anyway (the producer's
 * failure, or a cancel from its end, by the cancel mode: with its reason,
 * as soon as it is known), or when
 * a drain leaves nobody downstream to ask. Then the input ends at once, and
 * what the ring still holds goes back to the producer's event_free,
 * counted (gs__detach).
 */
static bool waits_for_nothing(const gs_stage *s, const gs_sub *sub)
{
	if (s->kind != GS_PRODUCER_CONSUMER)
		return false;
	int reason = sub->prod_reason;
	/* Not the stage's own cancel: what was sent before it is still
	 * delivered (gs_cancel_reason). */
	if (reason != GS_OK && sub->cancel != GS_CANCEL_TEMPORARY &&
	    !cancelled_by_us(sub, reason))
		return true;
	return s->draining && !s->n_outs;
}

/* One pass over the inputs, a chunk from each, starting from a different
 * one each time so that no producer is starved. A producer-consumer reads
 * only while its downstream has demand it has not yet met: back-pressure
 * passes through it. */
bool gs__read_inputs(gs_stage *s)
{
	bool progress = false;
	size_t n = s->n_ins;
	/* Draining with nobody downstream: nothing will ever ask for what it
	 * could take, so it lets go of its inputs, as a consumer cancelling
	 * them (the first reason wins: this repeats nothing). Each then ends
	 * as its producer answers, what waits in it is dropped
	 * (waits_for_nothing), and the producer, if it is a producer-consumer
	 * left with nobody downstream, does the same: a chain empties from
	 * the bottom up. */
	if (s->kind == GS_PRODUCER_CONSUMER && s->draining && !s->n_outs)
		for (size_t k = 0; k < n; k++)
			(void)gs_cancel_reason(s->ins[k], GS_ECANCELED);
	for (size_t k = 0; k < n && !s->stopping && !s->done; k++) {
		size_t idx = (s->in_cursor + k) % n;
		gs_sub *sub = s->ins[idx];
		if (atomic_load_explicit(&sub->manual, memory_order_relaxed))
			release_asked(sub); /* gs_ask from another thread */
		bool may_take = s->kind == GS_PRODUCER_CONSUMER ? s->owed > 0
				: s->hooks.pull                 ? s->credit > 0
								: true;
		if (may_take && take_chunk(s, sub)) {
			progress = true;
			continue;
		}
		if (!atomic_load_explicit(&sub->prod_end, memory_order_acquire))
			continue;
		/* Before prod_reason is read (waits_for_nothing, end_in):
		 * helgrind must see the acquire first. */
		GS__HA(&sub->prod_end);
		if (gs__ring_count(&sub->ring) == 0 ||
		    (!may_take && waits_for_nothing(s, sub))) {
			end_in(s, idx);
			return true; /* the array changed under the loop */
		}
	}
	s->in_cursor++;
	return progress;
}

GS__API gs_err gs_ask(gs_sub *sub, size_t n)
{
	if (!sub)
		return GS_EINVAL;
	if (!atomic_load_explicit(&sub->manual, memory_order_acquire))
		return GS_ESTATE;
	GS__HA(&sub->manual);
	if (n > GS_MAX_DEMAND)
		return GS_EINVAL;
	if (!n)
		return GS_OK;
	atomic_fetch_add_explicit(&sub->asked, n, memory_order_relaxed);
	/* The consumer turns it into demand (release_asked): at once from
	 * its own callbacks, else on its next run. */
	if (gs__is_current(sub->consumer))
		release_asked(sub);
	else
		gs__wake(sub->consumer);
	return GS_OK;
}

GS__API gs_err gs_sub_manual(gs_sub *sub)
{
	if (!sub)
		return GS_EINVAL;
	/* Elsewhere, even in the consumer's other callbacks, the automatic
	 * demand may be granted already, or be granted as the subscription
	 * attaches, and nothing would ask again. */
	if (!gs__is_current(sub->consumer) || sub->consumer->subscribing != sub)
		return GS_ETHREAD;
	if (sub->received || sub->demand.outstanding ||
	    atomic_load_explicit(&sub->asked, memory_order_relaxed))
		return GS_ESTATE;
	GS__HB(&sub->manual);
	atomic_store_explicit(&sub->manual, true, memory_order_release);
	return GS_OK;
}
