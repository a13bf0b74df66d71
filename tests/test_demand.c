// SPDX-License-Identifier: MIT
/* The batch rule: its arithmetic (stage/demand.h) and, end to end, the
 * chunks and asks a running consumer makes. */
#include "demand.h"
#include "gs_test.h"

#ifndef GS_TEST_EVENTS
#define GS_TEST_EVENTS 100000
#endif

/* --- the arithmetic ----------------------------------------------------- */

Test(demand, first_ask_is_max_demand)
{
	static const size_t maxes[] = { 1, 2, 7, 64, 1000, (size_t)1 << 31 };
	for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
		gs__demand d = { .max = maxes[i], .min = maxes[i] / 2 };
		cr_assert_eq(gs__demand_start(&d), maxes[i]);
		cr_assert_eq(d.outstanding, maxes[i]);
	}
}

Test(demand, chunk_is_max_minus_min)
{
	cr_assert_eq(gs__demand_chunk(&(gs__demand){ .max = 1000, .min = 500 }),
		     500);
	cr_assert_eq(gs__demand_chunk(&(gs__demand){ .max = 10, .min = 0 }),
		     10);
	cr_assert_eq(gs__demand_chunk(&(gs__demand){ .max = 1, .min = 0 }), 1);
	cr_assert_eq(gs__demand_chunk(&(gs__demand){ .max = 7, .min = 3 }), 4);
	cr_assert_eq(gs__demand_chunk(&(gs__demand){ .max = 64, .min = 63 }),
		     1);
}

Test(demand, asks_again_once_outstanding_falls_to_min)
{
	gs__demand d = { .max = 1000, .min = 500 };
	gs__demand_start(&d);
	cr_assert_eq(gs__demand_taken(&d, 499), 0);
	cr_assert_eq(d.outstanding, 501);
	cr_assert_eq(gs__demand_taken(&d, 1), 500);
	cr_assert_eq(d.outstanding, 1000);
	/* A full chunk brings it to min at once. */
	cr_assert_eq(gs__demand_taken(&d, 500), 500);
	cr_assert_eq(d.outstanding, 1000);
	/* Below min: asks for all that is missing. */
	cr_assert_eq(gs__demand_taken(&d, 300), 0);
	cr_assert_eq(gs__demand_taken(&d, 400), 700);
	cr_assert_eq(d.outstanding, 1000);
}

Test(demand, min_zero_asks_only_when_everything_arrived)
{
	gs__demand d = { .max = 10, .min = 0 };
	cr_assert_eq(gs__demand_start(&d), 10);
	for (int i = 0; i < 9; i++)
		cr_assert_eq(gs__demand_taken(&d, 1), 0, "after %d", i + 1);
	cr_assert_eq(gs__demand_taken(&d, 1), 10);
	cr_assert_eq(gs__demand_taken(&d, 10), 10);
	cr_assert_eq(d.outstanding, 10);
}

Test(demand, max_one_asks_one_after_each_event)
{
	gs__demand d = { .max = 1, .min = 0 };
	cr_assert_eq(gs__demand_start(&d), 1);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(gs__demand_taken(&d, 1), 1);
	cr_assert_eq(d.outstanding, 1);
}

Test(demand, uneven_pairs_follow_the_rule)
{
	gs__demand d = { .max = 7, .min = 3 };
	gs__demand_start(&d);
	cr_assert_eq(gs__demand_taken(&d, 4), 4);
	cr_assert_eq(gs__demand_taken(&d, 3), 0);
	cr_assert_eq(gs__demand_taken(&d, 1), 4);
	cr_assert_eq(d.outstanding, 7);

	gs__demand e = { .max = 64, .min = 63 };
	gs__demand_start(&e);
	cr_assert_eq(gs__demand_taken(&e, 1), 1);
	cr_assert_eq(e.outstanding, 64);

	gs__demand f = { .max = 100, .min = 1 };
	gs__demand_start(&f);
	cr_assert_eq(gs__demand_taken(&f, 98), 0);
	cr_assert_eq(gs__demand_taken(&f, 1), 99);
	cr_assert_eq(f.outstanding, 100);
}

Test(demand, largest_max_does_not_overflow)
{
	size_t big = (size_t)1 << 31;
	gs__demand d = { .max = big, .min = 0 };
	cr_assert_eq(gs__demand_start(&d), big);
	cr_assert_eq(gs__demand_chunk(&d), big);
	cr_assert_eq(gs__demand_taken(&d, big - 1), 0);
	cr_assert_eq(gs__demand_taken(&d, 1), big);
}

/* For random chunk sizes the rule keeps its invariants: outstanding stays
 * within (min, max], every ask restores it to max, and what was asked less
 * what was taken is what is outstanding. */
