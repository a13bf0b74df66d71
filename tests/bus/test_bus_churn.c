// SPDX-License-Identifier: MIT
/*
 * Listeners that come and go for ever: subscribe, publish, unsubscribe and
 * release in a loop while another thread publishes to a long-lived
 * subscriber, in bounded memory (the bus holds only what is live), with
 * nothing lost and every counter kept in the bus's retired totals; and
 * gs_bus_sub_release where it is hard: on a subscription still subscribed,
 * from its own handler, after gs_bus_close, and on NULL.
 */
#include <pthread.h>

#include "bus_test.h"

/* Subscribe/unsubscribe/release cycles per test. */
#ifndef GS_TEST_BUS_CHURN
#define GS_TEST_BUS_CHURN 300
#endif
/* Every this many cycles, the test waits until the bus holds only the
 * long-lived subscription: without the release, it would wait for ever. */
#define CHECK_EVERY 25
/* Events each churned subscription is sent by the test itself. */
#define EVENTS 8

static const char *const background[] = { "bg.#", NULL };
static const char *const churned[] = { "orders.*", "bg.#", NULL };

static void count_complete(void *arg, const gs_bus_envelope *env,
			   const gs_bus_summary *summary)
{
	(void)env;
	(void)summary;
	atomic_fetch_add((_Atomic uint64_t *)arg, 1);
}

static int count_handle(void *arg, const gs_bus_envelope *env)
{
	(void)env;
	atomic_fetch_add((_Atomic uint64_t *)arg, 1);
	return GS_BUS_DONE;
}

/* Publishes on bg.tick until told to stop. */
typedef struct ticker {
	gs_bus *bus;
	_Atomic bool stop;
	uint64_t published;
	gs_err err;
} ticker;

static void *tick(void *arg)
{
	ticker *t = arg;
	while (!atomic_load(&t->stop)) {
		payload *pl = bt_payload(1000000 + t->published, 1);
		gs_err err = gs_bus_publish(t->bus, "bg.tick", pl, bt_free,
					    GS_BUS_FOREVER);
		if (err) {
			free(pl);
			t->err = err;
			break;
		}
		t->published++;
	}
	return NULL;
}

static gs_bus_stats bus_stats(gs_bus *bus)
{
	gs_bus_stats st;
	GS_OK_OR_DIE(gs_bus_stats_get(bus, &st));
	return st;
}

/* Waits until the bus holds `want` subscriptions (no time limit: the
 * test's .timeout is the limit). */
static void wait_held(gs_bus *bus, uint64_t want)
{
	while (bus_stats(bus).held != want)
		nap();
}

static void add_counts(gs_bus_sub_stats *sum, const gs_bus_sub_stats *st)
{
	sum->accepted += st->accepted;
	sum->delivered += st->delivered;
	sum->handled += st->handled;
	sum->skipped += st->skipped;
	sum->failed += st->failed;
	sum->dropped += st->dropped;
}

static uint64_t deliveries(gs_bus *bus, const char *topic)
{
	gs_bus_topic_stats ts;
	GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, topic, &ts));
	return ts.deliveries;
}

