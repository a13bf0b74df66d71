// SPDX-License-Identifier: MIT
/*
 * Out of memory (or of threads): the library must never hang and never
 * lose an event silently when an allocation fails. This suite replaces
 * malloc and its kin, and pthread_create, for the whole process (the
 * library's included) with versions that fail on command, so it is built
 * only without sanitizers, whose own allocators and thread hooks it would
 * displace.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_test.h"

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);

/* -1: allocations succeed; k >= 0: the k-th allocation from now fails (0
 * the next one), and the others succeed. `all`: every one fails. */
static _Atomic long countdown = -1;
static _Atomic bool all;
static _Atomic long failed;

/* Nonzero: every allocation of at least this many bytes fails. */
static _Atomic size_t big;

/* A failure sets errno, as the real ones do (glibc's own callers check). */
static bool fail_now(size_t bytes)
{
	size_t limit = atomic_load_explicit(&big, memory_order_relaxed);
	if (limit && bytes >= limit)
		;
	else if (!atomic_load_explicit(&all, memory_order_relaxed)) {
		if (atomic_load_explicit(&countdown, memory_order_relaxed) < 0)
			return false;
		if (atomic_fetch_sub(&countdown, 1) != 0)
			return false;
	}
	atomic_fetch_add(&failed, 1);
	errno = ENOMEM;
	return true;
}

void *malloc(size_t n)
{
	return fail_now(n) ? NULL : __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	return fail_now(size && n > SIZE_MAX / size ? SIZE_MAX : n * size)
		       ? NULL
		       : __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	return fail_now(n) ? NULL : __libc_realloc(p, n);
}

void *aligned_alloc(size_t align, size_t n)
{
	return fail_now(n) ? NULL : __libc_memalign(align, n);
}

/* Set: pthread_create fails as it does at a thread limit. */
static _Atomic bool no_threads;

int pthread_create(pthread_t *th, const pthread_attr_t *attr,
		   void *(*fn)(void *), void *arg)
{
	static int (*real)(pthread_t *, const pthread_attr_t *,
			   void *(*)(void *), void *);
	if (atomic_load(&no_threads))
		return EAGAIN;
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "pthread_create");
	return real(th, attr, fn, arg);
}

static void arm(long k)
{
	atomic_store(&failed, 0);
	atomic_store(&countdown, k);
}

static void disarm(void)
{
	atomic_store(&big, 0);
	atomic_store(&all, false);
	atomic_store(&countdown, -1);
}

#define EVENTS 2000

static bool tolerated(gs_err err)
{
	return err == GS_OK || err == GS_ENOMEM || err == GS_ESPAWN;
}

/* The end of a run built with `err` so far: starts and waits for it if
 * the build succeeded (any failure on the way is out of memory, no thread,
 * or what they closed), then frees it, which must succeed. */
static void finish_run(gs_pipeline *p, gs_err err)
{
	if (!err)
		err = gs_pipeline_start(p);
	if (!err)
		err = gs_pipeline_wait(p);
	cr_assert(tolerated(err) || err == GS_ECLOSED, "run: %s (%d)",
		  gs_strerror(err), (int)err);
	cr_assert_eq(gs_pipeline_free(p), GS_OK);
}

/* counter -> mapper -> recorder, every call checked; a failure on the way
 * (out of memory, or no thread) ends the run, which must still account
 * for every event produced. Returns the number of events produced. */
static uint64_t run_once(tally *t)
{
	gs_pipeline *p = NULL;
	gs_stage *src = NULL, *map = NULL, *cons = NULL;
	seq_producer sp = { .total = EVENTS };
	mapper m = { .rec = { .tally = NULL } };
	recorder r = { .tally = t };
	gs_stage_opts o = { .event_free = tally_free, .event_free_arg = t };
	gs_err err = gs_pipeline_new(NULL, &p);
	cr_assert(tolerated(err), "gs_pipeline_new: %d", (int)err);
	if (err)
		return 0;
	if (!err)
		err = gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, &o,
				   &src);
	if (!err)
		err = gs_stage_new(p, GS_PRODUCER_CONSUMER, &mapper_ops, &m, &o,
				   &map);
	if (!err)
		err = gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL,
				   &cons);
	if (!err)
		err = gs_subscribe(map, src, &(gs_sub_opts){ .max_demand = 64 },
				   NULL);
	if (!err)
		err = gs_subscribe(cons, map,
				   &(gs_sub_opts){ .max_demand = 50 }, NULL);
	finish_run(p, err);
	return atomic_load(&sp.emitted);
}

