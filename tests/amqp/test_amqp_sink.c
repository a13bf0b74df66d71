// SPDX-License-Identifier: MIT
/*
 * The RabbitMQ sink against the suite's broker: each event handed back
 * once, after its confirmation; unconfirmed publishes bounded; encode
 * errors and oversize messages refused; a message larger than a frame
 * going round through a source.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amqp_test.h"

#define N_EVENTS 5000

typedef struct out_ctx {
	_Atomic unsigned confirmed[N_EVENTS];
	_Atomic uint64_t ok, failed, einval;
	char *big; /* events >= BIG_ID publish this many bytes */
	size_t big_size;
	size_t fail_id;       /* encode refuses it (0: none)... */
	int fail_code;        /* ...with this code (0: GS_TEST_FAIL) */
	size_t long_key_id;   /* its routing key has 300 bytes (0: none) */
	size_t lost_id;       /* it goes to an exchange that does not exist */
	size_t big_header_id; /* one header larger than a frame (0: none) */
	unsigned max_reconnects;
	bool may_fail; /* the run may end with the sink's failure */
	const char *queue;
	char queue_name[96];
	/* Ids and headers every message gets (NULL: none). */
	const gs_amqp_out *props;
	log_keep *log; /* the sink's log (NULL: stderr) */
} out_ctx;

#define BIG_ID 1000000

static int encode(void *arg, void *event, gs_amqp_out *out)
{
	out_ctx *c = arg;
	static _Thread_local char body[32];
	uintptr_t id = (uintptr_t)event;
	static char long_key[301];
	if (c->fail_id && id == c->fail_id)
		return c->fail_code ? c->fail_code : GS_TEST_FAIL;
	*out = (gs_amqp_out){ .routing_key = c->queue };
	if (c->long_key_id && id == c->long_key_id) {
		memset(long_key, 'k', 300);
		out->routing_key = long_key;
	}
	if (c->lost_id && id == c->lost_id)
		out->exchange = "gs-test-no-such-exchange";
	if (id >= BIG_ID) {
		out->body = c->big;
		out->size = c->big_size;
	} else {
		snprintf(body, sizeof body, "%zu", (size_t)id);
		out->body = body;
		out->size = strlen(body);
	}
	if (c->big_header_id && id == c->big_header_id) {
		static char *value;
		static gs_amqp_header h;
		if (!value) {
			value = malloc(300000);
			memset(value, 'v', 299999);
			value[299999] = '\0';
			h = (gs_amqp_header){ .key = "big", .value = value };
		}
		out->headers = &h;
		out->n_headers = 1;
	}
	if (c->props) {
		out->message_id = c->props->message_id;
		out->correlation_id = c->props->correlation_id;
		out->app_id = c->props->app_id;
		out->headers = c->props->headers;
		out->n_headers = c->props->n_headers;
	}
	return GS_OK;
}

static void confirmed(void *arg, void *event, int status)
{
	out_ctx *c = arg;
	uintptr_t id = (uintptr_t)event;
	if (id < N_EVENTS)
		atomic_fetch_add(&c->confirmed[id], 1);
	atomic_fetch_add(status ? &c->failed : &c->ok, 1);
	if (status == GS_EINVAL)
		atomic_fetch_add(&c->einval, 1);
}

/* A context for a new queue named for the test. */
static out_ctx *new_ctx(const char *what)
{
	need_broker();
	out_ctx *c = calloc(1, sizeof *c);
	broker_name(c->queue_name, sizeof c->queue_name, what);
	c->queue = c->queue_name;
	return c;
}

