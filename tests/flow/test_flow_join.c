// SPDX-License-Identifier: MIT
/* Joins in the four modes, against hand-computed pairs. */
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
