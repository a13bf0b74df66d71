// SPDX-License-Identifier: MIT
/*
 * GenStage's control calls, as C: a subscription that returns once both
 * ends took it (sync_subscribe), a cancel with a reason, the demand mode's
 * getter, and info messages queued behind a producer's buffer
 * (async_info, sync_info).
 */
#include <string.h>
#include <time.h>

#include "gs_test.h"

typedef struct duo {
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp;
	recorder r;
} duo;

static void duo_new(duo *d, size_t total, const gs_stage_ops *cons_ops)
{
	*d = (duo){ .sp = { .total = total } };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &d->p));
	GS_OK_OR_DIE(gs_stage_new(d->p, GS_PRODUCER, &seq_producer_ops, &d->sp,
				  NULL, &d->prod));
	GS_OK_OR_DIE(gs_stage_new(d->p, GS_CONSUMER,
				  cons_ops ? cons_ops : &recorder_ops, &d->r,
				  NULL, &d->cons));
}

/* --- sync subscribe ------------------------------------------------------ */

Test(control, sync_subscribe_returns_once_both_ends_subscribed,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_new(&d, SIZE_MAX, NULL);
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	gs_sub *sub = NULL;
	GS_OK_OR_DIE(gs_subscribe_sync(d.cons, d.prod, NULL, &sub, -1));
	cr_assert_not_null(sub);
	/* Both handle_subscribe calls have run: the recorder's counted its
	 * own, and the producer already has the demand. */
	cr_assert_eq(atomic_load(&d.r.subscribes), 1);
	cr_assert_eq(gs_subscribe_sync(d.cons, d.prod, NULL, NULL, -1),
		     GS_EEXIST);
	GS_OK_OR_DIE(gs_pipeline_stop(d.p, GS_STOP_NOW));
	gs_sub_release(sub);
	gs_pipeline_free(d.p);
}

static int refuse_subscribe(void *state, gs_stage *stage, gs_sub *sub,
			    gs_role role)
{
	(void)state, (void)stage, (void)sub, (void)role;
	return GS_EUSER + 42;
}

Test(control, sync_subscribe_reports_a_refusing_handle_subscribe,
     .timeout = GS_TEST_TIMEOUT)
{
	static const gs_stage_ops picky = {
		.handle_events = nop_events,
		.handle_subscribe = refuse_subscribe
	};
	duo d;
	duo_new(&d, SIZE_MAX, &picky);
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	gs_sub *sub = (gs_sub *)&d; /* must stay untouched */
	cr_assert_eq(gs_subscribe_sync(d.cons, d.prod, NULL, &sub, -1),
		     GS_EUSER + 42);
	cr_assert_eq(sub, (gs_sub *)&d);
	/* The refusing consumer stopped with its reason, the pipeline's
	 * first error. */
	cr_assert_eq(gs_pipeline_stop(d.p, GS_STOP_NOW), GS_EUSER + 42);
	gs_pipeline_free(d.p);
}

Test(control, sync_subscribe_to_a_stopped_stage_is_closed,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_new(&d, 0, NULL);
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	GS_OK_OR_DIE(gs_stage_stop(d.prod, GS_OK));
	wait_int_at_least(&d.sp.terminated, 1);
	cr_assert_eq(gs_subscribe_sync(d.cons, d.prod, NULL, NULL, 1000),
		     GS_ECLOSED);
	GS_OK_OR_DIE(gs_pipeline_stop(d.p, GS_STOP_NOW));
	gs_pipeline_free(d.p);
}

/* --- cancel with a reason ------------------------------------------------ */

Test(control, a_cancel_reason_reaches_both_ends_and_stops_a_permanent_consumer,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_new(&d, SIZE_MAX, NULL);
	gs_sub *sub = recorder_subscribe(&d.r, d.cons, d.prod, NULL);
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	wait_at_least(&d.r.received, 1000);
	GS_OK_OR_DIE(gs_cancel_reason(sub, GS_EUSER + 9));
	GS_OK_OR_DIE(gs_cancel_reason(sub, GS_EUSER + 10)); /* too late */
	/* The consumer stops with it; the endless producer, which nobody
	 * consumes any more, is stopped by hand. */
	wait_int_at_least(&d.r.terminated, 1);
	cr_assert_eq(gs_pipeline_stop(d.p, GS_STOP_NOW), GS_EUSER + 9);
	cr_assert_eq(atomic_load(&d.r.cancel_reason), GS_EUSER + 9);
	cr_assert_eq(atomic_load(&d.r.reason), GS_EUSER + 9);
	cr_assert_eq(atomic_load(&d.sp.cancel_reason), GS_EUSER + 9);
	/* What was sent before the cancel was still delivered. */
	gs_sub_counts c;
	GS_OK_OR_DIE(gs_sub_stats(sub, &c));
	cr_assert_eq(c.sent, c.received);
	gs_pipeline_free(d.p);
}

