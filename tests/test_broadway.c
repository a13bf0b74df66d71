// SPDX-License-Identifier: MIT
/*
 * Broadway's model without a broker: messages through processors and
 * batchers, acknowledged exactly once and grouped by acknowledger, failures
 * seen by handle_failed, ordering by partition_by, the rate limiter's
 * bound, batch triggers, a drain under load and a stop that cancels.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gs_test.h"

#ifndef GS_TEST_BW_MESSAGES
#define GS_TEST_BW_MESSAGES 20000
#endif

#define KEYS 8
#define WAIT_MS (GS_TEST_TIMEOUT * 1000)

/* What the handlers saw; counters only, checked after the run. */
typedef struct ctx {
	uintptr_t fail_every;       /* fail messages whose data % this == 0 */
	int fail_reason;            /* returned by handle_message for those */
	bool mark_instead;          /* gs_message_failed instead of returning */
	size_t batchers;            /* route data % batchers */
	bool key_by_data;           /* batch key = data % KEYS */
	uintptr_t batch_fail_every; /* handle_batch fails these */
	int batch_return;           /* handle_batch returns this */
	unsigned sleep_us; /* handle_message sleeps (blocking stages) */
	_Atomic uint64_t handled, failed_seen, batches, batch_msgs;
	_Atomic uint64_t mixed_batches; /* a batch with two keys/batchers */
	_Atomic uint64_t order_errors;
	_Atomic uint64_t triggers[3];
	_Atomic uint64_t max_batch;
	_Atomic uintptr_t last[KEYS]; /* partition_by: last data per key */
	/* handle_batch sleeps this long (blocking batch processors), and
	 * marks its info->partition busy meanwhile: two batches at once on
	 * one batch processor, or a partition out of range, count here. */
	unsigned batch_sleep_us;
	_Atomic int busy[KEYS];
	_Atomic uint64_t partition_errors;
} ctx;

static uint64_t data_key(void *arg, const gs_message *m)
{
	(void)arg;
	return (uintptr_t)m->data % KEYS;
}

static void check_order(ctx *c, const gs_message *m)
{
	uintptr_t v = (uintptr_t)m->data, k = v % KEYS;
	uintptr_t last = atomic_load(&c->last[k]);
	if (last && v <= last)
		atomic_fetch_add(&c->order_errors, 1);
	atomic_store(&c->last[k], v);
}

static int on_message(void *arg, size_t processor, gs_message *m)
{
	(void)processor;
	ctx *c = arg;
	uintptr_t v = (uintptr_t)m->data;
	atomic_fetch_add(&c->handled, 1);
	if (c->sleep_us)
		usleep(c->sleep_us);
	if (c->batchers)
		gs_message_put_batcher(m, v % c->batchers);
	if (c->key_by_data)
		gs_message_put_batch_key(m, v % KEYS);
	if (c->fail_every && v % c->fail_every == 0) {
		if (!c->mark_instead)
			return c->fail_reason;
		gs_message_failed(m, c->fail_reason);
	}
	return GS_OK;
}

static int on_batch(void *arg, gs_message **msgs, size_t n,
		    const gs_batch_info *info)
{
	ctx *c = arg;
	if (info->partition >= KEYS ||
	    atomic_exchange(&c->busy[info->partition % KEYS], 1))
		atomic_fetch_add(&c->partition_errors, 1);
	if (c->batch_sleep_us)
		usleep(c->batch_sleep_us);
	atomic_store(&c->busy[info->partition % KEYS], 0);
	atomic_fetch_add(&c->batches, 1);
	atomic_fetch_add(&c->batch_msgs, n);
	atomic_fetch_add(&c->triggers[info->trigger], 1);
	if (n > atomic_load(&c->max_batch))
		atomic_store(&c->max_batch, n);
	for (size_t i = 0; i < n; i++) {
		uintptr_t v = (uintptr_t)msgs[i]->data;
		if (msgs[i]->batch_key != info->batch_key ||
		    msgs[i]->batcher != info->batcher || n != info->size)
			atomic_fetch_add(&c->mixed_batches, 1);
		if (c->batch_fail_every && v % c->batch_fail_every == 0)
			gs_message_failed(msgs[i], GS_TEST_FAIL + 1);
	}
	return c->batch_return;
}

static void on_failed(void *arg, gs_message **msgs, size_t n)
{
	ctx *c = arg;
	atomic_fetch_add(&c->failed_seen, n);
	(void)msgs;
}

static const gs_broadway_ops ops = {
	.handle_message = on_message,
	.handle_batch = on_batch,
	.handle_failed = on_failed,
};

/* 1..n as data (0 would read as "no data"). */
static void **numbers(size_t n)
{
	void **v = malloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = GS_EV(i + 1);
	return v;
}

