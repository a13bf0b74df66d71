// SPDX-License-Identifier: MIT
/*
 * The worker pool, against ConsumerSupervisor's cases: concurrency never
 * above max_demand, asking again after min_demand completions, errors
 * counted and reported, drain waiting for running handlers, several
 * producers, a stop cancelling what is queued, and bad options refused.
 * Handlers that must be held wait on a gate the test opens, so nothing here
 * depends on timing.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>

#include <string.h>
#include <time.h>

#include "gs_test.h"

#ifndef GS_TEST_POOL_EVENTS
#define GS_TEST_POOL_EVENTS 2000
#endif

/* What the handlers share with the test. */
typedef struct bench {
	_Atomic int running;
	_Atomic int peak;
	_Atomic bool open;        /* the gate: handlers wait until set */
	_Atomic uint64_t permits; /* or until they can take one of these */
	_Atomic uint64_t done;    /* on_done calls */
	_Atomic uint64_t failed;  /* on_done calls with an error */
	_Atomic uint64_t cancelled;
	_Atomic bool stopped;        /* gs_pipeline_stop has returned */
	_Atomic uint64_t late;       /* handlers still running after that */
	_Atomic unsigned char *seen; /* on_done per event id, if set */
	size_t n_seen;
	uint64_t fail_every; /* the handler fails ids divisible by this */
	int sleep_ms;        /* the handler sleeps this long */
} bench;

static void relax(void)
{
	sched_yield();
}

static int hold(void *arg, void *event)
{
	bench *b = arg;
	int now = atomic_fetch_add(&b->running, 1) + 1;
	int peak = atomic_load(&b->peak);
	while (now > peak &&
	       !atomic_compare_exchange_weak(&b->peak, &peak, now))
		continue;
	for (;;) {
		if (atomic_load(&b->open))
			break;
		uint64_t p = atomic_load(&b->permits);
		if (p && atomic_compare_exchange_weak(&b->permits, &p, p - 1))
			break;
		relax();
	}
	if (b->sleep_ms)
		nanosleep(&(struct timespec){ 0, b->sleep_ms * 1000000L },
			  NULL);
	if (atomic_load(&b->stopped))
		atomic_fetch_add(&b->late, 1);
	atomic_fetch_sub(&b->running, 1);
	uintptr_t id = GS_VAL(event);
	return b->fail_every && id % b->fail_every == 0 ? GS_TEST_FAIL : GS_OK;
}

static void done(void *arg, void *event, int result)
{
	bench *b = arg;
	uintptr_t id = GS_VAL(event);
	if (b->seen && id < b->n_seen)
		atomic_fetch_add(&b->seen[id], 1);
	if (result == GS_ECANCELED)
		atomic_fetch_add(&b->cancelled, 1);
	else if (result)
		atomic_fetch_add(&b->failed, 1);
	atomic_fetch_add(&b->done, 1);
}

static void wait_int(_Atomic int *v, int at_least)
{
	while (atomic_load(v) < at_least)
		relax();
}

static void wait_u64(_Atomic uint64_t *v, uint64_t at_least)
{
	while (atomic_load(v) < at_least)
		relax();
}

static gs_pool_stats stats_of(gs_pool *pool)
{
	gs_pool_stats st;
	GS_OK_OR_DIE(gs_pool_stats_get(pool, &st));
	return st;
}

/* A producer of 1..total that records the size of each demand. */
typedef struct asked {
	uintptr_t next, total;
	size_t sizes[64];
	_Atomic size_t n;
	_Atomic uint64_t demanded;
} asked;

static int asked_demand(void *state, gs_stage *stage, size_t demand)
{
	asked *a = state;
	size_t n = atomic_load(&a->n);
	if (n < 64)
		a->sizes[n] = demand;
	atomic_store(&a->n, n + 1);
	atomic_fetch_add(&a->demanded, demand);
	for (; demand && a->next <= a->total; demand--) {
		void *ev = GS_EV(a->next++);
		gs_err err = gs_emit(stage, &ev, 1);
		if (err)
			return err;
	}
	return a->next > a->total ? gs_done(stage) : GS_OK;
}

