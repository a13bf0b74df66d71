// SPDX-License-Identifier: MIT
/*
 * Exponential backoff for the spin loops of idle threads (executor workers,
 * parked blocking stages): each round spins twice as long as the one
 * before, from 16 to 4096 compiler-barrier iterations, then yields the CPU
 * so that a runnable thread on the same core is not held up, and starts
 * again. Written here rather than taken from Concurrency Kit so that the
 * library builds with nothing but a C compiler and pthreads.
 */
#ifndef GS_BACKOFF_H
#define GS_BACKOFF_H

#include <sched.h>

#define GS__BACKOFF_FIRST 16u
#define GS__BACKOFF_LAST 4096u

/* One round of backoff; *spins starts at GS__BACKOFF_FIRST. */
static inline void gs__backoff(unsigned *spins)
{
	/* The barrier keeps the compiler from removing the empty loop. */
	for (unsigned i = 0; i < *spins; i++)
		__asm__ __volatile__("" ::: "memory");
	*spins <<= 1;
	if (*spins > GS__BACKOFF_LAST) {
		*spins = GS__BACKOFF_FIRST;
		sched_yield();
	}
}

#endif
