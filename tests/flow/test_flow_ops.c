// SPDX-License-Identifier: MIT
/* Flow's per-event operations: map, filter, reject, flat_map, each,
 * uniq_by and map_batch, their fusion into one stage, the sources feeding
 * them, and the string keys they may use. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "flow_test.h"

static void *twice(void *arg, void *e)
{
	(void)arg;
	return U(V(e) * 2);
}
static bool odd(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 2;
}
static bool div3(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 3 == 0;
}
static int repeat(void *arg, void *e, gs_flow_out *out)
{
	(void)arg;
	/* n copies of n, none for 0 */
	for (uintptr_t i = 0; i < V(e) % 4; i++)
		if (gs_flow_out_push(out, e))
			return GS_ENOMEM;
	return 0;
}
static int sum_each(void *arg, const void *e)
{
	atomic_fetch_add((atomic_ulong *)arg, V(e));
	return 0;
}
static uint64_t mod7(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 7;
}

Test(flow_ops, map_filter_reject_in_order, .timeout = 30)
{
	gs_flow *f = range1(1, 1000);
	gs_flow_filter(f, odd, NULL);
	gs_flow_map(f, twice, NULL);
	gs_flow_reject(f, div3, NULL);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_OK, "%s",
		     gs_flow_errmsg(f));
	size_t k = 0;
	for (uintptr_t i = 1; i <= 1000; i++) {
		if (i % 2 == 0 || (i * 2) % 3 == 0)
			continue;
		cr_assert_lt(k, n);
		cr_assert_eq(V(out[k]), i * 2, "at %zu", k);
		k++;
	}
	cr_assert_eq(k, n);
	free(out);
	gs_flow_free(f);
}

Test(flow_ops, flat_map_each_and_uniq_by, .timeout = 30)
{
	atomic_ulong seen = 0;
	gs_flow *f = range1(1, 100);
	gs_flow_flat_map(f, repeat, NULL);
	gs_flow_each(f, sum_each, &seen);
	gs_flow_uniq_by(f, mod7, NULL);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_OK);
	unsigned long want = 0;
	for (uintptr_t i = 1; i <= 100; i++)
		want += (i % 4) * i;
	cr_assert_eq(atomic_load(&seen), want);
	/* First event of each key mod 7, in order of appearance. */
	uintptr_t expect[7];
	size_t ne = 0;
	bool have[7] = { 0 };
	for (uintptr_t i = 1; i <= 100; i++)
		if (i % 4 && !have[i % 7]) {
			have[i % 7] = true;
			expect[ne++] = i;
		}
	cr_assert_eq(n, ne);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), expect[i]);
	free(out);
	gs_flow_free(f);
}

static pthread_t tid_map, tid_filter;
static atomic_int mixed;
static void *note_map(void *arg, void *e)
{
	(void)arg;
	tid_map = pthread_self();
	return e;
}
static bool note_filter(void *arg, const void *e)
{
	(void)arg;
	(void)e;
	if (!pthread_equal(tid_map, pthread_self()))
		atomic_store(&mixed, 1);
	return true;
}

Test(flow_ops, consecutive_operations_run_in_one_stage, .timeout = 30)
{
	/* After a one-stage partition the map and the filter of each event
	 * must run on the same thread: they are fused. */
	atomic_store(&mixed, 0);
	gs_flow *f = range(1, 5000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 1 });
	gs_flow_map(f, note_map, NULL);
	gs_flow_filter(f, note_filter, NULL);
	cr_assert_eq(gs_flow_run(f), GS_OK);
	cr_assert_eq(atomic_load(&mixed), 0);
	(void)tid_filter;
	gs_flow_free(f);
}

typedef struct gen_state {
	uintptr_t next, last;
} gen_state;

static long gen(void *arg, void **out, size_t max)
{
	gen_state *g = arg;
	size_t k = 0;
	while (k < max && g->next <= g->last)
		out[k++] = U(g->next++);
	return (long)k;
}

Test(flow_ops, from_fn_is_driven_by_demand_to_the_end, .timeout = 30)
{
	gen_state g = { 1, 100000 };
	gs_flow *f;
	cr_assert_eq(gs_flow_from_fn(gen, &g, &(gs_flow_opts){ .stages = 1 },
				     &f),
		     GS_OK);
	gs_flow_filter(f, odd, NULL);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_OK);
	cr_assert_eq(n, 50000);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), 2 * i + 1);
	free(out);
	gs_flow_free(f);
}

