// SPDX-License-Identifier: MIT
/*
 * Real faults, each checked for "nothing lost, duplicates counted": the
 * broker killed with -9 mid-stream and restarted on the same data folder,
 * and a consuming process killed mid-batch while another consumes the
 * same queue.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "amqp_test.h"
#include "fault_tally.h"

static const gs_broadway_ops ops = { .handle_message = tally_message,
				     .handle_batch = tally_batch };

/* Counts ids seen at least once and ids seen more than once. */
static void check_all(tally_ids *t, size_t n, size_t *dups)
{
	*dups = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned c = atomic_load(&t->counts[i]);
		cr_assert_geq(c, 1, "id %zu never processed", i);
		*dups += c - 1;
	}
}

static size_t all_seen(tally_ids *t, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += atomic_load(&t->counts[i]) > 0;
	return k;
}

/* A sink's side of the kill: ids 0..n-1 pushed into a sink, the first
 * half before the kill and the rest after it. */
typedef struct sink_side {
	_Atomic unsigned confirmed[GS_TEST_AMQP_FAULT_MESSAGES];
	_Atomic uint64_t failed;
	const char *queue;
} sink_side;

/* Pushes ids [from, to) into the push producer `in`. */
static void push_ids(gs_stage *in, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		void *ev = (void *)(uintptr_t)i;
		GS_OK_OR_DIE(gs_push(in, &ev, 1, -1));
	}
}

static int encode_id(void *arg, void *event, gs_amqp_out *out)
{
	sink_side *s = arg;
	static _Thread_local char body[24];
	snprintf(body, sizeof body, "%zu", (size_t)(uintptr_t)event);
	*out = (gs_amqp_out){ .routing_key = s->queue,
			      .body = body,
			      .size = strlen(body) };
	return GS_OK;
}

static void confirmed_id(void *arg, void *event, int status)
{
	sink_side *s = arg;
	size_t id = (uintptr_t)event;
	if (status)
		atomic_fetch_add(&s->failed, 1);
	else if (id < GS_TEST_AMQP_FAULT_MESSAGES)
		atomic_fetch_add(&s->confirmed[id], 1);
}

