// SPDX-License-Identifier: MIT
/* Stopping a running pipeline: drain delivers everything, now frees what
 * was not delivered, and either way produced = delivered + freed. */
#include <pthread.h>

#include "gs_test.h"

#ifndef GS_TEST_EVENTS
#define GS_TEST_EVENTS 100000
#endif

/* Ids the endless producers may reach; far beyond what a test lets them. */
#define ID_SPACE ((size_t)1 << 21)

/* Events to see delivered before stopping. */
#define BEFORE_STOP (GS_TEST_EVENTS / 5)

typedef struct chain {
	gs_pipeline *p;
	gs_stage *prod, *pc[2], *cons;
	seq_producer sp;
	mapper m[2];
	recorder r;
	tally t;
	log_count log;
	int pcs;
} chain;

/* prod -> `pcs` identity stages -> cons, every stage freeing into the
 * tally, started and run until BEFORE_STOP events reached the consumer. */
static void chain_run(chain *c, int pcs, size_t extra)
{
	*c = (chain){
		.sp = { .total = ID_SPACE, .extra = extra },
		.r = { .check_order = true },
		.pcs = pcs,
	};
	tally_init(&c->t, ID_SPACE);
	c->r.tally = &c->t;
	gs_stage_opts opts = { .event_free = tally_free,
			       .event_free_arg = &c->t };
	c->p = counted_pipeline_new(&c->log);
	c->prod = seq_producer_new(c->p, &c->sp, &opts);
	gs_stage *up = c->prod;
	for (int i = 0; i < pcs; i++) {
		c->m[i].rec.check_order = true;
		c->pc[i] = mapper_new(c->p, &c->m[i], &opts);
		recorder_subscribe(&c->m[i].rec, c->pc[i], up,
				   &(gs_sub_opts){ .max_demand = 200 });
		up = c->pc[i];
	}
	c->cons = recorder_new(c->p, &c->r, &opts);
	recorder_subscribe(&c->r, c->cons, up,
			   &(gs_sub_opts){ .max_demand = 300 });
	GS_OK_OR_DIE(gs_pipeline_start(c->p));
	wait_at_least(&c->r.received, BEFORE_STOP);
}

/* Stops the running chain with `mode` and checks that every event made
 * was delivered or freed, once; returns how many were made. */
static uint64_t chain_stop(chain *c, gs_stop_mode mode)
{
	cr_assert_eq(gs_pipeline_stop(c->p, mode), GS_OK);
	uint64_t produced = atomic_load(&c->sp.emitted);
	tally_check(&c->t, produced, true);
	return produced;
}

static uint64_t chain_dropped(chain *c)
{
	gs_stats st;
	uint64_t sum = 0;
	GS_OK_OR_DIE(gs_stage_stats(c->prod, &st));
	sum += st.dropped;
	for (int i = 0; i < c->pcs; i++) {
		GS_OK_OR_DIE(gs_stage_stats(c->pc[i], &st));
		sum += st.dropped;
	}
	GS_OK_OR_DIE(gs_stage_stats(c->cons, &st));
	return sum + st.dropped;
}

static void chain_free(chain *c)
{
	gs_pipeline_free(c->p);
	tally_fini(&c->t);
}

static void expect_all_ok(chain *c)
{
	cr_assert_eq(atomic_load(&c->sp.terminated), 1);
	cr_assert_eq(atomic_load(&c->sp.reason), GS_OK);
	for (int i = 0; i < c->pcs; i++) {
		cr_assert_eq(atomic_load(&c->m[i].rec.terminated), 1);
		cr_assert_eq(atomic_load(&c->m[i].rec.reason), GS_OK);
	}
	cr_assert_eq(atomic_load(&c->r.terminated), 1);
	cr_assert_eq(atomic_load(&c->r.reason), GS_OK);
	cr_assert_eq(atomic_load(&c->r.order_errors), 0);
	cr_assert_eq(atomic_load(&c->r.demand_errors), 0);
	cr_assert_eq(atomic_load(&c->log.error), 0, "no abnormal stop");
}

