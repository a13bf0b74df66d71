// SPDX-License-Identifier: MIT
/*
 * A subscription's queue, and the producer stage ("feeder") that moves it
 * into the subscription's handler stage as demand allows.
 *
 * The queue is a ring of envelope pointers. Its producer side is written
 * only under the bus's publish lock, so one thread at a time: slots, then
 * `head` with release. Its consumer end, `tail`, only ever moves by
 * compare-and-swap, because three parties take from it: the feeder, a
 * publisher dropping the oldest event, and an immediate close or
 * unsubscribe. A taker copies the slots it saw, then claims them by moving
 * tail past them; if tail moved first, it retries. Slots are atomics so
 * that a stale read of a slot being reused is defined (and discarded).
 *
 * The feeder waits for the queue without a lock: it sets `hungry`, then
 * looks at the queue again; a publisher shows new events, then clears
 * `hungry` and, if it was set, wakes the feeder with a gs_cast.
 */
#include <stdlib.h>

#include "bus_internal.h"

/* Envelopes per gs_emit. */
#define CHUNK 256

gs_err gs__bus_queue_init(gs_bus_sub *s)
{
	size_t cap = 2;
	while (cap < s->queue_size)
		cap *= 2;
	s->slots = calloc(cap, sizeof *s->slots);
	if (!s->slots)
		return GS_ENOMEM;
	s->mask = cap - 1;
	return GS_OK;
}

void gs__bus_queue_fini(gs_bus_sub *s)
{
	free((void *)s->slots);
	s->slots = NULL;
}

void gs__bus_queue_put(gs_bus_sub *s, gs__bus_env *e)
{
	atomic_store_explicit(&s->slots[s->put & s->mask], e,
			      memory_order_relaxed);
	s->put++;
}

bool gs__bus_queue_show(gs_bus_sub *s)
{
	/* Pairs with the takers' acquire of head. */
	atomic_store_explicit(&s->head, s->put, memory_order_release);
	/* Pairs with the fence in pump: either the feeder's re-check sees
	 * the new head, or this sees its hungry. */
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&s->hungry, memory_order_relaxed) &&
	       atomic_exchange(&s->hungry, false);
}

void gs__bus_queue_wake(gs_bus_sub *s)
{
	if (gs_cast(s->feeder, NULL) != GS_OK)
		/* No message could be queued (out of memory, or the feeder
		 * has finished): the next publish tries again. */
		atomic_store(&s->hungry, true);
}

size_t gs__bus_queue_take(gs_bus_sub *s, gs__bus_env **out, size_t max)
{
	uint64_t t = atomic_load_explicit(&s->tail, memory_order_acquire);
	for (;;) {
		uint64_t h = atomic_load_explicit(&s->head,
						  memory_order_acquire);
		size_t n = h - t < max ? (size_t)(h - t) : max;
		if (!n)
			return 0;
		for (size_t i = 0; i < n; i++)
			out[i] = atomic_load_explicit(
				&s->slots[(t + i) & s->mask],
				memory_order_relaxed);
		/* Success releases the slots to the producer (acq_rel: the
		 * copies above happen before it may reuse them). */
		if (atomic_compare_exchange_weak_explicit(&s->tail, &t, t + n,
							  memory_order_acq_rel,
							  memory_order_acquire))
			return n;
	}
}

uint64_t gs__bus_queue_depth(const gs_bus_sub *s)
{
	uint64_t t = atomic_load_explicit(&s->tail, memory_order_relaxed);
	uint64_t h = atomic_load_explicit(&s->head, memory_order_relaxed);
	return h > t ? h - t : 0;
}

/* Emits what the queue holds, up to the demand owed; when the queue runs
 * dry it either finishes (closing) or waits as hungry. */
static int pump(gs_bus_sub *s, gs_stage *stage)
{
	gs__bus_env *chunk[CHUNK];
	for (;;) {
		size_t n = 0;
		if (s->owed) {
			size_t max = s->owed < CHUNK ? (size_t)s->owed : CHUNK;
			n = gs__bus_queue_take(s, chunk, max);
		}
		if (n) {
			s->owed -= n;
			gs_err err = gs_emit(stage, (void *const *)chunk, n);
			if (err) /* stopping: they never reach the handler */
				gs__bus_drop(s, chunk, n, NULL);
			continue;
		}
		if (gs__bus_queue_depth(s) && s->owed)
			continue; /* lost a race with another taker */
		if (!gs__bus_queue_depth(s) &&
		    atomic_load_explicit(&s->closing, memory_order_acquire))
			return gs_done(stage);
		if (!s->owed)
			return GS_OK; /* more demand will call us */
		atomic_store_explicit(&s->hungry, true, memory_order_relaxed);
		/* Pairs with the fence in gs__bus_queue_show: a publish that
		 * showed events before it is caught by this re-check; one
		 * after it finds hungry set. */
		atomic_thread_fence(memory_order_seq_cst);
		if (!gs__bus_queue_depth(s) && !atomic_load(&s->closing))
			return GS_OK;
		atomic_store(&s->hungry, false);
	}
}

static int feeder_demand(void *state, gs_stage *stage, size_t demand)
{
	gs_bus_sub *s = state;
	s->owed += demand;
	return pump(s, stage);
}

static int feeder_cast(void *state, gs_stage *stage, void *msg)
{
	(void)msg;
	return pump(state, stage);
}

/* Envelopes the engine could not deliver (the pipeline stops now, or the
 * handler's stage went away) come back here. */
static void feeder_drop(void *event, void *arg)
{
	gs__bus_env *e = event;
	gs__bus_drop(arg, &e, 1, NULL);
}

static void feeder_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	(void)reason;
	/* Nothing can reach the queue any more: the bus took the
	 * subscription off its routes before asking it to close, and a stop
	 * drops what is left. */
	gs__bus_drop_queue(state);
}

gs_err gs__bus_feeder_new(gs_bus_sub *s)
{
	static const gs_stage_ops ops = {
		.handle_demand = feeder_demand,
		.handle_cast = feeder_cast,
		.terminate = feeder_terminate,
	};
	char name[GS__BUS_NAME_MAX];
	snprintf(name, sizeof name, "%.50s.queue", s->name);
	return gs_stage_new(s->bus->p, GS_PRODUCER, &ops, s,
			    &(gs_stage_opts){ .name = name,
					      .buffer_size = GS_UNBOUNDED,
					      .event_free = feeder_drop,
					      .event_free_arg = s },
			    &s->feeder);
}
