// SPDX-License-Identifier: MIT
/*
 * The broadcast dispatcher, accounted as GenStage's BroadcastDispatcher:
 * each subscription keeps the demand it has beyond what every subscription
 * can take (`bdemand`); only a rise in the smallest of them becomes new
 * demand (`waiting`, events all can take). A subscription joins owing what
 * is already promised, so it starts with the next dispatched event. Events
 * a selector rejects count as taken by the stream and are given back to
 * that subscription as demand.
 *
 * Ownership: every subscription gets the same pointer, so none may free it.
 * When the producer has an event_free, it keeps each dispatched event in a
 * window, numbered in dispatch order, and calls event_free exactly once per
 * event when every subscription is done with it: its consumer's
 * handle_events has returned, or its selector turned it down, or it was
 * dropped when that subscription ended. A subscription is done with every
 * event numbered below the one at its ring's head (or with all of them once
 * its ring is empty), which the producer learns from the head index the
 * consumer publishes after handle_events: no counter per event and nothing
 * for the consumer to do. A subscription that ends while its consumer
 * still reads what it was sent (gs_cancel) lingers here until its ring is
 * empty. Once the producer has finished, the last subscription to let go
 * releases what is left.
 */
#include <stdint.h>
#include <stdlib.h>

#include "annotate.h"
#include "internal.h"

/* Events filtered per step, on the stack. */
#define CHUNK 256

typedef struct bstate {
	uint64_t waiting; /* events every subscription can take */
	/* The window (only with an event_free): events dispatched and not
	 * yet released, numbered from `base`; `next` numbers the next one. */
	gs__buffer window;
	uint64_t base, next;
	/* Ended subscriptions whose consumer still reads (own). */
	gs_sub **lingering;
	size_t n_lingering, cap_lingering;
	/* Pipeline lock: subscriptions not yet let go at both ends, and
	 * whether the producer has finished (the window is theirs then). */
	size_t linked;
	bool orphaned;
} bstate;

static bstate *state_of(const gs_stage *s)
{
	return s->dstate;
}

static bool windowed(const gs_stage *s)
{
	return s->event_free != NULL;
}

static gs_err init(gs_stage *s)
{
	bstate *b = calloc(1, sizeof *b);
	if (!b)
		return GS_ENOMEM;
	gs__buffer_init(&b->window, GS_UNBOUNDED, GS_KEEP_FIRST);
	s->dstate = b;
	return GS_OK;
}

/* Hands events numbered below `upto` to event_free, in order. */
static void release_upto(gs_stage *s, uint64_t upto)
{
	bstate *b = state_of(s);
	while (b->base < upto) {
		void **ev = NULL;
		size_t n = gs__buffer_peek(&b->window, &ev);
		if (n > upto - b->base)
			n = (size_t)(upto - b->base);
		for (size_t i = 0; i < n; i++)
			s->event_free(ev[i], s->event_free_arg);
		gs__buffer_consume(&b->window, n);
		b->base += n;
		gs__count(&s->st_released, n);
	}
}

/* The first event numbered `sub` is not yet done with. */
static uint64_t done_upto(const gs_stage *s, gs_sub *sub)
{
	uint32_t head = (uint32_t)atomic_load_explicit(&sub->ring.head,
						       memory_order_acquire);
	GS__HA(&sub->ring.head);
	uint32_t tail = (uint32_t)atomic_load_explicit(&sub->ring.tail,
						       memory_order_relaxed);
	if (head == tail)
		return state_of(s)->next;
	return sub->seq_of[head & sub->ring.mask];
}

/* Lets go of lingering subscriptions whose consumer has read all it was
 * sent (or has gone); returns the lowest number they are not done with. */
static uint64_t lingering_done(gs_stage *s)
{
	bstate *b = state_of(s);
	uint64_t upto = b->next;
	for (size_t i = 0; i < b->n_lingering;) {
		gs_sub *sub = b->lingering[i];
		uint64_t d = done_upto(s, sub);
		if (d == b->next ||
		    atomic_load_explicit(&sub->cons_cancel,
					 memory_order_acquire) ==
			    GS__CONS_GONE) {
			GS__HA(&sub->cons_cancel);
			b->lingering[i] = b->lingering[--b->n_lingering];
			gs__detach(sub);
			continue;
		}
		if (d < upto)
			upto = d;
		i++;
	}
	return upto;
}

static void release_done(gs_stage *s)
{
	uint64_t upto = lingering_done(s);
	for (size_t i = 0; i < s->n_outs; i++) {
		uint64_t d = done_upto(s, s->outs[i]);
		if (d < upto)
			upto = d;
	}
	release_upto(s, upto);
}

/* An ended subscription whose consumer may still read: the producer keeps
 * its end until the ring is empty. False (detach now) when the producer
 * is finishing, or has no window, or no memory to keep it. */
static bool linger(gs_stage *s, gs_sub *sub)
{
	bstate *b = state_of(s);
	if (!windowed(s) || s->stopping)
		return false;
	if (b->n_lingering == b->cap_lingering) {
		size_t cap = b->cap_lingering ? b->cap_lingering * 2 : 4;
		gs_sub **a = realloc(b->lingering, cap * sizeof *a);
		if (!a)
			return false;
		b->lingering = a;
		b->cap_lingering = cap;
	}
	b->lingering[b->n_lingering++] = sub;
	return true;
}