/* Fails each allocation of a `run` in turn (the k-th in the k-th run),
 * until a run makes none fail; each run must account for the events it
 * produced (tally_check, with `all` as it says). */
static void sweep(uint64_t (*run)(tally *t), bool all)
{
	long k;
	for (k = 0; k < 5000; k++) {
		tally t;
		tally_init(&t, EVENTS);
		arm(k);
		uint64_t produced = run(&t);
		bool hit = atomic_load(&failed) > 0;
		disarm();
		tally_check(&t, produced, all);
		tally_fini(&t);
		if (!hit)
			break;
	}
	cr_assert_lt(k, 5000, "the sweep never ran out of allocations");
	cr_log_info("failed each of %ld allocations in turn", k);
	cr_assert_gt(k, 10, "only %ld allocations: is the wrapper in use?", k);
}

Test(oom, every_single_failed_allocation_ends_cleanly, .timeout = 120)
{
	/* The runs allocate a few hundred times; fail each in turn. */
	sweep(run_once, false);
}

/* A pool's on_done, which owns each event: counts its results and marks
 * the event freed in the tally. */
typedef struct pool_results {
	tally *t;
	_Atomic uint64_t ok, cancelled, nomem, other;
} pool_results;

static int pool_ok(void *arg, void *event)
{
	(void)arg, (void)event;
	return GS_OK;
}

static void pool_done(void *arg, void *event, int result)
{
	pool_results *r = arg;
	atomic_fetch_add(result == GS_OK          ? &r->ok
			 : result == GS_ECANCELED ? &r->cancelled
			 : result == GS_ENOMEM    ? &r->nomem
						  : &r->other,
			 1);
	tally_free(event, r->t);
}

/* counter -> pool: whichever allocation fails, every event produced goes
 * once to on_done, with the handler's result, GS_ECANCELED or GS_ENOMEM
 * (pool.h), or back to the producer's event_free; the pool counts as
 * cancelled what never ran. */
static uint64_t run_pool_once(tally *t)
{
	pool_results r = { .t = t }, *res = &r;
	gs_pipeline *p = NULL;
	gs_pool *pool = NULL;
	gs_stage *src = NULL;
	seq_producer sp = { .total = EVENTS };
	gs_err err = gs_pipeline_new(NULL, &p);
	cr_assert(tolerated(err), "gs_pipeline_new: %d", (int)err);
	if (err)
		return 0;
	err = gs_pool_new(p,
			  &(gs_pool_opts){ .workers = 2,
					   .max_demand = 64,
					   .handler = pool_ok,
					   .on_done = pool_done,
					   .arg = res },
			  &pool);
	if (!err)
		err = gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp,
				   &(gs_stage_opts){ .event_free = tally_free,
						     .event_free_arg = t },
				   &src);
	if (!err)
		err = gs_subscribe(gs_pool_stage(pool), src, NULL, NULL);
	finish_run(p, err);
	if (pool) {
		gs_pool_stats st;
		GS_OK_OR_DIE(gs_pool_stats_get(pool, &st));
		cr_assert_eq(st.cancelled, atomic_load(&res->cancelled) +
						   atomic_load(&res->nomem));
		gs_pool_free(pool);
	}
	cr_assert_eq(atomic_load(&res->other), 0);
	return atomic_load(&sp.emitted);
}

Test(oom, a_pool_accounts_for_every_event_whichever_allocation_fails,
     .timeout = 120)
{
	sweep(run_pool_once, true);
}

