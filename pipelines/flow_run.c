// SPDX-License-Identifier: MIT
/*
 * Running a flow: building its layers as stages of a pipeline, wiring them
 * with partition or demand dispatchers, and the sinks (run, collect,
 * stream, into_stages) at the end.
 */
#include <stdio.h>
#include <stdlib.h>

#include "flow_internal.h"

static size_t route(void *arg, const void *event)
{
	const gs__flow_layer *u = arg;
	if (u->out_hash)
		return u->out_hash(u->out_hash_arg, event);
	uint64_t key = u->out_key ? u->out_key(u->out_key_arg, event)
				  : (uint64_t)(uintptr_t)event;
	/* The mix's high half scaled to [0, stages): a multiply per event
	 * where a modulo would cost a division. */
	uint64_t high = gs__flow_mix(key) >> 32;
	return (size_t)((high * (uint64_t)u->out->nstages) >> 32);
}

/* Events one partition's queue holds before its stage stops taking input
 * (GenStage's default buffer size). The engine never drops queued events
 * of a partition dispatcher for the bound: it holds back demand instead,
 * so a slow partition slows the flow rather than growing memory. */
#define PARTITION_QUEUE 10000

static void free_msg(void *msg, void *arg)
{
	(void)arg;
	free(msg);
}

/* Sources are producers; every other layer of ours is producer-consumers,
 * each reading its inputs only while its own downstream has demand for
 * what it sends on (the engine charges a producer-consumer for the events
 * it emits, so one that filters or reduces keeps reading). */
static gs_err build_layer(gs_flow *f, gs_pipeline *p, gs__flow_layer *l,
			  size_t li)
{
	if (l->elided)
		return GS_OK;
	if (l->kind == GS__L_USER) {
		l->stages = l->user;
		l->nbuilt = l->nstages;
		return GS_OK;
	}
	l->flow = f;
	l->stages = calloc(l->nstages, sizeof(*l->stages));
	l->states = calloc(l->nstages, sizeof(*l->states));
	if (!l->stages || !l->states)
		return GS_ENOMEM;
	bool source = l->kind != GS__L_STAGES;
	size_t expected = 0;
	for (size_t k = 0; k < l->ninputs; k++)
		expected += l->inputs[k]->nstages;
	gs_dispatcher d = gs_dispatcher_demand();
	/* A buffer never drops what a flow emits past the demand. */
	size_t buffer = GS_UNBOUNDED;
	if (l->out && l->out->in_mode == GS__IN_PARTITION) {
		d = gs_dispatcher_partition(l->out->nstages, route, l);
		buffer = PARTITION_QUEUE;
	}
	for (size_t i = 0; i < l->nstages; i++) {
		char name[64];
		snprintf(name, sizeof(name), "flow%zu-%s%zu", li,
			 source ? "src" : "stage", i);
		gs__flow_stage *st = calloc(1, sizeof(*st));
		if (!st)
			return GS_ENOMEM;
		st->flow = f;
		st->layer = l;
		st->index = i;
		st->nexpected = expected;
		if (source)
			st->src = &l->srcs[i];
		l->states[i] = st;
		gs_stage_opts so = {
			.version = GS_STAGE_OPTS_VERSION,
			.name = name,
			.buffer_size = buffer,
			.dispatcher = d,
			/* What the stage emits and drops on the way. */
			.event_free = gs__flow_drop_output,
			.event_free_arg = l,
			.msg_free = free_msg,
			.blocking = f->blocking || (source && l->srcs[i].gen),
			/* Ops may pass an input on, or keep it (a window). */
			.keeps_events = true,
		};
		gs_err e = gs_stage_new(
			p, source ? GS_PRODUCER : GS_PRODUCER_CONSUMER,
			source ? &gs__flow_source_ops : &gs__flow_stage_ops, st,
			&so, &l->stages[i]);
		if (e)
			return e;
		l->nbuilt++;
	}
	return GS_OK;
}

static gs_err wire(gs__flow_layer *l)
{
	gs_sub_opts so = {
		.max_demand = l->max_demand,
		.min_demand = l->min_demand,
		.cancel = GS_CANCEL_TRANSIENT,
		.manual = l->paced,
	};
	for (size_t k = 0; k < l->ninputs; k++) {
		gs__flow_layer *u = l->inputs[k];
		for (size_t i = 0; i < u->nbuilt; i++)
			for (size_t j = 0; j < l->nbuilt; j++) {
				so.partition = l->in_mode == GS__IN_PARTITION
						       ? GS_PARTITION(j)
						       : 0;
				gs_err e = gs_subscribe(
					l->stages[j], u->stages[i], &so, NULL);
				if (e)
					return e;
			}
	}
	return GS_OK;
}

