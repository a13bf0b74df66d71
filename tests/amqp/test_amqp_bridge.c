// SPDX-License-Identifier: MIT
/*
 * The bus bridge against the suite's broker: two buses bridged through one
 * exchange deliver every matching event once, in order, with its ids and
 * source carried; patterns filter as on the bus both ways; a bridge never
 * hears itself and two never bounce events; a slow local subscriber keeps
 * the rest in the broker's queue; freeing forwards what was accepted and
 * gives back what was not; a broker that cannot be reached fails forwards,
 * counted; bad options are refused with a message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amqp_test.h"

#ifndef GS_TEST_BRIDGE_EVENTS
#define GS_TEST_BRIDGE_EVENTS 1000
#endif
#define N GS_TEST_BRIDGE_EVENTS

/* What a bus's receiving subscriber saw. Written on bus and bridge
 * threads, read by the test: atomics throughout (the broker between two
 * threads is no synchronisation TSan can see). */
typedef struct seen {
	_Atomic unsigned counts[N];
	_Atomic size_t total, unordered, bad;
	_Atomic long last;
	/* The handler waits while this is set (a slow subscriber). */
	_Atomic bool hold;
	/* Each envelope's source must be this (NULL: not checked). */
	char want_source[256];
	/* Each id's correlation must be correlation_base + id (0: not
	 * checked). */
	uint64_t correlation_base;
} seen;

static int count(void *arg, const gs_bus_envelope *env)
{
	seen *s = arg;
	while (atomic_load(&s->hold))
		usleep(1000);
	long id = strtol(env->payload, NULL, 10);
	if (id < 0 || id >= N) {
		atomic_fetch_add(&s->bad, 1);
		return GS_BUS_DONE;
	}
	atomic_fetch_add(&s->counts[id], 1);
	if (id < atomic_load(&s->last))
		atomic_fetch_add(&s->unordered, 1);
	atomic_store(&s->last, id);
	if ((s->want_source[0] && strcmp(env->source, s->want_source)) ||
	    (s->correlation_base &&
	     env->correlation_id != s->correlation_base + (uint64_t)id))
		atomic_fetch_add(&s->bad, 1);
	atomic_fetch_add(&s->total, 1);
	return GS_BUS_DONE;
}

static gs_bus *new_bus(void)
{
	gs_bus *bus;
	GS_OK_OR_DIE(gs_bus_new(NULL, &bus));
	return bus;
}

static gs_bus_sub *listen(gs_bus *bus, seen *s, const char *pattern,
			  size_t queue_size)
{
	gs_bus_sub *sub;
	GS_OK_OR_DIE(gs_bus_subscribe(
		bus,
		&(gs_bus_sub_opts){
			.patterns = (const char *const[]){ pattern, NULL },
			.handler = count,
			.arg = s,
			.queue_size = queue_size,
			.blocking = true },
		&sub));
	return sub;
}

static void publish_n(gs_bus *bus, const char *topic, size_t first, size_t n)
{
	for (size_t i = first; i < first + n; i++) {
		char *body = malloc(24);
		snprintf(body, 24, "%zu", i);
		GS_OK_OR_DIE(
			gs_bus_publish(bus, topic, body, free, GS_BUS_FOREVER));
	}
}

static gs_amqp_bridge_stats stats(const gs_amqp_bridge *br)
{
	gs_amqp_bridge_stats st;
	GS_OK_OR_DIE(gs_amqp_bridge_stats_get(br, &st));
	return st;
}

static void wait_total(seen *s, size_t want)
{
	while (atomic_load(&s->total) < want)
		usleep(2000);
}

/* A bridge on the suite's broker; one that receives is returned once
 * its queue is bound (messages sent before would not reach it). */
