// SPDX-License-Identifier: MIT
/*
 * Windows and triggers of a reducing stage: which window each event
 * belongs to, when a window fires (every N events, periodically, when
 * event time passes it, when a custom trigger says, at its end, at the
 * end of input), and what a trigger emits (a join's pairs, on_trigger, or
 * an emit mode).
 */
#include <stdlib.h>
#include <string.h>

#include "flow_internal.h"

typedef enum timer_kind {
	TIMER_WINDOW,  /* periodic window: the current window ends */
	TIMER_TRIGGER, /* trigger_periodically */
	TIMER_LATE,    /* fixed window: its lateness ran out */
} timer_kind;

typedef struct timer_msg {
	timer_kind kind;
	int64_t id;
} timer_msg;

static gs_err arm(gs__flow_stage *st, timer_kind kind, int64_t id, unsigned ms)
{
	timer_msg *m = malloc(sizeof(*m));
	if (!m)
		return GS_ENOMEM;
	m->kind = kind;
	m->id = id;
	gs_err e = gs_send_after(st->stage, ms, m);
	if (e)
		free(m);
	return e;
}

static gs__flow_win *find(gs__flow_stage *st, int64_t id)
{
	for (size_t i = 0; i < st->nwins; i++)
		if (st->wins[i].id == id)
			return &st->wins[i];
	return NULL;
}

static gs__flow_win *open_win(gs__flow_stage *st, int64_t id)
{
	if (st->nwins == st->capwins) {
		size_t cap = st->capwins ? st->capwins * 2 : 4;
		gs__flow_win *nw = realloc(st->wins, cap * sizeof(*nw));
		if (!nw)
			return NULL;
		st->wins = nw;
		st->capwins = cap;
	}
	gs__flow_layer *l = st->layer;
	gs__flow_win *w = &st->wins[st->nwins];
	memset(w, 0, sizeof(*w));
	w->id = id;
	if (l->is_join && !(w->sides = calloc(2, sizeof(*w->sides))))
		return NULL;
	if (l->has_reduce && l->acc_new)
		w->acc = l->acc_new(l->reduce_arg);
	st->nwins++;
	return w;
}

static void free_acc(gs__flow_stage *st, gs__flow_win *w)
{
	gs__flow_layer *l = st->layer;
	if (l->is_join)
		gs__flow_join_free(st, w);
	if (w->acc && l->acc_free)
		l->acc_free(l->reduce_arg, w->acc);
	w->acc = NULL;
}

static void close_win(gs__flow_stage *st, gs__flow_win *w)
{
	free_acc(st, w);
	size_t i = (size_t)(w - st->wins);
	st->wins[i] = st->wins[--st->nwins];
}

int gs__flow_emit_out(gs__flow_stage *st, gs_flow_out *out)
{
	gs__flow_vec *v = &out->vec;
	int r = gs__flow_send(st, v->v, v->n);
	v->n = 0;
	return r;
}

/* The default emission when no on_trigger was given. */
static int emit_mode(gs__flow_stage *st, gs__flow_win *w, bool done,
		     gs_flow_out *out)
{
	gs__flow_layer *l = st->layer;
	switch (l->emit) {
	case GS_FLOW_EMIT_NOTHING:
		return 0;
	case GS_FLOW_EMIT_STATE: {
		gs_err e = gs__flow_vec_push(&out->vec, w->acc);
		if (e)
			return e;
		/* A value accumulator is kept; an owned one moves on. */
		if (l->acc_free) {
			w->acc = NULL;
			if (!done && l->acc_new)
				w->acc = l->acc_new(l->reduce_arg);
		}
		return 0;
	}
	case GS_FLOW_EMIT_EVENTS: {
		gs_flow_events *ev = w->acc;
		if (!ev)
			return 0;
		for (size_t i = 0; i < ev->vec.n; i++) {
			gs_err e = gs__flow_vec_push(&out->vec, ev->vec.v[i]);
			if (e) {
				/* Those not moved stay in the list. */
				memmove(ev->vec.v, ev->vec.v + i,
					(ev->vec.n - i) * sizeof(void *));
				ev->vec.n -= i;
				return e;
			}
		}
		ev->vec.n = 0;
		return 0;
	}
	}
	return GS_EINVAL;
}

