// SPDX-License-Identifier: MIT
/*
 * Delivery: lossless and ordered with a slow subscriber, each overflow
 * policy's counts and frees, all-or-nothing publishes, completion once per
 * envelope after every subscriber, causation and correlation across nested
 * publishes, retries then dead letter, and a worker-pool subscription.
 * Subscribers that must hold events wait on a gate the test opens.
 */
#include "bus_test.h"

#ifndef GS_TEST_BUS_EVENTS
#define GS_TEST_BUS_EVENTS 3000
#endif

static const char *const all[] = { "#", NULL };

Test(bus_delivery, a_slow_subscriber_loses_nothing_and_keeps_order,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub slow;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&slow));
	slow.spin = 20000;
	bt_subscribe(bus, &slow,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 8 });
	for (uint64_t i = 1; i <= GS_TEST_BUS_EVENTS; i++)
		bt_publish(bus, i % 2 ? "orders.created" : "orders.paid", i);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_assert_eq(atomic_load(&slow.n), GS_TEST_BUS_EVENTS);
	for (uint64_t i = 0; i < GS_TEST_BUS_EVENTS; i++)
		cr_assert_eq(slow.ids[i], i + 1, "position %llu",
			     (unsigned long long)i);
	gs_bus_sub_stats st = bt_stats(&slow);
	cr_expect_eq(st.accepted, GS_TEST_BUS_EVENTS);
	cr_expect_eq(st.handled, GS_TEST_BUS_EVENTS);
	cr_expect_eq(st.dropped, 0);
	bt_end(bus, GS_TEST_BUS_EVENTS, BT_SUBS(&slow));
}

/* Publishes 1, waits until the gated handler holds it, then 2..n. */
static void fill_behind_gate(gs_bus *bus, bt_sub *b, uint64_t n)
{
	bt_publish(bus, "t", 1);
	wait_at_least(&b->holding, 1);
	for (uint64_t i = 2; i <= n; i++)
		GS_OK_OR_DIE(
			gs_bus_publish(bus, "t", bt_payload(i, 0), bt_free, 0));
}

/* Holds event 1 at the handler, publishes 2..20 into a queue of four
 * under `policy`, then lets the handler go: it must handle `want`, and the
 * other sixteen must have been dropped, and freed, as they came. */
static void overflow_run(gs_bus_overflow policy, const uint64_t want[4])
{
	static bt_sub b;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&b));
	b.gated = true;
	bt_subscribe(bus, &b,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 4,
					.overflow = policy });
	fill_behind_gate(bus, &b, 20);
	gs_bus_sub_stats st = bt_stats(&b);
	cr_expect_eq(st.accepted, 20);
	cr_expect_eq(st.dropped, 16);
	cr_expect_eq(st.in_flight, 4);
	cr_expect_eq(atomic_load(&bt_freed), 16);
	atomic_store(&b.open, true);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&b.n), 4);
	for (size_t i = 0; i < 4; i++)
		cr_expect_eq(b.ids[i], want[i], "handled #%zu: %llu", i,
			     (unsigned long long)b.ids[i]);
	bt_end(bus, 20, BT_SUBS(&b));
}

Test(bus_delivery, drop_newest_keeps_the_first_and_frees_the_rest,
     .timeout = GS_TEST_TIMEOUT)
{
	overflow_run(GS_BUS_DROP_NEWEST, (const uint64_t[]){ 1, 2, 3, 4 });
}

/* The one being handled cannot be taken back; of the queue, the newest
 * three stay. */
Test(bus_delivery, drop_oldest_keeps_the_newest_and_frees_the_rest,
     .timeout = GS_TEST_TIMEOUT)
{
	overflow_run(GS_BUS_DROP_OLDEST, (const uint64_t[]){ 1, 18, 19, 20 });
}

/* One subscription, its queue of two full behind its handler's gate: a
 * third publish is refused at timeout 0 (*p stays ours). */
