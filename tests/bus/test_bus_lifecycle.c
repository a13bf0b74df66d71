// SPDX-License-Identifier: MIT
/*
 * The bus over time: publishing from many threads, subscribing and
 * unsubscribing under load, closing with drain and immediately, bad input
 * refused with a code and a message, the counters as JSON and the trace
 * hook. Every test ends with the conservation law per subscription and
 * every heap payload freed once.
 */
#include <pthread.h>
#include <unistd.h>

#include "bus_test.h"

#ifndef GS_TEST_BUS_LOAD
#define GS_TEST_BUS_LOAD 4000
#endif
#define PUBLISHERS 4

static const char *const all[] = { "#", NULL };

typedef struct publisher {
	gs_bus *bus;
	uint64_t from, count;
	_Atomic bool *stop; /* publish until set, when count is 0 */
	uint64_t published, refused;
	gs_err err;
} publisher;

static const char *const spread[] = { "orders.created", "orders.paid",
				      "users.created", "audit.login" };

static void *publish_all(void *arg)
{
	publisher *p = arg;
	for (uint64_t i = 1; p->count ? i <= p->count : !atomic_load(p->stop);
	     i++) {
		payload *pl = bt_payload(p->from * 1000000 + i, p->from);
		gs_err err = gs_bus_publish(p->bus, spread[i % 4], pl, bt_free,
					    GS_BUS_FOREVER);
		if (err) {
			free(pl);
			p->refused++;
			if (err != GS_ECLOSED)
				p->err = err;
			break;
		}
		p->published++;
	}
	return NULL;
}

/* Per publisher, the ids a concurrency-1 subscriber saw must increase. */
static bool in_order_per_publisher(const bt_sub *b)
{
	uint64_t last[PUBLISHERS + 1] = { 0 };
	size_t n = atomic_load(&b->n);
	for (size_t i = 0; i < n && i < sizeof b->ids / sizeof *b->ids; i++) {
		uint64_t from = b->ids[i] / 1000000, seq = b->ids[i] % 1000000;
		if (from > PUBLISHERS || seq <= last[from])
			return false;
		last[from] = seq;
	}
	return true;
}

Test(bus_lifecycle, publishes_from_many_threads_arrive_exactly_once_in_order,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub ordered, pooled;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&ordered, &pooled));
	bt_subscribe(bus, &ordered,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 64 });
	bt_subscribe(bus, &pooled,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 64,
					.concurrency = 3 });
	uint64_t each = 8192 / PUBLISHERS - 1;
	if (each > GS_TEST_BUS_LOAD)
		each = GS_TEST_BUS_LOAD;
	publisher pub[PUBLISHERS];
	pthread_t th[PUBLISHERS];
	for (size_t i = 0; i < PUBLISHERS; i++) {
		pub[i] = (publisher){ .bus = bus,
				      .from = i + 1,
				      .count = each };
		cr_assert_eq(pthread_create(&th[i], NULL, publish_all, &pub[i]),
			     0);
	}
	for (size_t i = 0; i < PUBLISHERS; i++) {
		pthread_join(th[i], NULL);
		cr_expect_eq(pub[i].err, GS_OK);
	}
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&ordered.n), PUBLISHERS * each);
	cr_expect_eq(atomic_load(&pooled.n), PUBLISHERS * each);
	cr_expect(in_order_per_publisher(&ordered));
	bt_end(bus, PUBLISHERS * each, BT_SUBS(&ordered, &pooled));
}