static gs_amqp_bridge *bridge(gs_bus *bus, gs_amqp_bridge_opts o)
{
	gs_amqp_conn_opts conn = test_conn();
	conn.log = o.conn.log;
	conn.log_arg = o.conn.log_arg;
	o.conn = conn;
	gs_amqp_bridge *br;
	GS_OK_OR_DIE(gs_amqp_bridge_new(bus, &o, &br));
	while (o.receive && !stats(br).in_connects)
		usleep(2000);
	return br;
}

static const char *const all[] = { "#", NULL };

/* Two buses, a and b, with a forwarding bridge on a and a receiving one
 * on b, over an exchange and a queue named for the test. */
typedef struct duo {
	char x[96], q[96];
	gs_bus *a, *b;
	gs_amqp_bridge *out, *in;
} duo;

static void duo_init(duo *p)
{
	need_broker();
	*p = (duo){ .a = new_bus(), .b = new_bus() };
	broker_name(p->x, sizeof p->x, "x");
	broker_name(p->q, sizeof p->q, "b");
}

/* b's bridge, receiving from p->q (by default every topic). */
static void duo_in(duo *p, gs_amqp_bridge_opts o)
{
	o.exchange = p->x;
	o.queue = p->q;
	if (!o.receive)
		o.receive = all;
	p->in = bridge(p->b, o);
}

/* a's bridge, forwarding (by default every topic). */
static void duo_out(duo *p, gs_amqp_bridge_opts o)
{
	o.exchange = p->x;
	if (!o.forward)
		o.forward = all;
	p->out = bridge(p->a, o);
}

/* Frees the bridges (out first: it forwards what it holds) and buses. */
static void duo_fini(duo *p)
{
	gs_amqp_bridge_free(p->out);
	gs_amqp_bridge_free(p->in);
	p->out = p->in = NULL;
	gs_bus_free(p->a);
	gs_bus_free(p->b);
}

/* Once every forward is settled and every event received is published
 * (the receiving bus may see an event before its confirmation reaches the
 * sender, or after: the broker confirms once it has queued it). */
static void check_out_in(const duo *p, size_t n)
{
	gs_amqp_bridge_stats so = stats(p->out), si = stats(p->in);
	while (so.confirmed + so.failed < n || si.published < n) {
		usleep(2000);
		so = stats(p->out);
		si = stats(p->in);
	}
	cr_assert_eq(so.forwarded, n);
	cr_assert_eq(so.confirmed, n);
	cr_assert_eq(so.failed, 0);
	cr_assert_eq(si.received, n);
	cr_assert_eq(si.published, n);
}

static void check_once(const seen *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&s->counts[i]), 1, "event %zu: %u", i,
			     atomic_load(&s->counts[i]));
}

/* --- two buses, one exchange ------------------------------------------- */

/* Bus A's "seed" handler publishes order i with correlation 5000 + i,
 * so that the forwarded envelope has a causation (the seed's id), which
 * it records. */
static _Atomic uint64_t seed_ids[N];

static int seed(void *arg, const gs_bus_envelope *env)
{
	gs_bus *bus = arg;
	size_t i = strtoul(env->payload, NULL, 10);
	atomic_store(&seed_ids[i], env->id);
	char *body = malloc(24);
	snprintf(body, 24, "%zu", i);
	gs_err err = gs_bus_publish_batch(
		bus, &(gs_bus_msg){ "orders.created", body }, 1,
		&(gs_bus_publish_opts){ .source = "shop",
					.free_fn = free,
					.correlation_id = 5000 + i,
					.timeout_ms = GS_BUS_FOREVER });
	return err;
}

/* B's decoder checks the message id and causation header against what
 * A's seed handler recorded; bad ones are counted in `ids_bad`. */
static _Atomic size_t ids_bad;
static char a_id[GS_AMQP_BRIDGE_MAX_ID + 1];