/* A flow runs once: a second sink is GS_ESTATE even after a failed run;
 * a flow whose description was refused gives that error. */
static gs_err sink_usable(gs_flow *f)
{
	if (!f)
		return GS_EINVAL;
	if (f->used || f->built)
		return gs__flow_fail(f, GS_ESTATE,
				     "the flow was already run or merged");
	return f->err;
}

/* Whether layer `l` folds events into windows (reduce or join). */
static bool reduces(const gs__flow_layer *l)
{
	return l->has_reduce || l->is_join;
}

/* Whether a window of `l` would do anything but the global default. */
static bool windowed(const gs__flow_layer *l)
{
	const gs_flow_window *w = &l->window;
	return w->kind != GS_FLOW_WINDOW_GLOBAL || w->every || w->periodic_ms ||
	       w->punctuate;
}

/* Whether any op of `l` may turn one event into several. */
static bool expands(const gs__flow_layer *l)
{
	for (size_t k = 0; k < l->nops; k++)
		if (l->ops[k].kind == GS__OP_FLAT_MAP ||
		    l->ops[k].kind == GS__OP_BATCH)
			return true;
	return false;
}

/*
 * Checks the layers once the description is complete, and settles how
 * the layers right after our sources run: one with nothing to do is
 * elided (the sources feed what it feeds, as Flow starts its enumerables
 * straight with the next dispatcher when no operation follows them), and
 * one whose operations expand asks its sources by hand.
 */
static gs_err settle(gs_flow *f)
{
	for (size_t i = 0; i < f->nlayers; i++)
		if (f->layers[i]->kind == GS__L_STAGES &&
		    windowed(f->layers[i]) && !reduces(f->layers[i]))
			return gs__flow_fail(f, GS_EINVAL,
					     "a window was set on a layer that "
					     "reduces nothing (layer %zu): "
					     "reduce (or group, join) after "
					     "it, or drop the window",
					     i);
	for (size_t i = 0; i < f->nlayers; i++) {
		gs__flow_layer *l = f->layers[i];
		if (l->kind != GS__L_STAGES)
			continue;
		bool from_src = l->ninputs == 1 &&
				l->inputs[0]->kind == GS__L_SOURCE;
		if (!from_src)
			continue;
		if (l->nops || reduces(l) || l->is_departition) {
			l->paced = expands(l);
			continue;
		}
		gs__flow_layer *s = l->inputs[0];
		l->elided = true;
		s->out = l->out;
		s->out_key = l->out_key;
		s->out_key_arg = l->out_key_arg;
		s->out_hash = l->out_hash;
		s->out_hash_arg = l->out_hash_arg;
		s->side = l->side;
		for (size_t k = 0; l->out && k < l->out->ninputs; k++)
			if (l->out->inputs[k] == l)
				l->out->inputs[k] = s;
		if (f->last == l)
			f->last = s;
	}
	return GS_OK;
}

gs_err gs__flow_build(gs_flow *f, gs_pipeline *p)
{
	gs_err e = sink_usable(f);
	if (e)
		return e;
	if (f->bound && p != f->bound)
		return gs__flow_fail(f, GS_EPIPELINE,
				     "the flow's source stages belong to "
				     "another pipeline");
	if ((e = settle(f)))
		return e;
	f->used = true;
	f->built = true;
	for (size_t i = 0; !e && i < f->nlayers; i++)
		e = build_layer(f, p, f->layers[i], i);
	for (size_t i = 0; !e && i < f->nlayers; i++)
		if (f->layers[i]->ninputs && !f->layers[i]->elided)
			e = wire(f->layers[i]);
	if (e)
		gs__flow_fail(f, e, "building the stages failed: %s",
			      gs_strerror(e));
	return e;
}

void gs__flow_unbuild(gs_flow *f)
{
	for (size_t i = 0; i < f->nlayers; i++) {
		gs__flow_layer *l = f->layers[i];
		if (l->kind == GS__L_USER)
			continue;
		/* A source that never ran still holds its array, and so does
		 * one whose stage was never made (before the build, the
		 * layer's arrays are freed with the description). */
		for (size_t j = 0;
		     f->built && l->kind == GS__L_SOURCE && j < l->nstages;
		     j++) {
			gs__flow_stage none = { .flow = f, .src = &l->srcs[j] };
			gs__flow_source_fini(l->states && l->states[j]
						     ? l->states[j]
						     : &none);
		}
		for (size_t j = 0; l->states && j < l->nstages; j++) {
			gs__flow_stage *st = l->states[j];
			if (!st)
				continue;
			gs__flow_window_fini(st);
			gs__flow_ops_fini(st);
			free(st->inputs);
			free(st);
		}
		free(l->states);
		free(l->stages);
		l->states = NULL;
		l->stages = NULL;
		l->nbuilt = 0;
	}
}

