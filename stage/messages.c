// SPDX-License-Identifier: MIT
/*
 * Messages to a stage from outside its thread: synchronous calls with a
 * timeout, casts, and timers that fire handle_info on the stage's thread.
 */
#include <stdlib.h>

#include "annotate.h"
#include "internal.h"

/*
 * A call is PENDING in the inbox, RUNNING in handle_call, then ANSWERED.
 * A caller whose wait ends first leaves it ABANDONED, and a pending call
 * is then never handled. With a request_free, the request of an abandoned
 * call, pending or running, is its (the stage hands it over when it
 * reaches the call, or discards it), so the caller, who cannot tell the
 * two apart, never frees it. Without one, a pending call's request stays
 * the caller's, and a running call is waited for, since its request is in
 * use until handle_call returns.
 */
enum { CALL_PENDING, CALL_RUNNING, CALL_ANSWERED, CALL_ABANDONED };

/* Shared by the caller and the stage; the last of the two frees it. */
struct gs__call {
	pthread_mutex_t lock;
	pthread_cond_t answered;
	int state;
	void *request;
	void *reply;
	int err;
	_Atomic int refs;
};

static void call_unref(gs__call *c)
{
	GS__HB(&c->refs);
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	GS__HA(&c->refs);
	pthread_cond_destroy(&c->answered);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Answers the caller, or, when it gave up, hands request and reply to
 * the stage's request_free. */
static void answer(gs_stage *s, gs__call *c, void *reply, int err)
{
	pthread_mutex_lock(&c->lock);
	bool abandoned = c->state == CALL_ABANDONED;
	if (!abandoned) {
		c->reply = reply;
		c->err = err;
		c->state = CALL_ANSWERED;
		pthread_cond_signal(&c->answered);
	}
	pthread_mutex_unlock(&c->lock);
	if (abandoned && s && s->request_free)
		s->request_free(c->request, reply, s->request_free_arg);
	call_unref(c);
}

/* The stage takes a call from its inbox: false if the caller gave up. */
static bool begin(gs__call *c)
{
	pthread_mutex_lock(&c->lock);
	bool live = c->state == CALL_PENDING;
	if (live)
		c->state = CALL_RUNNING;
	pthread_mutex_unlock(&c->lock);
	return live;
}

static gs__call *call_new(void *request)
{
	gs__call *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	if (pthread_mutex_init(&c->lock, NULL)) {
		free(c);
		return NULL;
	}
	if (gs__cond_init(&c->answered)) {
		pthread_mutex_destroy(&c->lock);
		free(c);
		return NULL;
	}
	c->request = request;
	atomic_init(&c->refs, 2);
	GS__ATOMIC(c->refs);
	return c;
}

static gs_err post_payload(gs_stage *s, gs__msg_kind kind, void *msg,
			   uint64_t deadline)
{
	gs__msg *m = gs__msg_new(kind, NULL, 0);
	if (!m)
		return GS_ENOMEM;
	m->payload = msg;
	m->deadline = deadline;
	gs_err err = gs__post_msg(s, m);
	if (err)
		free(m);
	return err;
}

/* Posts a call-like message (a call, or a gs_sync_info) and waits for its
 * answer: see the states above. `let_go` says whether a running one may
 * be abandoned at the deadline. */
static gs_err post_and_wait(gs_stage *s, gs__msg_kind kind, void *request,
			    void *payload, bool let_go, int timeout_ms,
			    void **reply)
{
	gs__call *c = call_new(request);
	gs__msg *m = c ? gs__msg_new(kind, NULL, 0) : NULL;
	if (!m) {
		if (c)
			call_unref(c), call_unref(c);
		return GS_ENOMEM;
	}
	m->call = c;
	m->payload = payload;
	gs_err err = gs__post_msg(s, m);
	if (err) {
		free(m);
		call_unref(c);
		call_unref(c);
		return err;
	}
	struct timespec until = gs__deadline(timeout_ms);
	pthread_mutex_lock(&c->lock);
	while (c->state == CALL_PENDING || c->state == CALL_RUNNING) {
		if (!gs__cond_wait(&c->answered, &c->lock, timeout_ms, &until))
			continue;
		if (c->state == CALL_PENDING ||
		    (c->state == CALL_RUNNING && let_go)) {
			c->state = CALL_ABANDONED;
			break;
		}
		/* Running, with nobody to release the request when it
		 * returns: wait for it. */
		timeout_ms = -1;
	}
	err = c->state == CALL_ANSWERED ? c->err : GS_ETIMEDOUT;
	if (c->state == CALL_ANSWERED && !err && reply)
		*reply = c->reply;
	pthread_mutex_unlock(&c->lock);
	call_unref(c);
	return err;
}

GS__API gs_err gs_call(gs_stage *s, void *request, void **reply, int timeout_ms)
{
	if (!s || !reply)
		return GS_EINVAL;
	if (!s->ops.handle_call)
		return GS_EINVAL;
	if (gs__is_current(s) || gs__in_scheduled_stage())
		return GS_ETHREAD;
	return post_and_wait(s, GS__MSG_CALL, request, NULL,
			     s->request_free != NULL, timeout_ms, reply);
}

GS__API gs_err gs_async_info(gs_stage *s, void *msg)
{
	if (!s || !s->ops.handle_info)
		return GS_EINVAL;
	return post_payload(s, GS__MSG_INFO, msg, 0);
}

GS__API gs_err gs_sync_info(gs_stage *s, void *msg, int timeout_ms)
{
	if (!s || !s->ops.handle_info)
		return GS_EINVAL;
	if (gs__is_current(s) || gs__in_scheduled_stage())
		return GS_ETHREAD;
	return post_and_wait(s, GS__MSG_INFO, NULL, msg, false, timeout_ms,
			     NULL);
}

GS__API gs_err gs_cast(gs_stage *s, void *msg)
{
	if (!s || !s->ops.handle_cast)
		return GS_EINVAL;
	return post_payload(s, GS__MSG_CAST, msg, 0);
}

GS__API gs_err gs_send_after(gs_stage *s, unsigned ms, void *msg)
{
	if (!s || !s->ops.handle_info)
		return GS_EINVAL;
	return post_payload(s, GS__MSG_TIMER, msg,
			    gs__now_ns() + (uint64_t)ms * 1000000u);
}

static void free_msg(gs_stage *s, void *msg)
{
	if (s->msg_free)
		s->msg_free(msg, s->msg_free_arg);
}

static void run(gs_stage *s, int (*cb)(void *, gs_stage *, void *), void *msg)
{
	uint64_t t0 = gs__now_ns();
	int r = cb(s->state, s, msg);
	gs__busy_add(s, t0);
	if (r)
		gs__stop(s, r);
}

/* An info message waits behind what the buffer holds now; with nothing
 * buffered (a consumer's case) it is handled at once. A sync caller is
 * answered once it is queued, as GenStage.sync_info is. */
static void queue_info(gs_stage *s, gs__msg *m)
{
	/* A sync caller that gave up leaves the message to the stage all the
	 * same (begin fails, and the answer below finds nobody). */
	bool waiting = m->call && begin(m->call);
	int err = GS_OK;
	if (s->buf.count &&
	    gs__timers_add(&s->markers, s->buf.taken + s->buf.count,
			   m->payload)) {
		gs__log(s, GS_LOG_ERROR, "out of memory for an info message");
		if (!waiting) /* a waiting sync caller keeps it (GS_ENOMEM) */
			free_msg(s, m->payload);
		err = GS_ENOMEM;
	}
	if (m->call)
		answer(NULL, m->call, NULL, err);
	if (err)
		gs__stop(s, err);
	else if (!s->buf.count)
		run(s, s->ops.handle_info, m->payload);
}

/* On the stage's thread, from its inbox. */
void gs__handle_message(gs_stage *s, gs__msg *m)
{
	if (s->stopping) {
		gs__discard_message(s, m);
		return;
	}
	switch (m->kind) {
	case GS__MSG_CALL: {
		if (!begin(m->call)) {
			/* The caller gave up before it began: never handled;
			 * the request goes to request_free, if any. */
			answer(s, m->call, NULL, GS_ETIMEDOUT);
			break;
		}
		void *reply = NULL;
		uint64_t t0 = gs__now_ns();
		int r = s->ops.handle_call(s->state, s, m->call->request,
					   &reply);
		gs__busy_add(s, t0);
		answer(s, m->call, reply, r);
		if (r)
			gs__stop(s, r);
		break;
	}
	case GS__MSG_CAST:
		run(s, s->ops.handle_cast, m->payload);
		break;
	case GS__MSG_TIMER:
		if (gs__timers_add(&s->timers, m->deadline, m->payload)) {
			gs__log(s, GS_LOG_ERROR, "out of memory for a timer");
			free_msg(s, m->payload);
			gs__stop(s, GS_ENOMEM);
		}
		break;
	case GS__MSG_INFO:
		queue_info(s, m);
		break;
	default:
		break;
	}
}

/* A message the stage will never handle: answer or free what it holds.
 * A gs_sync_info whose caller still waits keeps its message (ECLOSED). */
void gs__discard_message(gs_stage *s, gs__msg *m)
{
	if (m->kind == GS__MSG_CALL) {
		answer(s, m->call, NULL, GS_ECLOSED);
	} else if (m->kind == GS__MSG_INFO && m->call) {
		if (!begin(m->call))
			free_msg(s, m->payload); /* the caller gave up */
		answer(NULL, m->call, NULL, GS_ECLOSED);
	} else if (m->kind == GS__MSG_CAST || m->kind == GS__MSG_TIMER ||
		   m->kind == GS__MSG_INFO) {
		free_msg(s, m->payload);
	}
}

bool gs__fire_timers(gs_stage *s)
{
	if (!s->timers.n || gs__timers_next(&s->timers) > gs__now_ns())
		return false;
	uint64_t now = gs__now_ns();
	for (unsigned n = 0;
	     !s->stopping && s->timers.n &&
	     gs__timers_next(&s->timers) <= now && !gs__turn_full(n, now);
	     n++)
		run(s, s->ops.handle_info, gs__timers_pop(&s->timers));
	return true;
}

/* Markers whose buffer position has been passed reach handle_info, in
 * the order they were queued. */
bool gs__fire_markers(gs_stage *s)
{
	bool fired = false;
	while (!s->stopping && s->markers.n &&
	       gs__timers_next(&s->markers) <= s->buf.taken) {
		run(s, s->ops.handle_info, gs__timers_pop(&s->markers));
		fired = true;
	}
	return fired;
}

void gs__discard_timers(gs_stage *s)
{
	while (s->markers.n)
		free_msg(s, gs__timers_pop(&s->markers));
	gs__timers_fini(&s->markers);
	while (s->timers.n)
		free_msg(s, gs__timers_pop(&s->timers));
	gs__timers_fini(&s->timers);
}