static int decode_checked(void *arg, const gs_amqp_meta *meta, const void *body,
			  void **payload, gs_bus_free_fn *free_fn)
{
	(void)arg;
	char *s = strndup(body, meta->size);
	size_t i = strtoul(s, NULL, 10);
	const char *cause = NULL;
	for (size_t h = 0; h < meta->n_headers; h++)
		if (!strcmp(meta->headers[h].key, "x-gs-causation-id"))
			cause = meta->headers[h].value;
	size_t id_len = strlen(a_id);
	if (i >= N || !cause ||
	    strtoull(cause, NULL, 10) != atomic_load(&seed_ids[i]) ||
	    strncmp(meta->message_id, a_id, id_len) ||
	    meta->message_id[id_len] != ':' || strcmp(meta->app_id, a_id))
		atomic_fetch_add(&ids_bad, 1);
	*payload = s;
	*free_fn = free;
	return GS_OK;
}

Test(amqp_bridge, two_buses_get_every_event_once_in_order_with_its_ids,
     .timeout = GS_TEST_TIMEOUT)
{
	duo p;
	duo_init(&p);
	seen *s = calloc(1, sizeof *s);
	s->last = -1;
	s->correlation_base = 5000;
	const char *const orders[] = { "orders.#", NULL };
	listen(p.b, s, "orders.#", 64);
	duo_in(&p, (gs_amqp_bridge_opts){ .receive = orders,
					  .decode = decode_checked });
	duo_out(&p, (gs_amqp_bridge_opts){ .forward = orders });
	snprintf(a_id, sizeof a_id, "%s", gs_amqp_bridge_id(p.out));
	snprintf(s->want_source, sizeof s->want_source, "amqp:%s:shop", a_id);
	GS_OK_OR_DIE(gs_bus_subscribe(
		p.a,
		&(gs_bus_sub_opts){
			.patterns = (const char *const[]){ "seed", NULL },
			.handler = seed,
			.arg = p.a,
			.queue_size = 64,
			.blocking = true },
		NULL));
	publish_n(p.a, "seed", 0, N);
	wait_total(s, N);
	check_out_in(&p, N);
	duo_fini(&p);
	check_once(s, N);
	cr_assert_eq(atomic_load(&s->unordered), 0);
	cr_assert_eq(atomic_load(&s->bad), 0, "sources or correlations");
	cr_assert_eq(atomic_load(&ids_bad), 0, "message ids or causations");
	free(s);
}

Test(amqp_bridge, with_concurrency_every_event_still_arrives_once,
     .timeout = GS_TEST_TIMEOUT)
{
	duo p;
	duo_init(&p);
	seen *s = calloc(1, sizeof *s);
	listen(p.b, s, "#", 64);
	duo_in(&p, (gs_amqp_bridge_opts){ 0 });
	duo_out(&p, (gs_amqp_bridge_opts){ .concurrency = 4 });
	publish_n(p.a, "orders.created", 0, N);
	wait_total(s, N);
	check_out_in(&p, N);
	duo_fini(&p);
	check_once(s, N);
	free(s);
}

/* --- patterns --------------------------------------------------------- */

/* Records the topics a bus received, in order. */
typedef struct topics {
	pthread_mutex_t lock;
	char all[2048];
	_Atomic bool end; /* "*.end" arrived */
} topics;

static int record_topic(void *arg, const gs_bus_envelope *env)
{
	topics *t = arg;
	pthread_mutex_lock(&t->lock);
	size_t len = strlen(t->all);
	snprintf(t->all + len, sizeof t->all - len, "%s ", env->topic);
	pthread_mutex_unlock(&t->lock);
	if (strstr(env->topic, ".end"))
		atomic_store(&t->end, true);
	return GS_BUS_DONE;
}

/* Publishes `sent` on a, bridged to b through `forward` and `receive`,
 * and records what b's "#" subscriber saw in *t. The last topic, which
 * both sides must match, ends it: events are forwarded and received in
 * order. */
