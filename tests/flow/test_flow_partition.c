// SPDX-License-Identifier: MIT
/* Partitions, shuffles, merges and departitions: routing by key, reduce
 * per partition, and results equal to a sequential computation. */
#include <stdatomic.h>
#include <time.h>

#include "flow_test.h"

static uint64_t mod50(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 50;
}

static void *list_new(void *arg)
{
	(void)arg;
	return gs_flow_events_new();
}
static int list_push(void *arg, void **acc, void *e)
{
	(void)arg;
	return gs_flow_events_push(*acc, e);
}
static void list_free(void *arg, void *acc)
{
	(void)arg;
	gs_flow_events_free(acc, NULL, NULL);
}
/* Emits partition * 1000 + key for each event of the partition. */
static int tag_partition(void *arg, void **acc, const gs_flow_trigger *t,
			 gs_flow_out *out)
{
	(void)arg;
	gs_flow_events *l = *acc;
	for (size_t i = 0; i < gs_flow_events_len(l); i++)
		if (gs_flow_out_push(out, U(t->partition * 1000 +
					    V(gs_flow_events_at(l, i)) % 50)))
			return GS_ENOMEM;
	cr_assert_eq(t->partitions, 4);
	return 0;
}

Test(flow_partition, each_key_always_lands_in_one_partition, .timeout = 30)
{
	gs_flow *f = range(1, 10000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 4,
							.key = mod50 });
	gs_flow_reduce(f, list_new, list_push, NULL);
	gs_flow_acc_free(f, list_free);
	gs_flow_on_trigger(f, tag_partition, NULL);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 10000);
	int where[50];
	for (int k = 0; k < 50; k++)
		where[k] = -1;
	for (size_t i = 0; i < n; i++) {
		int part = (int)(V(out[i]) / 1000),
		    key = (int)(V(out[i]) % 1000);
		cr_assert(where[key] == -1 || where[key] == part,
			  "key %d in partitions %d and %d", key, where[key],
			  part);
		where[key] = part;
	}
	free(out);
	gs_flow_free(f);
}

static void *times3(void *arg, void *e)
{
	(void)arg;
	return U(V(e) * 3);
}
static bool is_odd(void *arg, const void *e)
{
	(void)arg;
	return V(e) & 1;
}
static uint64_t mod97(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 97;
}

Test(flow_partition, random_input_matches_a_sequential_computation,
     .timeout = 30)
{
	srand(7);
	for (int round = 0; round < 5; round++) {
		size_t n = (size_t)(rand() % 20000);
		uintptr_t *v = malloc((n + 1) * sizeof(*v));
		for (size_t i = 0; i < n; i++)
			v[i] = (uintptr_t)(rand() % 100000);
		gs_flow *f = ints_flow(v, n, NULL);
		gs_flow_map(f, times3, NULL);
		gs_flow_filter(f, is_odd, NULL);
		gs_flow_partition(f, &(gs_flow_partition_opts){
					     .stages = (size_t)(1 + round % 3),
					     .key = mod97,
					     .max_demand = 64 });
		gs_flow_reduce(f, list_new, list_push, NULL);
		gs_flow_acc_free(f, list_free);
		gs_flow_emit(f, GS_FLOW_EMIT_EVENTS);
		void **out;
		size_t no;
		collect_ok(f, &out, &no);
		/* Sequentially. */
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if ((v[i] * 3) & 1)
				v[k++] = v[i] * 3;
		cr_assert_eq(no, k);
		qsort(out, no, sizeof(void *), cmp_u);
		void **w = malloc((k + 1) * sizeof(void *));
		for (size_t i = 0; i < k; i++)
			w[i] = U(v[i]);
		qsort(w, k, sizeof(void *), cmp_u);
		for (size_t i = 0; i < k; i++)
			cr_assert_eq(out[i], w[i]);
		free(w);
		free(out);
		free(v);
		gs_flow_free(f);
	}
}

Test(flow_partition, merge_feeds_one_layer_from_several_flows, .timeout = 30)
{
	gs_flow *a = range(1, 1000), *b = range(1001, 3000);
	gs_flow_map(a, times3, NULL);
	gs_flow *flows[] = { a, b }, *m;
	cr_assert_eq(gs_flow_merge(flows, 2,
				   &(gs_flow_partition_opts){ .stages = 2 },
				   &m),
		     GS_OK);
	cr_assert_eq(gs_flow_run(a), GS_ESTATE, "a merged flow is used up");
	gs_flow_reduce(m, NULL, sum_reducer, NULL);
	uintptr_t want = 3 * 500500;
	for (uintptr_t i = 1001; i <= 3000; i++)
		want += i;
	expect_sum(m, 2, want);
	gs_flow_free(a);
	gs_flow_free(b);
}

