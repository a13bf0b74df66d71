// SPDX-License-Identifier: MIT
/* Allocation for the SPSC pointer ring; the hot operations are inline in
 * ring.h. */
#include "ring.h"

#include <stdlib.h>

static size_t capacity_for(size_t min_capacity)
{
	size_t cap = 2;
	while (cap < min_capacity)
		cap <<= 1;
	return cap;
}

size_t gs__ring_bytes(size_t min_capacity)
{
	return capacity_for(min_capacity) * sizeof(void *);
}

int gs__ring_init(gs__ring *r, size_t min_capacity)
{
	if (min_capacity > ((size_t)1 << 31))
		return -1;
	size_t cap = capacity_for(min_capacity);
	void **slots = calloc(cap, sizeof *slots);
	if (!slots)
		return -1;
	atomic_init(&r->tail, 0);
	atomic_init(&r->head, 0);
	GS__ATOMIC(r->tail);
	GS__ATOMIC(r->head);
	r->head_seen = 0;
	r->tail_seen = 0;
	r->mask = (uint32_t)(cap - 1);
	r->slots = slots;
	return 0;
}

void gs__ring_fini(gs__ring *r)
{
	free(r->slots);
	r->slots = NULL;
}