static void route(const char *const *forward, const char *const *receive,
		  const char *const *sent, topics *t)
{
	duo p;
	duo_init(&p);
	GS_OK_OR_DIE(
		gs_bus_subscribe(p.b,
				 &(gs_bus_sub_opts){ .patterns = all,
						     .handler = record_topic,
						     .arg = t,
						     .queue_size = 64 },
				 NULL));
	duo_in(&p, (gs_amqp_bridge_opts){ .receive = receive });
	duo_out(&p, (gs_amqp_bridge_opts){ .forward = forward });
	for (size_t i = 0; sent[i]; i++)
		GS_OK_OR_DIE(gs_bus_publish(p.a, sent[i], NULL, NULL, 0));
	while (!atomic_load(&t->end))
		usleep(2000);
	duo_fini(&p);
}

static const char *const all_topics[] = {
	"orders.created", "orders.created.eu", "audit", "audit.a.b",
	"billing.paid",   "orders.x.end",      NULL
};

Test(amqp_bridge, only_topics_the_forward_patterns_match_are_forwarded,
     .timeout = GS_TEST_TIMEOUT)
{
	topics t = { .lock = PTHREAD_MUTEX_INITIALIZER };
	route((const char *const[]){ "orders.*", "audit.#", "*.*.end", NULL },
	      all, all_topics, &t);
	cr_assert_str_eq(t.all, "orders.created audit audit.a.b orders.x.end ");
}

Test(amqp_bridge, only_messages_the_receive_patterns_match_are_received,
     .timeout = GS_TEST_TIMEOUT)
{
	topics t = { .lock = PTHREAD_MUTEX_INITIALIZER };
	route(all,
	      (const char *const[]){ "*.created.*", "billing.#", "#.end",
				     NULL },
	      all_topics, &t);
	cr_assert_str_eq(t.all, "orders.created.eu billing.paid orders.x.end ");
}

/* --- loops -------------------------------------------------------------- */

Test(amqp_bridge, two_bridges_on_one_exchange_both_ways_never_echo,
     .timeout = GS_TEST_TIMEOUT)
{
	/* Both bridges forward and receive: p.out on a (queue qa), p.in on
	 * b (queue p.q). */
	duo p;
	duo_init(&p);
	char qa[96];
	broker_name(qa, sizeof qa, "a");
	seen *sa = calloc(1, sizeof *sa), *sb = calloc(1, sizeof *sb);
	listen(p.a, sa, "#", 64);
	listen(p.b, sb, "#", 64);
	duo_in(&p, (gs_amqp_bridge_opts){ .forward = all });
	duo_out(&p, (gs_amqp_bridge_opts){ .receive = all, .queue = qa });
	publish_n(p.a, "orders.created", 0, N);
	/* A hears its own N and drops them; B publishes them and does not
	 * send them back. */
	while (stats(p.out).skipped_own < N || stats(p.in).skipped_bridged < N)
		usleep(2000);
	wait_total(sb, N);
	gs_amqp_bridge_stats sta = stats(p.out), stb = stats(p.in);
	cr_assert_eq(sta.forwarded, N);
	cr_assert_eq(sta.received, N);
	cr_assert_eq(sta.published, 0);
	cr_assert_eq(stb.forwarded, 0);
	cr_assert_eq(stb.published, N);
	cr_assert_eq(atomic_load(&sa->total), N); /* its own, once */
	duo_fini(&p);
	check_once(sa, N);
	check_once(sb, N);
	free(sa);
	free(sb);
}

/* --- back-pressure, drains ------------------------------------------- */

#define SLOW_QUEUE 4
#define PREFETCH 16
#define SLOW_EVENTS 300

