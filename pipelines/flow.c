// SPDX-License-Identifier: MIT
/*
 * Building a flow description: sources, fused operations, partitions,
 * merges and reduce steps, each checked as it is added. The first error
 * sticks to the flow so a chain of calls can be checked once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flow_internal.h"

gs_err gs__flow_fail(gs_flow *f, gs_err code, const char *fmt, ...)
{
	if (f && f->err == GS_OK) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
		va_end(ap);
		f->err = code;
	}
	return code;
}

void gs__flow_drop(const gs_flow *f, void *event)
{
	if (f->event_free)
		f->event_free(event, f->event_free_arg);
}

/* The layer that made what l's stages pass on: l, unless l only routes
 * (no operation, no reduce: a partition or a departition that follows a
 * reduce), whose items are then what the layer of ours before it emitted,
 * an accumulator, a group or a list to be freed as that layer frees them,
 * not through the flow's event_free. (Only our own layers reduce: what
 * sources and the caller's stages make are events.) */
static const gs__flow_layer *maker_of(const gs__flow_layer *l)
{
	while (l->kind == GS__L_STAGES && !l->nops && !l->has_reduce &&
	       !l->is_join && !l->is_departition && l->ninputs == 1 &&
	       l->inputs[0]->kind == GS__L_STAGES)
		l = l->inputs[0];
	return l;
}

void gs__flow_drop_item(void *item, const gs__flow_layer *l)
{
	l = maker_of(l);
	if (l->has_reduce && !l->on_trigger && l->emit == GS_FLOW_EMIT_STATE) {
		/* A value accumulator (no acc_free) needs no freeing, nor
		 * does a stage's NULL one (no acc_new, or no event). */
		if (l->acc_free && item)
			l->acc_free(l->reduce_arg, item);
	} else if (l->emits_lists) {
		gs_flow_events_free(item, l->flow->event_free,
				    l->flow->event_free_arg);
	} else if (l->is_departition && !l->dep.done) {
		if (item && l->dep.acc_free)
			l->dep.acc_free(l->dep.arg, item);
	} else {
		gs__flow_drop(l->flow, item);
	}
}

void gs__flow_drop_output(void *item, void *arg)
{
	const gs__flow_layer *l = arg;
	if (!gs__flow_departing(l) || gs__flow_unwrap(&item))
		gs__flow_drop_item(item, l);
}

GS_FLOW_API gs_err gs_flow_error(const gs_flow *f)
{
	return f ? f->err : GS_EINVAL;
}

GS_FLOW_API const char *gs_flow_errmsg(const gs_flow *f)
{
	if (!f)
		return "no flow";
	return f->err ? f->msg : "no error";
}

static gs__flow_layer *layer_new(gs_flow *f, gs__layer_kind kind)
{
	gs__flow_layer *l = calloc(1, sizeof(*l));
	gs__flow_layer **nl = l ? realloc(f->layers,
					  (f->nlayers + 1) * sizeof(*nl))
				: NULL;
	if (!nl) {
		free(l);
		return NULL;
	}
	f->layers = nl;
	f->layers[f->nlayers++] = l;
	l->kind = kind;
	f->last = l;
	return l;
}

/* A pair gs_subscribe would refuse (zero fields are its defaults). */
/* The checks gs_subscribe makes of the same demand, made when the flow is
 * built rather than when it runs: a max_demand above GS_MAX_DEMAND
 * (GS_EINVAL), a min_demand not below the max_demand it will have
 * (GS_EDEMAND). */
static gs_err demand_error(size_t max, size_t min)
{
	if (max > GS_MAX_DEMAND)
		return GS_EINVAL;
	size_t eff = max ? max : GS_DEFAULT_MAX_DEMAND;
	return min && min != GS_MIN_DEMAND_ZERO && min >= eff ? GS_EDEMAND
							      : GS_OK;
}

