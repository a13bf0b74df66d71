// SPDX-License-Identifier: MIT
/*
 * The two futex calls the engine parks and wakes threads with, and an event
 * count on their model of Concurrency Kit's ck_ec32: a 31-bit counter
 * packed with a "someone sleeps" flag in one word, so that signalling costs
 * a system call only when a thread is actually asleep on it. ck_ec itself
 * wants the caller's futex and clock callbacks and its increments are inline
 * assembly that ThreadSanitizer cannot see; these are plain C11 atomics.
 */
#ifndef GS_FUTEX_H
#define GS_FUTEX_H

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t gs__now_ns(void);

/* Sleeps while *word == val, until woken or until the monotonic clock
 * passes deadline_ns (UINT64_MAX: no deadline). Spurious returns are
 * allowed: callers re-check. */
static inline void gs__futex_wait(_Atomic uint32_t *word, uint32_t val,
				  uint64_t deadline_ns)
{
	struct timespec ts, *timeout = NULL;
	if (deadline_ns != UINT64_MAX) {
		uint64_t now = gs__now_ns();
		if (now >= deadline_ns)
			return;
		ts.tv_sec = (time_t)((deadline_ns - now) / 1000000000u);
		ts.tv_nsec = (long)((deadline_ns - now) % 1000000000u);
		timeout = &ts;
	}
	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, timeout, NULL, 0);
}

static inline void gs__futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

#define GS__EC_SLEEPER 0x80000000u

/* The counter's value, to be compared after looking for work. */
static inline uint32_t gs__ec_value(_Atomic uint32_t *ec)
{
	return atomic_load_explicit(ec, memory_order_acquire) & ~GS__EC_SLEEPER;
}

/* Moves the counter on and wakes the sleeper if there is one. The
 * read-modify-write orders the caller's earlier writes before the waiter's
 * next look (acq_rel on both sides): no wake-up is lost. */
static inline void gs__ec_inc(_Atomic uint32_t *ec)
{
	uint32_t old = atomic_load_explicit(ec, memory_order_relaxed);
	uint32_t next;
	do
		next = (old + 1) & ~GS__EC_SLEEPER;
	while (!atomic_compare_exchange_weak_explicit(
		ec, &old, next, memory_order_acq_rel, memory_order_relaxed));
	if (old & GS__EC_SLEEPER)
		gs__futex_wake(ec, INT_MAX);
}

/* Sleeps until the counter moves away from `seen` or deadline_ns passes. */
static inline void gs__ec_wait(_Atomic uint32_t *ec, uint32_t seen,
			       uint64_t deadline_ns)
{
	for (;;) {
		uint32_t v = atomic_load_explicit(ec, memory_order_acquire);
		if ((v & ~GS__EC_SLEEPER) != seen)
			return;
		if (deadline_ns != UINT64_MAX && gs__now_ns() >= deadline_ns)
			return;
		if (!(v & GS__EC_SLEEPER) &&
		    !atomic_compare_exchange_weak_explicit(
			    ec, &v, v | GS__EC_SLEEPER, memory_order_acq_rel,
			    memory_order_relaxed))
			continue;
		gs__futex_wait(ec, seen | GS__EC_SLEEPER, deadline_ns);
	}
}

#endif
