// SPDX-License-Identifier: MIT
/*
 * The topic table: each topic published is interned once, with its
 * counters and its route (the subscriptions it matches), so that a publish
 * costs one hash lookup, not a pattern test per subscription. Routes carry
 * the generation they were computed at; subscribing and unsubscribing move
 * the generation, and a stale route is recomputed on its next lookup. The
 * table holds at most `max` topics: beyond, topics share one entry whose
 * route is computed on each lookup (correct, only slower), so a program
 * that makes a topic per user cannot grow the table without bound.
 */
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"

/* A topic's counters are atomics, for valgrind's race detectors too. */
static void mark_counters(gs__bus_topic *t)
{
	GS__ATOMIC(t->published);
	GS__ATOMIC(t->deliveries);
	GS__ATOMIC(t->unrouted);
	GS__ATOMIC(t->handled);
	GS__ATOMIC(t->dropped);
	GS__ATOMIC(t->failed);
	GS__ATOMIC(t->retried);
	GS__ATOMIC(t->completed);
	(void)t;
}

gs_err gs__bus_routes_init(gs__bus_routes *r, size_t max)
{
	*r = (gs__bus_routes){ .max = max, .gen = 1 };
	mark_counters(&r->other);
	size_t cap = 16;
	while (cap < 2 * max && cap < ((size_t)1 << 30))
		cap *= 2;
	r->slots = calloc(cap, sizeof *r->slots);
	if (!r->slots)
		return GS_ENOMEM; /* the bus's teardown finishes it again */
	r->cap = cap;
	/* At most half full: a larger max (the table stops growing at 2^30
	 * slots) would fill it, and a probe for a new topic would never
	 * end. The topics beyond share `other`. */
	if (r->max > cap / 2)
		r->max = cap / 2;
	return GS_OK;
}

static void topic_fini(gs__bus_topic *t)
{
	free(t->name);
	free(t->subs);
}

void gs__bus_routes_fini(gs__bus_routes *r)
{
	for (size_t i = 0; r->slots && i < r->cap; i++)
		if (r->slots[i]) {
			topic_fini(r->slots[i]);
			free(r->slots[i]);
		}
	free(r->slots);
	topic_fini(&r->other);
}

static gs__bus_topic **probe(gs__bus_routes *r, const char *topic, size_t len,
			     uint64_t h)
{
	size_t i = (size_t)h & (r->cap - 1);
	while (r->slots[i]) {
		gs__bus_topic *t = r->slots[i];
		if (t->hash == h && t->len == len &&
		    !memcmp(t->name, topic, len))
			break;
		i = (i + 1) & (r->cap - 1);
	}
	return &r->slots[i];
}

/* Recomputes t's route from the live subscriptions. */
static bool compute(gs_bus *bus, gs__bus_topic *t, const char *topic,
		    size_t len)
{
	if (t->cap_subs < bus->n_subs) {
		/* Whole lines: read on every publish, the array must not
		 * share a line with memory other threads write. */
		size_t per_line = GS__BUS_LINE / sizeof(gs_bus_sub *);
		size_t cap = (bus->n_subs + per_line - 1) / per_line * per_line;
		gs_bus_sub **s = aligned_alloc(GS__BUS_LINE, cap * sizeof *s);
		if (!s)
			return false;
		free(t->subs);
		t->subs = s;
		t->cap_subs = cap;
	}
	t->n_subs = 0;
	for (size_t i = 0; i < bus->n_subs; i++)
		if (gs__bus_matcher_test(&bus->subs[i]->match, topic, len))
			t->subs[t->n_subs++] = bus->subs[i];
	t->gen = bus->routes.gen;
	return true;
}

static gs__bus_topic *intern(gs__bus_routes *r, gs__bus_topic **slot,
			     const char *topic, size_t len, uint64_t h)
{
	size_t size = (sizeof(gs__bus_topic) + GS__BUS_LINE - 1) &
		      ~(size_t)(GS__BUS_LINE - 1);
	gs__bus_topic *t = aligned_alloc(GS__BUS_LINE, size);
	char *name = malloc(len + 1);
	if (!t || !name) {
		free(t);
		free(name);
		return NULL;
	}
	memset(t, 0, sizeof *t);
	mark_counters(t);
	memcpy(name, topic, len);
	name[len] = '\0';
	t->name = name;
	t->len = len;
	t->hash = h;
	*slot = t;
	r->n++;
	return t;
}

gs__bus_topic *gs__bus_route(gs_bus *bus, const char *topic, size_t len,
			     uint64_t h, gs_err *err, char *why, size_t why_len)
{
	gs__bus_routes *r = &bus->routes;
	gs__bus_topic **slot = probe(r, topic, len, h);
	gs__bus_topic *t = *slot;
	if (!t) {
		/* Only a topic not seen yet needs checking: those in the
		 * table passed once. */
		size_t checked;
		*err = gs__bus_topic_check(topic, &checked, why, why_len);
		if (*err)
			return NULL;
		t = r->n < r->max ? intern(r, slot, topic, len, h) : &r->other;
	}
	if (t && (t == &r->other || t->gen != r->gen) &&
	    !compute(bus, t, topic, len))
		t = NULL;
	*err = t ? GS_OK : GS_ENOMEM;
	return t;
}

void gs__bus_topic_forget(gs_bus *bus, gs__bus_topic *t)
{
	gs__bus_routes *r = &bus->routes;
	size_t mask = r->cap - 1;
	size_t i = (size_t)t->hash & mask;
	while (r->slots[i] != t)
		i = (i + 1) & mask;
	r->slots[i] = NULL;
	/* Linear probing: an entry after the hole whose home slot is not
	 * between the hole and itself moves into the hole, so that every
	 * lookup still finds it. */
	for (size_t j = (i + 1) & mask; r->slots[j]; j = (j + 1) & mask) {
		size_t home = (size_t)r->slots[j]->hash & mask;
		bool between = i <= j ? home > i && home <= j
				      : home > i || home <= j;
		if (!between) {
			r->slots[i] = r->slots[j];
			r->slots[j] = NULL;
			i = j;
		}
	}
	r->n--;
	topic_fini(t);
	free(t);
}

gs__bus_topic *gs__bus_topic_find(gs_bus *bus, const char *topic, size_t len)
{
	return *probe(&bus->routes, topic, len, gs__bus_topic_hash(topic, len));
}