Test(amqp_bridge, a_slow_subscriber_keeps_the_rest_in_the_broker_queue,
     .timeout = GS_TEST_TIMEOUT)
{
	duo p;
	duo_init(&p);
	seen *s = calloc(1, sizeof *s);
	atomic_store(&s->hold, true);
	gs_bus_sub *slow = listen(p.b, s, "#", SLOW_QUEUE);
	duo_in(&p, (gs_amqp_bridge_opts){ .prefetch = PREFETCH });
	duo_out(&p, (gs_amqp_bridge_opts){ 0 });
	publish_n(p.a, "orders.created", 0, SLOW_EVENTS);
	while (stats(p.out).confirmed < SLOW_EVENTS)
		usleep(2000);
	/* The subscriber's queue fills, the bridge's publish waits, and
	 * the broker holds all but the prefetch: wait for that state. */
	while (stats(p.in).published < SLOW_QUEUE)
		usleep(2000);
	wait_ready(p.q, SLOW_EVENTS - SLOW_QUEUE - PREFETCH);
	gs_amqp_bridge_stats st = stats(p.in);
	gs_bus_sub_stats ss;
	gs_bus_sub_stats_get(slow, &ss);
	cr_assert_eq(ss.in_flight, SLOW_QUEUE);
	cr_assert_eq(st.published, SLOW_QUEUE);
	cr_assert_leq(st.received - st.published, 1, "in hand: %" PRIu64,
		      st.received - st.published);
	atomic_store(&s->hold, false);
	wait_total(s, SLOW_EVENTS);
	check_out_in(&p, SLOW_EVENTS);
	duo_fini(&p);
	check_once(s, SLOW_EVENTS);
	free(s);
}

Test(amqp_bridge, freeing_forwards_every_event_the_bus_accepted_for_it,
     .timeout = GS_TEST_TIMEOUT)
{
	duo p;
	duo_init(&p);
	/* b's bridge only declares and binds the queue, then goes. */
	duo_in(&p, (gs_amqp_bridge_opts){ 0 });
	gs_amqp_bridge_free(p.in);
	p.in = NULL;
	duo_out(&p, (gs_amqp_bridge_opts){ .queue_size = N });
	publish_n(p.a, "orders.created", 0, N);
	gs_amqp_bridge_free(p.out);
	p.out = NULL;
	cr_assert_eq(queue_ready(p.q), N);
	_Atomic unsigned *in = calloc(N, sizeof *in);
	cr_assert_eq(drain_queue(p.q, in, N), N);
	for (size_t i = 0; i < N; i++)
		cr_assert_eq(atomic_load(&in[i]), 1);
	free(in);
	duo_fini(&p);
}

Test(amqp_bridge, messages_a_closed_bus_cannot_take_go_back_to_the_queue,
     .timeout = GS_TEST_TIMEOUT)
{
	duo p;
	duo_init(&p);
	log_keep *l = calloc(1, sizeof *l);
	duo_in(&p, (gs_amqp_bridge_opts){
			   .conn = { .log = log_keep_fn, .log_arg = l } });
	GS_OK_OR_DIE(gs_bus_close(p.b, GS_BUS_DRAIN));
	duo_out(&p, (gs_amqp_bridge_opts){ 0 });
	publish_n(p.a, "orders.created", 0, 50);
	while (!log_has(l, "the bus is closed"))
		usleep(2000);
	gs_amqp_bridge_stats st = stats(p.in);
	duo_fini(&p);
	cr_assert_eq(st.published, 0);
	/* Given back (nacked, or unacked when the connection closed). */
	wait_ready(p.q, 50);
	free(l);
}

/* --- failures and bad input ------------------------------------------- */

static _Atomic int dead_letters;

static void on_dead(void *arg, const gs_bus_envelope *env, int error)
{
	(void)arg;
	(void)env;
	if (error == GS_ECLOSED)
		atomic_fetch_add(&dead_letters, 1);
}

