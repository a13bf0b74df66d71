// SPDX-License-Identifier: MIT
/* Broadcast and partition dispatchers: who receives what, demand
 * accounting, selectors, discards, per-partition queues and their bounds. */
#include "gs_test.h"

#ifndef GS_TEST_EVENTS
#define GS_TEST_EVENTS 50000
#endif
#define N GS_TEST_EVENTS

static bool is_even(void *arg, const void *ev)
{
	(void)arg;
	return (GS_VAL(ev) & 1) == 0;
}

/* A gs_from_fn source on `c` that broadcasts. */
static gs_stage *broadcast_new(gs_pipeline *p, counter *c)
{
	return counter_new(
		p, c,
		&(gs_stage_opts){ .dispatcher = gs_dispatcher_broadcast() });
}

Test(broadcast, every_subscriber_receives_every_event_in_order,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { .end = N };
	gs_stage *src = broadcast_new(p, &c);
	recorder pr[3] = { 0 };
	for (int i = 0; i < 3; i++) {
		pr[i].keep = true;
		gs_stage *s = recorder_new(p, &pr[i], NULL);
		/* uneven speeds: different batch sizes */
		cr_assert_eq(gs_subscribe(s, src,
					  &(gs_sub_opts){
						  .max_demand = 7 + 300 * i },
					  NULL),
			     GS_OK);
	}
	cr_assert_eq(start_and_wait(p), GS_OK);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(pr[i].n, N, "subscriber %d got %zu", i, pr[i].n);
		for (size_t k = 0; k < pr[i].n; k++)
			cr_assert_eq(pr[i].vals[k], k);
		recorder_fini(&pr[i]);
	}
	gs_pipeline_free(p);
}

Test(broadcast, selector_filters_what_a_subscriber_receives,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { .end = N };
	gs_stage *src = broadcast_new(p, &c);
	recorder all = { .keep = true }, even = { .keep = true };
	gs_subscribe(recorder_new(p, &all, NULL), src,
		     &(gs_sub_opts){ .max_demand = 50 }, NULL);
	cr_assert_eq(gs_subscribe(recorder_new(p, &even, NULL), src,
				  &(gs_sub_opts){ .max_demand = 50,
						  .selector = is_even },
				  NULL),
		     GS_OK);
	cr_assert_eq(start_and_wait(p), GS_OK);
	cr_assert_eq(all.n, N);
	cr_assert_eq(even.n, N / 2);
	for (size_t k = 0; k < even.n; k++)
		cr_assert_eq(even.vals[k], 2 * k);
	recorder_fini(&all);
	recorder_fini(&even);
	gs_pipeline_free(p);
}

Test(broadcast, slowest_subscriber_sets_the_pace, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { 0 }; /* endless */
	gs_stage *src = broadcast_new(p, &c);
	recorder slow = { .keep = true }, fast = { .keep = true };
	gs_sub *slow_sub;
	GS_OK_OR_DIE(gs_subscribe(recorder_new(p, &slow, NULL), src,
				  &(gs_sub_opts){ .manual = true }, &slow_sub));
	GS_OK_OR_DIE(
		gs_subscribe(recorder_new(p, &fast, NULL), src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_ask(slow_sub, 10));
	wait_at_least(&fast.received, 10);
	/* Once 5 more asked by the slow one have reached both, the source
	 * has acted on every ask made before, the fast one's 1000 too: it
	 * was asked for what the slowest asked and no more. */
	GS_OK_OR_DIE(gs_ask(slow_sub, 5));
	wait_at_least(&slow.received, 15);
	wait_at_least(&fast.received, 15);
	cr_assert_eq(atomic_load(&c.produced), 15,
		     "the source was asked for %llu",
		     (unsigned long long)atomic_load(&c.produced));
	gs_pipeline_stop(p, GS_STOP_NOW);
	cr_assert_eq(fast.n, 15);
	cr_assert_eq(slow.n, 15);
	for (size_t k = 0; k < 15; k++) {
		cr_assert_eq(fast.vals[k], k);
		cr_assert_eq(slow.vals[k], k);
	}
	recorder_fini(&slow);
	recorder_fini(&fast);
	gs_pipeline_free(p);
}

static size_t mod4_discard7(void *arg, const void *ev)
{
	(void)arg;
	uintptr_t v = GS_VAL(ev);
	return v % 7 == 0 ? GS_DISCARD : v % 4;
}

Test(partition, each_event_goes_to_its_partition_or_is_discarded,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { .end = N };
	_Atomic uint64_t freed = 0;
	gs_stage *src = counter_new(
		p, &c,
		&(gs_stage_opts){ .dispatcher = gs_dispatcher_partition(
					  4, mod4_discard7, NULL),
				  .event_free = count_free,
				  .event_free_arg = &freed });
	recorder pr[4] = { 0 };
	for (int i = 3; i >= 0; i--) {
		pr[i].keep = true;
		cr_assert_eq(gs_subscribe(recorder_new(p, &pr[i], NULL), src,
					  &(gs_sub_opts){
						  .partition = GS_PARTITION(i),
						  .max_demand = 10 + 100 * i },
					  NULL),
			     GS_OK);
	}
	cr_assert_eq(start_and_wait(p), GS_OK);
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
		recorder_fini(&pr[i]);
	}
	gs_pipeline_free(p);
}

