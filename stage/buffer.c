// SPDX-License-Identifier: MIT
/* The producer buffer: a bounded, growable circular array of events. */
#include "buffer.h"

#include <stdlib.h>
#include <string.h>

void gs__buffer_init(gs__buffer *b, size_t limit, gs_keep keep)
{
	*b = (gs__buffer){ .limit = limit, .keep = keep };
}

void gs__buffer_fini(gs__buffer *b)
{
	free(b->slots);
	b->slots = NULL;
	b->cap = b->count = b->head = 0;
}

/* Makes room for `need` events in total; false when out of memory. The
 * array starts small since most buffers stay empty. */
static int grow(gs__buffer *b, size_t need)
{
	if (need <= b->cap)
		return 1;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	void **slots = malloc(cap * sizeof *slots);
	if (!slots)
		return 0;
	size_t first = b->cap - b->head < b->count ? b->cap - b->head
						   : b->count;
	if (b->count) {
		memcpy(slots, b->slots + b->head, first * sizeof *slots);
		memcpy(slots + first, b->slots,
		       (b->count - first) * sizeof *slots);
	}
	free(b->slots);
	b->slots = slots;
	b->cap = cap;
	b->head = 0;
	return 1;
}

bool gs__buffer_reserve(gs__buffer *b, size_t n)
{
	return grow(b, b->count + n);
}

static void drop_oldest(gs__buffer *b, size_t n, gs__drop_fn drop, void *ctx)
{
	while (n) {
		void **ev = NULL;
		size_t k = gs__buffer_peek(b, &ev);
		if (k > n)
			k = n;
		drop(ctx, ev, k);
		gs__buffer_consume(b, k);
		n -= k;
	}
}

size_t gs__buffer_put(gs__buffer *b, void *const *events, size_t n,
		      gs__drop_fn drop, void *ctx)
{
	size_t dropped = 0;
	size_t room = b->limit - b->count;
	if (n > room) {
		if (b->keep == GS_KEEP_FIRST) {
			drop(ctx, events + room, n - room);
			dropped = n - room;
			n = room;
		} else {
			/* Keep the newest `limit` of old + new. */
			size_t excess = n - room;
			size_t old = excess < b->count ? excess : b->count;
			drop_oldest(b, old, drop, ctx);
			if (excess > old) {
				drop(ctx, events, excess - old);
				events += excess - old;
				n -= excess - old;
			}
			dropped = excess;
		}
	}
	if (n && !grow(b, b->count + n)) {
		drop(ctx, events, n);
		return dropped + n;
	}
	for (size_t i = 0; i < n; i++)
		b->slots[(b->head + b->count + i) & (b->cap - 1)] = events[i];
	b->count += n;
	return dropped;
}

size_t gs__buffer_peek(const gs__buffer *b, void ***events)
{
	if (!b->count)
		return 0;
	size_t contiguous = b->cap - b->head;
	*events = b->slots + b->head;
	return b->count < contiguous ? b->count : contiguous;
}

void gs__buffer_consume(gs__buffer *b, size_t n)
{
	b->taken += n;
	b->count -= n;
	b->head = b->count ? (b->head + n) & (b->cap - 1) : 0;
}

void gs__buffer_clear(gs__buffer *b, gs__drop_fn drop, void *ctx)
{
	drop_oldest(b, b->count, drop, ctx);
}