Test(amqp_bridge, forwards_a_broker_never_takes_fail_and_are_counted,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_bus *a = new_bus();
	log_keep *l = calloc(1, sizeof *l);
	gs_amqp_bridge_opts o = {
		.conn = { .port = 1, /* nothing listens there */
			  .backoff_min = 1,
			  .backoff_max = 1,
			  .max_reconnects = 1,
			  .log = log_keep_fn,
			  .log_arg = l },
		.exchange = "nowhere",
		.forward = (const char *const[]){ "#", NULL },
		.dead_letter = on_dead,
	};
	gs_amqp_bridge *out;
	GS_OK_OR_DIE(gs_amqp_bridge_new(a, &o, &out));
	publish_n(a, "orders.created", 0, 10);
	while (atomic_load(&dead_letters) < 10)
		usleep(2000);
	gs_amqp_bridge_stats st = stats(out);
	cr_assert_eq(st.forwarded, 10);
	cr_assert_eq(st.failed, 10);
	cr_assert_eq(st.confirmed, 0);
	cr_assert(log_has(l, "not forwarded"));
	gs_amqp_bridge_free(out);
	gs_bus_free(a);
	free(l);
}

static gs_err try_new(gs_bus *bus, gs_amqp_bridge_opts o, log_keep *l)
{
	o.conn.log = log_keep_fn;
	o.conn.log_arg = l;
	gs_amqp_bridge *br = (gs_amqp_bridge *)&br;
	gs_err err = gs_amqp_bridge_new(bus, &o, &br);
	cr_assert_eq(br, (gs_amqp_bridge *)&br, "out written on failure");
	return err;
}

Test(amqp_bridge, bad_options_are_refused_with_a_message)
{
	gs_bus *bus = new_bus();
	log_keep *l = calloc(1, sizeof *l);
	gs_amqp_bridge_opts ok = { .exchange = "x", .forward = all };
	char long_id[GS_AMQP_BRIDGE_MAX_ID + 2];
	memset(long_id, 'a', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	struct {
		gs_amqp_bridge_opts o;
		const char *why;
	} bad[] = {
		{ { .forward = all }, "no exchange" },
		{ { .exchange = "x" }, "no patterns" },
		{ { .exchange = "x", .forward = (const char *const[]){ NULL } },
		  "no patterns" },
		{ { .exchange = "x",
		    .forward = (const char *const[]){ "a..b", NULL } },
		  "malformed forward" },
		{ { .exchange = "x",
		    .forward = (const char *const[]){ "a*", NULL } },
		  "malformed forward" },
		{ { .exchange = "x",
		    .receive = (const char *const[]){ "#x", NULL },
		    .queue = "q" },
		  "malformed receive" },
		{ { .exchange = "x", .receive = all }, "without a queue" },
		{ { .exchange = "x", .forward = all, .id = "a b" }, "bad id" },
		{ { .exchange = "x", .forward = all, .id = long_id },
		  "bad id" },
		{ { .exchange = "x", .forward = all, .id = "" }, "bad id" },
		{ { .exchange = "x",
		    .forward = all,
		    .concurrency = GS_POOL_MAX_WORKERS + 1 },
		  "concurrency" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(try_new(bus, bad[i].o, l), GS_EINVAL, "case %zu",
			     i);
		cr_assert(log_has(l, bad[i].why), "case %zu: %s", i, l->all);
	}
	cr_assert_eq(try_new(NULL, ok, l), GS_EINVAL);
	cr_assert(log_has(l, "NULL bus"));
	cr_assert_eq(gs_amqp_bridge_new(bus, NULL, NULL), GS_EINVAL);
	cr_assert_eq(gs_amqp_bridge_new(bus, &ok, NULL), GS_EINVAL);
	gs_amqp_bridge_opts v = ok;
	v.version = GS_AMQP_BRIDGE_OPTS_VERSION + 1;
	cr_assert_eq(try_new(bus, v, l), GS_EVERSION);
	cr_assert(log_has(l, "version"));
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	cr_assert_eq(try_new(bus, ok, l), GS_ECLOSED);
	cr_assert_eq(gs_amqp_bridge_stats_get(NULL, NULL), GS_EINVAL);
	cr_assert_null(gs_amqp_bridge_id(NULL));
	gs_amqp_bridge_free(NULL);
	gs_bus_free(bus);
	free(l);
}