Test(control, a_cancel_reason_leaves_a_temporary_consumer_running,
     .timeout = GS_TEST_TIMEOUT)
{
	duo d;
	duo_new(&d, SIZE_MAX, NULL);
	gs_sub *sub = recorder_subscribe(
		&d.r, d.cons, d.prod,
		&(gs_sub_opts){ .cancel = GS_CANCEL_TEMPORARY });
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	wait_at_least(&d.r.received, 1000);
	GS_OK_OR_DIE(gs_cancel_reason(sub, GS_EUSER + 9));
	wait_int_at_least(&d.r.cancels, 1);
	cr_assert_eq(atomic_load(&d.r.cancel_reason), GS_EUSER + 9);
	cr_assert_eq(atomic_load(&d.r.terminated), 0);
	GS_OK_OR_DIE(gs_pipeline_stop(d.p, GS_STOP_NOW));
	cr_assert_eq(atomic_load(&d.r.reason), GS_OK);
	cr_assert_eq(gs_cancel_reason(NULL, 1), GS_EINVAL);
	gs_pipeline_free(d.p);
}

/* --- the demand mode ----------------------------------------------------- */

Test(control, the_demand_mode_reads_back_what_was_set)
{
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = 10 };
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(
		p, GS_PRODUCER, &seq_producer_ops, &sp,
		&(gs_stage_opts){ .demand = GS_DEMAND_ACCUMULATE }, &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	gs_demand_mode mode = GS_DEMAND_FORWARD;
	GS_OK_OR_DIE(gs_stage_demand_mode(prod, &mode));
	cr_assert_eq(mode, GS_DEMAND_ACCUMULATE);
	GS_OK_OR_DIE(gs_stage_demand(prod, GS_DEMAND_FORWARD));
	GS_OK_OR_DIE(gs_stage_demand_mode(prod, &mode));
	cr_assert_eq(mode, GS_DEMAND_FORWARD);
	cr_assert_eq(gs_stage_demand_mode(cons, &mode), GS_EKIND);
	cr_assert_eq(gs_stage_demand_mode(NULL, &mode), GS_EINVAL);
	cr_assert_eq(gs_stage_demand_mode(prod, NULL), GS_EINVAL);
	gs_pipeline_free(p);
}

/* --- info messages behind the buffer ------------------------------------- */

/* A producer that buffers `total` events at init (no consumer yet) and
 * records, at each info message, how many events had left it. */
typedef struct marked {
	size_t total;
	_Atomic uint64_t out_at_info[4];
	_Atomic int infos;
} marked;

static int buffer_all(void *state, gs_stage *stage)
{
	marked *m = state;
	for (size_t i = 0; i < m->total; i++) {
		void *ev = GS_EV(i);
		gs_err err = gs_emit(stage, &ev, 1);
		if (err)
			return (int)err;
	}
	return GS_OK;
}

static int no_demand(void *state, gs_stage *stage, size_t demand)
{
	(void)state, (void)stage, (void)demand;
	return GS_OK;
}

static int note_info(void *state, gs_stage *stage, void *msg)
{
	marked *m = state;
	(void)msg;
	gs_stats st;
	gs_stage_stats(stage, &st);
	int k = atomic_fetch_add(&m->infos, 1);
	if (k < 4)
		atomic_store(&m->out_at_info[k], st.events_out);
	return GS_OK;
}

Test(control, an_info_message_waits_for_what_was_buffered_before_it,
     .timeout = GS_TEST_TIMEOUT)
{
	static const gs_stage_ops ops = { .init = buffer_all,
					  .handle_demand = no_demand,
					  .handle_info = note_info };
	marked m = { .total = 3000 };
	gs_pipeline *p;
	gs_stage *prod, *cons;
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &ops, &m, NULL, &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* 3000 buffered, nobody to take them: the marker waits. */
	GS_OK_OR_DIE(gs_sync_info(prod, NULL, -1));
	GS_OK_OR_DIE(gs_async_info(prod, NULL));
	cr_assert_eq(atomic_load(&m.infos), 0);
	GS_OK_OR_DIE(gs_subscribe(cons, prod,
				  &(gs_sub_opts){ .max_demand = 100 }, NULL));
	wait_int_at_least(&m.infos, 2);
	/* Both ran only once the 3000 had gone out. */
	cr_assert_eq(atomic_load(&m.out_at_info[0]), 3000);
	cr_assert_eq(atomic_load(&m.out_at_info[1]), 3000);
	/* With the buffer empty, the next one runs at once. */
	GS_OK_OR_DIE(gs_sync_info(prod, NULL, -1));
	wait_int_at_least(&m.infos, 3);
	cr_assert_eq(gs_async_info(cons, NULL), GS_EINVAL, "no handle_info");
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
}
