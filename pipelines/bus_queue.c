// SPDX-License-Identifier: MIT
/*
 * A subscription's queue.
 *
 * The queue is a ring of envelope pointers. Its producer side is written
 * only under the bus's publish lock, so one thread at a time: slots, then
 * `head` with release. Its consumer end, `tail`, only ever moves by
 * compare-and-swap, because three parties take from it: its stage, a
 * publisher dropping the oldest event, and an immediate close or
 * unsubscribe. A taker copies the slots it saw, then claims them by moving
 * tail past them; if tail moved first, it retries. Slots are atomics so
 * that a stale read of a slot being reused is defined (and discarded).
 *
 * The stage that drains it (bus_drain.c) waits for it without a lock: it
 * sets `hungry`, then looks at the queue again; a publisher shows new
 * events, then clears `hungry` and, if it was set, wakes the stage with a
 * gs_cast.
 */
#include <stdlib.h>

#include "bus_internal.h"

gs_err gs__bus_queue_init(gs_bus_sub *s)
{
	size_t cap = 2;
	while (cap < s->queue_size)
		cap *= 2;
	s->slots = calloc(cap, sizeof *s->slots);
	if (!s->slots)
		return GS_ENOMEM;
	GS__ATOMICS(s->slots, cap * sizeof *s->slots);
	s->mask = cap - 1;
	return GS_OK;
}

void gs__bus_queue_fini(gs_bus_sub *s)
{
	free((void *)s->slots);
	s->slots = NULL;
}

size_t gs__bus_queue_show(gs_bus_sub *const *subs, size_t n,
			  gs_bus_sub **hungry)
{
	/* Pairs with the takers' acquire of head: the envelopes (and the
	 * payloads) before it are theirs to read. */
	for (size_t i = 0; i < n; i++) {
		GS__HB(&subs[i]->head);
		atomic_store_explicit(&subs[i]->head, subs[i]->put,
				      memory_order_release);
	}
	/* Pairs with the fence in gs__bus_queue_next: either the stage's
	 * second look sees the new head, or this sees its hungry. One fence
	 * for every queue of the call: it waits for the stores above, and a
	 * second one would wait for nothing but cost as much. */
	atomic_thread_fence(memory_order_seq_cst);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (atomic_load_explicit(&subs[i]->hungry,
					 memory_order_relaxed) &&
		    atomic_exchange(&subs[i]->hungry, false))
			hungry[k++] = subs[i];
	return k;
}

void gs__bus_queue_wake(gs_bus_sub *s, bool locked)
{
	if (gs_cast(s->driver, NULL) == GS_OK)
		return;
	/* No message could be queued (out of memory, or the stage has
	 * finished): the next publish tries again, and so does anyone who
	 * waits on the bus meanwhile (for room, or for a close or an
	 * unsubscribe), who must not wait for a stage nobody woke. */
	atomic_store(&s->hungry, true);
	gs_bus *bus = s->bus;
	if (!locked)
		pthread_mutex_lock(&bus->lock);
	bus->wake_failed = true;
	pthread_cond_broadcast(&bus->room);
	if (!locked)
		pthread_mutex_unlock(&bus->lock);
}

size_t gs__bus_queue_take(gs_bus_sub *s, gs__bus_env **out, size_t max)
{
	uint64_t t = atomic_load_explicit(&s->tail, memory_order_acquire);
	for (;;) {
		uint64_t h = atomic_load_explicit(&s->head,
						  memory_order_acquire);
		GS__HA(&s->head);
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

size_t gs__bus_queue_next(gs_bus_sub *s, gs__bus_env **out, size_t max)
{
	for (;;) {
		size_t n = gs__bus_queue_take(s, out, max);
		if (n)
			return n;
		atomic_store_explicit(&s->hungry, true, memory_order_relaxed);
		/* Pairs with the fence in gs__bus_queue_show: a publish that
		 * showed events before it is caught by this second look; one
		 * after it finds hungry set. */
		atomic_thread_fence(memory_order_seq_cst);
		if (!gs__bus_queue_depth(s))
			return 0;
		atomic_store_explicit(&s->hungry, false, memory_order_relaxed);
	}
}

uint64_t gs__bus_queue_depth(const gs_bus_sub *s)
{
	uint64_t t = atomic_load_explicit(&s->tail, memory_order_relaxed);
	uint64_t h = atomic_load_explicit(&s->head, memory_order_relaxed);
	return h > t ? h - t : 0;
}
