// SPDX-License-Identifier: MIT
/*
 * Randomized topologies: 1-3 producers, 0-2 layers of 1-2 identity
 * producer-consumers, 1-3 consumers, random subscriptions and demand, run
 * to completion or stopped (drain or now) part way. Every event must be
 * delivered or freed exactly once, in order where a single stream carries
 * it, within the batch rule. The seed is printed; set GS_STRESS_SEED to
 * replay one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "gs_test.h"

#ifndef GS_STRESS_ROUNDS
#define GS_STRESS_ROUNDS 150
#endif
/* Most events one producer emits in a round. */
#ifndef GS_STRESS_EVENTS
#define GS_STRESS_EVENTS 20000
#endif

enum { MAX_PRODUCERS = 3, MAX_LAYERS = 2, MAX_WIDTH = 2, MAX_CONSUMERS = 3 };

typedef struct world {
	gs_pipeline *p;
	tally t;
	_Atomic uint64_t delivered;
	seq_producer sp[MAX_PRODUCERS];
	mapper m[MAX_LAYERS][MAX_WIDTH];
	recorder r[MAX_CONSUMERS];
	gs_stage *prod[MAX_PRODUCERS];
	gs_stage *pc[MAX_LAYERS][MAX_WIDTH];
	gs_stage *cons[MAX_CONSUMERS];
	size_t np, nl, width[MAX_LAYERS], nc;
	size_t smallest_max;
	log_count log;
} world;

static const size_t maxes[] = { 1, 2, 3, 8, 50, 100, 500, 1000 };

/* Random demand, and a cancel mode: permanent only for a stage's single
 * input, since a permanent subscription stops its consumer when its
 * producer finishes, whatever the other inputs still carry. */
static gs_sub_opts random_opts(gs_rng *rng, world *w, size_t inputs)
{
	gs_sub_opts o = { 0 };
	o.cancel = (gs_cancel_mode)gs_rng_range(
		rng, inputs == 1 ? GS_CANCEL_PERMANENT : GS_CANCEL_TRANSIENT,
		GS_CANCEL_TEMPORARY);
	size_t max =
		maxes[gs_rng_range(rng, 0, sizeof maxes / sizeof maxes[0] - 1)];
	switch (gs_rng_range(rng, 0, 3)) {
	case 0: /* all defaults */
		max = 1000;
		break;
	case 1: /* default min */
		o.max_demand = max;
		break;
	default: {
		o.max_demand = max;
		size_t min = gs_rng_range(rng, 0, max - 1);
		o.min_demand = min ? min : GS_MIN_DEMAND_ZERO;
		break;
	}
	}
	if (max < w->smallest_max)
		w->smallest_max = max;
	return o;
}

/* A stage's recorder, if it has one (producers do not). */
static recorder *rec_of(world *w, size_t layer, size_t i)
{
	if (layer == 0)
		return NULL;
	if (layer <= w->nl)
		return &w->m[layer - 1][i].rec;
	return &w->r[i];
}

static gs_stage *stage_of(world *w, size_t layer, size_t i)
{
	if (layer == 0)
		return w->prod[i];
	if (layer <= w->nl)
		return w->pc[layer - 1][i];
	return w->cons[i];
}

static size_t width_of(world *w, size_t layer)
{
	if (layer == 0)
		return w->np;
	if (layer <= w->nl)
		return w->width[layer - 1];
	return w->nc;
}

