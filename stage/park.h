// SPDX-License-Identifier: MIT
/*
 * Parking a blocking stage's own thread. Such a stage's callbacks are slow
 * by nature, so its thread spins only briefly for new work (with the
 * exponential backoff of backoff.h) and then sleeps on its event count
 * until a waker moves it or its next timer is due.
 */
#ifndef GS_PARK_H
#define GS_PARK_H

#include "backoff.h"
#include "futex.h"

/* How long an idle blocking stage looks for work before it sleeps. */
#ifndef GS_THREAD_SPIN_NS
#define GS_THREAD_SPIN_NS 20000
#endif

/* Returns once the event count differs from `seen` or the clock passes
 * deadline_ns. */
static inline void gs__park(_Atomic uint32_t *ec, uint32_t seen,
			    uint64_t deadline_ns)
{
	uint64_t start = gs__now_ns();
	unsigned backoff = GS__BACKOFF_FIRST;
	for (;;) {
		if (gs__ec_value(ec) != seen)
			return;
		uint64_t now = gs__now_ns();
		if (now >= deadline_ns)
			return;
		if (now - start > GS_THREAD_SPIN_NS)
			break;
		gs__backoff(&backoff);
	}
	gs__ec_wait(ec, seen, deadline_ns);
}

#endif