Test(bus_lifecycle, unsubscribing_under_load_loses_nothing_it_did_not_count,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub steady, churn[24];
	memset(churn, 0, sizeof churn);
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&steady));
	bt_subscribe(bus, &steady,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 32,
					.overflow = GS_BUS_DROP_OLDEST });
	_Atomic bool stop = false;
	publisher pub[PUBLISHERS];
	pthread_t th[PUBLISHERS];
	for (size_t i = 0; i < PUBLISHERS; i++) {
		pub[i] = (publisher){ .bus = bus,
				      .from = i + 1,
				      .stop = &stop };
		cr_assert_eq(pthread_create(&th[i], NULL, publish_all, &pub[i]),
			     0);
	}
	for (size_t i = 0; i < 24; i++) {
		bt_sub *c = &churn[i];
		c->spin = 2000;
		static const gs_bus_overflow policy[] = { GS_BUS_BLOCK,
							  GS_BUS_DROP_OLDEST,
							  GS_BUS_DROP_NEWEST };
		bt_subscribe(bus, c,
			     (gs_bus_sub_opts){
				     .patterns = (const char *[]){ "orders.*",
								   "#.login",
								   NULL },
				     .queue_size = 16,
				     .overflow = policy[i % 3],
				     .concurrency = i % 4 == 3 ? 2 : 1 });
		/* Under load: it has taken events in before it goes. */
		while (bt_stats(c).accepted < 50)
			bt_yield();
		gs_bus_close_mode mode = i % 2 ? GS_BUS_IMMEDIATE
					       : GS_BUS_DRAIN;
		GS_OK_OR_DIE(gs_bus_unsubscribe(c->sub, mode, GS_BUS_FOREVER));
		bt_conserved(c);
		gs_bus_sub_stats st = bt_stats(c);
		size_t before = st.accepted;
		/* Nothing reaches it any more. */
		uint64_t seen = bt_stats(&steady).accepted;
		while (bt_stats(&steady).accepted < seen + 100)
			bt_yield();
		cr_expect_eq(bt_stats(c).accepted, before);
	}
	atomic_store(&stop, true);
	for (size_t i = 0; i < PUBLISHERS; i++) {
		pthread_join(th[i], NULL);
		cr_expect_eq(pub[i].err, GS_OK);
	}
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	bt_conserved(&steady);
	uint64_t published = 0;
	for (size_t i = 0; i < PUBLISHERS; i++)
		published += pub[i].published;
	gs_bus_free(bus);
	cr_expect_eq(atomic_load(&bt_freed), published);
}

Test(bus_lifecycle, a_drain_still_takes_what_handlers_publish,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub first, second;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&first, &second));
	first.publish_next = true;
	first.bus = bus;
	first.next_topic = "b";
	first.spin = 2000;
	bt_subscribe(
		bus, &first,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "a", NULL },
				   .queue_size = 512 });
	bt_subscribe(
		bus, &second,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "b", NULL },
				   .queue_size = 512,
				   .concurrency = 2 });
	for (uint64_t i = 1; i <= 500; i++)
		bt_publish(bus, "a", i);
	/* Most of the "a" events are still queued: their reactions come
	 * during the close, and none is cut off. */
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&first.n), 500);
	cr_expect_eq(atomic_load(&first.republish_failed), 0);
	cr_expect_eq(atomic_load(&second.n), 500);
	/* Once closed, nobody publishes. */
	cr_expect_eq(gs_bus_publish(bus, "a", NULL, NULL, 0), GS_ECLOSED);
	bt_end(bus, 1000, BT_SUBS(&first, &second));
}

/* A hook that publishes a follow-up once a drain has begun: the
 * unrouted hook of "start" (case 0), or its on_complete (case 1), both
 * run on the thread that published "start". */
typedef struct hook_chain {
	gs_bus *bus;
	int use_complete;
	_Atomic bool in_hook, closing;
	_Atomic gs_err follow_err;
} hook_chain;

static void follow_up(hook_chain *h, const gs_bus_envelope *e)
{
	if (strcmp(e->topic, "start") != 0)
		return;
	atomic_store(&h->in_hook, true);
	while (!atomic_load(&h->closing))
		bt_yield();
	/* Time for the close to get past refusing outside publishes. If
	 * the machine is slower than that, the test passes without
	 * showing anything, but it cannot fail wrongly. */
	struct timespec ms50 = { 0, 50 * 1000 * 1000 };
	nanosleep(&ms50, NULL);
	atomic_store(&h->follow_err,
		     gs_bus_publish(h->bus, "follow.up", bt_payload(2, 0),
				    bt_free, 0));
}

static void chain_unrouted(void *arg, const gs_bus_envelope *e)
{
	hook_chain *h = arg;
	if (!h->use_complete)
		follow_up(h, e);
}

static void chain_complete(void *arg, const gs_bus_envelope *e,
			   const gs_bus_summary *sum)
{
	(void)sum;
	hook_chain *h = arg;
	if (h->use_complete)
		follow_up(h, e);
}

static void *publish_start(void *arg)
{
	hook_chain *h = arg;
	return (void *)(uintptr_t)gs_bus_publish(h->bus, "start",
						 bt_payload(1, 0), bt_free, 0);
}

