// SPDX-License-Identifier: MIT
/* Plain threads at the edges: pushing with back-pressure and pulling with
 * demand. */
#include <pthread.h>

#include "gs_test.h"

#ifndef GS_TEST_PUSHES
#define GS_TEST_PUSHES 20000
#endif
#define PUSHERS 4

typedef struct slow {
	uintptr_t last[PUSHERS];
	atomic_size_t count;
	int out_of_order;
} slow;

static int slow_events(void *state, gs_stage *s, gs_sub *from, void **ev,
		       size_t n)
{
	(void)s;
	(void)from;
	slow *c = state;
	for (size_t i = 0; i < n; i++) {
		uintptr_t v = GS_VAL(ev[i]);
		unsigned t = (unsigned)(v >> 24);
		uintptr_t k = v & 0xffffff;
		c->out_of_order += k != c->last[t] + 1;
		c->last[t] = k;
		for (volatile int j = 0; j < 200; j++)
			;
	}
	atomic_fetch_add(&c->count, n);
	return GS_OK;
}

typedef struct pusher_arg {
	gs_stage *stage;
	uintptr_t id;
	atomic_size_t *blocked;
} pusher_arg;

static void *push_all(void *arg)
{
	pusher_arg *a = arg;
	void *batch[8];
	for (uintptr_t i = 1; i <= GS_TEST_PUSHES;) {
		size_t k = 0;
		for (; k < 8 && i + k <= GS_TEST_PUSHES; k++)
			batch[k] = GS_EV((a->id << 24) | (i + k));
		/* A push that finds no room is counted, then waits: counting
		 * timeouts instead made the check depend on the clock. */
		gs_err err = gs_push(a->stage, batch, k, 0);
		if (err == GS_EFULL) {
			atomic_fetch_add(a->blocked, 1);
			err = gs_push(a->stage, batch, k, -1);
		}
		if (err)
			return (void *)(uintptr_t)err;
		i += k;
	}
	return NULL;
}

Test(push, publishers_block_on_a_slow_consumer_and_lose_nothing,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *src, *cons;
	cr_assert_eq(gs_push_producer(p, &(gs_stage_opts){ .buffer_size = 64 },
				      &src),
		     GS_OK);
	static const gs_stage_ops ops = { .handle_events = slow_events };
	slow c = { 0 };
	gs_stage_new(p, GS_CONSUMER, &ops, &c, NULL, &cons);
	gs_subscribe(cons, src, &(gs_sub_opts){ .max_demand = 32 }, NULL);
	gs_pipeline_start(p);
	atomic_size_t blocked = 0;
	pthread_t th[PUSHERS];
	pusher_arg args[PUSHERS];
	for (uintptr_t t = 0; t < PUSHERS; t++) {
		args[t] = (pusher_arg){ src, t, &blocked };
		pthread_create(&th[t], NULL, push_all, &args[t]);
	}
	for (int t = 0; t < PUSHERS; t++) {
		void *ret;
		pthread_join(th[t], &ret);
		cr_assert_null(ret, "push failed: %d", (int)(uintptr_t)ret);
	}
	cr_assert_eq(gs_push_close(src), GS_OK);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&c.count), PUSHERS * GS_TEST_PUSHES);
	cr_assert_eq(c.out_of_order, 0);
	cr_assert_gt(atomic_load(&blocked), 0, "nobody was ever held back");
	gs_pipeline_free(p);
}

Test(push, fails_fast_when_full_and_refuses_bad_pushes)
{
	log_count lc = { 0 };
	gs_pipeline *p = counted_pipeline_new(&lc);
	gs_stage *src;
	_Atomic uint64_t freed = 0;
	gs_push_producer(p,
			 &(gs_stage_opts){ .buffer_size = 4,
					   .event_free = count_free,
					   .event_free_arg = &freed },
			 &src);
	void *ev[5] = { 0 };
	/* not started: nothing drains the queue */
	cr_assert_eq(gs_push(src, ev, 3, 0), GS_OK);
	cr_assert_eq(gs_push(src, ev, 2, 0), GS_EFULL, "all or nothing");
	cr_assert_eq(gs_push(src, ev, 2, 10), GS_ETIMEDOUT);
	cr_assert_eq(gs_push(src, ev, 5, 0), GS_EINVAL, "larger than queue");
	cr_assert_eq(gs_push(NULL, ev, 1, 0), GS_EINVAL);
	counter c = { 0 };
	gs_stage *plain = counter_new(p, &c, NULL);
	cr_assert_eq(gs_push(plain, ev, 1, 0), GS_EINVAL, "not a push stage");
	cr_assert_eq(gs_push_close(src), GS_OK);
	cr_assert_eq(gs_push(src, ev, 1, 0), GS_ECLOSED);
	gs_pipeline_free(p);
	cr_assert_eq(atomic_load(&freed), 3, "queued events are freed");
	cr_assert_eq(atomic_load(&lc.warn), 1, "and the drop logged");
}

