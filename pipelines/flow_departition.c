// SPDX-License-Identifier: MIT
/*
 * Flow's departition/5: one stage merges, window by window, what every
 * stage of the reducing layer before it emits at its triggers, and gives
 * done(acc) once each of those stages has fired the window's DONE trigger
 * (windows some stage never closed are given at the end of input, oldest
 * first). The layer before wraps what its triggers emit in an envelope
 * saying which window it belongs to and whether it ends the window.
 */
#include <stdlib.h>

#include "flow_internal.h"

/* What a trigger of the layer before sends: an item (unless the trigger
 * emitted nothing, which still says the stage is done with the window). */
typedef struct envelope {
	void *item;
	int64_t window;
	bool has_item, done;
} envelope;

/* A window being merged. */
typedef struct dwin {
	int64_t id;
	void *acc;
	size_t left; /* stages before whose DONE is still awaited */
} dwin;

bool gs__flow_departing(const gs__flow_layer *l)
{
	return l->out && l->out->is_departition;
}

int gs__flow_departition_wrap(gs__flow_stage *st, gs_flow_out *out,
			      int64_t window, bool done)
{
	if (!gs__flow_departing(st->layer))
		return 0;
	gs__flow_vec *v = &out->vec;
	size_t items = v->n;
	/* A DONE trigger that emitted nothing still says that this stage is
	 * done with the window. */
	if (done && !items && gs__flow_vec_push(v, NULL))
		return GS_ENOMEM;
	for (size_t i = 0; i < v->n; i++) {
		envelope *e = malloc(sizeof(*e));
		if (!e) {
			for (size_t j = i; j < items; j++)
				gs__flow_drop_item(v->v[j], st->layer);
			v->n = i; /* those wrapped still go */
			return GS_ENOMEM;
		}
		*e = (envelope){ .item = v->v[i],
				 .window = window,
				 .has_item = i < items,
				 .done = done && i + 1 == v->n };
		v->v[i] = e;
	}
	return 0;
}

bool gs__flow_unwrap(void **item)
{
	envelope *e = *item;
	*item = e->item;
	bool has = e->has_item;
	free(e);
	return has;
}

static void dwin_free(gs__flow_stage *st, dwin *w)
{
	const gs_flow_departition_fns *d = &st->layer->dep;
	if (w->acc && d->acc_free)
		d->acc_free(d->arg, w->acc);
	free(w);
}

/* Gives window `w`'s result (done(acc), or acc), through this layer's
 * operations, downstream; `w` is freed. */
static int give(gs__flow_stage *st, dwin *w)
{
	const gs_flow_departition_fns *d = &st->layer->dep;
	void *item = d->done ? d->done(d->arg, w->acc, w->id) : w->acc;
	w->acc = NULL;
	free(w);
	void **res;
	size_t n;
	int r = gs__flow_ops_run(st, &item, 1, &res, &n);
	return r ? r : gs__flow_send(st, res, n);
}

static dwin *window_of(gs__flow_stage *st, int64_t id, int *err)
{
	bool added;
	void **slot = gs__flow_table_get(&st->dep, (uint64_t)id, true, &added);
	if (!slot) {
		*err = GS_ENOMEM;
		return NULL;
	}
	if (!added)
		return *slot;
	const gs__flow_layer *l = st->layer;
	dwin *w = calloc(1, sizeof(*w));
	if (!w) {
		gs__flow_table_del(&st->dep, (uint64_t)id, NULL);
		*err = GS_ENOMEM;
		return NULL;
	}
	w->id = id;
	w->left = l->inputs[0]->nstages;
	if (l->dep.acc_new)
		w->acc = l->dep.acc_new(l->dep.arg);
	*slot = w;
	return w;
}

static int take(gs__flow_stage *st, envelope *e)
{
	const gs_flow_departition_fns *d = &st->layer->dep;
	int r = 0;
	dwin *w = window_of(st, e->window, &r);
	if (w && e->has_item)
		r = d->merge(d->arg, &w->acc, e->item);
	else if (!w && e->has_item)
		gs__flow_drop_item(e->item, st->layer->inputs[0]);
	/* A stage fires a window's DONE once. */
	if (w && !r && e->done && --w->left == 0) {
		gs__flow_table_del(&st->dep, (uint64_t)w->id, NULL);
		r = give(st, w);
	}
	free(e);
	return r;
}

int gs__flow_departition_events(gs__flow_stage *st, void **ev, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = take(st, ev[i]);
		if (r) {
			for (size_t j = i + 1; j < n; j++)
				gs__flow_drop_output(ev[j],
						     st->layer->inputs[0]);
			return r;
		}
	}
	return 0;
}

static int by_id(const void *a, const void *b)
{
	const dwin *x = *(dwin *const *)a, *y = *(dwin *const *)b;
	return x->id < y->id ? -1 : x->id > y->id;
}

int gs__flow_departition_end(gs__flow_stage *st)
{
	gs__flow_table *t = &st->dep;
	if (!t->n)
		return 0;
	dwin **ws = malloc(t->n * sizeof(*ws));
	if (!ws)
		return GS_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < t->cap; i++)
		if (t->used[i])
			ws[n++] = t->vals[i];
	qsort(ws, n, sizeof(*ws), by_id);
	gs__flow_table_free(t);
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (r)
			dwin_free(st, ws[i]);
		else
			r = give(st, ws[i]);
	}
	free(ws);
	return r;
}

void gs__flow_departition_fini(gs__flow_stage *st)
{
	gs__flow_table *t = &st->dep;
	for (size_t i = 0; i < t->cap; i++)
		if (t->used[i])
			dwin_free(st, t->vals[i]);
	gs__flow_table_free(t);
}

GS_FLOW_API gs_err gs_flow_departition_merge(gs_flow *f,
					     const gs_flow_departition_fns *fns,
					     const gs_flow_partition_opts *opts)
{
	static const char what[] = "gs_flow_departition_merge";
	gs_err e = gs__flow_usable(f, what);
	if (e)
		return e;
	if (fns && fns->version > GS_FLOW_DEPARTITION_FNS_VERSION)
		return gs__flow_fail(f, GS_EVERSION, "%s: %s", what,
				     gs_strerror(GS_EVERSION));
	if (!fns || !fns->merge)
		return gs__flow_fail(f, GS_EINVAL, "%s: no merge function",
				     what);
	if (!f->last->has_reduce && !f->last->is_join)
		return gs__flow_fail(f, GS_EINVAL,
				     "%s must follow a reduce, a group_by or "
				     "a join: it merges what their triggers "
				     "emit",
				     what);
	if (f->last->emit_reducer)
		return gs__flow_fail(
			f, GS_EINVAL,
			"%s: what an emit_and_reduce emits belongs "
			"to no trigger",
			what);
	gs_flow_partition_opts o = opts ? *opts : (gs_flow_partition_opts){ 0 };
	if (o.window.kind != GS_FLOW_WINDOW_GLOBAL || o.window.every ||
	    o.window.periodic_ms)
		return gs__flow_fail(f, GS_EINVAL,
				     "%s: the windows are those of the layer "
				     "before (opts.window must be global)",
				     what);
	o.stages = 1;
	if ((e = gs__flow_add_layer(f, what, GS__IN_SHUFFLE, &o)))
		return e;
	f->last->is_departition = true;
	f->last->dep = *fns;
	return GS_OK;
}
