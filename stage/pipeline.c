// SPDX-License-Identifier: MIT
/*
 * Pipelines: the set of stages and subscriptions, starting, waiting,
 * stopping and freeing them, the first error, and logging. What a pipeline
 * shows of itself (the dot graph, why it has not finished) is observe.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "annotate.h"
#include "internal.h"
#include "reap.h"
#include "struct_version.h"

GS__API gs_err gs_pipeline_new(const gs_pipeline_opts *opts, gs_pipeline **out)
{
	if (!out)
		return GS_EINVAL;
	GS__REFUSE_NEWER(opts, opts, GS_PIPELINE_OPTS_VERSION);
	gs_pipeline *p = calloc(1, sizeof *p);
	if (!p)
		return GS_ENOMEM;
	if (pthread_mutex_init(&p->lock, NULL)) {
		free(p);
		return GS_ENOMEM;
	}
	/* The mutex's own bytes: a worker's last unlock writes them after
	 * helgrind has seen it released, and gs_pipeline_free's destroy
	 * reads them, a false report valgrind's glibc suppressions miss. */
	GS__ATOMIC(p->lock);
	/* On the monotonic clock, as gs__deadline measures timeouts. */
	if (gs__cond_init(&p->changed)) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		return GS_ENOMEM;
	}
	if (pthread_mutex_init(&p->join_lock, NULL)) {
		pthread_cond_destroy(&p->changed);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return GS_ENOMEM;
	}
	if (opts)
		p->opts = *opts;
	gs_err err = gs__executor_get(p->opts.executor, &p->ex);
	if (err) {
		pthread_mutex_destroy(&p->join_lock);
		pthread_cond_destroy(&p->changed);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return err;
	}
	p->slow_ns = (uint64_t)p->opts.warn_callback_ms * 1000000u;
	p->stages_tail = &p->stages;
	*out = p;
	return GS_OK;
}

/* Sets control request `ctl` on every stage still running, and abandons
 * those that never started (a pipeline stopped before its start, or whose
 * start failed part way): nothing will run them, so whoever waits on them
 * is let go. Allocates nothing, so stopping cannot fail for lack of
 * memory. */
