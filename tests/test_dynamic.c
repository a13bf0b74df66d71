// SPDX-License-Identifier: MIT
/* Changing the graph while it runs, manual demand, and accumulated demand
 * released later. */
#include <criterion/criterion.h>

#include "probe.h"

/* Every value in [0, n) seen exactly once over the probes. */
static void assert_exactly_once(probe *pr, int k, size_t n)
{
	unsigned char *seen = calloc(n, 1);
	size_t total = 0;
	for (int i = 0; i < k; i++) {
		for (size_t j = 0; j < pr[i].n; j++) {
			cr_assert_lt(pr[i].vals[j], n);
			cr_assert_eq(seen[pr[i].vals[j]], 0, "seen twice: %zu",
				     (size_t)pr[i].vals[j]);
			seen[pr[i].vals[j]] = 1;
			if (j)
				cr_assert_gt(pr[i].vals[j], pr[i].vals[j - 1]);
		}
		total += pr[i].n;
	}
	cr_assert_eq(total, n);
	free(seen);
}

Test(dynamic, a_subscriber_added_while_running_shares_the_stream, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	/* Endless, so that it still runs when b arrives however the threads
	 * are scheduled; drained once b has had its share. */
	counter c = { .end = 0 };
	gs_stage *src;
	gs_from_fn(p, counter_gen, &c, NULL, &src);
	probe pr[2] = { 0 };
	gs_stage *a = probe_new(p, &pr[0]), *b = probe_new(p, &pr[1]);
	gs_subscribe(a, src,
		     &(gs_sub_opts){ .max_demand = 10,
				     .cancel = GS_CANCEL_TRANSIENT },
		     NULL);
	gs_pipeline_start(p);
	cr_assert(wait_for(&pr[0].count, 100, 5000));
	cr_assert_eq(
		gs_subscribe(b, src,
			     &(gs_sub_opts){ .max_demand = 10,
					     .cancel = GS_CANCEL_TRANSIENT },
			     NULL),
		GS_OK);
	cr_assert(wait_for(&pr[1].count, 1000, 5000),
		  "the late subscriber got too little");
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	assert_exactly_once(pr, 2, c.next);
	probe_free(&pr[0]);
	probe_free(&pr[1]);
	gs_pipeline_free(p);
}

Test(dynamic, cancel_under_load_loses_and_repeats_nothing, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	/* Endless, so that the load lasts however the threads are scheduled:
	 * a bounded source may be used up by b before a was ever run. */
	counter c = { .end = 0 };
	gs_stage *src;
	gs_from_fn(p, counter_gen, &c, NULL, &src);
	probe pr[2] = { 0 };
	gs_sub *sa;
	gs_subscribe(probe_new(p, &pr[0]), src,
		     &(gs_sub_opts){ .max_demand = 50 }, &sa);
	gs_subscribe(probe_new(p, &pr[1]), src,
		     &(gs_sub_opts){ .max_demand = 50 }, NULL);
	gs_pipeline_start(p);
	cr_assert(wait_for(&pr[0].count, 1000, 5000));
	cr_assert_eq(gs_cancel(sa), GS_OK);
	cr_assert_eq(gs_cancel(sa), GS_OK, "idempotent");
	size_t after = atomic_load(&pr[0].count);
	/* b goes on alone; a keeps running with no input */
	cr_assert(
		wait_for(&pr[1].count, atomic_load(&pr[1].count) + 1000, 5000));
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	/* after the cancel, a got at most what was already sent to it */
	cr_assert_leq(pr[0].n, after + 50);
	assert_exactly_once(pr, 2, c.next);
	probe_free(&pr[0]);
	probe_free(&pr[1]);
	gs_pipeline_free(p);
}

typedef struct manual {
	probe pr;
	size_t step; /* asks this many after each batch */
	size_t asked;
	gs_sub *sub;
	bool choose_in_subscribe; /* gs_sub_manual instead of the option */
} manual;

static int manual_subscribe(void *state, gs_stage *s, gs_sub *sub, gs_role role)
{
	(void)s;
	manual *m = state;
	if (role != GS_ROLE_CONSUMER)
		return GS_OK;
	m->sub = sub;
	if (m->choose_in_subscribe) {
		int err = gs_sub_manual(sub);
		if (err)
			return err;
	}
	m->asked += m->step;
	return gs_ask(sub, m->step);
}

static int manual_events(void *state, gs_stage *s, gs_sub *from, void **ev,
			 size_t n)
{
	manual *m = state;
	int err = probe_events(&m->pr, s, from, ev, n);
	if (err)
		return err;
	/* never more than asked */
	if (m->pr.n > m->asked)
		return GS_EUSER;
	if (m->pr.n == m->asked && m->asked < 1000) {
		m->asked += m->step;
		return gs_ask(from, m->step);
	}
	return GS_OK;
}

static const gs_stage_ops manual_ops = { .handle_subscribe = manual_subscribe,
					 .handle_events = manual_events };

