// SPDX-License-Identifier: MIT
/* Joins in the four modes, against hand-computed pairs; operations and a
 * reduce after a join, against a sequential join of random sides. */
#include "flow_test.h"

/* Events are key * 100 + id; left ids < 50, right ids >= 50. */
static uint64_t key_of(void *arg, const void *e)
{
	(void)arg;
	return V(e) / 100;
}
static void *pair(void *arg, void *l, void *r)
{
	(void)arg;
	return U(V(l) << 16 | V(r));
}

static void join_run(gs_flow_join_mode mode, const uintptr_t *want, size_t nw)
{
	static const uintptr_t L[] = { 101, 201, 202, 301 };
	static const uintptr_t R[] = { 251, 351, 352, 451 };
	gs_flow *l = ints_flow(L, 4, NULL), *r = ints_flow(R, 4, NULL), *j;
	gs_flow_join spec = { .mode = mode,
			      .left_key = key_of,
			      .right_key = key_of,
			      .join = pair };
	cr_assert_eq(gs_flow_bounded_join(
			     l, r, &spec,
			     &(gs_flow_partition_opts){ .stages = 3 }, &j),
		     GS_OK);
	void **out;
	size_t n;
	collect_ok(j, &out, &n);
	qsort(out, n, sizeof(void *), cmp_u);
	cr_assert_eq(n, nw, "mode %d: %zu pairs, want %zu", mode, n, nw);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), want[i], "mode %d at %zu", mode, i);
	free(out);
	gs_flow_free(j);
	gs_flow_free(l);
	gs_flow_free(r);
}

#define P(l, r) ((uintptr_t)(l) << 16 | (uintptr_t)(r))

Test(flow_join, inner_pairs_equal_keys_only, .timeout = 30)
{
	const uintptr_t want[] = { P(201, 251), P(202, 251), P(301, 351),
				   P(301, 352) };
	join_run(GS_FLOW_JOIN_INNER, want, 4);
}

Test(flow_join, left_outer_keeps_unmatched_left, .timeout = 30)
{
	const uintptr_t want[] = { P(101, 0), P(201, 251), P(202, 251),
				   P(301, 351), P(301, 352) };
	join_run(GS_FLOW_JOIN_LEFT_OUTER, want, 5);
}

Test(flow_join, right_outer_keeps_unmatched_right, .timeout = 30)
{
	const uintptr_t want[] = { P(0, 451), P(201, 251), P(202, 251),
				   P(301, 351), P(301, 352) };
	join_run(GS_FLOW_JOIN_RIGHT_OUTER, want, 5);
}

Test(flow_join, full_outer_keeps_both, .timeout = 30)
{
	const uintptr_t want[] = { P(0, 451),   P(101, 0),   P(201, 251),
				   P(202, 251), P(301, 351), P(301, 352) };
	join_run(GS_FLOW_JOIN_FULL_OUTER, want, 6);
}

static int64_t ts(void *arg, const void *e)
{
	(void)arg;
	return (int64_t)(V(e) % 100); /* the id doubles as time */
}

Test(flow_join, window_join_pairs_within_a_window, .timeout = 30)
{
	/* Windows of 50 ms: left ids < 50 and right ids >= 50 never share a
	 * window, so an inner join is empty and a full one is all single. */
	static const uintptr_t L[] = { 101, 201 };
	static const uintptr_t R[] = { 151, 251 };
	gs_flow *l = ints_flow(L, 2, NULL), *r = ints_flow(R, 2, NULL), *j;
	gs_flow_join spec = { .mode = GS_FLOW_JOIN_FULL_OUTER,
			      .left_key = key_of,
			      .right_key = key_of,
			      .join = pair };
	gs_flow_partition_opts o = {
		.stages = 1, .window = gs_flow_window_fixed(50, ts, NULL)
	};
	cr_assert_eq(gs_flow_window_join(l, r, &spec, &o, &j), GS_OK);
	void **out;
	size_t n;
	collect_ok(j, &out, &n);
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < n; i++)
		cr_assert(V(out[i]) >> 16 == 0 || (V(out[i]) & 0xffff) == 0);
	free(out);
	gs_flow_free(j);
	gs_flow_free(l);
	gs_flow_free(r);
}

/* Random sides: values key * 1000 + id, keys < 40; ids tell the events
 * apart (left ids < 500, right ids >= 500). */
static uint64_t key1000(void *arg, const void *e)
{
	(void)arg;
	return V(e) / 1000;
}
static void *pair_sum(void *arg, void *l, void *r)
{
	(void)arg;
	return U((l ? V(l) : 0) * 100000000 + (r ? V(r) : 0));
}
static void *plus3(void *arg, void *e)
{
	(void)arg;
	return U(V(e) + 3);
}
static bool not_mod4(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 4 != 0;
}

static void random_side(uintptr_t *v, size_t n, uintptr_t id0)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (uintptr_t)(rand() % 40) * 1000 + id0 + i % 500;
}

