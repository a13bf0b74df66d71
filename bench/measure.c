// SPDX-License-Identifier: MIT
/*
 * What several topologies measure the same way: the process's CPU time and
 * resident memory, percentiles of recorded latencies, and the CPU an idle
 * pipeline burns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

uint64_t gsb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double gsb_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long gsb_rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size, resident;
	int got = f ? fscanf(f, "%ld %ld", &size, &resident) : 0;
	if (f)
		fclose(f);
	return got == 2 ? resident * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

void gsb_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts))
		continue;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

void gsb_percentiles(uint64_t *ns, size_t n, double *p50_us, double *p99_us)
{
	if (!n) {
		*p50_us = *p99_us = -1;
		return;
	}
	qsort(ns, n, sizeof *ns, cmp_u64);
	*p50_us = (double)ns[n / 2] / 1000.0;
	*p99_us = (double)ns[n * 99 / 100] / 1000.0;
}

/* The CPU time and context switches of every thread but the caller's:
 * the measuring thread's own sleep costs a little, and the noise of its
 * wake-up on a busy machine is as large as the figure looked for. */
typedef struct others {
	double cpu_s;
	long switches;
} others;

static others others_now(void)
{
	struct rusage all, me;
	getrusage(RUSAGE_THREAD, &me);
	getrusage(RUSAGE_SELF, &all);
	/* The caller's clock, then at once the process's: the difference
	 * holds the caller's few nanoseconds in between, so the figure
	 * errs by about that much either way (clamped at zero). */
	struct timespec mine;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mine);
	double proc = gsb_cpu_s();
	return (others){
		proc - ((double)mine.tv_sec + (double)mine.tv_nsec * 1e-9),
		all.ru_nvcsw + all.ru_nivcsw - me.ru_nvcsw - me.ru_nivcsw
	};
}

void gsb_measure_idle(gsb_latency *lat)
{
	gsb_sleep_ms(GSB_IDLE_AFTER_MS);
	others before = others_now();
	gsb_sleep_ms(GSB_IDLE_MS);
	others after = others_now();
	lat->idle_switches = after.switches - before.switches;
	double cpu = after.cpu_s - before.cpu_s;
	lat->idle_cpu = (cpu > 0 ? cpu : 0) / (GSB_IDLE_MS / 1000.0);
}

bool gsb_wait_quiet(double timeout_s)
{
	double end = gsb_now() + timeout_s;
	for (;;) {
		double c0 = gsb_cpu_s();
		gsb_sleep_ms(10);
		/* Less than a twentieth of a core over 10 ms. */
		if (gsb_cpu_s() - c0 < 0.0005)
			return true;
		if (gsb_now() > end)
			return false;
	}
}