Test(bus_lifecycle, a_drain_still_takes_what_hooks_publish,
     .timeout = GS_TEST_TIMEOUT)
{
	for (int use_complete = 0; use_complete < 2; use_complete++) {
		static bt_sub rec;
		static hook_chain h;
		h = (hook_chain){ .use_complete = use_complete,
				  .follow_err = -1 };
		gs_bus *bus = bt_begin(
			&(gs_bus_opts){ .unrouted = chain_unrouted,
					.unrouted_arg = &h,
					.on_complete = chain_complete,
					.complete_arg = &h },
			BT_SUBS(&rec));
		h.bus = bus;
		bt_subscribe(bus, &rec,
			     (gs_bus_sub_opts){
				     .patterns = (const char *[]){ "follow.#",
								   NULL },
				     .queue_size = 8 });
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, publish_start, &h), 0);
		while (!atomic_load(&h.in_hook))
			bt_yield();
		atomic_store(&h.closing, true);
		GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
		void *ret;
		pthread_join(th, &ret);
		cr_expect_eq((gs_err)(uintptr_t)ret, GS_OK);
		cr_expect_eq(atomic_load(&h.follow_err), GS_OK,
			     "%s hook: the follow-up was refused: %s",
			     use_complete ? "on_complete" : "unrouted",
			     gs_strerror(atomic_load(&h.follow_err)));
		cr_expect_eq(atomic_load(&rec.n), 1);
		bt_end(bus, 2, BT_SUBS(&rec));
	}
}

static void *close_now(void *arg)
{
	return (void *)(uintptr_t)gs_bus_close(arg, GS_BUS_IMMEDIATE);
}

Test(bus_lifecycle, close_drains_every_accepted_event_by_default,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a, b;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&a, &b));
	a.spin = 3000;
	bt_subscribe(bus, &a,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 500 });
	bt_subscribe(bus, &b,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 500,
					.concurrency = 3 });
	for (uint64_t i = 1; i <= 500; i++)
		bt_publish(bus, "t", i);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&a.n), 500);
	cr_expect_eq(atomic_load(&b.n), 500);
	cr_expect_eq(bt_stats(&a).dropped, 0);
	cr_expect_eq(atomic_load(&bt_freed), 500, "freed before close returns");
	cr_expect_eq(gs_bus_publish(bus, "t", NULL, NULL, 0), GS_ECLOSED);
	cr_expect_eq(gs_bus_close(bus, GS_BUS_DRAIN), GS_OK, "idempotent");
	bt_conserved(&a);
	bt_conserved(&b);
	gs_bus_free(bus);
}

Test(bus_lifecycle, close_immediate_drops_the_queues_and_frees_each_once,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a, b;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&a, &b));
	a.gated = true;
	b.gated = true;
	bt_subscribe(bus, &a,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 100 });
	bt_subscribe(bus, &b,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 100,
					.concurrency = 2 });
	bt_publish(bus, "t", 1);
	wait_at_least(&a.holding, 1);
	for (uint64_t i = 2; i <= 60; i++)
		bt_publish(bus, "t", i);
	wait_at_least(&b.holding, 2);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, close_now, bus), 0);
	/* The close drops what waits in the queues, then waits for the
	 * handlers it cannot stop. The pool holds up to four: two running,
	 * and two that the stop cancels (dropped) or, if the pool saw its
	 * input end first, runs. */
	while (bt_stats(&a).dropped < 59 || bt_stats(&b).dropped < 56)
		bt_yield();
	atomic_store(&a.open, true);
	atomic_store(&b.open, true);
	void *ret;
	pthread_join(th, &ret);
	cr_expect_eq((gs_err)(uintptr_t)ret, GS_OK);
	gs_bus_sub_stats st = bt_stats(&b);
	cr_expect(st.handled >= 2 && st.handled <= 4, "%llu handled",
		  (unsigned long long)st.handled);
	cr_expect_eq(st.handled + st.dropped, 60);
	cr_expect_eq(atomic_load(&bt_freed), 60, "freed before close returns");
	bt_conserved(&a);
	bt_conserved(&b);
	gs_bus_free(bus);
}

