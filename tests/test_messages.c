// SPDX-License-Identifier: MIT
/* Calls, casts and timers: replies, timeouts, one callback at a time (and,
 * for a blocking stage, on one thread of its own), and what happens to
 * messages a stopping stage never handled. */
#include <pthread.h>

#include "gs_test.h"

typedef struct box {
	bool own_thread; /* a blocking stage: one thread for every callback */
	pthread_t self;
	atomic_int inside;      /* a callback is running */
	atomic_int overlapping; /* callbacks that found another running */
	atomic_int wrong_thread;
	uintptr_t total;
	uintptr_t order[16];
	_Atomic int fired;
	int ticks;
	int self_call;
	_Atomic int release; /* lets a slow call (request 1000) return */
} box;

/* Scheduled stages may move between workers, but never run two callbacks
 * at once; a blocking stage stays on its own thread. */
static void enter(box *b)
{
	if (atomic_exchange(&b->inside, 1))
		atomic_fetch_add(&b->overlapping, 1);
	if (b->own_thread && !pthread_equal(b->self, pthread_self()))
		atomic_fetch_add(&b->wrong_thread, 1);
}

static void leave(box *b)
{
	atomic_store(&b->inside, 0);
}

static int on_init(void *state, gs_stage *s)
{
	box *b = state;
	b->self = pthread_self();
	void *reply;
	b->self_call = gs_call(s, NULL, &reply, 10);
	return GS_OK;
}

static int on_call(void *state, gs_stage *s, void *req, void **reply)
{
	(void)s;
	box *b = state;
	enter(b);
	uintptr_t r = (uintptr_t)req;
	if (r == 1000) /* slower than the caller waits */
		wait_int_at_least(&b->release, 1);
	leave(b);
	if (r == 666)
		return GS_EUSER + 6;
	*reply = (void *)(b->total + r);
	return GS_OK;
}

static int on_cast(void *state, gs_stage *s, void *msg)
{
	(void)s;
	box *b = state;
	enter(b);
	b->total += (uintptr_t)msg;
	leave(b);
	return GS_OK;
}

static int on_info(void *state, gs_stage *s, void *msg)
{
	box *b = state;
	enter(b);
	int n = atomic_load(&b->fired);
	if (n < 16)
		b->order[n] = GS_VAL(msg);
	if ((uintptr_t)msg == 99 && ++b->ticks < 5)
		gs_send_after(s, 2, msg); /* periodic: re-arm */
	leave(b);
	atomic_fetch_add(&b->fired, 1);
	return GS_OK;
}

static const gs_stage_ops box_ops = { .init = on_init,
				      .handle_events = nop_events,
				      .handle_call = on_call,
				      .handle_cast = on_cast,
				      .handle_info = on_info };

static gs_stage *box_new(gs_pipeline **p, box *b, gs_stage_opts *o)
{
	*p = pipeline_new(NULL);
	gs_stage *s;
	b->own_thread = o && o->blocking;
	cr_assert_eq(gs_stage_new(*p, GS_CONSUMER, &box_ops, b, o, &s), GS_OK);
	cr_assert_eq(gs_pipeline_start(*p), GS_OK);
	return s;
}

static void check_callbacks(const box *b)
{
	cr_assert_eq(atomic_load(&b->overlapping), 0);
	cr_assert_eq(atomic_load(&b->wrong_thread), 0,
		     "a blocking stage's callbacks left its thread");
}

Test(call, replies_after_earlier_casts_one_callback_at_a_time,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	box b = { 0 };
	gs_stage *s = box_new(&p, &b, NULL);
	cr_assert_eq(gs_cast(s, (void *)5), GS_OK);
	cr_assert_eq(gs_cast(s, (void *)6), GS_OK);
	void *reply = NULL;
	cr_assert_eq(gs_call(s, (void *)100, &reply, 5000), GS_OK);
	cr_assert_eq((uintptr_t)reply, 111, "casts first, in order");
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_NOW), GS_OK);
	check_callbacks(&b);
	cr_assert_eq(b.self_call, GS_ETHREAD, "a stage cannot call itself");
	gs_pipeline_free(p);
}

static void count_late(void *request, void *reply, void *arg)
{
	(void)reply;
	if ((uintptr_t)request == 1000)
		atomic_fetch_add((_Atomic int *)arg, 1);
}

/* Its handle_call waits to be released, so it is a blocking stage; the
 * late reply goes to request_free with the request. */