/* Checks that every datum 1..n came back exactly once in *a. */
static void check_once(const gs_broadway_test_ack *a, size_t n)
{
	unsigned char *seen = calloc(n + 1, 1);
	cr_assert_eq(a->n_ok + a->n_failed, n);
	for (size_t i = 0; i < a->n_ok; i++)
		seen[GS_VAL(a->ok[i])]++;
	for (size_t i = 0; i < a->n_failed; i++)
		seen[GS_VAL(a->failed[i])]++;
	for (size_t i = 1; i <= n; i++)
		cr_assert_eq(seen[i], 1, "datum %zu acked %u times", i,
			     seen[i]);
	free(seen);
}

/* Sends data 1..n as one test batch, waits for every acknowledgement and
 * checks that each came back exactly once. */
static gs_broadway_test_ack send_and_wait(gs_broadway *bw, size_t n)
{
	void **data = numbers(n);
	gs_broadway_test_ref *ref;
	gs_broadway_test_ack a;
	GS_OK_OR_DIE(gs_broadway_test_batch(bw, data, n, &ref));
	GS_OK_OR_DIE(gs_broadway_test_wait(ref, WAIT_MS, &a));
	check_once(&a, n);
	free(data);
	return a;
}

static gs_broadway *start(ctx *c, gs_broadway_opts o)
{
	gs_broadway *bw;
	o.producer = gs_broadway_test_producer();
	GS_OK_OR_DIE(gs_broadway_new(&ops, c, &o, &bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	return bw;
}

Test(broadway, acks_every_message_exactly_once_without_batchers,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { 0 };
	gs_broadway *bw = start(
		&c, (gs_broadway_opts){ .processors = { .concurrency = 4 } });
	size_t n = GS_TEST_BW_MESSAGES;
	void **data = numbers(n);
	gs_broadway_test_ref *ref;
	gs_broadway_test_ack a;
	GS_OK_OR_DIE(gs_broadway_test_batch(bw, data, n, &ref));
	GS_OK_OR_DIE(gs_broadway_test_wait(ref, WAIT_MS, &a));
	cr_assert_eq(a.n_ok, n);
	check_once(&a, n);
	gs_broadway_test_ack_fini(&a);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	gs_broadway_stats st;
	GS_OK_OR_DIE(gs_broadway_stats_get(bw, &st));
	cr_assert_eq(st.received, n);
	cr_assert_eq(st.successful, n);
	cr_assert_eq(st.failed, 0);
	cr_assert_eq(atomic_load(&c.handled), n);
	gs_broadway_free(bw);
	free(data);
}

Test(broadway, test_message_comes_back_acked_with_its_data,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { 0 };
	gs_broadway *bw = start(&c, (gs_broadway_opts){ 0 });
	gs_broadway_test_ref *ref;
	gs_broadway_test_ack a;
	GS_OK_OR_DIE(gs_broadway_test_message(bw, GS_EV(42), &ref));
	GS_OK_OR_DIE(gs_broadway_test_wait(ref, WAIT_MS, &a));
	cr_assert_eq(a.n_ok, 1);
	cr_assert_eq(GS_VAL(a.ok[0]), 42);
	cr_assert_eq(a.n_failed, 0);
	cr_assert_eq(a.ack_calls, 1);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

Test(broadway, a_test_message_sent_before_the_start_waits_for_it,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { 0 };
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, &c,
		&(gs_broadway_opts){ .producer = gs_broadway_test_producer() },
		&bw));
	gs_broadway_test_ref *ref;
	gs_broadway_test_ack a;
	GS_OK_OR_DIE(gs_broadway_test_message(bw, GS_EV(7), &ref));
	cr_assert_eq(gs_broadway_test_wait(ref, 20, &a), GS_ETIMEDOUT);
	GS_OK_OR_DIE(gs_broadway_start(bw));
	GS_OK_OR_DIE(gs_broadway_test_wait(ref, WAIT_MS, &a));
	cr_assert_eq(a.n_ok, 1);
	cr_assert_eq(GS_VAL(a.ok[0]), 7);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

/* Broadway's test_message: its batch goes out at once, long before the
 * batch_timeout, and says why. */
Test(broadway, a_test_message_flushes_its_batch_at_once,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { 0 };
	gs_broadway *bw = start(
		&c,
		(gs_broadway_opts){ .batchers =
					    &(gs_broadway_batcher_opts){
						    .batch_size = 100,
						    .batch_timeout = 600000 },
				    .n_batchers = 1 });
	gs_broadway_test_ref *ref;
	gs_broadway_test_ack a;
	GS_OK_OR_DIE(gs_broadway_test_message(bw, GS_EV(9), &ref));
	GS_OK_OR_DIE(gs_broadway_test_wait(ref, WAIT_MS, &a));
	cr_assert_eq(a.n_ok, 1);
	cr_assert_eq(atomic_load(&c.triggers[GS_BATCH_FLUSH]), 1);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

static void failures_come_back_failed_after_handle_failed(bool mark)
{
	ctx c = { .fail_every = 5,
		  .fail_reason = GS_TEST_FAIL,
		  .mark_instead = mark };
	gs_broadway *bw = start(
		&c, (gs_broadway_opts){ .processors = { .concurrency = 3 } });
	size_t n = 1000;
	gs_broadway_test_ack a = send_and_wait(bw, n);
	cr_assert_eq(a.n_failed, n / 5);
	for (size_t i = 0; i < a.n_failed; i++) {
		cr_assert_eq(GS_VAL(a.failed[i]) % 5, 0);
		cr_assert_eq(a.reasons[i], GS_TEST_FAIL);
	}
	for (size_t i = 0; i < a.n_ok; i++)
		cr_assert_neq(GS_VAL(a.ok[i]) % 5, 0);
	cr_assert_eq(atomic_load(&c.failed_seen), n / 5);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

Test(broadway, a_handler_returning_an_error_fails_the_message_with_it,
     .timeout = GS_TEST_TIMEOUT)
{
	failures_come_back_failed_after_handle_failed(false);
}

Test(broadway, messages_marked_failed_reach_handle_failed_then_ack,
     .timeout = GS_TEST_TIMEOUT)
{
	failures_come_back_failed_after_handle_failed(true);
}

Test(broadway, batches_hold_one_batcher_and_key_and_respect_batch_size,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { .batchers = 2, .key_by_data = true };
	gs_broadway_batcher_opts b[2] = {
		{ .name = "even", .batch_size = 7, .concurrency = 2 },
		{ .name = "odd", .batch_size = 5 },
	};
	gs_broadway *bw = start(
		&c, (gs_broadway_opts){ .processors = { .concurrency = 2 },
					.batchers = b,
					.n_batchers = 2 });
	size_t n = GS_TEST_BW_MESSAGES / 4;
	gs_broadway_test_ack a = send_and_wait(bw, n);
	cr_assert_eq(a.n_ok, n);
	cr_assert_eq(atomic_load(&c.mixed_batches), 0);
	cr_assert_leq(atomic_load(&c.max_batch), 7);
	cr_assert_eq(atomic_load(&c.batch_msgs), n);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

/* Without partition_by, batches go to whichever batch processor is free,
 * and each is told which one runs it: two batches at once never share a
 * partition. */
Test(broadway, each_batch_names_the_batch_processor_that_runs_it,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { .batch_sleep_us = 300 };
	gs_broadway *bw = start(
		&c,
		(gs_broadway_opts){
			.processors = { .concurrency = 2 },
			.batchers = &(
				gs_broadway_batcher_opts){ .batch_size = 4,
							   .concurrency = 3,
							   .blocking = true },
			.n_batchers = 1 });
	size_t n = 2000;
	gs_broadway_test_ack a = send_and_wait(bw, n);
	cr_assert_eq(a.n_ok, n);
	cr_assert_eq(atomic_load(&c.partition_errors), 0);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

/* What the trace hook saw, per datum 1..n. */
typedef struct traced {
	size_t n;
	_Atomic unsigned (*seen)[3]; /* per datum, per kind */
	_Atomic uint64_t failed_acks, no_stage;
} traced;

static void on_trace(void *arg, gs_broadway_trace_kind kind,
		     const gs_message *m, const gs_stage *stage)
{
	traced *t = arg;
	uintptr_t v = (uintptr_t)m->data;
	if (v >= 1 && v <= t->n && kind <= GS_BROADWAY_TRACE_ACK)
		atomic_fetch_add(&t->seen[v][kind], 1);
	if (kind == GS_BROADWAY_TRACE_ACK && m->status)
		atomic_fetch_add(&t->failed_acks, 1);
	if (!stage)
		atomic_fetch_add(&t->no_stage, 1);
}

Test(broadway, the_trace_hook_sees_each_message_handled_batched_and_acked_once,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_BW_MESSAGES / 4;
	traced t = { .n = n, .seen = calloc(n + 1, sizeof *t.seen) };
	ctx c = { .fail_every = 5, .fail_reason = GS_TEST_FAIL };
	gs_broadway *bw = start(
		&c,
		(gs_broadway_opts){
			.processors = { .concurrency = 2 },
			.batchers = &(
				gs_broadway_batcher_opts){ .batch_size = 10,
							   .concurrency = 2 },
			.n_batchers = 1,
			.trace = on_trace,
			.trace_arg = &t });
	gs_broadway_test_ack a = send_and_wait(bw, n);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	for (size_t v = 1; v <= n; v++) {
		bool fails = v % 5 == 0;
		cr_assert_eq(atomic_load(&t.seen[v][GS_BROADWAY_TRACE_MESSAGE]),
			     1, "datum %zu", v);
		cr_assert_eq(atomic_load(&t.seen[v][GS_BROADWAY_TRACE_BATCH]),
			     !fails, "datum %zu", v);
		cr_assert_eq(atomic_load(&t.seen[v][GS_BROADWAY_TRACE_ACK]), 1,
			     "datum %zu", v);
	}
	cr_assert_eq(atomic_load(&t.failed_acks), a.n_failed);
	cr_assert_eq(a.n_failed, n / 5);
	cr_assert_eq(atomic_load(&t.no_stage), 0);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
	free(t.seen);
}

Test(broadway, a_batch_timeout_hands_over_a_partial_batch,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { 0 };
	gs_broadway *bw = start(
		&c, (gs_broadway_opts){ .batchers =
						&(gs_broadway_batcher_opts){
							.batch_size = 100,
							.batch_timeout = 20 },
					.n_batchers = 1 });
	void *data[3] = { GS_EV(1), GS_EV(2), GS_EV(3) };
	gs_broadway_test_ref *ref;
	gs_broadway_test_ack a;
	GS_OK_OR_DIE(gs_broadway_test_batch(bw, data, 3, &ref));
	GS_OK_OR_DIE(gs_broadway_test_wait(ref, WAIT_MS, &a));
	cr_assert_eq(a.n_ok, 3);
	cr_assert_geq(atomic_load(&c.triggers[GS_BATCH_TIMEOUT]), 1);
	cr_assert_eq(atomic_load(&c.triggers[GS_BATCH_SIZE]), 0);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

Test(broadway, a_drain_flushes_partial_batches, .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { 0 };
	gs_broadway *bw = start(
		&c,
		(gs_broadway_opts){ .processors = { .concurrency = 1 },
				    .batchers =
					    &(gs_broadway_batcher_opts){
						    .batch_size = 10,
						    .batch_timeout = 3600000 },
				    .n_batchers = 1 });
	size_t n = 25;
	void **data = numbers(n);
	gs_broadway_test_ref *ref;
	gs_broadway_test_ack a;
	GS_OK_OR_DIE(gs_broadway_test_batch(bw, data, n, &ref));
	/* Every message handled and two full batches out: the other five
	 * wait in the batcher for the drain (the timeout is an hour).
	 * Messages still in the producer at a drain would come back
	 * cancelled, which is not what this test is about. */
	wait_at_least(&c.handled, n);
	wait_at_least(&c.triggers[GS_BATCH_SIZE], 2);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	GS_OK_OR_DIE(gs_broadway_test_wait(ref, 0, &a));
	check_once(&a, n);
	cr_assert_eq(a.n_ok, n);
	cr_assert_eq(atomic_load(&c.triggers[GS_BATCH_FLUSH]), 1);
	cr_assert_eq(atomic_load(&c.batch_msgs), n);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
	free(data);
}

Test(broadway, handle_batch_may_fail_part_of_a_batch_or_all_of_it,
     .timeout = GS_TEST_TIMEOUT)
{
	for (int whole = 0; whole < 2; whole++) {
		ctx c = { .batch_fail_every = 3,
			  .batch_return = whole ? GS_TEST_FAIL : GS_OK };
		gs_broadway *bw = start(
			&c,
			(gs_broadway_opts){ .batchers =
						    &(gs_broadway_batcher_opts){
							    .batch_size = 10 },
					    .n_batchers = 1 });
		size_t n = 300;
		gs_broadway_test_ack a = send_and_wait(bw, n);
		cr_assert_eq(a.n_failed, whole ? n : n / 3);
		for (size_t i = 0; i < a.n_failed; i++) {
			bool third = GS_VAL(a.failed[i]) % 3 == 0;
			cr_assert_eq(a.reasons[i],
				     third ? GS_TEST_FAIL + 1 : GS_TEST_FAIL);
		}
		cr_assert_eq(atomic_load(&c.failed_seen), a.n_failed);
		gs_broadway_test_ack_fini(&a);
		gs_broadway_free(bw);
	}
}

Test(broadway, a_message_for_an_unknown_batcher_fails_with_einval,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { .batchers = 3 }; /* routes to 0, 1 and 2; only 2 exist */
	gs_broadway_batcher_opts b[2] = { { .batch_size = 4 },
					  { .batch_size = 4 } };
	gs_broadway *bw = start(&c, (gs_broadway_opts){ .batchers = b,
							.n_batchers = 2 });
	size_t n = 30;
	gs_broadway_test_ack a = send_and_wait(bw, n);
	cr_assert_eq(a.n_failed, n / 3);
	for (size_t i = 0; i < a.n_failed; i++) {
		cr_assert_eq(GS_VAL(a.failed[i]) % 3, 2);
		cr_assert_eq(a.reasons[i], GS_EINVAL);
	}
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

Test(broadway, partition_by_keeps_each_key_in_order, .timeout = GS_TEST_TIMEOUT)
{
	/* Processors check order per key as handle_message sees it. */
	ctx c = { 0 };
	gs_broadway *bw = start(
		&c, (gs_broadway_opts){
			    .processors = { .concurrency = 4,
					    .partition_by = data_key } });
	size_t n = GS_TEST_BW_MESSAGES;
	gs_broadway_test_ack a = send_and_wait(bw, n);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

/* handle_message records order per key in ctx.last (with partition_by,
 * one processor owns a key, so the loads and stores do not race). */
static int ordered_message(void *arg, size_t processor, gs_message *m)
{
	(void)processor;
	check_order(arg, m);
	gs_message_put_batch_key(m, 0);
	return GS_OK;
}

static int ordered_batch(void *arg, gs_message **msgs, size_t n,
			 const gs_batch_info *info)
{
	(void)info;
	for (size_t i = 0; i < n; i++)
		check_order(arg, msgs[i]);
	return GS_OK;
}

static void partition_order(bool in_batches)
{
	static const gs_broadway_ops ordered_ops = {
		.handle_message = ordered_message,
	};
	static const gs_broadway_ops batch_ops = {
		.handle_message = on_message,
		.handle_batch = ordered_batch,
	};
	ctx c = { 0 };
	gs_broadway_opts o = {
		.producer = gs_broadway_test_producer(),
		.processors = { .concurrency = 4, .partition_by = data_key },
	};
	gs_broadway_batcher_opts b = { .concurrency = 3,
				       .batch_size = 16,
				       .batch_timeout = 5,
				       .partition_by = data_key };
	if (in_batches) {
		o.batchers = &b;
		o.n_batchers = 1;
	}
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(in_batches ? &batch_ops : &ordered_ops, &c,
				     &o, &bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	size_t n = GS_TEST_BW_MESSAGES;
	gs_broadway_test_ack a = send_and_wait(bw, n);
	cr_assert_eq(atomic_load(&c.order_errors), 0);
	for (size_t k = 0; k < KEYS; k++)
		cr_assert_gt(atomic_load(&c.last[k]), 0);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

Test(broadway, processor_partition_by_keeps_each_key_in_order,
     .timeout = GS_TEST_TIMEOUT)
{
	partition_order(false);
}

Test(broadway, batcher_partition_by_keeps_each_key_in_order,
     .timeout = GS_TEST_TIMEOUT)
{
	partition_order(true);
}

/* A producer of our own: messages under several ack_refs interleaved, so
 * that acknowledgement has groups to make. */
#define REFS 3
typedef struct group_src {
	gs_message *msgs;
	size_t n;
	_Atomic uint64_t calls[REFS], acked[REFS], mixed;
} group_src;

static group_src *the_src; /* the acknowledger's table */

static void group_ack(void *ack_ref, gs_message **ok, size_t n_ok,
		      gs_message **failed, size_t n_failed)
{
	uintptr_t r = (uintptr_t)ack_ref;
	atomic_fetch_add(&the_src->calls[r], 1);
	atomic_fetch_add(&the_src->acked[r], n_ok + n_failed);
	for (size_t i = 0; i < n_ok; i++)
		if ((uintptr_t)ok[i]->ack_ref != r)
			atomic_fetch_add(&the_src->mixed, 1);
	for (size_t i = 0; i < n_failed; i++)
		if ((uintptr_t)failed[i]->ack_ref != r)
			atomic_fetch_add(&the_src->mixed, 1);
}

static const gs_acknowledger group_acknowledger = { .ack = group_ack };

static gs_err group_new(void *arg, gs_pipeline *p, size_t index,
			const gs_stage_opts *opts, gs_stage **out)
{
	(void)index;
	group_src *s = arg;
	void **ev = malloc(s->n * sizeof *ev);
	for (size_t i = 0; i < s->n; i++)
		ev[i] = &s->msgs[i];
	gs_err err = gs_from_array(p, ev, s->n, opts, out);
	free(ev);
	return err;
}

static void group_init(group_src *s, size_t n)
{
	*s = (group_src){ .n = n, .msgs = calloc(n, sizeof *s->msgs) };
	for (size_t i = 0; i < n; i++)
		s->msgs[i] = (gs_message){ .data = GS_EV(i + 1),
					   .acknowledger = &group_acknowledger,
					   .ack_ref = (void *)(i % REFS) };
	the_src = s;
}

/* The messages of `s` acknowledged so far, over every acknowledger. */
static uint64_t acked_in(group_src *s)
{
	uint64_t acked = 0;
	for (size_t r = 0; r < REFS; r++)
		acked += atomic_load(&s->acked[r]);
	return acked;
}

Test(broadway, one_ack_call_per_acknowledger_group_of_a_batch,
     .timeout = GS_TEST_TIMEOUT)
{
	group_src s;
	group_init(&s, 30 * 20);
	ctx c = { 0 };
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, &c,
		&(gs_broadway_opts){
			.producer = { .make = group_new, .arg = &s },
			.processors = { .concurrency = 2 },
			.batchers =
				&(gs_broadway_batcher_opts){
					.batch_size = 30,
					.batch_timeout = 3600000 },
			.n_batchers = 1 },
		&bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	cr_assert_eq(gs_broadway_wait(bw), GS_OK);
	/* Every batch calls each of the REFS acknowledger groups it holds
	 * once, no more. */
	uint64_t calls = 0;
	for (size_t r = 0; r < REFS; r++) {
		cr_assert_eq(atomic_load(&s.acked[r]), s.n / REFS);
		calls += atomic_load(&s.calls[r]);
	}
	cr_assert_eq(atomic_load(&s.mixed), 0);
	cr_assert_leq(calls, REFS * atomic_load(&c.batches));
	gs_broadway_stats st;
	gs_broadway_stats_get(bw, &st);
	cr_assert_eq(st.ack_calls, calls);
	cr_assert_eq(st.successful, s.n);
	gs_broadway_free(bw);
	free(s.msgs);
}

Test(broadway, a_stop_without_drain_acks_what_was_left_as_cancelled,
     .timeout = GS_TEST_TIMEOUT)
{
	group_src s;
	group_init(&s, 2000);
	ctx c = { .sleep_us = 200 };
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, &c,
		&(gs_broadway_opts){
			.producer = { .make = group_new, .arg = &s },
			.processors = { .concurrency = 2, .blocking = true },
			.batchers =
				&(gs_broadway_batcher_opts){
					.batch_size = 50,
					.batch_timeout = 3600000 },
			.n_batchers = 1 },
		&bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	wait_at_least(&c.handled, 100);
	gs_broadway_stats st;
	gs_broadway_stats_get(bw, &st);
	gs_pipeline_stop(gs_broadway_pipeline(bw), GS_STOP_NOW);
	GS_OK_OR_DIE(gs_broadway_stats_get(bw, &st));
	uint64_t acked = acked_in(&s);
	cr_assert_eq(acked, s.n, "acked %llu of %zu", (unsigned long long)acked,
		     s.n);
	cr_assert_eq(st.successful + st.failed, s.n);
	cr_assert_gt(st.cancelled, 0);
	cr_assert_eq(st.successful, atomic_load(&c.batch_msgs));
	gs_broadway_free(bw);
	free(s.msgs);
}

/* Batches closed and waiting for a slow batch processor, or on their way
 * to it, when the pipeline stops without drain: each of their messages is
 * acknowledged failed (the drop dereferenced a NULL pipeline and
 * crashed). */
Test(broadway, a_stop_without_drain_acks_the_batches_on_their_way,
     .timeout = GS_TEST_TIMEOUT)
{
	group_src s;
	group_init(&s, 2000);
	ctx c = { .batch_sleep_us = 20000 };
	gs_broadway *bw;
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, &c,
		&(gs_broadway_opts){
			.producer = { .make = group_new, .arg = &s },
			.processors = { .concurrency = 2 },
			.batchers = &(
				gs_broadway_batcher_opts){ .batch_size = 2,
							   .max_demand = 64,
							   .blocking = true },
			.n_batchers = 1 },
		&bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	/* The first batch is in handle_batch, more wait behind it. */
	wait_at_least(&c.handled, 200);
	gs_broadway_free(bw);
	uint64_t acked = acked_in(&s);
	cr_assert_eq(acked, s.n, "acked %llu of %zu", (unsigned long long)acked,
		     s.n);
	free(s.msgs);
}

/* A thread pushing test batches until the pipeline refuses them. */
typedef struct pusher {
	gs_broadway *bw;
	gs_broadway_test_ref *refs[4096];
	size_t n_refs;
	_Atomic uint64_t pushed;
	uintptr_t next;
} pusher;

static void *push_until_closed(void *arg)
{
	pusher *p = arg;
	while (p->n_refs < 4096) {
		void *data[50];
		for (size_t i = 0; i < 50; i++)
			data[i] = GS_EV(++p->next);
		if (gs_broadway_test_batch(p->bw, data, 50,
					   &p->refs[p->n_refs]))
			break;
		p->n_refs++;
		atomic_fetch_add(&p->pushed, 50);
	}
	return NULL;
}

Test(broadway, a_drain_under_load_acks_everything_it_took,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { .fail_every = 7, .fail_reason = GS_TEST_FAIL };
	gs_broadway *bw = start(
		&c,
		(gs_broadway_opts){
			.producer = { .concurrency = 2 },
			.processors = { .concurrency = 3 },
			.batchers = &(
				gs_broadway_batcher_opts){ .batch_size = 20,
							   .concurrency = 2 },
			.n_batchers = 1 });
	pusher p = { .bw = bw };
	pthread_t t;
	pthread_create(&t, NULL, push_until_closed, &p);
	wait_at_least(&c.handled, 2000);
	cr_assert_eq(gs_broadway_stop(bw), GS_OK);
	pthread_join(t, NULL);
	/* Every message came back: those the processors took with their
	 * own outcome, those still waiting in the producer as cancelled
	 * (for their source to keep), nothing processed among them. */
	gs_broadway_stats st;
	gs_broadway_stats_get(bw, &st);
	uint64_t ok = 0, failed = 0, cancelled = 0;
	for (size_t i = 0; i < p.n_refs; i++) {
		gs_broadway_test_ack a;
		GS_OK_OR_DIE(gs_broadway_test_wait(p.refs[i], 0, &a));
		ok += a.n_ok;
		failed += a.n_failed;
		for (size_t k = 0; k < a.n_failed; k++) {
			cr_assert(a.reasons[k] == GS_TEST_FAIL ||
				  a.reasons[k] == GS_ECANCELED);
			cancelled += a.reasons[k] == GS_ECANCELED;
		}
		gs_broadway_test_ack_fini(&a);
	}
	cr_assert_eq(ok + failed, atomic_load(&p.pushed));
	cr_assert_eq(st.cancelled, cancelled);
	cr_assert_eq(st.received + cancelled, atomic_load(&p.pushed),
		     "received %llu cancelled %llu pushed %llu",
		     (unsigned long long)st.received,
		     (unsigned long long)cancelled,
		     (unsigned long long)atomic_load(&p.pushed));
	cr_assert_eq(st.received, atomic_load(&c.handled));
	cr_assert_eq(st.successful, ok);
	gs_broadway_free(bw);
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - t0->tv_sec) * 1000u +
	       (uint64_t)((t.tv_nsec - t0->tv_nsec) / 1000000L);
}

Test(broadway, the_rate_limiter_never_lets_more_than_allowed_per_interval,
     .timeout = GS_TEST_TIMEOUT)
{
	/* An invariant, not a measurement: by any moment, at most
	 * allowed * (intervals begun) messages have been handled. That the
	 * rate is met closely is bench/'s to show. */
	enum { allowed = 50, interval = 20, n = 600 };
	ctx c = { 0 };
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	gs_broadway *bw = start(
		&c, (gs_broadway_opts){
			    .processors = { .concurrency = 2 },
			    .rate_limiting = { .allowed_messages = allowed,
					       .interval = interval } });
	void **data = numbers(n);
	gs_broadway_test_ref *ref;
	GS_OK_OR_DIE(gs_broadway_test_batch(bw, data, n, &ref));
	uint64_t handled, violations = 0, samples = 0;
	do {
		handled = atomic_load(&c.handled);
		uint64_t bound = allowed * (ms_since(&t0) / interval + 1);
		violations += handled > bound;
		samples++;
		usleep(500);
	} while (handled < n);
	gs_broadway_test_ack a;
	GS_OK_OR_DIE(gs_broadway_test_wait(ref, WAIT_MS, &a));
	check_once(&a, n);
	cr_assert_eq(violations, 0, "%llu of %llu samples over the bound",
		     (unsigned long long)violations,
		     (unsigned long long)samples);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
	free(data);
}

Test(broadway, blocking_processors_may_sleep_in_handle_message,
     .timeout = GS_TEST_TIMEOUT)
{
	ctx c = { .sleep_us = 100 };
	gs_broadway *bw = start(
		&c, (gs_broadway_opts){ .processors = { .concurrency = 8,
							.blocking = true } });
	size_t n = 800;
	gs_broadway_test_ack a = send_and_wait(bw, n);
	gs_broadway_test_ack_fini(&a);
	gs_broadway_free(bw);
}

/* Counts the refusals logged with no stage; keeps the last. */
typedef struct said {
	int lines;
	char last[256];
} said;

static void keep_said(void *arg, gs_log_level level, const gs_stage *stage,
		      const char *msg)
{
	said *w = arg;
	if (level != GS_LOG_ERROR || stage)
		return;
	w->lines++;
	snprintf(w->last, sizeof w->last, "%s", msg);
}

/* Expects code `want` and one more logged line that contains `why`. */
#define REFUSED(w, want, why, expr)                                            \
	do {                                                                   \
		int before_ = (w)->lines;                                      \
		cr_assert_eq((expr), (want), "%s", #expr);                     \
		cr_assert_eq((w)->lines, before_ + 1, "%s: no message",        \
			     #expr);                                           \
		cr_assert(strstr((w)->last, (why)), "%s", (w)->last);          \
	} while (0)

Test(broadway, bad_options_are_refused_and_leave_nothing)
{
	gs_broadway *bw = (gs_broadway *)&bw;
	said w = { 0 };
	gs_broadway_opts o = { .producer = gs_broadway_test_producer(),
			       .pipeline = { .log = keep_said,
					     .log_arg = &w } };
	REFUSED(&w, GS_EINVAL, "NULL ops",
		gs_broadway_new(NULL, NULL, &o, &bw));
	cr_assert_eq(gs_broadway_new(&ops, NULL, NULL, &bw), GS_EINVAL);
	REFUSED(&w, GS_EINVAL, "no handle_message",
		gs_broadway_new(&(gs_broadway_ops){ 0 }, NULL, &o, &bw));
	gs_broadway_opts nomake = { .pipeline = o.pipeline };
	REFUSED(&w, GS_EINVAL, "no producer.make",
		gs_broadway_new(&ops, NULL, &nomake, &bw));
	gs_broadway_opts v = o;
	v.version = GS_BROADWAY_OPTS_VERSION + 1;
	REFUSED(&w, GS_EVERSION, "newer", gs_broadway_new(&ops, NULL, &v, &bw));
	gs_broadway_ops vo = ops;
	vo.version = GS_BROADWAY_OPS_VERSION + 1;
	REFUSED(&w, GS_EVERSION, "newer", gs_broadway_new(&vo, NULL, &o, &bw));
	gs_broadway_opts d = o;
	d.processors.max_demand = 5;
	d.processors.min_demand = 5;
	REFUSED(&w, GS_EDEMAND, "min_demand",
		gs_broadway_new(&ops, NULL, &d, &bw));
	d.processors.min_demand = 0;
	d.processors.max_demand = GS_MAX_DEMAND + 1;
	REFUSED(&w, GS_EINVAL, "processors.max_demand",
		gs_broadway_new(&ops, NULL, &d, &bw));
	gs_broadway_opts huge_batch = o;
	huge_batch.batchers = &(
		gs_broadway_batcher_opts){ .max_demand = GS_MAX_DEMAND + 1 };
	huge_batch.n_batchers = 1;
	REFUSED(&w, GS_EINVAL, "batcher's max_demand",
		gs_broadway_new(&ops, NULL, &huge_batch, &bw));
	gs_broadway_opts nb = o;
	nb.n_batchers = 1; /* and no batchers array */
	REFUSED(&w, GS_EINVAL, "no batchers",
		gs_broadway_new(&ops, NULL, &nb, &bw));
	gs_broadway_ops no_batch = { .handle_message = on_message };
	nb.batchers = &(gs_broadway_batcher_opts){ 0 };
	REFUSED(&w, GS_EINVAL, "no handle_batch",
		gs_broadway_new(&no_batch, NULL, &nb, &bw));
	cr_assert_eq(bw, (gs_broadway *)&bw, "out-param touched on failure");
	gs_broadway_free(NULL);
	/* test helpers on a pipeline that is not built on the test
	 * producer */
	group_src s;
	group_init(&s, 1);
	ctx c = { 0 };
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, &c,
		&(gs_broadway_opts){
			.producer = { .make = group_new, .arg = &s } },
		&bw));
	gs_broadway_test_ref *ref;
	cr_assert_eq(gs_broadway_test_message(bw, GS_EV(1), &ref), GS_ESTATE);
	gs_broadway_free(bw); /* never started: the message is cancelled */
	cr_assert_eq(atomic_load(&s.acked[0]), 1);
	free(s.msgs);
}

static size_t residue_2(void *arg, const void *event)
{
	(void)arg;
	return (uintptr_t)((const gs_message *)event)->data % 2;
}

/* A producer.make that sets a dispatcher of its own instead of the one it
 * is given. */
static gs_err broadcast_new(void *arg, gs_pipeline *p, size_t index,
			    const gs_stage_opts *opts, gs_stage **out)
{
	gs_stage_opts mine = *opts;
	mine.dispatcher = *(const gs_dispatcher *)arg;
	return group_new(the_src, p, index, &mine, out);
}

Test(broadway, a_producer_that_dispatches_its_own_way_is_refused)
{
	/* A broadcast producer would hand every message to each processor,
	 * and it would be acked once per processor. */
	said w = { 0 };
	group_src s;
	group_init(&s, 4);
	gs_dispatcher own[] = {
		gs_dispatcher_broadcast(),
		gs_dispatcher_partition(2, residue_2, NULL),
	};
	for (size_t k = 0; k < sizeof own / sizeof *own; k++) {
		gs_broadway *bw = (gs_broadway *)&bw;
		ctx c = { 0 };
		REFUSED(&w, GS_EINVAL, "did not pass on the dispatcher",
			gs_broadway_new(
				&ops, &c,
				&(gs_broadway_opts){
					.producer = { .make = broadcast_new,
						      .arg = &own[k] },
					.processors = { .concurrency = 2 },
					.pipeline = { .log = keep_said,
						      .log_arg = &w } },
				&bw));
		cr_assert_eq(bw, (gs_broadway *)&bw);
		cr_assert_eq(c.handled, 0);
	}
	/* Partitioned processors: the producer gets Broadway's partition
	 * dispatcher, and passing it on is accepted. */
	gs_broadway *bw;
	ctx c = { 0 };
	GS_OK_OR_DIE(gs_broadway_new(
		&ops, &c,
		&(gs_broadway_opts){
			.producer = { .make = group_new, .arg = &s },
			.processors = { .concurrency = 2,
					.partition_by = data_key } },
		&bw));
	GS_OK_OR_DIE(gs_broadway_start(bw));
	cr_assert_eq(gs_broadway_wait(bw), GS_OK);
	gs_broadway_free(bw);
	size_t acked = acked_in(&s);
	/* Each of the three builds acked the 4 messages once: the refused
	 * ones as cancelled, when they freed their producer. */
	cr_assert_eq(acked, 3 * 4, "each message acked once: %zu", acked);
	free(s.msgs);
}
