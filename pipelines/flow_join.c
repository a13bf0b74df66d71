// SPDX-License-Identifier: MIT
/*
 * Joins: gs_flow_bounded_join and gs_flow_window_join partition both flows
 * by key into one layer; each window keeps the events of both sides and a
 * trigger pairs by key those not paired before (inner, left, right or
 * full outer); the operations and reduce after the join take the pairs.
 */
#include <stdlib.h>

#include "flow_internal.h"

typedef struct gs__flow_side side;

int gs__flow_join_add(gs__flow_stage *st, gs__flow_win *w, int s, void *ev)
{
	const gs_flow_join *j = &st->layer->join;
	side *sd = &w->sides[s ? 1 : 0];
	if (sd->n == sd->cap) {
		size_t cap = sd->cap ? sd->cap * 2 : 16;
		void **nev = realloc(sd->ev, cap * sizeof(*nev));
		if (nev)
			sd->ev = nev;
		uint64_t *nk = nev ? realloc(sd->key, cap * sizeof(*nk)) : NULL;
		if (!nk) {
			gs__flow_drop(st->flow, ev);
			return GS_ENOMEM;
		}
		sd->key = nk;
		sd->cap = cap;
	}
	gs_flow_key_fn key = s ? j->right_key : j->left_key;
	sd->key[sd->n] = key(j->arg, ev);
	sd->ev[sd->n++] = ev;
	return 0;
}

void gs__flow_join_free(gs__flow_stage *st, gs__flow_win *w)
{
	if (!w->sides)
		return;
	for (int s = 0; s < 2; s++) {
		side *sd = &w->sides[s];
		for (size_t i = 0; i < sd->n; i++)
			gs__flow_drop(st->flow, sd->ev[i]);
		free(sd->ev);
		free(sd->key);
	}
	free(w->sides);
	w->sides = NULL;
}

static int put(const gs_flow *f, gs_flow_out *out, const gs_flow_join *j,
	       void *l, void *r)
{
	void *ev = j->join(j->arg, l, r);
	int e = gs__flow_vec_push(&out->vec, ev);
	if (e)
		gs__flow_drop(f, ev);
	return e;
}

/*
 * Pairs the window's events: each pair once, at the first trigger after
 * both its events arrived (one of them arrived since the last trigger,
 * whose counts `sent` keeps), and, when the window is done, the events of
 * the outer modes that no event of the other side matched.
 */
int gs__flow_join_trigger(gs__flow_stage *st, gs__flow_win *w, bool done,
			  gs_flow_out *out)
{
	const gs_flow_join *j = &st->layer->join;
	side *L = &w->sides[0], *R = &w->sides[1];
	size_t l0 = L->sent, r0 = R->sent;
	if (!done && L->n == l0 && R->n == r0)
		return 0;
	bool left_outer = done && (j->mode == GS_FLOW_JOIN_LEFT_OUTER ||
				   j->mode == GS_FLOW_JOIN_FULL_OUTER);
	bool right_outer = done && (j->mode == GS_FLOW_JOIN_RIGHT_OUTER ||
				    j->mode == GS_FLOW_JOIN_FULL_OUTER);
	/* Right events chained by key: the table maps a key to its first
	 * index + 1, next[] links the rest in index order. */
	gs__flow_table heads = { 0 };
	size_t *next = R->n ? malloc(R->n * sizeof(*next)) : NULL;
	bool *matched = R->n ? calloc(R->n, sizeof(*matched)) : NULL;
	int r = 0;
	if (R->n && (!next || !matched))
		r = GS_ENOMEM;
	for (size_t i = R->n; !r && i-- > 0;) {
		void **slot = gs__flow_table_get(&heads, R->key[i], true, NULL);
		if (!slot) {
			r = GS_ENOMEM;
			break;
		}
		next[i] = (size_t)(uintptr_t)*slot;
		*slot = (void *)(uintptr_t)(i + 1);
	}
	for (size_t i = 0; !r && i < L->n; i++) {
		void **slot = gs__flow_table_get(&heads, L->key[i], false,
						 NULL);
		if (!slot) {
			if (left_outer)
				r = put(st->flow, out, j, L->ev[i], NULL);
			continue;
		}
		for (size_t k = (size_t)(uintptr_t)*slot; !r && k;
		     k = next[k - 1]) {
			matched[k - 1] = true;
			if (i >= l0 || k - 1 >= r0)
				r = put(st->flow, out, j, L->ev[i],
					R->ev[k - 1]);
		}
	}
	for (size_t k = 0; !r && right_outer && k < R->n; k++)
		if (!matched[k])
			r = put(st->flow, out, j, NULL, R->ev[k]);
	gs__flow_table_free(&heads);
	free(next);
	free(matched);
	L->sent = L->n;
	R->sent = R->n;
	return r;
}

static gs_err join(gs_flow *left, gs_flow *right, const gs_flow_join *j,
		   const gs_flow_partition_opts *opts, bool bounded,
		   gs_flow **out)
{
	static const gs_flow_partition_opts none;
	const char *what = bounded ? "gs_flow_bounded_join"
				   : "gs_flow_window_join";
	const gs_flow_partition_opts *o = opts ? opts : &none;
	gs_flow *flows[2] = { left, right };
	if (!left || !right || !out)
		return gs__flow_fail_each(flows, 2, GS_EINVAL, what,
					  "a flow or the output is NULL");
	if (j && j->version > GS_FLOW_JOIN_VERSION)
		return gs__flow_fail_each(flows, 2, GS_EVERSION, what,
					  gs_strerror(GS_EVERSION));
	if (!j || !j->left_key || !j->right_key || !j->join ||
	    j->mode > GS_FLOW_JOIN_FULL_OUTER)
		return gs__flow_fail_each(flows, 2, GS_EINVAL, what,
					  "the join needs a mode, two key "
					  "functions and a join function");
	if (bounded && o->window.kind != GS_FLOW_WINDOW_GLOBAL)
		return gs__flow_fail_each(flows, 2, GS_EINVAL, what,
					  "a bounded join has the global "
					  "window; use gs_flow_window_join");
	gs_flow_partition_opts po = *o;
	po.hash = NULL;
	po.key = NULL;
	gs_flow *f;
	gs_err e = gs__flow_combine(flows, 2, what, &po, &f);
	if (e)
		return e;
	gs__flow_layer *l = f->last;
	l->is_join = true;
	l->join = *j;
	for (int s = 0; s < 2; s++) {
		l->inputs[s]->side = s;
		l->inputs[s]->out_key = s ? j->right_key : j->left_key;
		l->inputs[s]->out_key_arg = j->arg;
	}
	*out = f;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_bounded_join(gs_flow *left, gs_flow *right,
					const gs_flow_join *j,
					const gs_flow_partition_opts *opts,
					gs_flow **out)
{
	return join(left, right, j, opts, true, out);
}

GS_FLOW_API gs_err gs_flow_window_join(gs_flow *left, gs_flow *right,
				       const gs_flow_join *j,
				       const gs_flow_partition_opts *opts,
				       gs_flow **out)
{
	return join(left, right, j, opts, false, out);
}