Test(demand, random_chunks_keep_the_invariants)
{
	static const size_t pairs[][2] = { { 1000, 500 }, { 10, 0 },
					   { 1, 0 },      { 7, 3 },
					   { 64, 63 },    { 100, 1 },
					   { 2, 1 },      { 5, 0 } };
	gs_rng rng = { 42 };
	for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
		gs__demand d = { .max = pairs[p][0], .min = pairs[p][1] };
		uint64_t asked = gs__demand_start(&d), taken = 0;
		for (int i = 0; i < 10000; i++) {
			size_t limit = gs__demand_chunk(&d);
			if (limit > d.outstanding)
				limit = d.outstanding;
			size_t n = gs_rng_range(&rng, 1, limit);
			size_t before = d.outstanding - n;
			size_t ask = gs__demand_taken(&d, n);
			taken += n;
			asked += ask;
			if (ask)
				cr_assert_eq(ask, d.max - before);
			cr_assert_eq(ask != 0, before <= d.min,
				     "max %zu min %zu: ask %zu at %zu", d.max,
				     d.min, ask, before);
			cr_assert(d.outstanding > d.min);
			cr_assert(d.outstanding <= d.max);
			cr_assert_eq(asked - taken, d.outstanding);
		}
	}
}

/* --- end to end --------------------------------------------------------- */

/* A subscription's demand limits. */
typedef struct limits {
	size_t max, min; /* as given in gs_sub_opts: 0 for the defaults */
	size_t eff_max, eff_min;
} limits;

/* Runs one producer into one consumer over a subscription with `pr`, and
 * checks the batch rule on every chunk and every demand. */
static void run_limits(limits pr)
{
	size_t n = GS_TEST_EVENTS;
	if (n > pr.eff_max * 2000)
		n = pr.eff_max * 2000; /* one wake-up per event is slow */
	gs_pipeline *p = pipeline_new(NULL);
	recorder r = { .check_order = true };
	seq_producer sp = { .total = n,
			    .consumed = &r.received,
			    .slack = pr.eff_max };
	gs_stage *prod = seq_producer_new(p, &sp, NULL);
	gs_stage *cons = recorder_new(p, &r, NULL);
	recorder_subscribe(&r, cons, prod,
			   &(gs_sub_opts){ .max_demand = pr.max,
					   .min_demand = pr.min });
	cr_assert_eq(r.subs[0].max, pr.eff_max);
	cr_assert_eq(r.subs[0].min, pr.eff_min);
	cr_assert_eq(start_and_wait(p), GS_OK);

	char what[64];
	snprintf(what, sizeof what, "max %zu min %zu", pr.eff_max, pr.eff_min);
	cr_assert_eq(atomic_load(&r.received), n, "%s", what);
	cr_assert_eq(atomic_load(&r.order_errors), 0, "%s", what);
	cr_assert_eq(atomic_load(&r.chunk_errors), 0,
		     "%s: a chunk above max - min (largest %llu)", what,
		     (unsigned long long)atomic_load(&r.max_chunk));
	cr_assert_leq(atomic_load(&r.max_chunk), pr.eff_max - pr.eff_min, "%s",
		      what);
	cr_assert_eq(atomic_load(&r.empty_chunks), 0, "%s", what);
	cr_assert_eq(atomic_load(&r.demand_errors), 0,
		     "%s: more events arrived than the consumer asked", what);
	cr_assert_eq(atomic_load(&sp.first_demand), pr.eff_max,
		     "%s: first handle_demand got %llu", what,
		     (unsigned long long)atomic_load(&sp.first_demand));
	cr_assert_eq(atomic_load(&sp.over_demand), 0,
		     "%s: handle_demand was passed more than consumed + max",
		     what);
	cr_assert_geq(atomic_load(&sp.demanded), n, "%s", what);
	cr_assert_leq(atomic_load(&sp.demanded), n + pr.eff_max, "%s", what);
	cr_assert_eq(atomic_load(&sp.calls_after_done), 0, "%s", what);

	gs_stats ps, cs;
	GS_OK_OR_DIE(gs_stage_stats(prod, &ps));
	GS_OK_OR_DIE(gs_stage_stats(cons, &cs));
	cr_assert_eq(ps.events_out, n, "%s", what);
	cr_assert_eq(cs.events_in, n, "%s", what);
	cr_assert_eq(cs.batches_in, atomic_load(&r.chunks), "%s", what);
	cr_assert_eq(ps.dropped, 0, "%s", what);
	gs_pipeline_free(p);
}

Test(demand, defaults_are_1000_and_500_end_to_end, .timeout = GS_TEST_TIMEOUT)
{
	run_limits((limits){ 0, 0, 1000, 500 });
}

Test(demand, min_zero_chunks_up_to_max_end_to_end, .timeout = GS_TEST_TIMEOUT)
{
	run_limits((limits){ 10, GS_MIN_DEMAND_ZERO, 10, 0 });
}

Test(demand, max_one_moves_one_event_at_a_time, .timeout = GS_TEST_TIMEOUT)
{
	run_limits((limits){ 1, 0, 1, 0 });
}