Test(bus_lifecycle, an_immediate_unsubscribe_cuts_a_slow_drain_short,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&a));
	a.gated = true;
	bt_subscribe(bus, &a,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 100 });
	for (uint64_t i = 1; i <= 30; i++)
		bt_publish(bus, "t", i);
	wait_at_least(&a.holding, 1);
	/* The drain cannot finish while the handler is held... */
	cr_expect_eq(gs_bus_unsubscribe(a.sub, GS_BUS_DRAIN, 0), GS_ETIMEDOUT);
	cr_expect_eq(bt_stats(&a).dropped, 0);
	/* ...and a second call, immediate, drops what is still queued at
	 * once; the first batch the stage took is dropped too, but for the
	 * event in the handler, once the handler lets go. */
	uint64_t queued = bt_stats(&a).queue_depth;
	cr_expect_gt(queued, 0);
	cr_expect_eq(gs_bus_unsubscribe(a.sub, GS_BUS_IMMEDIATE, 0),
		     GS_ETIMEDOUT);
	cr_expect_eq(bt_stats(&a).dropped, queued);
	atomic_store(&a.open, true);
	cr_expect_eq(gs_bus_unsubscribe(a.sub, GS_BUS_DRAIN, GS_BUS_FOREVER),
		     GS_OK);
	cr_expect_eq(bt_stats(&a).handled, 1);
	cr_expect_eq(bt_stats(&a).dropped, 29);
	bt_conserved(&a);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&bt_freed), 30);
	gs_bus_free(bus);
}

/* A trace hook that, at its first DROP report, tries what waits for the
 * bus: a close, and an unsubscribe with a timeout. */
typedef struct waiting_hook {
	gs_bus *bus;
	gs_bus_sub *sub;
	_Atomic int reports;
	_Atomic gs_err close_err, unsubscribe_err;
} waiting_hook;

static void wait_from_hook(void *arg, gs_bus_trace_kind kind,
			   const gs_bus_envelope *env, const char *sub)
{
	(void)env, (void)sub;
	waiting_hook *h = arg;
	if (kind != GS_BUS_TRACE_DROP || atomic_fetch_add(&h->reports, 1))
		return;
	atomic_store(&h->close_err, gs_bus_close(h->bus, GS_BUS_DRAIN));
	atomic_store(&h->unsubscribe_err,
		     gs_bus_unsubscribe(h->sub, GS_BUS_DRAIN, 500));
}

/* The drops of an immediate unsubscribe are reported on the caller's
 * thread; the hook is a hook there too, and its waiting calls are refused
 * (the close waited for the drop that called it, for ever). */
Test(bus_lifecycle, a_drop_reported_on_the_callers_thread_refuses_waiting_calls,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a;
	static waiting_hook h;
	memset(&h, 0, sizeof h);
	gs_bus *bus = bt_begin(&(gs_bus_opts){ .trace = wait_from_hook,
					       .trace_arg = &h },
			       BT_SUBS(&a));
	h.bus = bus;
	a.gated = true;
	bt_subscribe(bus, &a,
		     (gs_bus_sub_opts){ .patterns = all, .queue_size = 16 });
	h.sub = a.sub;
	for (uint64_t i = 1; i <= 8; i++)
		bt_publish(bus, "t", i);
	wait_at_least(&a.holding, 1);
	cr_expect_eq(gs_bus_unsubscribe(a.sub, GS_BUS_IMMEDIATE, 0),
		     GS_ETIMEDOUT);
	cr_expect_gt(atomic_load(&h.reports), 0);
	cr_expect_eq(atomic_load(&h.close_err), GS_ETHREAD);
	cr_expect_eq(atomic_load(&h.unsubscribe_err), GS_ETHREAD);
	atomic_store(&a.open, true);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	bt_conserved(&a);
	cr_expect_eq(atomic_load(&bt_freed), 8);
	gs_bus_free(bus);
}

/* An immediate unsubscribe ends a failing event's retries (it fails, to
 * the dead letter) and drops the event its stage took and had not begun,
 * instead of running their whole backoff schedule; a retry it cut off in
 * its backoff is not counted. */
Test(bus_lifecycle, an_immediate_unsubscribe_stops_retries_and_drops_the_rest,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&a));
	a.fail_id = 1;
	bt_subscribe(bus, &a,
		     (gs_bus_sub_opts){ .patterns = all,
					.queue_size = 16,
					.max_retries = 4,
					.retry_backoff_ms = 2000 });
	GS_OK_OR_DIE(gs_bus_publish_batch(
		bus,
		(gs_bus_msg[]){ { "t", bt_payload(1, 0) },
				{ "t", bt_payload(2, 0) } },
		2,
		&(gs_bus_publish_opts){ .free_fn = bt_free,
					.timeout_ms = GS_BUS_FOREVER }));
	wait_at_least(&a.calls, 1);
	GS_OK_OR_DIE(
		gs_bus_unsubscribe(a.sub, GS_BUS_IMMEDIATE, GS_BUS_FOREVER));
	gs_bus_sub_stats st = bt_stats(&a);
	cr_expect_eq(st.failed, 1);
	cr_expect_eq(st.dropped, 1);
	cr_expect_eq(st.handled, 0);
	cr_expect_eq(atomic_load(&a.dead), 1);
	cr_expect_lt(atomic_load(&a.calls), 5, "the retries went on");
	/* Only retries that ran are counted: the cut came in a backoff. */
	cr_expect_eq(st.retried + 1, atomic_load(&a.calls), "%llu retried",
		     (unsigned long long)st.retried);
	bt_conserved(&a);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&bt_freed), 2);
	gs_bus_free(bus);
}

