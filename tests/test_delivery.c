// SPDX-License-Identifier: MIT
/* Every event arrives exactly once and in order, through every shape of
 * pipeline the demand dispatcher serves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_test.h"

#ifndef GS_TEST_EVENTS
#define GS_TEST_EVENTS 100000
#endif

static void expect_clean(recorder *r, const char *who)
{
	cr_assert_eq(atomic_load(&r->order_errors), 0, "%s: out of order", who);
	cr_assert_eq(atomic_load(&r->chunk_errors), 0, "%s: chunk too big",
		     who);
	cr_assert_eq(atomic_load(&r->demand_errors), 0, "%s: more than asked",
		     who);
	cr_assert_eq(atomic_load(&r->empty_chunks), 0, "%s: empty chunk", who);
	cr_assert_eq(atomic_load(&r->untracked), 0, "%s: unknown sub", who);
	cr_assert_eq(atomic_load(&r->after_stop), 0, "%s: after terminate",
		     who);
	cr_assert_eq(atomic_load(&r->terminated), 1, "%s: terminate count",
		     who);
	cr_assert_eq(atomic_load(&r->reason), GS_OK, "%s: reason", who);
}

Test(delivery, one_to_one_delivers_every_event_once_in_order,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS;
	pair l;
	pair_new(&l, n, n + 8);
	cr_assert_eq(pair_run(&l, NULL), GS_OK);
	cr_assert_eq(atomic_load(&l.r.received), n);
	cr_assert_eq(atomic_load(&l.r.sum), (uint64_t)n * (n - 1) / 2);
	tally_check(&l.t, n, true);
	expect_clean(&l.r, "consumer");
	cr_assert_eq(atomic_load(&l.sp.emitted), n);
	cr_assert_eq(atomic_load(&l.sp.reason), GS_OK);
	cr_assert_eq(atomic_load(&l.sp.terminated), 1);
	pair_free(&l);
}

Test(delivery, a_map_stage_passes_every_event_once_in_order,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS;
	pair l;
	pair_new(&l, n, n + 8);
	mapper m = { .add = 1, .rec = { .check_order = true } };
	gs_stage *pc = mapper_new(l.p, &m, NULL);
	recorder_subscribe(&m.rec, pc, l.prod, NULL);
	recorder_subscribe(&l.r, l.cons, pc, NULL);
	cr_assert_eq(start_and_wait(l.p), GS_OK);
	/* The consumer sees 1..n. */
	cr_assert_eq(atomic_load(&l.r.received), n);
	cr_assert_eq(atomic_load(&l.r.sum), (uint64_t)n * (n + 1) / 2);
	cr_assert_eq(atomic_load(&l.t.seen[0]), 0);
	for (size_t i = 1; i <= n; i++)
		cr_assert_eq(atomic_load(&l.t.seen[i]), 1, "event %zu", i);
	expect_clean(&l.r, "consumer");
	expect_clean(&m.rec, "map");
	cr_assert_eq(atomic_load(&m.rec.received), n);
	cr_assert_eq(atomic_load(&m.emitted), n);
	cr_assert_eq(atomic_load(&m.emit_errors), 0);

	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(pc, &st));
	cr_assert_eq(st.events_in, n);
	cr_assert_eq(st.events_out, n);
	cr_assert_eq(st.dropped, 0);
	cr_assert_eq(st.buffered, 0);
	pair_free(&l);
}

Test(delivery, three_consumers_share_the_events_exactly_once,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS;
	enum { K = 3 };
	pair l;
	pair_new(&l, n, n + 8);
	recorder more[K - 1];
	gs_stage *cons[K] = { l.cons };
	recorder *rec[K] = { &l.r, &more[0], &more[1] };
	for (int i = 1; i < K; i++) {
		more[i - 1] = (recorder){ .check_order = true, .tally = &l.t };
		cons[i] = recorder_new(l.p, rec[i], NULL);
	}
	for (int i = 0; i < K; i++)
		recorder_subscribe(rec[i], cons[i], l.prod, NULL);
	cr_assert_eq(start_and_wait(l.p), GS_OK);
	uint64_t total = 0, sum = 0;
	for (int i = 0; i < K; i++) {
		char who[32];
		snprintf(who, sizeof who, "consumer %d", i);
		expect_clean(rec[i], who);
		total += atomic_load(&rec[i]->received);
		sum += atomic_load(&rec[i]->sum);
	}
	cr_assert_eq(total, n);
	cr_assert_eq(sum, (uint64_t)n * (n - 1) / 2);
	tally_check(&l.t, n, true);
	pair_free(&l);
}

Test(delivery, two_producers_into_one_consumer_keep_each_order,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS / 2;
	pair l;
	pair_new(&l, 2 * n, 2 * n + 8);
	l.sp.total = n;
	seq_producer second = { .first = n, .total = n };
	gs_stage *prod2 = seq_producer_new(l.p, &second, NULL);
	/* Transient: a permanent subscription would stop the consumer as
	 * soon as either producer finished. */
	recorder_subscribe(&l.r, l.cons, l.prod,
			   &(gs_sub_opts){ .max_demand = 100,
					   .cancel = GS_CANCEL_TRANSIENT });
	recorder_subscribe(&l.r, l.cons, prod2,
			   &(gs_sub_opts){ .max_demand = 300,
					   .min_demand = GS_MIN_DEMAND_ZERO,
					   .cancel = GS_CANCEL_TEMPORARY });
	cr_assert_eq(start_and_wait(l.p), GS_OK);
	cr_assert_eq(atomic_load(&l.r.received), 2 * n);
	tally_check(&l.t, 2 * n, true);
	expect_clean(&l.r, "consumer");
	cr_assert_eq(atomic_load(&l.r.cancels_ok), 2);
	pair_free(&l);
}

