// SPDX-License-Identifier: MIT
/*
 * A pipeline's life outside the event flow: subscription churn in bounded
 * memory, stages freed while the pipeline runs (the library's internal
 * gs__stage_release, so this suite links the static library), calls that
 * time out, calls made from the wrong place, a pipeline that cannot finish
 * and says why, the dot graph's errors, and demand far beyond a ring's
 * size.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gs_test.h"
#include "reap.h"

#ifndef GS_TEST_CHURN
#define GS_TEST_CHURN 5000
#endif

/* The graph as dot text, and how many edges it draws. */
static char *dot_of(gs_pipeline *p, size_t *edges)
{
	char *buf = dot_text(p);
	*edges = 0;
	for (const char *at = buf; (at = strstr(at, " -> ")); at++)
		(*edges)++;
	return buf;
}

/* Polls the dot graph until it draws `want` edges. */
static void wait_edges(gs_pipeline *p, size_t want)
{
	for (;;) {
		size_t edges;
		free(dot_of(p, &edges));
		if (edges == want)
			return;
		sched_yield();
	}
}

Test(lifecycle, subscribe_and_cancel_for_ever_keeps_only_live_edges,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = SIZE_MAX };
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	for (int i = 0; i < GS_TEST_CHURN; i++) {
		gs_sub *sub;
		gs_err err;
		/* Refused as a second subscription until the last one has let
		 * go at both ends. */
		while ((err = gs_subscribe(cons, prod,
					   &(gs_sub_opts){ .max_demand = 10 },
					   &sub)) == GS_EEXIST)
			sched_yield();
		GS_OK_OR_DIE(err);
		GS_OK_OR_DIE(gs_cancel(sub));
		gs_sub_release(sub);
	}
	/* Every one of them ended and went: the graph draws no edge, where
	 * it kept thousands before subscriptions were freed. */
	wait_edges(p, 0);
	cr_assert_eq(atomic_load(&r.cancels), GS_TEST_CHURN);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
}

Test(lifecycle, a_held_handle_outlives_its_subscription_until_released,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = 100 };
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	gs_sub *sub;
	GS_OK_OR_DIE(gs_subscribe(cons, prod, NULL, &sub));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	/* Ended, but the handle is ours: still valid, drawn dashed. */
	gs_sub_counts c;
	GS_OK_OR_DIE(gs_sub_stats(sub, &c));
	cr_assert_eq(c.sent, 100);
	cr_assert_eq(c.received, 100);
	cr_assert_eq(gs_cancel(sub), GS_OK, "idempotent on an ended one");
	cr_assert_eq(gs_sub_producer(sub), prod);
	size_t edges;
	char *dot = dot_of(p, &edges);
	cr_assert_eq(edges, 1);
	cr_assert_not_null(strstr(dot, "style=dashed"));
	free(dot);
	gs_sub_release(sub);
	free(dot_of(p, &edges));
	cr_assert_eq(edges, 0);
	gs_sub_release(NULL);
	gs_pipeline_free(p);
}

/* --- stages freed while the pipeline runs ------------------------------ */

static void count_freed(void *arg)
{
	atomic_fetch_add((_Atomic uint64_t *)arg, 1);
}

/* How many stages the graph draws, and whether the one named `name` is
 * drawn finished. */
static size_t dot_stages(gs_pipeline *p, const char *name, bool *finished)
{
	size_t edges, n = 0;
	char *dot = dot_of(p, &edges);
	for (const char *at = dot; (at = strstr(at, "[shape=")); at++)
		n++;
	if (finished) {
		const char *at = strstr(dot, name);
		const char *eol = at ? strchr(at, '\n') : NULL;
		*finished = eol && eol - at > 14 &&
			    !strncmp(eol - 14, "style=dashed];", 14);
	}
	free(dot);
	return n;
}

static void wait_finished(gs_pipeline *p, const char *name)
{
	bool finished = false;
	while (dot_stages(p, name, &finished), !finished)
		sched_yield();
}

