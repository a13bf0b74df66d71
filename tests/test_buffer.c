// SPDX-License-Identifier: MIT
/* The producer buffer: what a full one keeps and drops under each policy,
 * and that every drop is counted, logged and handed to event_free. */
#include "gs_test.h"

/*
 * A producer whose first handle_demand emits the events 0, 1, ... in the
 * bursts given (one gs_emit each) and then calls gs_done.
 */
typedef struct burster {
	const size_t *bursts;
	size_t n_bursts;
	_Atomic uint64_t first_demand;
	_Atomic int calls;
	_Atomic int emit_errors;
} burster;

static int burst_demand(void *state, gs_stage *stage, size_t demand)
{
	burster *b = state;
	if (atomic_fetch_add(&b->calls, 1) == 0)
		atomic_store(&b->first_demand, demand);
	void *ev[256];
	uintptr_t next = 0;
	for (size_t i = 0; i < b->n_bursts; i++) {
		size_t k = b->bursts[i] < 256 ? b->bursts[i] : 256;
		for (size_t j = 0; j < k; j++)
			ev[j] = GS_EV(next + j);
		next += k;
		if (gs_emit(stage, ev, k))
			atomic_fetch_add(&b->emit_errors, 1);
	}
	if (gs_done(stage))
		atomic_fetch_add(&b->emit_errors, 1);
	return GS_OK;
}

static const gs_stage_ops burster_ops = { .handle_demand = burst_demand };

typedef struct overflow {
	gs_pipeline *p;
	gs_stage *prod, *cons;
	burster b;
	recorder r;
	tally t;
	log_count log;
	gs_stats st;
} overflow;

/* Runs a burster into a consumer asking 5 at first, with the producer's
 * buffer `size` and policy `keep`, to completion. */
static void run_overflow(overflow *o, const size_t *bursts, size_t n_bursts,
			 size_t size, gs_keep keep, bool with_free)
{
	size_t total = 0;
	for (size_t i = 0; i < n_bursts; i++)
		total += bursts[i];
	*o = (overflow){ .b = { .bursts = bursts, .n_bursts = n_bursts },
			 .r = { .check_order = true } };
	tally_init(&o->t, total);
	o->r.tally = &o->t;
	o->p = counted_pipeline_new(&o->log);
	gs_stage_opts opts = { .buffer_size = size, .buffer_keep = keep };
	if (with_free) {
		opts.event_free = tally_free;
		opts.event_free_arg = &o->t;
	}
	GS_OK_OR_DIE(gs_stage_new(o->p, GS_PRODUCER, &burster_ops, &o->b, &opts,
				  &o->prod));
	o->cons = recorder_new(o->p, &o->r, NULL);
	recorder_subscribe(&o->r, o->cons, o->prod,
			   &(gs_sub_opts){ .max_demand = 5 });
	cr_assert_eq(start_and_wait(o->p), GS_OK);
	GS_OK_OR_DIE(gs_stage_stats(o->prod, &o->st));
	cr_assert_eq(atomic_load(&o->b.first_demand), 5);
	cr_assert_eq(atomic_load(&o->b.calls), 1);
	cr_assert_eq(atomic_load(&o->b.emit_errors), 0);
	cr_assert_eq(atomic_load(&o->r.reason), GS_OK);
	cr_assert_eq(atomic_load(&o->r.order_errors), 0);
	cr_assert_eq(atomic_load(&o->r.demand_errors), 0);
	cr_assert_eq(atomic_load(&o->log.error), 0, "no abnormal stop");
	cr_assert_eq(atomic_load(&o->log.null_stage), 0);
}

static void overflow_free(overflow *o)
{
	gs_pipeline_free(o->p);
	tally_fini(&o->t);
}

/* Ids in [lo, hi) were delivered (and not freed); the others in the tally
 * were freed (and not delivered). */
static void expect_delivered(overflow *o, size_t lo, size_t hi)
{
	for (size_t i = 0; i < o->t.n; i++) {
		bool in = (i >= lo && i < hi) || i < 5;
		cr_assert_eq(atomic_load(&o->t.seen[i]), in ? 1 : 0,
			     "event %zu delivered %d times", i,
			     (int)atomic_load(&o->t.seen[i]));
		if (o->t.freed)
			cr_assert_eq(atomic_load(&o->t.freed[i]), in ? 0 : 1,
				     "event %zu freed %d times", i,
				     (int)atomic_load(&o->t.freed[i]));
	}
}

/*
 * Runs `bursts` into a buffer of `size` with policy `keep` and event_free,
 * and checks that the first 5 events and [lo, hi) were delivered and every
 * other one dropped, freed and counted, that drops (and only drops) were
 * logged, and that the buffer ended empty.
 */
