// SPDX-License-Identifier: MIT
/*
 * Routing: AMQP topic-exchange patterns and anchored regexes against
 * tables of topics, malformed patterns and topics refused, and routes that
 * follow subscriptions as they come and go.
 */
#include "bus_test.h"

typedef struct row {
	const char *pattern, *topic;
	bool match;
} row;

/* RabbitMQ's topic exchange semantics: "*" exactly one word, "#" zero or
 * more. */
static const row amqp_table[] = {
	{ "orders.created", "orders.created", true },
	{ "orders.created", "orders.paid", false },
	{ "orders.created", "orders.created.eu", false },
	{ "orders.*", "orders.created", true },
	{ "orders.*", "orders", false },
	{ "orders.*", "orders.created.eu", false },
	{ "*.created", "orders.created", true },
	{ "*.created", "created", false },
	{ "*.*", "a.b", true },
	{ "*.*", "a", false },
	{ "*.*", "a.b.c", false },
	{ "orders.#", "orders", true },
	{ "orders.#", "orders.created", true },
	{ "orders.#", "orders.created.eu", true },
	{ "orders.#", "order", false },
	{ "orders.#", "users.orders", false },
	{ "#", "a", true },
	{ "#", "a.b.c", true },
	{ "#.created", "created", true },
	{ "#.created", "orders.created", true },
	{ "#.created", "a.b.created", true },
	{ "#.created", "orders.paid", false },
	{ "#.created", "created.orders", false },
	{ "a.#.z", "a.z", true },
	{ "a.#.z", "a.b.z", true },
	{ "a.#.z", "a.b.c.z", true },
	{ "a.#.z", "a.z.z", true },
	{ "a.#.z", "a.b.c", false },
	{ "a.*.#", "a", false },
	{ "a.*.#", "a.b", true },
	{ "a.*.#", "a.b.c.d", true },
	{ "#.#", "a", true },
	{ "#.a.*", "x.a.b", true },
	{ "#.a.*", "a.b", true },
	{ "#.a.*", "x.a", false },
	{ "#.a.*", "a.a.a", true },
	{ "a.#.b.#.c", "a.x.b.y.c", true },
	{ "a.#.b.#.c", "a.b.c", true },
	{ "a.#.b.#.c", "a.b.x.y.c", true },
	{ "a.#.b.#.c", "a.x.c", false },
	{ "a.#.b.#.c", "a.b.c.d", false },
	{ "user_created", "user_created", true },
	{ "user_created", "user_deleted", false },
};

Test(bus_routing, amqp_patterns_match_as_a_topic_exchange_does)
{
	for (size_t i = 0; i < sizeof amqp_table / sizeof *amqp_table; i++) {
		const row *r = &amqp_table[i];
		bool m = !r->match;
		cr_expect_eq(gs_bus_pattern_matches(r->pattern, r->topic, &m),
			     GS_OK, "'%s' vs '%s'", r->pattern, r->topic);
		cr_expect_eq(m, r->match, "'%s' vs '%s': %s", r->pattern,
			     r->topic, m ? "matched" : "did not match");
	}
}

Test(bus_routing, malformed_patterns_and_topics_are_refused)
{
	static const char *const patterns[] = { "",   "a..b", ".a",  "a.",
						"a*", "#b",   "a.*x" };
	static const char *const topics[] = { "",    "a..b", ".a", "a.",
					      "a.*", "a.#",  "*" };
	bool m = true;
	for (size_t i = 0; i < sizeof patterns / sizeof *patterns; i++)
		cr_expect_eq(gs_bus_pattern_matches(patterns[i], "a.b", &m),
			     GS_EINVAL, "pattern '%s'", patterns[i]);
	for (size_t i = 0; i < sizeof topics / sizeof *topics; i++)
		cr_expect_eq(gs_bus_pattern_matches("#", topics[i], &m),
			     GS_EINVAL, "topic '%s'", topics[i]);
	char longest[257];
	memset(longest, 'a', 256);
	longest[256] = '\0';
	cr_expect_eq(gs_bus_pattern_matches("#", longest, &m), GS_EINVAL);
	longest[255] = '\0';
	cr_expect_eq(gs_bus_pattern_matches("#", longest, &m), GS_OK);
	cr_expect_eq(gs_bus_pattern_matches(NULL, "a", &m), GS_EINVAL);
	cr_expect_eq(gs_bus_pattern_matches("a", NULL, &m), GS_EINVAL);
	cr_expect_eq(gs_bus_pattern_matches("a", "a", NULL), GS_EINVAL);
}