/* Builds a random world; returns the number of events it will produce. */
static uint64_t build(world *w, gs_rng *rng)
{
	*w = (world){ .smallest_max = SIZE_MAX };
	w->p = counted_pipeline_new(&w->log);
	w->np = gs_rng_range(rng, 1, MAX_PRODUCERS);
	w->nl = gs_rng_range(rng, 0, MAX_LAYERS);
	for (size_t l = 0; l < w->nl; l++)
		w->width[l] = gs_rng_range(rng, 1, MAX_WIDTH);
	w->nc = gs_rng_range(rng, 1, MAX_CONSUMERS);

	gs_stage_opts opts = { .event_free = tally_free,
			       .event_free_arg = &w->t };
	for (size_t i = 0; i < w->np; i++) {
		gs_stage_opts po = opts;
		/* Some producers emit beyond the demand into a buffer that
		 * never drops. */
		if (gs_rng_range(rng, 0, 2) == 0) {
			w->sp[i].extra = gs_rng_range(rng, 1, 50);
			po.buffer_size = GS_UNBOUNDED;
		}
		w->prod[i] = seq_producer_new(w->p, &w->sp[i], &po);
	}
	for (size_t l = 0; l < w->nl; l++)
		for (size_t i = 0; i < w->width[l]; i++)
			w->pc[l][i] = mapper_new(w->p, &w->m[l][i], &opts);
	for (size_t i = 0; i < w->nc; i++) {
		w->r[i].tally = &w->t;
		w->r[i].also_received = &w->delivered;
		w->cons[i] = recorder_new(w->p, &w->r[i], &opts);
	}

	/* Each stage below the producers takes a random non-empty set of
	 * the stages above; each stage above gets at least one. in[l][i]:
	 * stage i of layer l receives one ordered stream per subscription. */
	bool in[MAX_LAYERS + 2][4] = { { true, true, true, true } };
	for (size_t l = 1; l <= w->nl + 1; l++) {
		size_t up = width_of(w, l - 1), here = width_of(w, l);
		bool taken[4] = { false };
		bool edge[4][4] = { { false } };
		for (size_t i = 0; i < here; i++) {
			size_t mask = gs_rng_range(rng, 1,
						   ((size_t)1 << up) - 1);
			for (size_t j = 0; j < up; j++)
				if (mask & ((size_t)1 << j))
					edge[i][j] = taken[j] = true;
		}
		for (size_t j = 0; j < up; j++)
			if (!taken[j])
				edge[gs_rng_range(rng, 0, here - 1)][j] = true;
		for (size_t i = 0; i < here; i++) {
			recorder *r = rec_of(w, l, i);
			size_t n_in = 0, inputs = 0;
			bool all_ordered = true;
			for (size_t j = 0; j < up; j++)
				inputs += edge[i][j];
			for (size_t j = 0; j < up; j++) {
				if (!edge[i][j])
					continue;
				gs_sub_opts o = random_opts(rng, w, inputs);
				recorder_subscribe(r, stage_of(w, l, i),
						   stage_of(w, l - 1, j), &o);
				n_in++;
				all_ordered &= in[l - 1][j];
			}
			r->check_order = all_ordered;
			in[l][i] = all_ordered && n_in == 1;
		}
	}

	/* Small demand means a wake-up per few events: fewer events then. */
	size_t most = GS_STRESS_EVENTS;
	if (most > 2000 * w->smallest_max)
		most = 2000 * w->smallest_max;
	uint64_t total = 0;
	for (size_t i = 0; i < w->np; i++) {
		size_t n = gs_rng_range(rng, 0, 9) == 0
				   ? 0
				   : gs_rng_range(rng, 1, most);
		w->sp[i].first = total;
		w->sp[i].total = n;
		w->sp[i].done_in_init = n == 0 && gs_rng_range(rng, 0, 1);
		total += n;
	}
	tally_init(&w->t, total);
	return total;
}

static void describe(world *w, unsigned round, uint64_t total, int how)
{
	static const char *const hows[] = { "to completion", "drain", "now" };
	fprintf(stderr,
		"  round %u: %zu producers, %zu layers, %zu consumers, %llu "
		"events, smallest max %zu, %s\n",
		round, w->np, w->nl, w->nc, (unsigned long long)total,
		w->smallest_max, hows[how]);
}

static void check_recorder(recorder *r, const char *who)
{
	cr_assert_eq(atomic_load(&r->order_errors), 0, "%s: out of order", who);
	cr_assert_eq(atomic_load(&r->chunk_errors), 0,
		     "%s: chunk above max - min", who);
	cr_assert_eq(atomic_load(&r->demand_errors), 0,
		     "%s: more events than asked", who);
	cr_assert_eq(atomic_load(&r->empty_chunks), 0, "%s: empty chunk", who);
	cr_assert_eq(atomic_load(&r->after_stop), 0, "%s: after terminate",
		     who);
	cr_assert_eq(atomic_load(&r->terminated), 1, "%s: terminate count",
		     who);
	cr_assert_eq(atomic_load(&r->reason), GS_OK, "%s: reason %d", who,
		     atomic_load(&r->reason));
}