static void check_kept(const size_t *bursts, size_t n_bursts, size_t size,
		       gs_keep keep, size_t lo, size_t hi)
{
	overflow o;
	run_overflow(&o, bursts, n_bursts, size, keep, true);
	uint64_t total = o.t.n, kept = 5 + (hi - lo);
	cr_assert_eq(atomic_load(&o.r.received), kept);
	expect_delivered(&o, lo, hi);
	cr_assert_eq(o.st.events_out, kept);
	cr_assert_eq(o.st.buffered, 0);
	cr_assert_eq(o.st.dropped, total - kept);
	cr_assert_eq(atomic_load(&o.t.freed_count), total - kept);
	if (total > kept)
		cr_assert_geq(atomic_load(&o.log.warn), 1, "drops are logged");
	else
		cr_assert_eq(atomic_load(&o.log.warn), 0, "nothing to log");
	tally_check(&o.t, total, true);
	overflow_free(&o);
}

#define N_BURSTS(b) (sizeof(b) / sizeof((b)[0]))

Test(buffer, keep_first_keeps_the_oldest_and_frees_the_incoming,
     .timeout = GS_TEST_TIMEOUT)
{
	/* 5 go out on the demand, 10 fill the buffer, 85 are dropped. */
	static const size_t bursts[] = { 100 };
	check_kept(bursts, N_BURSTS(bursts), 10, GS_KEEP_FIRST, 5, 15);
}

Test(buffer, keep_last_keeps_the_newest_and_frees_the_oldest,
     .timeout = GS_TEST_TIMEOUT)
{
	static const size_t bursts[] = { 100 };
	check_kept(bursts, N_BURSTS(bursts), 10, GS_KEEP_LAST, 90, 100);
}

Test(buffer, keep_last_drops_buffered_events_before_new_ones,
     .timeout = GS_TEST_TIMEOUT)
{
	/* 0..4 go out; 5..12 wait; then 13..19 push out the 5 oldest. */
	static const size_t bursts[] = { 5, 8, 7 };
	check_kept(bursts, N_BURSTS(bursts), 10, GS_KEEP_LAST, 10, 20);
}

Test(buffer, keep_first_drops_only_what_does_not_fit,
     .timeout = GS_TEST_TIMEOUT)
{
	/* 0..4 go out; 5..12 wait; 13 and 14 fit; 15..19 are dropped. */
	static const size_t bursts[] = { 5, 8, 7 };
	check_kept(bursts, N_BURSTS(bursts), 10, GS_KEEP_FIRST, 5, 15);
}

/* GenStage's buffer_size: 0: what finds no demand is dropped at once,
 * under either policy; a zero field still means the default. */
Test(buffer, gs_buffer_none_keeps_nothing_beyond_the_demand,
     .timeout = GS_TEST_TIMEOUT)
{
	static const size_t bursts[] = { 5, 8, 7 };
	check_kept(bursts, N_BURSTS(bursts), GS_BUFFER_NONE, GS_KEEP_FIRST, 0,
		   0);
	check_kept(bursts, N_BURSTS(bursts), GS_BUFFER_NONE, GS_KEEP_LAST, 0,
		   0);
}

static size_t first_partition(void *arg, const void *event)
{
	(void)arg, (void)event;
	return 0;
}

Test(buffer, gs_buffer_none_is_refused_where_nothing_drops,
     .timeout = GS_TEST_TIMEOUT)
{
	log_count lc = { 0 };
	gs_pipeline *p = counted_pipeline_new(&lc);
	gs_stage *s = (gs_stage *)&s;
	gs_stage_opts none = { .buffer_size = GS_BUFFER_NONE };
	cr_expect_eq(gs_push_producer(p, &none, &s), GS_EINVAL);
	cr_expect_eq(gs_stream(p, &none, &s), GS_EINVAL);
	none.dispatcher = gs_dispatcher_partition(2, first_partition, NULL);
	cr_expect_eq(gs_stage_new(p, GS_PRODUCER, &burster_ops, &(burster){ 0 },
				  &none, &s),
		     GS_EINVAL);
	cr_expect_eq(s, (gs_stage *)&s, "nothing made");
	cr_expect_eq(atomic_load(&lc.error), 3, "each refusal says why");
	gs_pipeline_free(p);
}

Test(buffer, a_buffer_exactly_full_drops_nothing, .timeout = GS_TEST_TIMEOUT)
{
	static const size_t bursts[] = { 15 };
	check_kept(bursts, N_BURSTS(bursts), 10, GS_KEEP_FIRST, 5, 15);
}

Test(buffer, drops_are_counted_without_an_event_free,
     .timeout = GS_TEST_TIMEOUT)
{
	static const size_t bursts[] = { 100 };
	overflow o;
	run_overflow(&o, bursts, 1, 10, GS_KEEP_LAST, false);
	cr_assert_eq(atomic_load(&o.r.received), 15);
	cr_assert_eq(o.st.dropped, 85);
	cr_assert_eq(atomic_load(&o.t.freed_count), 0);
	cr_assert_geq(atomic_load(&o.log.warn), 1);
	overflow_free(&o);
}

