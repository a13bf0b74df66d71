// SPDX-License-Identifier: MIT
/*
 * Stages: creation, the control inbox and requests, and the calls a stage
 * makes on itself (gs_emit, gs_done) or others make on it. The loop that
 * runs a stage is in run.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "annotate.h"
#include "internal.h"
#include "struct_version.h"

/* The stage whose worker is the calling thread, so that calls valid only
 * inside a stage's own callbacks can say GS_ETHREAD elsewhere. */
_Thread_local gs_stage *gs__current;
_Thread_local const gs_pipeline *gs__joined_by;

bool gs__is_current(const gs_stage *s)
{
	return s && gs__current == s;
}

bool gs__in_any_stage(void)
{
	return gs__current != NULL;
}

/* Blocking calls are refused here: a worker blocked in one stage's
 * callback runs no other, and may be the one the awaited stage needs. */
bool gs__in_scheduled_stage(void)
{
	return gs__current && !gs__current->blocking;
}

_Thread_local uint64_t gs__clock_seen;

uint64_t gs__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return gs__clock_seen = (uint64_t)ts.tv_sec * 1000000000u +
				(uint64_t)ts.tv_nsec;
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
	/* gs__cond_wait needs no deadline for these: no clock read, which
	 * is a cold page or two on a pusher's first call after a pause. */
	if (timeout_ms <= 0)
		return (struct timespec){ 0 };
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
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

/* Every callback's time is counted; one that held a worker longer than the
 * pipeline's threshold is reported once, naming the stage. */
void gs__busy_add(gs_stage *s, uint64_t since_ns)
{
	uint64_t took = gs__now_ns() - since_ns;
	gs__count(&s->st_busy, took);
	if (s->blocking || !s->p->slow_ns || took < s->p->slow_ns ||
	    atomic_exchange_explicit(&s->warned_slow, true,
				     memory_order_relaxed))
		return;
	gs__log(s, GS_LOG_WARN,
		"a callback held a worker for %llu ms; a stage whose "
		"callbacks block needs gs_stage_opts.blocking",
		(unsigned long long)(took / 1000000));
}

void gs__drop(gs_stage *owner, void *const *events, size_t n)
{
	if (owner->event_free)
		for (size_t i = 0; i < n; i++)
			owner->event_free(events[i], owner->event_free_arg);
	gs__count_dropped(owner, n);
}

