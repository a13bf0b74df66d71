// SPDX-License-Identifier: MIT
/* gs_flow_departition_merge (Flow's departition/5): per-window merges of
 * what every stage of a reducing layer emits, against hand-computed sums. */
#include <stdatomic.h>

#include "flow_test.h"

static int add_value(void *arg, void **acc, void *item)
{
	(void)arg;
	*acc = U(V(*acc) + V(item));
	return 0;
}

static const gs_flow_departition_fns summing = { .merge = add_value };

Test(flow_departition, merges_the_states_of_every_stage, .timeout = 30)
{
	gs_flow *f = range(1, 10000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 3 });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	cr_assert_eq(gs_flow_departition_merge(f, &summing, NULL), GS_OK);
	expect_sum(f, 1, 50005000); /* one window, given once */
}

/* As Flow's docs: each stage emits its partial sum every 100 events and
 * starts again, and the departition merges every one of them. */
static int emit_and_reset(void *arg, void **acc, const gs_flow_trigger *t,
			  gs_flow_out *out)
{
	(void)arg;
	(void)t;
	if (V(*acc) && gs_flow_out_push(out, *acc))
		return GS_ENOMEM;
	*acc = NULL;
	return 0;
}

Test(flow_departition, merges_what_every_trigger_emits, .timeout = 30)
{
	gs_flow *f = range(1, 10000);
	gs_flow_partition(f, &(gs_flow_partition_opts){
				     .stages = 2,
				     .window = gs_flow_window_trigger_every(
					     gs_flow_window_global(), 100) });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_on_trigger(f, emit_and_reset, NULL);
	gs_flow_departition_merge(f, &summing, NULL);
	expect_sum(f, 1, 50005000);
}

static int64_t value_ms(void *arg, const void *e)
{
	(void)arg;
	return (int64_t)V(e);
}

/* Tags a window's sum with its start: start * 10^6 + sum. */
static void *tag_window(void *arg, void *acc, int64_t window_id)
{
	(void)arg;
	return U((uintptr_t)window_id * 1000000 + V(acc));
}

static uintptr_t window_sum(uintptr_t start)
{
	uintptr_t s = 0;
	for (uintptr_t v = start; v < start + 100; v++)
		s += v;
	return s;
}

/* 0..999 in fixed windows of 100 over `stages` stages (routed by `hash`
 * if not NULL), each window's sum merged and tagged with its start. */
static gs_flow *merged_fixed_windows(size_t stages, gs_hash_fn hash)
{
	gs_flow *f = range(0, 999);
	gs_flow_partition(
		f, &(gs_flow_partition_opts){ .stages = stages,
					      .hash = hash,
					      .window = gs_flow_window_fixed(
						      100, value_ms, NULL) });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_departition_merge(
		f,
		&(gs_flow_departition_fns){ .merge = add_value,
					    .done = tag_window },
		NULL);
	return f;
}

Test(flow_departition, merges_each_fixed_window_across_stages, .timeout = 30)
{
	gs_flow *f = merged_fixed_windows(4, NULL);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 10);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), i * 100 * 1000000 + window_sum(i * 100),
			     "window %zu, in order", i);
	free(out);
	gs_flow_free(f);
}

static int descending(void *arg, const void *a, const void *b)
{
	(void)arg;
	return V(a) > V(b) ? -1 : V(a) < V(b);
}

Test(flow_departition, take_sort_ranks_the_merged_windows, .timeout = 30)
{
	gs_flow *f = merged_fixed_windows(4, NULL);
	cr_assert_eq(gs_flow_take_sort(f, 3, descending, NULL), GS_OK, "%s",
		     gs_flow_errmsg(f));
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 1);
	gs_flow_events *top = out[0];
	cr_assert_eq(gs_flow_events_len(top), 3);
	for (size_t i = 0; i < 3; i++) {
		uintptr_t start = 900 - 100 * i;
		cr_assert_eq(V(gs_flow_events_at(top, i)),
			     start * 1000000 + window_sum(start));
	}
	gs_flow_events_free(top, NULL, NULL);
	free(out);
	gs_flow_free(f);
}

/* Stage 1 only sees times from 500 on, so it never closes windows 0..4:
 * they are given at the end of input. */
static size_t split_at_500(void *arg, const void *e)
{
	(void)arg;
	return V(e) < 500 ? 0 : V(e) % 2;
}