/* A Broadway run with two batchers (the second with two batch
 * processors): its messages, made by a generator, are acknowledged into
 * the tally (ok or failed, each once). */
#define BW_MESSAGES 400

typedef struct bw_run {
	tally *t;
	gs_message msgs[BW_MESSAGES];
	size_t next;
} bw_run;

static void bw_ack(void *ref, gs_message **ok, size_t n_ok, gs_message **failed,
		   size_t n_failed)
{
	for (size_t i = 0; i < n_ok + n_failed; i++)
		tally_free(i < n_ok ? ok[i]->data : failed[i - n_ok]->data,
			   ref);
}

static const gs_acknowledger bw_acker = { .ack = bw_ack };

static long bw_gen(void *arg, void **out, size_t max)
{
	bw_run *r = arg;
	size_t k = 0;
	for (; k < max && r->next < BW_MESSAGES; k++, r->next++) {
		r->msgs[r->next] = (gs_message){ .data = GS_EV(r->next),
						 .acknowledger = &bw_acker,
						 .ack_ref = r->t };
		out[k] = &r->msgs[r->next];
	}
	return (long)k;
}

static gs_err bw_make(void *arg, gs_pipeline *p, size_t index,
		      const gs_stage_opts *opts, gs_stage **out)
{
	(void)index;
	return gs_from_fn(p, bw_gen, arg, opts, out);
}

static int bw_route(void *arg, size_t processor, gs_message *m)
{
	(void)arg, (void)processor;
	gs_message_put_batcher(m, GS_VAL(m->data) % 2);
	gs_message_put_batch_key(m, GS_VAL(m->data) % 3);
	return GS_OK;
}

static int bw_batch(void *arg, gs_message **msgs, size_t n,
		    const gs_batch_info *info)
{
	(void)arg, (void)msgs, (void)n, (void)info;
	return GS_OK;
}

static uint64_t run_broadway_once(tally *t)
{
	static bw_run r;
	r = (bw_run){ .t = t };
	gs_broadway_batcher_opts batchers[2] = {
		{ .batch_size = 10, .batch_timeout = 20 },
		{ .batch_size = 7, .concurrency = 2, .batch_timeout = 20 },
	};
	gs_broadway *bw = NULL;
	gs_err err = gs_broadway_new(
		&(gs_broadway_ops){ .handle_message = bw_route,
				    .handle_batch = bw_batch },
		NULL,
		&(gs_broadway_opts){
			.producer = { .make = bw_make, .arg = &r },
			.processors = { .concurrency = 2, .max_demand = 8 },
			.batchers = batchers,
			.n_batchers = 2 },
		&bw);
	cr_assert(tolerated(err), "gs_broadway_new: %d", (int)err);
	if (err)
		return r.next;
	err = gs_broadway_start(bw);
	cr_assert(tolerated(err), "gs_broadway_start: %d", (int)err);
	/* It ends: a batcher that failed left messages for it in done
	 * processors, and the wait never returned. */
	err = gs_pipeline_wait_for(gs_broadway_pipeline(bw), 20000);
	cr_assert(tolerated(err), "the run: %s (%d)", gs_strerror(err),
		  (int)err);
	gs_broadway_free(bw);
	return r.next;
}

Test(oom, a_broadway_run_ends_and_acks_everything_whichever_allocation_fails,
     .timeout = 180)
{
	sweep(run_broadway_once, true);
}

static void keep_line(void *arg, gs_log_level level, const gs_stage *stage,
		      const char *msg)
{
	(void)level, (void)stage;
	snprintf(arg, 256, "%s", msg);
}