void gs__flow_abort(gs_flow *f, int reason)
{
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->nlayers; i++) {
		gs__flow_layer *l = f->layers[i];
		if (l->kind == GS__L_USER)
			continue;
		for (size_t j = 0; j < l->nbuilt; j++)
			gs_stage_stop(l->stages[j], reason);
	}
	if (f->sink)
		gs_stage_stop(f->sink, reason);
	pthread_mutex_unlock(&f->lock);
}

static void sink_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	if (reason != GS_OK)
		gs__flow_abort(state, reason);
}

static int sink_drop(void *state, gs_stage *stage, gs_sub *from, void **events,
		     size_t n)
{
	(void)stage;
	(void)from;
	gs_flow *f = state;
	for (size_t i = 0; i < n; i++)
		gs__flow_drop_output(events[i], f->last);
	return 0;
}

static int sink_collect(void *state, gs_stage *stage, gs_sub *from,
			void **events, size_t n)
{
	(void)stage;
	(void)from;
	gs_flow *f = state;
	gs_err e = gs__flow_vec_reserve(&f->collected, n);
	if (e) {
		for (size_t i = 0; i < n; i++)
			gs__flow_drop_output(events[i], f->last);
		return e;
	}
	for (size_t i = 0; i < n; i++)
		f->collected.v[f->collected.n++] = events[i];
	return 0;
}

/* Subscribes each consumer to every stage of the last layer. */
static gs_err attach(gs_flow *f, gs_stage *const *consumers, size_t n,
		     const gs_sub_opts *sub)
{
	gs_sub_opts so = sub ? *sub : (gs_sub_opts){ 0 };
	so.cancel = GS_CANCEL_TRANSIENT;
	so.partition = 0;
	gs__flow_layer *l = f->last;
	for (size_t c = 0; c < n; c++)
		for (size_t i = 0; i < l->nbuilt; i++) {
			gs_err e = gs_subscribe(consumers[c], l->stages[i], &so,
						NULL);
			if (e)
				return gs__flow_fail(f, e,
						     "subscribing the sink "
						     "failed: %s",
						     gs_strerror(e));
		}
	return GS_OK;
}

/* A sink that failed after building in the caller's pipeline (no memory,
 * a consumer stopped): the stages built there are stopped with the error,
 * so that the pipeline can finish. */
static void stop_built(gs_flow *f, gs_err e)
{
	for (size_t i = 0; i < f->nlayers; i++) {
		const gs__flow_layer *l = f->layers[i];
		if (l->kind == GS__L_USER || !l->stages)
			continue;
		for (size_t k = 0; k < l->nbuilt; k++)
			gs_stage_stop(l->stages[k], e);
	}
}

/* The hooks of gs_flow_pipeline_opts apply to a pipeline the flow makes;
 * a flow run in the caller's pipeline `p` refuses them. */
static gs_err hooks_usable(gs_flow *f, const gs_pipeline *p)
{
	if (p && f->has_popts)
		return gs__flow_fail(f, GS_EINVAL,
				     "gs_flow_pipeline_opts: the flow runs in "
				     "the caller's pipeline; give the hooks "
				     "to that pipeline");
	return GS_OK;
}

/* Builds and runs `f` to completion with a consumer made of `ops`. */
static gs_err run_with(gs_flow *f, const gs_stage_ops *ops)
{
	gs_err e = sink_usable(f);
	if (e)
		return e;
	gs_pipeline *p = f->bound;
	if ((e = hooks_usable(f, p)))
		return e;
	if (!p && (e = gs_pipeline_new(&f->popts, &p)))
		return gs__flow_fail(f, e, "no pipeline: %s", gs_strerror(e));
	pthread_mutex_lock(&f->lock);
	if (!(e = gs__flow_build(f, p)))
		e = gs_stage_new(p, GS_CONSUMER, ops, f,
				 &(gs_stage_opts){ .name = "flow-sink" },
				 &f->sink);
	if (!e)
		e = attach(f, &f->sink, 1, NULL);
	pthread_mutex_unlock(&f->lock);
	if (!e) {
		e = gs_pipeline_start(p);
		if (e == GS_ESTATE && f->bound)
			e = GS_OK;
	}
	if (!e) {
		e = gs_pipeline_wait(p);
	} else if (f->bound) {
		/* In a pipeline already running a stage may have failed
		 * first (and made the sink's subscription fail): its reason
		 * is the one to give. */
		gs_err first = gs_pipeline_stop(p, GS_STOP_NOW);
		/* GS_ESTATE: it never started, and e is the reason. */
		if (first && first != GS_ESTATE)
			e = first;
	}
	if (!f->bound)
		gs_pipeline_free(p);
	if (e)
		gs__flow_fail(f, e, "the flow stopped: %s (%d)", gs_strerror(e),
			      e);
	return e;
}