Test(flow_departition, windows_a_stage_never_closed_come_at_the_end,
     .timeout = 30)
{
	gs_flow *f = merged_fixed_windows(2, split_at_500);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 10);
	for (size_t i = 0; i < n; i++) {
		uintptr_t start = V(out[i]) / 1000000 / 100 * 100;
		cr_assert_eq(V(out[i]) % 1000000, window_sum(start));
		/* The closed windows 5..9 come before the flushed 0..4. */
		cr_assert_eq(start, i < 5 ? 500 + 100 * i : 100 * (i - 5),
			     "result %zu is window %zu", i, (size_t)start);
	}
	free(out);
	gs_flow_free(f);
}

static void *times10(void *arg, void *e)
{
	(void)arg;
	return U(V(e) * 10);
}

Test(flow_departition, operations_after_it_apply_to_its_results, .timeout = 30)
{
	gs_flow *f = range(1, 100);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_departition_merge(f, &summing, NULL);
	cr_assert_eq(gs_flow_map(f, times10, NULL), GS_OK);
	expect_sum(f, 1, 50500);
}

Test(flow_departition, bad_departitions_are_refused, .timeout = 30)
{
	gs_flow *f = range(1, 10);
	gs_flow_partition(f, NULL);
	cr_assert_eq(gs_flow_departition_merge(f, &summing, NULL), GS_EINVAL);
	cr_assert_str_eq(gs_flow_errmsg(f),
			 "gs_flow_departition_merge must follow a reduce, a "
			 "group_by or a join: it merges what their triggers "
			 "emit");
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	cr_assert_eq(gs_flow_departition_merge(
			     f, &(gs_flow_departition_fns){ 0 }, NULL),
		     GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	cr_assert_eq(gs_flow_departition_merge(
			     f, &summing,
			     &(gs_flow_partition_opts){
				     .window = gs_flow_window_count(5) }),
		     GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_departition_merge(f, &summing, NULL);
	cr_assert_eq(gs_flow_reduce(f, NULL, sum_reducer, NULL), GS_EINVAL,
		     "the merge is this layer's reduce");
	gs_flow_free(f);
}

/* Boxed events grouped per stage; the merge counts the groups' events and
 * frees them. A merge error stops the flow and nothing leaks. */
static uint64_t boxed_mod3(void *arg, const void *e)
{
	(void)arg;
	return *(const uintptr_t *)e % 3;
}

static int count_groups(void *arg, void **acc, void *item)
{
	gs_flow_groups *g = item;
	size_t events = 0;
	for (size_t i = 0; i < gs_flow_groups_len(g); i++)
		events += gs_flow_events_len(gs_flow_groups_at(g, i));
	gs_flow_groups_free(g, unbox, NULL);
	*(size_t *)*acc += events;
	return arg && *(size_t *)*acc > 0 ? GS_EUSER + 3 : 0;
}

static void run_boxed(bool fail)
{
	atomic_store(&live_boxes, 0);
	atomic_store(&live_accs, 0);
	void *ev[3000];
	for (size_t i = 0; i < 3000; i++)
		ev[i] = box(i);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_array(ev, 3000,
					&(gs_flow_opts){ .event_free = unbox },
					&f),
		     GS_OK);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 3,
							.key = boxed_mod3 });
	gs_flow_group_by(f, boxed_mod3, NULL);
	gs_flow_departition_merge(
		f,
		&(gs_flow_departition_fns){ .acc_new = acc_new,
					    .merge = count_groups,
					    .acc_free = acc_free,
					    .arg = fail ? U(1) : NULL },
		NULL);
	void **out;
	size_t n;
	if (fail) {
		cr_assert_eq(gs_flow_collect(f, &out, &n), GS_EUSER + 3);
	} else {
		collect_ok(f, &out, &n);
		cr_assert_eq(n, 1);
		cr_assert_eq(*(size_t *)out[0], 3000);
		acc_free(NULL, out[0]);
		free(out);
	}
	gs_flow_free(f);
	cr_assert_eq(atomic_load(&live_boxes), 0, "%ld events",
		     atomic_load(&live_boxes));
	cr_assert_eq(atomic_load(&live_accs), 0, "%ld accs",
		     atomic_load(&live_accs));
}

Test(flow_departition, merges_groups_and_frees_everything, .timeout = 30)
{
	run_boxed(false);
}

Test(flow_departition, a_merge_error_stops_the_flow_without_leaks,
     .timeout = 30)
{
	run_boxed(true);
}
