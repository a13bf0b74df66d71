// SPDX-License-Identifier: MIT
/*
 * The executor: stages as tasks on a few worker threads. Fairness on one
 * worker, blocking stages beside scheduled ones, blocking calls refused
 * inside scheduled callbacks, many pipelines on one executor, and the
 * warning for a callback that holds its worker, timers (the very long
 * chain is in test_scale.c). It reads the executor's timer heap
 * (executor.h, private).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "executor.h"
#include "gs_test.h"

static gs_executor *one_worker(void)
{
	gs_executor *ex = NULL;
	GS_OK_OR_DIE(gs_executor_new(&(gs_executor_opts){ .workers = 1 }, &ex));
	cr_assert_eq(gs_executor_workers(ex), 1);
	return ex;
}

/* producer -> consumer on `ex`; `total` SIZE_MAX for an endless one. */
typedef struct duo {
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp;
	recorder r;
} duo;

static void duo_new(duo *d, gs_executor *ex, size_t total)
{
	*d = (duo){ .sp = { .total = total }, .r = { .check_order = true } };
	GS_OK_OR_DIE(
		gs_pipeline_new(&(gs_pipeline_opts){ .executor = ex }, &d->p));
	GS_OK_OR_DIE(gs_stage_new(d->p, GS_PRODUCER, &seq_producer_ops, &d->sp,
				  NULL, &d->prod));
	GS_OK_OR_DIE(gs_stage_new(d->p, GS_CONSUMER, &recorder_ops, &d->r, NULL,
				  &d->cons));
	recorder_subscribe(&d->r, d->cons, d->prod, NULL);
}

Test(executor, bad_options_are_refused)
{
	gs_executor *ex = NULL;
	cr_assert_eq(gs_executor_new(NULL, NULL), GS_EINVAL);
	cr_assert_eq(gs_executor_new(&(gs_executor_opts){ .workers = 100000 },
				     &ex),
		     GS_EINVAL);
	cr_assert_null(ex);
	cr_assert_eq(gs_executor_workers(NULL), 0);
	gs_executor_free(NULL);
	GS_OK_OR_DIE(gs_executor_new(NULL, &ex));
	cr_assert_geq(gs_executor_workers(ex), 1);
	gs_executor_free(ex);
}

Test(executor, a_busy_pipeline_does_not_starve_another_on_one_worker,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_executor *ex = one_worker();
	duo busy, small;
	duo_new(&busy, ex, SIZE_MAX);
	duo_new(&small, ex, 100000);
	GS_OK_OR_DIE(gs_pipeline_start(busy.p));
	wait_at_least(&busy.r.received, 100000);
	/* The endless one always has work; the finite one still finishes. */
	GS_OK_OR_DIE(gs_pipeline_start(small.p));
	cr_assert_eq(gs_pipeline_wait(small.p), GS_OK);
	cr_assert_eq(atomic_load(&small.r.received), 100000);
	cr_assert_eq(atomic_load(&small.r.order_errors), 0);
	uint64_t before = atomic_load(&busy.r.received);
	wait_at_least(&busy.r.received, before + 100000);
	GS_OK_OR_DIE(gs_pipeline_stop(busy.p, GS_STOP_NOW));
	gs_pipeline_free(small.p);
	gs_pipeline_free(busy.p);
	gs_executor_free(ex);
}

/* --- messages take turns too ------------------------------------------- */

typedef struct flood {
	_Atomic uint64_t handled; /* casts the flooded stage handled */
	_Atomic uint64_t seen;    /* `handled` when the other one ran */
	_Atomic int other_ran;
	_Atomic uint64_t *of; /* the other's: the flood's counter */
	/* The flood's: what its first cast does, from inside it, so that
	 * nothing depends on when the test's thread gets to run. */
	gs_stage *poke; /* cast to this one */
	bool stop;      /* stop itself */
} flood;

/* About 50 microseconds of work without blocking, as a callback that
 * computes something. */
static void work_a_little(void)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while ((t.tv_sec - t0.tv_sec) * 1000000000L + t.tv_nsec - t0.tv_nsec <
	       50000);
}

static int flooded_cast(void *state, gs_stage *stage, void *msg)
{
	(void)msg;
	flood *f = state;
	work_a_little();
	if (atomic_fetch_add(&f->handled, 1) == 0) {
		if (f->poke)
			GS_OK_OR_DIE(gs_cast(f->poke, NULL));
		if (f->stop)
			GS_OK_OR_DIE(gs_stage_stop(stage, GS_OK));
	}
	return GS_OK;
}

