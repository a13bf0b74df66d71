// SPDX-License-Identifier: MIT
/* Sources (several arrays and generators) and the layer of stages after
 * them where the operations run, as Flow's mapper stages. */
#include <stdatomic.h>
#include <string.h>

#include "flow_test.h"

static void *plus7(void *arg, void *e)
{
	(void)arg;
	return U(V(e) + 7);
}
static bool not_div5(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 5 != 0;
}
/* e % 3 copies of e. */
static int copies(void *arg, void *e, gs_flow_out *out)
{
	(void)arg;
	for (uintptr_t i = 0; i < V(e) % 3; i++)
		if (gs_flow_out_push(out, e))
			return GS_ENOMEM;
	return 0;
}

/* A generator of the values v[0..n), in steps as asked. */
typedef struct vals {
	const uintptr_t *v;
	size_t n, pos;
} vals;

static long gen_vals(void *arg, void **out, size_t max)
{
	vals *g = arg;
	size_t k = 0;
	while (k < max && g->pos < g->n)
		out[k++] = U(g->v[g->pos++]);
	return (long)k;
}

/* The sequential map |> filter |> flat_map of `v` appended to `w`. */
static size_t sequential(const uintptr_t *v, size_t n, uintptr_t *w, size_t k)
{
	for (size_t i = 0; i < n; i++) {
		uintptr_t x = v[i] + 7;
		if (x % 5 == 0)
			continue;
		for (uintptr_t c = 0; c < x % 3; c++)
			w[k++] = x;
	}
	return k;
}

Test(flow_sources, random_sources_match_a_sequential_computation, .timeout = 30)
{
	srand(11);
	for (int round = 0; round < FLOW_TEST_ROUNDS; round++) {
		size_t nsrc = 1 + (size_t)(rand() % 5), total = 0;
		gs_flow_source src[5];
		vals gens[5];
		uintptr_t *data[5];
		size_t len[5];
		for (size_t s = 0; s < nsrc; s++) {
			len[s] = (size_t)(rand() % 5000);
			data[s] = random_ints(len[s], 100000);
			total += len[s];
			gens[s] = (vals){ data[s], len[s], 0 };
			void **ev = malloc((len[s] + 1) * sizeof(void *));
			for (size_t i = 0; i < len[s]; i++)
				ev[i] = U(data[s][i]);
			/* Half arrays, half generators. */
			src[s] = rand() % 2
					 ? (gs_flow_source){ .events = ev,
							     .n = len[s] }
					 : (gs_flow_source){ .gen = gen_vals,
							     .arg = &gens[s] };
			if (src[s].gen)
				free(ev);
		}
		gs_flow *f;
		size_t stages = 1 + (size_t)(rand() % 4);
		cr_assert_eq(gs_flow_from_sources(
				     src, nsrc,
				     &(gs_flow_opts){ .stages = stages,
						      .max_demand = 64 },
				     &f),
			     GS_OK);
		for (size_t s = 0; s < nsrc; s++)
			if (!src[s].gen)
				free((void *)src[s].events);
		gs_flow_map(f, plus7, NULL);
		gs_flow_filter(f, not_div5, NULL);
		gs_flow_flat_map(f, copies, NULL);
		void **out;
		size_t n;
		collect_ok(f, &out, &n);
		uintptr_t *w = malloc((2 * total + 1) * sizeof(*w));
		size_t k = 0;
		for (size_t s = 0; s < nsrc; s++)
			k = sequential(data[s], len[s], w, k);
		expect_same_values(out, n, w, k, round);
		free(w);
		free(out);
		for (size_t s = 0; s < nsrc; s++)
			free(data[s]);
		gs_flow_free(f);
	}
}

/* The stage's index in the high bits, the sum in the low ones. */
static int tag_stage(void *arg, void **acc, const gs_flow_trigger *t,
		     gs_flow_out *out)
{
	(void)arg;
	return gs_flow_out_push(out,
				U((uintptr_t)t->partition << 40 | V(*acc)));
}

Test(flow_sources, reduce_straight_after_a_source_runs_in_each_of_its_stages,
     .timeout = 30)
{
	/* As Flow's mapper stages: each of the `stages` stages after the
	 * source reduces what it got, and every one of them emits. */
	gs_flow *f = range_opts(1, 10000, &(gs_flow_opts){ .stages = 3 });
	gs_flow_map(f, plus7, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_on_trigger(f, tag_stage, NULL);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 3, "one result per stage");
	qsort(out, n, sizeof(void *), cmp_u);
	uintptr_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(V(out[i]) >> 40, i, "stage %zu", i);
		sum += V(out[i]) & (((uintptr_t)1 << 40) - 1);
	}
	cr_assert_eq(sum, 10000 * 10001 / 2 + 7 * 10000);
	free(out);
	gs_flow_free(f);
}