static gs_bus *refused_when_full(bt_sub *b, payload **p)
{
	gs_bus *bus = bt_begin(NULL, BT_SUBS(b));
	b->gated = true;
	bt_subscribe(bus, b,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 2 });
	fill_behind_gate(bus, b, 2);
	*p = bt_payload(3, 0);
	cr_expect_eq(gs_bus_publish(bus, "t", *p, bt_free, 0), GS_EFULL);
	return bus;
}

/* The third publish now gets in, and all three are handled. */
static void third_gets_in(gs_bus *bus, bt_sub *b, payload *p, int timeout_ms)
{
	GS_OK_OR_DIE(gs_bus_publish(bus, "t", p, bt_free, timeout_ms));
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&b->n), 3);
	bt_end(bus, 3, BT_SUBS(b));
}

Test(bus_delivery, block_refuses_at_once_or_after_waiting_and_keeps_payload,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub b;
	payload *p;
	gs_bus *bus = refused_when_full(&b, &p);
	cr_expect_eq(gs_bus_publish(bus, "t", p, bt_free, 20), GS_ETIMEDOUT);
	cr_expect_eq(bt_stats(&b).accepted, 2);
	cr_expect_eq(atomic_load(&bt_freed), 0, "a refused payload is ours");
	atomic_store(&b.open, true);
	/* Room comes back as the handler finishes: a waiting publish gets
	 * in. */
	third_gets_in(bus, &b, p, GS_BUS_FOREVER);
}

/* A publisher keeps the finished count it last read (a bound on what the
 * queue holds) and reads it again only when that bound says full: a queue
 * found full must take a publish at timeout 0 once its handler is done. */
Test(bus_delivery, a_queue_found_full_takes_again_at_timeout_0_once_drained,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub b;
	payload *p;
	gs_bus *bus = refused_when_full(&b, &p);
	atomic_store(&b.open, true);
	while (bt_stats(&b).in_flight)
		bt_yield();
	third_gets_in(bus, &b, p, 0);
}

Test(bus_delivery, a_publish_one_block_queue_cannot_take_reaches_nobody,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub full, other;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&full, &other));
	full.gated = true;
	bt_subscribe(bus, &full,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 2 });
	bt_subscribe(
		bus, &other,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "a.*", NULL },
				   .queue_size = 100 });
	fill_behind_gate(bus, &full, 1);
	/* Room for one more in `full`, and a batch of two for it. */
	gs_bus_msg batch[] = { { "a.x", bt_payload(2, 0) },
			       { "a.y", bt_payload(3, 0) } };
	cr_expect_eq(gs_bus_publish_batch(
			     bus, batch, 2,
			     &(gs_bus_publish_opts){ .free_fn = bt_free }),
		     GS_EFULL);
	/* A batch larger than the queue could never fit. */
	gs_bus_msg big[] = { { "a.x", NULL }, { "a.y", NULL }, { "b", NULL } };
	cr_expect_eq(gs_bus_publish_batch(bus, big, 3, NULL), GS_EINVAL);
	cr_expect_eq(bt_stats(&other).accepted, 0, "all or nothing");
	atomic_store(&full.open, true);
	GS_OK_OR_DIE(gs_bus_publish_batch(
		bus, batch, 2,
		&(gs_bus_publish_opts){ .free_fn = bt_free,
					.timeout_ms = GS_BUS_FOREVER }));
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&full.n), 3);
	cr_expect_eq(atomic_load(&other.n), 2);
	cr_expect_eq(other.ids[0], 2);
	cr_expect_eq(other.ids[1], 3);
	bt_end(bus, 3, BT_SUBS(&full, &other));
}

