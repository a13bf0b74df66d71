// SPDX-License-Identifier: MIT
/*
 * The library's own topologies: a counter producer, zero or more map
 * producer-consumers, and a summing consumer, built with the public API
 * only, as a user would; several such pipelines at once (sharing the
 * default executor) for the oversubscribed row.
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
	/* Progress over every copy, in deliveries. */
	_Atomic uint64_t *total;
	uint64_t per_event;
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
	uint64_t all = atomic_fetch_add_explicit(s->total, n,
						 memory_order_relaxed);
	gsb_progress(s->params, (all + n) * s->per_event);
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
const gs_stage_ops gsb_map_ops = { .handle_events = map_add_one };
static const gs_stage_ops sum_ops = { .handle_events = sum_events };
static const gs_stage_ops slow_sum_ops = { .handle_events = sum_events_slowly };

/* One pipeline: counter -> maps x map -> summer, and its stages in that
 * order. */
typedef struct copy {
	counter c;
	summer s;
	gs_pipeline *pl;
	gs_stage **stages;
} copy;

/* Creates the copy's stages, each subscription at the topology's
 * max_demand, each new stage subscribed to the one before as it is made
 * (the order that keeps gs_subscribe's cycle check cheapest). */
static gs_err build_chain(copy *cp, const gsb_topology *t, size_t maps)
{
	const gs_stage_ops *last = cp->s.rounds ? &slow_sum_ops : &sum_ops;
	gs_stage **st = cp->stages;
	gs_err err = gs_stage_new(cp->pl, GS_PRODUCER, &counter_ops, &cp->c,
				  &(gs_stage_opts){ .name = "counter" },
				  &st[0]);
	for (size_t i = 1; !err && i <= maps + 1; i++) {
		bool sink = i == maps + 1;
		err = gs_stage_new(
			cp->pl, sink ? GS_CONSUMER : GS_PRODUCER_CONSUMER,
			sink ? last : &gsb_map_ops, sink ? &cp->s : NULL,
			&(gs_stage_opts){ .name = sink ? "sum" : "map" },
			&st[i]);
		if (!err)
			err = gs_subscribe(
				st[i], st[i - 1],
				&(gs_sub_opts){ .max_demand = t->max_demand },
				NULL);
	}
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

/* Adds stages[first..last]'s busy time and batches into one part of the
 * note: busy ns per event and the mean batch received. */
static void describe_part(gs_stage *const *stages, size_t first, size_t last,
			  gsb_result *r)
{
	uint64_t busy = 0, in = 0, out = 0, batches = 0;
	for (size_t i = first; i <= last; i++) {
		gs_stats st;
		if (gs_stage_stats(stages[i], &st))
			continue;
		busy += st.busy_ns;
		in += st.events_in;
		out += st.events_out;
		batches += st.batches_in;
	}
	uint64_t ev = in ? in : out;
	note_add(r, "%s%s", first ? "; " : "", gs_stage_name(stages[first]));
	if (last > first)
		note_add(r, " x%zu", last - first + 1);
	note_add(r, " %.1f ns/ev", ev ? (double)busy / (double)ev : 0);
	if (batches)
		note_add(r, " %.0f ev/batch", (double)in / (double)batches);
}

/* One line per run on where the time went, in the first copy: the
 * counter, the maps together, the summer. */
static void describe(const copy *cp, size_t maps, gsb_result *r)
{
	describe_part(cp->stages, 0, 0, r);
	if (maps)
		describe_part(cp->stages, 1, maps, r);
	describe_part(cp->stages, maps + 1, maps + 1, r);
}

static gs_err run_copies(copy *cps, size_t n, gsb_result *r)
{
	double t0 = gsb_now();
	gs_err err = GS_OK;
	for (size_t i = 0; !err && i < n; i++)
		err = gs_pipeline_start(cps[i].pl);
	for (size_t i = 0; i < n; i++) {
		gs_err e = gs_pipeline_wait(cps[i].pl);
		if (!err)
			err = e;
	}
	r->seconds = gsb_now() - t0;
	return err;
}

/* Makes a copy emitting 1..share. On failure what was made is left for
 * copy_free. */
static gs_err copy_new(copy *cp, const gsb_topology *t, const gsb_params *p,
		       size_t maps, unsigned rounds, uint64_t share,
		       _Atomic uint64_t *total)
{
	unsigned per = t->deliveries ? t->deliveries : 1;
	cp->c = (counter){ .next = 1, .last = share };
	cp->s = (summer){
		.rounds = rounds, .params = p, .total = total, .per_event = per
	};
	cp->pl = NULL;
	cp->c.scratch_len = t->max_demand;
	cp->c.scratch = malloc(cp->c.scratch_len * sizeof *cp->c.scratch);
	cp->stages = calloc(maps + 2, sizeof *cp->stages);
	gs_err err = cp->c.scratch && cp->stages
			     ? gs_pipeline_new(NULL, &cp->pl)
			     : GS_ENOMEM;
	return err ? err : build_chain(cp, t, maps);
}

static void copy_free(copy *cp)
{
	gs_pipeline_free(cp->pl);
	free(cp->stages);
	free(cp->c.scratch);
}

/* Runs t->copies pipelines of t->stages maps at once. The values 1..n
 * are split between the copies; the row counts t->deliveries per value
 * (a chain's hops), so the summers' sums add up to what the copies'
 * shares predict, and deliveries are values times hops. */
static void run_chains(const gsb_topology *t, const gsb_params *p,
		       unsigned rounds, gsb_result *r)
{
	size_t maps = t->stages, n = t->copies ? t->copies : 1;
	uint64_t per = t->deliveries ? t->deliveries : 1;
	uint64_t produced = p->events / per;
	_Atomic uint64_t total = 0;
	_Static_assert(_Alignof(copy) >= 64, "copies keep their lines apart");
	copy *cps = aligned_alloc(_Alignof(copy), n * sizeof *cps);
	gs_err err = cps ? GS_OK : GS_ENOMEM;
	size_t made = 0;
	r->expected = 0;
	for (; !err && made < n; made++) {
		uint64_t share = produced / n + (made < produced % n);
		r->expected += gsb_expected_sum(share, maps);
		err = copy_new(&cps[made], t, p, maps, rounds, share, &total);
	}
	if (!err)
		err = run_copies(cps, n, r);
	if (!err)
		describe(&cps[0], maps, r);
	else
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(err));
	r->err = err;
	r->delivered = r->checksum = 0;
	for (size_t i = 0; i < made; i++) {
		r->delivered += cps[i].s.count * per;
		r->checksum += cps[i].s.sum;
		copy_free(&cps[i]);
	}
	free(cps);
}

void gsb_run_chain(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	run_chains(t, p, 0, r);
}

void gsb_run_1_1_slow(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	run_chains(t, p, GSB_SLOW_ROUNDS, r);
}
