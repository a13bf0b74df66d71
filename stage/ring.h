// SPDX-License-Identifier: MIT
/*
 * A bounded single-producer/single-consumer ring of pointers with bulk
 * operations. It replaces ck_ring on the hot path for two reasons: ck_ring
 * moves one item per call and re-reads the peer's index each time (a cache
 * line from the other core), and ck_pr's inline-assembly fences are
 * invisible to ThreadSanitizer. Here each side caches the other's index and
 * refreshes it only when the cached view says full (or empty), and C11
 * atomics give the same x86-64 instructions while TSan can check them.
 *
 * Indices run free (they wrap at 2^32); capacity is a power of two and the
 * ring holds all of it.
 */
#ifndef GS_RING_H
#define GS_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "annotate.h"

#define GS__CACHELINE 64

typedef struct gs__ring {
	/* Producer's line: its index and its view of the consumer's. */
	_Alignas(GS__CACHELINE) _Atomic uint32_t tail;
	uint32_t head_seen;
	/* Consumer's line. */
	_Alignas(GS__CACHELINE) _Atomic uint32_t head;
	uint32_t tail_seen;
	/* Read-only after init. */
	_Alignas(GS__CACHELINE) uint32_t mask;
	void **slots;
} gs__ring;

/* Capacity is the next power of two >= min_capacity (at least 2). Returns
 * 0, or -1 when out of memory or min_capacity exceeds 2^31. */
int gs__ring_init(gs__ring *r, size_t min_capacity);
/* What the slots of such a ring take. */
size_t gs__ring_bytes(size_t min_capacity);
void gs__ring_fini(gs__ring *r);

static inline size_t gs__ring_capacity(const gs__ring *r)
{
	return (size_t)r->mask + 1;
}

/* Producer side: how many slots are free, looking at the consumer's index
 * only when the cached view shows fewer than `want`. */
static inline size_t gs__ring_space(gs__ring *r, size_t want)
{
	uint32_t t = (uint32_t)atomic_load_explicit(&r->tail,
						    memory_order_relaxed);
	size_t cap = gs__ring_capacity(r);
	if (cap - (uint32_t)(t - r->head_seen) < want) {
		/* Acquire pairs with the consumer's release of the head: the
		 * slots it gave back are no longer being read. */
		r->head_seen = (uint32_t)atomic_load_explicit(
			&r->head, memory_order_acquire);
		GS__HA(&r->head);
	}
	return cap - (uint32_t)(t - r->head_seen);
}

/* Producer side: appends up to n items and publishes them with one store;
 * returns how many went in. */
static inline size_t gs__ring_push(gs__ring *r, void *const *items, size_t n)
{
	uint32_t t = (uint32_t)atomic_load_explicit(&r->tail,
						    memory_order_relaxed);
	size_t cap = gs__ring_capacity(r);
	size_t space = cap - (uint32_t)(t - r->head_seen);
	if (space < n) {
		r->head_seen = (uint32_t)atomic_load_explicit(
			&r->head, memory_order_acquire);
		GS__HA(&r->head);
		space = cap - (uint32_t)(t - r->head_seen);
	}
	if (n > space)
		n = space;
	size_t at = t & r->mask;
	size_t first = cap - at < n ? cap - at : n;
	memcpy(r->slots + at, items, first * sizeof *items);
	memcpy(r->slots, items + first, (n - first) * sizeof *items);
	/* Release pairs with the consumer's acquire of the tail: the slots
	 * are written before they are visible. */
	GS__HB(&r->tail);
	atomic_store_explicit(&r->tail, t + (uint32_t)n, memory_order_release);
	return n;
}

/* Consumer side: points *items at up to max items readable in place
 * (contiguous, so possibly fewer than are queued); returns the count. The
 * items stay in the ring until gs__ring_release. */
static inline size_t gs__ring_peek(gs__ring *r, void ***items, size_t max)
{
	uint32_t h = (uint32_t)atomic_load_explicit(&r->head,
						    memory_order_relaxed);
	if (r->tail_seen == h) {
		r->tail_seen = (uint32_t)atomic_load_explicit(
			&r->tail, memory_order_acquire);
		GS__HA(&r->tail);
	}
	size_t avail = (uint32_t)(r->tail_seen - h);
	size_t at = h & r->mask;
	size_t contiguous = gs__ring_capacity(r) - at;
	if (avail > contiguous)
		avail = contiguous;
	if (avail > max)
		avail = max;
	*items = r->slots + at;
	return avail;
}

/* Consumer side: copies the next n items (n <= what is queued, as a peek
 * or gs__ring_count showed) into out, across the wrap; they stay in the
 * ring until gs__ring_release. */
static inline void gs__ring_gather(const gs__ring *r, void **out, size_t n)
{
	uint32_t h = (uint32_t)atomic_load_explicit(&r->head,
						    memory_order_relaxed);
	size_t at = h & r->mask;
	size_t first = gs__ring_capacity(r) - at < n ? gs__ring_capacity(r) - at
						     : n;
	memcpy(out, r->slots + at, first * sizeof *out);
	memcpy(out + first, r->slots, (n - first) * sizeof *out);
}

/* Consumer side: how many items are queued, refreshing the view of the
 * producer's index. */
static inline size_t gs__ring_ready(gs__ring *r)
{
	uint32_t h = (uint32_t)atomic_load_explicit(&r->head,
						    memory_order_relaxed);
	r->tail_seen = (uint32_t)atomic_load_explicit(&r->tail,
						      memory_order_acquire);
	GS__HA(&r->tail);
	return (uint32_t)(r->tail_seen - h);
}

/* Consumer side: gives n peeked slots back to the producer. */
static inline void gs__ring_release(gs__ring *r, size_t n)
{
	uint32_t h = (uint32_t)atomic_load_explicit(&r->head,
						    memory_order_relaxed);
	GS__HB(&r->head);
	atomic_store_explicit(&r->head, h + (uint32_t)n, memory_order_release);
}

/* Either side, or after both have stopped: items queued now (exact only
 * when the other side is quiet). */
static inline size_t gs__ring_count(gs__ring *r)
{
	size_t n = (uint32_t)(atomic_load_explicit(&r->tail,
						   memory_order_acquire) -
			      atomic_load_explicit(&r->head,
						   memory_order_acquire));
	GS__HA(&r->tail);
	GS__HA(&r->head);
	return n;
}

#endif