Test(stop, drain_delivers_every_event_in_flight, .timeout = GS_TEST_TIMEOUT)
{
	chain c;
	chain_run(&c, 2, 3);
	uint64_t produced = chain_stop(&c, GS_STOP_DRAIN);
	cr_assert_eq(atomic_load(&c.t.freed_count), 0, "drain frees nothing");
	cr_assert_eq(atomic_load(&c.r.received), produced);
	cr_assert_eq(chain_dropped(&c), 0);
	expect_all_ok(&c);
	chain_free(&c);
}

Test(stop, drain_straight_into_a_consumer_delivers_everything,
     .timeout = GS_TEST_TIMEOUT)
{
	chain c;
	chain_run(&c, 0, 0);
	chain_stop(&c, GS_STOP_DRAIN);
	cr_assert_eq(atomic_load(&c.t.freed_count), 0);
	expect_all_ok(&c);
	chain_free(&c);
}

static size_t odd_even(void *arg, const void *event)
{
	(void)arg;
	return (uintptr_t)event % 2;
}

/* Only partition 0 has a subscriber: the events of partition 1 wait in its
 * queue for one that will never come, and a drain must not wait with
 * them. */
Test(stop, drain_drops_the_queue_of_a_partition_nobody_holds,
     .timeout = GS_TEST_TIMEOUT)
{
	void *ev[10];
	for (uintptr_t i = 0; i < 10; i++)
		ev[i] = (void *)(i + 1);
	_Atomic uint64_t freed = 0;
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *src, *cons;
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_from_array(
		p, ev, 10,
		&(gs_stage_opts){ .dispatcher = gs_dispatcher_partition(
					  2, odd_even, NULL),
				  .event_free = count_free,
				  .event_free_arg = &freed },
		&src));
	cons = recorder_new(p, &r, NULL);
	GS_OK_OR_DIE(gs_subscribe(
		cons, src, &(gs_sub_opts){ .partition = GS_PARTITION(1) },
		NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* Partition 0 (the events 2, 4 ... 10) queues, as GenStage holds
	 * events for a partition until someone subscribes to it. */
	cr_assert_eq(gs_pipeline_wait_for(p, 50), GS_ETIMEDOUT);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_DRAIN));
	cr_assert_eq(atomic_load(&r.received), 5);
	cr_assert_eq(atomic_load(&freed), 5);
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(src, &st));
	cr_assert_eq(st.dropped, 5);
	cr_assert_eq(st.buffered, 0, "what was dropped is still counted");
	gs_pipeline_free(p);
}

/* --- a producer-consumer that nobody asks ------------------------------- */

/* 100 events with a counted event_free, into a producer-consumer that
 * passes them on (map), subscribed as `sub` says. */
static gs_stage *array_into_mapper(gs_pipeline *p, void **ev, size_t n,
				   _Atomic uint64_t *freed, mapper *m,
				   const gs_stage_opts *mo,
				   const gs_sub_opts *sub)
{
	for (uintptr_t i = 0; i < n; i++)
		ev[i] = (void *)(i + 1);
	gs_stage *src;
	GS_OK_OR_DIE(gs_from_array(p, ev, n,
				   &(gs_stage_opts){ .event_free = count_free,
						     .event_free_arg = freed },
				   &src));
	gs_stage *pc = mapper_new(p, m, mo);
	GS_OK_OR_DIE(gs_subscribe(pc, src, sub, NULL));
	return pc;
}

/* It holds its producer's events until demand comes, as a producer with
 * no subscriber holds its own: a drain, which nobody can come to, drops
 * them (counted, to event_free) and finishes. */
Test(stop, a_drain_finishes_a_producer_consumer_nobody_asks,
     .timeout = GS_TEST_TIMEOUT)
{
	void *ev[100];
	_Atomic uint64_t freed = 0;
	mapper m = { 0 };
	gs_pipeline *p = pipeline_new(NULL);
	array_into_mapper(p, ev, 100, &freed, &m, NULL, NULL);
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait_for(p, 50), GS_ETIMEDOUT);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_DRAIN));
	cr_assert_eq(atomic_load(&freed), 100);
	cr_assert_eq(atomic_load(&m.rec.received), 0);
	gs_pipeline_free(p);
}