Test(flow_sources, a_source_followed_by_no_operation_keeps_its_order,
     .timeout = 30)
{
	/* Nothing to run after the source: no layer of stages is made, so
	 * whatever opts.stages says the sink gets the array in order. */
	gs_flow *f = range_opts(1, 20000, &(gs_flow_opts){ .stages = 4 });
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 20000);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(V(out[i]), i + 1);
	free(out);
	gs_flow_free(f);
}

static int fail_at_500(void *arg, const void *e)
{
	(void)arg;
	return *(const uintptr_t *)e == 500 ? GS_EUSER + 5 : 0;
}

/* Three sources of boxes, 1..3000 between them. */
static gs_flow *boxed_sources(size_t stages)
{
	void **ev[3];
	gs_flow_source src[3];
	for (size_t s = 0; s < 3; s++) {
		ev[s] = malloc(1000 * sizeof(void *));
		for (size_t i = 0; i < 1000; i++)
			ev[s][i] = box(s * 1000 + i + 1);
		src[s] = (gs_flow_source){ .events = ev[s], .n = 1000 };
	}
	gs_flow *f;
	cr_assert_eq(gs_flow_from_sources(src, 3,
					  &(gs_flow_opts){ .stages = stages,
							   .event_free = unbox,
							   .max_demand = 10 },
					  &f),
		     GS_OK);
	for (size_t s = 0; s < 3; s++)
		free(ev[s]);
	return f;
}

Test(flow_sources, every_array_event_is_freed_whatever_happens, .timeout = 30)
{
	atomic_store(&live_boxes, 0);
	gs_flow *f = boxed_sources(2);
	gs_flow_free(f); /* never run */
	cr_assert_eq(atomic_load(&live_boxes), 0, "%ld leaked",
		     atomic_load(&live_boxes));

	f = boxed_sources(2);
	gs_flow_each(f, fail_at_500, NULL);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_EUSER + 5);
	gs_flow_free(f);
	cr_assert_eq(atomic_load(&live_boxes), 0, "%ld leaked",
		     atomic_load(&live_boxes));

	f = boxed_sources(3);
	gs_stage *s;
	cr_assert_eq(gs_flow_stream(f, NULL, NULL, &s), GS_OK);
	void *buf[10];
	cr_assert_eq(gs_stream_next(s, buf, 10, &n, 5000), GS_OK);
	for (size_t i = 0; i < n; i++)
		unbox(buf[i], NULL);
	gs_flow_free(f); /* stops it mid-way */
	cr_assert_eq(atomic_load(&live_boxes), 0, "%ld leaked",
		     atomic_load(&live_boxes));
}

Test(flow_sources, bad_sources_are_refused, .timeout = 30)
{
	gs_flow *f = (gs_flow *)&f, *keep = f;
	gs_gen_fn gen = gen_vals;
	void *one[1] = { U(1) };
	cr_assert_eq(gs_flow_from_sources(NULL, 1, NULL, &f), GS_EINVAL);
	gs_flow_source ok = { .events = one, .n = 1 };
	cr_assert_eq(gs_flow_from_sources(&ok, 0, NULL, &f), GS_EINVAL);
	cr_assert_eq(gs_flow_from_sources(&ok, 1, NULL, NULL), GS_EINVAL);
	gs_flow_source both = { .events = one, .n = 1, .gen = gen };
	cr_assert_eq(gs_flow_from_sources(&both, 1, NULL, &f), GS_EINVAL);
	gs_flow_source holes = { .events = NULL, .n = 3 };
	cr_assert_eq(gs_flow_from_sources(&holes, 1, NULL, &f), GS_EINVAL);
	/* A length whose copy's size overflows: it was copied short and
	 * read past. */
	cr_assert_eq(gs_flow_from_array(one, SIZE_MAX / sizeof(void *) + 2,
					NULL, &f),
		     GS_EINVAL);
	gs_flow_source future = { .version = GS_FLOW_SOURCE_VERSION + 1,
				  .gen = gen };
	cr_assert_eq(gs_flow_from_sources(&future, 1, NULL, &f), GS_EVERSION);
	cr_assert_eq(gs_flow_from_sources(&ok, 1,
					  &(gs_flow_opts){ .max_demand = 10,
							   .min_demand = 10 },
					  &f),
		     GS_EDEMAND);
	/* Against the default max_demand, as gs_subscribe would judge it. */
	cr_assert_eq(
		gs_flow_from_sources(
			&ok, 1,
			&(gs_flow_opts){ .min_demand = GS_DEFAULT_MAX_DEMAND },
			&f),
		GS_EDEMAND);
	cr_assert_eq(gs_flow_from_sources(
			     &ok, 1,
			     &(gs_flow_opts){ .max_demand = GS_MAX_DEMAND + 1 },
			     &f),
		     GS_EINVAL);
	cr_assert_eq(f, keep, "out untouched on failure");
	gs_flow_source empty = { 0 };
	cr_assert_eq(gs_flow_from_sources(&empty, 1, NULL, &f), GS_OK,
		     "an empty array is a source");
	gs_flow_free(f);
}