Test(manual, demand_is_exactly_what_gs_ask_asked, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	counter c = { 0 }; /* endless */
	gs_stage *src, *cons;
	gs_from_fn(p, counter_gen, &c, NULL, &src);
	manual m = { .step = 7 };
	gs_stage_new(p, GS_CONSUMER, &manual_ops, &m, NULL, &cons);
	gs_subscribe(cons, src, &(gs_sub_opts){ .manual = true }, NULL);
	gs_pipeline_start(p);
	cr_assert(wait_for(&m.pr.count, 1001, 5000));
	sleep_ms(30);
	cr_assert_eq(atomic_load(&m.pr.count), 1001, "7 x 143 asked");
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_NOW), GS_OK);
	for (size_t k = 0; k < m.pr.n; k++)
		cr_assert_eq(m.pr.vals[k], k);
	probe_free(&m.pr);
	gs_pipeline_free(p);
}

Test(manual, handle_subscribe_can_choose_manual_demand, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	counter c = { 0 };
	gs_stage *src, *cons;
	gs_from_fn(p, counter_gen, &c, NULL, &src);
	manual m = { .step = 3, .choose_in_subscribe = true };
	gs_stage_new(p, GS_CONSUMER, &manual_ops, &m, NULL, &cons);
	gs_sub *sub;
	gs_subscribe(cons, src, NULL, &sub);
	gs_pipeline_start(p);
	cr_assert(wait_for(&m.pr.count, 1002, 5000));
	sleep_ms(30);
	cr_assert_eq(atomic_load(&m.pr.count), 1002);
	cr_assert_eq(gs_sub_manual(sub), GS_ETHREAD, "only in the callback");
	gs_pipeline_stop(p, GS_STOP_NOW);
	probe_free(&m.pr);
	gs_pipeline_free(p);
}

/* A manual consumer that never asks itself: the test's thread does. */
Test(manual, gs_ask_works_from_any_thread, .timeout = 30)
{
	gs_pipeline *p;
	cr_assert_eq(gs_pipeline_new(NULL, &p), GS_OK);
	counter c = { 0 };
	probe pr = { 0 };
	gs_stage *src, *cons;
	cr_assert_eq(gs_from_fn(p, counter_gen, &c, NULL, &src), GS_OK);
	cons = probe_new(p, &pr);
	gs_sub *sub;
	cr_assert_eq(gs_subscribe(cons, src,
				  &(gs_sub_opts){ .manual = true,
						  .max_demand = 100 },
				  &sub),
		     GS_OK);
	cr_assert_eq(gs_pipeline_start(p), GS_OK);
	for (size_t asked = 7; asked <= 7 * 50; asked += 7) {
		cr_assert_eq(gs_ask(sub, 7), GS_OK);
		cr_assert(wait_for(&pr.count, asked, 5000));
	}
	/* A consumer-side ask moves the producer on by exactly the ask;
	 * one more proves the last batch was all that came. */
	cr_assert_eq(gs_ask(sub, 1), GS_OK);
	cr_assert(wait_for(&pr.count, 7 * 50 + 1, 5000));
	gs_pipeline_stop(p, GS_STOP_NOW);
	cr_assert_eq(pr.n, 7 * 50 + 1);
	for (size_t k = 0; k < pr.n; k++)
		cr_assert_eq(pr.vals[k], k);
	probe_free(&pr);
	gs_pipeline_free(p);
}

typedef struct held {
	atomic_size_t demanded;
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
			ev[i] = (void *)h->next++;
		gs_emit(s, ev, k);
		demand -= k;
	}
	return GS_OK;
}

Test(accumulate, demand_is_held_until_forwarded, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	static const gs_stage_ops ops = { .handle_demand = held_demand };
	held h = { 0 };
	gs_stage *src;
	cr_assert_eq(
		gs_stage_new(p, GS_PRODUCER, &ops, &h,
			     &(gs_stage_opts){ .demand = GS_DEMAND_ACCUMULATE },
			     &src),
		GS_OK);
	probe pr = { 0 };
	gs_subscribe(probe_new(p, &pr), src, &(gs_sub_opts){ .max_demand = 40 },
		     NULL);
	gs_pipeline_start(p);
	sleep_ms(50);
	cr_assert_eq(atomic_load(&h.demanded), 0, "demand leaked through");
	cr_assert_eq(atomic_load(&pr.count), 0);
	cr_assert_eq(gs_stage_demand(src, GS_DEMAND_FORWARD), GS_OK);
	cr_assert(wait_for(&pr.count, 1000, 5000));
	gs_pipeline_stop(p, GS_STOP_NOW);
	for (size_t k = 0; k < pr.n; k++)
		cr_assert_eq(pr.vals[k], k);
	cr_assert_eq(gs_stage_demand(NULL, GS_DEMAND_FORWARD), GS_EINVAL);
	probe_free(&pr);
	gs_pipeline_free(p);
}