/* The same below another producer-consumer: the upper one gets no demand
 * either, so the drain must empty the chain from the bottom up. */
Test(stop, a_drain_empties_a_chain_of_producer_consumers_nobody_asks,
     .timeout = GS_TEST_TIMEOUT)
{
	void *ev[100];
	_Atomic uint64_t freed = 0;
	mapper upper = { 0 }, lower = { 0 };
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *pc1 = array_into_mapper(p, ev, 100, &freed, &upper, NULL,
					  NULL);
	gs_stage *pc2 = mapper_new(p, &lower, NULL);
	/* The lower one's demand (10) lets the upper one take only that
	 * much: the rest stays in its input. */
	GS_OK_OR_DIE(gs_subscribe(pc2, pc1, &(gs_sub_opts){ .max_demand = 10 },
				  NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait_for(p, 50), GS_ETIMEDOUT);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_DRAIN));
	/* The mappers pass the array's events on: each was dropped once,
	 * by the array (its event_free) or by the upper mapper (counted;
	 * it has no event_free), and the lower one took none. */
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(pc1, &st));
	cr_assert_eq(atomic_load(&lower.rec.received), 0);
	cr_assert_eq(atomic_load(&freed) + st.dropped, 100,
		     "freed %llu, dropped %llu",
		     (unsigned long long)atomic_load(&freed),
		     (unsigned long long)st.dropped);
	gs_pipeline_free(p);
}

/* Its producer fails with events still in the ring and no demand for
 * them: a permanent subscription stops it with the producer's reason at
 * once, instead of waiting for demand that may never come. */
Test(stop, a_producer_failure_stops_a_producer_consumer_nobody_asks,
     .timeout = GS_TEST_TIMEOUT)
{
	tally t;
	tally_init(&t, 1000);
	seq_producer sp = { .total = 1000,
			    .fail_at = 1,
			    .fail_code = GS_TEST_FAIL };
	mapper m = { 0 };
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *src = seq_producer_new(
		p, &sp,
		&(gs_stage_opts){ .event_free = tally_free,
				  .event_free_arg = &t });
	gs_stage *pc = mapper_new(p, &m, NULL);
	GS_OK_OR_DIE(gs_subscribe(pc, src, NULL, NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait(p), GS_TEST_FAIL);
	gs_pipeline_free(p);
	tally_check(&t, atomic_load(&sp.emitted), true);
	tally_fini(&t);
}

/* Its queue for the partition nobody holds fills up (buffer_size 10) and
 * holds back its input for the partition that is held: a drain drops that
 * queue as it goes, delivers the rest, and finishes. */
Test(stop, a_drain_empties_a_producer_consumers_unheld_partition,
     .timeout = GS_TEST_TIMEOUT)
{
	void *ev[100];
	_Atomic uint64_t freed = 0;
	mapper m = { 0 };
	recorder r = { 0 };
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *pc = array_into_mapper(
		p, ev, 100, &freed, &m,
		&(gs_stage_opts){ .dispatcher = gs_dispatcher_partition(
					  2, odd_even, NULL),
				  .buffer_size = 10 },
		&(gs_sub_opts){ .max_demand = 1 });
	gs_stage *cons = recorder_new(p, &r, NULL);
	GS_OK_OR_DIE(gs_subscribe(
		cons, pc, &(gs_sub_opts){ .partition = GS_PARTITION(1) },
		NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_DRAIN));
	/* The mapper passes on the events themselves, so the array's
	 * event_free also gets those the mapper dropped. */
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(pc, &st));
	cr_assert_eq(st.buffered, 0);
	cr_assert_eq(atomic_load(&r.received) + atomic_load(&freed) +
			     st.dropped,
		     100, "received %llu, freed %llu, dropped %llu",
		     (unsigned long long)atomic_load(&r.received),
		     (unsigned long long)atomic_load(&freed),
		     (unsigned long long)st.dropped);
	gs_pipeline_free(p);
}