static gs_pool *pool_on(gs_pipeline *p, bench *b, size_t workers, size_t max,
			size_t min)
{
	gs_pool *pool = NULL;
	GS_OK_OR_DIE(gs_pool_new(p,
				 &(gs_pool_opts){ .workers = workers,
						  .max_demand = max,
						  .min_demand = min,
						  .handler = hold,
						  .on_done = done,
						  .arg = b },
				 &pool));
	return pool;
}

/* A running pipeline: a counter of 1..n (n 0: without end) into a pool
 * with these workers and demand, handled by `hold`. */
typedef struct fixture {
	gs_pipeline *p;
	gs_pool *pool;
	counter c;
} fixture;

static void start_counted(fixture *f, bench *b, size_t workers, size_t max,
			  size_t n)
{
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &f->p));
	f->pool = pool_on(f->p, b, workers, max, 0);
	f->c = (counter){ .next = 1, .end = n ? n + 1 : 0 };
	gs_stage *src;
	GS_OK_OR_DIE(gs_from_fn(f->p, counter_gen, &f->c, NULL, &src));
	GS_OK_OR_DIE(gs_subscribe(gs_pool_stage(f->pool), src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(f->p));
}

static void fixture_free(fixture *f)
{
	gs_pipeline_free(f->p);
	gs_pool_free(f->pool);
}

Test(pool, concurrency_never_exceeds_max_demand, .timeout = GS_TEST_TIMEOUT)
{
	bench b = { 0 };
	fixture f;
	start_counted(&f, &b, 8, 3, GS_TEST_POOL_EVENTS);
	gs_pool *pool = f.pool;
	/* Three run and wait at the gate; a fourth could not even have been
	 * sent, since demand allows three. */
	wait_int(&b.running, 3);
	gs_pool_stats st = stats_of(pool);
	cr_expect_eq(st.received, 3);
	cr_expect_eq(st.running, 3);
	atomic_store(&b.open, true);
	GS_OK_OR_DIE(gs_pipeline_wait(f.p));
	st = stats_of(pool);
	cr_expect_eq(atomic_load(&b.peak), 3);
	cr_expect_eq(st.peak_running, 3);
	cr_expect_eq(st.handled, GS_TEST_POOL_EVENTS);
	cr_expect_eq(atomic_load(&b.done), GS_TEST_POOL_EVENTS);
	fixture_free(&f);
}