/* Any thread may drop, so this counter takes an atomic add. */
void gs__count_dropped(gs_stage *owner, size_t n)
{
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

GS__API gs_stage_opts gs_stage_opts_copy(const gs_stage_opts *opts)
{
	gs_stage_opts o = { 0 };
	if (!opts)
		return o;
	/* Fields are only added at the end: each version's struct ends
	 * where the next one's fields begin. */
	memcpy(&o, opts,
	       opts->version >= 1 ? sizeof o
				  : offsetof(gs_stage_opts, keeps_events));
	if (o.version < GS_STAGE_OPTS_VERSION)
		o.version = GS_STAGE_OPTS_VERSION;
	return o;
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
	const char *name = opts && opts->name ? opts->name : "(unnamed)";
	if (kind != GS_PRODUCER && kind != GS_PRODUCER_CONSUMER &&
	    kind != GS_CONSUMER)
		return gs__refuse(&p->opts, GS_EINVAL,
				  "gs_stage_new %s: unknown kind %d", name,
				  (int)kind);
	if (kind == GS_PRODUCER ? !ops->handle_demand : !ops->handle_events)
		return gs__refuse(&p->opts, GS_EINVAL,
				  "gs_stage_new %s: a %s needs %s", name,
				  kind == GS_PRODUCER ? "producer"
						      : "consumer or "
							"producer-consumer",
				  kind == GS_PRODUCER ? "handle_demand"
						      : "handle_events");
	gs_stage_opts o = gs_stage_opts_copy(opts);
	if (o.buffer_keep != GS_KEEP_LAST && o.buffer_keep != GS_KEEP_FIRST)
		return gs__refuse(&p->opts, GS_EINVAL,
				  "gs_stage_new %s: unknown buffer_keep %d",
				  name, (int)o.buffer_keep);
	if (o.demand != GS_DEMAND_FORWARD && o.demand != GS_DEMAND_ACCUMULATE)
		return gs__refuse(&p->opts, GS_EINVAL,
				  "gs_stage_new %s: unknown demand mode %d",
				  name, (int)o.demand);
	if (o.buffer_size == GS_BUFFER_NONE &&
	    o.dispatcher.kind == GS_DISPATCH_PARTITION)
		return gs__refuse(&p->opts, GS_EINVAL,
				  "gs_stage_new %s: GS_BUFFER_NONE with a "
				  "partition dispatcher, whose queues never "
				  "drop",
				  name);

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
	s->ex = p->ex;
	s->blocking = o.blocking;
	s->keeps_events = o.keeps_events;
	atomic_init(&s->sched, GS__SCHED_PAUSED);
	s->ex_deadline = UINT64_MAX;
	if (hooks)
		s->hooks = *hooks;
	s->kind = kind;
	s->ops = *ops;
	s->state = state;
	s->event_free = o.event_free;
	s->event_free_arg = o.event_free_arg;
	s->msg_free = o.msg_free;
	s->msg_free_arg = o.msg_free_arg;
	s->request_free = o.request_free;
	s->request_free_arg = o.request_free_arg;
	s->accumulate = o.demand == GS_DEMAND_ACCUMULATE;
	atomic_init(&s->demand_mode, (int)o.demand);
	GS__ATOMIC(s->sched);
	GS__ATOMIC(s->ec);
	GS__ATOMIC(s->ctl);
	GS__ATOMIC(s->stop_claimed);
	GS__ATOMIC(s->demand_req);
	GS__ATOMIC(s->demand_mode);
	GS__ATOMIC(s->warned_slow);
	GS__ATOMIC(s->inbox_pending);
	GS__ATOMIC(s->st_in);
	GS__ATOMIC(s->st_out);
	GS__ATOMIC(s->st_bin);
	GS__ATOMIC(s->st_bout);
	GS__ATOMIC(s->st_dropped);
	GS__ATOMIC(s->st_busy);
	GS__ATOMIC(s->st_pending);
	GS__ATOMIC(s->st_buffered);
	GS__ATOMIC(s->st_released);
	GS__ATOMIC(s->st_ins);
	GS__ATOMIC(s->st_outs);
	GS__ATOMIC(s->st_done);
	size_t limit = o.buffer_size == GS_BUFFER_NONE ? 0
		       : o.buffer_size                 ? o.buffer_size
		       : kind == GS_PRODUCER           ? 10000
						       : GS_UNBOUNDED;
	gs__buffer_init(&s->buf, limit, o.buffer_keep);
	gs_err err = kind == GS_CONSUMER
			     ? (o.dispatcher.kind ? GS_EKIND : GS_OK)
			     : gs__dispatcher_init(s, &o.dispatcher);
	if (err == GS_EKIND || err == GS_EINVAL)
		gs__refuse(&p->opts, err,
			   err == GS_EKIND
				   ? "gs_stage_new %s: a consumer has no "
				     "dispatcher"
				   : "gs_stage_new %s: invalid dispatcher "
				     "(unknown kind, or a partition dispatcher "
				     "with no partitions or no hash)",
			   name);
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
	/* Started before it is listed: a stage whose thread could not be
	 * started is not the pipeline's, and its state is the caller's
	 * again (it was freed twice, listed with its cleanup). Nothing
	 * reads the list before the lock is returned. */
	err = p->started ? gs__start_stage(s) : GS_OK;
	if (err) {
		pthread_mutex_unlock(&p->lock);
		gs__refuse(&p->opts, err,
			   "gs_stage_new %s: could not start its thread",
			   s->name);
		s->hooks.cleanup = NULL;
		gs__stage_free(s);
		return err;
	}
	p->n_stages++;
	*p->stages_tail = s;
	p->stages_tail = &s->next;
	/* Made while the pipeline stops: it stops as the others were asked
	 * to (see request_all). */
	if (p->started && p->stop_ctl)
		gs__request(s, p->stop_ctl, p->stop_reason);
	pthread_mutex_unlock(&p->lock);
	*out = s;
	return GS_OK;
}

void gs__stage_free(gs_stage *s)
{
	if (s->hooks.cleanup)
		s->hooks.cleanup(s, s->state);
	gs__dispatcher_fini(s);
	/* Only a stage that never finished a run has either left. */
	for (int k = 0; k < 2; k++)
		for (gs__msg *m = k ? s->inbox_head : s->backlog, *next; m;
		     m = next) {
			next = m->next;
			gs__discard_message(s, m);
			free(m);
		}
	gs__discard_timers(s);
	gs__buffer_fini(&s->buf);
	free(s->outs);
	free(s->ins);
	pthread_mutex_destroy(&s->inbox_lock);
	void (*freed)(void *arg) = s->freed;
	void *freed_arg = s->freed_arg;
	free(s);
	if (freed)
		freed(freed_arg);
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

/* Events without demand wait in the buffer; a full one drops as
 * buffer_keep says. A buffer that cannot grow for lack of memory drops
 * the rest too, and the stage stops with GS_ENOMEM: it cannot keep the
 * promise of its buffer. Either way each drop is counted and logged. */
static void buffer(gs_stage *s, void *const *events, size_t n)
{
	size_t room = s->buf.limit - s->buf.count;
	if (!gs__buffer_reserve(&s->buf, n < room ? n : room)) {
		gs__log(s, GS_LOG_ERROR,
			"out of memory for the buffer: dropped %zu events", n);
		gs__drop(s, events, n);
		gs__stop(s, GS_ENOMEM);
		return;
	}
	size_t dropped = gs__buffer_put(&s->buf, events, n, drop_cb, s);
	if (dropped)
		gs__log(s, GS_LOG_WARN, "buffer full (%zu): dropped %zu events",
			s->buf.limit, dropped);
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
	/* Every emitted event answers demand passed on, sent or buffered
	 * (produce counts the buffer as covering demand). */
	s->owed -= n < s->owed ? n : s->owed;
	if (sent < n)
		buffer(s, events + sent, n - sent);
	gs__count_buffered(s);
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

/* Sets a control request and wakes the stage; needs no memory. The first
 * stop request's reason is the one the stage stops with. */
void gs__request(gs_stage *s, int ctl, int reason)
{
	if (ctl & GS__CTL_STOP) {
		if (atomic_exchange_explicit(&s->stop_claimed, true,
					     memory_order_relaxed))
			ctl &= ~GS__CTL_STOP;
		else
			s->stop_req_reason = reason;
	}
	if (ctl & GS__CTL_DEMAND)
		atomic_store_explicit(&s->demand_req, reason,
				      memory_order_relaxed);
	if (!ctl)
		return;
	/* Release pairs with the stage's acquire exchange of ctl: it reads
	 * the reason written above. */
	GS__HB(&s->ctl);
	atomic_fetch_or_explicit(&s->ctl, ctl, memory_order_release);
	gs__wake(s);
}

GS__API gs_err gs_stage_stop(gs_stage *s, int reason)
{
	if (!s)
		return GS_EINVAL;
	gs__request(s, GS__CTL_STOP, reason);
	return GS_OK;
}

GS__API gs_err gs_stage_demand(gs_stage *s, gs_demand_mode mode)
{
	if (!s || (mode != GS_DEMAND_FORWARD && mode != GS_DEMAND_ACCUMULATE))
		return GS_EINVAL;
	if (s->kind == GS_CONSUMER)
		return GS_EKIND;
	atomic_store_explicit(&s->demand_mode, (int)mode, memory_order_relaxed);
	gs__request(s, GS__CTL_DEMAND, (int)mode);
	return GS_OK;
}

GS__API gs_err gs_stage_demand_mode(const gs_stage *s, gs_demand_mode *out)
{
	if (!s || !out)
		return GS_EINVAL;
	if (s->kind == GS_CONSUMER)
		return GS_EKIND;
	*out = (gs_demand_mode)atomic_load_explicit(&s->demand_mode,
						    memory_order_relaxed);
	return GS_OK;
}

GS__API gs_err gs_stage_dispatcher(const gs_stage *s, gs_dispatcher *out)
{
	if (!s || !out)
		return GS_EINVAL;
	if (s->kind == GS_CONSUMER)
		return GS_EKIND;
	*out = s->dconf; /* immutable after gs_stage_new */
	return GS_OK;
}

GS__API void *gs_stage_state(const gs_stage *s)
{
	return s ? s->state : NULL;
}

GS__API const char *gs_stage_name(const gs_stage *s)
{
	return s ? s->name : NULL;
}

GS__API gs_pipeline *gs_stage_pipeline(const gs_stage *s)
{
	return s ? s->p : NULL;
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
		.buffered = load(&s->st_buffered) +
			    (s->hooks.buffered ? s->hooks.buffered(s, s->state)
					       : 0),
		.dropped = load(&s->st_dropped),
		.released = load(&s->st_released),
		.busy_ns = load(&s->st_busy),
	};
	return GS_OK;
}