/* A handler that holds event 100 until `gates[0]`, and event 2 until
 * `gates[1]`, saying when each is held. */
static _Atomic bool held[2], gates[2];

static int hold_two(void *arg, const gs_bus_envelope *env)
{
	(void)arg;
	uint64_t id = ((const payload *)env->payload)->id;
	int k = id == 100 ? 0 : id == 2 ? 1 : -1;
	if (k >= 0) {
		atomic_store(&held[k], true);
		while (!atomic_load(&gates[k]))
			bt_yield();
	}
	return GS_BUS_DONE;
}

/* The first events of a batch are counted and complete (on_complete,
 * free_fn) before the batch ends: a slow handler does not hold back
 * their acknowledgement. */
Test(bus_lifecycle, an_event_completes_before_its_batch_ends,
     .timeout = GS_TEST_TIMEOUT)
{
	atomic_store(&bt_freed, 0);
	gs_bus *bus = bt_bus(NULL);
	gs_bus_sub *sub;
	GS_OK_OR_DIE(gs_bus_subscribe(bus,
				      &(gs_bus_sub_opts){ .patterns = all,
							  .handler = hold_two,
							  .queue_size = 40,
							  .blocking = true },
				      &sub));
	/* Event 100 holds the stage while 1..10 queue up behind it, so that
	 * it takes them as one batch. */
	bt_publish(bus, "t", 100);
	while (!atomic_load(&held[0]))
		bt_yield();
	for (uint64_t i = 1; i <= 10; i++)
		bt_publish(bus, "t", i);
	atomic_store(&gates[0], true);
	while (!atomic_load(&held[1]))
		bt_yield();
	gs_bus_sub_stats st;
	GS_OK_OR_DIE(gs_bus_sub_stats_get(sub, &st));
	cr_expect_eq(st.handled, 2, "event 1 waits for its batch");
	cr_expect_eq(atomic_load(&bt_freed), 2);
	atomic_store(&gates[1], true);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&bt_freed), 11);
	gs_bus_free(bus);
}

static int refuse_all(void *arg, const gs_bus_envelope *env)
{
	(void)arg;
	(void)env;
	return GS_BUS_DONE;
}

/* Expects code `want` and one more log line. */
#define REFUSED(bus_log, want, expr)                                           \
	do {                                                                   \
		int before_ = atomic_load(&(bus_log)->lines);                  \
		gs_err got_ = (expr);                                          \
		cr_expect_eq(got_, (want), "%s: %s", #expr,                    \
			     gs_strerror(got_));                               \
		cr_expect_gt(atomic_load(&(bus_log)->lines), before_,          \
			     "%s: no message", #expr);                         \
	} while (0)

/* Keeps the last message. */
static void keep_line(void *arg, const char *msg)
{
	snprintf(arg, 256, "%s", msg);
}

Test(bus_lifecycle, a_refused_pattern_or_topic_is_quoted_whole,
     .timeout = GS_TEST_TIMEOUT)
{
	char last[256] = "";
	gs_bus *bus;
	GS_OK_OR_DIE(gs_bus_new(
		&(gs_bus_opts){ .log = keep_line, .log_arg = last }, &bus));
	static const struct {
		const char *pattern, *said;
	} cases[] = {
		{ "a..b", "gs_bus_subscribe: pattern 'a..b' has an empty "
			  "word (at byte 2)" },
		{ ".a", "gs_bus_subscribe: pattern '.a' has an empty word" },
		{ "a.", "pattern 'a.' has an empty word (at byte 2)" },
		{ "", "pattern '' is empty" },
		{ "a.b#", "pattern 'a.b#' has '*' or '#' inside a word" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		gs_bus_sub_opts o = {
			.patterns = (const char *[]){ cases[i].pattern, NULL },
			.handler = refuse_all,
			.queue_size = 4,
		};
		cr_expect_eq(gs_bus_subscribe(bus, &o, NULL), GS_EINVAL);
		cr_expect_not_null(strstr(last, cases[i].said), "'%s': %s",
				   cases[i].pattern, last);
	}
	cr_expect_eq(
		gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){
				.name = "audit",
				.patterns = (const char *[]){ "x..", NULL },
				.handler = refuse_all,
				.queue_size = 4 },
			NULL),
		GS_EINVAL);
	cr_expect_not_null(strstr(last, "gs_bus_subscribe 'audit': pattern "
					"'x..' has an empty word"),
			   "%s", last);
	cr_expect_eq(gs_bus_publish(bus, "orders..created", NULL, NULL, 0),
		     GS_EINVAL);
	cr_expect_not_null(strstr(last, "topic 'orders..created' has an empty "
					"word (at byte 7)"),
			   "%s", last);
	gs_bus_free(bus);
}