Test(pool, asks_again_once_min_demand_have_completed,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	bench b = { 0 };
	gs_pool *pool = pool_on(p, &b, 10, 10, 4);
	asked a = { .next = 1, .total = 100 };
	gs_stage *src;
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_PRODUCER,
			     &(gs_stage_ops){ .handle_demand = asked_demand },
			     &a, NULL, &src));
	GS_OK_OR_DIE(gs_subscribe(gs_pool_stage(pool), src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	wait_int(&b.running, 10);
	/* One completion at a time: the fourth brings an ask for four, the
	 * eighth another; none comes in between. */
	for (uint64_t k = 1; k <= 8; k++) {
		atomic_fetch_add(&b.permits, 1);
		wait_u64(&b.done, k);
		if (k == 4 || k == 8)
			wait_u64(&a.demanded, 10 + k);
	}
	cr_expect_eq(atomic_load(&a.n), 3);
	cr_expect_eq(a.sizes[0], 10);
	cr_expect_eq(a.sizes[1], 4);
	cr_expect_eq(a.sizes[2], 4);
	cr_expect_eq(atomic_load(&a.demanded), 18);
	atomic_store(&b.open, true);
	GS_OK_OR_DIE(gs_pipeline_wait(p));
	cr_expect_eq(stats_of(pool).handled, 100);
	gs_pipeline_free(p);
	gs_pool_free(pool);
}

Test(pool, errors_are_counted_and_reported_to_on_done,
     .timeout = GS_TEST_TIMEOUT)
{
	size_t n = GS_TEST_POOL_EVENTS;
	bench b = { .open = true, .fail_every = 3, .n_seen = n + 1 };
	b.seen = calloc(n + 1, 1);
	fixture f;
	start_counted(&f, &b, 4, 16, n);
	GS_OK_OR_DIE(gs_pipeline_wait(f.p));
	gs_pool_stats st = stats_of(f.pool);
	cr_expect_eq(st.failed, n / 3);
	cr_expect_eq(st.handled, n - n / 3);
	cr_expect_eq(atomic_load(&b.failed), n / 3);
	for (size_t id = 1; id <= n; id++)
		cr_expect_eq(atomic_load(&b.seen[id]), 1,
			     "event %zu: on_done called %d times", id,
			     (int)atomic_load(&b.seen[id]));
	fixture_free(&f);
	free((void *)b.seen);
}

Test(pool, drain_waits_for_running_handlers, .timeout = GS_TEST_TIMEOUT)
{
	bench b = { .open = true, .sleep_ms = 1 };
	fixture f;
	start_counted(&f, &b, 4, 8, 0);
	wait_u64(&b.done, 20);
	GS_OK_OR_DIE(gs_pipeline_stop(f.p, GS_STOP_DRAIN));
	atomic_store(&b.stopped, true);
	gs_pool_stats st = stats_of(f.pool);
	cr_expect_eq(st.running, 0);
	cr_expect_eq(st.queued, 0);
	cr_expect_eq(st.cancelled, 0);
	cr_expect_eq(st.handled, st.received);
	cr_expect_eq(atomic_load(&b.done), st.received);
	cr_expect_eq(atomic_load(&b.late), 0);
	fixture_free(&f);
}

Test(pool, serves_several_producers_exactly_once, .timeout = GS_TEST_TIMEOUT)
{
	enum { PRODUCERS = 3 };
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	size_t n = GS_TEST_POOL_EVENTS;
	bench b = { .open = true, .n_seen = PRODUCERS * n + 1 };
	b.seen = calloc(b.n_seen, 1);
	gs_pool *pool = pool_on(p, &b, 5, 4, 0);
	counter c[PRODUCERS];
	for (size_t i = 0; i < PRODUCERS; i++) {
		c[i] = (counter){ .next = i * n + 1, .end = (i + 1) * n + 1 };
		gs_stage *src;
		GS_OK_OR_DIE(gs_from_fn(p, counter_gen, &c[i], NULL, &src));
		/* Transient: one producer's end must not end the pool. */
		GS_OK_OR_DIE(gs_subscribe(
			gs_pool_stage(pool), src,
			&(gs_sub_opts){ .cancel = GS_CANCEL_TRANSIENT }, NULL));
	}
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_pipeline_wait(p));
	gs_pool_stats st = stats_of(pool);
	cr_expect_eq(st.handled, PRODUCERS * n);
	cr_expect_leq(st.peak_running, 5);
	for (size_t id = 1; id <= PRODUCERS * n; id++)
		cr_expect_eq(atomic_load(&b.seen[id]), 1, "event %zu", id);
	gs_pipeline_free(p);
	gs_pool_free(pool);
	free((void *)b.seen);
}

/* Heap events: every one must be freed once, by on_done or by the
 * producer's event_free, or ASan reports a leak or a double free. */
static _Atomic uint64_t heap_freed;

static void heap_done(void *arg, void *event, int result)
{
	done(arg, GS_EV(*(uintptr_t *)event), result);
	free(event);
	atomic_fetch_add(&heap_freed, 1);
}

static void heap_free(void *event, void *arg)
{
	(void)arg;
	free(event);
	atomic_fetch_add(&heap_freed, 1);
}

static int heap_hold(void *arg, void *event)
{
	return hold(arg, GS_EV(*(uintptr_t *)event));
}

static long heap_gen(void *arg, void **out, size_t max)
{
	_Atomic uint64_t *made = arg;
	for (size_t i = 0; i < max; i++) {
		uintptr_t *ev = malloc(sizeof *ev);
		*ev = atomic_fetch_add(made, 1) + 1;
		out[i] = ev;
	}
	return (long)max;
}

static void *stop_now(void *arg)
{
	gs_err err = gs_pipeline_stop(arg, GS_STOP_NOW);
	return (void *)(uintptr_t)err;
}

/* Stops p on a thread of its own while the handlers are held at b's gate:
 * waits until the stop has cancelled `queued` events, opens the gate, and
 * checks that the stop returns GS_OK once the running ones are done. */
static void stop_while_held(gs_pipeline *p, bench *b, uint64_t queued,
			    int running)
{
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, stop_now, p), 0);
	/* The stop cancels the queue at once, then waits for those that
	 * run. */
	wait_u64(&b->cancelled, queued);
	cr_expect_eq(atomic_load(&b->running), running);
	atomic_store(&b->open, true);
	void *ret;
	pthread_join(th, &ret);
	cr_expect_eq((gs_err)(uintptr_t)ret, GS_OK);
}

