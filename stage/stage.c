// SPDX-License-Identifier: MIT
/*
 * Stages: creation, the worker loop, the control inbox, and the calls a
 * stage makes on itself (gs_emit, gs_done) or others make on it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "struct_version.h"
#include "park.h"

/* The stage whose worker is the calling thread, so that calls valid only
 * inside a stage's own callbacks can say GS_ETHREAD elsewhere. */
static _Thread_local gs_stage *current;

bool gs__is_current(const gs_stage *s)
{
	return s && current == s;
}

bool gs__in_any_stage(void)
{
	return current != NULL;
}

uint64_t gs__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Counters have one writer, so a plain load and store will do: no locked
 * instruction on the hot path. */
void gs__count(_Atomic uint64_t *counter, uint64_t n)
{
	atomic_store_explicit(
		counter,
		atomic_load_explicit(counter, memory_order_relaxed) + n,
		memory_order_relaxed);
}

int gs__cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t attr;
	if (pthread_condattr_init(&attr))
		return -1;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	int err = pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
	return err;
}

struct timespec gs__deadline(int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (timeout_ms <= 0)
		return ts;
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

bool gs__cond_wait(pthread_cond_t *cv, pthread_mutex_t *m, int timeout_ms,
		   const struct timespec *deadline)
{
	if (timeout_ms < 0)
		return pthread_cond_wait(cv, m), false;
	return timeout_ms == 0 ||
	       pthread_cond_timedwait(cv, m, deadline) == ETIMEDOUT;
}

void gs__busy_add(gs_stage *s, uint64_t since_ns)
{
	gs__count(&s->st_busy, gs__now_ns() - since_ns);
}

void gs__drop(gs_stage *owner, void *const *events, size_t n)
{
	if (owner->event_free)
		for (size_t i = 0; i < n; i++)
			owner->event_free(events[i], owner->event_free_arg);
	atomic_fetch_add_explicit(&owner->st_dropped, n, memory_order_relaxed);
}

static void drop_cb(void *ctx, void *const *events, size_t n)
{
	gs__drop(ctx, events, n);
}

void gs__stop(gs_stage *s, int reason)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->stop_reason = reason;
}

GS__API gs_err gs_stage_new(gs_pipeline *p, gs_kind kind,
			    const gs_stage_ops *ops, void *state,
			    const gs_stage_opts *opts, gs_stage **out)
{
	return gs__stage_create(p, kind, ops, state, opts, NULL, out);
}

gs_err gs__stage_create(gs_pipeline *p, gs_kind kind, const gs_stage_ops *ops,
			void *state, const gs_stage_opts *opts,
			const gs__hooks *hooks, gs_stage **out)
{
	if (!p || !ops || !out)
		return GS_EINVAL;
	GS__REFUSE_NEWER(&p->opts, ops, GS_STAGE_OPS_VERSION);
	GS__REFUSE_NEWER(&p->opts, opts, GS_STAGE_OPTS_VERSION);
	if (kind != GS_PRODUCER && kind != GS_PRODUCER_CONSUMER &&
	    kind != GS_CONSUMER)
		return GS_EINVAL;
	if (kind == GS_PRODUCER ? !ops->handle_demand : !ops->handle_events)
		return GS_EINVAL;
	gs_stage_opts o = opts ? *opts : (gs_stage_opts){ 0 };
	if (o.buffer_keep != GS_KEEP_LAST && o.buffer_keep != GS_KEEP_FIRST)
		return GS_EINVAL;
	if (o.demand != GS_DEMAND_FORWARD && o.demand != GS_DEMAND_ACCUMULATE)
		return GS_EINVAL;

	size_t size = (sizeof(gs_stage) + GS__CACHELINE - 1) &
		      ~(size_t)(GS__CACHELINE - 1);
	gs_stage *s = aligned_alloc(GS__CACHELINE, size);
	if (!s)
		return GS_ENOMEM;
	memset(s, 0, sizeof *s);
	if (pthread_mutex_init(&s->inbox_lock, NULL)) {
		free(s);
		return GS_ENOMEM;
	}
	s->p = p;
	if (hooks)
		s->hooks = *hooks;
	s->kind = kind;
	s->ops = *ops;
	s->state = state;
	s->event_free = o.event_free;
	s->event_free_arg = o.event_free_arg;
	s->msg_free = o.msg_free;
	s->msg_free_arg = o.msg_free_arg;
	s->accumulate = o.demand == GS_DEMAND_ACCUMULATE;
	size_t limit = o.buffer_size         ? o.buffer_size
		       : kind == GS_PRODUCER ? 10000
					     : GS_UNBOUNDED;
	gs__buffer_init(&s->buf, limit, o.buffer_keep);
	gs_err err = kind == GS_CONSUMER
			     ? (o.dispatcher.kind ? GS_EKIND : GS_OK)
			     : gs__dispatcher_init(s, &o.dispatcher);
	if (err) {
		s->hooks.cleanup =
			NULL; /* on error the state stays the caller's */
		gs__stage_free(s);
		return err;
	}

	pthread_mutex_lock(&p->lock);
	if (o.name)
		snprintf(s->name, sizeof s->name, "%s", o.name);
	else
		snprintf(s->name, sizeof s->name, "stage-%zu", p->n_stages);
	p->n_stages++;
	*p->stages_tail = s;
	p->stages_tail = &s->next;
	err = p->started ? gs__start_thread(s) : GS_OK;
	pthread_mutex_unlock(&p->lock);
	if (err)
		return err; /* the pipeline frees the unstarted stage */
	*out = s;
	return GS_OK;
}

