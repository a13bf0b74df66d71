// SPDX-License-Identifier: MIT
/*
 * Every event accounted for where ownership is easy to get wrong: a drain
 * of a push producer, demand a cancelled subscription left unmet, a second
 * subscription to the same producer, a finished producer still waiting for
 * its first subscriber, and a temporary subscription whose producer fails.
 */
#include <pthread.h>

#include "gs_test.h"

/* --- a consumer that waits inside handle_events until released --------- */

typedef struct gate {
	recorder rec;
	_Atomic int entered;
	_Atomic int open;
} gate;

static int gate_events(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	gate *g = state;
	(void)stage;
	atomic_fetch_add(&g->entered, 1);
	while (!atomic_load(&g->open)) {
		struct timespec ts = { .tv_nsec = 100000 };
		nanosleep(&ts, NULL);
	}
	return recorder_take(&g->rec, from, events, n);
}

static void gate_terminate(void *state, gs_stage *stage, int reason)
{
	recorder_ops.terminate(&((gate *)state)->rec, stage, reason);
}

static const gs_stage_ops gate_ops = { .handle_events = gate_events,
				       .terminate = gate_terminate };

#define PUSHED 2000

Test(ownership, drain_delivers_what_a_push_producer_accepted,
     .timeout = GS_TEST_TIMEOUT)
{
	tally t;
	tally_init(&t, PUSHED);
	gate g = { .rec = { .tally = &t, .check_order = true } };
	gs_pipeline *p;
	gs_stage *push, *cons;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(
		gs_push_producer(p,
				 &(gs_stage_opts){ .event_free = tally_free,
						   .event_free_arg = &t },
				 &push));
	/* It blocks in its callback until the test opens the gate. */
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &gate_ops, &g,
				  &(gs_stage_opts){ .blocking = true }, &cons));
	recorder_subscribe(&g.rec, cons, push,
			   &(gs_sub_opts){ .max_demand = 10 });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	for (uintptr_t i = 0; i < PUSHED; i += 100) {
		void *ev[100];
		for (size_t k = 0; k < 100; k++)
			ev[k] = GS_EV(i + k);
		GS_OK_OR_DIE(gs_push(push, ev, 100, -1));
	}
	wait_int_at_least(&g.entered, 1);
	/* Accepted pushes are buffered events, and the counters say so. */
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(push, &st));
	cr_assert_geq(st.buffered, PUSHED - 10, "buffered %llu",
		      (unsigned long long)st.buffered);
	atomic_store(&g.open, 1);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	tally_check(&t, PUSHED, true);
	cr_assert_eq(atomic_load(&t.freed_count), 0, "drain dropped events");
	cr_assert_eq(atomic_load(&g.rec.received), PUSHED);
	GS_OK_OR_DIE(gs_stage_stats(push, &st));
	cr_assert_eq(st.buffered, 0);
	gs_pipeline_free(p);
	tally_fini(&t);
}

Test(ownership, drain_of_a_push_producer_with_no_subscriber_counts_its_drops,
     .timeout = GS_TEST_TIMEOUT)
{
	tally t;
	tally_init(&t, 50);
	log_count log = { 0 };
	gs_pipeline *p;
	gs_stage *push;
	GS_OK_OR_DIE(gs_pipeline_new(&(gs_pipeline_opts){ .log = log_counter,
							  .log_arg = &log },
				     &p));
	GS_OK_OR_DIE(
		gs_push_producer(p,
				 &(gs_stage_opts){ .event_free = tally_free,
						   .event_free_arg = &t },
				 &push));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	void *ev[50];
	for (size_t k = 0; k < 50; k++)
		ev[k] = GS_EV(k);
	GS_OK_OR_DIE(gs_push(push, ev, 50, -1));
	/* Nobody will ever take them: the drain ends, and says what it
	 * dropped. */
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	tally_check(&t, 50, true);
	cr_assert_eq(atomic_load(&t.freed_count), 50);
	cr_assert_geq(atomic_load(&log.warn), 1);
	cr_assert_eq(gs_push(push, ev, 1, 0), GS_ECLOSED);
	gs_pipeline_free(p);
	tally_fini(&t);
}

/* Waits until the producer has seen `n` events of pending demand. */
static void wait_pending(gs_stage *producer, uint64_t n)
{
	for (;;) {
		gs_stats st;
		GS_OK_OR_DIE(gs_stage_stats(producer, &st));
		if (st.pending_demand == n)
			return;
		struct timespec ts = { .tv_nsec = 100000 };
		nanosleep(&ts, NULL);
	}
}