Test(pool, a_stop_cancels_what_is_queued_and_waits_for_what_runs,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	bench b = { 0 };
	gs_pool *pool = NULL;
	GS_OK_OR_DIE(gs_pool_new(p,
				 &(gs_pool_opts){ .workers = 2,
						  .max_demand = 50,
						  .handler = heap_hold,
						  .on_done = heap_done,
						  .arg = &b },
				 &pool));
	_Atomic uint64_t made = 0;
	atomic_store(&heap_freed, 0);
	gs_stage *src;
	GS_OK_OR_DIE(gs_from_fn(p, heap_gen, &made,
				&(gs_stage_opts){ .event_free = heap_free },
				&src));
	GS_OK_OR_DIE(gs_subscribe(gs_pool_stage(pool), src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	wait_int(&b.running, 2);
	while (stats_of(pool).queued < 48)
		relax();
	stop_while_held(p, &b, 48, 2);
	gs_pool_stats st = stats_of(pool);
	cr_expect_eq(st.received, 50);
	cr_expect_eq(st.handled, 2);
	cr_expect_eq(st.cancelled, 48);
	cr_expect_eq(atomic_load(&b.done), 50);
	gs_pipeline_free(p);
	gs_pool_free(pool);
	cr_expect_eq(atomic_load(&heap_freed), atomic_load(&made));
}

/* Whether the pipeline's graph says its (only) consumer has lost its last
 * subscription: it shows the consumer's side of a cancel is done. */
static bool consumer_unsubscribed(gs_pipeline *p)
{
	char *text = dot_text(p);
	bool none = strstr(text, "has no subscription") != NULL;
	free(text);
	return none;
}

/* Its only subscription cancelled (the stage runs on, as a consumer does),
 * then stopped: what is queued is cancelled too, though no live
 * subscription is left to show a stop rather than a drain. */
Test(pool, a_stop_cancels_what_is_queued_after_its_subscriptions_ended,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	bench b = { 0 };
	gs_pool *pool = pool_on(p, &b, 1, 50, 0);
	counter c = { .next = 1 };
	gs_stage *src;
	gs_sub *sub;
	GS_OK_OR_DIE(gs_from_fn(p, counter_gen, &c, NULL, &src));
	GS_OK_OR_DIE(gs_subscribe(gs_pool_stage(pool), src, NULL, &sub));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	wait_int(&b.running, 1);
	while (stats_of(pool).queued < 49)
		relax();
	GS_OK_OR_DIE(gs_cancel(sub));
	while (!consumer_unsubscribed(p))
		relax();
	/* Without the fix the worker runs all 49, held at the gate: this
	 * waits for ever. */
	stop_while_held(p, &b, 49, 1);
	gs_pool_stats st = stats_of(pool);
	cr_expect_eq(st.received, 50);
	cr_expect_eq(st.handled, 1);
	cr_expect_eq(st.cancelled, 49);
	gs_pipeline_free(p);
	gs_pool_free(pool);
}

static int noop(void *arg, void *event)
{
	(void)arg;
	(void)event;
	return GS_OK;
}

/* The name of the thread that ran the first handler. */
/* A handler that tries to end its own pipeline: it may only ask. */
typedef struct ender {
	gs_pipeline *p, *other;
	gs_stage *stage;
	_Atomic int tried;
	_Atomic gs_err stop_err, wait_err, wait_for_err, free_err, other_err;
} ender;

static int end_own_pipeline(void *arg, void *event)
{
	(void)event;
	ender *e = arg;
	if (atomic_fetch_add(&e->tried, 1) == 0) {
		atomic_store(&e->stop_err, gs_pipeline_stop(e->p, GS_STOP_NOW));
		atomic_store(&e->wait_err, gs_pipeline_wait(e->p));
		atomic_store(&e->wait_for_err, gs_pipeline_wait_for(e->p, 10));
		atomic_store(&e->free_err, gs_pipeline_free(e->p));
		/* Another pipeline is another matter. */
		atomic_store(&e->other_err, gs_pipeline_free(e->other));
		GS_OK_OR_DIE(gs_stage_stop(e->stage, GS_OK));
	}
	return GS_OK;
}

Test(pool, a_handler_cannot_wait_for_its_own_pipeline,
     .timeout = GS_TEST_TIMEOUT)
{
	/* Each of these would wait for the pool's stage, which waits for
	 * this very handler: they are refused, and gs_stage_stop works. */
	ender e = { 0 };
	gs_pool *pool;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &e.p));
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &e.other));
	GS_OK_OR_DIE(gs_pool_new(e.p,
				 &(gs_pool_opts){ .workers = 2,
						  .handler = end_own_pipeline,
						  .arg = &e },
				 &pool));
	e.stage = gs_pool_stage(pool);
	counter c = { .next = 1 }; /* without end */
	gs_stage *src;
	GS_OK_OR_DIE(gs_from_fn(e.p, counter_gen, &c, NULL, &src));
	GS_OK_OR_DIE(gs_subscribe(e.stage, src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(e.p));
	GS_OK_OR_DIE(gs_pipeline_wait(e.p));
	cr_assert_eq(atomic_load(&e.stop_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&e.wait_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&e.wait_for_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&e.free_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&e.other_err), GS_OK);
	gs_pipeline_free(e.p);
	gs_pool_free(pool);
}