static void run_round(gs_rng *rng, unsigned round)
{
	world *w = malloc(sizeof *w);
	cr_assert_not_null(w);
	uint64_t total = build(w, rng);
	/* 0: run to completion; 1: drain part way; 2: stop now part way. */
	int how = (int)gs_rng_range(rng, 0, 3);
	if (how == 3)
		how = 0;
	uint64_t stop_at = total ? gs_rng_range(rng, 0, total) : 0;
	describe(w, round, total, how);

	GS_OK_OR_DIE(gs_pipeline_start(w->p));
	gs_err err;
	if (how == 0) {
		err = gs_pipeline_wait(w->p);
	} else {
		wait_at_least(&w->delivered, stop_at);
		err = gs_pipeline_stop(w->p,
				       how == 1 ? GS_STOP_DRAIN : GS_STOP_NOW);
	}
	cr_assert_eq(err, GS_OK, "round %u: %s", round, gs_strerror(err));

	uint64_t produced = 0;
	for (size_t i = 0; i < w->np; i++) {
		seq_producer *sp = &w->sp[i];
		produced += atomic_load(&sp->emitted);
		cr_assert_eq(atomic_load(&sp->terminated), 1,
			     "round %u: producer %zu", round, i);
		cr_assert_eq(atomic_load(&sp->reason), GS_OK,
			     "round %u: producer %zu", round, i);
		cr_assert_eq(atomic_load(&sp->calls_after_done), 0);
		cr_assert_eq(atomic_load(&sp->emit_errors), 0);
		if (how == 0)
			cr_assert_eq(atomic_load(&sp->emitted), sp->total);
	}
	tally_check(&w->t, produced, false);
	for (size_t i = 0; i < w->np; i++)
		tally_check_range(&w->t, w->sp[i].first,
				  w->sp[i].first +
					  atomic_load(&w->sp[i].emitted));
	if (how != 2)
		cr_assert_eq(atomic_load(&w->t.freed_count), 0,
			     "round %u: events freed without a stop now",
			     round);
	uint64_t dropped = 0;
	char who[64];
	for (size_t l = 0; l < w->nl; l++)
		for (size_t i = 0; i < w->width[l]; i++) {
			snprintf(who, sizeof who, "round %u pc %zu.%zu", round,
				 l, i);
			check_recorder(&w->m[l][i].rec, who);
			cr_assert_eq(atomic_load(&w->m[l][i].emit_errors), 0);
		}
	uint64_t sum = 0;
	for (size_t i = 0; i < w->nc; i++) {
		snprintf(who, sizeof who, "round %u consumer %zu", round, i);
		check_recorder(&w->r[i], who);
		sum += atomic_load(&w->r[i].sum);
	}
	if (how == 0)
		cr_assert_eq(sum, total ? total * (total - 1) / 2 : 0,
			     "round %u: sum", round);
	for (gs_stage **s = &w->prod[0]; s < &w->prod[w->np]; s++) {
		gs_stats st;
		GS_OK_OR_DIE(gs_stage_stats(*s, &st));
		dropped += st.dropped;
	}
	for (size_t l = 0; l < w->nl; l++)
		for (size_t i = 0; i < w->width[l]; i++) {
			gs_stats st;
			GS_OK_OR_DIE(gs_stage_stats(w->pc[l][i], &st));
			dropped += st.dropped;
		}
	for (size_t i = 0; i < w->nc; i++) {
		gs_stats st;
		GS_OK_OR_DIE(gs_stage_stats(w->cons[i], &st));
		dropped += st.dropped;
	}
	cr_assert_eq(dropped, atomic_load(&w->t.freed_count),
		     "round %u: dropped counts", round);
	cr_assert_eq(atomic_load(&w->log.error), 0,
		     "round %u: a stage stopped abnormally", round);
	if (how != 2)
		cr_assert_eq(atomic_load(&w->log.warn), 0,
			     "round %u: a drop was logged", round);
	gs_pipeline_free(w->p);
	tally_fini(&w->t);
	free(w);
}

Test(stress, random_topologies_deliver_or_free_every_event_once,
     .timeout = 4 * GS_TEST_TIMEOUT)
{
	const char *env = getenv("GS_STRESS_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0)
			    : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	fprintf(stderr, "stress: GS_STRESS_SEED=%llu\n",
		(unsigned long long)seed);
	cr_log_info("GS_STRESS_SEED=%llu", (unsigned long long)seed);
	gs_rng rng = { seed };
	for (unsigned round = 0; round < GS_STRESS_ROUNDS; round++)
		run_round(&rng, round);
}
