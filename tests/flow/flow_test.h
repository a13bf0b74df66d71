// SPDX-License-Identifier: MIT
/* Helpers shared by the Flow suites. */
#ifndef FLOW_TEST_H
#define FLOW_TEST_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <genstage/flow.h>

#define U(x) ((void *)(uintptr_t)(x))
#define V(p) ((uintptr_t)(p))

static inline int cmp_u(const void *a, const void *b)
{
	uintptr_t x = V(*(void *const *)a), y = V(*(void *const *)b);
	return x < y ? -1 : x > y;
}

static inline gs_flow *ints_flow(const uintptr_t *v, size_t n,
				 const gs_flow_opts *o)
{
	void **ev = malloc((n ? n : 1) * sizeof(void *));
	for (size_t i = 0; i < n; i++)
		ev[i] = U(v[i]);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_array(ev, n, o, &f), GS_OK);
	free(ev);
	return f;
}

static inline gs_flow *range(uintptr_t lo, uintptr_t hi)
{
	size_t n = hi >= lo ? hi - lo + 1 : 0;
	uintptr_t *v = malloc((n ? n : 1) * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = lo + i;
	gs_flow *f = ints_flow(v, n, NULL);
	free(v);
	return f;
}

static inline int sum_reducer(void *arg, void **acc, void *e)
{
	(void)arg;
	*acc = U(V(*acc) + V(e));
	return 0;
}

static inline void collect_ok(gs_flow *f, void ***out, size_t *n)
{
	cr_assert_eq(gs_flow_collect(f, out, n), GS_OK, "%s",
		     gs_flow_errmsg(f));
}

/* A flow fed by a push producer, on a new pipeline: sets *p and *push. */
static inline gs_flow *pushed_flow(gs_pipeline **p, gs_stage **push)
{
	cr_assert_eq(gs_pipeline_new(NULL, p), GS_OK);
	cr_assert_eq(gs_push_producer(*p, NULL, push), GS_OK);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_stages(*p, push, 1, NULL, &f), GS_OK);
	return f;
}

/* Collects f, checks that its results are want[0..nw) in order, and frees
 * them and f. */
static inline void expect_results(gs_flow *f, const uintptr_t *want, size_t nw)
{
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, nw, "got %zu results, want %zu", n, nw);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), want[i], "at %zu: %zu != %zu", i,
			     (size_t)V(out[i]), (size_t)want[i]);
	free(out);
	gs_flow_free(f);
}

/* Collects f, checks that it gave `n` results adding up to `sum`, and
 * frees them and f. */
static inline void expect_sum(gs_flow *f, size_t n, uintptr_t sum)
{
	void **out;
	size_t got;
	collect_ok(f, &out, &got);
	cr_assert_eq(got, n, "%zu results, want %zu", got, n);
	uintptr_t total = 0;
	for (size_t i = 0; i < got; i++)
		total += V(out[i]);
	cr_assert_eq(total, sum);
	free(out);
	gs_flow_free(f);
}

/* Heap events (boxes holding a uintptr_t) and heap accumulators, counted
 * while alive so that a test sees any one leaked. */
typedef struct live {
	atomic_long boxes, accs;
} live;

static inline live *alive(void)
{
	static live l;
	return &l;
}

static inline void *box(uintptr_t v)
{
	uintptr_t *b = malloc(sizeof(*b));
	cr_assert_not_null(b);
	*b = v;
	atomic_fetch_add(&alive()->boxes, 1);
	return b;
}

/* event_free for boxes. */
static inline void unbox_free(void *e, void *arg)
{
	(void)arg;
	free(e);
	atomic_fetch_sub(&alive()->boxes, 1);
}

/* An accumulator holding a zeroed integer (uintptr_t or size_t). */
static inline void *acc_new(void *arg)
{
	(void)arg;
	atomic_fetch_add(&alive()->accs, 1);
	return calloc(1, sizeof(uintmax_t));
}

static inline void acc_free(void *arg, void *acc)
{
	(void)arg;
	free(acc);
	atomic_fetch_sub(&alive()->accs, 1);
}

#endif