typedef struct named {
	char name[16];
	_Atomic bool set, taken;
} named;

static int note_name(void *arg, void *event)
{
	(void)event;
	named *nm = arg;
	if (!atomic_exchange(&nm->taken, true)) {
		pthread_getname_np(pthread_self(), nm->name, sizeof nm->name);
		atomic_store(&nm->set, true);
	}
	return GS_OK;
}

Test(pool, its_threads_carry_the_pool_stage_name, .timeout = GS_TEST_TIMEOUT)
{
	named nm = { 0 };
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	gs_pool *pool = NULL;
	GS_OK_OR_DIE(gs_pool_new(p,
				 &(gs_pool_opts){ .workers = 2,
						  .handler = note_name,
						  .arg = &nm },
				 &pool));
	counter c = { .next = 1, .end = 11 };
	gs_stage *src;
	GS_OK_OR_DIE(gs_from_fn(p, counter_gen, &c, NULL, &src));
	GS_OK_OR_DIE(gs_subscribe(gs_pool_stage(pool), src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_pipeline_wait(p));
	cr_assert(atomic_load(&nm.set));
	char want[16];
	snprintf(want, sizeof want, "%.12s-p",
		 gs_stage_name(gs_pool_stage(pool)));
	cr_assert_str_eq(nm.name, want);
	gs_pipeline_free(p);
	gs_pool_free(pool);
}

Test(pool, refuses_bad_options_and_leaves_out_untouched)
{
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	gs_pool *pool = (gs_pool *)&pool; /* must stay as it is */
	gs_pool *const before = pool;
	cr_expect_eq(gs_pool_new(NULL, &(gs_pool_opts){ .handler = noop },
				 &pool),
		     GS_EINVAL);
	cr_expect_eq(gs_pool_new(p, NULL, &pool), GS_EINVAL);
	cr_expect_eq(gs_pool_new(p, &(gs_pool_opts){ .handler = noop }, NULL),
		     GS_EINVAL);
	cr_expect_eq(gs_pool_new(p, &(gs_pool_opts){ 0 }, &pool), GS_EINVAL);
	cr_expect_eq(gs_pool_new(p,
				 &(gs_pool_opts){
					 .version = GS_POOL_OPTS_VERSION + 1,
					 .handler = noop },
				 &pool),
		     GS_EVERSION);
	cr_expect_eq(gs_pool_new(p,
				 &(gs_pool_opts){ .max_demand = 4,
						  .min_demand = 4,
						  .handler = noop },
				 &pool),
		     GS_EDEMAND);
	cr_expect_eq(
		gs_pool_new(p,
			    &(gs_pool_opts){ .workers = GS_POOL_MAX_WORKERS + 1,
					     .handler = noop },
			    &pool),
		GS_EINVAL);
	cr_expect_eq(
		gs_pool_new(p,
			    &(gs_pool_opts){ .max_demand = GS_MAX_DEMAND + 1,
					     .handler = noop },
			    &pool),
		GS_EINVAL);
	cr_expect_eq(pool, before);
	cr_expect_eq(gs_pool_stats_get(NULL, &(gs_pool_stats){ 0 }), GS_EINVAL);
	cr_expect_null(gs_pool_stage(NULL));
	gs_pool_free(NULL);
	gs_pipeline_free(p);
}