Test(stop, now_frees_what_was_not_delivered, .timeout = GS_TEST_TIMEOUT)
{
	chain c;
	chain_run(&c, 2, 3);
	chain_stop(&c, GS_STOP_NOW);
	cr_assert_eq(chain_dropped(&c), atomic_load(&c.t.freed_count),
		     "every freed event is counted as dropped");
	cr_assert_eq(atomic_load(&c.r.reason), GS_OK);
	cr_assert_eq(atomic_load(&c.sp.terminated), 1);
	chain_free(&c);
}

Test(stop, freeing_a_running_pipeline_accounts_for_every_event,
     .timeout = GS_TEST_TIMEOUT)
{
	chain c;
	chain_run(&c, 1, 3);
	gs_pipeline_free(c.p);
	uint64_t produced = atomic_load(&c.sp.emitted);
	tally_check(&c.t, produced, true);
	cr_assert_eq(atomic_load(&c.sp.terminated), 1);
	cr_assert_eq(atomic_load(&c.r.terminated), 1);
	tally_fini(&c.t);
}

/* --- a consumer held inside handle_events ------------------------------- */

typedef struct held {
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp;
	holder h;
	tally t;
	gs_stop_mode mode;
	gs_err stop_result;
} held;

static void *stopper(void *arg)
{
	held *x = arg;
	x->stop_result = gs_pipeline_stop(x->p, x->mode);
	return NULL;
}

/* The consumer takes its first chunk and holds on to it while the
 * pipeline is told to stop; the producer's first call emitted 500 more
 * than asked, so there are events both in the ring and in the buffer. */
static void run_held(held *x, gs_stop_mode mode)
{
	*x = (held){ .sp = { .total = ID_SPACE, .extra_first = 500 },
		     .h = { .rec = { .check_order = true } },
		     .mode = mode };
	tally_init(&x->t, ID_SPACE);
	x->h.rec.tally = &x->t;
	gs_stage_opts opts = { .event_free = tally_free,
			       .event_free_arg = &x->t };
	x->p = pipeline_new(NULL);
	x->prod = seq_producer_new(x->p, &x->sp, &opts);
	/* A blocking stage: on a one-worker executor a scheduled one would
	 * hold the producer's worker. */
	x->cons = holder_new(x->p, &x->h, &opts);
	recorder_subscribe(&x->h.rec, x->cons, x->prod,
			   &(gs_sub_opts){ .max_demand = 100 });
	GS_OK_OR_DIE(gs_pipeline_start(x->p));
	wait_int_at_least(&x->h.entered, 1);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, stopper, x), 0);
	/* With GS_STOP_NOW, let the producer stop while the consumer is
	 * held; a drain cannot finish the producer before the consumer takes
	 * its buffer, so release at once. */
	if (mode == GS_STOP_NOW)
		wait_int_at_least(&x->sp.terminated, 1);
	atomic_store(&x->h.open, 1);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(x->stop_result, GS_OK);
}

Test(stop, drain_delivers_the_buffer_of_a_held_consumer,
     .timeout = GS_TEST_TIMEOUT)
{
	held x;
	run_held(&x, GS_STOP_DRAIN);
	uint64_t produced = atomic_load(&x.sp.emitted);
	cr_assert_geq(produced, 600);
	tally_check(&x.t, produced, true);
	cr_assert_eq(atomic_load(&x.t.freed_count), 0);
	cr_assert_eq(atomic_load(&x.h.rec.received), produced);
	cr_assert_eq(atomic_load(&x.h.rec.reason), GS_OK);
	gs_pipeline_free(x.p);
	tally_fini(&x.t);
}

