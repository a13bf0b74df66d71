// SPDX-License-Identifier: MIT
/* Cancel modes, gs_cancel, and how an error stops stages, reaches the
 * stages around them and becomes what gs_pipeline_wait returns. */
#include "gs_test.h"

#ifndef GS_TEST_EVENTS
#define GS_TEST_EVENTS 100000
#endif

/* Ids of the bad producer start here; the good one's start at 0. */
#define BAD_FIRST ((uintptr_t)1 << 30)

/*
 * A consumer fed by two producers: `bad` (subscribed with the mode under
 * test) and `good` (transient, so that its finishing normally leaves the
 * consumer running). Both are endless unless a test says otherwise.
 */
typedef struct duo {
	gs_pipeline *p;
	gs_stage *bad, *good, *cons;
	gs_sub *bad_sub, *good_sub;
	seq_producer b, g;
	recorder r;
	log_count log;
} duo;

static void duo_new(duo *d, gs_cancel_mode mode, const gs_stage_opts *gopts)
{
	*d = (duo){
		.b = { .first = BAD_FIRST, .total = SIZE_MAX },
		.g = { .total = SIZE_MAX },
		.r = { .check_order = true },
	};
	d->p = counted_pipeline_new(&d->log);
	d->bad = seq_producer_new(d->p, &d->b, NULL);
	d->good = seq_producer_new(d->p, &d->g, gopts);
	d->cons = recorder_new(d->p, &d->r, NULL);
	d->bad_sub = recorder_subscribe(&d->r, d->cons, d->bad,
					&(gs_sub_opts){ .cancel = mode,
							.max_demand = 100 });
	d->good_sub = recorder_subscribe(
		&d->r, d->cons, d->good,
		&(gs_sub_opts){ .cancel = GS_CANCEL_TRANSIENT,
				.max_demand = 100 });
}

/* A duo whose bad producer fails (GS_TEST_FAIL) at its first demand. */
static void duo_failing(duo *d, gs_cancel_mode mode)
{
	duo_new(d, mode, NULL);
	d->b.fail_at = 1;
	d->b.fail_code = GS_TEST_FAIL;
}

/* A permanent duo, started, once 1000 events have arrived. */
static void duo_running(duo *d)
{
	duo_new(d, GS_CANCEL_PERMANENT, NULL);
	GS_OK_OR_DIE(gs_pipeline_start(d->p));
	wait_at_least(&d->r.received, 1000);
}

Test(cancel, permanent_consumer_stops_with_the_producers_error,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_failing(&d, GS_CANCEL_PERMANENT);
	cr_assert_eq(start_and_wait(d.p), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&d.b.reason), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&d.r.terminated), 1);
	cr_assert_eq(atomic_load(&d.r.reason), GS_TEST_FAIL);
	/* The good producer lost its only consumer, so it finished too. */
	cr_assert_eq(atomic_load(&d.g.terminated), 1);
	cr_assert_eq(atomic_load(&d.r.demand_errors), 0);
	cr_assert_geq(atomic_load(&d.log.error), 1, "abnormal stops logged");
	cr_assert_eq(atomic_load(&d.log.null_stage), 0);
	gs_pipeline_free(d.p);
}

Test(cancel, permanent_consumer_stops_when_its_producer_finishes_normally,
     .timeout = GS_TEST_TIMEOUT)
{
	/* The other producer is endless: the pipeline finishes only because
	 * the consumer stops when its permanent producer does. */
	duo d;
	duo_new(&d, GS_CANCEL_PERMANENT, NULL);
	d.b.total = 10;
	cr_assert_eq(start_and_wait(d.p), GS_OK);
	cr_assert_eq(atomic_load(&d.r.reason), GS_OK);
	cr_assert_eq(d.r.subs[0].received, 10);
	cr_assert_eq(atomic_load(&d.g.terminated), 1);
	cr_assert_eq(atomic_load(&d.g.reason), GS_OK);
	/* What the other producer had sent is delivered or dropped. */
	gs_stats gs;
	GS_OK_OR_DIE(gs_stage_stats(d.good, &gs));
	cr_assert_eq(d.r.subs[1].received + gs.dropped,
		     atomic_load(&d.g.emitted));
	gs_pipeline_free(d.p);
}

Test(cancel, transient_consumer_stops_when_the_producer_fails,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_failing(&d, GS_CANCEL_TRANSIENT);
	cr_assert_eq(start_and_wait(d.p), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&d.r.reason), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&d.g.terminated), 1);
	gs_pipeline_free(d.p);
}

/* The consumer's `mode` producer sends `bad_total` events and finishes:
 * the consumer keeps running, takes every event of the other producer, and
 * sees both subscriptions end normally. */