/* Which of the topics each subscription must receive. */
typedef struct expect_sub {
	const char *const *patterns;
	const char *const *regexes;
	const char *receives; /* one letter per topic: y or n */
} expect_sub;

static const char *const topics[] = {
	"orders.created",    "orders.created.eu",
	"orders.paid",       "users.created",
	"user_created",      "user_deleted",
	"audit.orders.paid", "orders",
};

#define N_TOPICS (sizeof topics / sizeof *topics)

static const expect_sub subs[] = {
	{ (const char *[]){ "orders.*", NULL }, NULL, "ynynnnnn" },
	{ (const char *[]){ "orders.#", NULL }, NULL, "yyynnnny" },
	{ (const char *[]){ "#.created", NULL }, NULL, "ynnynnnn" },
	{ (const char *[]){ "#.paid", "users.*", NULL }, NULL, "nnyynnyn" },
	{ NULL, (const char *[]){ "user_(created|deleted)", NULL },
	  "nnnnyynn" },
	/* Anchored: "orders" alone, not every topic that contains it. */
	{ NULL, (const char *[]){ "orders", NULL }, "nnnnnnny" },
	{ NULL, (const char *[]){ "orders\\.[a-z]+", NULL }, "ynynnnnn" },
	{ (const char *[]){ "user_created", NULL },
	  (const char *[]){ ".*\\.eu", NULL }, "nynnynnn" },
	{ (const char *[]){ "#", NULL }, NULL, "yyyyyyyy" },
};

#define N_SUBS (sizeof subs / sizeof *subs)

Test(bus_routing, each_topic_reaches_the_subscriptions_that_match_it,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub rec[N_SUBS];
	memset(rec, 0, sizeof rec);
	gs_bus *bus = bt_begin(NULL, 0, NULL);
	for (size_t i = 0; i < N_SUBS; i++)
		bt_subscribe(bus, &rec[i],
			     (gs_bus_sub_opts){ .patterns = subs[i].patterns,
						.regexes = subs[i].regexes,
						.queue_size = 64 });
	for (size_t t = 0; t < N_TOPICS; t++) {
		size_t want = 0, n = SIZE_MAX;
		for (size_t i = 0; i < N_SUBS; i++)
			want += subs[i].receives[t] == 'y';
		GS_OK_OR_DIE(gs_bus_route_count(bus, topics[t], &n));
		cr_expect_eq(n, want, "%s: %zu routes, expected %zu", topics[t],
			     n, want);
		bt_publish(bus, topics[t], t + 1);
	}
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	for (size_t i = 0; i < N_SUBS; i++) {
		for (size_t t = 0; t < N_TOPICS; t++)
			cr_expect_eq(atomic_load(&rec[i].seen[t + 1]),
				     subs[i].receives[t] == 'y',
				     "subscription %zu, topic %s", i,
				     topics[t]);
		bt_conserved(&rec[i]);
	}
	gs_bus_free(bus);
	cr_expect_eq(atomic_load(&bt_freed), N_TOPICS);
}

/* A regex matches the whole topic, and its groups are the ones it wrote:
 * a back-reference counts from its own first group. */