gs_err gs__flow_check_demand(gs_flow *f, const char *what, const char *fields,
			     size_t max, size_t min)
{
	gs_err e = demand_error(max, min);
	if (e == GS_EINVAL)
		return gs__flow_fail(f, e, "%s: %s above GS_MAX_DEMAND", what,
				     fields);
	if (e)
		return gs__flow_fail(f, e,
				     "%s: %s: the min must be less than "
				     "the max (%zu when 0)",
				     what, fields,
				     (size_t)GS_DEFAULT_MAX_DEMAND);
	return GS_OK;
}

/* A source refused before there is a flow to hold the message
 * (gs_flow_errmsg): it goes to stderr, as the engine's do without a log
 * hook. Returns code. */
static gs_err refuse_source(gs_err code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static gs_err refuse_source(gs_err code, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "genstage: error: flow source refused: %s\n", msg);
	return code;
}

static gs_err flow_new(const gs_flow_opts *opts, gs_flow **out)
{
	if (!out)
		return GS_EINVAL;
	if (opts && opts->version > GS_FLOW_OPTS_VERSION)
		return refuse_source(GS_EVERSION,
				     "gs_flow_opts version %u, newer than "
				     "this library's %u",
				     (unsigned)opts->version,
				     (unsigned)GS_FLOW_OPTS_VERSION);
	gs_err de = opts ? demand_error(opts->max_demand, opts->min_demand)
			 : GS_OK;
	if (de)
		return refuse_source(de,
				     "max_demand %zu, min_demand %zu: the min "
				     "must be below the max (%zu when 0), "
				     "the max at most GS_MAX_DEMAND",
				     opts->max_demand, opts->min_demand,
				     (size_t)GS_DEFAULT_MAX_DEMAND);
	gs_flow *f = calloc(1, sizeof(*f));
	if (!f)
		return GS_ENOMEM;
	if (pthread_mutex_init(&f->lock, NULL)) {
		free(f);
		return GS_ENOMEM;
	}
	if (opts) {
		f->event_free = opts->event_free;
		f->event_free_arg = opts->event_free_arg;
		f->blocking = opts->blocking;
	}
	*out = f;
	return GS_OK;
}

static gs__flow_layer *stages_layer(gs_flow *f, gs__in_mode mode,
				    gs__flow_layer **inputs, size_t ninputs,
				    size_t nstages, size_t max_demand,
				    size_t min_demand)
{
	gs__flow_layer *l = layer_new(f, GS__L_STAGES);
	if (!l)
		return NULL;
	l->inputs = malloc(ninputs * sizeof(*l->inputs));
	if (!l->inputs) {
		f->nlayers--;
		free(l);
		return NULL;
	}
	memcpy(l->inputs, inputs, ninputs * sizeof(*inputs));
	l->ninputs = ninputs;
	l->in_mode = mode;
	l->nstages = nstages;
	l->max_demand = max_demand;
	l->min_demand = min_demand;
	for (size_t i = 0; i < ninputs; i++)
		inputs[i]->out = l;
	return l;
}

static size_t default_stages(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (size_t)n : 1;
}

/* Ends making a new flow `f` whose producers are layer `in`: the
 * operations that follow run in a layer of opts->stages stages (else
 * `stages`) fed by them by demand, as Flow's mapper stages. Sets *out;
 * on error `f` is the caller's to free. */
static gs_err fed_by(gs_flow *f, gs__flow_layer *in, size_t stages,
		     const gs_flow_opts *opts, gs_flow **out)
{
	if (opts && opts->stages)
		stages = opts->stages;
	if (!stages_layer(f, GS__IN_SHUFFLE, &in, 1, stages,
			  opts ? opts->max_demand : 0,
			  opts ? opts->min_demand : 0))
		return GS_ENOMEM;
	*out = f;
	return GS_OK;
}

