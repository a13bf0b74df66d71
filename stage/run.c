// SPDX-License-Identifier: MIT
/*
 * Running a stage: one turn of its loop (control requests, inbox, demand,
 * inputs, timers), a scheduled stage's quantum on an executor worker, a
 * blocking stage's own thread, and the orderly finish that lets go of
 * everything the stage holds.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "annotate.h"
#include "internal.h"
#include "park.h"
#include "reap.h"

void gs__wake(gs_stage *s)
{
	if (s->blocking)
		gs__ec_inc(&s->ec);
	else
		gs__executor_wake(s);
}

static void drop_cb(void *ctx, void *const *events, size_t n)
{
	gs__drop(ctx, events, n);
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

void gs__stage_abandon(gs_stage *s)
{
	/* Calls, casts and infos are answered or freed now; attach
	 * messages stay for the stage's free, which frees what is left. */
	gs__msg *keep = NULL, **keep_tail = &keep;
	for (gs__msg *m = take_inbox(s, true), *next; m; m = next) {
		next = m->next;
		if (m->kind == GS__MSG_ATTACH_OUT ||
		    m->kind == GS__MSG_ATTACH_IN) {
			m->next = NULL;
			*keep_tail = m;
			keep_tail = &m->next;
		} else {
			gs__discard_message(s, m);
			free(m);
		}
	}
	*keep_tail = s->backlog;
	s->backlog = keep;
	if (s->hooks.abandon)
		s->hooks.abandon(s, s->state);
}

/* A producer or producer-consumer that will take no more input and emit
 * nothing new: it finishes once its buffer is delivered. */
void gs__enter_done(gs_stage *s)
{
	if (s->done)
		return;
	s->done = true;
	atomic_store_explicit(&s->st_done, true, memory_order_relaxed);
	while (s->n_ins)
		gs__release_in(s, s->n_ins - 1, GS_OK);
}

/* Pipeline drain: only sources act; everything below finishes as its
 * producers do (or as its last input goes, see end_in). */
static void drain(gs_stage *s)
{
	s->draining = true;
	if (s->hooks.drain) {
		s->hooks.drain(s, s->state);
		return;
	}
	if (s->n_ins)
		return;
	if (s->kind == GS_CONSUMER)
		gs__stop(s, GS_OK);
	else
		gs__enter_done(s);
}

static bool read_control(gs_stage *s)
{
	if (!atomic_load_explicit(&s->ctl, memory_order_relaxed))
		return false;
	int ctl = atomic_exchange_explicit(&s->ctl, 0, memory_order_acquire);
	GS__HA(&s->ctl);
	if (ctl & GS__CTL_DEMAND)
		s->accumulate = atomic_load_explicit(&s->demand_req,
						     memory_order_relaxed) ==
				GS_DEMAND_ACCUMULATE;
	/* A drain waits for the messages that came before it: subscriptions
	 * attached in them must be there when it is applied. */
	if ((ctl & GS__CTL_DRAIN) && s->backlog)
		atomic_fetch_or_explicit(&s->ctl, GS__CTL_DRAIN,
					 memory_order_relaxed);
	else if (ctl & GS__CTL_DRAIN)
		drain(s);
	if (ctl & GS__CTL_STOP)
		gs__stop(s, s->stop_req_reason);
	return true;
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
	case GS__MSG_CALL:
	case GS__MSG_CAST:
	case GS__MSG_TIMER:
	case GS__MSG_INFO:
		gs__handle_message(s, m);
		break;
	}
}

/* The inbox joins the backlog's end; the backlog is handled from its
 * start, as much as a turn may (gs__turn_full). */
static bool is_attach(const gs__msg *m)
{
	return m->kind == GS__MSG_ATTACH_OUT || m->kind == GS__MSG_ATTACH_IN;
}

/* The inbox joins the backlog's end; the backlog is handled from its
 * start, as much as a turn may (gs__turn_full): only messages for the
 * stage's callbacks count, and a turn never stops in front of an attach,
 * which costs little and which the graph's rules wait for. */
static bool read_inbox(gs_stage *s)
{
	if (atomic_load_explicit(&s->inbox_pending, memory_order_acquire)) {
		gs__msg *m = take_inbox(s, false);
		if (s->backlog)
			s->backlog_tail->next = m;
		else
			s->backlog = m;
		for (; m; m = m->next) {
			s->backlog_attaches += is_attach(m);
			s->backlog_tail = m;
		}
	}
	if (!s->backlog)
		return false;
	uint64_t since = gs__now_ns();
	for (unsigned n = 0; s->backlog && !s->stopping;) {
		gs__msg *m = s->backlog;
		bool attach = is_attach(m);
		if (!attach && gs__turn_full(n, since))
			break;
		s->backlog = m->next;
		s->backlog_attaches -= attach;
		n += !attach;
		apply(s, m);
		free(m);
	}
	return true;
}

