// SPDX-License-Identifier: MIT
/* Broadcast and partition dispatchers: who receives what, demand
 * accounting, selectors, discards, per-partition queues and their bounds. */
#include <criterion/criterion.h>

#include "probe.h"

#ifndef GS_TEST_EVENTS
#define GS_TEST_EVENTS 50000
#endif
#define N GS_TEST_EVENTS

static bool is_even(void *arg, const void *ev)
{
	(void)arg;
	return ((uintptr_t)ev & 1) == 0;
}

Test(broadcast, every_subscriber_receives_every_event_in_order, .timeout = 30)
{
	gs_pipeline *p;
	cr_assert_eq(gs_pipeline_new(NULL, &p), GS_OK);
	counter c = { .end = N };
	gs_stage *src;
	cr_assert_eq(
		gs_from_fn(p, counter_gen, &c,
			   &(gs_stage_opts){
				   .dispatcher = gs_dispatcher_broadcast() },
			   &src),
		GS_OK);
	probe pr[3] = { 0 };
	for (int i = 0; i < 3; i++) {
		gs_stage *s = probe_new(p, &pr[i]);
		/* uneven speeds: different batch sizes */
		cr_assert_eq(gs_subscribe(s, src,
					  &(gs_sub_opts){
						  .max_demand = 7 + 300 * i },
					  NULL),
			     GS_OK);
	}
	cr_assert_eq(gs_pipeline_start(p), GS_OK);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(pr[i].n, N, "subscriber %d got %zu", i, pr[i].n);
		for (size_t k = 0; k < pr[i].n; k++)
			cr_assert_eq(pr[i].vals[k], k);
		probe_free(&pr[i]);
	}
	gs_pipeline_free(p);
}

Test(broadcast, selector_filters_what_a_subscriber_receives, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	counter c = { .end = N };
	gs_stage *src;
	gs_from_fn(p, counter_gen, &c,
		   &(gs_stage_opts){ .dispatcher = gs_dispatcher_broadcast() },
		   &src);
	probe all = { 0 }, even = { 0 };
	gs_subscribe(probe_new(p, &all), src,
		     &(gs_sub_opts){ .max_demand = 50 }, NULL);
	cr_assert_eq(gs_subscribe(probe_new(p, &even), src,
				  &(gs_sub_opts){ .max_demand = 50,
						  .selector = is_even },
				  NULL),
		     GS_OK);
	gs_pipeline_start(p);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(all.n, N);
	cr_assert_eq(even.n, N / 2);
	for (size_t k = 0; k < even.n; k++)
		cr_assert_eq(even.vals[k], 2 * k);
	probe_free(&all);
	probe_free(&even);
	gs_pipeline_free(p);
}

typedef struct manual_probe {
	probe pr;
	size_t first_ask;
} manual_probe;

static int ask_once(void *state, gs_stage *s, gs_sub *sub, gs_role role)
{
	(void)s;
	manual_probe *m = state;
	return role == GS_ROLE_CONSUMER ? gs_ask(sub, m->first_ask) : GS_OK;
}

static gs_stage *manual_new(gs_pipeline *p, manual_probe *m)
{
	static const gs_stage_ops ops = { .handle_events = probe_events,
					  .handle_subscribe = ask_once };
	gs_stage *s = NULL;
	gs_stage_new(p, GS_CONSUMER, &ops, m, NULL, &s);
	return s;
}

Test(broadcast, slowest_subscriber_sets_the_pace, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	counter c = { 0 }; /* endless */
	gs_stage *src;
	gs_from_fn(p, counter_gen, &c,
		   &(gs_stage_opts){ .dispatcher = gs_dispatcher_broadcast() },
		   &src);
	manual_probe slow = { .first_ask = 10 };
	probe fast = { 0 };
	gs_subscribe(manual_new(p, &slow), src,
		     &(gs_sub_opts){ .manual = true }, NULL);
	gs_subscribe(probe_new(p, &fast), src, NULL, NULL);
	gs_pipeline_start(p);
	cr_assert(wait_for(&fast.count, 10, 5000));
	sleep_ms(50);
	/* the slow one asked for 10 and nothing more: nobody gets more */
	cr_assert_eq(atomic_load(&fast.count), 10);
	cr_assert_eq(atomic_load(&slow.pr.count), 10);
	gs_pipeline_stop(p, GS_STOP_NOW);
	probe_free(&slow.pr);
	probe_free(&fast);
	gs_pipeline_free(p);
}

static size_t mod4_discard7(void *arg, const void *ev)
{
	(void)arg;
	uintptr_t v = (uintptr_t)ev;
	return v % 7 == 0 ? GS_DISCARD : v % 4;
}