/* The sequential inner join of l and r through plus3 and not_mod4. */
static size_t sequential_join(const uintptr_t *l, size_t nl, const uintptr_t *r,
			      size_t nr, uintptr_t *w)
{
	size_t k = 0;
	for (size_t i = 0; i < nl; i++)
		for (size_t j = 0; j < nr; j++) {
			if (l[i] / 1000 != r[j] / 1000)
				continue;
			uintptr_t x = l[i] * 100000000 + r[j] + 3;
			if (x % 4)
				w[k++] = x;
		}
	return k;
}

static gs_flow *random_join(const uintptr_t *l, size_t nl, const uintptr_t *r,
			    size_t nr, size_t stages)
{
	gs_flow *a = ints_flow(l, nl, NULL), *b = ints_flow(r, nr, NULL), *j;
	gs_flow_join spec = { .mode = GS_FLOW_JOIN_INNER,
			      .left_key = key1000,
			      .right_key = key1000,
			      .join = pair_sum };
	cr_assert_eq(gs_flow_bounded_join(
			     a, b, &spec,
			     &(gs_flow_partition_opts){ .stages = stages,
							.max_demand = 50 },
			     &j),
		     GS_OK);
	gs_flow_free(a);
	gs_flow_free(b);
	cr_assert_eq(gs_flow_map(j, plus3, NULL), GS_OK, "%s",
		     gs_flow_errmsg(j));
	cr_assert_eq(gs_flow_filter(j, not_mod4, NULL), GS_OK);
	return j;
}

/* Random sides joined, mapped and filtered, then reduced to a sum per
 * stage or collected, against the same done sequentially. */
static void check_random_joins(unsigned seed, bool reduce)
{
	srand(seed);
	for (int round = 0; round < FLOW_TEST_ROUNDS; round++) {
		size_t nl = (size_t)(rand() % 400), nr = (size_t)(rand() % 400);
		uintptr_t *l = malloc((nl + 1) * sizeof(*l)),
			  *r = malloc((nr + 1) * sizeof(*r));
		random_side(l, nl, 0);
		random_side(r, nr, 500);
		size_t stages = 1 + (size_t)round % 3;
		gs_flow *j = random_join(l, nl, r, nr, stages);
		if (reduce)
			cr_assert_eq(gs_flow_reduce(j, NULL, sum_reducer, NULL),
				     GS_OK, "%s", gs_flow_errmsg(j));
		void **out;
		size_t n;
		collect_ok(j, &out, &n);
		uintptr_t *w = malloc((nl * nr + 1) * sizeof(*w));
		size_t k = sequential_join(l, nl, r, nr, w);
		if (reduce) {
			cr_assert_eq(n, stages, "one sum per stage");
			uintptr_t got = 0, want = 0;
			for (size_t i = 0; i < n; i++)
				got += V(out[i]);
			for (size_t i = 0; i < k; i++)
				want += w[i];
			cr_assert_eq(got, want, "round %d", round);
		} else {
			expect_same_values(out, n, w, k, round);
		}
		free(w);
		free(out);
		free(l);
		free(r);
		gs_flow_free(j);
	}
}

Test(flow_join, operations_after_a_join_apply_to_the_pairs, .timeout = 30)
{
	check_random_joins(17, false);
}

Test(flow_join, a_reduce_after_a_join_folds_the_pairs, .timeout = 30)
{
	check_random_joins(19, true);
}

Test(flow_join, repeated_triggers_give_each_pair_once, .timeout = 30)
{
	/* A trigger every 3 events: the pairs come out over many triggers,
	 * the unmatched ones at the end, and together they are the join. */
	static const uintptr_t L[] = { 101, 201, 202, 301, 302, 303, 601 };
	static const uintptr_t R[] = { 251, 351, 352, 451, 252, 353, 551 };
	gs_flow *l = ints_flow(L, 7, NULL), *r = ints_flow(R, 7, NULL), *j;
	gs_flow_join spec = { .mode = GS_FLOW_JOIN_FULL_OUTER,
			      .left_key = key_of,
			      .right_key = key_of,
			      .join = pair };
	gs_flow_partition_opts o = {
		.stages = 2,
		.max_demand = 2,
		.window = gs_flow_window_trigger_every(gs_flow_window_global(),
						       3),
	};
	cr_assert_eq(gs_flow_window_join(l, r, &spec, &o, &j), GS_OK);
	void **out;
	size_t n;
	collect_ok(j, &out, &n);
	qsort(out, n, sizeof(void *), cmp_u);
	const uintptr_t want[] = {
		P(0, 451),   P(0, 551),   P(101, 0),   P(201, 251), P(201, 252),
		P(202, 251), P(202, 252), P(301, 351), P(301, 352), P(301, 353),
		P(302, 351), P(302, 352), P(302, 353), P(303, 351), P(303, 352),
		P(303, 353), P(601, 0),
	};
	cr_assert_eq(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), want[i], "at %zu", i);
	free(out);
	gs_flow_free(j);
	gs_flow_free(l);
	gs_flow_free(r);
}