Test(lifecycle, a_released_stage_is_freed_once_finished_while_the_pipeline_runs,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	/* Endless: the pipeline runs throughout. */
	counter c = { .end = 0 };
	recorder steady = { 0 };
	gs_stage *src = counter_new(p, &c, NULL);
	gs_stage *sink = recorder_new(p, &steady, NULL);
	GS_OK_OR_DIE(gs_subscribe(sink, src, NULL, NULL));
	/* Three short-lived pairs: a scheduled one and one whose consumer
	 * blocks (its own thread lets go of it), released before they
	 * start; and one released only once finished, whose subscription's
	 * handle is held. */
	static const char *const names[3][2] = { { "p0", "c0" },
						 { "p1", "c1" },
						 { "late-p", "late-c" } };
	seq_producer sp[3];
	recorder r[3];
	gs_stage *prod[3], *cons[3];
	gs_sub *held = NULL;
	for (size_t i = 0; i < 3; i++) {
		sp[i] = (seq_producer){ .total = 100 };
		r[i] = (recorder){ 0 };
		prod[i] = seq_producer_new(
			p, &sp[i], &(gs_stage_opts){ .name = names[i][0] });
		cons[i] = recorder_new(p, &r[i],
				       &(gs_stage_opts){ .name = names[i][1],
							 .blocking = i == 1 });
		GS_OK_OR_DIE(gs_subscribe(cons[i], prod[i], NULL,
					  i == 2 ? &held : NULL));
	}
	_Atomic uint64_t freed = 0;
	for (size_t i = 0; i < 2; i++) {
		gs__stage_release(prod[i], count_freed, (void *)&freed);
		gs__stage_release(cons[i], count_freed, (void *)&freed);
	}
	GS_OK_OR_DIE(gs_pipeline_start(p));
	wait_at_least(&freed, 4);
	cr_expect_eq(atomic_load(&r[0].received), 100);
	cr_expect_eq(atomic_load(&r[1].received), 100);
	/* Finished, then released: a stage its held subscription names stays
	 * until that handle is given back, then goes at once. */
	wait_finished(p, "late-p");
	wait_finished(p, "late-c");
	cr_expect_eq(dot_stages(p, NULL, NULL), 4);
	gs__stage_release(prod[2], count_freed, (void *)&freed);
	gs__stage_release(cons[2], count_freed, (void *)&freed);
	cr_expect_eq(atomic_load(&freed), 4);
	gs_sub_release(held);
	cr_expect_eq(atomic_load(&freed), 6);
	cr_expect_eq(atomic_load(&r[2].received), 100);
	/* Off the graph, and the rest runs on. */
	cr_expect_eq(dot_stages(p, NULL, NULL), 2);
	uint64_t now = atomic_load(&steady.received);
	wait_at_least(&steady.received, now + 1000);
	/* One released while it runs goes as the stop ends it, before
	 * gs_pipeline_stop returns. */
	gs__stage_release(sink, count_freed, (void *)&freed);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	cr_expect_eq(atomic_load(&freed), 7);
	cr_expect_eq(dot_stages(p, NULL, NULL), 1);
	gs_pipeline_free(p);
	cr_expect_eq(atomic_load(&freed), 7);
}

Test(lifecycle, a_released_stage_never_started_goes_with_its_pipeline,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	recorder r = { 0 };
	_Atomic uint64_t freed = 0;
	gs__stage_release(recorder_new(p, &r, NULL), count_freed,
			  (void *)&freed);
	cr_expect_eq(atomic_load(&freed), 0);
	gs_pipeline_free(p);
	cr_expect_eq(atomic_load(&freed), 1);
}

/* --- calls that time out ------------------------------------------------ */

/* A blocking stage: handle_cast waits for the gate (so calls queue behind
 * it), handle_call sleeps as long as the request says. */
typedef struct slow {
	_Atomic int in_cast;
	_Atomic int gate;
	_Atomic int calls; /* handle_call entered */
	_Atomic int late;  /* request_free calls */
	_Atomic uintptr_t late_request;
} slow;