/* Whether source `s` is well formed (see gs_flow_source). */
static gs_err check_source(const gs_flow_source *s)
{
	if (s->version > GS_FLOW_SOURCE_VERSION)
		return refuse_source(GS_EVERSION,
				     "gs_flow_source version %u, newer than "
				     "this library's %u",
				     (unsigned)s->version,
				     (unsigned)GS_FLOW_SOURCE_VERSION);
	if (s->gen ? s->events || s->n : s->n && !s->events)
		return GS_EINVAL;
	if (s->n > SIZE_MAX / sizeof(void *))
		return GS_EINVAL; /* its copy's size would overflow */
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_from_sources(const gs_flow_source *sources, size_t n,
					const gs_flow_opts *opts, gs_flow **out)
{
	if (!out || !sources || n == 0)
		return GS_EINVAL;
	for (size_t i = 0; i < n; i++) {
		gs_err e = check_source(&sources[i]);
		if (e)
			return e;
	}
	gs_flow *f;
	gs_err e = flow_new(opts, &f);
	if (e)
		return e;
	/* Until every copy is made the events stay the caller's: the layer
	 * joins the flow only then, so gs_flow_free drops none of them. */
	gs__flow_layer *l = calloc(1, sizeof(*l));
	gs__flow_src *srcs = l ? calloc(n, sizeof(*srcs)) : NULL;
	bool ok = srcs != NULL;
	for (size_t i = 0; ok && i < n; i++) {
		const gs_flow_source *s = &sources[i];
		srcs[i] = (gs__flow_src){ .nevents = s->n,
					  .gen = s->gen,
					  .gen_arg = s->arg };
		if (s->n && !(srcs[i].events = malloc(s->n * sizeof(void *))))
			ok = false;
		else if (s->n)
			memcpy(srcs[i].events, s->events,
			       s->n * sizeof(void *));
	}
	gs__flow_layer **nl = ok ? malloc(sizeof(*nl)) : NULL;
	if (!nl) {
		for (size_t i = 0; srcs && i < n; i++)
			free(srcs[i].events);
		free(srcs);
		free(l);
		gs_flow_free(f);
		return GS_ENOMEM;
	}
	l->kind = GS__L_SOURCE;
	l->srcs = srcs;
	l->nstages = n;
	f->layers = nl;
	f->layers[f->nlayers++] = l;
	f->last = l;
	e = fed_by(f, l, default_stages(), opts, out);
	if (e) {
		/* Refused: the events are the caller's again, so the free
		 * drops none (it frees the copies). */
		for (size_t i = 0; i < n; i++)
			srcs[i].nevents = 0;
		gs_flow_free(f);
	}
	return e;
}

GS_FLOW_API gs_err gs_flow_from_array(void *const *events, size_t n,
				      const gs_flow_opts *opts, gs_flow **out)
{
	if (n && !events)
		return GS_EINVAL;
	gs_flow_source s = { .events = events, .n = n };
	return gs_flow_from_sources(&s, 1, opts, out);
}

GS_FLOW_API gs_err gs_flow_from_fn(gs_gen_fn gen, void *arg,
				   const gs_flow_opts *opts, gs_flow **out)
{
	if (!gen)
		return GS_EINVAL;
	gs_flow_source s = { .gen = gen, .arg = arg };
	return gs_flow_from_sources(&s, 1, opts, out);
}

GS_FLOW_API gs_err gs_flow_from_stages(gs_pipeline *p,
				       gs_stage *const *producers, size_t n,
				       const gs_flow_opts *opts, gs_flow **out)
{
	if (!out || !p || !producers || n == 0)
		return GS_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!producers[i])
			return GS_EINVAL;
		else if (gs_stage_pipeline(producers[i]) != p)
			return GS_EPIPELINE;
	gs_flow *f;
	gs_err e = flow_new(opts, &f);
	if (e)
		return e;
	f->bound = p;
	gs__flow_layer *u = layer_new(f, GS__L_USER);
	if (!u || !(u->user = malloc(n * sizeof(gs_stage *)))) {
		gs_flow_free(f);
		return GS_ENOMEM;
	}
	memcpy(u->user, producers, n * sizeof(gs_stage *));
	u->nstages = n;
	e = fed_by(f, u, n, opts, out);
	if (e)
		gs_flow_free(f);
	return e;
}

