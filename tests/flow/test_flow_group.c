// SPDX-License-Identifier: MIT
/* group_by, group_by_key and take_sort: the reductions the library writes
 * for the user, checked against what a sequential loop computes. */
#include <stdatomic.h>

#include "flow_test.h"

static uint64_t mod10(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 10;
}

static void *doubled(void *arg, void *e)
{
	(void)arg;
	return U(V(e) * 2);
}

static void free_groups(void **out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gs_flow_groups_free(out[i], NULL, NULL);
	free(out);
}

Test(flow_group, group_by_gathers_each_key_in_one_group_in_arrival_order,
     .timeout = 30)
{
	gs_flow *f = range(1, 1000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 3,
							.key = mod10 });
	cr_assert_eq(gs_flow_group_by(f, mod10, NULL), GS_OK);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 3, "one gs_flow_groups per stage");
	bool seen[10] = { false };
	for (size_t i = 0; i < n; i++) {
		gs_flow_groups *g = out[i];
		for (size_t k = 0; k < gs_flow_groups_len(g); k++) {
			uint64_t key = gs_flow_groups_key(g, k);
			cr_assert_lt(key, 10);
			cr_assert(!seen[key], "key %d in two groups", (int)key);
			seen[key] = true;
			gs_flow_events *l = gs_flow_groups_at(g, k);
			cr_assert_eq(gs_flow_groups_find(g, key), l);
			cr_assert_eq(gs_flow_events_len(l), 100);
			for (size_t j = 0; j < 100; j++)
				cr_assert_eq(V(gs_flow_events_at(l, j)),
					     key + 10 * j +
						     (key == 0 ? 10 : 0));
		}
		cr_assert_null(gs_flow_groups_at(g, gs_flow_groups_len(g)));
		cr_assert_null(gs_flow_groups_find(g, 99));
	}
	for (int k = 0; k < 10; k++)
		cr_assert(seen[k], "key %d missing", k);
	free_groups(out, n);
	gs_flow_free(f);
}

Test(flow_group, group_by_key_keeps_the_values, .timeout = 30)
{
	gs_flow *f = range(0, 99);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2,
							.key = mod10 });
	cr_assert_eq(gs_flow_group_by_key(f, mod10, doubled, NULL), GS_OK);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	size_t groups = 0;
	for (size_t i = 0; i < n; i++) {
		gs_flow_groups *g = out[i];
		groups += gs_flow_groups_len(g);
		for (size_t k = 0; k < gs_flow_groups_len(g); k++) {
			uint64_t key = gs_flow_groups_key(g, k);
			gs_flow_events *l = gs_flow_groups_at(g, k);
			cr_assert_eq(gs_flow_events_len(l), 10);
			for (size_t j = 0; j < 10; j++)
				cr_assert_eq(V(gs_flow_events_at(l, j)),
					     2 * (key + 10 * j));
		}
	}
	cr_assert_eq(groups, 10);
	free_groups(out, n);
	gs_flow_free(f);
}

Test(flow_group, group_by_emits_one_set_of_groups_per_window, .timeout = 30)
{
	gs_flow *f = range(0, 999);
	gs_flow_partition(f, &(gs_flow_partition_opts){
				     .stages = 1,
				     .window = gs_flow_window_count(300) });
	gs_flow_group_by(f, mod10, NULL);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < n; i++) {
		gs_flow_groups *g = out[i];
		cr_assert_eq(gs_flow_groups_len(g), 10);
		size_t total = 0;
		for (size_t k = 0; k < 10; k++)
			total += gs_flow_events_len(gs_flow_groups_at(g, k));
		cr_assert_eq(total, i < 3 ? 300 : 100, "window %zu", i);
	}
	free_groups(out, n);
	gs_flow_free(f);
}