static int slow_cast(void *state, gs_stage *stage, void *msg)
{
	slow *w = state;
	(void)stage, (void)msg;
	atomic_store(&w->in_cast, 1);
	while (!atomic_load(&w->gate))
		sched_yield();
	return GS_OK;
}

static int slow_call(void *state, gs_stage *stage, void *request, void **reply)
{
	slow *w = state;
	(void)stage;
	atomic_fetch_add(&w->calls, 1);
	/* Reads the request: ASan would see one freed (or out of scope). */
	int ms = *(const int *)request;
	nanosleep(&(struct timespec){ 0, ms * 1000000L }, NULL);
	*reply = (void *)(uintptr_t)ms;
	return GS_OK;
}

static void slow_request_free(void *request, void *reply, void *arg)
{
	slow *w = arg;
	(void)reply;
	atomic_store(&w->late_request, (uintptr_t)request);
	free(request);
	atomic_fetch_add(&w->late, 1);
}

static const gs_stage_ops slow_ops = { .handle_events = nop_events,
				       .handle_cast = slow_cast,
				       .handle_call = slow_call };

static gs_stage *slow_new(gs_pipeline **p, slow *w, bool with_free)
{
	gs_stage *s;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, p));
	gs_stage_opts o = { .blocking = true };
	if (with_free) {
		o.request_free = slow_request_free;
		o.request_free_arg = w;
	}
	GS_OK_OR_DIE(gs_stage_new(*p, GS_CONSUMER, &slow_ops, w, &o, &s));
	GS_OK_OR_DIE(gs_pipeline_start(*p));
	return s;
}

Test(lifecycle, a_call_that_timed_out_before_it_began_is_never_handled,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	slow w = { 0 };
	gs_stage *s = slow_new(&p, &w, false);
	GS_OK_OR_DIE(gs_cast(s, NULL));
	wait_int_at_least(&w.in_cast, 1);
	{
		/* On the stack: the stage must never see it. */
		int ms = 0;
		void *reply = (void *)7;
		cr_assert_eq(gs_call(s, &ms, &reply, 10), GS_ETIMEDOUT);
		cr_assert_eq((uintptr_t)reply, 7);
	}
	atomic_store(&w.gate, 1);
	/* A later call is answered, so the inbox has been read past the
	 * abandoned one. */
	int ms = 0;
	void *reply;
	GS_OK_OR_DIE(gs_call(s, &ms, &reply, -1));
	cr_assert_eq(atomic_load(&w.calls), 1, "the abandoned call ran");
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
}

Test(lifecycle, a_call_abandoned_while_running_goes_to_request_free,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	slow w = { 0 };
	gs_stage *s = slow_new(&p, &w, true);
	/* The call sleeps 200 ms and its caller gives up after 20: it is
	 * running then, unless this machine kept the stage's thread from
	 * starting it for 20 ms; then it goes to request_free all the same
	 * (never handled), and another try, with a longer wait, is made. */
	for (int tries = 0, wait_ms = 20;; tries++, wait_ms *= 2) {
		int before = atomic_load(&w.calls);
		int *req = malloc(sizeof *req);
		cr_assert_not_null(req);
		*req = 200;
		void *reply = NULL;
		cr_assert_eq(gs_call(s, req, &reply, wait_ms), GS_ETIMEDOUT);
		/* The stage holds *req or will: it is request_free's now. */
		wait_int_at_least(&w.late, tries + 1);
		cr_assert_eq(atomic_load(&w.late_request), (uintptr_t)req);
		if (atomic_load(&w.calls) > before)
			break; /* it ran, then went to request_free */
		cr_assert_lt(tries, 8, "no call began within its wait");
	}
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
}

/* Holds the stage's thread in a cast, then makes a call that times out
 * queued behind it; returns its request. */