Test(stop, now_frees_the_buffer_and_the_ring_of_a_held_consumer,
     .timeout = GS_TEST_TIMEOUT)
{
	held x;
	run_held(&x, GS_STOP_NOW);
	uint64_t produced = atomic_load(&x.sp.emitted);
	tally_check(&x.t, produced, true);
	/* At least the 500 still in the producer's buffer. */
	cr_assert_geq(atomic_load(&x.t.freed_count), 500);
	gs_stats ps, cs;
	GS_OK_OR_DIE(gs_stage_stats(x.prod, &ps));
	GS_OK_OR_DIE(gs_stage_stats(x.cons, &cs));
	cr_assert_eq(ps.dropped + cs.dropped, atomic_load(&x.t.freed_count));
	cr_assert_eq(atomic_load(&x.h.rec.reason), GS_OK);
	gs_pipeline_free(x.p);
	tally_fini(&x.t);
}

/* --- misuse ------------------------------------------------------------- */

typedef struct self_stopper {
	recorder rec;
	gs_pipeline *p;
	_Atomic int stop_err;
	_Atomic int wait_err;
	_Atomic int tried;
} self_stopper;

static int self_stop_events(void *state, gs_stage *stage, gs_sub *from,
			    void **events, size_t n)
{
	self_stopper *s = state;
	(void)stage;
	if (!atomic_exchange(&s->tried, 1)) {
		atomic_store(&s->stop_err, gs_pipeline_stop(s->p, GS_STOP_NOW));
		atomic_store(&s->wait_err, gs_pipeline_wait(s->p));
	}
	return recorder_take(&s->rec, from, events, n);
}

Test(stop, stop_and_wait_from_a_stage_thread_are_refused_not_deadlocked,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	seq_producer sp = { .total = 1000 };
	self_stopper s = { .p = p };
	static const gs_stage_ops ops = { .handle_events = self_stop_events };
	gs_stage *prod = NULL, *cons = NULL;
	prod = seq_producer_new(p, &sp, NULL);
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &ops, &s, NULL, &cons));
	GS_OK_OR_DIE(gs_subscribe(cons, prod, NULL, NULL));
	cr_assert_eq(start_and_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&s.tried), 1);
	cr_assert_neq(atomic_load(&s.stop_err), GS_OK);
	cr_assert_neq(atomic_load(&s.wait_err), GS_OK);
	cr_assert_eq(atomic_load(&s.rec.received), 1000);
	gs_pipeline_free(p);
}

/* A drain that reaches a consumer before its own gs_cancel has taken
 * effect: once the cancel leaves it without producers it must finish, or
 * the drain waits for ever. Rounds make the race likely. */
Test(stop, drain_finishes_a_consumer_whose_cancel_is_still_in_flight,
     .timeout = GS_TEST_TIMEOUT)
{
	for (int round = 0; round < 200; round++) {
		gs_pipeline *p = pipeline_new(NULL);
		seq_producer sp = { .total = SIZE_MAX };
		recorder ra = { 0 }, rb = { 0 };
		gs_stage *prod, *a, *b;
		prod = seq_producer_new(p, &sp, NULL);
		a = recorder_new(p, &ra, NULL);
		b = recorder_new(p, &rb, NULL);
		gs_sub *sa = recorder_subscribe(&ra, a, prod, NULL);
		recorder_subscribe(&rb, b, prod, NULL);
		GS_OK_OR_DIE(gs_pipeline_start(p));
		wait_at_least(&ra.received, 1);
		cr_assert_eq(gs_cancel(sa), GS_OK);
		cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
		cr_assert_eq(atomic_load(&ra.reason), GS_OK);
		cr_assert_eq(atomic_load(&rb.received) +
				     atomic_load(&ra.received),
			     atomic_load(&sp.emitted), "round %d", round);
		gs_pipeline_free(p);
	}
}

/* Makes consumers (no subscription: they never finish by themselves) on a
 * running pipeline until told to stop, and counts them. */
typedef struct maker {
	gs_pipeline *p;
	recorder rec;
	_Atomic bool quit;
	_Atomic int made;
} maker;

static void *make_stages(void *arg)
{
	maker *m = arg;
	while (!atomic_load(&m->quit)) {
		gs_stage *s;
		if (gs_stage_new(m->p, GS_CONSUMER, &recorder_ops, &m->rec,
				 NULL, &s) == GS_OK)
			atomic_fetch_add(&m->made, 1);
	}
	return NULL;
}

