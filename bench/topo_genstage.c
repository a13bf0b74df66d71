// SPDX-License-Identifier: MIT
/*
 * The library's own topologies: a counter producer, zero or more map
 * producer-consumers, and a summing consumer, built with the public API
 * only, as a user would.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <genstage/genstage.h>

#include "bench.h"

/* Work per event in the slow consumer: dependent multiply-adds, about 4
 * cycles each, so the consumer is an order of magnitude slower than the
 * producer without any system call or sleep. */
#ifndef GSB_SLOW_ROUNDS
#define GSB_SLOW_ROUNDS 24
#endif

#define MAX_MAPS 1

/* Emits 1..last, exactly as much as is asked. Each stage's state is
 * aligned to a cache line of its own, so that the producer's writes and
 * the consumer's never share one (they live side by side on the stack). */
typedef struct counter {
	_Alignas(64) uint64_t next;
	uint64_t last;
	void **scratch; /* max_demand slots to build a batch in */
	size_t scratch_len;
} counter;

/* Sums what arrives; `rounds` of busy work per event make it slow. */
typedef struct summer {
	_Alignas(64) uint64_t sum;
	uint64_t count;
	unsigned rounds;
	uint64_t spent; /* the busy work's result, kept so it is not elided */
	const gsb_params *params;
} summer;

static int counter_demand(void *state, gs_stage *stage, size_t demand)
{
	counter *c = state;
	while (demand && c->next <= c->last) {
		uint64_t left = c->last - c->next + 1;
		size_t n = demand < c->scratch_len ? demand : c->scratch_len;
		if (n > left)
			n = (size_t)left;
		for (size_t i = 0; i < n; i++)
			c->scratch[i] = (void *)(uintptr_t)(c->next + i);
		c->next += n;
		demand -= n;
		gs_err err = gs_emit(stage, c->scratch, n);
		if (err)
			return err;
	}
	return c->next > c->last ? gs_done(stage) : GS_OK;
}

static int map_add_one(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	(void)state;
	(void)from;
	for (size_t i = 0; i < n; i++)
		events[i] = (void *)((uintptr_t)events[i] + 1);
	return gs_emit(stage, events, n);
}

static int sum_events(void *state, gs_stage *stage, gs_sub *from, void **events,
		      size_t n)
{
	summer *s = state;
	(void)stage;
	(void)from;
	for (size_t i = 0; i < n; i++)
		s->sum += (uintptr_t)events[i];
	s->count += n;
	gsb_progress(s->params, s->count);
	return GS_OK;
}

static uint64_t busy_work(uint64_t x, unsigned rounds)
{
	for (unsigned i = 0; i < rounds; i++) {
		x = x * 6364136223846793005u + 1442695040888963407u;
		/* Hides x from the optimizer, which would otherwise fold
		 * several rounds into one (clang does). */
		__asm__ __volatile__("" : "+r"(x));
	}
	return x;
}

static int sum_events_slowly(void *state, gs_stage *stage, gs_sub *from,
			     void **events, size_t n)
{
	summer *s = state;
	/* Each event's work starts from the previous one's result, so the
	 * CPU cannot overlap them: the cost is the chain's latency. */
	for (size_t i = 0; i < n; i++)
		s->spent = busy_work(s->spent ^ (uintptr_t)events[i],
				     s->rounds);
	return sum_events(state, stage, from, events, n);
}

static const gs_stage_ops counter_ops = { .handle_demand = counter_demand };
static const gs_stage_ops map_ops = { .handle_events = map_add_one };
static const gs_stage_ops sum_ops = { .handle_events = sum_events };
static const gs_stage_ops slow_sum_ops = { .handle_events = sum_events_slowly };

/* Creates counter -> maps x map -> summer, each subscription at the
 * topology's max_demand; stages[] receives them in that order. */
static gs_err build_chain(gs_pipeline *pl, const gsb_topology *t, size_t maps,
			  counter *c, summer *s, gs_stage **stages)
{
	const gs_stage_ops *last = s->rounds ? &slow_sum_ops : &sum_ops;
	gs_err err = gs_stage_new(pl, GS_PRODUCER, &counter_ops, c,
				  &(gs_stage_opts){ .name = "counter" },
				  &stages[0]);
	for (size_t i = 1; !err && i <= maps; i++)
		err = gs_stage_new(pl, GS_PRODUCER_CONSUMER, &map_ops, NULL,
				   &(gs_stage_opts){ .name = "map" },
				   &stages[i]);
	if (!err)
		err = gs_stage_new(pl, GS_CONSUMER, last, s,
				   &(gs_stage_opts){ .name = "sum" },
				   &stages[maps + 1]);
	for (size_t i = 1; !err && i <= maps + 1; i++)
		err = gs_subscribe(
			stages[i], stages[i - 1],
			&(gs_sub_opts){ .max_demand = t->max_demand }, NULL);
	return err;
}

/* Appends to r->note, cutting what does not fit. */
static void note_add(gsb_result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void note_add(gsb_result *r, const char *fmt, ...)
{
	size_t used = strlen(r->note);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->note + used, sizeof r->note - used, fmt, ap);
	va_end(ap);
}

/* One line per run on where the time went: each stage's busy time per
 * event and the mean batch it received. */
static void describe(gs_stage *const *stages, size_t n, gsb_result *r)
{
	for (size_t i = 0; i < n; i++) {
		gs_stats st;
		if (gs_stage_stats(stages[i], &st))
			continue;
		uint64_t ev = st.events_in ? st.events_in : st.events_out;
		note_add(r, "%s%s %.1f ns/ev", i ? "; " : "",
			 gs_stage_name(stages[i]),
			 ev ? (double)st.busy_ns / (double)ev : 0);
		if (st.batches_in)
			note_add(r, " %.0f ev/batch",
				 (double)st.events_in / (double)st.batches_in);
	}
}

static gs_err run_pipeline(gs_pipeline *pl, gsb_result *r)
{
	double t0 = gsb_now();
	gs_err err = gs_pipeline_start(pl);
	if (!err)
		err = gs_pipeline_wait(pl);
	r->seconds = gsb_now() - t0;
	return err;
}

static void run_chain(const gsb_topology *t, const gsb_params *p, size_t maps,
		      unsigned rounds, gsb_result *r)
{
	counter c = { .next = 1, .last = p->events };
	summer s = { .rounds = rounds, .params = p };
	gs_stage *stages[MAX_MAPS + 2];
	gs_pipeline *pl = NULL;
	c.scratch_len = t->max_demand;
	c.scratch = malloc(c.scratch_len * sizeof *c.scratch);
	gs_err err = c.scratch ? gs_pipeline_new(NULL, &pl) : GS_ENOMEM;
	if (!err)
		err = build_chain(pl, t, maps, &c, &s, stages);
	if (!err)
		err = run_pipeline(pl, r);
	if (!err)
		describe(stages, maps + 2, r);
	else
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(err));
	r->err = err;
	r->delivered = s.count;
	r->checksum = s.sum;
	r->expected = gsb_expected_sum(p->events, maps);
	gs_pipeline_free(pl);
	free(c.scratch);
}

void gsb_run_1_1(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	run_chain(t, p, 0, 0, r);
}

void gsb_run_1_map_1(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	run_chain(t, p, 1, 0, r);
}

void gsb_run_1_1_slow(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	run_chain(t, p, 0, GSB_SLOW_ROUNDS, r);
}