/* A generator of blocks that a flat_map turns into BLOCK events each, like
 * a file read in blocks and split into words; an each() downstream checks
 * at every event how many blocks the source has taken so far. */
#define BLOCK 1000
#define BLOCKS 50
#define BLOCK_DEMAND 10

typedef struct blocks {
	atomic_size_t taken;
	atomic_size_t seen, worst_excess;
} blocks;

static long gen_blocks(void *arg, void **out, size_t max)
{
	blocks *b = arg;
	size_t t = atomic_load(&b->taken), k = 0;
	while (k < max && t < BLOCKS)
		out[k++] = U(t++);
	atomic_store(&b->taken, t);
	return (long)k;
}

static int explode(void *arg, void *e, gs_flow_out *out)
{
	(void)arg;
	for (uintptr_t i = 0; i < BLOCK; i++)
		if (gs_flow_out_push(out, U(V(e) * BLOCK + i + 1)))
			return GS_ENOMEM;
	return 0;
}

static int check_taken(void *arg, const void *e)
{
	(void)e;
	blocks *b = arg;
	size_t seen = atomic_fetch_add(&b->seen, 1) + 1;
	/* The stage after the source asks for a block only once it has
	 * expanded the one before, and it expands one only while its own
	 * downstream has demand, at most BLOCK_DEMAND of which can be on its
	 * way here: so the source is at most two blocks (one expanded and
	 * being sent, one asked ahead) past what was seen. */
	size_t bound = (seen + BLOCK_DEMAND) / BLOCK + 2;
	size_t taken = atomic_load(&b->taken);
	if (taken > bound && taken - bound > atomic_load(&b->worst_excess))
		atomic_store(&b->worst_excess, taken - bound);
	return 0;
}

Test(flow_ops, flat_map_source_takes_raw_events_only_as_demand_needs,
     .timeout = 30)
{
	blocks b = { 0 };
	gs_flow *f;
	cr_assert_eq(gs_flow_from_fn(gen_blocks, &b,
				     &(gs_flow_opts){ .stages = 1 }, &f),
		     GS_OK);
	gs_flow_flat_map(f, explode, NULL);
	gs_flow_shuffle(f, &(gs_flow_partition_opts){
				   .stages = 1,
				   .max_demand = BLOCK_DEMAND,
				   .min_demand = BLOCK_DEMAND / 2,
			   });
	gs_flow_each(f, check_taken, &b);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_OK, "%s",
		     gs_flow_errmsg(f));
	cr_assert_eq(n, BLOCK * BLOCKS);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), i + 1);
	cr_expect_eq(atomic_load(&b.worst_excess), 0,
		     "the source ran %zu blocks ahead of the demand",
		     atomic_load(&b.worst_excess));
	free(out);
	gs_flow_free(f);
}

Test(flow_ops, empty_array_gives_nothing, .timeout = 30)
{
	gs_flow *f;
	cr_assert_eq(gs_flow_from_array(NULL, 0, NULL, &f), GS_OK);
	void **out;
	size_t n = 99;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_OK);
	cr_assert_eq(n, 0);
	free(out);
	gs_flow_free(f);
}

Test(flow_ops, from_stages_with_a_push_producer_and_a_shuffle, .timeout = 30)
{
	gs_pipeline *p;
	gs_stage *push;
	gs_flow *f = pushed_flow(&p, &push);
	gs_flow_map(f, twice, NULL);
	gs_flow_shuffle(f, &(gs_flow_partition_opts){ .stages = 3 });
	gs_flow_filter(f, div3, NULL);
	gs_stage *s;
	cr_assert_eq(gs_flow_stream(f, p, NULL, &s), GS_OK, "%s",
		     gs_flow_errmsg(f));
	cr_assert_eq(gs_pipeline_start(p), GS_OK);
	for (uintptr_t i = 1; i <= 3000; i++) {
		void *e = U(i);
		cr_assert_eq(gs_push(push, &e, 1, -1), GS_OK);
	}
	gs_push_close(push);
	void *buf[64];
	size_t got = 0, total = 0, k;
	while (gs_stream_next(s, buf, 64, &k, 5000) == GS_OK)
		for (size_t i = 0; i < k; i++, got++)
			total += V(buf[i]);
	size_t want = 0;
	for (uintptr_t i = 1; i <= 3000; i++)
		if ((2 * i) % 3 == 0)
			want += 2 * i;
	cr_assert_eq(got, 1000);
	cr_assert_eq(total, want);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	gs_pipeline_free(p);
	gs_flow_free(f);
}