Test(call, times_out_and_the_late_reply_is_discarded,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	box b = { 0 };
	_Atomic int late = 0;
	gs_stage *s = box_new(&p, &b,
			      &(gs_stage_opts){ .blocking = true,
						.request_free = count_late,
						.request_free_arg = &late });
	void *reply = (void *)7;
	cr_assert_eq(gs_call(s, (void *)1000, &reply, 20), GS_ETIMEDOUT);
	cr_assert_eq((uintptr_t)reply, 7, "untouched on error");
	atomic_store(&b.release, 1);
	/* the stage is still fine afterwards */
	cr_assert_eq(gs_call(s, (void *)1, &reply, -1), GS_OK);
	cr_assert_eq((uintptr_t)reply, 1);
	cr_assert_eq(atomic_load(&late), 1);
	gs_pipeline_stop(p, GS_STOP_NOW);
	check_callbacks(&b);
	gs_pipeline_free(p);
}

Test(call, an_error_from_handle_call_stops_the_stage,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	box b = { 0 };
	gs_stage *s = box_new(&p, &b, NULL);
	void *reply;
	cr_assert_eq(gs_call(s, (void *)666, &reply, 5000), GS_EUSER + 6);
	cr_assert_eq(gs_pipeline_wait(p), GS_EUSER + 6);
	cr_assert_eq(gs_call(s, (void *)1, &reply, 100), GS_ECLOSED);
	cr_assert_eq(gs_cast(s, (void *)1), GS_ECLOSED);
	gs_pipeline_free(p);
}

Test(call, bad_arguments_are_refused)
{
	void *reply;
	cr_assert_eq(gs_call(NULL, NULL, &reply, 0), GS_EINVAL);
	cr_assert_eq(gs_cast(NULL, NULL), GS_EINVAL);
	cr_assert_eq(gs_send_after(NULL, 1, NULL), GS_EINVAL);
	gs_pipeline *p = pipeline_new(NULL);
	static const gs_stage_ops plain = { .handle_events = nop_events };
	gs_stage *s;
	gs_stage_new(p, GS_CONSUMER, &plain, NULL, NULL, &s);
	cr_assert_eq(gs_call(s, NULL, &reply, 0), GS_EINVAL, "no handle_call");
	cr_assert_eq(gs_cast(s, NULL), GS_EINVAL, "no handle_cast");
	cr_assert_eq(gs_send_after(s, 1, NULL), GS_EINVAL, "no handle_info");
	gs_pipeline_free(p);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

Test(timer, timers_fire_in_deadline_order_one_callback_at_a_time,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	box b = { 0 };
	gs_stage *s = box_new(&p, &b, NULL);
	/* Timer k is due `after[k]` ms from its gs_send_after, somewhere in
	 * [earliest, latest] of the clock read around the call: if this
	 * thread is held between the calls, the deadlines move with it, and
	 * the order checked below is the one they then say. */
	static const unsigned after[3] = { 60, 20, 40 };
	uint64_t earliest[3], latest[3];
	for (int k = 0; k < 3; k++) {
		earliest[k] = mono_ns() + after[k] * 1000000u;
		gs_send_after(s, after[k], (void *)(uintptr_t)(k + 1));
		latest[k] = mono_ns() + after[k] * 1000000u;
	}
	gs_send_after(s, 0, (void *)99); /* re-arms itself 4 times */
	wait_int_at_least(&b.fired, 8);
	/* One armed once the others have fired fires too. */
	cr_assert_eq(gs_send_after(s, 10, (void *)77), GS_OK);
	wait_int_at_least(&b.fired, 9);
	gs_pipeline_stop(p, GS_STOP_NOW);
	cr_assert_eq(atomic_load(&b.fired), 9);
	cr_assert_eq(b.order[8], 77);
	cr_assert_eq(b.ticks, 5);
	uintptr_t mine[3];
	int k = 0;
	for (int i = 0; i < 8; i++)
		if (b.order[i] != 99)
			mine[k++] = b.order[i];
	cr_assert_eq(k, 3);
	/* Each fired no later than one that was surely due after it: with
	 * no stall (the three calls took less than the 20 ms between their
	 * delays), exactly the order 2, 3, 1. */
	for (int i = 0; i < 3; i++)
		for (int j = i + 1; j < 3; j++) {
			int first = (int)mine[i] - 1, then = (int)mine[j] - 1;
			cr_assert(earliest[first] <= latest[then],
				  "timer %d fired before timer %d, due earlier",
				  first + 1, then + 1);
		}
	check_callbacks(&b);
	gs_pipeline_free(p);
}

Test(timer, timers_pending_at_stop_go_to_msg_free, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	box b = { 0 };
	_Atomic uint64_t freed = 0;
	gs_stage *s = box_new(&p, &b,
			      &(gs_stage_opts){ .msg_free = count_free,
						.msg_free_arg = &freed });
	for (uintptr_t i = 0; i < 5; i++)
		cr_assert_eq(gs_send_after(s, 60000, (void *)i), GS_OK);
	void *reply;
	gs_call(s, (void *)1, &reply, -1); /* the timers are now armed */
	gs_pipeline_stop(p, GS_STOP_NOW);
	cr_assert_eq(atomic_load(&freed), 5);
	cr_assert_eq(atomic_load(&b.fired), 0);
	gs_pipeline_free(p);
}