void gs__stage_free(gs_stage *s)
{
	if (s->hooks.cleanup)
		s->hooks.cleanup(s, s->state);
	gs__dispatcher_fini(s);
	for (gs__msg *m = s->inbox_head, *next; m; m = next) {
		next = m->next;
		gs__discard_message(s, m);
		free(m);
	}
	gs__discard_timers(s);
	gs__buffer_fini(&s->buf);
	free(s->outs);
	free(s->ins);
	free(s->scratch);
	pthread_mutex_destroy(&s->inbox_lock);
	free(s);
}

gs__msg *gs__msg_new(gs__msg_kind kind, gs_sub *sub, int reason)
{
	gs__msg *m = malloc(sizeof *m);
	if (m)
		*m = (gs__msg){ .kind = kind, .sub = sub, .reason = reason };
	return m;
}

void gs__inbox_push_locked(gs_stage *s, gs__msg *m)
{
	if (s->inbox_tail)
		s->inbox_tail->next = m;
	else
		s->inbox_head = m;
	s->inbox_tail = m;
	atomic_store_explicit(&s->inbox_pending, 1, memory_order_release);
}

gs_err gs__post(gs_stage *s, gs__msg_kind kind, gs_sub *sub, int reason)
{
	gs__msg *m = gs__msg_new(kind, sub, reason);
	if (!m)
		return GS_ENOMEM;
	gs_err err = gs__post_msg(s, m);
	if (err)
		free(m);
	return err;
}

/* Queues m, or returns GS_ECLOSED (m stays the caller's). */
gs_err gs__post_msg(gs_stage *s, gs__msg *m)
{
	pthread_mutex_lock(&s->inbox_lock);
	bool closed = s->inbox_closed;
	if (!closed)
		gs__inbox_push_locked(s, m);
	pthread_mutex_unlock(&s->inbox_lock);
	if (closed)
		return GS_ECLOSED;
	gs__wake(s);
	return GS_OK;
}

static gs__msg *take_inbox(gs_stage *s, bool close)
{
	pthread_mutex_lock(&s->inbox_lock);
	gs__msg *m = s->inbox_head;
	s->inbox_head = s->inbox_tail = NULL;
	atomic_store_explicit(&s->inbox_pending, 0, memory_order_relaxed);
	if (close)
		s->inbox_closed = true;
	pthread_mutex_unlock(&s->inbox_lock);
	return m;
}

/* A producer or producer-consumer that will take no more input and emit
 * nothing new: it finishes once its buffer is delivered. */
void gs__enter_done(gs_stage *s)
{
	if (s->done)
		return;
	s->done = true;
	while (s->n_ins)
		gs__release_in(s, s->n_ins - 1, GS_OK);
}

