// SPDX-License-Identifier: MIT
/*
 * Reductions the library writes for the user, built on gs_flow_reduce:
 * group_by/group_by_key (events gathered per key) and take_sort (the n
 * first events in an order, kept in a bounded heap per stage).
 */
#include <stdlib.h>

#include "flow_internal.h"

struct gs_flow_groups {
	gs__flow_table index; /* key -> group number + 1 */
	uint64_t *keys;
	gs_flow_events **lists;
	size_t n, cap;
};

GS_FLOW_API size_t gs_flow_groups_len(const gs_flow_groups *g)
{
	return g ? g->n : 0;
}

GS_FLOW_API uint64_t gs_flow_groups_key(const gs_flow_groups *g, size_t i)
{
	return g && i < g->n ? g->keys[i] : 0;
}

GS_FLOW_API gs_flow_events *gs_flow_groups_at(const gs_flow_groups *g, size_t i)
{
	return g && i < g->n ? g->lists[i] : NULL;
}

GS_FLOW_API gs_flow_events *gs_flow_groups_find(const gs_flow_groups *g,
						uint64_t key)
{
	if (!g)
		return NULL;
	/* A lookup never changes the table. */
	void **slot = gs__flow_table_get((gs__flow_table *)&g->index, key,
					 false, NULL);
	return slot ? g->lists[(uintptr_t)*slot - 1] : NULL;
}

GS_FLOW_API void gs_flow_groups_free(gs_flow_groups *g,
				     void (*event_free)(void *, void *),
				     void *arg)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n; i++)
		gs_flow_events_free(g->lists[i], event_free, arg);
	gs__flow_table_free(&g->index);
	free(g->keys);
	free(g->lists);
	free(g);
}

static bool groups_grow(gs_flow_groups *g)
{
	size_t cap = g->cap ? g->cap * 2 : 8;
	uint64_t *k = realloc(g->keys, cap * sizeof(*k));
	if (!k)
		return false;
	g->keys = k;
	gs_flow_events **ls = realloc(g->lists, cap * sizeof(*ls));
	if (!ls)
		return false;
	g->lists = ls;
	g->cap = cap;
	return true;
}

/* The list of `key`, created if missing; NULL when out of memory. */
static gs_flow_events *group_of(gs_flow_groups *g, uint64_t key)
{
	bool added;
	void **slot = gs__flow_table_get(&g->index, key, true, &added);
	if (!slot)
		return NULL;
	if (!added)
		return g->lists[(uintptr_t)*slot - 1];
	gs_flow_events *l = g->n < g->cap || groups_grow(g)
				    ? gs_flow_events_new()
				    : NULL;
	if (!l) {
		gs__flow_table_del(&g->index, key, NULL);
		return NULL;
	}
	g->keys[g->n] = key;
	g->lists[g->n] = l;
	*slot = (void *)(uintptr_t)++g->n;
	return l;
}

typedef struct gs__flow_builtin builtin;

static void *groups_new(void *arg)
{
	(void)arg;
	return calloc(1, sizeof(gs_flow_groups));
}

static void groups_acc_free(void *arg, void *acc)
{
	builtin *b = arg;
	gs_flow_groups_free(acc, b->event_free, b->event_free_arg);
}

static int group_add(void *arg, void **acc, void *event)
{
	builtin *b = arg;
	uint64_t key = b->key(b->arg, event);
	gs_flow_events *l = *acc ? group_of(*acc, key) : NULL;
	if (l && b->value)
		event = b->value(b->arg, event);
	if (!l || gs_flow_events_push(l, event)) {
		if (b->event_free)
			b->event_free(event, b->event_free_arg);
		return GS_ENOMEM;
	}
	return 0;
}

/* Fills the layer's builtin from the flow (the reduce's arg points at
 * it: layers never move, even when a merge takes them over). */
static builtin *builtin_of(gs_flow *f)
{
	builtin *b = &f->last->builtin;
	b->event_free = f->event_free;
	b->event_free_arg = f->event_free_arg;
	return b;
}

static gs_err group(gs_flow *f, const char *what, gs_flow_key_fn key,
		    gs_flow_map_fn value, bool want_value, void *arg)
{
	gs_err e = gs__flow_usable(f, what);
	if (e)
		return e;
	if (!key || (want_value && !value))
		return gs__flow_fail(f, GS_EINVAL,
				     "%s: the %s function is NULL", what,
				     key ? "value" : "key");
	e = gs_flow_reduce(f, groups_new, group_add, NULL);
	if (e)
		return e;
	builtin *b = builtin_of(f);
	b->key = key;
	b->value = value;
	b->arg = arg;
	f->last->reduce_arg = b;
	f->last->acc_free = groups_acc_free;
	return GS_OK;
}

GS_FLOW_API gs_err gs_flow_group_by(gs_flow *f, gs_flow_key_fn key, void *arg)
{
	return group(f, "gs_flow_group_by", key, NULL, false, arg);
}

GS_FLOW_API gs_err gs_flow_group_by_key(gs_flow *f, gs_flow_key_fn key,
					gs_flow_map_fn value, void *arg)
{
	return group(f, "gs_flow_group_by_key", key, value, true, arg);
}

/*
 * take_sort's accumulator: a binary heap of at most b->n events whose top
 * is the one that comes last in the order, so it is the first to go.
 */
typedef struct heap {
	void **ev;
	size_t n;
} heap;