static void churn(size_t concurrency)
{
	atomic_store(&bt_freed, 0);
	_Atomic uint64_t completed = 0, handled = 0;
	gs_bus *bus = bt_bus(&(gs_bus_opts){ .on_complete = count_complete,
					     .complete_arg = &completed });
	static bt_sub steady;
	memset(&steady, 0, sizeof steady);
	bt_subscribe(bus, &steady,
		     (gs_bus_sub_opts){ .name = "steady",
					.patterns = background,
					.queue_size = 64 });
	ticker t = { .bus = bus };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, tick, &t), 0);
	gs_bus_sub_stats sum = { 0 };
	uint64_t published = 0;
	for (unsigned i = 0; i < GS_TEST_BUS_CHURN; i++) {
		static const gs_bus_overflow policy[] = { GS_BUS_BLOCK,
							  GS_BUS_DROP_OLDEST,
							  GS_BUS_DROP_NEWEST };
		gs_bus_sub *sub;
		GS_OK_OR_DIE(gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){ .patterns = churned,
					    .handler = count_handle,
					    .arg = (void *)&handled,
					    .queue_size = 8,
					    .overflow = policy[i % 3],
					    .concurrency = concurrency },
			&sub));
		for (unsigned k = 0; k < EVENTS; k++, published++)
			GS_OK_OR_DIE(gs_bus_publish(bus, "orders.created",
						    bt_payload(published, 0),
						    bt_free, GS_BUS_FOREVER));
		GS_OK_OR_DIE(gs_bus_unsubscribe(
			sub, i % 2 ? GS_BUS_IMMEDIATE : GS_BUS_DRAIN,
			GS_BUS_FOREVER));
		gs_bus_sub_stats st;
		GS_OK_OR_DIE(gs_bus_sub_stats_get(sub, &st));
		char who[32];
		snprintf(who, sizeof who, "cycle %u", i);
		gs_test_bus_conserved(&st, who);
		cr_assert_geq(st.accepted, EVENTS);
		add_counts(&sum, &st);
		gs_bus_sub_release(sub);
		/* Bounded: what was released has gone, all of it (its
		 * stages and pool threads went first). */
		if ((i + 1) % CHECK_EVERY == 0)
			wait_held(bus, 1);
	}
	wait_held(bus, 1);
	atomic_store(&t.stop, true);
	pthread_join(th, NULL);
	cr_expect_eq(t.err, GS_OK);
	/* Nothing of the released ones' work vanished from the totals. */
	gs_bus_stats bs = bus_stats(bus);
	cr_expect_eq(bs.retired, GS_TEST_BUS_CHURN);
	cr_expect_eq(bs.routed, 1);
	cr_expect_eq(bs.retired_totals.accepted, sum.accepted);
	cr_expect_eq(bs.retired_totals.delivered, sum.delivered);
	cr_expect_eq(bs.retired_totals.handled, sum.handled);
	cr_expect_eq(bs.retired_totals.dropped, sum.dropped);
	cr_expect_eq(bs.retired_totals.failed, sum.failed);
	cr_expect_eq(bs.retired_totals.in_flight, 0);
	cr_expect_eq(atomic_load(&handled), sum.handled);
	/* Every delivery any topic made is counted by a subscription held or
	 * retired. */
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(deliveries(bus, "orders.created") +
			     deliveries(bus, "bg.tick"),
		     bt_stats(&steady).accepted + sum.accepted);
	bt_conserved(&steady);
	cr_expect_eq(atomic_load(&completed), published + t.published);
	gs_bus_free(bus);
	cr_expect_eq(atomic_load(&bt_freed), published + t.published);
}

Test(bus_churn, listeners_that_come_and_go_run_in_bounded_memory,
     .timeout = GS_TEST_TIMEOUT)
{
	churn(1);
}

Test(bus_churn, pooled_listeners_that_come_and_go_run_in_bounded_memory,
     .timeout = GS_TEST_TIMEOUT)
{
	churn(4);
}

Test(bus_churn, releasing_a_subscribed_one_drains_it_in_the_background,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub gated;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&gated));
	gated.gated = true;
	bt_subscribe(bus, &gated,
		     (gs_bus_sub_opts){
			     .name = "gated",
			     .patterns = (const char *[]){ "orders.*", NULL },
			     .queue_size = 8 });
	for (uint64_t i = 1; i <= 5; i++)
		bt_publish(bus, "orders.created", i);
	wait_at_least(&gated.holding, 1);
	gs_bus_sub_release(gated.sub);
	/* It returned with the handler still held: it did not wait. The
	 * subscription is off the routes, not yet freed. */
	cr_expect_eq(atomic_load(&gated.holding), 1);
	size_t routes;
	GS_OK_OR_DIE(gs_bus_route_count(bus, "orders.created", &routes));
	cr_expect_eq(routes, 0);
	cr_expect_eq(bus_stats(bus).held, 1);
	atomic_store(&gated.open, true);
	wait_held(bus, 0);
	/* Drained: every accepted event reached the handler. */
	cr_expect_eq(atomic_load(&gated.n), 5);
	gs_bus_stats bs = bus_stats(bus);
	cr_expect_eq(bs.retired, 1);
	cr_expect_eq(bs.retired_totals.accepted, 5);
	cr_expect_eq(bs.retired_totals.handled, 5);
	char *json = bt_json(bus);
	cr_expect(strstr(json, "\"held\": 0, \"routed\": 0,\n  \"retired\": "
			       "{\"subscriptions\": 1, \"accepted\": 5, "
			       "\"delivered\": 5, \"handled\": 5"),
		  "%s", json);
	cr_expect(strstr(json, "\"subscriptions\": []"), "%s", json);
	free(json);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	gs_bus_free(bus);
	cr_expect_eq(atomic_load(&bt_freed), 5);
}