static void attach(gs_stage *s, gs_sub *sub)
{
	sub->bdemand = -(int64_t)state_of(s)->waiting;
	if (windowed(s) && !sub->seq_of) {
		sub->seq_of = malloc(gs__ring_capacity(&sub->ring) *
				     sizeof *sub->seq_of);
		if (!sub->seq_of) {
			gs__log(s, GS_LOG_ERROR,
				"out of memory for a subscription");
			gs__stop(s, GS_ENOMEM);
		}
	}
}

static uint64_t collect(gs_stage *s, bool *changed)
{
	bstate *b = state_of(s);
	for (size_t i = 0; i < s->n_outs;) {
		if (gs__end_if_cancelled(s, i, changed))
			continue;
		gs_sub *sub = s->outs[i++];
		uint64_t g = atomic_load_explicit(&sub->granted,
						  memory_order_acquire);
		GS__HA(&sub->granted);
		sub->bdemand += (int64_t)(g - sub->granted_seen);
		sub->granted_seen = g;
	}
	if (windowed(s))
		release_done(s);
	int64_t min = INT64_MAX;
	for (size_t i = 0; i < s->n_outs; i++)
		if (s->outs[i]->bdemand < min)
			min = s->outs[i]->bdemand;
	if (s->n_outs && min > 0) {
		for (size_t i = 0; i < s->n_outs; i++)
			s->outs[i]->bdemand -= min;
		b->waiting += (uint64_t)min;
	}
	atomic_store_explicit(&s->st_pending, b->waiting, memory_order_relaxed);
	return b->waiting;
}

/* Pushes the k events numbered from `seq` that `sub` wants. */
static void send(gs_stage *s, gs_sub *sub, void *const *events, size_t k,
		 uint64_t seq)
{
	void *picked[CHUNK];
	uint64_t numbers[CHUNK];
	for (size_t at = 0; at < k; at += CHUNK) {
		size_t m = k - at < CHUNK ? k - at : CHUNK, n = 0;
		for (size_t j = 0; j < m; j++) {
			if (sub->selector &&
			    !sub->selector(sub->selector_arg, events[at + j]))
				continue;
			picked[n] = events[at + j];
			numbers[n++] = seq + at + j;
		}
		if (sub->seq_of) {
			uint32_t t = (uint32_t)atomic_load_explicit(
				&sub->ring.tail, memory_order_relaxed);
			for (size_t j = 0; j < n; j++)
				sub->seq_of[(t + j) & sub->ring.mask] =
					numbers[j];
		}
		gs__push(s, sub, picked, n);
		sub->bdemand += (int64_t)(m - n);
		gs__count(&sub->st_filtered, m - n);
	}
}

static size_t dispatch(gs_stage *s, void *const *events, size_t n)
{
	bstate *b = state_of(s);
	if (!s->n_outs)
		return 0;
	size_t k = n < b->waiting ? n : b->waiting;
	/* A subscription whose first demand has not arrived yet holds the
	 * stream back rather than receive more than it asked. */
	for (size_t i = 0; i < s->n_outs && k; i++) {
		size_t room = gs__sub_room(s->outs[i]);
		if (room < k)
			k = room;
	}
	if (!k)
		return 0;
	/* Without room in the window the events wait in the buffer. */
	if (windowed(s) && (!gs__buffer_reserve(&b->window, k) ||
			    gs__buffer_put(&b->window, events, k, NULL, NULL)))
		return 0;
	for (size_t i = 0; i < s->n_outs; i++)
		send(s, s->outs[i], events, k, b->next);
	b->next += k;
	b->waiting -= k;
	atomic_store_explicit(&s->st_pending, b->waiting, memory_order_relaxed);
	return k;
}

/* Under the pipeline lock. */
static void link(gs_stage *s, gs_sub *sub)
{
	(void)sub;
	state_of(s)->linked++;
}

/* Under the pipeline lock: true if the caller must release the window now
 * (after unlocking), the producer having finished. */
static bool unlink_sub(gs_stage *s, gs_sub *sub)
{
	(void)sub;
	bstate *b = state_of(s);
	return --b->linked == 0 && b->orphaned;
}

static void release_all(gs_stage *s)
{
	if (windowed(s))
		release_upto(s, state_of(s)->next);
}

/* The producer finishes: its subscriptions' consumers may still be
 * reading, so the window goes with the last of them. */
static void drop(gs_stage *s)
{
	bstate *b = state_of(s);
	if (!b)
		return;
	while (b->n_lingering)
		gs__detach(b->lingering[--b->n_lingering]);
	gs_pipeline *p = s->p;
	pthread_mutex_lock(&p->lock);
	bool now = !b->orphaned && b->linked == 0;
	b->orphaned = true;
	pthread_mutex_unlock(&p->lock);
	if (now)
		release_all(s);
}

/* At the stage's free, after everything else let go. */
static void free_state(gs_stage *s)
{
	bstate *b = state_of(s);
	if (!b)
		return;
	release_all(s);
	gs__buffer_fini(&b->window);
	free(b->lingering);
	free(b);
	s->dstate = NULL;
}

const gs__dispatcher_ops gs__dispatch_broadcast_ops = {
	.init = init,
	.collect = collect,
	.dispatch = dispatch,
	.attach = attach,
	.linger = linger,
	.link = link,
	.unlink = unlink_sub,
	.release = release_all,
	.shares_events = true,
	.drop = drop,
	.free = free_state,
};
