// SPDX-License-Identifier: MIT
/* Flow's per-event operations: map, filter, reject, flat_map, each and
 * uniq_by, their fusion into one stage, and the sources feeding them. */
#include <pthread.h>
#include <stdatomic.h>

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
	cr_assert_eq(gs_pipeline_new(NULL, &p), GS_OK);
	gs_stage *push;
	cr_assert_eq(gs_push_producer(p, NULL, &push), GS_OK);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_stages(p, &push, 1, NULL, &f), GS_OK);
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