/* Releases its own handle from inside its handler, on the first event. */
typedef struct self_release {
	_Atomic(gs_bus_sub *) sub;
	_Atomic bool released;
	_Atomic uint64_t handled;
} self_release;

static int release_self(void *arg, const gs_bus_envelope *env)
{
	(void)env;
	self_release *r = arg;
	if (!atomic_exchange(&r->released, true))
		gs_bus_sub_release(atomic_load(&r->sub));
	atomic_fetch_add(&r->handled, 1);
	return GS_BUS_DONE;
}

static void release_inside(size_t concurrency)
{
	atomic_store(&bt_freed, 0);
	gs_bus *bus = bt_bus(NULL);
	self_release r = { .sub = NULL };
	gs_bus_sub *sub;
	GS_OK_OR_DIE(gs_bus_subscribe(
		bus,
		&(gs_bus_sub_opts){ .patterns = (const char *[]){ "a", NULL },
				    .handler = release_self,
				    .arg = &r,
				    .queue_size = 16,
				    .concurrency = concurrency },
		&sub));
	atomic_store(&r.sub, sub);
	gs_bus_msg msgs[10];
	for (size_t i = 0; i < 10; i++)
		msgs[i] = (gs_bus_msg){ "a", bt_payload(i, 0) };
	GS_OK_OR_DIE(gs_bus_publish_batch(
		bus, msgs, 10, &(gs_bus_publish_opts){ .free_fn = bt_free }));
	/* Freed after its last handler returned, every event handled. */
	wait_held(bus, 0);
	cr_expect_eq(atomic_load(&r.handled), 10);
	gs_bus_stats bs = bus_stats(bus);
	cr_expect_eq(bs.retired_totals.accepted, 10);
	cr_expect_eq(bs.retired_totals.handled, 10);
	gs_bus_free(bus);
	cr_expect_eq(atomic_load(&bt_freed), 10);
}

Test(bus_churn, a_handler_may_release_its_own_subscription,
     .timeout = GS_TEST_TIMEOUT)
{
	release_inside(1);
}

Test(bus_churn, a_pool_handler_may_release_its_own_subscription,
     .timeout = GS_TEST_TIMEOUT)
{
	release_inside(2);
}

Test(bus_churn, release_after_close_frees_at_once_and_null_is_a_no_op,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub one, pooled, kept;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&one, &pooled, &kept));
	const gs_bus_sub_opts o = { .patterns = (const char *[]){ "a", NULL },
				    .queue_size = 8 };
	bt_subscribe(bus, &one, o);
	gs_bus_sub_opts po = o;
	po.concurrency = 3;
	bt_subscribe(bus, &pooled, po);
	bt_subscribe(bus, &kept, o);
	for (uint64_t i = 1; i <= 4; i++)
		bt_publish(bus, "a", i);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(bus_stats(bus).held, 3);
	/* Closed, everything finished: each goes before release returns. */
	gs_bus_sub_release(one.sub);
	cr_expect_eq(bus_stats(bus).held, 2);
	gs_bus_sub_release(pooled.sub);
	cr_expect_eq(bus_stats(bus).held, 1);
	gs_bus_sub_release(NULL);
	gs_bus_stats bs = bus_stats(bus);
	cr_expect_eq(bs.retired, 2);
	cr_expect_eq(bs.retired_totals.handled, 8);
	/* The one kept goes with the bus. */
	bt_conserved(&kept);
	gs_bus_free(bus);
	cr_expect_eq(atomic_load(&bt_freed), 4);
}
