// SPDX-License-Identifier: MIT
/* Changing the graph while it runs, manual demand, and accumulated demand
 * released later. */
#include "gs_test.h"

Test(dynamic, a_subscriber_added_while_running_shares_the_stream,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	/* Endless, so that it still runs when b arrives however the threads
	 * are scheduled; drained once b has had its share. */
	counter c = { .end = 0 };
	gs_stage *src = counter_new(p, &c, NULL);
	recorder pr[2] = { { .keep = true }, { .keep = true } };
	gs_stage *a = recorder_new(p, &pr[0], NULL),
		 *b = recorder_new(p, &pr[1], NULL);
	gs_subscribe(a, src,
		     &(gs_sub_opts){ .max_demand = 10,
				     .cancel = GS_CANCEL_TRANSIENT },
		     NULL);
	gs_pipeline_start(p);
	wait_at_least(&pr[0].received, 100);
	cr_assert_eq(
		gs_subscribe(b, src,
			     &(gs_sub_opts){ .max_demand = 10,
					     .cancel = GS_CANCEL_TRANSIENT },
			     NULL),
		GS_OK);
	wait_at_least(&pr[1].received, 1000);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	check_exactly_once(pr, 2, c.next);
	recorder_fini(&pr[0]);
	recorder_fini(&pr[1]);
	gs_pipeline_free(p);
}

Test(dynamic, cancel_under_load_loses_and_repeats_nothing,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	/* Endless, so that the load lasts however the threads are scheduled:
	 * a bounded source may be used up by b before a was ever run. */
	counter c = { .end = 0 };
	gs_stage *src = counter_new(p, &c, NULL);
	recorder pr[2] = { { .keep = true }, { .keep = true } };
	gs_sub *sa;
	gs_subscribe(recorder_new(p, &pr[0], NULL), src,
		     &(gs_sub_opts){ .max_demand = 50 }, &sa);
	gs_subscribe(recorder_new(p, &pr[1], NULL), src,
		     &(gs_sub_opts){ .max_demand = 50 }, NULL);
	gs_pipeline_start(p);
	wait_at_least(&pr[0].received, 1000);
	cr_assert_eq(gs_cancel(sa), GS_OK);
	cr_assert_eq(gs_cancel(sa), GS_OK, "idempotent");
	uint64_t after = atomic_load(&pr[0].received);
	/* b goes on alone; a keeps running with no input */
	wait_at_least(&pr[1].received, atomic_load(&pr[1].received) + 1000);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	/* after the cancel, a got at most what was already sent to it */
	cr_assert_leq(pr[0].n, after + 50);
	check_exactly_once(pr, 2, c.next);
	recorder_fini(&pr[0]);
	recorder_fini(&pr[1]);
	gs_pipeline_free(p);
}

/* r kept exactly 0, 1, ..., n - 1, in order; then frees what it kept. */
static void expect_sequence(recorder *r, size_t n)
{
	cr_assert_eq(r->n, n, "%zu received", r->n);
	for (size_t k = 0; k < r->n; k++)
		cr_assert_eq(r->vals[k], k);
	recorder_fini(r);
}

typedef struct manual {
	recorder rec;
	size_t step; /* asks this many after each batch, up to 1000 */
	/* asked in all, by the consumer and by the test's thread */
	_Atomic uint64_t asked;
	_Atomic uint64_t over;    /* batches past what was asked */
	bool choose_in_subscribe; /* gs_sub_manual instead of the option */
} manual;

static int manual_subscribe(void *state, gs_stage *s, gs_sub *sub, gs_role role)
{
	(void)s;
	manual *m = state;
	if (role != GS_ROLE_CONSUMER)
		return GS_OK;
	if (m->choose_in_subscribe) {
		int err = gs_sub_manual(sub);
		if (err)
			return err;
	}
	atomic_fetch_add(&m->asked, m->step);
	return gs_ask(sub, m->step);
}