Test(bus_routing, a_regex_matches_whole_topics_with_its_own_groups,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a, b;
	gs_bus *bus = bt_begin(NULL, 0, NULL);
	bt_subscribe(
		bus, &a,
		(gs_bus_sub_opts){
			.regexes = (const char *[]){ "([a-z]+)\\.\\1", NULL },
			.queue_size = 8 });
	bt_subscribe(bus, &b,
		     (gs_bus_sub_opts){
			     .regexes = (const char *[]){ "orders|users\\.eu",
							  NULL },
			     .queue_size = 8 });
	static const struct {
		const char *topic;
		size_t routes;
	} cases[] = {
		{ "ab.ab", 1 },     { "ab.abc", 0 },   { "xab.ab", 0 },
		{ "orders", 1 },    { "users.eu", 1 }, { "orders.eu", 0 },
		{ "my.orders", 0 }, { "users", 0 },    { "orders.orders", 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t n = SIZE_MAX;
		GS_OK_OR_DIE(gs_bus_route_count(bus, cases[i].topic, &n));
		cr_expect_eq(n, cases[i].routes, "%s: %zu routes, expected %zu",
			     cases[i].topic, n, cases[i].routes);
	}
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	gs_bus_free(bus);
}

Test(bus_routing, routes_follow_subscriptions_as_they_come_and_go,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a, b;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&a, &b));
	size_t n;
	/* Cached once with no subscription at all... */
	bt_publish(bus, "orders.created", 1);
	GS_OK_OR_DIE(gs_bus_route_count(bus, "orders.created", &n));
	cr_expect_eq(n, 0);
	/* ...then recomputed as subscriptions arrive and leave. */
	bt_subscribe(bus, &a,
		     (gs_bus_sub_opts){
			     .patterns = (const char *[]){ "orders.*", NULL },
			     .queue_size = 16 });
	bt_publish(bus, "orders.created", 2);
	bt_subscribe(bus, &b,
		     (gs_bus_sub_opts){
			     .patterns = (const char *[]){ "#.created", NULL },
			     .queue_size = 16 });
	GS_OK_OR_DIE(gs_bus_route_count(bus, "orders.created", &n));
	cr_expect_eq(n, 2);
	bt_publish(bus, "orders.created", 3);
	GS_OK_OR_DIE(gs_bus_unsubscribe(a.sub, GS_BUS_DRAIN, GS_BUS_FOREVER));
	GS_OK_OR_DIE(gs_bus_route_count(bus, "orders.created", &n));
	cr_expect_eq(n, 1);
	bt_publish(bus, "orders.created", 4);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&a.n), 2);
	cr_expect_eq(a.ids[0], 2);
	cr_expect_eq(a.ids[1], 3);
	cr_expect_eq(atomic_load(&b.n), 2);
	cr_expect_eq(b.ids[0], 3);
	cr_expect_eq(b.ids[1], 4);
	gs_bus_topic_stats ts;
	GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, "orders.created", &ts));
	cr_expect_eq(ts.published, 4);
	cr_expect_eq(ts.unrouted, 1);
	cr_expect_eq(ts.deliveries, 4);
	cr_expect_eq(ts.handled, 4);
	cr_expect_eq(ts.in_flight, 0);
	bt_end(bus, 4, BT_SUBS(&a, &b));
}

Test(bus_routing, topics_beyond_the_table_are_routed_all_the_same,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a;
	gs_bus *bus = bt_begin(&(gs_bus_opts){ .max_topics = 2 }, BT_SUBS(&a));
	bt_subscribe(
		bus, &a,
		(gs_bus_sub_opts){
			.patterns = (const char *[]){ "user.*.login", NULL },
			.queue_size = 64 });
	char topic[64];
	for (uint64_t i = 1; i <= 40; i++) {
		snprintf(topic, sizeof topic, "user.%llu.%s",
			 (unsigned long long)i, i % 2 ? "login" : "logout");
		bt_publish(bus, topic, i);
	}
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_expect_eq(atomic_load(&a.n), 20);
	for (size_t i = 0; i < 20; i++)
		cr_expect_eq(a.ids[i], 2 * i + 1);
	gs_bus_topic_stats ts;
	GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, "user.40.logout", &ts));
	cr_expect_eq(ts.published, 0, "not in the table: counted as other");
	/* In the JSON the 38 beyond the table are counted apart from the
	 * named topics, so no topic's name can pass for them. */
	char *json = bt_json(bus);
	cr_expect(strstr(json, "\"other_topics\": {\"published\": 38, "
			       "\"deliveries\": 19,"),
		  "%s", json);
	free(json);
	bt_end(bus, 40, BT_SUBS(&a));
}