static bool after(const builtin *b, void *x, void *y)
{
	return b->cmp(b->arg, x, y) > 0;
}

static void sift_down(const builtin *b, heap *h, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			return;
		if (c + 1 < h->n && after(b, h->ev[c + 1], h->ev[c]))
			c++;
		if (!after(b, h->ev[c], h->ev[i]))
			return;
		void *t = h->ev[c];
		h->ev[c] = h->ev[i];
		h->ev[i] = t;
		i = c;
	}
}

static void *heap_new(void *arg)
{
	builtin *b = arg;
	heap *h = calloc(1, sizeof(*h));
	if (h && !(h->ev = malloc(b->n * sizeof(void *)))) {
		free(h);
		h = NULL;
	}
	return h;
}

static void heap_free(void *arg, void *acc)
{
	builtin *b = arg;
	heap *h = acc;
	for (size_t i = 0; b->event_free && i < h->n; i++)
		b->event_free(h->ev[i], b->event_free_arg);
	free(h->ev);
	free(h);
}

static int heap_add(void *arg, void **acc, void *event)
{
	builtin *b = arg;
	heap *h = *acc;
	void *out = NULL;
	if (!h) {
		out = event;
	} else if (h->n < b->n) {
		size_t i = h->n++;
		h->ev[i] = event;
		while (i > 0 && after(b, h->ev[i], h->ev[(i - 1) / 2])) {
			void *t = h->ev[i];
			h->ev[i] = h->ev[(i - 1) / 2];
			h->ev[(i - 1) / 2] = t;
			i = (i - 1) / 2;
		}
	} else if (after(b, h->ev[0], event)) {
		out = h->ev[0];
		h->ev[0] = event;
		sift_down(b, h, 0);
	} else {
		out = event;
	}
	if (out && b->event_free)
		b->event_free(out, b->event_free_arg);
	return h ? 0 : GS_ENOMEM;
}

/* A stage of the partition before take_sort's own: its n best go on. */
static int heap_pass_on(void *arg, void **acc, const gs_flow_trigger *t,
			gs_flow_out *out)
{
	(void)arg;
	heap *h = *acc;
	if (t->kind != GS_FLOW_TRIGGER_DONE || !h)
		return 0;
	while (h->n) {
		gs_err e = gs_flow_out_push(out, h->ev[h->n - 1]);
		if (e)
			return e; /* the rest stays for heap_free */
		h->n--;
	}
	return 0;
}

/* The final stage: the heap, emptied from its top, gives the list in
 * order from the back. */
static int heap_emit_sorted(void *arg, void **acc, const gs_flow_trigger *t,
			    gs_flow_out *out)
{
	builtin *b = arg;
	heap *h = *acc;
	if (t->kind != GS_FLOW_TRIGGER_DONE || !h)
		return 0;
	gs_flow_events *l = gs_flow_events_new();
	if (!l || gs__flow_vec_reserve(&l->vec, h->n)) {
		gs_flow_events_free(l, NULL, NULL);
		return GS_ENOMEM;
	}
	l->vec.n = h->n;
	while (h->n) {
		l->vec.v[h->n - 1] = h->ev[0];
		h->ev[0] = h->ev[--h->n];
		sift_down(b, h, 0);
	}
	gs_err e = gs_flow_out_push(out, l);
	if (e)
		gs_flow_events_free(l, b->event_free, b->event_free_arg);
	return e;
}

static gs_err add_heap(gs_flow *f, const builtin *from, gs_flow_trigger_fn fn)
{
	gs_err e = gs_flow_reduce(f, heap_new, heap_add, NULL);
	if (e)
		return e;
	builtin *b = builtin_of(f);
	b->cmp = from->cmp;
	b->arg = from->arg;
	b->n = from->n;
	f->last->reduce_arg = b;
	f->last->acc_free = heap_free;
	f->last->emits_lists = fn == heap_emit_sorted;
	return gs_flow_on_trigger(f, fn, b);
}

/* Whether the current layer can reduce for take_sort: one of our layers
 * with nothing reducing (or merging) yet and one window over the whole
 * input. */
static bool can_take(const gs__flow_layer *l)
{
	return l->kind == GS__L_STAGES && !l->has_reduce && !l->is_join &&
	       !l->is_departition && l->window.kind == GS_FLOW_WINDOW_GLOBAL &&
	       !l->window.every && !l->window.periodic_ms &&
	       !l->window.punctuate;
}

GS_FLOW_API gs_err gs_flow_take_sort(gs_flow *f, size_t n, gs_flow_cmp_fn cmp,
				     void *arg)
{
	gs_err e = gs__flow_usable(f, "gs_flow_take_sort");
	if (e)
		return e;
	if (!cmp || n == 0 || n > SIZE_MAX / 2 / sizeof(void *))
		return gs__flow_fail(f, GS_EINVAL, "gs_flow_take_sort: %s",
				     cmp ? "n must be at least 1 (and fit)"
					 : "the compare function is NULL");
	builtin want = { .cmp = cmp, .arg = arg, .n = n };
	if (can_take(f->last) && f->last->nstages == 1)
		return add_heap(f, &want, heap_emit_sorted);
	/* Each stage keeps its own n best, so only n per stage travel on. */
	if (can_take(f->last) && (e = add_heap(f, &want, heap_pass_on)))
		return e;
	if ((e = gs_flow_departition(f, NULL)))
		return e;
	return add_heap(f, &want, heap_emit_sorted);
}