/* Passes the wanted demand to handle_demand, or to a producer-consumer's
 * input credit. */
static void pass_demand(gs_stage *s)
{
	uint64_t demand = s->want;
	s->want = 0;
	s->owed += demand;
	if (s->kind == GS_PRODUCER_CONSUMER || s->done)
		return;
	uint64_t t0 = gs__now_ns();
	int r = s->ops.handle_demand(s->state, s, demand);
	gs__busy_add(s, t0);
	if (r)
		gs__stop(s, r);
}

/*
 * Demand by level: the subscriptions can take `level` events; the buffer
 * and the demand already passed on and not yet answered (owed) cover part
 * of it, and only the rest reaches handle_demand (or, for a
 * producer-consumer, its input credit). Levels, not increments, so that
 * demand a departing subscription leaves unmet is neither lost nor asked
 * twice: the events answering it serve whoever asks next.
 */
static bool produce(gs_stage *s)
{
	size_t buffered = s->buf.count;
	bool changed = false;
	uint64_t level = s->disp->collect(s, &changed);
	if (s->stopping)
		return true;
	if (buffered)
		changed |= gs__dispatch_buffer(s);
	uint64_t covered = buffered + s->owed;
	uint64_t need = level > covered ? level - covered : 0;
	changed |= need != s->want;
	s->want = need;
	bool gated = s->disp->gated && s->disp->gated(s);
	if (s->want && !s->accumulate && !gated) {
		changed = true;
		pass_demand(s);
	}
	gs__count_buffered(s);
	gs__wake_consumers(s);
	return changed;
}

/* A done stage finishes once what it holds is delivered. With no
 * subscriber it waits for one, as GenStage does, unless the pipeline is
 * draining: then nobody will come, and what is left is dropped (counted,
 * logged and passed to event_free) as the stage stops; so are events
 * queued for a partition no subscription holds, while the others are
 * delivered. */
static bool check_done(gs_stage *s)
{
	if (s->stopping)
		return false;
	/* Draining, done or not: a producer-consumer whose full queue for
	 * such a partition holds back its input would never get done. */
	bool dropped = s->draining && s->disp && s->disp->drop_unheld &&
		       s->disp->drop_unheld(s);
	if (dropped)
		gs__count_buffered(s);
	if (!s->done)
		return dropped;
	size_t queued = s->disp->queued ? s->disp->queued(s) : 0;
	if ((s->buf.count || queued) && (s->n_outs || !s->draining))
		return dropped;
	gs__stop(s, GS_OK);
	return true;
}

/* Ends everything the stage holds, then reports. After
 * gs__stage_finished the pipeline may free the stage at any moment; true
 * if the stage was released and it is the caller's to free (gs__reap) once
 * it is done with it. */