static void keeps_running_when_a_producer_finishes(gs_cancel_mode mode,
						   size_t bad_total)
{
	size_t n = GS_TEST_EVENTS;
	duo d;
	duo_new(&d, mode, NULL);
	d.b.total = bad_total;
	d.g.total = n;
	cr_assert_eq(start_and_wait(d.p), GS_OK);
	cr_assert_eq(atomic_load(&d.r.reason), GS_OK);
	cr_assert_eq(d.r.subs[0].received, bad_total);
	cr_assert_eq(d.r.subs[1].received, n);
	cr_assert_eq(atomic_load(&d.r.cancels_ok), 2);
	cr_assert_eq(atomic_load(&d.log.error), 0);
	gs_pipeline_free(d.p);
}

Test(cancel, transient_consumer_keeps_running_when_a_producer_finishes,
     .timeout = GS_TEST_TIMEOUT)
{
	keeps_running_when_a_producer_finishes(GS_CANCEL_TRANSIENT, 10);
}

Test(cancel, temporary_consumer_keeps_running_when_a_producer_fails,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS;
	duo d;
	duo_failing(&d, GS_CANCEL_TEMPORARY);
	d.g.total = n;
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	/* The failure is still the pipeline's result. */
	cr_assert_eq(gs_pipeline_wait(d.p), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&d.b.reason), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&d.r.terminated), 1);
	cr_assert_eq(atomic_load(&d.r.reason), GS_OK);
	cr_assert_eq(d.r.subs[1].received, n,
		     "every event of the good producer arrives");
	cr_assert_leq(d.r.subs[0].received, atomic_load(&d.b.emitted));
	cr_assert_eq(atomic_load(&d.r.cancels), 2);
	cr_assert_eq(atomic_load(&d.r.cancels_ok), 1);
	cr_assert_eq(atomic_load(&d.r.order_errors), 0);
	cr_assert_eq(atomic_load(&d.g.reason), GS_OK);
	gs_pipeline_free(d.p);
}

Test(cancel, temporary_consumer_keeps_running_when_a_producer_finishes,
     .timeout = GS_TEST_TIMEOUT)
{
	keeps_running_when_a_producer_finishes(GS_CANCEL_TEMPORARY, 0);
}

/* The bad producer fails first; the (temporary) consumer fails in
 * reaction, from handle_cancel, with GS_EUSER + 7. Returns what wait
 * returned. */
static gs_err run_reacting(duo *d)
{
	duo_failing(d, GS_CANCEL_TEMPORARY);
	d->r.cancel_ret = GS_EUSER + 7;
	return start_and_wait(d->p);
}

Test(cancel, handle_cancel_returning_an_error_stops_the_consumer_with_it,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	gs_err err = run_reacting(&d);
	cr_assert(err == GS_TEST_FAIL || err == GS_EUSER + 7, "got %d",
		  (int)err);
	cr_assert_eq(atomic_load(&d.r.reason), GS_EUSER + 7);
	cr_assert_eq(atomic_load(&d.g.terminated), 1);
	gs_pipeline_free(d.p);
}

Test(cancel, wait_returns_the_root_cause_not_an_error_it_caused,
     .timeout = GS_TEST_TIMEOUT)
{
	/* The producer's error is the pipeline's. */
	duo d;
	gs_err err = run_reacting(&d);
	cr_assert_eq(err, GS_TEST_FAIL,
		     "wait gives the first error, the producer's: got %d",
		     (int)err);
	gs_pipeline_free(d.p);
}

/* --- gs_cancel ---------------------------------------------------------- */

Test(cancel,
     cancel_from_another_thread_delivers_what_was_sent_and_the_consumer_runs_on,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_EVENTS / 10;
	duo d;
	/* The good producer holds its demand until told, so that the
	 * consumer's only traffic before the cancel is the other's. */
	duo_new(&d, GS_CANCEL_PERMANENT,
		&(gs_stage_opts){ .demand = GS_DEMAND_ACCUMULATE });
	d.g.total = n;
	/* The cancelled producer is endless: it finishes when its consumer
	 * lets go. */
	d.b.done_on_cancel = true;
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	wait_at_least(&d.r.received, 5000);
	GS_OK_OR_DIE(gs_cancel(d.bad_sub));
	GS_OK_OR_DIE(gs_cancel(d.bad_sub)); /* idempotent */
	wait_int_at_least(&d.r.cancels, 1);
	cr_assert_eq(atomic_load(&d.r.cancel_reason), GS_ECANCELED);
	cr_assert_eq(atomic_load(&d.r.terminated), 0,
		     "the consumer keeps running after a cancel");
	GS_OK_OR_DIE(gs_stage_demand(d.good, GS_DEMAND_FORWARD));
	cr_assert_eq(gs_pipeline_wait(d.p), GS_OK);

	gs_stats bs;
	GS_OK_OR_DIE(gs_stage_stats(d.bad, &bs));
	cr_assert_eq(d.r.subs[0].received, bs.events_out,
		     "sent %llu, delivered %llu",
		     (unsigned long long)bs.events_out,
		     (unsigned long long)d.r.subs[0].received);
	cr_assert_eq(bs.dropped, 0);
	cr_assert_eq(atomic_load(&d.b.emitted), bs.events_out);
	cr_assert_eq(atomic_load(&d.b.cancels), 1);
	cr_assert_eq(atomic_load(&d.b.cancel_reason), GS_ECANCELED);
	cr_assert_eq(atomic_load(&d.b.reason), GS_OK);
	cr_assert_eq(d.r.subs[1].received, n);
	cr_assert_eq(atomic_load(&d.r.reason), GS_OK);
	cr_assert_eq(atomic_load(&d.r.order_errors), 0);
	gs_pipeline_free(d.p);
}