Test(bus_delivery, a_slow_drop_subscriber_never_slows_publishers_or_others,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub slow, fast;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&slow, &fast));
	slow.gated = true;
	bt_subscribe(bus, &slow,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 16,
					.overflow = GS_BUS_DROP_OLDEST });
	bt_subscribe(bus, &fast,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 64 });
	/* Every publish gets in and the fast subscriber handles them all
	 * while the slow one is still held at its gate. */
	bt_publish(bus, "t", 1);
	wait_at_least(&slow.holding, 1);
	for (uint64_t i = 2; i <= GS_TEST_BUS_EVENTS; i++)
		bt_publish(bus, "t", i);
	wait_at_least(&fast.n, GS_TEST_BUS_EVENTS);
	cr_expect_eq(atomic_load(&slow.holding), 1);
	gs_bus_sub_stats st = bt_stats(&slow);
	cr_expect_eq(st.accepted, GS_TEST_BUS_EVENTS);
	cr_expect_eq(st.dropped, GS_TEST_BUS_EVENTS - 16);
	atomic_store(&slow.open, true);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	bt_end(bus, GS_TEST_BUS_EVENTS, BT_SUBS(&slow, &fast));
}

/* on_complete: counts per id, and checks that every subscriber that
 * handled the envelope had finished its handler. */
typedef struct completions {
	_Atomic unsigned char count[GS_TEST_BUS_EVENTS + 1];
	_Atomic uint64_t total, bad_summary, early;
	bt_sub *subs[3];
} completions;

static void on_complete(void *arg, const gs_bus_envelope *env,
			const gs_bus_summary *sum)
{
	completions *c = arg;
	uint64_t id = ((const payload *)env->payload)->id;
	atomic_fetch_add(&c->count[id], 1);
	atomic_fetch_add(&c->total, 1);
	if (sum->matched != 3 ||
	    sum->handled + sum->dropped + sum->failed != sum->matched)
		atomic_fetch_add(&c->bad_summary, 1);
	unsigned seen = 0;
	for (size_t i = 0; i < 3; i++)
		seen += atomic_load(&c->subs[i]->seen[id]);
	if (seen != sum->handled)
		atomic_fetch_add(&c->early, 1);
}

Test(bus_delivery, completion_fires_once_per_envelope_after_every_subscriber,
     .timeout = GS_TEST_TIMEOUT)
{
	static completions c;
	memset(&c, 0, sizeof c);
	static bt_sub in_order, pooled, lossy;
	gs_bus *bus = bt_begin(&(gs_bus_opts){ .on_complete = on_complete,
					       .complete_arg = &c },
			       BT_SUBS(&in_order, &pooled, &lossy));
	in_order.skip_every = 7;
	lossy.spin = 5000;
	c.subs[0] = &in_order;
	c.subs[1] = &pooled;
	c.subs[2] = &lossy;
	bt_subscribe(bus, &in_order,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 32 });
	bt_subscribe(bus, &pooled,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 32,
					.concurrency = 4 });
	bt_subscribe(bus, &lossy,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 4,
					.overflow = GS_BUS_DROP_NEWEST });
	for (uint64_t i = 1; i <= GS_TEST_BUS_EVENTS; i++)
		bt_publish(bus, "t", i);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&c.total), GS_TEST_BUS_EVENTS);
	for (uint64_t i = 1; i <= GS_TEST_BUS_EVENTS; i++)
		cr_assert_eq(atomic_load(&c.count[i]), 1, "envelope %llu",
			     (unsigned long long)i);
	cr_expect_eq(atomic_load(&c.bad_summary), 0);
	cr_expect_eq(atomic_load(&c.early), 0);
	cr_expect_eq(bt_stats(&in_order).skipped, GS_TEST_BUS_EVENTS / 7);
	cr_expect_eq(atomic_load(&pooled.n), GS_TEST_BUS_EVENTS);
	for (uint64_t i = 1; i <= GS_TEST_BUS_EVENTS; i++)
		cr_assert_eq(atomic_load(&pooled.seen[i]), 1);
	bt_end(bus, GS_TEST_BUS_EVENTS, BT_SUBS(&in_order, &pooled, &lossy));
}