Test(partition, each_event_goes_to_its_partition_or_is_discarded, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	counter c = { .end = N };
	atomic_size_t freed = 0;
	gs_stage *src;
	cr_assert_eq(gs_from_fn(p, counter_gen, &c,
				&(gs_stage_opts){
					.dispatcher = gs_dispatcher_partition(
						4, mod4_discard7, NULL),
					.event_free = count_free,
					.event_free_arg = &freed },
				&src),
		     GS_OK);
	probe pr[4] = { 0 };
	for (int i = 3; i >= 0; i--)
		cr_assert_eq(gs_subscribe(probe_new(p, &pr[i]), src,
					  &(gs_sub_opts){
						  .partition = GS_PARTITION(i),
						  .max_demand = 10 + 100 * i },
					  NULL),
			     GS_OK);
	gs_pipeline_start(p);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	size_t discarded = 0;
	for (uintptr_t v = 0; v < N; v++)
		discarded += v % 7 == 0;
	gs_stats st;
	gs_stage_stats(src, &st);
	cr_assert_eq(st.dropped, discarded);
	cr_assert_eq(atomic_load(&freed), discarded);
	for (int i = 0; i < 4; i++) {
		uintptr_t want = 0;
		for (size_t k = 0; k < pr[i].n; k++, want++) {
			while (want % 7 == 0 || want % 4 != (uintptr_t)i)
				want++;
			cr_assert_eq(pr[i].vals[k], want);
		}
		while (want < N && (want % 7 == 0 || want % 4 != (uintptr_t)i))
			want++;
		cr_assert_geq(want, N, "partition %d missed events", i);
		probe_free(&pr[i]);
	}
	gs_pipeline_free(p);
}

static size_t mod2(void *arg, const void *ev)
{
	(void)arg;
	return (uintptr_t)ev % 2;
}

Test(partition, a_stalled_partition_does_not_block_the_others, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	counter c = { .end = 20000 };
	atomic_size_t freed = 0;
	gs_stage *src;
	gs_from_fn(p, counter_gen, &c,
		   &(gs_stage_opts){
			   .dispatcher = gs_dispatcher_partition(2, mod2, NULL),
			   .buffer_size = 20000, /* room to queue all of it */
			   .event_free = count_free,
			   .event_free_arg = &freed },
		   &src);
	manual_probe stalled = { .first_ask = 0 };
	probe odd = { 0 };
	gs_subscribe(manual_new(p, &stalled), src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(0),
				     .manual = true },
		     NULL);
	gs_subscribe(probe_new(p, &odd), src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(1) }, NULL);
	gs_pipeline_start(p);
	cr_assert(wait_for(&odd.count, 10000, 10000));
	gs_pipeline_stop(p, GS_STOP_NOW);
	cr_assert_eq(atomic_load(&stalled.pr.count), 0);
	/* what waited for partition 0 was dropped, and counted */
	cr_assert_eq(atomic_load(&c.produced), odd.n + atomic_load(&freed));
	probe_free(&stalled.pr);
	probe_free(&odd);
	gs_pipeline_free(p);
}

Test(partition, a_full_queue_holds_back_new_demand, .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	counter c = { 0 }; /* endless */
	gs_stage *src;
	gs_from_fn(p, counter_gen, &c,
		   &(gs_stage_opts){
			   .dispatcher = gs_dispatcher_partition(2, mod2, NULL),
			   .buffer_size = 64 },
		   &src);
	manual_probe stalled = { .first_ask = 0 };
	probe odd = { 0 };
	gs_subscribe(manual_new(p, &stalled), src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(0),
				     .manual = true },
		     NULL);
	gs_subscribe(probe_new(p, &odd), src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(1),
				     .max_demand = 100 },
		     NULL);
	gs_pipeline_start(p);
	sleep_ms(200);
	size_t produced = atomic_load(&c.produced);
	sleep_ms(100);
	/* bounded: the queue (64) plus what one round of demand emits */
	cr_assert_lt(produced, 1000, "produced %zu", produced);
	cr_assert_eq(atomic_load(&c.produced), produced, "still producing");
	gs_pipeline_stop(p, GS_STOP_NOW);
	probe_free(&stalled.pr);
	probe_free(&odd);
	gs_pipeline_free(p);
}

Test(partition, queued_events_reach_the_partitions_next_subscriber,
     .timeout = 30)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	/* Endless, so that it still runs when b arrives however the threads
	 * are scheduled (a bounded one could be used up first, and finish);
	 * the queue bound (N) holds it back while partition 0 has nobody. */
	counter c = { .end = 0 };
	gs_stage *src;
	gs_from_fn(p, counter_gen, &c,
		   &(gs_stage_opts){
			   .dispatcher = gs_dispatcher_partition(2, mod2, NULL),
			   .buffer_size = N },
		   &src);
	probe first = { 0 }, second = { 0 }, odd = { 0 };
	gs_stage *a = probe_new(p, &first);
	gs_sub *sa;
	gs_subscribe(a, src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(0),
				     .cancel = GS_CANCEL_TEMPORARY,
				     .max_demand = 10 },
		     &sa);
	gs_subscribe(probe_new(p, &odd), src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(1) }, NULL);
	gs_stage *b = probe_new(p, &second);
	gs_pipeline_start(p);
	cr_assert(wait_for(&first.count, 100, 5000));
	cr_assert_eq(gs_cancel(sa), GS_OK);
	/* the partition is free again once the old subscription is gone */
	gs_err err;
	for (int i = 0;
	     (err = gs_subscribe(b, src,
				 &(gs_sub_opts){ .partition = GS_PARTITION(0) },
				 NULL)) == GS_EBUSY &&
	     i < 5000;
	     i++)
		sleep_ms(1);
	cr_assert_eq(err, GS_OK, "gs_subscribe: %s (%d)", gs_strerror(err),
		     err);
	cr_assert(wait_for(&second.count, N / 2, 10000));
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	/* together, in order, exactly the even events; odd has the rest */
	cr_assert_eq(first.n + second.n, (c.next + 1) / 2);
	cr_assert_eq(odd.n, c.next / 2);
	for (size_t k = 0; k < first.n; k++)
		cr_assert_eq(first.vals[k], 2 * k);
	for (size_t k = 0; k < second.n; k++)
		cr_assert_eq(second.vals[k], 2 * (first.n + k));
	probe_free(&first);
	probe_free(&second);
	probe_free(&odd);
	gs_pipeline_free(p);
}