static int other_cast(void *state, gs_stage *stage, void *msg)
{
	(void)stage, (void)msg;
	flood *f = state;
	atomic_store(&f->seen, atomic_load(f->of));
	atomic_store(&f->other_ran, 1);
	return GS_OK;
}

/* A stage with a thousand casts queued at once handles them a turn's
 * share at a time: another stage on the same worker, cast once the flood
 * began (by its first cast), runs before the flood is through. Timers are
 * handled the same way (gs__turn_full). */
Test(executor, a_flood_of_casts_does_not_starve_another_stage_on_one_worker,
     .timeout = GS_TEST_TIMEOUT)
{
	enum { CASTS = 1000 };
	static const gs_stage_ops flooded_ops = { .handle_demand = nop_demand,
						  .handle_cast = flooded_cast };
	static const gs_stage_ops other_ops = { .handle_demand = nop_demand,
						.handle_cast = other_cast };
	gs_executor *ex = one_worker();
	gs_pipeline *p;
	gs_stage *a, *b;
	flood fa = { 0 }, fb = { 0 };
	fb.of = &fa.handled;
	GS_OK_OR_DIE(
		gs_pipeline_new(&(gs_pipeline_opts){ .executor = ex }, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &flooded_ops, &fa, NULL, &a));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &other_ops, &fb, NULL, &b));
	fa.poke = b;
	for (int i = 0; i < CASTS; i++)
		GS_OK_OR_DIE(gs_cast(a, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	wait_int_at_least(&fb.other_ran, 1);
	cr_assert_lt(atomic_load(&fb.seen), CASTS,
		     "the other stage waited for the whole flood");
	wait_at_least(&fa.handled, CASTS);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
	gs_executor_free(ex);
}

/* A stop is seen after a turn's share of the casts: the rest go to
 * msg_free, not through handle_cast. The flood asks for it in its first
 * cast, so that the test's thread cannot be the one that is late. */
Test(executor, a_stop_does_not_wait_for_a_flood_of_casts,
     .timeout = GS_TEST_TIMEOUT)
{
	enum { CASTS = 1000 };
	static const gs_stage_ops flooded_ops = { .handle_demand = nop_demand,
						  .handle_cast = flooded_cast };
	_Atomic uint64_t freed = 0;
	gs_executor *ex = one_worker();
	gs_pipeline *p;
	gs_stage *a;
	flood fa = { 0 };
	GS_OK_OR_DIE(
		gs_pipeline_new(&(gs_pipeline_opts){ .executor = ex }, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &flooded_ops, &fa,
				  &(gs_stage_opts){ .msg_free = count_free,
						    .msg_free_arg = &freed },
				  &a));
	fa.stop = true;
	for (int i = 0; i < CASTS; i++)
		GS_OK_OR_DIE(gs_cast(a, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_pipeline_wait(p));
	cr_assert_eq(atomic_load(&fa.handled) + atomic_load(&freed), CASTS);
	cr_assert_gt(atomic_load(&freed), 0, "every cast was handled first");
	gs_pipeline_free(p);
	gs_executor_free(ex);
}

/* --- a blocking stage beside scheduled ones ----------------------------- */

typedef struct held {
	recorder rec;
	_Atomic int entered;
	_Atomic int open;
	pthread_t self;
	_Atomic int moved; /* callbacks seen on another thread */
} held;

static int held_events(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	held *h = state;
	(void)stage;
	if (!atomic_exchange(&h->entered, 1))
		h->self = pthread_self();
	else if (!pthread_equal(h->self, pthread_self()))
		atomic_fetch_add(&h->moved, 1);
	while (!atomic_load(&h->open)) {
		struct timespec ts = { .tv_nsec = 200000 };
		nanosleep(&ts, NULL);
	}
	return recorder_take(&h->rec, from, events, n);
}

static const gs_stage_ops held_ops = { .handle_events = held_events };

Test(executor, a_blocking_stage_blocks_only_itself, .timeout = GS_TEST_TIMEOUT)
{
	gs_executor *ex = one_worker();
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = 5000 };
	held h = { .rec = { .check_order = true } };
	GS_OK_OR_DIE(
		gs_pipeline_new(&(gs_pipeline_opts){ .executor = ex }, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prod));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &held_ops, &h,
				  &(gs_stage_opts){ .blocking = true,
						    .name = "slow webhook" },
				  &cons));
	recorder_subscribe(&h.rec, cons, prod,
			   &(gs_sub_opts){ .max_demand = 10 });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	wait_int_at_least(&h.entered, 1);
	/* The only worker is free: another pipeline on it runs to the end
	 * while the blocking stage sits in its callback. */
	duo other;
	duo_new(&other, ex, 50000);
	GS_OK_OR_DIE(gs_pipeline_start(other.p));
	cr_assert_eq(gs_pipeline_wait(other.p), GS_OK);
	cr_assert_eq(atomic_load(&other.r.received), 50000);
	atomic_store(&h.open, 1);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&h.rec.received), 5000);
	cr_assert_eq(atomic_load(&h.moved), 0, "it keeps its own thread");
	gs_pipeline_free(other.p);
	gs_pipeline_free(p);
	gs_executor_free(ex);
}