static int manual_events(void *state, gs_stage *s, gs_sub *from, void **ev,
			 size_t n)
{
	(void)s;
	manual *m = state;
	int err = recorder_take(&m->rec, from, ev, n);
	if (err)
		return err;
	uint64_t got = atomic_load(&m->rec.received);
	uint64_t asked = atomic_load(&m->asked);
	if (got > asked)
		atomic_fetch_add(&m->over, 1);
	if (got >= asked && asked < 1000) {
		atomic_fetch_add(&m->asked, m->step);
		return gs_ask(from, m->step);
	}
	return GS_OK;
}

static const gs_stage_ops manual_ops = { .handle_subscribe = manual_subscribe,
					 .handle_events = manual_events };

/* A manual consumer on an endless seq_producer. */
typedef struct manual_pair {
	gs_pipeline *p;
	seq_producer sp;
	manual m;
	gs_sub *sub;
} manual_pair;

static void manual_pair_start(manual_pair *mp, const gs_sub_opts *opts)
{
	mp->sp = (seq_producer){ .total = SIZE_MAX };
	mp->m.rec.keep = true;
	gs_stage *src, *cons;
	mp->p = pipeline_new(NULL);
	src = seq_producer_new(mp->p, &mp->sp, NULL);
	GS_OK_OR_DIE(gs_stage_new(mp->p, GS_CONSUMER, &manual_ops, &mp->m, NULL,
				  &cons));
	GS_OK_OR_DIE(gs_subscribe(cons, src, opts, &mp->sub));
	GS_OK_OR_DIE(gs_pipeline_start(mp->p));
}

/*
 * Once the consumer has the `asked` events it asked for (and so stops
 * asking), checks that the source was asked for exactly that: every ask
 * came before the events that met it. Then asks one more from the test's
 * thread and waits for it, stops, and checks that the consumer got all of
 * it, in order, and never more than it had asked.
 */
static void check_asked_exactly(manual_pair *mp, uint64_t asked)
{
	manual *m = &mp->m;
	wait_at_least(&m->rec.received, asked);
	cr_assert_eq(atomic_load(&mp->sp.demanded), asked,
		     "the source was asked for %llu",
		     (unsigned long long)atomic_load(&mp->sp.demanded));
	cr_assert_eq(atomic_load(&m->rec.received), asked);
	atomic_fetch_add(&m->asked, 1);
	GS_OK_OR_DIE(gs_ask(mp->sub, 1));
	wait_at_least(&m->rec.received, asked + 1);
	cr_assert_eq(gs_pipeline_stop(mp->p, GS_STOP_NOW), GS_OK);
	cr_assert_eq(atomic_load(&mp->sp.demanded), asked + 1);
	cr_assert_eq(atomic_load(&m->over), 0, "more came than was asked");
	expect_sequence(&m->rec, asked + 1);
	gs_pipeline_free(mp->p);
}

Test(manual, demand_is_exactly_what_gs_ask_asked, .timeout = GS_TEST_TIMEOUT)
{
	manual_pair mp = { .m = { .step = 7 } };
	manual_pair_start(&mp, &(gs_sub_opts){ .manual = true });
	check_asked_exactly(&mp, 7 * 143);
}

Test(manual, handle_subscribe_can_choose_manual_demand,
     .timeout = GS_TEST_TIMEOUT)
{
	manual_pair mp = { .m = { .step = 3, .choose_in_subscribe = true } };
	manual_pair_start(&mp, NULL);
	cr_assert_eq(gs_sub_manual(mp.sub), GS_ETHREAD, "only in the callback");
	check_asked_exactly(&mp, 3 * 334);
}

/* A consumer that tries to make its subscription manual from init, before
 * the subscription attaches: refused, and the automatic demand stays (it
 * was made manual with nothing to ask, and the pipeline stalled). */
typedef struct early_manual {
	recorder rec;
	gs_sub *sub;
	_Atomic int err;
} early_manual;

static int early_manual_init(void *state, gs_stage *s)
{
	(void)s;
	early_manual *e = state;
	atomic_store(&e->err, gs_sub_manual(e->sub));
	return GS_OK;
}

static int early_manual_events(void *state, gs_stage *s, gs_sub *from,
			       void **ev, size_t n)
{
	(void)s;
	early_manual *e = state;
	return recorder_take(&e->rec, from, ev, n);
}