static int *abandon_a_queued_call(gs_stage *s, slow *w)
{
	atomic_store(&w->gate, 0);
	atomic_store(&w->in_cast, 0);
	GS_OK_OR_DIE(gs_cast(s, NULL));
	wait_int_at_least(&w->in_cast, 1);
	int *req = malloc(sizeof *req);
	cr_assert_not_null(req);
	*req = 0;
	void *reply = (void *)7;
	cr_assert_eq(gs_call(s, req, &reply, 10), GS_ETIMEDOUT);
	cr_assert_eq((uintptr_t)reply, 7);
	return req;
}

/* With a request_free, even a call that never began is its: the caller,
 * who cannot tell, never frees the request after GS_ETIMEDOUT. */
Test(lifecycle, a_call_abandoned_before_it_began_goes_to_request_free,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	slow w = { 0 };
	gs_stage *s = slow_new(&p, &w, true);
	int *req = abandon_a_queued_call(s, &w);
	atomic_store(&w.gate, 1);
	wait_int_at_least(&w.late, 1);
	cr_assert_eq(atomic_load(&w.late_request), (uintptr_t)req);
	cr_assert_eq(atomic_load(&w.calls), 0, "the abandoned call ran");
	/* One abandoned and still queued at a stop goes there too. */
	req = abandon_a_queued_call(s, &w);
	GS_OK_OR_DIE(gs_stage_stop(s, GS_OK));
	atomic_store(&w.gate, 1);
	GS_OK_OR_DIE(gs_pipeline_wait(p));
	cr_assert_eq(atomic_load(&w.late), 2);
	cr_assert_eq(atomic_load(&w.late_request), (uintptr_t)req);
	cr_assert_eq(atomic_load(&w.calls), 0);
	gs_pipeline_free(p);
}

Test(lifecycle, without_request_free_a_running_call_is_waited_for,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	slow w = { 0 };
	gs_stage *s = slow_new(&p, &w, false);
	/* Begun within 20 ms, then in use past the deadline: the call
	 * returns only when the request is no longer in use. A call this
	 * machine kept from beginning in time is abandoned untouched
	 * (GS_ETIMEDOUT, never handled), and another try waits longer. */
	for (int tries = 0, wait_ms = 20;; tries++, wait_ms *= 2) {
		int before = atomic_load(&w.calls);
		int ms = 100;
		void *reply = NULL;
		gs_err err = gs_call(s, &ms, &reply, wait_ms);
		if (err == GS_ETIMEDOUT && atomic_load(&w.calls) == before) {
			cr_assert_lt(tries, 8, "no call began within its wait");
			continue;
		}
		GS_OK_OR_DIE(err);
		cr_assert_eq((uintptr_t)reply, 100);
		break;
	}
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
}

/* --- calls from the wrong place ----------------------------------------- */

typedef struct rude {
	gs_pipeline *other;
	gs_stage *peer;
	_Atomic int free_err, subscribe_err, wait_err, stop_err;
	_Atomic int done;
} rude;

static int rude_init(void *state, gs_stage *stage)
{
	rude *r = state;
	atomic_store(&r->free_err, gs_pipeline_free(r->other));
	atomic_store(&r->subscribe_err,
		     gs_subscribe(stage, r->peer, NULL, NULL));
	atomic_store(&r->wait_err, gs_pipeline_wait(r->other));
	atomic_store(&r->stop_err, gs_pipeline_stop(r->other, GS_STOP_NOW));
	atomic_store(&r->done, 1);
	return GS_OK;
}

static const gs_stage_ops rude_ops = { .init = rude_init,
				       .handle_events = nop_events };

Test(lifecycle, pipeline_calls_from_inside_a_callback_are_refused,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *s, *peer;
	seq_producer sp = { .total = 0 };
	rude r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &r.other));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &peer));
	r.peer = peer;
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &rude_ops, &r, NULL, &s));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(atomic_load(&r.done), 1, "start waited for the init");
	cr_assert_eq(atomic_load(&r.free_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&r.subscribe_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&r.wait_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&r.stop_err), GS_ETHREAD);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	GS_OK_OR_DIE(gs_pipeline_free(p));
	GS_OK_OR_DIE(gs_pipeline_free(r.other));
}

