// SPDX-License-Identifier: MIT
/*
 * The RabbitMQ source against the suite's broker: every message delivered
 * and acked, prefetch following demand, retries counted by x-death then
 * dead-lettered, dedup by message id, a drain during load, and bad input
 * (wrong port, refused login, missing queue) reported, never a crash.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "amqp_test.h"

#ifndef GS_TEST_AMQP_MESSAGES
#define GS_TEST_AMQP_MESSAGES 5000
#endif

#define MAX_IDS 100000

typedef struct seen {
	_Atomic unsigned counts[MAX_IDS];
	_Atomic uint64_t handled;
	size_t fail_every; /* fail ids divisible by this (0: none) */
	/* Blocks handle_message until set (blocking processors). */
	_Atomic bool hold;
	_Atomic uint64_t deaths_max;
} seen;

static int on_message(void *arg, size_t processor, gs_message *m)
{
	(void)processor;
	seen *s = arg;
	size_t id = body_id(m);
	const gs_amqp_meta *meta = m->metadata;
	while (atomic_load(&s->hold))
		usleep(1000);
	if (id < MAX_IDS)
		atomic_fetch_add(&s->counts[id], 1);
	if (meta->deaths > atomic_load(&s->deaths_max))
		atomic_store(&s->deaths_max, meta->deaths);
	atomic_fetch_add(&s->handled, 1);
	if (s->fail_every && id % s->fail_every == 0)
		return GS_TEST_FAIL;
	return GS_OK;
}

static const gs_broadway_ops ops = { .handle_message = on_message };

static gs_broadway *consume(seen *s, const gs_amqp_source_opts *o,
			    size_t concurrency, bool blocking)
{
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, s,
		&(gs_broadway_opts){ .producer = gs_amqp_broadway_producer(o, 1),
				     .processors = { .concurrency = concurrency,
						     .blocking = blocking } },
		&bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	return bw;
}

Test(amqp_source, delivers_every_message_once_and_acks_it,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_AMQP_MESSAGES;
	char q[96];
	filled_queue(q, sizeof q, "q", n);
	seen *s = calloc(1, sizeof *s);
	gs_amqp_source_opts o = { .conn = test_conn(),
				  .queue = q,
				  .on_failure = GS_AMQP_REQUEUE };
	gs_broadway *bw = consume(s, &o, 2, false);
	wait_at_least(&s->handled, n);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	gs_broadway_stats st;
	gs_broadway_stats_get(bw, &st);
	gs_broadway_free(bw); /* the source's free sends the last acks */
	cr_assert_eq(st.successful, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&s->counts[i]), 1, "id %zu: %u", i,
			     atomic_load(&s->counts[i]));
	cr_assert_eq(queue_ready(q), 0);
	free(s);
}