/* A batch refused for a bad topic after new good ones leaves nothing in
 * the table: a later topic still gets its place (the refused batch's
 * topics took it, never published, and showed in the JSON). */
Test(bus_routing, a_refused_batch_leaves_no_topic_in_the_table,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a;
	gs_bus *bus = bt_begin(&(gs_bus_opts){ .max_topics = 2 }, BT_SUBS(&a));
	bt_subscribe(
		bus, &a,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "#", NULL },
				   .queue_size = 64 });
	gs_bus_msg bad[3] = { { .topic = "t1" },
			      { .topic = "t2" },
			      { .topic = "bad..topic" } };
	cr_expect_eq(gs_bus_publish_batch(bus, bad, 3, NULL), GS_EINVAL);
	bt_publish(bus, "t3", 1);
	bt_publish(bus, "t4", 2);
	gs_bus_topic_stats ts;
	GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, "t3", &ts));
	cr_expect_eq(ts.published, 1, "t3 is in the table");
	GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, "t4", &ts));
	cr_expect_eq(ts.published, 1, "so is t4");
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	char *json = bt_json(bus);
	cr_expect_null(strstr(json, "\"t1\""), "%s", json);
	cr_expect_null(strstr(json, "\"t2\""), "%s", json);
	free(json);
	bt_end(bus, 2, BT_SUBS(&a));
}

/* Taking refused topics out of the table keeps every other one found:
 * many topics in a small table (so that probes collide and wrap), then
 * refused batches of new topics mixed with published ones (which stay),
 * then each old topic published again. */
Test(bus_routing, topics_refused_out_of_a_crowded_table_leave_the_rest,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a;
	gs_bus *bus = bt_begin(&(gs_bus_opts){ .max_topics = 40 }, BT_SUBS(&a));
	bt_subscribe(
		bus, &a,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "#", NULL },
				   .queue_size = 256 });
	char names[64][16];
	for (int i = 0; i < 64; i++)
		snprintf(names[i], sizeof names[i], "k.%d", i);
	uint64_t id = 0;
	for (int i = 0; i < 20; i++)
		bt_publish(bus, names[i], ++id);
	for (int round = 0; round < 4; round++) {
		gs_bus_msg batch[12];
		for (int k = 0; k < 11; k++)
			batch[k] = (gs_bus_msg){
				.topic = k % 2 ? names[(round * 5 + k) % 20]
					       : names[20 + (round * 6 + k) % 44]
			};
		batch[11] = (gs_bus_msg){ .topic = "bad..topic" };
		cr_expect_eq(gs_bus_publish_batch(bus, batch, 12, NULL),
			     GS_EINVAL);
	}
	for (int i = 0; i < 20; i++)
		bt_publish(bus, names[i], ++id);
	for (int i = 0; i < 64; i++) {
		gs_bus_topic_stats ts;
		GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, names[i], &ts));
		cr_expect_eq(ts.published, i < 20 ? 2 : 0, "%s", names[i]);
	}
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	bt_end(bus, id, BT_SUBS(&a));
}

/* Envelopes on interned topics point at the table's names; those beyond
 * the table carry copies: the caller's buffers are scribbled over as soon
 * as each publish returns, and every handler still reads its own topic. */
