// SPDX-License-Identifier: MIT
/*
 * A producer's buffer: events emitted without demand wait here, oldest
 * first, in a growable circular array bounded by `limit`. Only the owning
 * stage's thread touches it.
 */
#ifndef GS_BUFFER_H
#define GS_BUFFER_H

#include <stdbool.h>
#include <stddef.h>

#include "genstage/stage.h"

typedef struct gs__buffer {
	void **slots;
	size_t cap;  /* allocated slots, a power of two (0 before use) */
	size_t head; /* index of the oldest event */
	size_t count;
	size_t limit; /* most events held; GS_UNBOUNDED for no limit */
	gs_keep keep;
	uint64_t taken; /* events that ever left it (sent on, or dropped) */
} gs__buffer;

/* Called with events the buffer had to drop, in order. */
typedef void (*gs__drop_fn)(void *ctx, void *const *events, size_t n);

void gs__buffer_init(gs__buffer *b, size_t limit, gs_keep keep);
void gs__buffer_fini(gs__buffer *b);

/* Makes room for n more events without dropping any; false (nothing
 * changed) when out of memory. */
bool gs__buffer_reserve(gs__buffer *b, size_t n);

/* Appends n events; what does not fit (per `keep`, or when growing fails)
 * goes to drop. Returns how many were dropped. */
size_t gs__buffer_put(gs__buffer *b, void *const *events, size_t n,
		      gs__drop_fn drop, void *ctx);

/* Points *events at the oldest events, contiguous; returns their count. */
size_t gs__buffer_peek(const gs__buffer *b, void ***events);

/* Removes the n oldest events (n <= what peek returned). */
void gs__buffer_consume(gs__buffer *b, size_t n);

/* Hands every held event to drop and empties the buffer. */
void gs__buffer_clear(gs__buffer *b, gs__drop_fn drop, void *ctx);

#endif