Test(amqp_source, prefetch_follows_the_demand, .timeout = GS_TEST_TIMEOUT)
{
	char q[96];
	filled_queue(q, sizeof q, "q", 100);
	seen *s = calloc(1, sizeof *s);
	atomic_store(&s->hold, true);
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_amqp_source *src;
	GS_OK_OR_DIE(gs_amqp_source_new(
		p,
		&(gs_amqp_source_opts){ .conn = test_conn(),
					.queue = q,
					.on_failure = GS_AMQP_REQUEUE },
		NULL, &src));
	/* A stream that takes 20 and is not read: the demand is 20. */
	gs_stage *out;
	GS_OK_OR_DIE(gs_stream(p, &(gs_stage_opts){ .buffer_size = 1 }, &out));
	GS_OK_OR_DIE(gs_subscribe(out, gs_amqp_source_stage(src),
				  &(gs_sub_opts){ .max_demand = 20 }, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* The broker hands over the prefetch and holds the rest. */
	wait_ready(q, 80);
	gs_amqp_source_stats st;
	do {
		usleep(1000);
		gs_amqp_source_stats_get(src, &st);
	} while (st.delivered < 20);
	cr_assert_eq(st.delivered, 20);
	cr_assert_eq(queue_ready(q), 80);
	/* A second stream, while the source consumes: the prefetch rises
	 * with the demand pending now (the second's 30, and what the first
	 * asked again), and the broker, which counts the 20 the first holds
	 * against it, hands over more. */
	gs_stage *more;
	GS_OK_OR_DIE(gs_stream(p, &(gs_stage_opts){ .buffer_size = 1 }, &more));
	GS_OK_OR_DIE(gs_subscribe(more, gs_amqp_source_stage(src),
				  &(gs_sub_opts){ .max_demand = 30 }, NULL));
	while (queue_ready(q) >= 80)
		usleep(10000);
	/* Taking them (and acking) lets the rest come. */
	size_t got = 0;
	for (size_t turn = 0; got < 100; turn++) {
		void *ev[16];
		size_t k;
		gs_err err = gs_stream_next(turn % 2 ? more : out, ev, 16, &k,
					    10);
		if (err == GS_ETIMEDOUT)
			continue;
		GS_OK_OR_DIE(err);
		for (size_t i = 0; i < k; i++) {
			gs_message *m = ev[i];
			m->acknowledger->ack(m->ack_ref, &m, 1, NULL, 0);
		}
		got += k;
	}
	gs_pipeline_stop(p, GS_STOP_NOW);
	gs_amqp_source_free(src);
	gs_pipeline_free(p);
	cr_assert_eq(queue_ready(q), 0);
	free(s);
}

/* After a stop the messages a stream still holds are the puller's to
 * settle, as amqp.h says: pulled and cancelled, they go back to the queue,
 * and the source's free has nothing left to wait for. */
Test(amqp_source, a_stream_settles_what_it_holds_after_a_stop,
     .timeout = GS_TEST_TIMEOUT)
{
	char q[96];
	filled_queue(q, sizeof q, "held", 50);
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_amqp_source *src;
	GS_OK_OR_DIE(gs_amqp_source_new(
		p,
		&(gs_amqp_source_opts){ .conn = test_conn(),
					.queue = q,
					.on_failure = GS_AMQP_REQUEUE,
					.drain_timeout = 60000 },
		NULL, &src));
	gs_stage *out;
	GS_OK_OR_DIE(gs_stream(p, NULL, &out));
	GS_OK_OR_DIE(gs_subscribe(out, gs_amqp_source_stage(src),
				  &(gs_sub_opts){ .max_demand = 10 }, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* Stopped once the stream holds them: what is still in the
	 * source's stage goes back to the queue by the stop itself. */
	gs_stats ss;
	do {
		usleep(1000);
		GS_OK_OR_DIE(gs_stage_stats(out, &ss));
	} while (ss.events_in < 10);
	gs_pipeline_stop(p, GS_STOP_NOW);
	size_t held = 0, k;
	void *ev[16];
	while (gs_stream_next(out, ev, 16, &k, 0) == GS_OK) {
		for (size_t i = 0; i < k; i++) {
			gs_message *m = ev[i];
			gs_message_failed(m, GS_ECANCELED);
			m->acknowledger->ack(m->ack_ref, NULL, 0, &m, 1);
		}
		held += k;
	}
	cr_assert_geq(held, 1);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	gs_amqp_source_free(src);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_lt(t1.tv_sec - t0.tv_sec, 30, "the free waited");
	gs_pipeline_free(p);
	wait_ready(q, 50);
}

Test(amqp_source, failures_are_retried_then_dead_lettered_exactly,
     .timeout = GS_TEST_TIMEOUT)
{
	need_broker();
	char q[96], dead[120];
	broker_name(q, sizeof q, "q");
	snprintf(dead, sizeof dead, "%s.dead", q);
	enum { n = 500, every = 5, retries = 2 };
	seen *s = calloc(1, sizeof *s);
	s->fail_every = every;
	gs_amqp_source_opts o = { .conn = test_conn(),
				  .queue = q,
				  .declare = true,
				  .max_retries = retries,
				  .retry_delay = 20 };
	gs_broadway *bw = consume(s, &o, 2, false);
	/* The source declares the queues once it has connected. */
	while (queue_ready(dead) < 0)
		usleep(5000);
	publish_ids(q, 0, n);
	/* Each failing message: the first try and `retries` retries. */
	uint64_t fails = n / every;
	wait_at_least(&s->handled, n - fails + fails * (retries + 1));
	wait_ready(dead, (long)fails);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	gs_broadway_free(bw);
	for (size_t i = 0; i < n; i++) {
		unsigned want = i % every ? 1 : retries + 1;
		cr_assert_eq(atomic_load(&s->counts[i]), want,
			     "id %zu handled %u times, not %u", i,
			     atomic_load(&s->counts[i]), want);
	}
	cr_assert_eq(atomic_load(&s->deaths_max), retries);
	_Atomic unsigned *dead_ids = calloc(n, sizeof *dead_ids);
	cr_assert_eq(drain_queue(dead, dead_ids, n), fails);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&dead_ids[i]), i % every ? 0 : 1);
	cr_assert_eq(queue_ready(q), 0);
	free(dead_ids);
	free(s);
}

static bool even_seen(void *arg, const char *id)
{
	(void)arg;
	return strtoul(id + 3, NULL, 10) % 2 == 0; /* "id-<n>" */
}

Test(amqp_source, the_dedup_hook_acks_seen_ids_without_delivering,
     .timeout = GS_TEST_TIMEOUT)
{
	char q[96];
	filled_queue(q, sizeof q, "q", 100);
	seen *s = calloc(1, sizeof *s);
	gs_amqp_source_opts o = { .conn = test_conn(),
				  .queue = q,
				  .seen = even_seen };
	gs_broadway *bw = consume(s, &o, 1, false);
	wait_at_least(&s->handled, 50);
	wait_ready(q, 0);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	gs_broadway_free(bw);
	for (size_t i = 0; i < 100; i++)
		cr_assert_eq(atomic_load(&s->counts[i]), i % 2);
	free(s);
}

Test(amqp_source, a_drain_during_load_requeues_nothing_it_processed,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_AMQP_MESSAGES;
	char q[96];
	filled_queue(q, sizeof q, "q", n);
	seen *s = calloc(1, sizeof *s);
	gs_amqp_source_opts o = { .conn = test_conn(),
				  .queue = q,
				  .on_failure = GS_AMQP_REQUEUE };
	gs_broadway *bw = consume(s, &o, 2, false);
	wait_at_least(&s->handled, n / 4);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	gs_broadway_stats st;
	gs_broadway_stats_get(bw, &st);
	gs_broadway_free(bw);
	/* What is left in the queue is exactly what was not processed. */
	_Atomic unsigned *left = calloc(n, sizeof *left);
	size_t rest = drain_queue(q, left, n);
	cr_assert_eq(rest + atomic_load(&s->handled), n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&s->counts[i]) + atomic_load(&left[i]),
			     1, "id %zu processed %u, left %u", i,
			     atomic_load(&s->counts[i]), atomic_load(&left[i]));
	cr_assert_eq(st.successful, atomic_load(&s->handled));
	free(left);
	free(s);
}

/* A source that must fail: its stage stops with GS_ECLOSED after its
 * reconnects, and the log says why. */
static void refused(gs_amqp_source_opts o, const char *why)
{
	log_keep *l = calloc(1, sizeof *l);
	pthread_mutex_init(&l->lock, NULL);
	o.conn.log = log_keep_fn;
	o.conn.log_arg = l;
	o.conn.max_reconnects = 2;
	o.conn.backoff_min = 5;
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_amqp_source *src;
	GS_OK_OR_DIE(gs_amqp_source_new(p, &o, NULL, &src));
	gs_stage *out;
	gs_stream(p, NULL, &out);
	gs_subscribe(out, gs_amqp_source_stage(src), NULL, NULL);
	gs_pipeline_start(p);
	cr_assert_eq(gs_pipeline_wait(p), GS_ECLOSED);
	gs_amqp_source_free(src);
	gs_pipeline_free(p);
	cr_assert(log_has(l, why), "log lacks '%s':\n%s", why, l->all);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

Test(amqp_source, a_wrong_port_is_reported_and_stops_the_stage,
     .timeout = GS_TEST_TIMEOUT)
{
	need_broker();
	gs_amqp_conn_opts c = test_conn();
	c.port = 1; /* nothing listens there */
	refused((gs_amqp_source_opts){ .conn = c, .queue = "q" },
		"cannot connect to 127.0.0.1:1");
}

Test(amqp_source, a_refused_login_is_reported_and_stops_the_stage,
     .timeout = GS_TEST_TIMEOUT)
{
	need_broker();
	gs_amqp_conn_opts c = test_conn();
	c.password = "not-the-password";
	refused((gs_amqp_source_opts){ .conn = c, .queue = "q" }, "refused");
}

Test(amqp_source, a_missing_queue_is_reported_and_stops_the_stage,
     .timeout = GS_TEST_TIMEOUT)
{
	need_broker();
	refused((gs_amqp_source_opts){ .conn = test_conn(),
				       .queue = "gs-test-no-such-queue" },
		"404");
}

Test(amqp_source, bad_options_are_refused)
{
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_amqp_source *src = (gs_amqp_source *)&src;
	cr_assert_eq(gs_amqp_source_new(p, &(gs_amqp_source_opts){ 0 }, NULL,
					&src),
		     GS_EINVAL);
	cr_assert_eq(gs_amqp_source_new(NULL,
					&(gs_amqp_source_opts){ .queue = "q" },
					NULL, &src),
		     GS_EINVAL);
	log_keep l = { 0 };
	cr_assert_eq(
		gs_amqp_source_new(
			p,
			&(gs_amqp_source_opts){
				.version = GS_AMQP_SOURCE_OPTS_VERSION + 1,
				.conn = { .log = log_keep_fn, .log_arg = &l },
				.queue = "q" },
			NULL, &src),
		GS_EVERSION);
	cr_assert(log_has(&l, "newer than this library"), "%s", l.all);
	cr_assert_eq(gs_amqp_source_new(p,
					&(gs_amqp_source_opts){
						.queue = "q", .n_bindings = 1 },
					NULL, &src),
		     GS_EINVAL);
	cr_assert_eq(gs_amqp_source_new(
			     p,
			     &(gs_amqp_source_opts){
				     .queue = "q",
				     .on_failure = (gs_amqp_on_failure)77 },
			     NULL, &src),
		     GS_EINVAL);
	cr_assert_eq(src, (gs_amqp_source *)&src);
	gs_amqp_source_free(NULL);
	gs_pipeline_free(p);
}