Test(oom, a_broadway_whose_processor_buffers_do_not_fit_says_so, .timeout = 60)
{
	char line[256] = "";
	gs_broadway *bw = NULL;
	atomic_store(&big, (size_t)64 << 20);
	gs_err err = gs_broadway_new(
		&(gs_broadway_ops){ .handle_message = bw_route }, NULL,
		&(gs_broadway_opts){
			.producer = { .make = bw_make, .arg = &(bw_run){ 0 } },
			.processors = { .max_demand = (size_t)16 << 20 },
			.pipeline = { .log = keep_line, .log_arg = line } },
		&bw);
	disarm();
	cr_assert_eq(err, GS_ENOMEM, "%s", gs_strerror(err));
	cr_assert_null(bw);
	cr_assert(strstr(line, "max_demand 16777216"), "logged: '%s'", line);
}

/* A producer holding ten events nobody asked for, so that an info waits
 * behind them; counts what its callbacks and msg_free see. */
typedef struct holding {
	_Atomic int infos, freed, terminated;
} holding;

static int hold_ten(void *state, gs_stage *stage)
{
	(void)state;
	void *ev[10];
	fill_ids(ev, 10, 1);
	return gs_emit(stage, ev, 10);
}

static int count_info(void *state, gs_stage *stage, void *msg)
{
	(void)stage, (void)msg;
	atomic_fetch_add(&((holding *)state)->infos, 1);
	return GS_OK;
}

static void count_msg_free(void *msg, void *arg)
{
	(void)msg;
	atomic_fetch_add(&((holding *)arg)->freed, 1);
}

static void count_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage, (void)reason;
	atomic_fetch_add(&((holding *)state)->terminated, 1);
}

static const gs_stage_ops holding_ops = { .init = hold_ten,
					  .handle_demand = nop_demand,
					  .handle_info = count_info,
					  .terminate = count_terminate };

/* gs_sync_info with each allocation on its way failing in turn: the
 * message is the stage's (GS_OK, handled or passed to msg_free once) or
 * the caller's (an error, never passed to msg_free); it was both when the
 * marker could not be queued. */
Test(oom, a_sync_info_that_cannot_be_queued_stays_the_callers, .timeout = 60)
{
	for (long k = 0; k < 6; k++) {
		holding h = { 0 };
		gs_pipeline *p;
		gs_stage *s;
		GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
		GS_OK_OR_DIE(gs_stage_new(
			p, GS_PRODUCER, &holding_ops, &h,
			&(gs_stage_opts){ .msg_free = count_msg_free,
					  .msg_free_arg = &h,
					  .blocking = true },
			&s));
		GS_OK_OR_DIE(gs_pipeline_start(p));
		arm(k);
		gs_err err = gs_sync_info(s, GS_EV(7), -1);
		disarm();
		cr_assert_eq(gs_pipeline_free(p), GS_OK);
		int owned = atomic_load(&h.infos) + atomic_load(&h.freed);
		if (err == GS_OK)
			cr_expect_eq(owned, 1,
				     "allocation %ld: GS_OK, yet "
				     "handled or freed %d times",
				     k, owned);
		else
			cr_expect_eq(owned, 0,
				     "allocation %ld: %s, yet the "
				     "stage handled or freed it",
				     k, gs_strerror(err));
	}
}

/* A timer whose entry in the executor's heap cannot be made: the stage
 * stops (terminate runs, the message goes to msg_free). It was marked
 * stopping and parked, and nothing ran it again. Each allocation on the
 * way fails in turn; each time the timer fires or the stage stops. */