Test(cancel, cancel_before_start_ends_the_subscription_cleanly,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_new(&d, GS_CANCEL_PERMANENT, NULL);
	d.b.done_on_cancel = true;
	d.g.total = 1000;
	GS_OK_OR_DIE(gs_cancel(d.bad_sub));
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	/* Both subscriptions end, but a consumer keeps running after a
	 * cancel: if the cancelled one ends last, nothing finishes it. */
	wait_int_at_least(&d.r.cancels, 2);
	cr_assert_eq(gs_pipeline_stop(d.p, GS_STOP_DRAIN), GS_OK);
	cr_assert_eq(atomic_load(&d.r.cancels_ok), 1);
	cr_assert_eq(d.r.subs[1].received, 1000);
	gs_stats bs;
	GS_OK_OR_DIE(gs_stage_stats(d.bad, &bs));
	cr_assert_eq(d.r.subs[0].received, bs.events_out);
	gs_pipeline_free(d.p);
}

/* --- errors ------------------------------------------------------------- */

Test(cancel, a_consumer_error_stops_it_and_its_producer_finishes,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_new(&d, GS_CANCEL_PERMANENT, NULL);
	d.r.fail_after = 3000;
	d.r.fail_code = GS_TEST_FAIL;
	cr_assert_eq(start_and_wait(d.p), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&d.r.reason), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&d.r.terminated), 1);
	cr_assert_eq(atomic_load(&d.r.after_stop), 0);
	cr_assert_eq(atomic_load(&d.b.terminated), 1);
	cr_assert_eq(atomic_load(&d.g.terminated), 1);
	cr_assert_geq(atomic_load(&d.log.error), 1);
	gs_pipeline_free(d.p);
}

Test(cancel, an_init_error_stops_the_stage_and_reaches_its_consumer,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_new(&d, GS_CANCEL_PERMANENT, NULL);
	d.b.fail_init = true;
	d.b.fail_code = GS_EUSER + 3;
	/* start waits for the inits and reports the failure, as
	 * start_link does */
	cr_assert_eq(gs_pipeline_start(d.p), GS_EUSER + 3);
	cr_assert_eq(gs_pipeline_wait(d.p), GS_EUSER + 3);
	cr_assert_eq(atomic_load(&d.b.calls), 0, "no demand after init failed");
	cr_assert_eq(atomic_load(&d.b.terminated), 1);
	cr_assert_eq(atomic_load(&d.b.reason), GS_EUSER + 3);
	cr_assert_eq(atomic_load(&d.r.reason), GS_EUSER + 3);
	cr_assert_eq(d.r.subs[0].received, 0);
	gs_pipeline_free(d.p);
}

Test(cancel, an_error_in_the_middle_of_a_chain_reaches_both_ends,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	seq_producer sp = { .total = SIZE_MAX };
	mapper m = { .rec = { .fail_after = 5000, .fail_code = GS_TEST_FAIL } };
	recorder r = { .check_order = true };
	gs_stage *prod = seq_producer_new(p, &sp, NULL);
	gs_stage *pc = mapper_new(p, &m, NULL);
	gs_stage *cons = recorder_new(p, &r, NULL);
	recorder_subscribe(&m.rec, pc, prod, NULL);
	recorder_subscribe(&r, cons, pc, NULL);
	cr_assert_eq(start_and_wait(p), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&m.rec.reason), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&r.reason), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&sp.terminated), 1);
	cr_assert_leq(atomic_load(&r.received), atomic_load(&m.emitted));
	cr_assert_eq(atomic_load(&r.order_errors), 0);
	gs_pipeline_free(p);
}