Test(demand, seven_and_three_chunk_by_four, .timeout = GS_TEST_TIMEOUT)
{
	run_limits((limits){ 7, 3, 7, 3 });
}

Test(demand, min_just_below_max_chunks_by_one, .timeout = GS_TEST_TIMEOUT)
{
	run_limits((limits){ 64, 63, 64, 63 });
}

Test(demand, min_one_chunks_by_max_minus_one, .timeout = GS_TEST_TIMEOUT)
{
	run_limits((limits){ 100, 1, 100, 1 });
}

Test(demand, default_min_is_half_of_max, .timeout = GS_TEST_TIMEOUT)
{
	run_limits((limits){ 300, 0, 300, 150 });
}

/* --- manual demand ------------------------------------------------------ */

typedef struct manual {
	recorder rec;
	size_t per_ask;
	uint64_t asked; /* own */
	uint64_t got;   /* own */
	_Atomic uint64_t over;
	_Atomic int ask_errors;
} manual;

static int manual_subscribe(void *state, gs_stage *stage, gs_sub *sub,
			    gs_role role)
{
	manual *m = state;
	(void)stage;
	if (role != GS_ROLE_CONSUMER)
		return GS_OK;
	m->asked += m->per_ask;
	if (gs_ask(sub, m->per_ask))
		atomic_fetch_add(&m->ask_errors, 1);
	return GS_OK;
}

static int manual_events(void *state, gs_stage *stage, gs_sub *from,
			 void **events, size_t n)
{
	manual *m = state;
	(void)stage;
	m->got += n;
	if (m->got > m->asked)
		atomic_fetch_add(&m->over, 1);
	/* Ask again only once everything asked has come. */
	if (m->got == m->asked) {
		m->asked += m->per_ask;
		if (gs_ask(from, m->per_ask))
			atomic_fetch_add(&m->ask_errors, 1);
	}
	return recorder_take(&m->rec, from, events, n);
}

Test(demand, manual_subscription_gets_no_more_than_it_asks,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS / 10;
	gs_pipeline *p = pipeline_new(NULL);
	manual m = { .rec = { .check_order = true }, .per_ask = 37 };
	seq_producer sp = { .total = n };
	gs_stage *prod = NULL, *cons = NULL;
	static const gs_stage_ops ops = { .handle_subscribe = manual_subscribe,
					  .handle_events = manual_events };
	prod = seq_producer_new(p, &sp, NULL);
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &ops, &m, NULL, &cons));
	recorder_subscribe(&m.rec, cons, prod,
			   &(gs_sub_opts){ .manual = true, .max_demand = 100 });
	cr_assert_eq(start_and_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&m.ask_errors), 0);
	cr_assert_eq(atomic_load(&m.over), 0);
	cr_assert_eq(atomic_load(&m.rec.received), n);
	cr_assert_eq(atomic_load(&m.rec.order_errors), 0);
	cr_assert_eq(atomic_load(&sp.first_demand), 37);
	cr_assert_leq(atomic_load(&sp.demanded), n + 37);
	gs_pipeline_free(p);
}

/* Several consumers: the demand a producer is passed never runs ahead of
 * what they took by more than their max_demand each. */
Test(demand, demand_passed_on_stays_within_consumed_plus_max_per_consumer,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS;
	enum { K = 3 };
	static const size_t maxes[K] = { 50, 200, 1000 };
	gs_pipeline *p = pipeline_new(NULL);
	_Atomic uint64_t taken = 0;
	recorder r[K];
	for (int i = 0; i < K; i++)
		r[i] = (recorder){ .check_order = true,
				   .also_received = &taken };
	seq_producer sp = { .total = n,
			    .consumed = &taken,
			    .slack = 50 + 200 + 1000 };
	gs_stage *prod = NULL, *cons[K];
	prod = seq_producer_new(p, &sp, NULL);
	for (int i = 0; i < K; i++) {
		cons[i] = recorder_new(p, &r[i], NULL);
		recorder_subscribe(&r[i], cons[i], prod,
				   &(gs_sub_opts){ .max_demand = maxes[i] });
	}
	cr_assert_eq(start_and_wait(p), GS_OK);
	uint64_t total = 0;
	for (int i = 0; i < K; i++) {
		total += atomic_load(&r[i].received);
		cr_assert_eq(atomic_load(&r[i].chunk_errors), 0, "consumer %d",
			     i);
		cr_assert_eq(atomic_load(&r[i].demand_errors), 0, "consumer %d",
			     i);
		cr_assert_eq(atomic_load(&r[i].order_errors), 0, "consumer %d",
			     i);
	}
	cr_assert_eq(total, n);
	cr_assert_eq(atomic_load(&sp.over_demand), 0);
	cr_assert_leq(atomic_load(&sp.first_demand), 50 + 200 + 1000);
	cr_assert_leq(atomic_load(&sp.demanded), n + 50 + 200 + 1000);
	gs_pipeline_free(p);
}
