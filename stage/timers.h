// SPDX-License-Identifier: MIT
/* A stage's pending timers: a binary min-heap by deadline, FIFO among equal
 * deadlines. Only the owning stage's thread touches it. */
#ifndef GS_TIMERS_H
#define GS_TIMERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct gs__timer {
	uint64_t deadline_ns;
	uint64_t order; /* arrival, to keep FIFO among equal deadlines */
	void *msg;
} gs__timer;

typedef struct gs__timers {
	gs__timer *heap;
	size_t n, cap;
	uint64_t arrivals;
} gs__timers;

/* 0, or -1 when out of memory (the timer is not added). */
int gs__timers_add(gs__timers *t, uint64_t deadline_ns, void *msg);

/* The earliest deadline, or UINT64_MAX when there is none. */
uint64_t gs__timers_next(const gs__timers *t);

/* Removes the earliest timer and returns its message. */
void *gs__timers_pop(gs__timers *t);

void gs__timers_fini(gs__timers *t);

#endif