Test(delivery, a_flat_map_stage_emits_more_than_it_receives_without_loss,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS / 4;
	pair l;
	pair_new(&l, n, n + 8);
	/* Every event three times: the consumer's tally counts to 3. */
	l.r.tally = NULL;
	l.r.check_order = false;
	mapper m = { .copies = 3 };
	gs_stage *pc = mapper_new(l.p, &m, NULL);
	recorder_subscribe(&m.rec, pc, l.prod,
			   &(gs_sub_opts){ .max_demand = 64 });
	recorder_subscribe(&l.r, l.cons, pc,
			   &(gs_sub_opts){ .max_demand = 10 });
	cr_assert_eq(start_and_wait(l.p), GS_OK);
	cr_assert_eq(atomic_load(&l.r.received), 3 * n);
	cr_assert_eq(atomic_load(&l.r.sum), 3 * ((uint64_t)n * (n - 1) / 2));
	expect_clean(&l.r, "consumer");
	expect_clean(&m.rec, "flat map");
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(pc, &st));
	cr_assert_eq(st.events_in, n);
	cr_assert_eq(st.events_out, 3 * n);
	cr_assert_eq(st.dropped, 0);
	pair_free(&l);
}

Test(delivery, from_array_delivers_the_array_in_order,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS / 10;
	void **events = malloc(n * sizeof *events);
	cr_assert_not_null(events);
	for (size_t i = 0; i < n; i++)
		events[i] = GS_EV(i);
	gs_pipeline *p = pipeline_new(NULL);
	tally t;
	tally_init(&t, n);
	recorder r = { .check_order = true, .tally = &t };
	gs_stage *prod = NULL, *cons = NULL;
	GS_OK_OR_DIE(gs_from_array(p, events, n, NULL, &prod));
	free(events); /* copied */
	cons = recorder_new(p, &r, NULL);
	recorder_subscribe(&r, cons, prod, &(gs_sub_opts){ .max_demand = 77 });
	cr_assert_eq(start_and_wait(p), GS_OK);
	tally_check(&t, n, true);
	expect_clean(&r, "consumer");
	gs_pipeline_free(p);
	tally_fini(&t);
}

Test(delivery, stats_count_what_went_through, .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS / 10;
	pair l;
	pair_new(&l, n, n + 8);
	cr_assert_eq(pair_run(&l, &(gs_sub_opts){ .max_demand = 100 }), GS_OK);
	gs_stats ps, cs;
	GS_OK_OR_DIE(gs_stage_stats(l.prod, &ps));
	GS_OK_OR_DIE(gs_stage_stats(l.cons, &cs));
	cr_assert_eq(ps.events_out, n);
	cr_assert_eq(ps.events_in, 0);
	cr_assert_eq(ps.dropped, 0);
	cr_assert_eq(ps.buffered, 0);
	cr_assert_geq(ps.batches_out, n / 100);
	cr_assert_eq(cs.events_in, n);
	cr_assert_eq(cs.events_out, 0);
	cr_assert_eq(cs.batches_in, atomic_load(&l.r.chunks));
	cr_assert_eq(cs.dropped, 0);
	pair_free(&l);
}

Test(delivery, stage_state_and_subscription_ends_are_what_was_given)
{
	pair l;
	pair_new(&l, 1, 9);
	gs_sub *sub = recorder_subscribe(&l.r, l.cons, l.prod, NULL);
	cr_assert_eq(gs_stage_state(l.prod), &l.sp);
	cr_assert_eq(gs_stage_state(l.cons), &l.r);
	cr_assert_eq(gs_sub_producer(sub), l.prod);
	cr_assert_eq(gs_sub_consumer(sub), l.cons);
	cr_assert_not_null(gs_stage_name(l.prod));
	cr_assert_eq(gs_stage_pipeline(l.prod), l.p);
	cr_assert_null(gs_stage_pipeline(NULL));
	gs_stage *named = seq_producer_new(
		l.p, &l.sp, &(gs_stage_opts){ .name = "source" });
	cr_assert_str_eq(gs_stage_name(named), "source");
	pair_free(&l);
}

Test(delivery, the_dot_graph_names_every_stage_and_edge,
     .timeout = GS_TEST_TIMEOUT)
{
	pair l;
	pair_new(&l, 500, 508);
	cr_assert_eq(pair_run(&l, NULL), GS_OK);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	GS_OK_OR_DIE(gs_pipeline_write_dot(l.p, f));
	cr_assert_eq(gs_pipeline_write_dot(l.p, NULL), GS_EINVAL);
	fclose(f);
	cr_assert_not_null(strstr(text, "digraph"));
	cr_assert_not_null(strstr(text, gs_stage_name(l.prod)));
	cr_assert_not_null(strstr(text, gs_stage_name(l.cons)));
	free(text);
	pair_free(&l);
}