Test(bus_lifecycle, bad_input_is_refused_with_a_code_and_a_message,
     .timeout = GS_TEST_TIMEOUT)
{
	bt_log log = { 0 };
	gs_bus *bus = bt_bus(
		&(gs_bus_opts){ .log = bt_log_line, .log_arg = &log });
	gs_bus_sub *sub = (gs_bus_sub *)&log; /* must stay untouched */
	gs_bus_sub *const before = sub;
	gs_bus_sub_opts ok = { .patterns = all,
			       .handler = refuse_all,
			       .queue_size = 4 };
	gs_bus_sub_opts o = ok;
	o.patterns = NULL;
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o = ok;
	o.patterns = (const char *[]){ "", NULL };
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o.patterns = (const char *[]){ "orders..created", NULL };
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o.patterns = (const char *[]){ "orders.*", "a#", NULL };
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o = ok;
	o.regexes = (const char *[]){ "user_(created", NULL };
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	/* Unbalanced the other way: invalid alone, whatever it is put in. */
	o.regexes = (const char *[]){ "x)|(y", NULL };
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o.regexes = (const char *[]){ "a)(b", NULL };
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o = ok;
	o.queue_size = 0;
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o.queue_size = GS_BUS_MAX_QUEUE + 1;
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o.queue_size = SIZE_MAX;
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o = ok;
	o.handler = NULL;
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o = ok;
	o.overflow = (gs_bus_overflow)7;
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, &o, &sub));
	o = ok;
	o.version = GS_BUS_SUB_OPTS_VERSION + 1;
	REFUSED(&log, GS_EVERSION, gs_bus_subscribe(bus, &o, &sub));
	REFUSED(&log, GS_EINVAL, gs_bus_subscribe(bus, NULL, &sub));
	cr_expect_eq(sub, before);

	REFUSED(&log, GS_EINVAL, gs_bus_publish(bus, NULL, NULL, NULL, 0));
	REFUSED(&log, GS_EINVAL, gs_bus_publish(bus, "", NULL, NULL, 0));
	REFUSED(&log, GS_EINVAL, gs_bus_publish(bus, "a..b", NULL, NULL, 0));
	REFUSED(&log, GS_EINVAL, gs_bus_publish(bus, "a.*", NULL, NULL, 0));
	REFUSED(&log, GS_EVERSION,
		gs_bus_publish_batch(
			bus, &(gs_bus_msg){ "a", NULL }, 1,
			&(gs_bus_publish_opts){
				.version = GS_BUS_PUBLISH_OPTS_VERSION + 1 }));
	/* With no bus there is no log hook: the line goes to stderr. */
	static const char *const no_bus[] = { "publish: NULL bus",
					      "gs_bus_subscribe: NULL bus" };
	for (int k = 0; k < 2; k++) {
		fflush(stderr);
		FILE *cap = tmpfile();
		int saved = dup(STDERR_FILENO);
		cr_assert(cap && saved >= 0);
		dup2(fileno(cap), STDERR_FILENO);
		gs_err e = k ? gs_bus_subscribe(NULL, &ok, &sub)
			     : gs_bus_publish(NULL, "a", NULL, NULL, 0);
		fflush(stderr);
		dup2(saved, STDERR_FILENO);
		close(saved);
		char line[256] = "";
		rewind(cap);
		cr_assert(fgets(line, sizeof line, cap), "nothing on stderr");
		fclose(cap);
		cr_expect_eq(e, GS_EINVAL);
		cr_expect(strstr(line, no_bus[k]), "%s", line);
	}
	cr_expect_eq(sub, before);
	size_t n;
	REFUSED(&log, GS_EINVAL, gs_bus_route_count(bus, "a.#", &n));

	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	REFUSED(&log, GS_ECLOSED, gs_bus_publish(bus, "a", NULL, NULL, 0));
	REFUSED(&log, GS_ECLOSED, gs_bus_subscribe(bus, &ok, &sub));
	cr_expect_eq(sub, before);
	gs_bus_free(bus);

	gs_bus *none = (gs_bus *)&log;
	cr_expect_eq(
		gs_bus_new(&(gs_bus_opts){ .version = GS_BUS_OPTS_VERSION + 1,
					   .log = bt_log_line,
					   .log_arg = &log },
			   &none),
		GS_EVERSION);
	cr_expect_eq(none, (gs_bus *)&log);
	/* Through the given log hook, not stderr. */
	REFUSED(&log, GS_EINVAL,
		gs_bus_new(&(gs_bus_opts){ .log = bt_log_line,
					   .log_arg = &log },
			   NULL));
	cr_expect_eq(gs_bus_unsubscribe(NULL, GS_BUS_DRAIN, 0), GS_EINVAL);
	cr_expect_eq(gs_bus_sub_stats_get(NULL, &(gs_bus_sub_stats){ 0 }),
		     GS_EINVAL);
	gs_bus_free(NULL);
}