static size_t mod2(void *arg, const void *ev)
{
	(void)arg;
	return GS_VAL(ev) % 2;
}

Test(partition, a_stalled_partition_does_not_block_the_others,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { .end = 20000 };
	_Atomic uint64_t freed = 0;
	gs_stage *src = counter_new(
		p, &c,
		&(gs_stage_opts){
			.dispatcher = gs_dispatcher_partition(2, mod2, NULL),
			.buffer_size = 20000, /* room to queue all of it */
			.event_free = count_free,
			.event_free_arg = &freed });
	recorder stalled = { 0 }, odd = { .keep = true };
	gs_subscribe(recorder_new(p, &stalled, NULL), src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(0),
				     .manual = true },
		     NULL);
	gs_subscribe(recorder_new(p, &odd, NULL), src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(1) }, NULL);
	gs_pipeline_start(p);
	wait_at_least(&odd.received, 10000);
	gs_pipeline_stop(p, GS_STOP_NOW);
	cr_assert_eq(atomic_load(&stalled.received), 0);
	/* what waited for partition 0 was dropped, and counted */
	cr_assert_eq(atomic_load(&c.produced), odd.n + atomic_load(&freed));
	recorder_fini(&odd);
	gs_pipeline_free(p);
}

/*
 * Waits until the source holds its demand back: the odd partition has
 * taken every odd event made, and after it did the source ran a whole turn
 * (two round trips) with demand unmet and made nothing. Returns how many
 * events it made, or gives up once it made `limit`: a source that is not
 * held back never settles.
 */
static uint64_t held_back(gs_stage *src, seq_producer *sp, recorder *odd,
			  uint64_t limit)
{
	for (;; nap()) {
		uint64_t made = atomic_load(&sp->emitted);
		if (made >= limit)
			return made;
		if (atomic_load(&odd->received) != made / 2)
			continue;
		stage_sync(src);
		stage_sync(src);
		gs_stats st;
		GS_OK_OR_DIE(gs_stage_stats(src, &st));
		if (st.pending_demand && atomic_load(&sp->emitted) == made)
			return made;
	}
}

