// SPDX-License-Identifier: MIT
/* Run to completion: finite producers finish, and so does everything
 * downstream of them, so gs_pipeline_wait returns. */
#include "gs_test.h"

#ifndef GS_TEST_EVENTS
#define GS_TEST_EVENTS 100000
#endif

static void expect_finished_ok(pair *x)
{
	cr_assert_eq(atomic_load(&x->sp.terminated), 1);
	cr_assert_eq(atomic_load(&x->sp.reason), GS_OK);
	cr_assert_eq(atomic_load(&x->r.terminated), 1);
	cr_assert_eq(atomic_load(&x->r.reason), GS_OK);
	cr_assert_eq(atomic_load(&x->sp.calls_after_done), 0,
		     "handle_demand after gs_done");
}

Test(completion, a_producer_done_in_init_with_nothing_finishes_the_pipeline,
     .timeout = GS_TEST_TIMEOUT)
{
	pair x;
	pair_new(&x, 0, 0);
	x.sp.done_in_init = true;
	cr_assert_eq(pair_run(&x, NULL), GS_OK);
	expect_finished_ok(&x);
	cr_assert_eq(atomic_load(&x.r.received), 0);
	cr_assert_eq(atomic_load(&x.sp.calls), 0);
	cr_assert_eq(atomic_load(&x.r.cancels_ok), 1,
		     "the consumer sees its subscription end with GS_OK");
	pair_free(&x);
}

Test(completion, a_producer_done_in_its_first_demand_finishes_the_pipeline,
     .timeout = GS_TEST_TIMEOUT)
{
	pair x;
	pair_new(&x, 0, 0);
	cr_assert_eq(pair_run(&x, NULL), GS_OK);
	expect_finished_ok(&x);
	cr_assert_eq(atomic_load(&x.r.received), 0);
	cr_assert_eq(atomic_load(&x.sp.calls), 1);
	pair_free(&x);
}

Test(completion, a_finite_producer_finishes_after_everything_is_delivered,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS;
	pair x;
	pair_new(&x, n, 0);
	cr_assert_eq(pair_run(&x, &(gs_sub_opts){ .max_demand = 333 }), GS_OK);
	expect_finished_ok(&x);
	cr_assert_eq(atomic_load(&x.r.received), n);
	cr_assert_eq(atomic_load(&x.r.order_errors), 0);
	pair_free(&x);
}

Test(completion, a_buffer_emitted_at_once_is_delivered_before_finishing,
     .timeout = GS_TEST_TIMEOUT)
{
	/* Everything in the first handle_demand: most of it waits in the
	 * buffer (default 10000) while the consumer asks 10 at a time. */
	size_t n = 9000;
	pair x;
	pair_new(&x, n, 0);
	x.sp.extra = n;
	cr_assert_eq(pair_run(&x, &(gs_sub_opts){ .max_demand = 10 }), GS_OK);
	expect_finished_ok(&x);
	cr_assert_eq(atomic_load(&x.sp.calls), 1);
	cr_assert_eq(atomic_load(&x.r.received), n);
	cr_assert_eq(atomic_load(&x.r.order_errors), 0);
	cr_assert_eq(atomic_load(&x.r.demand_errors), 0);
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(x.prod, &st));
	cr_assert_eq(st.dropped, 0);
	cr_assert_eq(st.buffered, 0);
	pair_free(&x);
}

Test(completion, a_chain_of_three_map_stages_runs_to_completion,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS;
	pair x;
	pair_new(&x, n, 0);
	mapper m[3] = { { .add = 1, .rec = { .check_order = true } },
			{ .add = 1, .rec = { .check_order = true } },
			{ .add = 1, .rec = { .check_order = true } } };
	gs_stage *pc[3];
	gs_stage *up = x.prod;
	for (int i = 0; i < 3; i++) {
		pc[i] = mapper_new(x.p, &m[i], NULL);
		recorder_subscribe(&m[i].rec, pc[i], up,
				   &(gs_sub_opts){ .max_demand = (size_t)100
								 << i });
		up = pc[i];
	}
	recorder_subscribe(&x.r, x.cons, up, NULL);
	cr_assert_eq(start_and_wait(x.p), GS_OK);
	expect_finished_ok(&x);
	cr_assert_eq(atomic_load(&x.r.received), n);
	cr_assert_eq(atomic_load(&x.r.order_errors), 0);
	/* 3 + 4 + ... + (n + 2) */
	cr_assert_eq(atomic_load(&x.r.sum),
		     (uint64_t)n * (n - 1) / 2 + (uint64_t)3 * n);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(atomic_load(&m[i].rec.terminated), 1, "pc %d", i);
		cr_assert_eq(atomic_load(&m[i].rec.reason), GS_OK, "pc %d", i);
		cr_assert_eq(atomic_load(&m[i].rec.received), n, "pc %d", i);
		cr_assert_eq(atomic_load(&m[i].rec.chunk_errors), 0, "pc %d",
			     i);
		cr_assert_eq(atomic_load(&m[i].rec.demand_errors), 0, "pc %d",
			     i);
	}
	pair_free(&x);
}