/* --- blocking calls inside callbacks ------------------------------------ */

typedef struct caller {
	gs_stage *callee, *push, *stream;
	_Atomic int call_err, push_err, push0_err, next_err;
	_Atomic int done;
} caller;

static int echo_call(void *state, gs_stage *stage, void *request, void **reply)
{
	(void)state, (void)stage;
	*reply = request;
	return GS_OK;
}

static int try_blocking_calls(void *state, gs_stage *stage)
{
	caller *c = state;
	(void)stage;
	void *reply, *ev = GS_EV(1), *got[1];
	size_t n;
	/* Waits for ever where one is allowed to (a blocking stage), so
	 * that a slow machine cannot make them time out. */
	atomic_store(&c->call_err, gs_call(c->callee, NULL, &reply, -1));
	atomic_store(&c->push_err, gs_push(c->push, &ev, 1, -1));
	atomic_store(&c->push0_err, gs_push(c->push, &ev, 1, 0));
	atomic_store(&c->next_err, gs_stream_next(c->stream, got, 1, &n, 100));
	atomic_store(&c->done, 1);
	return GS_OK;
}

static void run_caller(caller *c, bool blocking)
{
	static const gs_stage_ops callee_ops = { .handle_events = nop_events,
						 .handle_call = echo_call };
	static const gs_stage_ops caller_ops = { .init = try_blocking_calls,
						 .handle_events = nop_events };
	gs_pipeline *p;
	gs_stage *s;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &callee_ops, NULL, NULL,
				  &c->callee));
	GS_OK_OR_DIE(gs_push_producer(p, NULL, &c->push));
	GS_OK_OR_DIE(gs_stream(p, NULL, &c->stream));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &caller_ops, c,
				  &(gs_stage_opts){ .blocking = blocking },
				  &s));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(atomic_load(&c->done), 1);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
}

Test(executor, blocking_calls_are_refused_inside_scheduled_callbacks,
     .timeout = GS_TEST_TIMEOUT)
{
	caller c = { 0 };
	run_caller(&c, false);
	cr_assert_eq(atomic_load(&c.call_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&c.push_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&c.next_err), GS_ETHREAD);
	/* Failing fast does not block, so it is allowed. */
	cr_assert_eq(atomic_load(&c.push0_err), GS_OK);
}

Test(executor, blocking_stages_may_make_blocking_calls,
     .timeout = GS_TEST_TIMEOUT)
{
	caller c = { 0 };
	run_caller(&c, true);
	cr_assert_eq(atomic_load(&c.call_err), GS_OK);
	cr_assert_eq(atomic_load(&c.push_err), GS_OK);
	cr_assert_eq(atomic_load(&c.push0_err), GS_OK);
	cr_assert_eq(atomic_load(&c.next_err), GS_ETIMEDOUT);
}

/* --- many pipelines, one executor ---------------------------------------- */

#define PIPELINES 16

Test(executor, pipelines_share_an_executor_that_outlives_its_handle,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_executor *ex;
	GS_OK_OR_DIE(gs_executor_new(&(gs_executor_opts){ .workers = 2 }, &ex));
	duo d[PIPELINES];
	for (size_t i = 0; i < PIPELINES; i++)
		duo_new(&d[i], ex, 20000 + i);
	/* The pipelines hold references: the workers live on. */
	gs_executor_free(ex);
	for (size_t i = 0; i < PIPELINES; i++)
		GS_OK_OR_DIE(gs_pipeline_start(d[i].p));
	for (size_t i = 0; i < PIPELINES; i++) {
		cr_assert_eq(gs_pipeline_wait(d[i].p), GS_OK);
		cr_assert_eq(atomic_load(&d[i].r.received), 20000 + i);
		cr_assert_eq(atomic_load(&d[i].r.order_errors), 0);
		gs_pipeline_free(d[i].p);
	}
}

