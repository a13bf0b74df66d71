// SPDX-License-Identifier: MIT
/*
 * What valgrind's race detectors, helgrind and DRD, need to be told about
 * the engine's lock-free hand-offs. They understand pthread mutexes and
 * condition variables but not C11 atomics or futexes, so without these
 * notes every event that crosses a ring, every demand grant and every
 * stage that moves between workers looks like a data race, in the library
 * and in the user's callbacks that touch the events. A build configured
 * with -Dvalgrind=true defines GS_VALGRIND and these macros issue
 * valgrind's client requests; otherwise they expand to nothing, and the
 * library is the same code as without them.
 *
 * The rule they follow: an atomic is never itself a data race, so every
 * atomic the engine shares is marked (GS__ATOMIC) where it is initialized;
 * where a release store or read-modify-write publishes plain memory (ring
 * slots and the events in them, a reason written before its flag, a
 * stage's own state as it moves to another worker), GS__HB(addr) goes just
 * before it and GS__HA(addr) just after each acquire of the same atomic.
 * Words that only count or signal and publish nothing of their own
 * (statistics, the executor's idle counts, a blocking stage's event
 * count) get no edges, so that the tools still see the races a user's
 * callbacks have with each other.
 */
#ifndef GS_ANNOTATE_H
#define GS_ANNOTATE_H

#ifdef GS_VALGRIND

/* DRD takes helgrind's requests for these, so one header serves both. */
#include <valgrind/helgrind.h>

/* Everything this thread did so far happens before what a thread does
 * after a later GS__HA on the same address. */
#define GS__HB(addr) ANNOTATE_HAPPENS_BEFORE(addr)
#define GS__HA(addr) ANNOTATE_HAPPENS_AFTER(addr)
/* `var` is an atomic (or memory only glibc's atomics touch, as a mutex's
 * own bytes): its accesses are not checked. */
#define GS__ATOMIC(var) VALGRIND_HG_DISABLE_CHECKING(&(var), sizeof(var))
/* The same for `bytes` bytes of atomics from p (an array of them). */
#define GS__ATOMICS(p, bytes) VALGRIND_HG_DISABLE_CHECKING((p), (bytes))

#else

#define GS__HB(addr) ((void)0)
#define GS__HA(addr) ((void)0)
#define GS__ATOMIC(var) ((void)0)
#define GS__ATOMICS(p, bytes) ((void)0)

#endif

#endif