Test(manual, gs_sub_manual_outside_handle_subscribe_is_refused,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	seq_producer sp = { .total = 1000 };
	early_manual e = { .err = -1 };
	gs_stage *src = seq_producer_new(p, &sp, NULL), *cons;
	GS_OK_OR_DIE(gs_stage_new(
		p, GS_CONSUMER,
		&(gs_stage_ops){ .init = early_manual_init,
				 .handle_events = early_manual_events },
		&e, NULL, &cons));
	GS_OK_OR_DIE(gs_subscribe(cons, src, NULL, &e.sub));
	GS_OK_OR_DIE(start_and_wait(p));
	cr_expect_eq(atomic_load(&e.err), GS_ETHREAD);
	cr_expect_eq(atomic_load(&e.rec.received), 1000);
	gs_pipeline_free(p);
}

/* A manual consumer that never asks itself: the test's thread does. */
Test(manual, gs_ask_works_from_any_thread, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { 0 };
	recorder pr = { .keep = true };
	gs_stage *src = counter_new(p, &c, NULL);
	gs_stage *cons = recorder_new(p, &pr, NULL);
	gs_sub *sub;
	cr_assert_eq(gs_subscribe(cons, src,
				  &(gs_sub_opts){ .manual = true,
						  .max_demand = 100 },
				  &sub),
		     GS_OK);
	cr_assert_eq(gs_pipeline_start(p), GS_OK);
	for (size_t asked = 7; asked <= 7 * 50; asked += 7) {
		cr_assert_eq(gs_ask(sub, 7), GS_OK);
		wait_at_least(&pr.received, asked);
	}
	/* A consumer-side ask moves the producer on by exactly the ask;
	 * one more proves the last batch was all that came. */
	cr_assert_eq(gs_ask(sub, 1), GS_OK);
	wait_at_least(&pr.received, 7 * 50 + 1);
	gs_pipeline_stop(p, GS_STOP_NOW);
	expect_sequence(&pr, 7 * 50 + 1);
	gs_pipeline_free(p);
}

/* An ask far above max_demand, from the test's thread: the producer is
 * asked for it as the consumer takes what came before, never more than
 * max_demand ahead of it. It was asked for it all at once: what the ring
 * could not hold overflowed the producer's buffer, was dropped, and was
 * asked for again, for ever. */
Test(manual, an_ask_above_max_demand_waits_for_room_and_loses_nothing,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	recorder r = { .keep = true };
	seq_producer sp = { .total = SIZE_MAX,
			    .consumed = &r.received,
			    .slack = 100 };
	gs_stage *src = seq_producer_new(p, &sp,
					 &(gs_stage_opts){ .buffer_size = 20 });
	gs_stage *cons = recorder_new(p, &r, NULL);
	gs_sub *sub;
	GS_OK_OR_DIE(gs_subscribe(
		cons, src, &(gs_sub_opts){ .manual = true, .max_demand = 100 },
		&sub));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_ask(sub, 5000));
	wait_at_least(&r.received, 5000);
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(src, &st));
	cr_expect_eq(st.dropped, 0);
	cr_expect_eq(atomic_load(&sp.over_demand), 0,
		     "asked more than max_demand beyond what was taken");
	gs_pipeline_stop(p, GS_STOP_NOW);
	cr_expect_eq(atomic_load(&sp.demanded), 5000);
	expect_sequence(&r, 5000);
	gs_pipeline_free(p);
}

/* The same through a broadcast, each subscriber asking for all of a
 * finite source at once: both get every event, none dropped. */