/* --- a callback that holds its worker ------------------------------------ */

typedef struct warned {
	_Atomic int count;
} warned;

static void catch_warning(void *arg, gs_log_level level, const gs_stage *stage,
			  const char *msg)
{
	warned *w = arg;
	/* The dawdler's only: a machine that holds up the producer's
	 * callback as long may have it warned about too. */
	if (level != GS_LOG_WARN || !strstr(msg, "held a worker") ||
	    strcmp(gs_stage_name(stage), "dawdler") != 0)
		return;
	atomic_fetch_add(&w->count, 1);
}

static int dawdle(void *state, gs_stage *stage, gs_sub *from, void **events,
		  size_t n)
{
	(void)stage, (void)from, (void)events;
	struct timespec ts = { .tv_nsec = 30 * 1000000L };
	nanosleep(&ts, NULL);
	atomic_fetch_add((_Atomic uint64_t *)state, n);
	return GS_OK;
}

static const gs_stage_ops dawdle_ops = { .handle_events = dawdle };

static int run_dawdler(bool blocking)
{
	warned w = { 0 };
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = 6 };
	_Atomic uint64_t got = 0;
	GS_OK_OR_DIE(
		gs_pipeline_new(&(gs_pipeline_opts){ .log = catch_warning,
						     .log_arg = &w,
						     .warn_callback_ms = 10 },
				&p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prod));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &dawdle_ops, &got,
				  &(gs_stage_opts){ .name = "dawdler",
						    .blocking = blocking },
				  &cons));
	/* Two events a chunk: three long callbacks. */
	GS_OK_OR_DIE(gs_subscribe(cons, prod, &(gs_sub_opts){ .max_demand = 4 },
				  NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&got), 6);
	gs_pipeline_free(p);
	return atomic_load(&w.count);
}

Test(executor, a_callback_that_holds_its_worker_is_logged_once,
     .timeout = GS_TEST_TIMEOUT)
{
	cr_assert_eq(run_dawdler(false), 1);
	cr_assert_eq(run_dawdler(true), 0, "a blocking stage may take long");
}

static void sleep_30ms(void)
{
	struct timespec ts = { .tv_nsec = 30 * 1000000L };
	nanosleep(&ts, NULL);
}

static void dawdle_terminate(void *state, gs_stage *stage, int reason)
{
	(void)state, (void)stage, (void)reason;
	sleep_30ms();
}

static int dawdle_cancel(void *state, gs_stage *stage, gs_sub *sub,
			 gs_role role, int reason)
{
	(void)state, (void)stage, (void)sub, (void)reason;
	if (role == GS_ROLE_PRODUCER)
		sleep_30ms();
	return GS_OK;
}

/* terminate and a producer's handle_cancel are callbacks like the others:
 * a slow one is warned about and counted in busy_ns (they were neither). */
Test(executor, terminate_and_a_producers_cancel_count_as_callback_time,
     .timeout = GS_TEST_TIMEOUT)
{
	warned w = { 0 };
	gs_pipeline *p;
	GS_OK_OR_DIE(
		gs_pipeline_new(&(gs_pipeline_opts){ .log = catch_warning,
						     .log_arg = &w,
						     .warn_callback_ms = 10 },
				&p));
	gs_stage *prod, *cons;
	GS_OK_OR_DIE(gs_stage_new(
		p, GS_PRODUCER,
		&(gs_stage_ops){ .handle_demand = nop_demand,
				 .handle_cancel = dawdle_cancel,
				 .terminate = dawdle_terminate },
		NULL, &(gs_stage_opts){ .name = "dawdler" }, &prod));
	GS_OK_OR_DIE(gs_stage_new(
		p, GS_CONSUMER, &(gs_stage_ops){ .handle_events = nop_events },
		NULL, NULL, &cons));
	gs_sub *sub;
	GS_OK_OR_DIE(gs_subscribe(cons, prod, NULL, &sub));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_cancel(sub)); /* the producer's handle_cancel */
	/* Counted, then warned of: both, or this waits for ever. */
	gs_stats st;
	do {
		nap();
		GS_OK_OR_DIE(gs_stage_stats(prod, &st));
	} while (st.busy_ns < 30 * 1000000ull || !atomic_load(&w.count));
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW)); /* and terminate */
	cr_expect_eq(atomic_load(&w.count), 1, "warned of once");
	GS_OK_OR_DIE(gs_stage_stats(prod, &st));
	cr_expect_geq(st.busy_ns, 60 * 1000000ull, "terminate counts");
	gs_pipeline_free(p);
}