/* --- a pipeline that cannot finish says why ------------------------------ */

typedef struct said {
	_Atomic int unfinished;
	char last[256];
	_Atomic int no_subscription;
	_Atomic int no_subscriber;
} said;

static void remember(void *arg, gs_log_level level, const gs_stage *stage,
		     const char *msg)
{
	said *w = arg;
	(void)level, (void)stage;
	if (!strstr(msg, "unfinished:"))
		return;
	atomic_fetch_add(&w->unfinished, 1);
	if (strstr(msg, "no subscription"))
		atomic_fetch_add(&w->no_subscription, 1);
	if (strstr(msg, "no subscriber"))
		atomic_fetch_add(&w->no_subscriber, 1);
}

Test(lifecycle, wait_for_names_each_unfinished_stage_and_its_wait,
     .timeout = GS_TEST_TIMEOUT)
{
	said w = { 0 };
	gs_pipeline *p;
	gs_stage *lonely_cons, *lonely_prod;
	seq_producer sp = { .total = SIZE_MAX };
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(
		&(gs_pipeline_opts){ .log = remember, .log_arg = &w }, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp,
				  &(gs_stage_opts){ .name = "orphan" },
				  &lonely_prod));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r,
				  &(gs_stage_opts){ .name = "idle" },
				  &lonely_cons));
	cr_assert_eq(gs_pipeline_wait_for(p, 0), GS_ESTATE, "not started");
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait_for(p, 20), GS_ETIMEDOUT);
	cr_assert_eq(atomic_load(&w.unfinished), 2);
	cr_assert_eq(atomic_load(&w.no_subscription), 1);
	cr_assert_eq(atomic_load(&w.no_subscriber), 1);
	/* The graph says the same. */
	size_t edges;
	char *dot = dot_of(p, &edges);
	cr_assert_not_null(strstr(dot, "has no subscription"), "%s", dot);
	cr_assert_not_null(strstr(dot, "has no subscriber"), "%s", dot);
	free(dot);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	cr_assert_eq(gs_pipeline_wait_for(p, 0), GS_OK);
	gs_pipeline_free(p);
}

/* A closed push producer that still holds events waits for a subscriber,
 * not for gs_push_close (which the report told the user to call). */
Test(lifecycle, the_report_tells_a_closed_push_producer_from_an_open_one,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *push;
	GS_OK_OR_DIE(gs_push_producer(p, NULL, &push));
	void *ev[3] = { GS_EV(1), GS_EV(2), GS_EV(3) };
	GS_OK_OR_DIE(gs_push(push, ev, 3, 0));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	char *dot = dot_text(p);
	cr_expect_not_null(strstr(dot, "gs_push_close ends it"), "%s", dot);
	free(dot);
	GS_OK_OR_DIE(gs_push_close(push));
	dot = dot_text(p);
	cr_expect_null(strstr(dot, "gs_push_close ends it"), "%s", dot);
	cr_expect_not_null(strstr(dot, "closed: it ends once its queue"), "%s",
			   dot);
	free(dot);
	GS_OK_OR_DIE(gs_pipeline_stop(p, GS_STOP_NOW));
	gs_pipeline_free(p);
}

/* A log hook that draws the graph of the pipeline that logs: the hook may
 * call into it (it hung: the hook was called under the pipeline's lock). */
typedef struct drawer {
	gs_pipeline *p;
	_Atomic int drawn;
} drawer;

static void draw_on_log(void *arg, gs_log_level level, const gs_stage *stage,
			const char *msg)
{
	drawer *d = arg;
	(void)level, (void)msg;
	char *dot = dot_text(d->p);
	if (strstr(dot, gs_stage_name(stage)))
		atomic_fetch_add(&d->drawn, 1);
	free(dot);
}

