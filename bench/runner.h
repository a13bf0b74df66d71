// SPDX-License-Identifier: MIT
/*
 * Running one topology in a child process of its own, so that each gets
 * its own peak RSS (ru_maxrss is process-wide and only ever grows) and a
 * crash or a hang in one cannot take the others with it.
 */
#ifndef GSB_RUNNER_H
#define GSB_RUNNER_H

#include <stdbool.h>

#include "bench.h"
#include "machine.h"

typedef struct gsb_outcome {
	gsb_result result;
	long peak_rss_kib;
	double cpu_s;        /* user + system time of the whole child */
	long vol_switches;   /* the whole child: blocked (futex, sleep) */
	long invol_switches; /* the whole child: preempted */
	/* CPUs kept busy by other processes, on average over the run (the
	 * machine's busy time less the child's, over the run's length);
	 * -1 if unknown. A noisy round shows here. */
	double others_cpus;
	char error[224]; /* empty when the run completed and checked out */
} gsb_outcome;

/* Shared memory the child publishes its progress in; one per harness. */
_Atomic uint64_t *gsb_progress_new(void);

/* Runs `t` on `events` events in a forked child (confined to t->cpus
 * CPUs, if set, before anything starts), printing a progress
 * line on stderr if it runs long and killing it after timeout_s seconds.
 * Returns true when the run completed with the right checksum; otherwise
 * out->error says what went wrong. Call only while single-threaded. */
bool gsb_run_forked(const gsb_topology *t, uint64_t events, double timeout_s,
		    _Atomic uint64_t *progress, gsb_outcome *out);

/* Peak RSS of a child that does nothing: the floor every run starts from.
 * -1 if it could not be measured. */
long gsb_rss_floor_kib(void);

#endif