/* --- timers ---------------------------------------------------------------- */

static int count_infos(void *state, gs_stage *stage, void *msg)
{
	(void)stage, (void)msg;
	atomic_fetch_add((_Atomic uint64_t *)state, 1);
	return GS_OK;
}

/* A stage with an hour's timer pending and many short ones that fire: its
 * entry in the executor's heap moves, one per stage. Each short one that
 * fired left the far one registered again, so the heap grew by one entry
 * per short timer for the hour. */
Test(executor, a_stage_holds_one_timer_entry_however_many_fire,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_executor *ex = one_worker();
	gs_pipeline *p;
	GS_OK_OR_DIE(
		gs_pipeline_new(&(gs_pipeline_opts){ .executor = ex }, &p));
	_Atomic uint64_t infos = 0;
	gs_stage *s;
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER,
				  &(gs_stage_ops){ .handle_demand = nop_demand,
						   .handle_info = count_infos },
				  &infos, NULL, &s));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_send_after(s, 3600 * 1000, NULL));
	for (uint64_t k = 1; k <= 200; k++) {
		GS_OK_OR_DIE(gs_send_after(s, 1, NULL));
		wait_at_least(&infos, k);
	}
	/* The far timer only, once the stage has gone idle again. */
	size_t entries;
	while ((entries = gs__executor_timers(ex)) != 1 && entries < 3)
		nap();
	cr_expect_eq(entries, 1);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	cr_expect_eq(gs__executor_timers(ex), 0, "its entry goes with it");
	gs_pipeline_free(p);
	gs_executor_free(ex);
}

/* --- thread names --------------------------------------------------------- */

static int note_thread_name(void *state, gs_stage *stage)
{
	(void)stage;
	pthread_getname_np(pthread_self(), state, 16);
	return GS_OK;
}

Test(executor, threads_carry_the_worker_or_the_blocking_stage_name,
     .timeout = GS_TEST_TIMEOUT)
{
	static const gs_stage_ops ops = { .init = note_thread_name,
					  .handle_events = nop_events };
	char scheduled[16] = "", blocking[16] = "";
	gs_executor *ex = NULL;
	GS_OK_OR_DIE(gs_executor_new(
		&(gs_executor_opts){ .workers = 1, .name = "names" }, &ex));
	gs_pipeline *p;
	GS_OK_OR_DIE(
		gs_pipeline_new(&(gs_pipeline_opts){ .executor = ex }, &p));
	gs_stage *s;
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &ops, scheduled, NULL, &s));
	/* Longer than a thread name: its first 15 characters are kept. */
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &ops, blocking,
			     &(gs_stage_opts){ .name = "audit-log-writer-1",
					       .blocking = true },
			     &s));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_str_eq(scheduled, "names-w0");
	cr_assert_str_eq(blocking, "audit-log-write");
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
	gs_executor_free(ex);
}

/* What gs_executor_new(NULL) says on stderr, and its worker count, with
 * GS_WORKERS set to `value`. */
static size_t workers_with(const char *value, char *said, size_t size)
{
	setenv("GS_WORKERS", value, 1);
	stderr_capture c;
	stderr_capture_begin(&c);
	gs_executor *ex;
	gs_err err = gs_executor_new(NULL, &ex);
	stderr_capture_end(&c, said, size);
	GS_OK_OR_DIE(err);
	size_t n = gs_executor_workers(ex);
	gs_executor_free(ex);
	return n;
}

Test(executor, a_bad_gs_workers_is_ignored_with_a_warning,
     .timeout = GS_TEST_TIMEOUT)
{
	char said[256];
	cr_expect_eq(workers_with("2", said, sizeof said), 2);
	cr_expect_str_empty(said);
	size_t dflt = workers_with("abc", said, sizeof said);
	cr_expect(strstr(said, "GS_WORKERS='abc'"), "said: '%s'", said);
	cr_expect_eq(workers_with("0", said, sizeof said), dflt);
	cr_expect(strstr(said, "GS_WORKERS='0'"), "said: '%s'", said);
	cr_expect_eq(workers_with("5000", said, sizeof said), dflt);
	cr_expect(strstr(said, "GS_WORKERS='5000'"), "said: '%s'", said);
}