Test(bus_routing, every_envelope_keeps_its_topic_after_the_publish_returns,
     .timeout = GS_TEST_TIMEOUT)
{
	static bt_sub a;
	gs_bus *bus = bt_begin(&(gs_bus_opts){ .max_topics = 3 }, BT_SUBS(&a));
	bt_subscribe(bus, &a,
		     (gs_bus_sub_opts){
			     .patterns = (const char *[]){ "user.#", NULL },
			     .queue_size = 64 });
	char topics[4][32];
	gs_bus_msg batch[4];
	for (uint64_t id = 1; id <= 16; id += 4) {
		for (size_t k = 0; k < 4; k++) {
			snprintf(topics[k], sizeof topics[k], "user.%llu.login",
				 (unsigned long long)(id + k));
			batch[k] = (gs_bus_msg){ topics[k],
						 bt_payload(id + k, 0) };
		}
		GS_OK_OR_DIE(gs_bus_publish_batch(
			bus, batch, 4,
			&(gs_bus_publish_opts){ .free_fn = bt_free,
						.timeout_ms = GS_BUS_FOREVER }));
		memset(topics, 'x', sizeof topics);
	}
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_assert_eq(atomic_load(&a.n), 16);
	for (size_t i = 0; i < 16; i++) {
		char want[32];
		snprintf(want, sizeof want, "user.%llu.login",
			 (unsigned long long)a.ids[i]);
		cr_expect_str_eq(a.envs[i].topic, want);
	}
	bt_end(bus, 16, BT_SUBS(&a));
}

/* A batch's completion is counted on each of its topics: a batch over a
 * few topics, one over more topics than the bus sums per batch, with
 * payloads to free and without, with drops and without. */
Test(bus_routing, topic_counters_add_up_for_batches_over_many_topics,
     .timeout = GS_TEST_TIMEOUT)
{
	enum { TOPICS = 20 };
	static bt_sub a, b, c;
	gs_bus *bus = bt_begin(NULL, BT_SUBS(&a, &b, &c));
	bt_subscribe(
		bus, &a,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "t.*", NULL },
				   .queue_size = 4 * TOPICS });
	bt_subscribe(
		bus, &c,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "t.1", NULL },
				   .queue_size = 4 * TOPICS });
	/* Holds its first event until the end: every later one is dropped. */
	b.gated = true;
	bt_subscribe(
		bus, &b,
		(gs_bus_sub_opts){ .patterns = (const char *[]){ "t.0", NULL },
				   .queue_size = 1,
				   .overflow = GS_BUS_DROP_NEWEST });
	static char names[TOPICS][8];
	for (size_t i = 0; i < TOPICS; i++)
		snprintf(names[i], sizeof names[i], "t.%zu", i);
	/* Rounds of (first topic, topics, events per topic, payloads). */
	static const struct {
		size_t first, topics, each;
		bool payloads;
	} rounds[] = { { 1, 2, 2, true },
		       { 0, TOPICS, 2, true },
		       { 3, 2, 4, false },
		       { 0, 1, 4, false } };
	uint64_t published[TOPICS] = { 0 }, id = 0;
	gs_bus_msg msgs[2 * TOPICS];
	for (size_t r = 0; r < sizeof rounds / sizeof *rounds; r++) {
		size_t n = rounds[r].topics * rounds[r].each;
		for (size_t i = 0; i < n; i++) {
			size_t t = rounds[r].first + i % rounds[r].topics;
			published[t]++;
			msgs[i] = (gs_bus_msg){ names[t],
						rounds[r].payloads
							? bt_payload(++id, 0)
							: NULL };
		}
		GS_OK_OR_DIE(gs_bus_publish_batch(
			bus, msgs, n,
			&(gs_bus_publish_opts){
				.free_fn = rounds[r].payloads ? bt_free : NULL,
				.timeout_ms = GS_BUS_FOREVER }));
	}
	atomic_store(&b.open, true);
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	for (size_t t = 0; t < TOPICS; t++) {
		gs_bus_topic_stats ts;
		GS_OK_OR_DIE(gs_bus_topic_stats_get(bus, names[t], &ts));
		uint64_t dropped = t == 0 ? published[0] - 1 : 0;
		uint64_t deliveries = published[t] * (t <= 1 ? 2 : 1);
		cr_expect_eq(ts.published, published[t], "%s", names[t]);
		cr_expect_eq(ts.deliveries, deliveries, "%s", names[t]);
		cr_expect_eq(ts.dropped, dropped, "%s", names[t]);
		cr_expect_eq(ts.handled, deliveries - dropped, "%s", names[t]);
		cr_expect_eq(ts.in_flight, 0, "%s", names[t]);
	}
	cr_expect_eq(bt_stats(&b).dropped, published[0] - 1);
	bt_end(bus, id, BT_SUBS(&a, &b, &c));
}