Test(partition, a_full_queue_holds_back_new_demand, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	seq_producer sp = { .total = SIZE_MAX }; /* endless */
	gs_stage *src;
	GS_OK_OR_DIE(gs_stage_new(
		p, GS_PRODUCER, &seq_producer_ops, &sp,
		&(gs_stage_opts){
			.dispatcher = gs_dispatcher_partition(2, mod2, NULL),
			.buffer_size = 64 },
		&src));
	recorder stalled = { 0 }, odd = { 0 };
	gs_sub *stalled_sub;
	GS_OK_OR_DIE(gs_subscribe(recorder_new(p, &stalled, NULL), src,
				  &(gs_sub_opts){ .partition = GS_PARTITION(0),
						  .manual = true },
				  &stalled_sub));
	GS_OK_OR_DIE(gs_subscribe(recorder_new(p, &odd, NULL), src,
				  &(gs_sub_opts){ .partition = GS_PARTITION(1),
						  .max_demand = 100 },
				  NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* bounded: the queue (64) plus what one round of demand emits */
	uint64_t made = held_back(src, &sp, &odd, 1000);
	cr_assert_lt(made, 1000, "still producing: %llu made",
		     (unsigned long long)made);
	cr_assert_eq(atomic_load(&stalled.received), 0);
	/* Held, not lost: once partition 0 takes its queue, the odd
	 * partition's demand is met again. */
	GS_OK_OR_DIE(gs_ask(stalled_sub, 1000));
	wait_at_least(&odd.received, made / 2 + 1);
	gs_pipeline_stop(p, GS_STOP_NOW);
	gs_pipeline_free(p);
}

Test(partition, queued_events_reach_the_partitions_next_subscriber,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	/* Endless, so that it still runs when b arrives however the threads
	 * are scheduled (a bounded one could be used up first, and finish);
	 * the queue bound (N) holds it back while partition 0 has nobody. */
	counter c = { .end = 0 };
	gs_stage *src = counter_new(
		p, &c,
		&(gs_stage_opts){
			.dispatcher = gs_dispatcher_partition(2, mod2, NULL),
			.buffer_size = N });
	recorder first = { .keep = true }, second = { .keep = true },
		 odd = { .keep = true };
	gs_stage *a = recorder_new(p, &first, NULL);
	gs_sub *sa;
	gs_subscribe(a, src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(0),
				     .cancel = GS_CANCEL_TEMPORARY,
				     .max_demand = 10 },
		     &sa);
	gs_subscribe(recorder_new(p, &odd, NULL), src,
		     &(gs_sub_opts){ .partition = GS_PARTITION(1) }, NULL);
	gs_stage *b = recorder_new(p, &second, NULL);
	gs_pipeline_start(p);
	wait_at_least(&first.received, 100);
	cr_assert_eq(gs_cancel(sa), GS_OK);
	/* the partition is free again once the old subscription is gone */
	gs_err err;
	for (int i = 0;
	     (err = gs_subscribe(b, src,
				 &(gs_sub_opts){ .partition = GS_PARTITION(0) },
				 NULL)) == GS_EBUSY &&
	     i < 5000;
	     i++)
		nap();
	cr_assert_eq(err, GS_OK, "gs_subscribe: %s (%d)", gs_strerror(err),
		     err);
	wait_at_least(&second.received, N / 2);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	/* together, in order, exactly the even events; odd has the rest */
	cr_assert_eq(first.n + second.n, (c.next + 1) / 2);
	cr_assert_eq(odd.n, c.next / 2);
	for (size_t k = 0; k < first.n; k++)
		cr_assert_eq(first.vals[k], 2 * k);
	for (size_t k = 0; k < second.n; k++)
		cr_assert_eq(second.vals[k], 2 * (first.n + k));
	recorder_fini(&first);
	recorder_fini(&second);
	recorder_fini(&odd);
	gs_pipeline_free(p);
}

Test(partition, bad_subscriptions_are_refused)
{
	gs_pipeline *p = pipeline_new(NULL);
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
	/* What it was made with can be read back, by a library handed the
	 * stage; a consumer has none. */
	gs_dispatcher d;
	cr_assert_eq(gs_stage_dispatcher(src, &d), GS_OK);
	cr_assert(d.kind == GS_DISPATCH_PARTITION && d.partitions == 2 &&
		  d.hash == mod2 && d.arg == NULL);
	cr_assert_eq(gs_stage_dispatcher(x, &d), GS_EKIND);
	cr_assert_eq(gs_stage_dispatcher(NULL, &d), GS_EINVAL);
	cr_assert_eq(gs_stage_dispatcher(src, NULL), GS_EINVAL);
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

Test(demand, the_explicit_demand_dispatcher_is_the_default,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_dispatcher d = gs_dispatcher_demand();
	cr_assert_eq(d.kind, GS_DISPATCH_DEMAND);
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { .end = N };
	gs_stage *src = counter_new(p, &c, &(gs_stage_opts){ .dispatcher = d });
	recorder pr[2] = { 0 };
	for (int i = 0; i < 2; i++) {
		pr[i].keep = true;
		gs_subscribe(recorder_new(p, &pr[i], NULL), src,
			     &(gs_sub_opts){ .max_demand = 64,
					     .cancel = GS_CANCEL_TRANSIENT },
			     NULL);
	}
	cr_assert_eq(start_and_wait(p), GS_OK);
	/* each event once, to one of the two, in order within each */
	check_exactly_once(pr, 2, N);
	recorder_fini(&pr[0]);
	recorder_fini(&pr[1]);
	gs_pipeline_free(p);
}
