// SPDX-License-Identifier: MIT
/*
 * Latency: one event in flight (max_demand 1), each carrying the time of
 * its gs_emit; the consumer records how long it took to reach
 * handle_events. Then the pipeline idles with nothing to do, and the CPU it
 * burns meanwhile is measured: once the spin budget is spent it must sleep.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <genstage/genstage.h>

#include "bench.h"

#define IDLE_MS 200

typedef struct stamper {
	_Alignas(64) uint64_t left;
} stamper;

typedef struct timer {
	_Alignas(64) uint64_t *ns;
	_Atomic uint64_t count;
	uint64_t cap;
	const gsb_params *params;
} timer;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Emits one stamped event per demand until `left` runs out, then stays
 * idle (no gs_done: the idle pipeline is what is measured next). */
static int stamp_demand(void *state, gs_stage *stage, size_t demand)
{
	stamper *s = state;
	for (; demand && s->left; demand--, s->left--) {
		void *ev = (void *)(uintptr_t)now_ns();
		gs_err err = gs_emit(stage, &ev, 1);
		if (err)
			return err;
	}
	return GS_OK;
}

static int time_events(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	(void)stage;
	(void)from;
	timer *t = state;
	uint64_t now = now_ns();
	uint64_t c = atomic_load_explicit(&t->count, memory_order_relaxed);
	for (size_t i = 0; i < n && c < t->cap; i++)
		t->ns[c++] = now - (uintptr_t)events[i];
	atomic_store_explicit(&t->count, c, memory_order_release);
	gsb_progress(t->params, c);
	return GS_OK;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static const gs_stage_ops stamp_ops = { .handle_demand = stamp_demand };
static const gs_stage_ops time_ops = { .handle_events = time_events };

void gsb_run_latency(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	(void)t;
	stamper *s = aligned_alloc(64, sizeof *s);
	timer tm = { .ns = malloc(p->events * sizeof *tm.ns),
		     .cap = p->events,
		     .params = p };
	gs_pipeline *pl = NULL;
	gs_stage *prod, *cons;
	gs_err err = s && tm.ns ? gs_pipeline_new(NULL, &pl) : GS_ENOMEM;
	if (s)
		s->left = p->events;
	if (!err)
		err = gs_stage_new(pl, GS_PRODUCER, &stamp_ops, s, NULL, &prod);
	if (!err)
		err = gs_stage_new(pl, GS_CONSUMER, &time_ops, &tm, NULL,
				   &cons);
	if (!err)
		err = gs_subscribe(
			cons, prod,
			&(gs_sub_opts){ .max_demand = 1,
					.min_demand = GS_MIN_DEMAND_ZERO },
			NULL);
	double t0 = gsb_now();
	if (!err)
		err = gs_pipeline_start(pl);
	while (!err && atomic_load_explicit(&tm.count, memory_order_acquire) <
			       p->events)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	r->seconds = gsb_now() - t0;
	double idle = 0;
	if (!err) {
		/* Let the spin budget run out, then measure the idle. */
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
		double c0 = cpu_seconds();
		nanosleep(&(struct timespec){ 0, IDLE_MS * 1000000L }, NULL);
		idle = (cpu_seconds() - c0) / (IDLE_MS / 1000.0);
		gs_pipeline_stop(pl, GS_STOP_NOW);
	}
	uint64_t n = atomic_load(&tm.count);
	r->err = err;
	r->delivered = n;
	r->checksum = n;
	r->expected = p->events;
	if (!err && n) {
		qsort(tm.ns, n, sizeof *tm.ns, cmp_u64);
		double p50 = (double)tm.ns[n / 2] / 1000.0;
		double p99 = (double)tm.ns[n * 99 / 100] / 1000.0;
		snprintf(r->note, sizeof r->note,
			 "one-way gs_emit -> handle_events: p50 %.2f us (%s, "
			 "target < 2), p99 %.2f us (%s, target < 15); idle "
			 "CPU %.1f%% of a core (%s, target < 5%%)",
			 p50, p50 < 2 ? "PASS" : "FAIL", p99,
			 p99 < 15 ? "PASS" : "FAIL", idle * 100,
			 idle < 0.05 ? "PASS" : "FAIL");
	} else if (err) {
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(err));
	}
	gs_pipeline_free(pl);
	free(tm.ns);
	free(s);
}