Test(flow_partition, departition_reduces_the_partition_states, .timeout = 30)
{
	gs_flow *f = range(1, 10000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 3 });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_departition(f, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	expect_sum(f, 1, 50005000);
}

static size_t to_discard_evens(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 2 ? 0 : GS_DISCARD;
}

Test(flow_partition, hash_may_discard_events, .timeout = 30)
{
	gs_flow *f = range(1, 100);
	gs_flow_partition(f, &(gs_flow_partition_opts){
				     .stages = 2, .hash = to_discard_evens });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	expect_sum(f, 2, 2500);
}

/* uniq_by keeps the first of each key per stage, as Flow: partitioning by
 * the same key first makes it unique over the whole flow, and the first
 * event of each key is the one kept (one source, so per-key order holds). */
Test(flow_partition, uniq_by_after_a_partition_by_its_key_is_global,
     .timeout = 30)
{
	gs_flow *f = range(1, 5000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 4,
							.key = mod97 });
	gs_flow_uniq_by(f, mod97, NULL);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 97);
	qsort(out, n, sizeof(void *), cmp_u);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), i + 1, "the first event of key %zu",
			     (i + 1) % 97);
	free(out);
	gs_flow_free(f);
}

/* Without that partition each of the shuffled stages keeps its own first
 * event of a key: between one and `stages` events per key. */
Test(flow_partition, uniq_by_after_a_shuffle_is_per_stage, .timeout = 30)
{
	gs_flow *f = range(1, 5000);
	gs_flow_shuffle(f, &(gs_flow_partition_opts){ .stages = 3,
						      .max_demand = 16 });
	gs_flow_uniq_by(f, mod97, NULL);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	size_t per_key[97] = { 0 };
	for (size_t i = 0; i < n; i++)
		per_key[mod97(NULL, out[i])]++;
	for (size_t k = 0; k < 97; k++)
		cr_assert(per_key[k] >= 1 && per_key[k] <= 3,
			  "key %zu kept %zu times", k, per_key[k]);
	free(out);
	gs_flow_free(f);
}

/* A source of 1..SLOW_N split by parity over two stages, the odd one slow:
 * the fast stage's demand must not let the source run ahead of the slow
 * one by more than a bounded queue. */
#define SLOW_N 200000

typedef struct slow_state {
	atomic_size_t pulled, seen_odd, worst_gap;
} slow_state;

static long count_up(void *arg, void **out, size_t max)
{
	slow_state *s = arg;
	size_t t = atomic_load(&s->pulled), k = 0;
	while (k < max && t < SLOW_N)
		out[k++] = U(++t);
	atomic_store(&s->pulled, t);
	return (long)k;
}

static size_t by_parity(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 2;
}

static int sum_odd_slowly(void *arg, void **acc, void *e)
{
	slow_state *s = arg;
	if (V(e) % 2) {
		size_t seen = atomic_fetch_add(&s->seen_odd, 1) + 1;
		size_t odd_pulled = (atomic_load(&s->pulled) + 1) / 2;
		size_t gap = odd_pulled > seen ? odd_pulled - seen : 0;
		if (gap > atomic_load(&s->worst_gap))
			atomic_store(&s->worst_gap, gap);
		if (seen % 64 == 0)
			nanosleep(&(struct timespec){ .tv_nsec = 50000 }, NULL);
	}
	return sum_reducer(NULL, acc, e);
}

Test(flow_partition, a_slow_partition_holds_back_the_source, .timeout = 30)
{
	slow_state s = { 0 };
	gs_flow *f;
	cr_assert_eq(gs_flow_from_fn(count_up, &s, NULL, &f), GS_OK);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2,
							.hash = by_parity });
	gs_flow_reduce(f, NULL, sum_odd_slowly, &s);
	expect_sum(f, 2, (uintptr_t)SLOW_N * (SLOW_N + 1) / 2);
	/* The queue bound (10000) plus what one demand round may add. */
	cr_expect_leq(atomic_load(&s.worst_gap), 15000,
		      "the source ran %zu odd events ahead of the slow stage",
		      atomic_load(&s.worst_gap));
}