static void apply(gs_stage *s, gs__msg *m)
{
	switch (m->kind) {
	case GS__MSG_ATTACH_OUT:
		gs__attach_out(s, m->sub);
		break;
	case GS__MSG_ATTACH_IN:
		gs__attach_in(s, m->sub);
		break;
	case GS__MSG_STOP:
		gs__stop(s, m->reason);
		break;
	case GS__MSG_CALL:
	case GS__MSG_CAST:
	case GS__MSG_TIMER:
		gs__handle_message(s, m);
		break;
	case GS__MSG_DEMAND:
		s->accumulate = m->reason == GS_DEMAND_ACCUMULATE;
		break;
	case GS__MSG_DRAIN:
		/* Only sources act: everything below finishes as its
		 * producers do (or as its last input goes, see end_in). */
		s->draining = true;
		if (s->n_ins)
			break;
		if (s->kind == GS_CONSUMER)
			gs__stop(s, GS_OK);
		else
			gs__enter_done(s);
		break;
	}
}

static bool read_inbox(gs_stage *s)
{
	if (!atomic_load_explicit(&s->inbox_pending, memory_order_acquire))
		return false;
	for (gs__msg *m = take_inbox(s, false), *next; m; m = next) {
		next = m->next;
		apply(s, m);
		free(m);
	}
	return true;
}

/* Hands the held demand to handle_demand, or to a producer-consumer's
 * input credit. */
static void pass_demand(gs_stage *s)
{
	uint64_t demand = s->held;
	s->held = 0;
	if (s->kind == GS_PRODUCER_CONSUMER) {
		s->credit += demand;
		return;
	}
	if (s->done)
		return;
	uint64_t t0 = gs__now_ns();
	int r = s->ops.handle_demand(s->state, s, demand);
	gs__busy_add(s, t0);
	if (r)
		gs__stop(s, r);
}

/* New demand is met from the buffer first, then from demand passed on
 * earlier for subscriptions that left, and only the rest reaches
 * handle_demand (or, for a producer-consumer, its input credit). */
static bool produce(gs_stage *s)
{
	size_t buffered = s->buf.count;
	bool changed = false;
	uint64_t fresh = s->disp->collect(s, &changed);
	if (s->stopping)
		return true;
	if (buffered)
		changed |= gs__dispatch_buffer(s);
	if (fresh) {
		changed = true;
		uint64_t take = fresh < buffered ? fresh : buffered;
		fresh -= take;
		take = fresh < s->unassigned ? fresh : s->unassigned;
		fresh -= take;
		s->unassigned -= take;
		s->held += fresh;
	}
	bool gated = s->disp->gated && s->disp->gated(s);
	if (s->held && !s->accumulate && !gated) {
		changed = true;
		pass_demand(s);
	}
	gs__wake_consumers(s);
	return changed;
}

/* A done stage finishes when its buffer is empty, or at once when nobody
 * is left to deliver it to. */
static void check_done(gs_stage *s)
{
	if (!s->done || s->stopping)
		return;
	size_t held = s->disp->held ? s->disp->held(s) : 0;
	if ((s->buf.count || held) && s->n_outs)
		return;
	if (s->buf.count) {
		gs__log(s, GS_LOG_WARN,
			"finished with no subscriber: dropped %zu buffered "
			"events",
			s->buf.count);
		gs__buffer_clear(&s->buf, drop_cb, s);
	}
	gs__stop(s, GS_OK);
}

/* Ends everything the stage holds, on its own thread, then reports. */
static void finish(gs_stage *s)
{
	int reason = s->stop_reason;
	gs__stage_failing(s, reason);
	for (gs__msg *m = take_inbox(s, true), *next; m; m = next) {
		next = m->next;
		if (m->kind == GS__MSG_ATTACH_OUT ||
		    m->kind == GS__MSG_ATTACH_IN)
			apply(s, m); /* stopping: attached without callbacks */
		else
			gs__discard_message(s, m);
		free(m);
	}
	gs__discard_timers(s);
	if (s->buf.count) {
		gs__log(s, GS_LOG_WARN, "stopped: dropped %zu buffered events",
			s->buf.count);
		gs__buffer_clear(&s->buf, drop_cb, s);
		atomic_store_explicit(&s->st_buffered, 0, memory_order_relaxed);
	}
	if (s->disp && s->disp->drop)
		s->disp->drop(s);
	while (s->n_outs)
		gs__end_out(s, s->n_outs - 1, reason, reason, false);
	while (s->n_ins)
		gs__release_in(s, s->n_ins - 1, reason);
	if (s->ops.terminate)
		s->ops.terminate(s->state, s, reason);
	if (reason != GS_OK)
		gs__log(s, GS_LOG_ERROR, "stopped: %s (%d)",
			gs_strerror(reason), reason);
	gs__stage_finished(s, reason);
}