Test(buffer, the_default_buffer_holds_ten_thousand, .timeout = GS_TEST_TIMEOUT)
{
	/* 5 out, 10000 kept, 7 dropped; in bursts of 256 or less. */
	enum { TOTAL = 5 + 10000 + 7 };
	static size_t bursts[TOTAL / 256 + 1];
	size_t nb = 0;
	for (size_t left = TOTAL; left; nb++) {
		bursts[nb] = left < 256 ? left : 256;
		left -= bursts[nb];
	}
	check_kept(bursts, nb, 0, GS_KEEP_FIRST, 5, 10005);
}

Test(buffer, an_unbounded_buffer_never_drops, .timeout = GS_TEST_TIMEOUT)
{
	enum { TOTAL = 30000 };
	static size_t bursts[TOTAL / 250];
	for (size_t i = 0; i < TOTAL / 250; i++)
		bursts[i] = 250;
	check_kept(bursts, N_BURSTS(bursts), GS_UNBOUNDED, GS_KEEP_FIRST, 5,
		   TOTAL);
}

/* Emits 0..19 from init, before any subscription is attached, into a
 * buffer of 10, and finishes there. */
static int emit_in_init(void *state, gs_stage *stage)
{
	burster *b = state;
	void *ev[20];
	for (size_t i = 0; i < 20; i++)
		ev[i] = GS_EV(i);
	if (gs_emit(stage, ev, 20) || gs_done(stage))
		atomic_fetch_add(&b->emit_errors, 1);
	return GS_OK;
}

Test(buffer, events_emitted_in_init_wait_in_the_buffer,
     .timeout = GS_TEST_TIMEOUT)
{
	static const gs_stage_ops ops = { .init = emit_in_init,
					  .handle_demand = burst_demand };
	static const gs_keep keeps[] = { GS_KEEP_LAST, GS_KEEP_FIRST };
	for (size_t k = 0; k < 2; k++) {
		log_count log = { 0 };
		gs_pipeline *p = counted_pipeline_new(&log);
		tally t;
		tally_init(&t, 20);
		burster b = { 0 };
		recorder r = { .check_order = true, .tally = &t };
		gs_stage *prod = NULL, *cons = NULL;
		GS_OK_OR_DIE(
			gs_stage_new(p, GS_PRODUCER, &ops, &b,
				     &(gs_stage_opts){ .buffer_size = 10,
						       .buffer_keep = keeps[k],
						       .event_free = tally_free,
						       .event_free_arg = &t },
				     &prod));
		cons = recorder_new(p, &r, NULL);
		recorder_subscribe(&r, cons, prod, NULL);
		cr_assert_eq(start_and_wait(p), GS_OK);
		cr_assert_eq(atomic_load(&b.emit_errors), 0);
		cr_assert_eq(atomic_load(&b.calls), 0,
			     "done before any demand");
		cr_assert_eq(atomic_load(&r.received), 10);
		size_t kept = keeps[k] == GS_KEEP_LAST ? 10 : 0;
		for (size_t i = 0; i < 20; i++) {
			bool in = i >= kept && i < kept + 10;
			cr_assert_eq(atomic_load(&t.seen[i]), in, "event %zu",
				     i);
			cr_assert_eq(atomic_load(&t.freed[i]), !in, "event %zu",
				     i);
		}
		cr_assert_geq(atomic_load(&log.warn), 1);
		gs_pipeline_free(p);
		tally_fini(&t);
	}
}

Test(buffer, buffered_events_meet_demand_before_handle_demand,
     .timeout = GS_TEST_TIMEOUT)
{
	/* The first call emits 2000 more than asked: that much of the later
	 * demand is met from the buffer and never reaches handle_demand. */
	enum { N = 20000, EXTRA = 2000, MAX = 100 };
	gs_pipeline *p = pipeline_new(NULL);
	recorder r = { .check_order = true };
	seq_producer sp = { .total = N, .extra_first = EXTRA };
	gs_stage *prod = seq_producer_new(p, &sp, NULL);
	gs_stage *cons = recorder_new(p, &r, NULL);
	recorder_subscribe(&r, cons, prod, &(gs_sub_opts){ .max_demand = MAX });
	cr_assert_eq(start_and_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&r.received), N);
	cr_assert_eq(atomic_load(&r.demand_errors), 0);
	cr_assert_eq(atomic_load(&r.order_errors), 0);
	cr_assert_eq(atomic_load(&sp.first_demand), MAX);
	uint64_t demanded = atomic_load(&sp.demanded);
	cr_assert_leq(demanded + EXTRA, N + MAX,
		      "handle_demand was passed %llu in all",
		      (unsigned long long)demanded);
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(prod, &st));
	cr_assert_eq(st.dropped, 0);
	gs_pipeline_free(p);
}