static bool finish(gs_stage *s)
{
	int reason = s->stop_reason;
	gs__stage_failing(s, reason);
	gs__msg *left = s->backlog;
	if (left)
		s->backlog_tail->next = take_inbox(s, true);
	else
		left = take_inbox(s, true);
	s->backlog = NULL;
	s->backlog_attaches = 0;
	for (gs__msg *m = left, *next; m; m = next) {
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
	if (s->disp && s->disp->drop) {
		s->disp->drop(s);
		gs__count_buffered(s);
	}
	while (s->n_outs)
		gs__end_out(s, s->n_outs - 1, reason, reason, false);
	while (s->n_ins)
		gs__release_in(s, s->n_ins - 1, reason);
	if (s->ops.terminate) {
		uint64_t t0 = gs__now_ns();
		s->ops.terminate(s->state, s, reason);
		gs__busy_add(s, t0);
	}
	if (reason != GS_OK)
		gs__log(s, GS_LOG_ERROR, "stopped: %s (%d)",
			gs_strerror(reason), reason);
	if (!s->blocking) {
		gs__executor_forget(s);
		GS__HB(&s->sched);
		atomic_store_explicit(&s->sched, GS__SCHED_PAUSED,
				      memory_order_release);
	}
	return gs__stage_finished(s, reason);
}

static void run_init(gs_stage *s)
{
	s->inited = true;
	int r = GS_OK;
	if (s->ops.init) {
		uint64_t t0 = gs__now_ns();
		r = s->ops.init(s->state, s);
		gs__busy_add(s, t0);
	}
	if (r)
		gs__stop(s, r);
	gs__stage_inited(s, r);
}

/* One turn: everything the stage can do now; true if anything moved. */
static bool turn(gs_stage *s)
{
	/* The inbox first: subscriptions attached before a drain or stop
	 * was requested must be there when it is applied, as a queue in
	 * arrival order would have them. */
	bool progress = read_inbox(s);
	progress |= read_control(s);
	if (!s->stopping && s->hooks.poll)
		progress |= s->hooks.poll(s, s->state);
	if (!s->stopping && s->kind != GS_CONSUMER)
		progress |= produce(s);
	if (!s->stopping && s->kind != GS_PRODUCER)
		progress |= gs__read_inputs(s);
	if (!s->stopping)
		progress |= gs__fire_timers(s);
	if (!s->stopping && s->markers.n)
		progress |= gs__fire_markers(s);
	progress |= check_done(s);
	return progress;
}

/* Leaves RUNNING for idle unless a wake-up came in the meantime. */
static bool go_idle(gs_stage *s)
{
	if (s->timers.n) {
		gs__executor_timer(s, gs__timers_next(&s->timers));
		if (s->stopping)
			return false; /* out of memory: finish now */
	}
	uint32_t expect = GS__SCHED_RUNNING;
	GS__HB(&s->sched);
	return atomic_compare_exchange_strong_explicit(&s->sched, &expect, 0,
						       memory_order_acq_rel,
						       memory_order_relaxed);
}

bool gs__stage_run(gs_stage *s)
{
	gs__current = s;
	/* Clears WOKEN; acquire: what the wakers wrote before waking us is
	 * visible to the turn below. */
	GS__HB(&s->sched);
	atomic_exchange_explicit(&s->sched, GS__SCHED_RUNNING,
				 memory_order_acq_rel);
	GS__HA(&s->sched);
	if (!s->inited)
		run_init(s);
	/* The quantum is measured with the clock this thread last read
	 * (before the run, and as its callbacks are timed): a clock read
	 * costs more than a batch's hand-off, and a stale start only ends
	 * the run early. */
	uint64_t start = gs__clock_seen;
	bool again = false, reap = false;
	for (unsigned n = 1;; n++) {
		bool progress = turn(s);
		if (s->stopping) {
			reap = finish(s);
			break;
		}
		if (!progress && go_idle(s))
			break;
		if (n >= GS_QUANTUM_TURNS ||
		    gs__clock_seen - start >= GS_QUANTUM_NS) {
			/* Yield: we are the only one who may queue it now,
			 * since wakers see RUNNING or WOKEN. */
			GS__HB(&s->sched);
			atomic_store_explicit(&s->sched, GS__SCHED_WOKEN,
					      memory_order_release);
			again = true;
			break;
		}
		if (atomic_load_explicit(&s->sched, memory_order_relaxed) &
		    GS__SCHED_WOKEN) {
			GS__HB(&s->sched);
			atomic_exchange_explicit(&s->sched, GS__SCHED_RUNNING,
						 memory_order_acq_rel);
			GS__HA(&s->sched);
		}
	}
	gs__current = NULL;
	if (reap)
		gs__reap(s, false); /* a worker of the executor */
	return again;
}

/* Thread names hold 15 characters: the stage name's first ones. */
static void name_thread(const char *name)
{
	char buf[16];
	size_t n = strnlen(name, sizeof buf - 1);
	memcpy(buf, name, n);
	buf[n] = '\0';
	pthread_setname_np(pthread_self(), buf);
}

/* A blocking stage: today's thread-per-stage loop. */
static void *thread_main(void *arg)
{
	gs_stage *s = arg;
	name_thread(s->name);
	gs__current = s;
	run_init(s);
	while (!s->stopping) {
		uint32_t seen = gs__ec_value(&s->ec);
		if (!turn(s) && !s->stopping)
			gs__park(&s->ec, seen, gs__timers_next(&s->timers));
	}
	bool reap = finish(s);
	gs__current = NULL;
	gs__scratch_release();
	if (reap)
		gs__reap(s, true); /* this thread goes on detached */
	return NULL;
}

/* Under the pipeline lock, which also orders a blocking stage's thread id
 * before any joiner reads it. */
gs_err gs__start_stage(gs_stage *s)
{
	if (s->blocking && pthread_create(&s->thread, NULL, thread_main, s))
		return GS_ESPAWN;
	s->started = true;
	s->p->running++;
	s->p->inits_pending++;
	if (!s->blocking)
		gs__executor_start(s);
	return GS_OK;
}