Test(stream, delivers_everything_in_order_then_reports_the_end,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { .end = 30000 };
	gs_stage *src = counter_new(p, &c, NULL), *st;
	cr_assert_eq(gs_stream(p, &(gs_stage_opts){ .buffer_size = 100 }, &st),
		     GS_OK);
	gs_subscribe(st, src, &(gs_sub_opts){ .max_demand = 50 }, NULL);
	gs_pipeline_start(p);
	void *buf[37];
	size_t n, got = 0;
	gs_err err;
	while (!(err = gs_stream_next(st, buf, 37, &n, 5000))) {
		cr_assert_gt(n, 0);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(GS_VAL(buf[i]), got + i);
		got += n;
	}
	cr_assert_eq(err, GS_ECLOSED);
	cr_assert_eq(got, 30000);
	cr_assert_eq(gs_stream_next(st, buf, 37, &n, 0), GS_ECLOSED);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	gs_pipeline_free(p);
}

/* What may wait for the puller: the stream's size (100) and the chunk that
 * overshoots it (max_demand - min_demand, 20). Upstream, one more ask
 * (max_demand, 40) and the events of a pull not counted yet (10). */
#define STREAM_ROOM 100
#define STREAM_WAITING (STREAM_ROOM + 20)
#define STREAM_ASKED (STREAM_WAITING + 40 + 10)

Test(stream, takes_only_what_the_puller_makes_room_for,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	_Atomic uint64_t pulled = 0;
	/* Endless: only demand holds it back. On each handle_demand it
	 * checks that the demand passed so far is within what was pulled
	 * and what the stream may hold. */
	seq_producer sp = { .total = SIZE_MAX,
			    .consumed = &pulled,
			    .slack = STREAM_ASKED };
	gs_stage *src, *st;
	src = seq_producer_new(p, &sp, NULL);
	GS_OK_OR_DIE(gs_stream(
		p, &(gs_stage_opts){ .buffer_size = STREAM_ROOM }, &st));
	GS_OK_OR_DIE(gs_subscribe(st, src, &(gs_sub_opts){ .max_demand = 40 },
				  NULL));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	void *buf[10];
	size_t n;
	gs_stats stats;
	for (int round = 0; round < 50; round++) {
		cr_assert_eq(gs_stream_next(st, buf, 10, &n, 5000), GS_OK);
		atomic_fetch_add(&pulled, n);
		GS_OK_OR_DIE(gs_stage_stats(st, &stats));
		cr_assert_leq(stats.events_in,
			      atomic_load(&pulled) + STREAM_WAITING);
	}
	/* The puller stops: the stream fills the room it has, then takes no
	 * more (its producer counted any demand beyond that). */
	uint64_t room = atomic_load(&pulled) + STREAM_ROOM;
	for (;;) {
		GS_OK_OR_DIE(gs_stage_stats(st, &stats));
		if (stats.events_in >= room)
			break;
		nap();
	}
	cr_assert_leq(stats.events_in, atomic_load(&pulled) + STREAM_WAITING);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_NOW), GS_OK);
	cr_assert_eq(atomic_load(&sp.over_demand), 0,
		     "upstream was asked for %llu events with %llu pulled",
		     (unsigned long long)atomic_load(&sp.demanded),
		     (unsigned long long)atomic_load(&pulled));
	gs_pipeline_free(p);
}

Test(stream, times_out_when_nothing_comes)
{
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *st;
	gs_stream(p, NULL, &st);
	gs_pipeline_start(p);
	void *buf[4];
	size_t n = 9;
	cr_assert_eq(gs_stream_next(st, buf, 4, &n, 10), GS_ETIMEDOUT);
	cr_assert_eq(n, 9, "a failing call leaves *n untouched");
	cr_assert_eq(gs_stream_next(st, buf, 0, &n, 10), GS_EINVAL);
	cr_assert_eq(gs_stream_next(NULL, buf, 4, &n, 10), GS_EINVAL);
	gs_pipeline_stop(p, GS_STOP_NOW);
	gs_pipeline_free(p);
}

/* Emits whole batches until 100 events or more went out, then fails. */
static long fail_after_100(void *arg, void **out, size_t max)
{
	counter *c = arg;
	if (c->next >= 100)
		return -4321;
	for (size_t k = 0; k < max; k++)
		out[k] = GS_EV(c->next++);
	return (long)max;
}

Test(stream, ends_with_the_reason_its_producer_failed,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	counter c = { 0 };
	gs_stage *src, *st;
	gs_from_fn(p, fail_after_100, &c, NULL, &src);
	gs_stream(p, NULL, &st);
	gs_subscribe(st, src,
		     &(gs_sub_opts){ .max_demand = 10,
				     .cancel = GS_CANCEL_TRANSIENT },
		     NULL);
	gs_pipeline_start(p);
	void *buf[8];
	size_t n, got = 0;
	gs_err err;
	while (!(err = gs_stream_next(st, buf, 8, &n, 5000)))
		got += n;
	cr_assert_eq(got, c.next, "what came before the failure is delivered");
	cr_assert_eq(err, 4321, "not GS_ECLOSED: the stream says why");
	cr_assert_eq(gs_stream_next(st, buf, 8, &n, 0), 4321);
	gs_pipeline_free(p);
}