Test(oom, a_timer_that_cannot_be_kept_stops_its_stage, .timeout = 60)
{
	for (long k = 0; k < 6; k++) {
		holding h = { 0 };
		gs_executor *ex;
		GS_OK_OR_DIE(gs_executor_new(
			&(gs_executor_opts){ .workers = 1 }, &ex));
		gs_pipeline *p;
		GS_OK_OR_DIE(gs_pipeline_new(
			&(gs_pipeline_opts){ .executor = ex }, &p));
		gs_executor_free(ex); /* the pipeline holds it */
		gs_stage *s;
		GS_OK_OR_DIE(gs_stage_new(
			p, GS_PRODUCER,
			&(gs_stage_ops){ .handle_demand = nop_demand,
					 .handle_info = count_info,
					 .terminate = count_terminate },
			&h,
			&(gs_stage_opts){ .msg_free = count_msg_free,
					  .msg_free_arg = &h },
			&s));
		GS_OK_OR_DIE(gs_pipeline_start(p));
		arm(k);
		gs_err err = gs_send_after(s, 20, GS_EV(9));
		/* The stage's turn makes the heap's entry: wait for it. */
		while (err == GS_OK && !atomic_load(&h.infos) &&
		       !atomic_load(&h.terminated))
			nap();
		disarm();
		if (err == GS_OK)
			cr_expect_eq(atomic_load(&h.infos) +
					     atomic_load(&h.freed),
				     1, "allocation %ld", k);
		cr_assert_eq(gs_pipeline_free(p), GS_OK);
	}
}

Test(oom, stop_and_free_need_no_memory, .timeout = 60)
{
	gs_pipeline *p;
	gs_stage *src, *cons;
	seq_producer sp = { .total = SIZE_MAX };
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &src));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	GS_OK_OR_DIE(gs_subscribe(cons, src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	wait_at_least(&r.received, 10000);
	atomic_store(&all, true);
	gs_err err = gs_pipeline_stop(p, GS_STOP_NOW);
	gs_err freed = gs_pipeline_free(p);
	long failures = atomic_load(&failed);
	disarm();
	cr_assert_eq(err, GS_OK);
	cr_assert_eq(freed, GS_OK);
	cr_assert_eq(failures, 0, "stopping asked for memory %ld times",
		     failures);
}

/* A blocking stage made in a running pipeline when no thread can be
 * started: refused with GS_ESPAWN, *out untouched, and the stage is not
 * the pipeline's (its state was freed twice when it stayed listed). Each
 * kind of stage that keeps state of its own is tried. */
Test(oom, a_stage_that_cannot_get_its_thread_is_not_kept, .timeout = 60)
{
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	void *items[2] = { GS_EV(1), GS_EV(2) };
	for (int kind = 0; kind < 4; kind++) {
		gs_stage_opts o = { .blocking = true, .name = "threadless" };
		gs_stage *s = (gs_stage *)&o;
		recorder r = { 0 };
		atomic_store(&no_threads, true);
		gs_err err = kind == 0   ? gs_push_producer(p, &o, &s)
			     : kind == 1 ? gs_stream(p, &o, &s)
			     : kind == 2
				     ? gs_from_array(p, items, 2, &o, &s)
				     : gs_stage_new(p, GS_CONSUMER,
						    &recorder_ops, &r, &o, &s);
		atomic_store(&no_threads, false);
		cr_expect_eq(err, GS_ESPAWN, "kind %d: %s", kind,
			     gs_strerror(err));
		cr_expect_eq(s, (gs_stage *)&o, "kind %d: *out was set", kind);
		char *graph = dot_text(p);
		cr_expect_null(strstr(graph, "threadless"),
			       "kind %d: the stage is still listed:\n%s", kind,
			       graph);
		free(graph);
	}
	cr_assert_eq(gs_pipeline_free(p), GS_OK);
}

static void *push_forever(void *arg)
{
	void *ev = GS_EV(2);
	return (void *)(uintptr_t)gs_push(arg, &ev, 1, -1);
}

/* A start that fails part way (a blocking stage gets no thread) leaves the
 * stages after it unstarted: a thread blocked on one of them is let go,
 * as by any stop (it waited for ever). */
Test(oom, a_start_that_fails_part_way_lets_waiting_threads_go, .timeout = 60)
{
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	recorder r = { 0 };
	gs_stage *first, *push;
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r,
				  &(gs_stage_opts){ .blocking = true },
				  &first));
	GS_OK_OR_DIE(gs_push_producer(p, &(gs_stage_opts){ .buffer_size = 1 },
				      &push));
	void *ev = GS_EV(1);
	GS_OK_OR_DIE(gs_push(push, &ev, 1, 0)); /* full */
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, push_forever, push), 0);
	atomic_store(&no_threads, true);
	gs_err err = gs_pipeline_start(p);
	atomic_store(&no_threads, false);
	cr_expect_eq(err, GS_ESPAWN);
	void *ret;
	pthread_join(th, &ret);
	cr_expect_eq((gs_err)(uintptr_t)ret, GS_ECLOSED);
	cr_expect_eq(gs_pipeline_stop(p, GS_STOP_NOW), GS_OK);
	cr_assert_eq(gs_pipeline_free(p), GS_OK);
}