Test(bus_delivery, nested_publishes_carry_causation_and_correlation,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a, b, c;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&a, &b, &c));
	a = (bt_sub){ .publish_next = true, .bus = bus, .next_topic = "b" };
	b = (bt_sub){ .publish_next = true, .bus = bus, .next_topic = "c" };
	bt_subscribe(
		bus, &a,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "a", NULL },
				   .queue_size = 8 });
	/* A pool's threads carry the context too. */
	bt_subscribe(
		bus, &b,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "b", NULL },
				   .queue_size = 8,
				   .concurrency = 2 });
	bt_subscribe(
		bus, &c,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "c", NULL },
				   .queue_size = 8 });
	bt_publish(bus, "a", 1);
	wait_at_least(&c.n, 1);
	/* A publisher may name the correlation itself. */
	GS_OK_OR_DIE(gs_bus_publish_batch(
		bus, &(gs_bus_msg){ "c", bt_payload(2, 0) }, 1,
		&(gs_bus_publish_opts){ .source = "billing",
					.free_fn = bt_free,
					.correlation_id = 777 }));
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	const gs_bus_envelope *ea = &a.envs[0].env, *eb = &b.envs[0].env,
			      *ec = &c.envs[0].env, *ed = &c.envs[1].env;
	cr_expect_eq(ea->causation_id, 0);
	cr_expect_eq(ea->correlation_id, ea->id);
	cr_expect_eq(eb->causation_id, ea->id);
	cr_expect_eq(eb->correlation_id, ea->id);
	cr_expect_eq(ec->causation_id, eb->id);
	cr_expect_eq(ec->correlation_id, ea->id);
	cr_expect(ea->id < eb->id && eb->id < ec->id && ec->id < ed->id);
	cr_expect_eq(ed->causation_id, 0);
	cr_expect_eq(ed->correlation_id, 777);
	cr_expect_str_eq(a.envs[0].source, "");
	cr_expect_str_eq(c.envs[1].source, "billing");
	cr_expect_str_eq(b.envs[0].topic, "b");
	cr_expect_eq(atomic_load(&a.republish_failed), 0);
	cr_expect_eq(atomic_load(&b.republish_failed), 0);
	cr_expect_eq(atomic_load(&a.current_ok), 1);
	cr_expect_eq(atomic_load(&b.current_ok), 1);
	cr_expect_null(gs_bus_current());
	gs_bus_free(bus);
	cr_expect_eq(atomic_load(&bt_freed), 4);
}

Test(bus_delivery, errors_are_retried_then_dead_lettered,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub now, later;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&now, &later));
	now = (bt_sub){ .fail_id = 5, .flaky_id = 3 };
	later = (bt_sub){ .fail_id = 5, .flaky_id = 3 };
	bt_subscribe(bus, &now,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 8,
					.max_retries = 2 });
	/* With a backoff the handler sleeps between tries, so it is given
	 * a thread of its own. */
	bt_subscribe(bus, &later,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 8,
					.max_retries = 3,
					.retry_backoff_ms = 1,
					.concurrency = 2 });
	for (uint64_t i = 1; i <= 10; i++)
		bt_publish(bus, "t", i);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	gs_bus_sub_stats st = bt_stats(&now);
	cr_expect_eq(st.retried, 2 + 2); /* flaky twice, failing twice */
	cr_expect_eq(st.failed, 1);
	cr_expect_eq(st.handled, 9);
	cr_expect_eq(atomic_load(&now.dead), 1);
	cr_expect_eq(atomic_load(&now.dead_error), GS_TEST_FAIL);
	cr_expect_eq(atomic_load(&now.calls), 10 + 4);
	st = bt_stats(&later);
	cr_expect_eq(st.retried, 2 + 3);
	cr_expect_eq(st.failed, 1);
	cr_expect_eq(atomic_load(&later.dead), 1);
	gs_bus_topic_stats ts;
	GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, "t", &ts));
	cr_expect_eq(ts.failed, 2);
	cr_expect_eq(ts.retried, 4 + 5);
	cr_expect_eq(ts.handled, 18);
	bt_end(bus, 10, BT_SUBS(&now, &later));
}