Test(completion, a_consumer_of_two_producers_finishes_after_both,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS / 2;
	pair x;
	pair_new(&x, 10, 0);
	seq_producer other = { .first = 10, .total = n };
	gs_stage *prod2 = seq_producer_new(x.p, &other, NULL);
	/* Not permanent: a permanent subscription stops its consumer when
	 * its producer finishes, whatever the others do. */
	recorder_subscribe(&x.r, x.cons, x.prod,
			   &(gs_sub_opts){ .cancel = GS_CANCEL_TRANSIENT });
	recorder_subscribe(&x.r, x.cons, prod2,
			   &(gs_sub_opts){ .max_demand = 50,
					   .cancel = GS_CANCEL_TRANSIENT });
	cr_assert_eq(start_and_wait(x.p), GS_OK);
	expect_finished_ok(&x);
	cr_assert_eq(atomic_load(&x.r.received), n + 10);
	cr_assert_eq(atomic_load(&x.r.cancels_ok), 2);
	cr_assert_eq(atomic_load(&other.reason), GS_OK);
	pair_free(&x);
}

Test(completion, a_lone_finite_producer_finishes, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	seq_producer sp = { .done_in_init = true };
	seq_producer_new(p, &sp, NULL);
	cr_assert_eq(start_and_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&sp.terminated), 1);
	gs_pipeline_free(p);
}

Test(completion, an_empty_pipeline_starts_and_finishes,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(&(gs_pipeline_opts){ 0 });
	cr_assert_eq(start_and_wait(p), GS_OK);
	gs_pipeline_free(p);
}

Test(completion, an_empty_array_source_finishes, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	recorder r = { 0 };
	gs_stage *prod = NULL, *cons = NULL;
	void *none[1] = { NULL };
	GS_OK_OR_DIE(gs_from_array(p, none, 0, NULL, &prod));
	cons = recorder_new(p, &r, NULL);
	recorder_subscribe(&r, cons, prod, NULL);
	cr_assert_eq(start_and_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&r.received), 0);
	cr_assert_eq(atomic_load(&r.reason), GS_OK);
	gs_pipeline_free(p);
}

Test(completion, wait_returns_the_same_result_every_time,
     .timeout = GS_TEST_TIMEOUT)
{
	pair x;
	pair_new(&x, 1000, 0);
	cr_assert_eq(pair_run(&x, NULL), GS_OK);
	cr_assert_eq(gs_pipeline_wait(x.p), GS_OK);
	cr_assert_eq(gs_pipeline_stop(x.p, GS_STOP_DRAIN), GS_OK);
	cr_assert_eq(gs_pipeline_stop(x.p, GS_STOP_NOW), GS_OK);
	cr_assert_eq(gs_pipeline_wait(x.p), GS_OK);
	expect_finished_ok(&x);
	pair_free(&x);
}

Test(completion, handle_subscribe_runs_once_on_each_end,
     .timeout = GS_TEST_TIMEOUT)
{
	pair x;
	pair_new(&x, 100, 0);
	mapper m = { 0 };
	gs_stage *pc = mapper_new(x.p, &m, NULL);
	recorder_subscribe(&m.rec, pc, x.prod, NULL);
	recorder_subscribe(&x.r, x.cons, pc, NULL);
	cr_assert_eq(start_and_wait(x.p), GS_OK);
	cr_assert_eq(atomic_load(&x.r.subscribes), 1);
	/* Once as a consumer, once as a producer. */
	cr_assert_eq(atomic_load(&m.rec.subscribes), 2);
	cr_assert_eq(atomic_load(&x.r.received), 100);
	pair_free(&x);
}

Test(completion, stages_added_to_a_running_pipeline_start_and_finish,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS / 10;
	gs_pipeline *p = pipeline_new(NULL);
	/* Something to keep the pipeline running meanwhile. */
	seq_producer first = { .total = n };
	recorder r1 = { .check_order = true };
	gs_stage *a = seq_producer_new(p, &first, NULL);
	gs_stage *b = recorder_new(p, &r1, NULL);
	recorder_subscribe(&r1, b, a, NULL);
	GS_OK_OR_DIE(gs_pipeline_start(p));

	seq_producer sp = { .total = n };
	recorder r = { 0 };
	gs_stage *prod = seq_producer_new(p, &sp, NULL);
	gs_stage *cons = recorder_new(p, &r, NULL);
	/* Not tracked by the recorder: its thread is already running. */
	GS_OK_OR_DIE(gs_subscribe(cons, prod,
				  &(gs_sub_opts){ .max_demand = 20 }, NULL));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&r.received), n);
	cr_assert_eq(atomic_load(&r.sum), (uint64_t)n * (n - 1) / 2);
	cr_assert_leq(atomic_load(&r.max_chunk), 10);
	cr_assert_eq(atomic_load(&r.reason), GS_OK);
	cr_assert_eq(atomic_load(&r1.received), n);
	gs_pipeline_free(p);
}