/* A flow source refused for lack of memory takes no event: the caller,
 * who frees them after the error, freed them a second time when the
 * refused flow had handed them to event_free. */
Test(oom, a_refused_flow_source_takes_no_event, .timeout = 60)
{
	void *events[5] = { GS_EV(1), GS_EV(2), GS_EV(3), GS_EV(4), GS_EV(5) };
	long k;
	for (k = 0; k < 100; k++) {
		_Atomic uint64_t freed = 0;
		gs_flow *f = NULL;
		arm(k);
		gs_err err = gs_flow_from_array(
			events, 5,
			&(gs_flow_opts){ .event_free = count_free,
					 .event_free_arg = &freed },
			&f);
		bool hit = atomic_load(&failed) > 0;
		disarm();
		if (err) {
			cr_assert_eq(err, GS_ENOMEM);
			cr_assert_null(f);
			cr_assert_eq(atomic_load(&freed), 0,
				     "allocation %ld: %llu events taken", k,
				     (unsigned long long)atomic_load(&freed));
			continue;
		}
		gs_flow_free(f); /* never run: the flow's events go */
		cr_assert_eq(atomic_load(&freed), 5);
		if (!hit)
			break;
	}
	cr_assert_lt(k, 100, "every allocation was tried");
}

static size_t parity(void *arg, const void *event)
{
	(void)arg;
	return GS_VAL(event) % 2;
}

/* A partition's queue that cannot grow: what it could not take is dropped
 * (counted, to event_free) and the producer stops with GS_ENOMEM; it
 * logged a warning and ran on, so a flow finished GS_OK without those
 * events. Odd events wait for a subscription that never asks; the queue
 * is grown first, then the next growth fails. */