Test(flow_ops, sorted_output_of_parallel_map_matches, .timeout = 30)
{
	gs_flow *f = range(1, 20000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 4 });
	gs_flow_map(f, twice, NULL);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_OK);
	cr_assert_eq(n, 20000);
	qsort(out, n, sizeof(void *), cmp_u);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), 2 * (i + 1));
	free(out);
	gs_flow_free(f);
}

/* Keeps the even events of a batch, each twice, and counts the batches. */
static int evens_twice(void *arg, void **ev, size_t n, gs_flow_out *out)
{
	atomic_fetch_add((atomic_size_t *)arg, 1);
	for (size_t i = 0; i < n; i++)
		if (V(ev[i]) % 2 == 0 && (gs_flow_out_push(out, ev[i]) ||
					  gs_flow_out_push(out, ev[i])))
			return GS_ENOMEM;
	return 0;
}

Test(flow_ops, map_batch_takes_whole_batches_and_may_resize_them, .timeout = 30)
{
	srand(3);
	for (int round = 0; round < FLOW_TEST_ROUNDS; round++) {
		size_t n = 1 + (size_t)(rand() % 20000);
		uintptr_t *v = random_ints(n, 100000);
		atomic_size_t batches = 0;
		gs_flow *f = ints_flow(v, n, &(gs_flow_opts){ .stages = 2 });
		gs_flow_map(f, twice, NULL);
		gs_flow_partition(f, &(gs_flow_partition_opts){
					     .stages = 3, .max_demand = 100 });
		gs_flow_map_batch(f, evens_twice, &batches);
		gs_flow_reject(f, odd, NULL); /* 2x is never odd */
		void **out;
		size_t no;
		collect_ok(f, &out, &no);
		cr_assert_eq(no, 2 * n, "every doubled value, twice");
		qsort(out, no, sizeof(void *), cmp_u);
		qsort(v, n, sizeof(*v), cmp_u);
		for (size_t i = 0; i < n; i++)
			cr_assert(V(out[2 * i]) == 2 * v[i] &&
					  V(out[2 * i + 1]) == 2 * v[i],
				  "at %zu", i);
		/* Batches of at most max_demand - min_demand = 50. */
		cr_assert_geq(atomic_load(&batches), n / 50);
		free(out);
		free(v);
		gs_flow_free(f);
	}
}

static bool hundredth(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 100 == 0;
}

/* Counts its calls, and those that came with no event. */
static atomic_size_t batch_calls, empty_batches;
static int count_batches(void *arg, void **ev, size_t n, gs_flow_out *out)
{
	(void)arg;
	atomic_fetch_add(&batch_calls, 1);
	if (!n)
		atomic_fetch_add(&empty_batches, 1);
	for (size_t i = 0; i < n; i++)
		if (gs_flow_out_push(out, ev[i]))
			return GS_ENOMEM;
	return 0;
}

Test(flow_ops, map_batch_is_never_given_an_empty_batch, .timeout = 30)
{
	/* The filter before it lets 1 event in 100 through, and batches
	 * hold at most 10, so most batches reach map_batch with nothing
	 * left. */
	atomic_store(&batch_calls, 0);
	atomic_store(&empty_batches, 0);
	gs_flow *f = range(1, 10000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2,
							.max_demand = 10 });
	gs_flow_filter(f, hundredth, NULL);
	gs_flow_map_batch(f, count_batches, NULL);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 100);
	cr_assert_gt(atomic_load(&batch_calls), 0);
	cr_assert_eq(atomic_load(&empty_batches), 0, "%zu empty batches of %zu",
		     atomic_load(&empty_batches), atomic_load(&batch_calls));
	free(out);
	gs_flow_free(f);
}