/* A trace that counts each kind. */
typedef struct trace_count {
	_Atomic uint64_t kind[GS_BUS_TRACE_COMPLETE + 1];
	_Atomic uint64_t named; /* with a subscriber name where one is due */
	/* DELIVER reports that saw an envelope as gs_bus_current (the one
	 * handled before, possibly freed) */
	_Atomic uint64_t current_in_deliver;
} trace_count;

static void count_trace(void *arg, gs_bus_trace_kind kind,
			const gs_bus_envelope *env, const char *sub)
{
	(void)env;
	trace_count *t = arg;
	atomic_fetch_add(&t->kind[kind], 1);
	bool needs = kind == GS_BUS_TRACE_DELIVER ||
		     kind == GS_BUS_TRACE_RETRY || kind == GS_BUS_TRACE_FAIL ||
		     kind == GS_BUS_TRACE_DROP;
	if (needs == (sub != NULL))
		atomic_fetch_add(&t->named, 1);
	if (kind == GS_BUS_TRACE_DELIVER && gs_bus_current())
		atomic_fetch_add(&t->current_in_deliver, 1);
}

typedef struct unrouted_count {
	_Atomic uint64_t n;
} unrouted_count;

static void on_unrouted(void *arg, const gs_bus_envelope *env)
{
	(void)env;
	atomic_fetch_add(&((unrouted_count *)arg)->n, 1);
}

/* A topic with a byte that is not UTF-8, and a name cut inside a
 * character: the JSON stays valid (it carried the raw bytes). */
Test(bus_lifecycle, write_json_writes_valid_utf8_whatever_the_names,
     .timeout = GS_TEST_TIMEOUT)
{
	atomic_store(&bt_freed, 0);
	static bt_sub a;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&a));
	char name[80];
	memset(name, 'a', 62);
	strcpy(name + 62, "\xc3\xa9"); /* an e-acute across the cut */
	bt_subscribe(
		bus, &a,
		(gs_bus_sub_opts){ .name = name,
				   .patterns = (const char *[]){ "#", NULL },
				   .queue_size = 4 });
	bt_publish(bus, "raw\xff.caf\xc3\xa9", 1);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	char *json = bt_json(bus);
	cr_expect(strstr(json, "\"raw\\ufffd.caf\xc3\xa9\""), "%s", json);
	cr_expect(strstr(json, "aaa\\ufffd\""), "%s", json);
	free(json);
	gs_bus_free(bus);
}

Test(bus_lifecycle, write_json_reports_a_failed_write_as_io_error,
     .timeout = GS_TEST_TIMEOUT)
{
	FILE *full = fopen("/dev/full", "w");
	if (!full)
		cr_skip_test("no /dev/full here");
	gs_bus *bus;
	GS_OK_OR_DIE(gs_bus_new(NULL, &bus));
	cr_expect_eq(gs_bus_write_json(bus, full), GS_EIO);
	cr_expect_eq(gs_bus_write_json(bus, NULL), GS_EINVAL);
	cr_expect_eq(gs_bus_write_json(NULL, full), GS_EINVAL);
	fclose(full);
	gs_bus_free(bus);
}