Test(oom, a_partition_queue_that_cannot_grow_stops_its_producer, .timeout = 60)
{
	tally t;
	tally_init(&t, 6001);
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	gs_stage *push, *held;
	GS_OK_OR_DIE(gs_push_producer(
		p,
		&(gs_stage_opts){
			.dispatcher = gs_dispatcher_partition(2, parity, NULL),
			.event_free = tally_free,
			.event_free_arg = &t },
		&push));
	recorder even = { .tally = &t };
	recorder_subscribe(&even, recorder_new(p, &even, NULL), push,
			   &(gs_sub_opts){ .partition = 1 });
	recorder odd = { .tally = &t };
	held = recorder_new(p, &odd, NULL);
	GS_OK_OR_DIE(gs_subscribe(
		held, push, &(gs_sub_opts){ .partition = 2, .manual = true },
		NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	void *ev[4000];
	fill_ids(ev, 4000, 1);
	GS_OK_OR_DIE(gs_push(push, ev, 4000, -1));
	wait_at_least(&even.received, 2000); /* 2000 odd ones queued */
	fill_ids(ev, 2000, 4001);
	arm(0);
	gs_err pushed = gs_push(push, ev, 2000, -1);
	gs_err err = gs_pipeline_wait_for(p, 20000);
	long failures = atomic_load(&failed);
	disarm();
	cr_assert_eq(pushed, GS_OK);
	cr_expect_eq(failures, 1);
	cr_expect_eq(err, GS_ENOMEM, "%s", gs_strerror(err));
	cr_assert_eq(gs_pipeline_free(p), GS_OK);
	tally_check(&t, 6000, false);
	tally_check_range(&t, 1, 6001);
	recorder_fini(&even);
	recorder_fini(&odd);
	tally_fini(&t);
}

Test(oom, a_push_that_cannot_grow_the_queue_keeps_its_events, .timeout = 60)
{
	tally t;
	tally_init(&t, 100);
	gs_pipeline *p;
	gs_stage *push;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	push = tallied_push_new(p, &t);
	GS_OK_OR_DIE(gs_pipeline_start(p));
	void *ev[100];
	fill_ids(ev, 100, 0);
	atomic_store(&all, true);
	gs_err err = gs_push(push, ev, 100, 0);
	disarm();
	cr_assert_eq(err, GS_ENOMEM);
	cr_assert_eq(atomic_load(&t.freed_count), 0, "the events stay ours");
	GS_OK_OR_DIE(gs_push(push, ev, 100, 0));
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
	cr_assert_eq(atomic_load(&t.freed_count), 100);
	tally_fini(&t);
}

/* --- the bus ------------------------------------------------------------ */

#define BUS_EVENTS 20

static _Atomic uint64_t bus_freed;

static void bus_payload_free(void *payload)
{
	(void)payload;
	atomic_fetch_add(&bus_freed, 1);
}

static int bus_handle(void *arg, const gs_bus_envelope *env)
{
	(void)arg;
	(void)env;
	return GS_BUS_DONE;
}

/* A bus with a subscription of each kind (one stage; a feeder and a pool
 * of three), a few publishes that fit their queues, then a drain. Any step
 * may fail for want of memory; whatever was accepted must be handled or
 * dropped, counted, and freed once, and the close must return. */
static void bus_once(void)
{
	gs_bus *bus = NULL;
	gs_err err = gs_bus_new(NULL, &bus);
	cr_assert(tolerated(err), "gs_bus_new: %s", gs_strerror(err));
	if (err)
		return;
	gs_bus_sub *subs[2] = { NULL, NULL };
	for (size_t i = 0; i < 2; i++) {
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){
				.patterns = (const char *const[]){ "#", NULL },
				.handler = bus_handle,
				.queue_size = 4 * BUS_EVENTS,
				.concurrency = i ? 3 : 1 },
			&subs[i]);
		cr_assert(tolerated(err) || err == GS_ECLOSED,
			  "gs_bus_subscribe: %s", gs_strerror(err));
	}
	uint64_t accepted = 0;
	for (int e = 0; e < BUS_EVENTS; e++) {
		static char token;
		err = gs_bus_publish(bus, "orders.created", &token,
				     bus_payload_free, 0);
		cr_assert(tolerated(err), "gs_bus_publish: %s",
			  gs_strerror(err));
		accepted += err == GS_OK;
	}
	err = gs_bus_close(bus, GS_BUS_DRAIN);
	cr_assert(tolerated(err), "gs_bus_close: %s", gs_strerror(err));
	for (size_t i = 0; i < 2; i++) {
		gs_bus_sub_stats st;
		if (!subs[i] || gs_bus_sub_stats_get(subs[i], &st))
			continue;
		char who[32];
		snprintf(who, sizeof who, "subscription %zu", i);
		gs_test_bus_conserved(&st, who);
	}
	gs_bus_free(bus);
	cr_assert_eq(atomic_load(&bus_freed), accepted,
		     "%llu payloads accepted, %llu freed",
		     (unsigned long long)accepted,
		     (unsigned long long)atomic_load(&bus_freed));
}

Test(oom, a_bus_closes_whichever_allocation_fails, .timeout = 120)
{
	long k;
	for (k = 0; k < 5000; k++) {
		atomic_store(&bus_freed, 0);
		arm(k);
		bus_once();
		bool hit = atomic_load(&failed) > 0;
		disarm();
		if (!hit)
			break;
	}
	cr_assert_lt(k, 5000, "the sweep never ran out of allocations");
	cr_log_info("failed each of %ld allocations in turn", k);
	cr_assert_gt(k, 10, "only %ld allocations: is the wrapper in use?", k);
}