GS_FLOW_API gs_err gs_flow_run(gs_flow *f)
{
	static const gs_stage_ops ops = { .handle_events = sink_drop,
					  .terminate = sink_terminate };
	return run_with(f, &ops);
}

GS_FLOW_API gs_err gs_flow_collect(gs_flow *f, void ***events, size_t *n)
{
	static const gs_stage_ops ops = { .handle_events = sink_collect,
					  .terminate = sink_terminate };
	if (!events || !n)
		return f ? gs__flow_fail(f, GS_EINVAL,
					 "gs_flow_collect: NULL output")
			 : GS_EINVAL;
	gs_err e = run_with(f, &ops);
	if (e) {
		for (size_t i = 0; f && i < f->collected.n; i++)
			gs__flow_drop_output(f->collected.v[i], f->last);
		if (f)
			gs__flow_vec_free(&f->collected);
		return e;
	}
	*n = f->collected.n;
	*events = f->collected.v;
	if (!*events) /* a valid array even for no results */
		*events = malloc(1);
	f->collected = (gs__flow_vec){ 0 };
	return *events ? GS_OK : GS_ENOMEM;
}

GS_FLOW_API gs_err gs_flow_stream(gs_flow *f, gs_pipeline *p,
				  const gs_stage_opts *opts, gs_stage **out)
{
	gs_err e = sink_usable(f);
	if (e)
		return e;
	if (!out)
		return gs__flow_fail(f, GS_EINVAL,
				     "gs_flow_stream: NULL output");
	if (opts && opts->version > GS_STAGE_OPTS_VERSION)
		return gs__flow_fail(f, GS_EVERSION, "gs_flow_stream: %s",
				     gs_strerror(GS_EVERSION));
	bool own = !p;
	if (own && f->bound)
		p = f->bound, own = false;
	if ((e = hooks_usable(f, own ? NULL : p)))
		return e;
	if (own && (e = gs_pipeline_new(&f->popts, &p)))
		return gs__flow_fail(f, e, "no pipeline: %s", gs_strerror(e));
	if (own)
		f->own = p;
	gs_stage_opts so = gs_stage_opts_copy(opts);
	if (!so.name)
		so.name = "flow-stream";
	gs_stage *s = NULL;
	pthread_mutex_lock(&f->lock);
	e = gs__flow_build(f, p);
	if (!e && !so.event_free) {
		/* After the build, which settles the last layer. */
		so.event_free = gs__flow_drop_output;
		so.event_free_arg = f->last;
	}
	if (!e && !(e = gs_stream(p, &so, &s)))
		e = attach(f, &s, 1, NULL);
	pthread_mutex_unlock(&f->lock);
	if (!e && own)
		e = gs_pipeline_start(p);
	if (e)
		return gs__flow_fail(f, e, "gs_flow_stream: %s",
				     gs_strerror(e));
	*out = s;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_into_stages(gs_flow *f, gs_pipeline *p,
				       gs_stage *const *consumers, size_t n,
				       const gs_sub_opts *sub)
{
	if (!f || !p || !consumers || !n)
		return f ? gs__flow_fail(f, GS_EINVAL,
					 "gs_flow_into_stages: no pipeline or "
					 "no consumers")
			 : GS_EINVAL;
	if (sub && sub->version > GS_SUB_OPTS_VERSION)
		return gs__flow_fail(f, GS_EVERSION, "gs_flow_into_stages: %s",
				     gs_strerror(GS_EVERSION));
	gs_err e = sink_usable(f);
	if (!e)
		e = hooks_usable(f, p);
	/* What gs_subscribe would refuse is refused before anything is
	 * built in p: built, the flow's stages stayed there, waiting for a
	 * sink that never came. */
	if (!e && sub)
		e = gs__flow_check_demand(f, "gs_flow_into_stages",
					  "sub's max_demand, min_demand",
					  sub->max_demand, sub->min_demand);
	for (size_t c = 0; !e && c < n; c++)
		if (gs_stage_pipeline(consumers[c]) != p)
			e = gs__flow_fail(
				f, consumers[c] ? GS_EPIPELINE : GS_EINVAL,
				"gs_flow_into_stages: consumer %zu "
				"is %s",
				c,
				consumers[c] ? "not of the given "
					       "pipeline"
					     : "NULL");
	if (e)
		return e;
	pthread_mutex_lock(&f->lock);
	e = gs__flow_build(f, p);
	if (!e)
		e = attach(f, consumers, n, sub);
	pthread_mutex_unlock(&f->lock);
	if (e)
		stop_built(f, e);
	return e;
}