Test(bus_lifecycle, counters_trace_and_json_tell_the_same_story,
     .timeout = GS_TEST_TIMEOUT)
{
	atomic_store(&bt_freed, 0);
	static trace_count tc;
	memset(&tc, 0, sizeof tc);
	unrouted_count un = { 0 };
	gs_bus *bus = bt_bus(&(gs_bus_opts){ .name = "shop",
					     .trace = count_trace,
					     .trace_arg = &tc,
					     .unrouted = on_unrouted,
					     .unrouted_arg = &un });
	static bt_sub audit, lossy;
	memset(&audit, 0, sizeof audit);
	memset(&lossy, 0, sizeof lossy);
	audit.fail_id = 4;
	lossy.gated = true;
	bt_subscribe(bus, &audit,
		     (gs_bus_sub_opts){
			     .name = "audit",
			     .patterns = (const char *[]){ "orders.#", NULL },
			     .queue_size = 16,
			     .max_retries = 1 });
	bt_subscribe(
		bus, &lossy,
		(gs_bus_sub_opts){
			.name = "lossy \"quoted\"",
			.patterns = (const char *[]){ "orders.paid", NULL },
			.queue_size = 1,
			.overflow = GS_BUS_DROP_NEWEST });
	bt_publish(bus, "orders.paid", 1);
	wait_at_least(&lossy.holding, 1);
	bt_publish(bus, "orders.paid", 2); /* lossy: dropped */
	bt_publish(bus, "orders.created", 3);
	bt_publish(bus, "orders.created", 4); /* audit: retried, fails */
	bt_publish(bus, "users.created", 5);  /* unrouted */
	atomic_store(&lossy.open, true);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&tc.kind[GS_BUS_TRACE_PUBLISH]), 5);
	cr_expect_eq(atomic_load(&tc.kind[GS_BUS_TRACE_UNROUTED]), 1);
	cr_expect_eq(atomic_load(&tc.kind[GS_BUS_TRACE_DELIVER]), 4 + 1);
	cr_expect_eq(atomic_load(&tc.kind[GS_BUS_TRACE_RETRY]), 1);
	cr_expect_eq(atomic_load(&tc.kind[GS_BUS_TRACE_FAIL]), 1);
	cr_expect_eq(atomic_load(&tc.kind[GS_BUS_TRACE_DROP]), 1);
	cr_expect_eq(atomic_load(&tc.kind[GS_BUS_TRACE_COMPLETE]), 5);
	uint64_t traced = 0;
	for (size_t k = 0; k <= GS_BUS_TRACE_COMPLETE; k++)
		traced += atomic_load(&tc.kind[k]);
	cr_expect_eq(atomic_load(&tc.named), traced);
	cr_expect_eq(atomic_load(&tc.current_in_deliver), 0);
	cr_expect_eq(atomic_load(&un.n), 1);
	gs_bus_topic_stats ts;
	GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, "orders.paid", &ts));
	cr_expect_eq(ts.published, 2);
	cr_expect_eq(ts.deliveries, 4);
	cr_expect_eq(ts.handled, 3);
	cr_expect_eq(ts.dropped, 1);
	GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, "nobody.ever", &ts));
	cr_expect_eq(ts.published, 0);
	char *json = bt_json(bus);
	cr_expect(strstr(json, "{\"bus\": \"shop\", \"published\": 5, "
			       "\"unrouted\": 1, \"completed\": 5, "
			       "\"in_flight\": 0"),
		  "%s", json);
	cr_expect(strstr(json, "{\"topic\": \"orders.created\", "
			       "\"published\": 2, \"deliveries\": 2, "
			       "\"unrouted\": 0, \"handled\": 1, "
			       "\"dropped\": 0, \"failed\": 1, "
			       "\"retried\": 1, \"in_flight\": 0}"),
		  "%s", json);
	cr_expect(strstr(json, "\"name\": \"lossy \\\"quoted\\\"\""), "%s",
		  json);
	cr_expect(strstr(json, "\"accepted\": 2, \"delivered\": 1, "
			       "\"handled\": 1, \"skipped\": 0, "
			       "\"failed\": 0, \"retried\": 0, "
			       "\"dropped\": 1, \"in_flight\": 0"),
		  "%s", json);
	free(json);
	bt_end(bus, 5, BT_SUBS(&audit, &lossy));
}
