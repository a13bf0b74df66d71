// SPDX-License-Identifier: MIT
/* The timer heap behind gs_send_after. */
#include "timers.h"

#include <stdlib.h>

static int before(const gs__timer *a, const gs__timer *b)
{
	return a->deadline_ns != b->deadline_ns
		       ? a->deadline_ns < b->deadline_ns
		       : a->order < b->order;
}

static void swap(gs__timer *a, gs__timer *b)
{
	gs__timer t = *a;
	*a = *b;
	*b = t;
}

int gs__timers_add(gs__timers *t, uint64_t deadline_ns, void *msg)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		gs__timer *h = realloc(t->heap, cap * sizeof *h);
		if (!h)
			return -1;
		t->heap = h;
		t->cap = cap;
	}
	size_t i = t->n++;
	t->heap[i] = (gs__timer){ deadline_ns, t->arrivals++, msg };
	while (i && before(&t->heap[i], &t->heap[(i - 1) / 2])) {
		swap(&t->heap[i], &t->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	return 0;
}

uint64_t gs__timers_next(const gs__timers *t)
{
	return t->n ? t->heap[0].deadline_ns : UINT64_MAX;
}

void *gs__timers_pop(gs__timers *t)
{
	void *msg = t->heap[0].msg;
	t->heap[0] = t->heap[--t->n];
	for (size_t i = 0;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < t->n && before(&t->heap[l], &t->heap[m]))
			m = l;
		if (r < t->n && before(&t->heap[r], &t->heap[m]))
			m = r;
		if (m == i)
			break;
		swap(&t->heap[i], &t->heap[m]);
		i = m;
	}
	return msg;
}

void gs__timers_fini(gs__timers *t)
{
	free(t->heap);
	*t = (gs__timers){ 0 };
}