Test(cancel, stopping_a_stage_from_outside_stops_it_with_the_reason,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_running(&d);
	GS_OK_OR_DIE(gs_stage_stop(d.cons, GS_EUSER + 5));
	cr_assert_eq(gs_pipeline_wait(d.p), GS_EUSER + 5);
	cr_assert_eq(atomic_load(&d.r.reason), GS_EUSER + 5);
	cr_assert_eq(atomic_load(&d.b.terminated), 1);
	cr_assert_eq(atomic_load(&d.g.terminated), 1);
	gs_pipeline_free(d.p);
}

Test(cancel, a_producer_stopped_normally_ends_its_consumers_normally,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_running(&d);
	GS_OK_OR_DIE(gs_stage_stop(d.bad, GS_OK));
	GS_OK_OR_DIE(gs_stage_stop(d.good, GS_OK));
	cr_assert_eq(gs_pipeline_wait(d.p), GS_OK);
	cr_assert_eq(atomic_load(&d.r.reason), GS_OK);
	cr_assert_eq(atomic_load(&d.b.reason), GS_OK);
	cr_assert_eq(atomic_load(&d.log.error), 0);
	gs_pipeline_free(d.p);
}

/* A producer-consumer that cancels its input with a reason on its first
 * batch, below a manual consumer that asks 5, then the rest. */
static gs_sub *reason_consumer_sub;

static int cancel_on_first(void *state, gs_stage *stage, gs_sub *from,
			   void **events, size_t n)
{
	if (!atomic_exchange((_Atomic bool *)state, true))
		GS_OK_OR_DIE(gs_cancel_reason(from, GS_TEST_FAIL));
	return gs_emit(stage, events, n);
}

/* gs_cancel_reason: what was sent before it is still delivered, even when
 * it waits for demand in a producer-consumer's input. */
Test(cancel, a_cancel_with_a_reason_still_delivers_what_was_sent,
     .timeout = GS_TEST_TIMEOUT)
{
	for (int mode = GS_CANCEL_PERMANENT; mode <= GS_CANCEL_TRANSIENT;
	     mode++) {
		/* 200: the source still holds 100 when the cancel comes,
		 * so it has not finished (its end would come first). */
		void *ev[200];
		for (uintptr_t i = 0; i < 200; i++)
			ev[i] = (void *)(i + 1);
		_Atomic uint64_t freed = 0;
		_Atomic bool cancelled = false;
		recorder r = { 0 };
		gs_pipeline *p = pipeline_new(NULL);
		gs_stage *src, *pc;
		GS_OK_OR_DIE(gs_from_array(
			p, ev, 200,
			&(gs_stage_opts){ .event_free = count_free,
					  .event_free_arg = &freed },
			&src));
		static const gs_stage_ops pc_ops = {
			.handle_events = cancel_on_first
		};
		GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER_CONSUMER, &pc_ops,
					  &cancelled, NULL, &pc));
		GS_OK_OR_DIE(gs_subscribe(
			pc, src,
			&(gs_sub_opts){ .max_demand = 100,
					.cancel = (gs_cancel_mode)mode },
			NULL));
		gs_stage *cons = recorder_new(p, &r, NULL);
		GS_OK_OR_DIE(gs_subscribe(cons, pc,
					  &(gs_sub_opts){ .max_demand = 100,
							  .manual = true },
					  &reason_consumer_sub));
		GS_OK_OR_DIE(gs_pipeline_start(p));
		GS_OK_OR_DIE(gs_ask(reason_consumer_sub, 5));
		wait_at_least(&r.received, 5);
		/* The cancel has come back by now, or will: either way the
		 * other 95 are still the consumer's to ask for. */
		GS_OK_OR_DIE(gs_ask(reason_consumer_sub, 95));
		wait_at_least(&r.received, 100);
		cr_assert_eq(atomic_load(&freed), 0);
		/* Then the cancel stops it (and its consumer) with its
		 * reason, by its mode; the source, left with events and no
		 * subscriber, waits for one, and is stopped here. */
		cr_assert_eq(gs_pipeline_stop(p, GS_STOP_NOW), GS_TEST_FAIL);
		gs_sub_release(reason_consumer_sub);
		gs_pipeline_free(p);
	}
}

Test(cancel, terminate_runs_once_per_stage_whatever_the_reason,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_failing(&d, GS_CANCEL_TEMPORARY);
	d.r.fail_after = 2000;
	d.r.fail_code = GS_EUSER + 9;
	gs_err err = start_and_wait(d.p);
	cr_assert(err == GS_TEST_FAIL || err == GS_EUSER + 9, "got %d",
		  (int)err);
	cr_assert_eq(gs_pipeline_wait(d.p), err, "wait is stable");
	cr_assert_eq(atomic_load(&d.b.terminated), 1);
	cr_assert_eq(atomic_load(&d.g.terminated), 1);
	cr_assert_eq(atomic_load(&d.r.terminated), 1);
	gs_pipeline_free(d.p);
}