Test(manual, broadcast_asks_above_max_demand_lose_nothing,
     .timeout = GS_TEST_TIMEOUT)
{
	enum { N = 3000 };
	gs_pipeline *p = pipeline_new(NULL);
	static void *ev[N];
	fill_ids(ev, N, 0);
	gs_stage *src, *cons[2];
	recorder r[2] = { { .keep = true }, { .keep = true } };
	gs_sub *sub[2];
	GS_OK_OR_DIE(gs_from_array(
		p, ev, N,
		&(gs_stage_opts){ .buffer_size = 20,
				  .dispatcher = gs_dispatcher_broadcast() },
		&src));
	for (int i = 0; i < 2; i++) {
		cons[i] = recorder_new(p, &r[i], NULL);
		GS_OK_OR_DIE(gs_subscribe(cons[i], src,
					  &(gs_sub_opts){ .manual = true,
							  .max_demand = 100 },
					  &sub[i]));
	}
	GS_OK_OR_DIE(gs_pipeline_start(p));
	for (int i = 0; i < 2; i++)
		GS_OK_OR_DIE(gs_ask(sub[i], N));
	cr_assert_eq(gs_pipeline_wait_for(p, 20000), GS_OK);
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(src, &st));
	cr_expect_eq(st.dropped, 0);
	for (int i = 0; i < 2; i++)
		expect_sequence(&r[i], N);
	gs_pipeline_free(p);
}

/* Asks whose sum could wrap the subscription's count (a negative size,
 * say) are refused. */
Test(manual, an_ask_above_GS_MAX_DEMAND_is_refused, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	seq_producer sp = { .total = SIZE_MAX };
	recorder r = { 0 };
	gs_stage *src = seq_producer_new(p, &sp, NULL);
	gs_stage *cons = recorder_new(p, &r, NULL);
	gs_sub *sub;
	GS_OK_OR_DIE(gs_subscribe(cons, src, &(gs_sub_opts){ .manual = true },
				  &sub));
	cr_expect_eq(gs_ask(sub, GS_MAX_DEMAND + 1), GS_EINVAL);
	cr_expect_eq(gs_ask(sub, SIZE_MAX), GS_EINVAL);
	cr_expect_eq(gs_ask(sub, GS_MAX_DEMAND), GS_OK);
	GS_OK_OR_DIE(gs_pipeline_start(p));
	wait_at_least(&r.received, 1000);
	gs_pipeline_stop(p, GS_STOP_NOW);
	recorder_fini(&r);
	gs_pipeline_free(p);
}

typedef struct held {
	_Atomic uint64_t demanded;
	uintptr_t next;
} held;

static int held_demand(void *state, gs_stage *s, size_t demand)
{
	held *h = state;
	atomic_fetch_add(&h->demanded, demand);
	void *ev[64];
	while (demand) {
		size_t k = demand < 64 ? demand : 64;
		for (size_t i = 0; i < k; i++)
			ev[i] = GS_EV(h->next++);
		gs_emit(s, ev, k);
		demand -= k;
	}
	return GS_OK;
}

Test(accumulate, demand_is_held_until_forwarded, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	static const gs_stage_ops ops = { .handle_demand = held_demand,
					  .handle_call = sync_call };
	held h = { 0 };
	gs_stage *src;
	cr_assert_eq(
		gs_stage_new(p, GS_PRODUCER, &ops, &h,
			     &(gs_stage_opts){ .demand = GS_DEMAND_ACCUMULATE },
			     &src),
		GS_OK);
	recorder pr = { .keep = true };
	GS_OK_OR_DIE(gs_subscribe(recorder_new(p, &pr, NULL), src,
				  &(gs_sub_opts){ .max_demand = 40 }, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* The consumer's 40 has reached the source (it shows as pending);
	 * a round trip then proves that the turn which saw it is over: had
	 * the demand gone through, handle_demand would have run. */
	for (gs_stats st = { 0 }; st.pending_demand < 40; nap())
		GS_OK_OR_DIE(gs_stage_stats(src, &st));
	stage_sync(src);
	cr_assert_eq(atomic_load(&h.demanded), 0, "demand leaked through");
	cr_assert_eq(atomic_load(&pr.received), 0);
	cr_assert_eq(gs_stage_demand(src, GS_DEMAND_FORWARD), GS_OK);
	wait_at_least(&pr.received, 1000);
	gs_pipeline_stop(p, GS_STOP_NOW);
	for (size_t k = 0; k < pr.n; k++)
		cr_assert_eq(pr.vals[k], k);
	cr_assert_eq(gs_stage_demand(NULL, GS_DEMAND_FORWARD), GS_EINVAL);
	recorder_fini(&pr);
	gs_pipeline_free(p);
}