Test(amqp_faults, a_broker_killed_mid_stream_loses_nothing_after_restart,
     .timeout = 600)
{
	enum { n = GS_TEST_AMQP_FAULT_MESSAGES };
	char q[96];
	filled_queue(q, sizeof q, "kill9", n);
	char q2[96];
	broker_name(q2, sizeof q2, "kill9-sink");
	declare_queue(q2);
	/* Both queues on the broker's disk before it is killed. */
	cr_assert(broker_sync_metadata(), "%s", broker_error());
	tally_ids *t = calloc(1, sizeof *t);
	t->sleep_us = 100;
	gs_amqp_source_opts o = { .conn = test_conn(),
				  .queue = q,
				  .on_failure = GS_AMQP_REQUEUE };
	o.conn.log = log_keep_fn;
	log_keep *l = calloc(1, sizeof *l);
	pthread_mutex_init(&l->lock, NULL);
	o.conn.log_arg = l;
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, t,
		&(gs_broadway_opts){
			.producer = gs_amqp_broadway_producer(&o, 1),
			.processors = { .concurrency = 2, .blocking = true } },
		&bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	/* And a sink publishing into a second queue across the kill. */
	sink_side *ss = calloc(1, sizeof *ss);
	ss->queue = q2;
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_stage *gen;
	GS_OK_OR_DIE(gs_push_producer(p, NULL, &gen));
	gs_amqp_sink *sink;
	GS_OK_OR_DIE(gs_amqp_sink_new(
		p,
		/* It declares its queue on every connect, as a sink into
		 * a queue should: what it publishes always has a home. */
		&(gs_amqp_sink_opts){ .conn = o.conn,
				      .declare_queue = q2,
				      .encode = encode_id,
				      .confirmed = confirmed_id,
				      .arg = ss },
		NULL, &sink));
	GS_OK_OR_DIE(gs_subscribe(gs_amqp_sink_stage(sink), gen,
				  &(gs_sub_opts){ .max_demand = 100 }, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	push_ids(gen, 0, n / 2);
	wait_at_least(&t->handled, n / 3);
	broker_kill9();
	push_ids(gen, n / 2, n);
	GS_OK_OR_DIE(gs_push_close(gen));
	cr_assert(broker_restart(), "%s", broker_error());
	/* The source reconnects by itself and the broker redelivers what
	 * was not acked. */
	while (all_seen(t, n) < n)
		usleep(10000);
	wait_ready(q, 0);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	gs_broadway_free(bw);
	size_t dups;
	check_all(t, n, &dups);
	cr_assert(log_has(l, "connection lost"), "%s", l->all);
	cr_log_info("kill -9: %d processed, %zu duplicates",
		    (int)atomic_load(&t->handled), dups);
	cr_assert_eq(atomic_load(&t->handled), n + dups);
	/* The sink: each event handed back once, confirmed; each in the
	 * queue at least once (what was unconfirmed at the kill was
	 * published again). */
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	gs_pipeline_free(p);
	gs_amqp_sink_stats sst;
	gs_amqp_sink_stats_get(sink, &sst);
	gs_amqp_sink_free(sink);
	cr_assert_eq(atomic_load(&ss->failed), 0);
	cr_assert_geq(queue_ready(q2), 0, "%s lost in the restart", q2);
	_Atomic unsigned *in = calloc(n, sizeof *in);
	size_t got = drain_queue(q2, in, n);
	size_t sink_dups = 0;
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(atomic_load(&ss->confirmed[i]), 1, "event %zu", i);
		cr_assert_geq(atomic_load(&in[i]), 1, "id %zu not in queue", i);
		sink_dups += atomic_load(&in[i]) - 1;
	}
	cr_assert_eq(got, n + sink_dups);
	cr_assert_geq(sst.connects, 2);
	cr_log_info("kill -9, sink: %zu republished, %zu duplicates",
		    (size_t)sst.republished, sink_dups);
	free(in);
	free(ss);
	pthread_mutex_destroy(&l->lock);
	free(l);
	free(t);
}

/* The sink's last event kills the broker as it is encoded: its producer is
 * done, so the sink meets the lost connection at its end, where it must
 * reconnect and publish again what was not confirmed, as it does while
 * events still come. */
enum { LAST_WORDS = 100 };
static _Atomic bool killed;

static int encode_then_kill(void *arg, void *event, gs_amqp_out *out)
{
	gs_err err = encode_id(arg, event, out);
	if ((uintptr_t)event == LAST_WORDS - 1 && !atomic_exchange(&killed, 1))
		broker_kill9();
	return err;
}

Test(amqp_faults, a_sink_reconnects_at_its_end_to_get_its_confirmations,
     .timeout = 600)
{
	char q[96];
	need_broker();
	broker_name(q, sizeof q, "last-words");
	/* The sink declares its queue on every connect, so the queue need
	 * not be on the broker's disk before the kill. */
	sink_side *ss = calloc(1, sizeof *ss);
	ss->queue = q;
	void *ev[LAST_WORDS];
	for (size_t i = 0; i < LAST_WORDS; i++)
		ev[i] = (void *)(uintptr_t)i;
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	gs_stage *src;
	GS_OK_OR_DIE(gs_from_array(p, ev, LAST_WORDS, NULL, &src));
	gs_amqp_sink *sink;
	GS_OK_OR_DIE(gs_amqp_sink_new(
		p,
		&(gs_amqp_sink_opts){ .conn = test_conn(),
				      .declare_queue = q,
				      .encode = encode_then_kill,
				      .confirmed = confirmed_id,
				      .arg = ss },
		NULL, &sink));
	GS_OK_OR_DIE(gs_subscribe(gs_amqp_sink_stage(sink), src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	while (!atomic_load(&killed))
		usleep(1000);
	cr_assert(broker_restart(), "%s", broker_error());
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	gs_pipeline_free(p);
	gs_amqp_sink_stats st;
	gs_amqp_sink_stats_get(sink, &st);
	gs_amqp_sink_free(sink);
	cr_assert_eq(atomic_load(&ss->failed), 0, "%llu failed",
		     (unsigned long long)atomic_load(&ss->failed));
	cr_assert_geq(st.connects, 2);
	_Atomic unsigned *in = calloc(LAST_WORDS, sizeof *in);
	drain_queue(q, in, LAST_WORDS);
	for (size_t i = 0; i < LAST_WORDS; i++) {
		cr_assert_eq(atomic_load(&ss->confirmed[i]), 1, "event %zu", i);
		cr_assert_geq(atomic_load(&in[i]), 1, "id %zu not in queue", i);
	}
	free(in);
	free(ss);
}

Test(amqp_faults, a_consumer_killed_mid_batch_hands_its_messages_to_another,
     .timeout = 600)
{
	enum { n = GS_TEST_AMQP_FAULT_MESSAGES };
	char q[96];
	filled_queue(q, sizeof q, "share", n);
	/* The doomed consumer is a program of its own (a fork of this
	 * threaded process could not start threads under TSan); its tally
	 * is a shared file, so that we see which messages it held when it
	 * died. */
	char path[] = "/tmp/gs-amqp-tally-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, sizeof(tally_ids)), 0);
	tally_ids *dead = mmap(NULL, sizeof *dead, PROT_READ | PROT_WRITE,
			       MAP_SHARED, fd, 0);
	cr_assert_neq(dead, MAP_FAILED);
	close(fd);
	char port[16];
	snprintf(port, sizeof port, "%d", broker_port());
	pid_t child = fork();
	if (child == 0) {
		execl(DOOMED_CONSUMER, DOOMED_CONSUMER, port, q, path,
		      (char *)NULL);
		_exit(127);
	}
	cr_assert_gt(child, 0);
	while (!atomic_load(&dead->hanging)) {
		cr_assert_eq(waitpid(child, NULL, WNOHANG), 0,
			     "the doomed consumer died early");
		usleep(2000);
	}
	tally_ids *live = calloc(1, sizeof *live);
	gs_amqp_source_opts o = { .conn = test_conn(),
				  .queue = q,
				  .on_failure = GS_AMQP_REQUEUE };
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, live,
		&(gs_broadway_opts){
			.producer = gs_amqp_broadway_producer(&o, 1),
			.processors = { .concurrency = 2 } },
		&bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	wait_ready(q, 0);
	/* Everything the dead consumer had not acked comes here: at least
	 * the batch it died in. */
	for (size_t i = 0; i < n; i++) {
		if (atomic_load(&dead->in_hung[i]))
			while (!atomic_load(&live->counts[i]))
				usleep(2000);
		while (!atomic_load(&live->counts[i]) &&
		       !atomic_load(&dead->counts[i]))
			usleep(2000);
	}
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	gs_broadway_free(bw);
	size_t lost = 0, dups = 0, hung = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned a = atomic_load(&live->counts[i]);
		unsigned d = atomic_load(&dead->counts[i]);
		lost += a + d == 0;
		dups += a + d > 1 ? a + d - 1 : 0;
		hung += atomic_load(&dead->in_hung[i]);
	}
	cr_assert_eq(lost, 0);
	cr_assert_eq(hung, 50);
	cr_log_info("consumer killed: %zu duplicates", dups);
	munmap(dead, sizeof *dead);
	unlink(path);
	free(live);
}