Test(flow_group, bad_group_by_and_take_sort_are_refused, .timeout = 30)
{
	gs_flow *f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	cr_assert_eq(gs_flow_group_by(f, mod10, NULL), GS_EINVAL,
		     "one reduce per layer");
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	cr_assert_eq(gs_flow_group_by(f, NULL, NULL), GS_EINVAL);
	cr_assert_str_eq(gs_flow_errmsg(f),
			 "gs_flow_group_by: the key function is NULL");
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	cr_assert_eq(gs_flow_group_by_key(f, mod10, NULL, NULL), GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_group_by(f, mod10, NULL);
	cr_assert_eq(gs_flow_emit(f, GS_FLOW_EMIT_EVENTS), GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_group_by(f, mod10, NULL);
	cr_assert_eq(gs_flow_acc_free(f, NULL), GS_EINVAL,
		     "the groups are freed by the library");
	gs_flow_free(f);

	f = range(1, 10);
	cr_assert_eq(gs_flow_take_sort(f, 0, NULL, NULL), GS_EINVAL);
	cr_assert_str_eq(gs_flow_errmsg(f), "gs_flow_take_sort: the compare "
					    "function is NULL");
	gs_flow_free(f);
}

/* take_sort over malloc'ed events: the ones that lose their place must
 * reach event_free, and nothing may leak (ASan checks). */
static atomic_size_t freed;

static void free_boxed(void *e, void *arg)
{
	(void)arg;
	atomic_fetch_add(&freed, 1);
	free(e);
}

static int by_value(void *arg, const void *a, const void *b)
{
	(void)arg;
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t boxed_key(void *arg, const void *e)
{
	(void)arg;
	return *(const uint64_t *)e;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Runs take_sort(n) over `count` random boxed values, after a partition
 * of `stages` stages (none: straight from the source), and checks the
 * list against the sorted input. */
static void check_take_sort(size_t count, size_t n, size_t stages)
{
	atomic_store(&freed, 0);
	uint64_t *want = malloc((count ? count : 1) * sizeof(*want));
	void **ev = malloc((count ? count : 1) * sizeof(*ev));
	uint64_t x = 12345 + count;
	for (size_t i = 0; i < count; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		want[i] = (x >> 33) % 5000; /* with ties */
		uint64_t *box = malloc(sizeof(*box));
		*box = want[i];
		ev[i] = box;
	}
	qsort(want, count, sizeof(*want), cmp_u64);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_array(
			     ev, count,
			     &(gs_flow_opts){ .event_free = free_boxed }, &f),
		     GS_OK);
	free(ev);
	if (stages)
		gs_flow_partition(f,
				  &(gs_flow_partition_opts){
					  .stages = stages, .key = boxed_key });
	cr_assert_eq(gs_flow_take_sort(f, n, by_value, NULL), GS_OK);
	void **out;
	size_t nout;
	collect_ok(f, &out, &nout);
	cr_assert_eq(nout, 1, "one list");
	gs_flow_events *l = out[0];
	size_t kept = count < n ? count : n;
	cr_assert_eq(gs_flow_events_len(l), kept);
	for (size_t i = 0; i < kept; i++)
		cr_assert_eq(*(uint64_t *)gs_flow_events_at(l, i), want[i],
			     "item %zu", i);
	cr_assert_eq(atomic_load(&freed), count - kept);
	gs_flow_events_free(l, free_boxed, NULL);
	free(out);
	free(want);
	gs_flow_free(f);
}

Test(flow_group, take_sort_keeps_the_n_first_of_several_partitions,
     .timeout = 30)
{
	check_take_sort(20000, 25, 3);
}

Test(flow_group, take_sort_straight_from_a_source, .timeout = 30)
{
	check_take_sort(5000, 100, 0);
}

Test(flow_group, take_sort_of_one_stage_and_of_fewer_events_than_n,
     .timeout = 30)
{
	check_take_sort(40, 1000, 1);
}

Test(flow_group, take_sort_of_nothing_is_one_empty_list, .timeout = 30)
{
	check_take_sort(0, 5, 2);
}