static void request_all(gs_pipeline *p, int ctl, int reason)
{
	pthread_mutex_lock(&p->lock);
	if (p->stop_ctl != GS__CTL_STOP) {
		p->stop_ctl = ctl;
		p->stop_reason = reason;
	}
	for (gs_stage *s = p->stages; s; s = s->next)
		if (s->started && !s->finished)
			gs__request(s, ctl, reason);
	/* Abandoning may log, and the log hook may call into the pipeline:
	 * each is abandoned unlocked. A stage that never started is never
	 * reaped, so it and its place in the list stay. */
	for (gs_stage *s = p->stages; s; s = s->next) {
		if (s->started || s->abandoned)
			continue;
		s->abandoned = true;
		pthread_mutex_unlock(&p->lock);
		gs__stage_abandon(s);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
}

GS__API gs_err gs_pipeline_start(gs_pipeline *p)
{
	if (!p)
		return GS_EINVAL;
	pthread_mutex_lock(&p->lock);
	if (p->started) {
		pthread_mutex_unlock(&p->lock);
		return GS_ESTATE;
	}
	p->started = true;
	gs_err err = GS_OK;
	for (gs_stage *s = p->stages; s && !err; s = s->next)
		err = gs__start_stage(s);
	/* Inside a callback, waiting could hold the very worker the new
	 * stages need. */
	while (!err && p->inits_pending && !gs__in_any_stage())
		pthread_cond_wait(&p->changed, &p->lock);
	if (!err)
		err = p->init_err;
	pthread_mutex_unlock(&p->lock);
	/* The stages that did start stop with the failure's reason, as
	 * they would through permanent subscriptions. */
	if (err) {
		request_all(p, GS__CTL_STOP, err);
		(void)gs_pipeline_wait(p);
	}
	return err;
}

void gs__stage_inited(gs_stage *s, int reason)
{
	gs_pipeline *p = s->p;
	pthread_mutex_lock(&p->lock);
	if (reason != GS_OK && p->init_err == GS_OK)
		p->init_err = reason;
	if (--p->inits_pending == 0)
		pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
}

/* Before the stage lets its subscriptions go: a stage that fails in
 * reaction to this one must not be recorded as the first error. */
void gs__stage_failing(gs_stage *s, int reason)
{
	gs_pipeline *p = s->p;
	pthread_mutex_lock(&p->lock);
	if (reason != GS_OK && p->first_err == GS_OK)
		p->first_err = reason;
	pthread_mutex_unlock(&p->lock);
}

bool gs__stage_finished(gs_stage *s, int reason)
{
	gs_pipeline *p = s->p;
	pthread_mutex_lock(&p->lock);
	s->finished = true;
	s->reason = reason;
	bool reap = gs__reap_claim(s);
	if (--p->running == 0)
		pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
	return reap;
}

/* Joins every finished blocking stage's thread not joined yet; one caller
 * at a time. */
static void join_all(gs_pipeline *p)
{
	pthread_mutex_lock(&p->join_lock);
	for (;;) {
		pthread_mutex_lock(&p->lock);
		gs_stage *s = p->stages;
		while (s && !(s->blocking && s->started && s->finished &&
			      !s->joined))
			s = s->next;
		if (!s) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		s->joined = true;
		/* Copied under the lock: once released, the stage may be
		 * freed (reap.c) while its thread is joined here. */
		pthread_t thread = s->thread;
		pthread_mutex_unlock(&p->lock);
		pthread_join(thread, NULL);
	}
	pthread_mutex_unlock(&p->join_lock);
}

/* Waits for every stage to finish, and every released one being freed to
 * be (its freed callback returned), or for the deadline; true if they
 * did. Under the pipeline lock. */
static bool await_finished(gs_pipeline *p, int timeout_ms)
{
	struct timespec until = gs__deadline(timeout_ms);
	while (p->running || p->reaping)
		if (gs__cond_wait(&p->changed, &p->lock, timeout_ms, &until))
			return !p->running && !p->reaping;
	return true;
}

GS__API gs_err gs_pipeline_wait_for(gs_pipeline *p, int timeout_ms)
{
	if (!p)
		return GS_EINVAL;
	if (gs__in_any_stage() || gs__joined_by == p)
		return GS_ETHREAD; /* it would wait for itself */
	pthread_mutex_lock(&p->lock);
	if (!p->started) {
		pthread_mutex_unlock(&p->lock);
		return GS_ESTATE;
	}
	bool finished = await_finished(p, timeout_ms);
	int err = p->first_err;
	pthread_mutex_unlock(&p->lock);
	if (!finished) {
		gs__log_unfinished(p);
		return GS_ETIMEDOUT;
	}
	join_all(p);
	return err;
}

GS__API gs_err gs_pipeline_wait(gs_pipeline *p)
{
	return gs_pipeline_wait_for(p, -1);
}

GS__API gs_err gs_pipeline_stop(gs_pipeline *p, gs_stop_mode mode)
{
	if (!p)
		return GS_EINVAL;
	if (mode != GS_STOP_DRAIN && mode != GS_STOP_NOW)
		return GS_EINVAL;
	if (gs__in_any_stage() || gs__joined_by == p)
		return GS_ETHREAD;
	/* Never started: it never will (gs_pipeline_start is refused), and
	 * its stages are abandoned; stages made later stop at once. */
	pthread_mutex_lock(&p->lock);
	p->started = true;
	pthread_mutex_unlock(&p->lock);
	request_all(p, mode == GS_STOP_DRAIN ? GS__CTL_DRAIN : GS__CTL_STOP,
		    GS_OK);
	return gs_pipeline_wait(p);
}

GS__API gs_err gs_pipeline_free(gs_pipeline *p)
{
	if (!p)
		return GS_OK;
	if (gs__in_any_stage() || gs__joined_by == p)
		return GS_ETHREAD; /* it would free the running stage */
	pthread_mutex_lock(&p->lock);
	bool started = p->started;
	pthread_mutex_unlock(&p->lock);
	if (started)
		(void)gs_pipeline_stop(p, GS_STOP_NOW);
	for (gs_sub *sub = p->subs, *next; sub; sub = next) {
		next = sub->all.next;
		gs__sub_free(sub);
	}
	for (gs_stage *s = p->stages, *next; s; s = next) {
		next = s->next;
		gs__stage_free(s);
	}
	gs__executor_put(p->ex);
	pthread_mutex_destroy(&p->join_lock);
	pthread_cond_destroy(&p->changed);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return GS_OK;
}

void gs__log(gs_stage *s, gs_log_level level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	const gs_pipeline_opts *o = &s->p->opts;
	if (o->log)
		o->log(o->log_arg, level, s, msg);
	else
		fprintf(stderr, "genstage: %s: %s: %s\n",
			level == GS_LOG_ERROR ? "error" : "warning", s->name,
			msg);
}