/* Hands each item of `o` to the flow's free functions and empties it. */
static void drop_out(gs__flow_stage *st, gs_flow_out *o)
{
	for (size_t i = 0; i < o->vec.n; i++)
		gs__flow_drop_item(o->vec.v[i], st->layer);
	o->vec.n = 0;
}

/* Folds one event into the reduce of `w` (the callee owns it). */
static int reduce_one(gs__flow_stage *st, gs__flow_win *w, void *ev)
{
	gs__flow_layer *l = st->layer;
	if (l->emit_reducer)
		return l->emit_reducer(l->reduce_arg, &w->acc, ev, &st->tout);
	return l->reducer(l->reduce_arg, &w->acc, ev);
}

/*
 * A join's part of a trigger: the pairs it has not given before (and,
 * when the window is done, the unmatched events of the outer modes),
 * through the operations after the join, then into the reduce after it
 * or into `out`.
 */
static int join_fire(gs__flow_stage *st, gs__flow_win *w, bool done,
		     gs_flow_out *out)
{
	gs__flow_vec *pairs = &st->jout.vec;
	int r = gs__flow_join_trigger(st, w, done, &st->jout);
	if (r) {
		for (size_t i = 0; i < pairs->n; i++)
			gs__flow_drop(st->flow, pairs->v[i]);
		pairs->n = 0;
		return r;
	}
	void **res;
	size_t n;
	r = gs__flow_ops_run(st, pairs->v, pairs->n, &res, &n);
	pairs->n = 0; /* the operations own them now */
	if (r)
		return r;
	if (!st->layer->has_reduce) {
		if ((r = gs__flow_vec_reserve(&out->vec, n))) {
			for (size_t i = 0; i < n; i++)
				gs__flow_drop(st->flow, res[i]);
			return r;
		}
		for (size_t i = 0; i < n; i++)
			out->vec.v[out->vec.n++] = res[i];
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if ((r = reduce_one(st, w, res[i]))) {
			while (++i < n)
				gs__flow_drop(st->flow, res[i]);
			return r;
		}
	return 0;
}

/* Fires one trigger on window `w`; a DONE trigger closes it. */
static int fire(gs__flow_stage *st, gs__flow_win *w, gs_flow_trigger_kind k)
{
	gs__flow_layer *l = st->layer;
	bool done = k == GS_FLOW_TRIGGER_DONE;
	gs_flow_out *out = &st->tout;
	int64_t window_id = l->window.kind == GS_FLOW_WINDOW_FIXED
				    ? w->id * l->window.duration_ms
				    : w->id;
	int r = l->is_join ? join_fire(st, w, done, out) : 0;
	if (r || !l->has_reduce) {
		/* A join without a reduce after it emits its pairs. */
	} else if (l->on_trigger) {
		gs_flow_trigger t = {
			.window = l->window.kind,
			.window_id = window_id,
			.kind = k,
			.partition = st->index,
			.partitions = l->nstages,
			.state = w->punct,
		};
		r = l->on_trigger(l->trigger_arg, &w->acc, &t, out);
	} else {
		r = emit_mode(st, w, done, out);
	}
	int rw = gs__flow_departition_wrap(st, out, window_id, done);
	r = r ? r : rw;
	if (k == GS_FLOW_TRIGGER_EVERY)
		w->since_trigger = 0;
	if (done)
		close_win(st, w);
	int r2 = gs__flow_emit_out(st, out);
	return r ? r : r2;
}

gs_err gs__flow_window_init(gs__flow_stage *st)
{
	const gs_flow_window *win = &st->layer->window;
	gs_err e = GS_OK;
	if (win->kind != GS_FLOW_WINDOW_FIXED) {
		if (!open_win(st, 0))
			return GS_ENOMEM;
		st->next_id = 1;
	}
	if (win->kind == GS_FLOW_WINDOW_PERIODIC)
		e = arm(st, TIMER_WINDOW, 0, (unsigned)win->duration_ms);
	if (!e && win->periodic_ms)
		e = arm(st, TIMER_TRIGGER, 0, win->periodic_ms);
	return e;
}

void gs__flow_window_fini(gs__flow_stage *st)
{
	while (st->nwins)
		close_win(st, &st->wins[st->nwins - 1]);
	free(st->wins);
	st->wins = NULL;
	st->capwins = 0;
	drop_out(st, &st->tout);
	gs__flow_vec_free(&st->tout.vec);
	gs__flow_vec_free(&st->jout.vec);
}

/* Folds one event into `w`, then fires what that event triggers (a
 * custom trigger may fire before it too). */
static int add(gs__flow_stage *st, gs__flow_win *w, int side, void *ev)
{
	gs__flow_layer *l = st->layer;
	const gs_flow_window *win = &l->window;
	int64_t id = w->id;
	gs_flow_fire when = win->punctuate ? win->punctuate(win->punctuate_arg,
							    &w->punct, ev)
					   : GS_FLOW_FIRE_NO;
	int r = 0;
	if (when == GS_FLOW_FIRE_BEFORE &&
	    (r = fire(st, w, GS_FLOW_TRIGGER_CUSTOM))) {
		gs__flow_drop(st->flow, ev);
		return r;
	}
	r = l->is_join ? gs__flow_join_add(st, w, side, ev)
		       : reduce_one(st, w, ev);
	if (!r && when == GS_FLOW_FIRE_AFTER)
		r = fire(st, w, GS_FLOW_TRIGGER_CUSTOM);
	if (r)
		return r;
	w->count++;
	if (win->every && ++w->since_trigger == win->every &&
	    (r = fire(st, w, GS_FLOW_TRIGGER_EVERY)))
		return r;
	if (win->kind == GS_FLOW_WINDOW_COUNT && w->count == win->count) {
		if ((r = fire(st, w, GS_FLOW_TRIGGER_DONE)))
			return r;
		if (!open_win(st, id + 1))
			return GS_ENOMEM;
		st->next_id = id + 2;
	}
	return 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Fixed windows: fires the windows every live input has moved past. */
static int watermark(gs__flow_stage *st)
{
	int64_t min = 0;
	bool any = false;
	for (size_t i = 0; i < st->ninputs; i++) {
		gs__flow_input *in = &st->inputs[i];
		if (!in->live)
			continue;
		if (!in->has_recent)
			return 0;
		if (!any || in->recent < min)
			min = in->recent;
		any = true;
	}
	if (!any || st->nwins == 0)
		return 0;
	if (!st->fixed_started) {
		st->next_fixed = st->wins[0].id;
		for (size_t i = 1; i < st->nwins; i++)
			if (st->wins[i].id < st->next_fixed)
				st->next_fixed = st->wins[i].id;
		st->fixed_started = true;
	}
	const gs_flow_window *win = &st->layer->window;
	for (; st->next_fixed < min; st->next_fixed++) {
		int64_t id = st->next_fixed;
		gs__flow_win *w = find(st, id);
		if (!w && !(w = open_win(st, id)))
			return GS_ENOMEM;
		int r;
		if (win->lateness_ms) {
			w->watermarked = true;
			r = fire(st, w, GS_FLOW_TRIGGER_WATERMARK);
			if (!r)
				r = arm(st, TIMER_LATE, id,
					(unsigned)win->lateness_ms);
		} else {
			r = fire(st, w, GS_FLOW_TRIGGER_DONE);
		}
		if (r)
			return r;
	}
	return 0;
}

static int add_fixed(gs__flow_stage *st, gs__flow_input *in, void *ev)
{
	const gs_flow_window *win = &st->layer->window;
	int64_t id = floor_div(win->time(win->time_arg, ev), win->duration_ms);
	gs__flow_win *w = find(st, id);
	if (!w) {
		bool late = (in->has_recent && id < in->recent) ||
			    (st->fixed_started && id < st->next_fixed);
		if (late) {
			gs__flow_drop(st->flow, ev);
			return 0;
		}
		if (!(w = open_win(st, id))) {
			gs__flow_drop(st->flow, ev);
			return GS_ENOMEM;
		}
	}
	if (!in->has_recent || id > in->recent)
		in->recent = id;
	in->has_recent = true;
	return add(st, w, in->side, ev);
}

/* A plain reduce into one window with no per-event trigger: the loop
 * that most reductions (a count, a table) spend their time in. */
static int reduce_all(gs__flow_stage *st, gs__flow_win *w, void **ev, size_t n)
{
	const gs__flow_layer *l = st->layer;
	for (size_t i = 0; i < n; i++) {
		int r = l->reducer(l->reduce_arg, &w->acc, ev[i]);
		if (r) {
			while (++i < n)
				gs__flow_drop(st->flow, ev[i]);
			return r;
		}
	}
	w->count += n;
	return 0;
}

int gs__flow_window_events(gs__flow_stage *st, gs__flow_input *in, void **ev,
			   size_t n)
{
	const gs__flow_layer *l = st->layer;
	const gs_flow_window *win = &l->window;
	bool fixed = win->kind == GS_FLOW_WINDOW_FIXED;
	if (!fixed && st->nwins && l->reducer && !l->is_join && !win->every &&
	    !win->punctuate && win->kind != GS_FLOW_WINDOW_COUNT)
		return reduce_all(st, &st->wins[0], ev, n);
	for (size_t i = 0; i < n; i++) {
		int r;
		if (fixed) {
			r = add_fixed(st, in, ev[i]);
		} else if (st->nwins == 0) {
			gs__flow_drop(st->flow, ev[i]);
			r = GS_ENOMEM;
		} else {
			r = add(st, &st->wins[0], in->side, ev[i]);
		}
		if (r) {
			for (size_t j = i + 1; j < n; j++)
				gs__flow_drop(st->flow, ev[j]);
			drop_out(st, &st->tout);
			return r;
		}
	}
	int r = fixed ? watermark(st) : 0;
	/* What an emit_and_reduce emitted after the last trigger. */
	int r2 = st->tout.vec.n ? gs__flow_emit_out(st, &st->tout) : 0;
	return r ? r : r2;
}

/* An input finished: it no longer holds the watermark back. */
int gs__flow_window_input_ended(gs__flow_stage *st)
{
	if (st->layer->window.kind == GS_FLOW_WINDOW_FIXED && !st->ended)
		return watermark(st);
	return 0;
}

/* End of input: every open window fires DONE, oldest first; fixed
 * windows also fire the empty windows between them, as Flow does. */
int gs__flow_window_end(gs__flow_stage *st)
{
	if (st->layer->window.kind != GS_FLOW_WINDOW_FIXED) {
		return st->nwins ? fire(st, &st->wins[0], GS_FLOW_TRIGGER_DONE)
				 : 0;
	}
	if (!st->nwins)
		return 0;
	int64_t lo = st->wins[0].id, hi = lo;
	for (size_t i = 1; i < st->nwins; i++) {
		if (st->wins[i].id < lo)
			lo = st->wins[i].id;
		if (st->wins[i].id > hi)
			hi = st->wins[i].id;
	}
	for (int64_t id = lo; id <= hi; id++) {
		gs__flow_win *w = find(st, id);
		if (!w && !(w = open_win(st, id)))
			return GS_ENOMEM;
		int r = fire(st, w, GS_FLOW_TRIGGER_DONE);
		if (r)
			return r;
	}
	return 0;
}

int gs__flow_window_info(gs__flow_stage *st, void *msg)
{
	timer_msg m = *(timer_msg *)msg;
	free(msg);
	const gs_flow_window *win = &st->layer->window;
	int r = 0;
	if (st->ended)
		return 0;
	switch (m.kind) {
	case TIMER_WINDOW:
		if (st->nwins &&
		    (r = fire(st, &st->wins[0], GS_FLOW_TRIGGER_DONE)))
			return r;
		if (!open_win(st, st->next_id++))
			return GS_ENOMEM;
		return arm(st, TIMER_WINDOW, 0, (unsigned)win->duration_ms);
	case TIMER_TRIGGER:
		/* Oldest first; a PERIODIC trigger never closes a window. */
		for (size_t i = 0; i < st->nwins && !r; i++)
			r = fire(st, &st->wins[i], GS_FLOW_TRIGGER_PERIODIC);
		return r ? r : (int)arm(st, TIMER_TRIGGER, 0, win->periodic_ms);
	case TIMER_LATE: {
		gs__flow_win *w = find(st, m.id);
		return w ? fire(st, w, GS_FLOW_TRIGGER_DONE) : 0;
	}
	}
	return 0;
}