/* Publishes events[0..n) through a sink into `queue`; returns its stats. */
static gs_amqp_sink_stats run_sink(out_ctx *c, void **events, size_t n,
				   size_t max_unconfirmed)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_stage *src;
	GS_OK_OR_DIE(gs_from_array(p, events, n, NULL, &src));
	gs_amqp_sink *sink;
	gs_amqp_conn_opts conn = test_conn();
	conn.max_reconnects = c->max_reconnects;
	if (c->log) {
		conn.log = log_keep_fn;
		conn.log_arg = c->log;
	}
	GS_OK_OR_DIE(gs_amqp_sink_new(
		p,
		&(gs_amqp_sink_opts){ .conn = conn,
				      .declare_queue = c->queue,
				      .max_unconfirmed = max_unconfirmed,
				      .max_message_size = 4u << 20,
				      .encode = encode,
				      .confirmed = confirmed,
				      .arg = c },
		NULL, &sink));
	GS_OK_OR_DIE(gs_subscribe(gs_amqp_sink_stage(sink), src,
				  &(gs_sub_opts){ .max_demand = 64 }, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	gs_err end = gs_pipeline_wait(p);
	cr_assert(end == GS_OK || (c->may_fail && end == GS_ECLOSED), "%s",
		  gs_strerror(end));
	gs_amqp_sink_stats st;
	gs_amqp_sink_stats_get(sink, &st);
	gs_pipeline_free(p);
	gs_amqp_sink_free(sink);
	return st;
}

static void **ids(size_t first, size_t n)
{
	void **v = malloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = (void *)(uintptr_t)(first + i);
	return v;
}

Test(amqp_sink, hands_back_every_event_once_after_its_confirmation,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("sink");
	void **ev = ids(0, N_EVENTS);
	gs_amqp_sink_stats st = run_sink(c, ev, N_EVENTS, 0);
	for (size_t i = 0; i < N_EVENTS; i++)
		cr_assert_eq(atomic_load(&c->confirmed[i]), 1,
			     "event %zu: %u (ok %lu failed %lu)", i,
			     atomic_load(&c->confirmed[i]),
			     (unsigned long)atomic_load(&c->ok),
			     (unsigned long)atomic_load(&c->failed));
	cr_assert_eq(atomic_load(&c->ok), N_EVENTS);
	cr_assert_eq(st.confirmed, N_EVENTS);
	cr_assert_eq(st.unconfirmed, 0);
	/* Confirmed means in the queue. */
	cr_assert_eq(queue_ready(c->queue), N_EVENTS);
	_Atomic unsigned *in = calloc(N_EVENTS, sizeof *in);
	drain_queue(c->queue, in, N_EVENTS);
	for (size_t i = 0; i < N_EVENTS; i++)
		cr_assert_eq(atomic_load(&in[i]), 1);
	free(in);
	free(ev);
	free(c);
}

Test(amqp_sink, unconfirmed_publishes_never_exceed_the_bound,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("sink");
	void **ev = ids(0, 2000);
	gs_amqp_sink_stats st = run_sink(c, ev, 2000, 8);
	cr_assert_leq(st.max_unconfirmed_seen, 8);
	cr_assert_gt(st.max_unconfirmed_seen, 0);
	cr_assert_eq(atomic_load(&c->ok), 2000);
	cr_assert_eq(queue_ready(c->queue), 2000);
	free(ev);
	free(c);
}

Test(amqp_sink, encode_errors_and_oversize_messages_come_back_unpublished,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("sink");
	c->fail_id = 7;
	c->big_size = (4u << 20) + 1; /* over the sink's max_message_size */
	c->big = calloc(1, c->big_size);
	void *ev[20];
	for (size_t i = 0; i < 19; i++)
		ev[i] = (void *)(uintptr_t)(i + 1);
	ev[19] = (void *)(uintptr_t)BIG_ID;
	run_sink(c, ev, 20, 0);
	cr_assert_eq(atomic_load(&c->ok), 18);
	cr_assert_eq(atomic_load(&c->failed), 2);
	cr_assert_eq(atomic_load(&c->einval), 1);
	cr_assert_eq(atomic_load(&c->confirmed[7]), 1);
	cr_assert_eq(queue_ready(c->queue), 18);
	free(c->big);
	free(c);
}

/* Refusals are the event's own: an encode error of any sign, and a
 * routing key longer than AMQP's 255 bytes (which the client library
 * cannot encode), fail that event only, on the same connection. Both were
 * taken for a lost connection: the sink reconnected and republished until
 * it gave up, failing every event. */
Test(amqp_sink, a_refused_event_fails_alone_and_keeps_the_connection,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("sink");
	c->fail_id = 7;
	c->fail_code = -1;
	c->long_key_id = 9;
	c->max_reconnects = 3;
	void **ev = ids(1, 20);
	gs_amqp_sink_stats st = run_sink(c, ev, 20, 0);
	cr_expect_eq(atomic_load(&c->ok), 18);
	cr_expect_eq(atomic_load(&c->failed), 2);
	cr_expect_eq(atomic_load(&c->einval), 1, "the long key");
	for (size_t i = 1; i <= 20; i++)
		cr_expect_eq(atomic_load(&c->confirmed[i]), 1, "event %zu", i);
	cr_expect_eq(st.connects, 1);
	cr_expect_eq(queue_ready(c->queue), 18);
	free(ev);
	free(c);
}

/* Headers that do not fit in a frame fail their event alone, on the same
 * connection: rabbitmq-c sent the publish's method frame before finding
 * the header frame too large, and the broker closed the connection (505),
 * so every other event in flight went again. */
Test(amqp_sink, properties_larger_than_a_frame_fail_alone,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("sink");
	c->big_header_id = 5;
	c->log = calloc(1, sizeof *c->log);
	void **ev = ids(1, 10);
	gs_amqp_sink_stats st = run_sink(c, ev, 10, 0);
	cr_expect_eq(atomic_load(&c->ok), 9);
	cr_expect_eq(atomic_load(&c->einval), 1);
	for (size_t i = 1; i <= 10; i++)
		cr_expect_eq(atomic_load(&c->confirmed[i]), 1, "event %zu", i);
	cr_expect_eq(st.connects, 1);
	cr_expect_eq(st.republished, 0);
	cr_expect(log_has(c->log, "larger than a frame"), "%s", c->log->all);
	cr_expect_eq(queue_ready(c->queue), 9);
	free(ev);
	free(c->log);
	free(c);
}

/* Publishes 1..n with event `lost_id` to an exchange that does not exist:
 * the broker closes the channel over it. It fails alone with GS_EINVAL,
 * on the one connection, and every other event is confirmed once. It was
 * taken for a lost connection: the sink reconnected and published them
 * all again until it gave up, failing the good ones with the bad. */
static void one_refused_in(size_t n, size_t lost_id, size_t max_unconfirmed)
{
	out_ctx *c = new_ctx("sink");
	c->lost_id = lost_id;
	c->log = calloc(1, sizeof *c->log);
	void **ev = ids(1, n);
	gs_amqp_sink_stats st = run_sink(c, ev, n, max_unconfirmed);
	cr_expect_eq(atomic_load(&c->ok), n - 1);
	cr_expect_eq(atomic_load(&c->failed), 1);
	cr_expect_eq(atomic_load(&c->einval), 1);
	for (size_t i = 1; i <= n; i++)
		cr_expect_eq(atomic_load(&c->confirmed[i]), 1, "event %zu", i);
	cr_expect_eq(st.connects, 1);
	cr_expect_eq(st.unconfirmed, 0);
	cr_expect(log_has(c->log, "refused an event"), "%s", c->log->all);
	/* Each good one is in the queue: those in flight with the bad one
	 * may be there twice (published again, at least once). */
	_Atomic unsigned *got = calloc(n + 1, sizeof *got);
	drain_queue(c->queue, got, n + 1);
	for (size_t i = 1; i <= n; i++)
		cr_expect(i == lost_id ? got[i] == 0 : got[i] >= 1,
			  "event %zu is in the queue %u times", i,
			  (unsigned)got[i]);
	free(got);
	free(ev);
	free(c->log);
	free(c);
}

Test(amqp_sink, a_publish_the_broker_refuses_fails_alone,
     .timeout = GS_TEST_TIMEOUT)
{
	one_refused_in(10, 3, 0);
}

Test(amqp_sink, a_refused_publish_among_many_in_flight_fails_alone,
     .timeout = GS_TEST_TIMEOUT)
{
	one_refused_in(2000, 1000, 256);
}

/* An idle sink with heartbeats keeps its connection: it reads it at half
 * their period, so that heartbeats are sent. It made no call while idle,
 * and the broker closed it: the next publish failed and reconnected. */
Test(amqp_sink, an_idle_connection_with_heartbeats_stays_open,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("sink");
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_stage *push;
	GS_OK_OR_DIE(gs_push_producer(p, NULL, &push));
	gs_amqp_conn_opts conn = test_conn();
	conn.heartbeat = 1;
	gs_amqp_sink *sink;
	GS_OK_OR_DIE(gs_amqp_sink_new(
		p,
		&(gs_amqp_sink_opts){ .conn = conn,
				      .declare_queue = c->queue,
				      .encode = encode,
				      .confirmed = confirmed,
				      .arg = c },
		NULL, &sink));
	GS_OK_OR_DIE(gs_subscribe(gs_amqp_sink_stage(sink), push, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	void *first = (void *)(uintptr_t)1, *second = (void *)(uintptr_t)2;
	GS_OK_OR_DIE(gs_push(push, &first, 1, -1));
	while (!atomic_load(&c->ok))
		usleep(1000);
	sleep(4); /* the broker gives up after two missed heartbeats */
	GS_OK_OR_DIE(gs_push(push, &second, 1, -1));
	GS_OK_OR_DIE(gs_push_close(push));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	gs_amqp_sink_stats st;
	gs_amqp_sink_stats_get(sink, &st);
	cr_expect_eq(atomic_load(&c->ok), 2);
	cr_expect_eq(st.connects, 1, "%llu connections",
		     (unsigned long long)st.connects);
	gs_pipeline_free(p);
	gs_amqp_sink_free(sink);
	free(c);
}

/* Consumes `q` through Broadway with `handle` until *done is set. */
static void consume_until(const char *q,
			  int (*handle)(void *, size_t, gs_message *),
			  _Atomic bool *done)
{
	const gs_broadway_ops ops = { .handle_message = handle };
	gs_amqp_source_opts o = { .conn = test_conn(), .queue = q };
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, NULL,
		&(gs_broadway_opts){
			.producer = gs_amqp_broadway_producer(&o, 1),
			.processors = { .concurrency = 1 } },
		&bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	while (!atomic_load(done))
		usleep(2000);
	gs_broadway_stop(bw);
	gs_broadway_free(bw);
}

static _Atomic size_t big_seen_size;
static _Atomic bool big_seen;

static int check_big(void *arg, size_t processor, gs_message *m)
{
	(void)arg;
	(void)processor;
	const gs_amqp_meta *meta = m->metadata;
	const unsigned char *b = m->data;
	bool same = true;
	for (size_t i = 0; i < meta->size; i++)
		same &= b[i] == (unsigned char)(i * 7);
	atomic_store(&big_seen_size, same ? meta->size : 1);
	atomic_store(&big_seen, true);
	return GS_OK;
}

Test(amqp_sink, a_message_larger_than_a_frame_goes_round_whole,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("big");
	c->big_size = 1u << 20; /* eight frames of 128 KiB */
	c->big = malloc(c->big_size);
	for (size_t i = 0; i < c->big_size; i++)
		c->big[i] = (char)(unsigned char)(i * 7);
	void *ev[1] = { (void *)(uintptr_t)BIG_ID };
	run_sink(c, ev, 1, 0);
	cr_assert_eq(atomic_load(&c->ok), 1);
	consume_until(c->queue, check_big, &big_seen);
	cr_assert_eq(atomic_load(&big_seen_size), c->big_size);
	cr_assert_eq(queue_ready(c->queue), 0);
	free(c->big);
	free(c);
}

static const gs_amqp_header props_headers[] = {
	{ "x-origin", "billing" },
	{ "x-empty", "" },
};

/* Whether the message's metadata held every property sent (checked on
 * the processor's thread, asserted on the test's). */
static _Atomic bool props_seen, props_ok;

static bool same(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static int check_props(void *arg, size_t processor, gs_message *m)
{
	(void)arg;
	(void)processor;
	const gs_amqp_meta *meta = m->metadata;
	bool ok = same(meta->message_id, "m-7") &&
		  same(meta->correlation_id, "c-7") &&
		  same(meta->app_id, "app-7") && meta->n_headers == 2;
	for (size_t i = 0; ok && i < 2; i++)
		ok = same(meta->headers[i].key, props_headers[i].key) &&
		     same(meta->headers[i].value, props_headers[i].value);
	atomic_store(&props_ok, ok);
	atomic_store(&props_seen, true);
	return GS_OK;
}

Test(amqp_sink, ids_and_string_headers_reach_the_source_metadata,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("props");
	c->props = &(gs_amqp_out){ .message_id = "m-7",
				   .correlation_id = "c-7",
				   .app_id = "app-7",
				   .headers = props_headers,
				   .n_headers = 2 };
	void *ev[1] = { (void *)(uintptr_t)7 };
	run_sink(c, ev, 1, 0);
	cr_assert_eq(atomic_load(&c->ok), 1);
	consume_until(c->queue, check_props, &props_seen);
	cr_assert(atomic_load(&props_ok));
	free(c);
}

Test(amqp_sink, too_many_headers_come_back_unpublished,
     .timeout = GS_TEST_TIMEOUT)
{
	out_ctx *c = new_ctx("hdrs");
	c->log = calloc(1, sizeof *c->log);
	static const gs_amqp_header h[GS_AMQP_MAX_HEADERS + 1] = { 0 };
	c->props = &(gs_amqp_out){ .headers = h,
				   .n_headers = GS_AMQP_MAX_HEADERS + 1 };
	void *ev[1] = { (void *)(uintptr_t)3 };
	gs_amqp_sink_stats st = run_sink(c, ev, 1, 0);
	cr_assert_eq(st.failed, 1);
	cr_assert_eq(atomic_load(&c->einval), 1);
	cr_assert(log_has(c->log, "headers"));
	cr_assert_eq(queue_ready(c->queue), 0);
	free(c->log);
	free(c);
}

Test(amqp_sink, bad_options_are_refused)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_amqp_sink *k = (gs_amqp_sink *)&k;
	cr_assert_eq(gs_amqp_sink_new(p, &(gs_amqp_sink_opts){ 0 }, NULL, &k),
		     GS_EINVAL);
	log_keep l = { 0 };
	cr_assert_eq(
		gs_amqp_sink_new(
			p,
			&(gs_amqp_sink_opts){
				.version = GS_AMQP_SINK_OPTS_VERSION + 1,
				.conn = { .log = log_keep_fn, .log_arg = &l } },
			NULL, &k),
		GS_EVERSION, "the version before the missing encode");
	cr_assert(log_has(&l, "newer than this library"), "%s", l.all);
	cr_assert_eq(k, (gs_amqp_sink *)&k);
	gs_amqp_sink_free(NULL);
	gs_pipeline_free(p);
}
