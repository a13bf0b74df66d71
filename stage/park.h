// SPDX-License-Identifier: MIT
/*
 * Waking and parking a stage's worker. A waker bumps the stage's sequence
 * number and makes a futex call only if the worker has announced it is
 * asleep, so a busy stage is never woken by a system call. A worker with
 * nothing to do spins briefly (a futex wake across cores costs 6-50 us
 * here) and then sleeps until the sequence moves or its next timer is due.
 */
#ifndef GS_PARK_H
#define GS_PARK_H

#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* How long an idle worker waits for work before it sleeps, and how much of
 * that it may spend in a pure spin when stages outnumber cores (the rest it
 * spends yielding, so a runnable stage gets the core). */
#ifndef GS_SPIN_NS
#define GS_SPIN_NS 50000
#endif
#ifndef GS_PURE_SPIN_NS
#define GS_PURE_SPIN_NS 2000
#endif

static inline void gs__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline void gs__wake(gs_stage *s)
{
	/* seq_cst on both sides (here: bump, then read `sleeping`; in
	 * gs__park: set `sleeping`, then read seq) makes sure at least one
	 * side sees the other: no wake-up is lost. */
	atomic_fetch_add_explicit(&s->seq, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&s->sleeping, memory_order_seq_cst))
		syscall(SYS_futex, &s->seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL,
			0);
}

/* Sleeps until seq moves away from `seen` or the clock passes deadline_ns
 * (UINT64_MAX: no deadline). */
static inline void gs__sleep(gs_stage *s, uint32_t seen, uint64_t deadline_ns)
{
	atomic_store_explicit(&s->sleeping, 1, memory_order_seq_cst);
	while (atomic_load_explicit(&s->seq, memory_order_seq_cst) == seen) {
		struct timespec ts, *timeout = NULL;
		if (deadline_ns != UINT64_MAX) {
			uint64_t now = gs__now_ns();
			if (now >= deadline_ns)
				break;
			ts.tv_sec = (time_t)((deadline_ns - now) / 1000000000u);
			ts.tv_nsec = (long)((deadline_ns - now) % 1000000000u);
			timeout = &ts;
		}
		syscall(SYS_futex, &s->seq, FUTEX_WAIT_PRIVATE, seen, timeout,
			NULL, 0);
	}
	atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
}

/* Returns once seq differs from `seen` (the value read before the worker
 * last looked for work), or once the clock passes deadline_ns. */
static inline void gs__park(gs_stage *s, uint32_t seen, uint64_t deadline_ns)
{
	uint64_t start = gs__now_ns();
	bool crowded = atomic_load_explicit(&s->p->crowded,
					    memory_order_relaxed);
	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(&s->seq, memory_order_acquire) != seen)
			return;
		gs__cpu_relax();
		if (i % 64)
			continue;
		uint64_t now = gs__now_ns();
		if (now >= deadline_ns)
			return;
		if (now - start > GS_SPIN_NS)
			break;
		if (crowded && now - start > GS_PURE_SPIN_NS)
			sched_yield();
	}
	gs__sleep(s, seen, deadline_ns);
}

#endif