static void layer_free(gs__flow_layer *l, const gs_flow *f)
{
	if (!l)
		return;
	/* Array events never handed to a built source are still ours. */
	for (size_t i = 0; l->srcs && i < l->nstages; i++) {
		gs__flow_src *s = &l->srcs[i];
		for (size_t k = 0; !f->built && k < s->nevents; k++)
			gs__flow_drop(f, s->events[k]);
		free(s->events);
	}
	free(l->srcs);
	free(l->user);
	free(l->inputs);
	free(l->ops);
	free(l);
}

GS_FLOW_API void gs_flow_free(gs_flow *f)
{
	if (!f)
		return;
	if (f->own) {
		gs_pipeline_stop(f->own, GS_STOP_NOW);
		gs_pipeline_free(f->own);
	}
	gs__flow_unbuild(f);
	for (size_t i = 0; i < f->collected.n; i++)
		gs__flow_drop(f, f->collected.v[i]);
	gs__flow_vec_free(&f->collected);
	for (size_t i = 0; i < f->nlayers; i++)
		layer_free(f->layers[i], f);
	free(f->layers);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* Common checks for a step added to `f`. */
gs_err gs__flow_usable(gs_flow *f, const char *what)
{
	if (!f)
		return GS_EINVAL;
	if (f->err)
		return f->err;
	if (f->used)
		return gs__flow_fail(f, GS_ESTATE,
				     "%s: the flow was already run or merged",
				     what);
	return GS_OK;
}

static gs_err add_op(gs_flow *f, const char *what, gs__flow_op op, bool have_fn)
{
	gs_err e = gs__flow_usable(f, what);
	if (e)
		return e;
	if (!have_fn)
		return gs__flow_fail(f, GS_EINVAL, "%s: the function is NULL",
				     what);
	gs__flow_layer *l = f->last;
	if (l->has_reduce)
		return gs__flow_fail(f, GS_EINVAL,
				     "%s after reduce: use gs_flow_on_trigger "
				     "or partition again",
				     what);
	gs__flow_op *ops = realloc(l->ops, (l->nops + 1) * sizeof(*ops));
	if (!ops)
		return gs__flow_fail(f, GS_ENOMEM, "%s: out of memory", what);
	ops[l->nops++] = op;
	l->ops = ops;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_map(gs_flow *f, gs_flow_map_fn fn, void *arg)
{
	return add_op(f, "gs_flow_map",
		      (gs__flow_op){ GS__OP_MAP, { .map = fn }, arg }, fn);
}

GS_FLOW_API gs_err gs_flow_filter(gs_flow *f, gs_flow_pred_fn fn, void *arg)
{
	return add_op(f, "gs_flow_filter",
		      (gs__flow_op){ GS__OP_FILTER, { .pred = fn }, arg }, fn);
}

GS_FLOW_API gs_err gs_flow_reject(gs_flow *f, gs_flow_pred_fn fn, void *arg)
{
	return add_op(f, "gs_flow_reject",
		      (gs__flow_op){ GS__OP_REJECT, { .pred = fn }, arg }, fn);
}

GS_FLOW_API gs_err gs_flow_flat_map(gs_flow *f, gs_flow_flat_map_fn fn,
				    void *arg)
{
	return add_op(f, "gs_flow_flat_map",
		      (gs__flow_op){ GS__OP_FLAT_MAP, { .flat_map = fn }, arg },
		      fn);
}

GS_FLOW_API gs_err gs_flow_each(gs_flow *f, gs_flow_each_fn fn, void *arg)
{
	return add_op(f, "gs_flow_each",
		      (gs__flow_op){ GS__OP_EACH, { .each = fn }, arg }, fn);
}

GS_FLOW_API gs_err gs_flow_uniq_by(gs_flow *f, gs_flow_key_fn fn, void *arg)
{
	return add_op(f, "gs_flow_uniq_by",
		      (gs__flow_op){ GS__OP_UNIQ, { .key = fn }, arg }, fn);
}

GS_FLOW_API gs_err gs_flow_map_batch(gs_flow *f, gs_flow_batch_fn fn, void *arg)
{
	return add_op(f, "gs_flow_map_batch",
		      (gs__flow_op){ GS__OP_BATCH, { .batch = fn }, arg }, fn);
}

/* Checks partition options and a window; returns the stage count. */
static gs_err check_popts(gs_flow *f, const char *what,
			  const gs_flow_partition_opts *o, size_t *stages)
{
	if (o->version > GS_FLOW_PARTITION_OPTS_VERSION)
		return gs__flow_fail(f, GS_EVERSION, "%s: %s", what,
				     gs_strerror(GS_EVERSION));
	*stages = o->stages ? o->stages : default_stages();
	const gs_flow_window *w = &o->window;
	switch (w->kind) {
	case GS_FLOW_WINDOW_GLOBAL:
		break;
	case GS_FLOW_WINDOW_FIXED:
		if (!w->time || w->duration_ms <= 0)
			return gs__flow_fail(f, GS_EINVAL,
					     "%s: a fixed window needs a time "
					     "function and a positive duration",
					     what);
		break;
	case GS_FLOW_WINDOW_PERIODIC:
		if (w->duration_ms <= 0 || w->duration_ms > UINT32_MAX)
			return gs__flow_fail(f, GS_EINVAL,
					     "%s: a periodic window needs a "
					     "positive duration",
					     what);
		break;
	case GS_FLOW_WINDOW_COUNT:
		if (!w->count)
			return gs__flow_fail(f, GS_EINVAL,
					     "%s: a count window needs a "
					     "positive count",
					     what);
		break;
	default:
		return gs__flow_fail(f, GS_EINVAL, "%s: unknown window kind",
				     what);
	}
	if (w->lateness_ms < 0 || w->lateness_ms > UINT32_MAX ||
	    (w->lateness_ms && w->kind != GS_FLOW_WINDOW_FIXED))
		return gs__flow_fail(f, GS_EINVAL,
				     "%s: lateness applies to fixed windows "
				     "only and must be positive",
				     what);
	return gs__flow_check_demand(f, what, "max_demand, min_demand",
				     o->max_demand, o->min_demand);
}

static void set_route(gs__flow_layer *in, const gs_flow_partition_opts *o)
{
	in->out_key = o->key;
	in->out_key_arg = o->key_arg;
	in->out_hash = o->hash;
	in->out_hash_arg = o->hash_arg;
}

gs_err gs__flow_add_layer(gs_flow *f, const char *what, gs__in_mode mode,
			  const gs_flow_partition_opts *opts)
{
	static const gs_flow_partition_opts none;
	gs_err e = gs__flow_usable(f, what);
	if (e)
		return e;
	const gs_flow_partition_opts *o = opts ? opts : &none;
	size_t stages = 0; /* set by check_popts; gcc -O3 cannot tell */
	if ((e = check_popts(f, what, o, &stages)))
		return e;
	gs__flow_layer *in = f->last;
	gs__flow_layer *l = stages_layer(f, mode, &in, 1, stages, o->max_demand,
					 o->min_demand);
	if (!l)
		return gs__flow_fail(f, GS_ENOMEM, "%s: out of memory", what);
	set_route(in, o);
	l->window = o->window;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_partition(gs_flow *f,
				     const gs_flow_partition_opts *opts)
{
	return gs__flow_add_layer(f, "gs_flow_partition", GS__IN_PARTITION,
				  opts);
}

GS_FLOW_API gs_err gs_flow_shuffle(gs_flow *f,
				   const gs_flow_partition_opts *opts)
{
	return gs__flow_add_layer(f, "gs_flow_shuffle", GS__IN_SHUFFLE, opts);
}

GS_FLOW_API gs_err gs_flow_departition(gs_flow *f,
				       const gs_flow_partition_opts *opts)
{
	gs_flow_partition_opts o = opts ? *opts : (gs_flow_partition_opts){ 0 };
	o.stages = 1;
	return gs__flow_add_layer(f, "gs_flow_departition", GS__IN_SHUFFLE, &o);
}

gs_err gs__flow_fail_each(gs_flow *const *flows, size_t n, gs_err code,
			  const char *what, const char *why)
{
	for (size_t i = 0; flows && i < n; i++)
		gs__flow_fail(flows[i], code, "%s: %s", what, why);
	return code;
}

gs_err gs__flow_combine(gs_flow *const *flows, size_t n, const char *what,
			const gs_flow_partition_opts *o, gs_flow **out)
{
	if (!out || !flows || n == 0)
		return gs__flow_fail_each(flows, n, GS_EINVAL, what,
					  "no flows, or a NULL output");
	gs_pipeline *bound = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!flows[i])
			return gs__flow_fail_each(flows, n, GS_EINVAL, what,
						  "a flow is NULL");
		gs_err e = gs__flow_usable(flows[i], what);
		if (e)
			return e;
		for (size_t j = 0; j < i; j++)
			if (flows[j] == flows[i])
				return gs__flow_fail_each(
					flows, n, GS_EINVAL, what,
					"the same flow is given twice");
		if (flows[i]->bound) {
			if (bound && bound != flows[i]->bound)
				return gs__flow_fail_each(
					flows, n, GS_EPIPELINE, what,
					"the flows' source stages belong to "
					"different pipelines");
			bound = flows[i]->bound;
		}
	}
	gs_flow *f;
	gs_err e = flow_new(NULL, &f);
	if (e)
		return e;
	size_t stages;
	if ((e = check_popts(f, what, o, &stages))) {
		/* check_popts wrote "what: why" into the scratch flow. */
		for (size_t i = 0; i < n; i++)
			gs__flow_fail(flows[i], e, "%s", f->msg);
		gs_flow_free(f);
		return e;
	}
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += flows[i]->nlayers;
	gs__flow_layer **ins = malloc(n * sizeof(*ins));
	f->layers = malloc(total * sizeof(*f->layers));
	if (!ins || !f->layers) {
		free(ins);
		gs_flow_free(f);
		return GS_ENOMEM;
	}
	/* Keep creation order: the inputs' layers first, then the new one
	 * (which stages_layer appends). The inputs give theirs up only once
	 * nothing can fail any more. */
	for (size_t i = 0; i < n; i++) {
		ins[i] = flows[i]->last;
		for (size_t j = 0; j < flows[i]->nlayers; j++)
			f->layers[f->nlayers++] = flows[i]->layers[j];
	}
	gs__flow_layer *l = stages_layer(f, GS__IN_PARTITION, ins, n, stages,
					 o->max_demand, o->min_demand);
	free(ins);
	if (!l) {
		f->nlayers = 0;
		gs_flow_free(f);
		return GS_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		gs_flow *g = flows[i];
		free(g->layers);
		g->layers = NULL;
		g->nlayers = 0;
		g->last = NULL;
		g->used = true;
		set_route(l->inputs[i], o);
	}
	f->last = l;
	l->window = o->window;
	f->bound = bound;
	f->event_free = flows[0]->event_free;
	f->event_free_arg = flows[0]->event_free_arg;
	for (size_t i = n; i-- > 0;) {
		f->blocking |= flows[i]->blocking;
		if (flows[i]->has_popts) {
			f->has_popts = true;
			f->popts = flows[i]->popts;
		}
	}
	*out = f;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_merge(gs_flow *const *flows, size_t n,
				 const gs_flow_partition_opts *opts,
				 gs_flow **out)
{
	static const gs_flow_partition_opts none;
	return gs__flow_combine(flows, n, "gs_flow_merge", opts ? opts : &none,
				out);
}

/* Sets the reduce of the current layer (reduce or emit_and_reduce). */
static gs_err set_reduce(gs_flow *f, const char *what,
			 gs_flow_acc_new_fn acc_new, gs_flow_reduce_fn reducer,
			 gs_flow_emit_reduce_fn emit_reducer, void *arg)
{
	gs_err e = gs__flow_usable(f, what);
	if (e)
		return e;
	gs__flow_layer *l = f->last;
	if (!reducer && !emit_reducer)
		return gs__flow_fail(f, GS_EINVAL, "%s: the reducer is NULL",
				     what);
	if (l->has_reduce || l->is_departition)
		return gs__flow_fail(f, GS_EINVAL,
				     "%s: one reduce per partition; partition "
				     "again",
				     what);
	l->has_reduce = true;
	l->acc_new = acc_new;
	l->reducer = reducer;
	l->emit_reducer = emit_reducer;
	l->reduce_arg = arg;
	/* What it emits are events: its accumulator is not one of them
	 * unless asked (GS_FLOW_EMIT_EVENTS, gs_flow_on_trigger). */
	if (emit_reducer)
		l->emit = GS_FLOW_EMIT_NOTHING;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_reduce(gs_flow *f, gs_flow_acc_new_fn acc_new,
				  gs_flow_reduce_fn reducer, void *arg)
{
	return set_reduce(f, "gs_flow_reduce", acc_new, reducer, NULL, arg);
}

GS_FLOW_API gs_err gs_flow_emit_and_reduce(gs_flow *f,
					   gs_flow_acc_new_fn acc_new,
					   gs_flow_emit_reduce_fn reducer,
					   void *arg)
{
	return set_reduce(f, "gs_flow_emit_and_reduce", acc_new, NULL, reducer,
			  arg);
}

static gs_err need_reduce(gs_flow *f, const char *what)
{
	gs_err e = gs__flow_usable(f, what);
	if (e)
		return e;
	if (!f->last->has_reduce)
		return gs__flow_fail(f, GS_EINVAL,
				     "%s must follow gs_flow_reduce", what);
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_acc_free(gs_flow *f, gs_flow_acc_free_fn fn)
{
	gs_err e = need_reduce(f, "gs_flow_acc_free");
	if (e)
		return e;
	if (f->last->builtin.key || f->last->builtin.cmp)
		return gs__flow_fail(f, GS_EINVAL,
				     "gs_flow_acc_free: group_by and "
				     "take_sort free their own accumulators");
	f->last->acc_free = fn;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_on_trigger(gs_flow *f, gs_flow_trigger_fn fn,
				      void *arg)
{
	gs_err e = need_reduce(f, "gs_flow_on_trigger");
	if (e)
		return e;
	if (!fn)
		return gs__flow_fail(f, GS_EINVAL,
				     "gs_flow_on_trigger: the function is "
				     "NULL");
	if (f->last->has_emit)
		return gs__flow_fail(f, GS_EINVAL,
				     "gs_flow_on_trigger: the emission was "
				     "already chosen");
	f->last->on_trigger = fn;
	f->last->trigger_arg = arg;
	f->last->has_emit = true;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_emit(gs_flow *f, gs_flow_emit_mode mode)
{
	gs_err e = need_reduce(f, "gs_flow_emit");
	if (e)
		return e;
	if (mode > GS_FLOW_EMIT_EVENTS)
		return gs__flow_fail(f, GS_EINVAL, "gs_flow_emit: bad mode");
	if (mode == GS_FLOW_EMIT_EVENTS && f->last->builtin.key)
		return gs__flow_fail(f, GS_EINVAL,
				     "gs_flow_emit: a group_by emits its "
				     "groups, not events");
	if (mode == GS_FLOW_EMIT_STATE && f->last->emit_reducer)
		return gs__flow_fail(
			f, GS_EINVAL,
			"gs_flow_emit: an emit_and_reduce emits "
			"events, not its accumulator (use "
			"GS_FLOW_EMIT_EVENTS or gs_flow_on_trigger)");
	if (f->last->has_emit)
		return gs__flow_fail(f, GS_EINVAL,
				     "gs_flow_emit: the emission was already "
				     "chosen");
	f->last->emit = mode;
	f->last->has_emit = true;
	return GS_OK;
}

GS_FLOW_API gs_flow_window gs_flow_window_global(void)
{
	return (gs_flow_window){ .kind = GS_FLOW_WINDOW_GLOBAL };
}

GS_FLOW_API gs_flow_window gs_flow_window_fixed(int64_t duration_ms,
						gs_flow_time_fn time, void *arg)
{
	return (gs_flow_window){ .kind = GS_FLOW_WINDOW_FIXED,
				 .duration_ms = duration_ms,
				 .time = time,
				 .time_arg = arg };
}

GS_FLOW_API gs_flow_window gs_flow_window_periodic(int64_t duration_ms)
{
	return (gs_flow_window){ .kind = GS_FLOW_WINDOW_PERIODIC,
				 .duration_ms = duration_ms };
}

GS_FLOW_API gs_flow_window gs_flow_window_count(size_t count)
{
	return (gs_flow_window){ .kind = GS_FLOW_WINDOW_COUNT, .count = count };
}

GS_FLOW_API gs_flow_window gs_flow_window_lateness(gs_flow_window w,
						   int64_t lateness_ms)
{
	w.lateness_ms = lateness_ms;
	return w;
}

GS_FLOW_API gs_flow_window gs_flow_window_trigger_every(gs_flow_window w,
							size_t n)
{
	w.every = n;
	return w;
}

GS_FLOW_API gs_flow_window gs_flow_window_trigger_periodically(gs_flow_window w,
							       unsigned ms)
{
	w.periodic_ms = ms;
	return w;
}

GS_FLOW_API gs_flow_window gs_flow_window_trigger(gs_flow_window w,
						  gs_flow_punctuate_fn fn,
						  void *arg)
{
	w.punctuate = fn;
	w.punctuate_arg = arg;
	return w;
}

GS_FLOW_API gs_err gs_flow_through_stages(gs_flow *f, gs_pipeline *p,
					  gs_stage *const *stages, size_t n,
					  const gs_flow_through_opts *opts)
{
	static const char what[] = "gs_flow_through_stages";
	static const gs_flow_through_opts none;
	gs_err e = gs__flow_usable(f, what);
	if (e)
		return e;
	const gs_flow_through_opts *o = opts ? opts : &none;
	if (!p || !stages || n == 0)
		return gs__flow_fail(f, GS_EINVAL,
				     "%s: no pipeline or no stages", what);
	for (size_t i = 0; i < n; i++)
		if (!stages[i])
			return gs__flow_fail(f, GS_EINVAL,
					     "%s: a stage is NULL", what);
		else if (gs_stage_pipeline(stages[i]) != p)
			return gs__flow_fail(f, GS_EPIPELINE,
					     "%s: stage '%s' is not of the "
					     "given pipeline",
					     what, gs_stage_name(stages[i]));
	if (o->version > GS_FLOW_THROUGH_OPTS_VERSION)
		return gs__flow_fail(f, GS_EVERSION,
				     "%s: opts version %u, this library knows "
				     "up to %u",
				     what, (unsigned)o->version,
				     (unsigned)GS_FLOW_THROUGH_OPTS_VERSION);
	if (f->bound && f->bound != p)
		return gs__flow_fail(
			f, GS_EPIPELINE,
			"%s: the stages belong to another pipeline "
			"than the flow's sources",
			what);
	if ((e = gs__flow_check_demand(f, what, "in_max_demand, in_min_demand",
				       o->in_max_demand, o->in_min_demand)))
		return e;
	gs_flow_partition_opts after = {
		.stages = o->stages ? o->stages : n,
		.window = o->window,
		.max_demand = o->max_demand,
		.min_demand = o->min_demand,
	};
	size_t stages_after;
	if ((e = check_popts(f, what, &after, &stages_after)))
		return e;
	gs__flow_layer *in = f->last;
	gs__flow_layer *u = stages_layer(f, GS__IN_SHUFFLE, &in, 1, n,
					 o->in_max_demand, o->in_min_demand);
	if (!u || !(u->user = malloc(n * sizeof(gs_stage *))))
		return gs__flow_fail(f, GS_ENOMEM, "%s: out of memory", what);
	u->kind = GS__L_USER;
	memcpy(u->user, stages, n * sizeof(gs_stage *));
	if ((e = gs__flow_add_layer(f, what, GS__IN_SHUFFLE, &after)))
		return e;
	f->bound = p;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_pipeline_opts(gs_flow *f,
					 const gs_pipeline_opts *opts)
{
	gs_err e = gs__flow_usable(f, "gs_flow_pipeline_opts");
	if (e)
		return e;
	f->has_popts = opts != NULL;
	f->popts = opts ? *opts : (gs_pipeline_opts){ 0 };
	return GS_OK;
}
