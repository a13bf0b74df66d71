// SPDX-License-Identifier: MIT
/*
 * Exponential backoff for the spin loops of idle threads (executor workers,
 * parked blocking stages): each round spins twice as long as the one
 * before, from 16 to 4096 iterations, then yields the CPU so that a
 * runnable thread on the same core is not held up, and starts again. The
 * rounds are Concurrency Kit's ck_backoff_eb where the build found it
 * (GS_HAVE_CK), or the same compiler-barrier loop written here, so that
 * the library still builds with nothing but a C compiler and pthreads.
 * Neither touches memory, so ThreadSanitizer sees nothing to check.
 */
#ifndef GS_BACKOFF_H
#define GS_BACKOFF_H

#include <sched.h>

#ifdef GS_HAVE_CK
#include <ck_backoff.h>
#endif

#define GS__BACKOFF_FIRST 16u
#define GS__BACKOFF_LAST 4096u

/* One round of backoff; *spins starts at GS__BACKOFF_FIRST. */
static inline void gs__backoff(unsigned *spins)
{
#ifdef GS_HAVE_CK
	ck_backoff_eb(spins);
#else
	/* The barrier keeps the compiler from removing the empty loop. */
	for (unsigned i = 0; i < *spins; i++)
		__asm__ __volatile__("" ::: "memory");
	*spins <<= 1;
#endif
	if (*spins > GS__BACKOFF_LAST) {
		*spins = GS__BACKOFF_FIRST;
		sched_yield();
	}
}

#endif