/* A stage made while the pipeline stops is asked to stop too, or the
 * stop would wait for it for ever; both modes. */
Test(stop, a_stage_made_during_a_stop_is_stopped_too,
     .timeout = GS_TEST_TIMEOUT)
{
	for (int mode = GS_STOP_DRAIN; mode <= GS_STOP_NOW; mode++) {
		for (int round = 0; round < 20; round++) {
			maker m = { .rec = { .check_order = false } };
			GS_OK_OR_DIE(gs_pipeline_new(NULL, &m.p));
			GS_OK_OR_DIE(gs_pipeline_start(m.p));
			pthread_t th;
			cr_assert_eq(pthread_create(&th, NULL, make_stages, &m),
				     0);
			while (atomic_load(&m.made) < 2)
				nap();
			cr_assert_eq(gs_pipeline_stop(m.p, (gs_stop_mode)mode),
				     GS_OK);
			atomic_store(&m.quit, true);
			pthread_join(th, NULL);
			/* Those made after the stop returned stop as well. */
			cr_assert_eq(gs_pipeline_wait(m.p), GS_OK);
			GS_OK_OR_DIE(gs_pipeline_free(m.p));
		}
	}
}

/* Threads blocked on the stages of a pipeline that never started: a push
 * into a full queue, a pull from a stream, a call. */
typedef struct waiter {
	gs_stage *push, *stream, *called;
	gs_err push_err, pull_err, call_err;
} waiter;

static void *push_into_full_queue(void *arg)
{
	waiter *w = arg;
	void *ev = GS_EV(3);
	w->push_err = gs_push(w->push, &ev, 1, -1);
	return NULL;
}

static void *pull_from_stream(void *arg)
{
	waiter *w = arg;
	void *ev;
	size_t n;
	w->pull_err = gs_stream_next(w->stream, &ev, 1, &n, -1);
	return NULL;
}

static void *call_stage(void *arg)
{
	waiter *w = arg;
	void *reply;
	w->call_err = gs_call(w->called, NULL, &reply, -1);
	return NULL;
}

/* A pipeline stopped before it started never runs, and the threads that
 * waited on it are let go (they waited for ever, and the stop returned
 * GS_ESTATE); what was pushed goes to event_free, counted and logged. */
Test(stop, a_stop_before_the_start_lets_every_waiting_thread_go,
     .timeout = GS_TEST_TIMEOUT)
{
	log_count lc = { 0 };
	gs_pipeline *p = counted_pipeline_new(&lc);
	_Atomic uint64_t freed = 0;
	waiter w = { 0 };
	recorder r = { 0 };
	GS_OK_OR_DIE(
		gs_push_producer(p,
				 &(gs_stage_opts){ .buffer_size = 2,
						   .event_free = count_free,
						   .event_free_arg = &freed },
				 &w.push));
	GS_OK_OR_DIE(gs_stream(p, NULL, &w.stream));
	w.called = recorder_new(p, &r, NULL);
	void *ev[2] = { GS_EV(1), GS_EV(2) };
	GS_OK_OR_DIE(gs_push(w.push, ev, 2, 0));
	pthread_t th[3];
	void *(*fn[3])(void *) = { push_into_full_queue, pull_from_stream,
				   call_stage };
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, fn[i], &w), 0);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_NOW), GS_OK);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	cr_expect_eq(w.push_err, GS_ECLOSED);
	cr_expect_eq(w.pull_err, GS_ECLOSED);
	cr_expect_eq(w.call_err, GS_ECLOSED);
	cr_expect_eq(gs_push(w.push, ev, 1, 0), GS_ECLOSED);
	cr_expect_eq(gs_pipeline_start(p), GS_ESTATE, "it never starts");
	cr_expect_eq(atomic_load(&freed), 2);
	cr_expect_eq(atomic_load(&lc.warn), 1, "the drop is logged");
	cr_expect_eq(atomic_load(&r.received), 0);
	gs_pipeline_free(p);
}
