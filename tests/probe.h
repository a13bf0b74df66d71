// SPDX-License-Identifier: MIT
/* Test helpers: a consumer that records what it receives, a counting
 * generator, a counting destructor and a bounded poll. */
#ifndef GS_TEST_PROBE_H
#define GS_TEST_PROBE_H

#include <genstage/genstage.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* Records every value it receives; `count` may be read while running. */
typedef struct probe {
	uintptr_t *vals; /* own thread; read after the stage finished */
	size_t n, cap;
	atomic_size_t count;
} probe;

static inline int probe_events(void *state, gs_stage *s, gs_sub *from,
			       void **events, size_t n)
{
	(void)s;
	(void)from;
	probe *p = state;
	if (p->n + n > p->cap) {
		size_t cap = p->cap ? p->cap : 1024;
		while (cap < p->n + n)
			cap *= 2;
		uintptr_t *v = realloc(p->vals, cap * sizeof *v);
		if (!v)
			return GS_ENOMEM;
		p->vals = v;
		p->cap = cap;
	}
	for (size_t i = 0; i < n; i++)
		p->vals[p->n++] = (uintptr_t)events[i];
	atomic_fetch_add(&p->count, n);
	return GS_OK;
}

static inline gs_stage *probe_new(gs_pipeline *pl, probe *p)
{
	static const gs_stage_ops ops = { .handle_events = probe_events };
	gs_stage *s = NULL;
	return gs_stage_new(pl, GS_CONSUMER, &ops, p, NULL, &s) ? NULL : s;
}

static inline void probe_free(probe *p)
{
	free(p->vals);
}

/* Values next, next+1, ... up to end (exclusive; 0 for no end). */
typedef struct counter {
	uintptr_t next, end;
	atomic_size_t produced;
} counter;

static inline long counter_gen(void *arg, void **out, size_t max)
{
	counter *c = arg;
	size_t k = 0;
	while (k < max && (!c->end || c->next < c->end))
		out[k++] = (void *)c->next++;
	atomic_fetch_add(&c->produced, k);
	return (long)k;
}

static inline void count_free(void *event, void *arg)
{
	(void)event;
	atomic_fetch_add((atomic_size_t *)arg, 1);
}

/* Polls until *c reaches target or ms pass; true if it did. */
static inline bool wait_for(atomic_size_t *c, size_t target, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (atomic_load(c) >= target)
			return true;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	return atomic_load(c) >= target;
}

static inline void sleep_ms(int ms)
{
	nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000L },
		  NULL);
}

#endif