static int nop_events(void *st, gs_stage *s, gs_sub *f, void **ev, size_t n)
{
	(void)st, (void)s, (void)f, (void)ev, (void)n;
	return GS_OK;
}

Test(partition, bad_subscriptions_are_refused)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	static const gs_stage_ops cons = { .handle_events = nop_events };
	counter c = { 0 };
	gs_stage *src, *x, *y, *z, *w;
	cr_assert_eq(gs_from_fn(p, counter_gen, &c,
				&(gs_stage_opts){
					.dispatcher = gs_dispatcher_partition(
						0, mod2, NULL) },
				&src),
		     GS_EINVAL, "zero partitions");
	cr_assert_eq(gs_from_fn(p, counter_gen, &c,
				&(gs_stage_opts){
					.dispatcher = gs_dispatcher_partition(
						2, NULL, NULL) },
				&src),
		     GS_EINVAL, "no hash");
	cr_assert_eq(
		gs_stage_new(p, GS_CONSUMER, &cons, NULL,
			     &(gs_stage_opts){
				     .dispatcher = gs_dispatcher_broadcast() },
			     &x),
		GS_EKIND, "a consumer has no dispatcher");
	gs_from_fn(p, counter_gen, &c,
		   &(gs_stage_opts){ .dispatcher = gs_dispatcher_partition(
					     2, mod2, NULL) },
		   &src);
	gs_stage_new(p, GS_CONSUMER, &cons, NULL, NULL, &x);
	gs_stage_new(p, GS_CONSUMER, &cons, NULL, NULL, &y);
	gs_stage_new(p, GS_CONSUMER, &cons, NULL, NULL, &z);
	gs_stage_new(p, GS_CONSUMER, &cons, NULL, NULL, &w);
	cr_assert_eq(
		gs_subscribe(x, src,
			     &(gs_sub_opts){ .partition = GS_PARTITION(2) },
			     NULL),
		GS_EINVAL, "out of range");
	cr_assert_eq(
		gs_subscribe(x, src,
			     &(gs_sub_opts){ .partition = GS_PARTITION(1) },
			     NULL),
		GS_OK);
	cr_assert_eq(
		gs_subscribe(y, src,
			     &(gs_sub_opts){ .partition = GS_PARTITION(1) },
			     NULL),
		GS_EBUSY, "taken twice");
	cr_assert_eq(gs_subscribe(y, src, NULL, NULL), GS_OK, "lowest free");
	cr_assert_eq(gs_subscribe(z, src, NULL, NULL), GS_EBUSY, "none left");
	cr_assert_eq(gs_subscribe(w, src, &(gs_sub_opts){ .selector = is_even },
				  NULL),
		     GS_EINVAL, "selector without broadcast");
	cr_assert_str_not_empty(gs_strerror(GS_EBUSY));
	gs_pipeline_free(p);
}

Test(demand, the_explicit_demand_dispatcher_is_the_default, .timeout = 30)
{
	gs_dispatcher d = gs_dispatcher_demand();
	cr_assert_eq(d.kind, GS_DISPATCH_DEMAND);
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	counter c = { .end = N };
	gs_stage *src;
	cr_assert_eq(gs_from_fn(p, counter_gen, &c,
				&(gs_stage_opts){ .dispatcher = d }, &src),
		     GS_OK);
	probe pr[2] = { 0 };
	for (int i = 0; i < 2; i++)
		gs_subscribe(probe_new(p, &pr[i]), src,
			     &(gs_sub_opts){ .max_demand = 64,
					     .cancel = GS_CANCEL_TRANSIENT },
			     NULL);
	gs_pipeline_start(p);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	/* each event once, to one of the two, in order within each */
	cr_assert_eq(pr[0].n + pr[1].n, N);
	unsigned char *seen = calloc(N, 1);
	for (int i = 0; i < 2; i++)
		for (size_t k = 0; k < pr[i].n; k++) {
			cr_assert_eq(seen[pr[i].vals[k]], 0);
			seen[pr[i].vals[k]] = 1;
			if (k)
				cr_assert_gt(pr[i].vals[k], pr[i].vals[k - 1]);
		}
	free(seen);
	probe_free(&pr[0]);
	probe_free(&pr[1]);
	gs_pipeline_free(p);
}