static void *stage_main(void *arg)
{
	gs_stage *s = arg;
	current = s;
	if (s->ops.init) {
		uint64_t t0 = gs__now_ns();
		int r = s->ops.init(s->state, s);
		gs__busy_add(s, t0);
		if (r)
			gs__stop(s, r);
	}
	while (!s->stopping) {
		uint32_t seen = atomic_load_explicit(&s->seq,
						     memory_order_acquire);
		bool progress = read_inbox(s);
		if (!s->stopping && s->hooks.poll)
			progress |= s->hooks.poll(s, s->state);
		if (!s->stopping && s->kind != GS_CONSUMER)
			progress |= produce(s);
		if (!s->stopping && s->kind != GS_PRODUCER)
			progress |= gs__read_inputs(s);
		if (!s->stopping)
			progress |= gs__fire_timers(s);
		check_done(s);
		if (!progress && !s->stopping)
			gs__park(s, seen, gs__timers_next(&s->timers));
	}
	finish(s);
	current = NULL;
	return NULL;
}

/* Under the pipeline lock, which also orders the thread id's store before
 * any joiner reads it. */
gs_err gs__start_thread(gs_stage *s)
{
	if (pthread_create(&s->thread, NULL, stage_main, s))
		return GS_ESPAWN;
	s->started = true;
	s->p->running++;
	gs__update_crowded(s->p);
	return GS_OK;
}

GS__API gs_err gs_emit(gs_stage *s, void *const *events, size_t n)
{
	if (!s || (!events && n))
		return GS_EINVAL;
	if (s->kind == GS_CONSUMER)
		return GS_EKIND;
	if (!gs__is_current(s))
		return GS_ETHREAD;
	if (s->stopping)
		return GS_ECLOSED;
	size_t sent = 0;
	if (s->buf.count)
		gs__dispatch_buffer(s); /* older events go first */
	if (!s->buf.count)
		sent = gs__dispatch(s, events, n);
	/* What goes to the buffer is paid for when later demand is met from
	 * it (see produce). */
	s->credit -= sent < s->credit ? sent : s->credit;
	if (sent < n) {
		size_t dropped = gs__buffer_put(&s->buf, events + sent,
						n - sent, drop_cb, s);
		if (dropped)
			gs__log(s, GS_LOG_WARN,
				"buffer full (%zu): dropped %zu events",
				s->buf.limit, dropped);
		atomic_store_explicit(&s->st_buffered, s->buf.count,
				      memory_order_relaxed);
	}
	gs__wake_consumers(s);
	return GS_OK;
}

GS__API gs_err gs_done(gs_stage *s)
{
	if (!s)
		return GS_EINVAL;
	if (s->kind == GS_CONSUMER)
		return GS_EKIND;
	if (!gs__is_current(s))
		return GS_ETHREAD;
	gs__enter_done(s);
	return GS_OK;
}

GS__API gs_err gs_stage_stop(gs_stage *s, int reason)
{
	if (!s)
		return GS_EINVAL;
	return gs__post(s, GS__MSG_STOP, NULL, reason);
}

GS__API gs_err gs_stage_demand(gs_stage *s, gs_demand_mode mode)
{
	if (!s || (mode != GS_DEMAND_FORWARD && mode != GS_DEMAND_ACCUMULATE))
		return GS_EINVAL;
	if (s->kind == GS_CONSUMER)
		return GS_EKIND;
	return gs__post(s, GS__MSG_DEMAND, NULL, (int)mode);
}

GS__API void *gs_stage_state(const gs_stage *s)
{
	return s ? s->state : NULL;
}

GS__API const char *gs_stage_name(const gs_stage *s)
{
	return s ? s->name : NULL;
}

static uint64_t load(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

GS__API gs_err gs_stage_stats(const gs_stage *s, gs_stats *out)
{
	if (!s || !out)
		return GS_EINVAL;
	*out = (gs_stats){
		.events_in = load(&s->st_in),
		.events_out = load(&s->st_out),
		.batches_in = load(&s->st_bin),
		.batches_out = load(&s->st_bout),
		.pending_demand = load(&s->st_pending),
		.buffered = load(&s->st_buffered),
		.dropped = load(&s->st_dropped),
		.busy_ns = load(&s->st_busy),
	};
	return GS_OK;
}