/* Frees its batch and fails on the third one. */
static int fail_third_batch(void *arg, void **ev, size_t n, gs_flow_out *out)
{
	if (atomic_fetch_add((atomic_int *)arg, 1) == 2) {
		for (size_t i = 0; i < n; i++)
			unbox(ev[i], NULL);
		return GS_EUSER + 1;
	}
	for (size_t i = 0; i < n; i++)
		if (gs_flow_out_push(out, ev[i]))
			return GS_ENOMEM;
	return 0;
}

Test(flow_ops, a_failing_map_batch_stops_the_flow_without_leaks, .timeout = 30)
{
	atomic_store(&live_boxes, 0);
	void **ev = malloc(3000 * sizeof(void *));
	for (size_t i = 0; i < 3000; i++)
		ev[i] = box(i);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_array(ev, 3000,
					&(gs_flow_opts){ .stages = 2,
							 .event_free = unbox,
							 .max_demand = 10 },
					&f),
		     GS_OK);
	free(ev);
	atomic_int calls = 0;
	gs_flow_map_batch(f, fail_third_batch, &calls);
	cr_assert_eq(gs_flow_run(f), GS_EUSER + 1);
	gs_flow_free(f);
	cr_assert_eq(atomic_load(&live_boxes), 0, "%ld leaked",
		     atomic_load(&live_boxes));
	f = range(1, 3);
	cr_assert_eq(gs_flow_map_batch(f, NULL, NULL), GS_EINVAL);
	gs_flow_free(f);
}

Test(flow_ops, string_keys_hash_the_same_everywhere, .timeout = 30)
{
	/* Pinned: a key must not change between runs, builds or machines
	 * (a flow may persist or compare keys). */
	cr_assert_eq(gs_flow_hash_str("flow"), gs_flow_hash_bytes("flow", 4));
	cr_assert_eq(gs_flow_hash_str(NULL), gs_flow_hash_bytes(NULL, 0));
	cr_assert_eq(gs_flow_hash_str(""), gs_flow_hash_bytes("", 0));
	cr_assert_eq(gs_flow_hash_str("flow"), UINT64_C(0x0f4af00ba56fa86e),
		     "%#llx", (unsigned long long)gs_flow_hash_str("flow"));
	cr_assert_neq(gs_flow_hash_bytes("a\0b", 3),
		      gs_flow_hash_bytes("a\0c", 3), "every byte counts");
	cr_assert_neq(gs_flow_hash_bytes("ab", 2), gs_flow_hash_bytes("ab", 1));
}

/* String events: "w<k>" for k < 500, the key its hash. */
static uint64_t str_key(void *arg, const void *e)
{
	(void)arg;
	return gs_flow_hash_str(e);
}

Test(flow_ops, string_keys_group_equal_strings_together, .timeout = 30)
{
	static char words[500][8];
	void **ev = malloc(20000 * sizeof(void *));
	size_t count[500] = { 0 };
	srand(9);
	for (size_t k = 0; k < 500; k++)
		snprintf(words[k], sizeof(words[k]), "w%zu", k);
	for (size_t i = 0; i < 20000; i++) {
		size_t k = (size_t)(rand() % 500);
		count[k]++;
		ev[i] = words[k];
	}
	gs_flow *f;
	cr_assert_eq(gs_flow_from_array(ev, 20000, NULL, &f), GS_OK);
	free(ev);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 3,
							.key = str_key });
	gs_flow_group_by(f, str_key, NULL);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	size_t groups = 0;
	for (size_t s = 0; s < n; s++) {
		for (size_t g = 0; g < gs_flow_groups_len(out[s]); g++) {
			gs_flow_events *l = gs_flow_groups_at(out[s], g);
			const char *w = gs_flow_events_at(l, 0);
			size_t k = (size_t)atoi(w + 1);
			cr_assert_eq(gs_flow_events_len(l), count[k], "%s", w);
			for (size_t i = 0; i < gs_flow_events_len(l); i++)
				cr_assert_str_eq(gs_flow_events_at(l, i), w);
			groups++;
		}
		gs_flow_groups_free(out[s], NULL, NULL);
	}
	size_t want = 0;
	for (size_t k = 0; k < 500; k++)
		want += count[k] != 0;
	cr_assert_eq(groups, want, "each word in one group of one stage");
	free(out);
	gs_flow_free(f);
}