Test(lifecycle, a_log_hook_may_call_into_the_pipeline_that_logs,
     .timeout = GS_TEST_TIMEOUT)
{
	drawer d = { 0 };
	recorder r = { 0 };
	gs_stage *idle;
	GS_OK_OR_DIE(gs_pipeline_new(&(gs_pipeline_opts){ .log = draw_on_log,
							  .log_arg = &d },
				     &d.p));
	GS_OK_OR_DIE(gs_stage_new(d.p, GS_CONSUMER, &recorder_ops, &r,
				  &(gs_stage_opts){ .name = "idle" }, &idle));
	GS_OK_OR_DIE(gs_pipeline_start(d.p));
	cr_assert_eq(gs_pipeline_wait_for(d.p, 20), GS_ETIMEDOUT);
	cr_assert_eq(atomic_load(&d.drawn), 1);
	GS_OK_OR_DIE(gs_pipeline_stop(d.p, GS_STOP_NOW));
	gs_pipeline_free(d.p);
}

/* A consumer on its own thread that takes one event per callback and
 * sleeps 20 ms over it: a pipeline that needs time to finish. */
static int sleepy_events(void *state, gs_stage *stage, gs_sub *from,
			 void **events, size_t n)
{
	(void)stage, (void)from, (void)events;
	nanosleep(&(struct timespec){ 0, 20 * 1000000L }, NULL);
	atomic_fetch_add((_Atomic size_t *)state, n);
	return GS_OK;
}

Test(lifecycle, wait_for_waits_for_a_pipeline_that_finishes_in_time,
     .timeout = GS_TEST_TIMEOUT)
{
	static const gs_stage_ops sleepy_ops = {
		.handle_events = sleepy_events
	};
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = 4 };
	_Atomic size_t got = 0;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prod));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &sleepy_ops, &got,
				  &(gs_stage_opts){ .blocking = true }, &cons));
	GS_OK_OR_DIE(gs_subscribe(cons, prod, &(gs_sub_opts){ .max_demand = 1 },
				  NULL));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* Its four callbacks take 80 ms: the wait must last that long and
	 * end with the pipeline, not time out before. */
	cr_assert_eq(gs_pipeline_wait_for(p, 60000), GS_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	cr_assert_eq(atomic_load(&got), 4);
	cr_assert_geq(ms, 75.0, "returned after %.1f ms", ms);
	GS_OK_OR_DIE(gs_pipeline_free(p));
}

Test(lifecycle, write_dot_reports_a_failed_write_as_io_error,
     .timeout = GS_TEST_TIMEOUT)
{
	FILE *full = fopen("/dev/full", "w");
	if (!full)
		cr_skip_test("no /dev/full here");
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	cr_assert_eq(gs_pipeline_write_dot(p, full), GS_EIO);
	cr_assert_eq(gs_pipeline_write_dot(NULL, full), GS_EINVAL);
	cr_assert_eq(gs_pipeline_write_dot(p, NULL), GS_EINVAL);
	fclose(full);
	gs_pipeline_free(p);
}

Test(lifecycle, a_huge_max_demand_is_refused_above_the_limit_and_logged_below,
     .timeout = GS_TEST_TIMEOUT)
{
	log_count log = { 0 };
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = 10 };
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(&(gs_pipeline_opts){ .log = log_counter,
							  .log_arg = &log },
				     &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	cr_assert_eq(
		gs_subscribe(cons, prod,
			     &(gs_sub_opts){ .max_demand = GS_MAX_DEMAND + 1 },
			     NULL),
		GS_EINVAL);
	cr_assert_eq(atomic_load(&log.warn), 0);
	/* 2^24 events in flight: a 128 MiB ring, which is said out loud. */
	GS_OK_OR_DIE(gs_subscribe(
		cons, prod, &(gs_sub_opts){ .max_demand = (size_t)1 << 24 },
		NULL));
	cr_assert_eq(atomic_load(&log.warn), 1);
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&r.received), 10);
	gs_pipeline_free(p);
}
