// SPDX-License-Identifier: MIT
/*
 * Pipelines: the set of stages and subscriptions, starting, waiting,
 * stopping and freeing them, the first error, logging and the dot graph.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
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
	if (pthread_cond_init(&p->changed, NULL)) {
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
	uint32_t warn = p->opts.warn_callback_ms ? p->opts.warn_callback_ms
						 : 100;
	p->slow_ns = warn == GS_WARN_NEVER ? 0 : (uint64_t)warn * 1000000u;
	p->stages_tail = &p->stages;
	*out = p;
	return GS_OK;
}

/* Sets control request `ctl` on every stage still running; allocates
 * nothing, so stopping cannot fail for lack of memory. */
static void request_all(gs_pipeline *p, int ctl, int reason)
{
	pthread_mutex_lock(&p->lock);
	for (gs_stage *s = p->stages; s; s = s->next)
		if (s->started && !s->finished)
			gs__request(s, ctl, reason);
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

void gs__stage_finished(gs_stage *s, int reason)
{
	gs_pipeline *p = s->p;
	pthread_mutex_lock(&p->lock);
	s->finished = true;
	s->reason = reason;
	if (--p->running == 0)
		pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
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
		if (s)
			s->joined = true;
		pthread_mutex_unlock(&p->lock);
		if (!s)
			break;
		pthread_join(s->thread, NULL);
	}
	pthread_mutex_unlock(&p->join_lock);
}

GS__API gs_err gs_pipeline_wait(gs_pipeline *p)
{
	if (!p)
		return GS_EINVAL;
	if (gs__in_any_stage())
		return GS_ETHREAD; /* it would wait for itself */
	pthread_mutex_lock(&p->lock);
	if (!p->started) {
		pthread_mutex_unlock(&p->lock);
		return GS_ESTATE;
	}
	while (p->running)
		pthread_cond_wait(&p->changed, &p->lock);
	int err = p->first_err;
	pthread_mutex_unlock(&p->lock);
	join_all(p);
	return err;
}

GS__API gs_err gs_pipeline_stop(gs_pipeline *p, gs_stop_mode mode)
{
	if (!p)
		return GS_EINVAL;
	if (mode != GS_STOP_DRAIN && mode != GS_STOP_NOW)
		return GS_EINVAL;
	if (gs__in_any_stage())
		return GS_ETHREAD;
	request_all(p, mode == GS_STOP_DRAIN ? GS__CTL_DRAIN : GS__CTL_STOP,
		    GS_OK);
	return gs_pipeline_wait(p);
}

GS__API void gs_pipeline_free(gs_pipeline *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	bool started = p->started;
	pthread_mutex_unlock(&p->lock);
	if (started)
		(void)gs_pipeline_stop(p, GS_STOP_NOW);
	for (gs_sub *sub = p->subs, *next; sub; sub = next) {
		next = sub->next;
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

/* Stage names are the user's: quote what dot would read as syntax. */
static void write_name(FILE *f, const char *name)
{
	for (; *name; name++) {
		if (*name == '"' || *name == '\\')
			fputc('\\', f);
		fputc(*name, f);
	}
}

GS__API gs_err gs_pipeline_write_dot(gs_pipeline *p, FILE *f)
{
	if (!p || !f)
		return GS_EINVAL;
	static const char *const shapes[] = {
		[GS_PRODUCER] = "invhouse",
		[GS_PRODUCER_CONSUMER] = "box",
		[GS_CONSUMER] = "house",
	};
	pthread_mutex_lock(&p->lock);
	fprintf(f, "digraph genstage {\n\trankdir=LR;\n");
	for (gs_stage *s = p->stages; s; s = s->next) {
		gs_stats st;
		gs_stage_stats(s, &st);
		fprintf(f, "\t\"%p\" [shape=%s, label=\"", (void *)s,
			shapes[s->kind]);
		write_name(f, s->name);
		fprintf(f,
			"\\nin %llu  out %llu\\nbuffered %llu  dropped "
			"%llu\"];\n",
			(unsigned long long)st.events_in,
			(unsigned long long)st.events_out,
			(unsigned long long)st.buffered,
			(unsigned long long)st.dropped);
	}
	/* Ended subscriptions stay in the picture, dashed. */
	for (gs_sub *sub = p->subs; sub; sub = sub->next)
		fprintf(f,
			"\t\"%p\" -> \"%p\" [label=\"max %zu min %zu\"%s];\n",
			(void *)sub->producer, (void *)sub->consumer,
			sub->max_demand, sub->min_demand,
			sub->live ? "" : ", style=dashed");
	fprintf(f, "}\n");
	pthread_mutex_unlock(&p->lock);
	return ferror(f) ? GS_EINVAL : GS_OK;
}
