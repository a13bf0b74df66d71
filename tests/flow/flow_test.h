// SPDX-License-Identifier: MIT
/* Helpers shared by the Flow suites. */
#ifndef FLOW_TEST_H
#define FLOW_TEST_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <genstage/flow.h>

/* Rounds of the randomized tests (each a new random input). */
#ifndef FLOW_TEST_ROUNDS
#define FLOW_TEST_ROUNDS 5
#endif

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

/* lo..hi; the operations that follow run in `o->stages` stages. */
static inline gs_flow *range_opts(uintptr_t lo, uintptr_t hi,
				  const gs_flow_opts *o)
{
	size_t n = hi >= lo ? hi - lo + 1 : 0;
	uintptr_t *v = malloc((n ? n : 1) * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = lo + i;
	gs_flow *f = ints_flow(v, n, o);
	free(v);
	return f;
}

static inline gs_flow *range(uintptr_t lo, uintptr_t hi)
{
	return range_opts(lo, hi, NULL);
}

/* lo..hi with one stage after the source, which keeps the order. */
static inline gs_flow *range1(uintptr_t lo, uintptr_t hi)
{
	return range_opts(lo, hi, &(gs_flow_opts){ .stages = 1 });
}

static inline int sum_reducer(void *arg, void **acc, void *e)
{
	(void)arg;
	*acc = U(V(*acc) + V(e));
	return 0;
}

/* n random values below `below` (n + 1 allocated, so n may be 0). */
static inline uintptr_t *random_ints(size_t n, uintptr_t below)
{
	uintptr_t *v = malloc((n + 1) * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = (uintptr_t)rand() % below;
	return v;
}

/* out[0..n) holds the values want[0..k) in some order (both are sorted
 * here). */
static inline void expect_same_values(void **out, size_t n, uintptr_t *want,
				      size_t k, int round)
{
	cr_assert_eq(n, k, "round %d: %zu results, want %zu", round, n, k);
	qsort(out, n, sizeof(void *), cmp_u);
	qsort(want, k, sizeof(*want), cmp_u);
	for (size_t i = 0; i < k; i++)
		cr_assert_eq(V(out[i]), want[i], "round %d at %zu", round, i);
}

/* Boxed events, counted so that leaks and double frees show. */
static atomic_long live_boxes;
static inline void *box(uintptr_t v)
{
	uintptr_t *b = malloc(sizeof(*b));
	*b = v;
	atomic_fetch_add(&live_boxes, 1);
	return b;
}
static inline void unbox(void *e, void *arg)
{
	(void)arg;
	free(e);
	atomic_fetch_sub(&live_boxes, 1);
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

/* Heap accumulators holding a zeroed integer (uintptr_t or size_t),
 * counted while alive as live_boxes counts boxes. */
static atomic_long live_accs;

static inline void *acc_new(void *arg)
{
	(void)arg;
	atomic_fetch_add(&live_accs, 1);
	return calloc(1, sizeof(uintmax_t));
}

static inline void acc_free(void *arg, void *acc)
{
	(void)arg;
	free(acc);
	atomic_fetch_sub(&live_accs, 1);
}

#endif