Test(ownership, demand_a_cancelled_subscription_left_unmet_is_not_lost,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *push, *c1, *c2;
	recorder r1 = { 0 }, r2 = { .check_order = true };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_push_producer(p, NULL, &push));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r1, NULL, &c1));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r2, NULL, &c2));
	gs_sub *s1 = recorder_subscribe(&r1, c1, push,
					&(gs_sub_opts){ .max_demand = 10 });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* c1's ask of 10 reached the producer, which had nothing to send. */
	wait_pending(push, 10);
	GS_OK_OR_DIE(gs_cancel(s1));
	wait_int_at_least(&r1.cancels, 1);
	void *ev[100];
	for (size_t k = 0; k < 100; k++)
		ev[k] = GS_EV(k);
	GS_OK_OR_DIE(gs_push(push, ev, 100, -1));
	GS_OK_OR_DIE(gs_push_close(push));
	recorder_subscribe(&r2, c2, push, &(gs_sub_opts){ .max_demand = 10 });
	/* Everything reaches c2 and the pipeline finishes; before the fix
	 * c2 got 10 events and the wait never returned. */
	wait_at_least(&r2.received, 100);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	cr_assert_eq(atomic_load(&r2.received), 100);
	cr_assert_eq(atomic_load(&r2.order_errors), 0);
	cr_assert_eq(atomic_load(&r1.received), 0);
	gs_pipeline_free(p);
}

Test(ownership, a_second_subscription_to_the_same_producer_is_refused,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = 100 };
	recorder r = { .check_order = true };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	recorder_subscribe(&r, cons, prod, NULL);
	gs_sub *again = NULL;
	cr_assert_eq(gs_subscribe(cons, prod, NULL, &again), GS_EEXIST);
	cr_assert_null(again, "out-parameter untouched on error");
	cr_assert_str_eq(gs_strerror(GS_EEXIST),
			 "the consumer is already subscribed to this producer");
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&r.received), 100, "each event once");
	gs_pipeline_free(p);
}

/* --- a producer that is done before anybody subscribes ----------------- */

static int emit_then_done(void *state, gs_stage *stage)
{
	(void)state;
	void *ev[100];
	for (size_t k = 0; k < 100; k++)
		ev[k] = GS_EV(k);
	gs_err err = gs_emit(stage, ev, 100);
	return err ? (int)err : (int)gs_done(stage);
}

static int no_demand(void *state, gs_stage *stage, size_t demand)
{
	(void)state, (void)stage, (void)demand;
	return GS_OK;
}

Test(ownership, a_done_producer_waits_for_its_first_subscriber,
     .timeout = GS_TEST_TIMEOUT)
{
	tally t;
	tally_init(&t, 100);
	gs_pipeline *p;
	gs_stage *prod, *cons;
	recorder r = { .tally = &t, .check_order = true };
	static const gs_stage_ops ops = { .init = emit_then_done,
					  .handle_demand = no_demand };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &ops, NULL,
				  &(gs_stage_opts){ .event_free = tally_free,
						    .event_free_arg = &t },
				  &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	/* start returns once init ran: the events are buffered and the
	 * producer is done, with nobody subscribed. */
	GS_OK_OR_DIE(gs_pipeline_start(p));
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(prod, &st));
	cr_assert_eq(st.buffered, 100);
	recorder_subscribe(&r, cons, prod, NULL);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	tally_check(&t, 100, true);
	cr_assert_eq(atomic_load(&r.received), 100);
	cr_assert_eq(atomic_load(&t.freed_count), 0);
	gs_pipeline_free(p);
	tally_fini(&t);
}

Test(ownership, a_temporary_consumer_outlives_a_failed_producer,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *bad, *good, *cons;
	seq_producer b = { .total = 0,
			   .fail_at = 1,
			   .fail_code = GS_TEST_FAIL };
	seq_producer g = { .first = 1000, .total = 10 };
	recorder r = { .check_order = true };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &b, NULL,
				  &bad));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &g, NULL,
				  &good));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	recorder_subscribe(&r, cons, bad,
			   &(gs_sub_opts){ .cancel = GS_CANCEL_TEMPORARY });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* Its only producer failed: it is told, and runs on. */
	wait_int_at_least(&r.cancels, 1);
	cr_assert_eq(atomic_load(&r.cancel_reason), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&r.terminated), 0);
	/* Proof that it still runs: a new producer's events reach it, and
	 * its normal end finishes the consumer normally. */
	recorder_subscribe(&r, cons, good, NULL);
	cr_assert_eq(gs_pipeline_wait(p), GS_TEST_FAIL,
		     "the failure is still the pipeline's first error");
	cr_assert_eq(atomic_load(&r.received), 10);
	cr_assert_eq(atomic_load(&r.terminated), 1);
	cr_assert_eq(atomic_load(&r.reason), GS_OK);
	gs_pipeline_free(p);
}
