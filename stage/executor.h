// SPDX-License-Identifier: MIT
/*
 * The executor's private side: how a scheduled stage is made runnable, and
 * the calls the stage and pipeline code make into the executor.
 *
 * A scheduled stage's `sched` word holds three bits. WOKEN: a wake-up is
 * pending (the stage sits in a run queue, or was woken while it ran).
 * RUNNING: a worker runs it. PAUSED: not started, or finished; wakes set
 * WOKEN and queue nothing. A waker sets WOKEN with one read-modify-write
 * and queues the stage only if no bit was set before, so a stage is in at
 * most one queue and never runs on two workers at once; the worker clears
 * WOKEN (again with a read-modify-write) before it looks for work, so every
 * wake-up is seen either by that look or by the final attempt to go idle.
 */
#ifndef GS_EXECUTOR_PRIVATE_H
#define GS_EXECUTOR_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "genstage/executor.h"

typedef struct gs_stage gs_stage;

enum {
	GS__SCHED_WOKEN = 1,
	GS__SCHED_RUNNING = 2,
	GS__SCHED_PAUSED = 4,
};

/* gs__executor_get: a reference to `ex`, or to the process's shared
 * executor (made on first use) when `ex` is NULL; gs__executor_put gives
 * one back and frees the executor with the last. */
gs_err gs__executor_get(gs_executor *ex, gs_executor **out);
void gs__executor_put(gs_executor *ex);

/* gs__executor_wake: makes scheduled stage `s` runnable (see above). From
 * any thread. A worker queues it in its own "next" slot, to run as soon as
 * the current stage yields (cache-hot, no system call); other threads use
 * the executor's shared queue. */
void gs__executor_wake(gs_stage *s);

/* gs__executor_start: queues a stage that was PAUSED before its start. */
void gs__executor_start(gs_stage *s);

/* gs__executor_timer: wake `s` once the clock passes deadline_ns (its
 * earliest timer), from the stage's own run. gs__executor_forget drops
 * what the executor holds for a stage that is finishing. */
void gs__executor_timer(gs_stage *s, uint64_t deadline_ns);
void gs__executor_forget(gs_stage *s);
/* The entries of ex's timer heap: one per stage waiting for a timer (the
 * executor suite checks it). */
size_t gs__executor_timers(gs_executor *ex);

/* gs__stage_run (stage loop, run.c): runs scheduled stage `s` for one
 * quantum on the calling worker; true if it must be queued again. */
bool gs__stage_run(gs_stage *s);

/* gs__scratch_release (subscription.c): frees the calling thread's chunk
 * scratch array; each worker and stage thread calls it as it exits. */
void gs__scratch_release(void);

#endif
