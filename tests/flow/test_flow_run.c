// SPDX-License-Identifier: MIT
/* Sinks, refused descriptions, and early stops that free everything. */
#include <stdatomic.h>
#include <string.h>

#include "flow_test.h"

static void *id(void *arg, void *e)
{
	(void)arg;
	return e;
}

Test(flow_run, bad_descriptions_are_refused_with_a_message, .timeout = 30)
{
	gs_flow *f = range(1, 10);
	cr_assert_eq(gs_flow_error(f), GS_OK);
	cr_assert_eq(gs_flow_reduce(f, NULL, NULL, NULL), GS_EINVAL);
	cr_assert_eq(gs_flow_error(f), GS_EINVAL, "the first error is kept");
	cr_assert(strstr(gs_flow_errmsg(f), "reducer is NULL"), "%s",
		  gs_flow_errmsg(f));
	cr_assert_eq(gs_flow_map(f, id, NULL), GS_EINVAL, "the error sticks");
	cr_assert_eq(gs_flow_run(f), GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	cr_assert_eq(gs_flow_map(f, NULL, NULL), GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	cr_assert_eq(gs_flow_on_trigger(f, NULL, NULL), GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	cr_assert_eq(gs_flow_map(f, id, NULL), GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	cr_assert_eq(gs_flow_reduce(f, NULL, sum_reducer, NULL), GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	cr_assert_eq(
		gs_flow_partition(f,
				  &(gs_flow_partition_opts){
					  .window = gs_flow_window_count(0) }),
		GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	cr_assert_eq(gs_flow_partition(f,
				       &(gs_flow_partition_opts){
					       .window = gs_flow_window_fixed(
						       10, NULL, NULL) }),
		     GS_EINVAL);
	gs_flow_free(f);

	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	cr_assert_eq(gs_flow_from_stages(p, NULL, 0, NULL, &f), GS_EINVAL);
	gs_pipeline_free(p);
}

Test(flow_run, a_flow_runs_once, .timeout = 30)
{
	gs_flow *f = range(1, 10);
	cr_assert_eq(gs_flow_run(f), GS_OK);
	cr_assert_eq(gs_flow_run(f), GS_ESTATE);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_ESTATE);
	gs_flow_free(f);
}

static int sum_boxes(void *arg, void **acc, void *e)
{
	(void)arg;
	uintptr_t v = *(uintptr_t *)e;
	unbox(e, NULL);
	if (v == 777)
		return GS_EUSER + 7;
	*(uintptr_t *)*acc += v;
	return 0;
}
static bool keep_not_5(void *arg, const void *e)
{
	(void)arg;
	return *(const uintptr_t *)e % 5;
}

static gs_flow *boxed_flow(size_t n)
{
	void **ev = malloc(n * sizeof(void *));
	for (size_t i = 0; i < n; i++)
		ev[i] = box(i + 1);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_array(
			     ev, n, &(gs_flow_opts){ .event_free = unbox }, &f),
		     GS_OK);
	free(ev);
	return f;
}

Test(flow_run, an_error_stops_the_flow_and_nothing_leaks, .timeout = 30)
{
	for (int stages = 1; stages <= 3; stages++) {
		atomic_store(&live_boxes, 0);
		atomic_store(&live_accs, 0);
		gs_flow *f = boxed_flow(20000);
		gs_flow_filter(f, keep_not_5, NULL);
		gs_flow_partition(
			f, &(gs_flow_partition_opts){ .stages = (size_t)stages,
						      .max_demand = 50 });
		gs_flow_reduce(f, acc_new, sum_boxes, NULL);
		gs_flow_acc_free(f, acc_free);
		void **out;
		size_t n;
		cr_assert_eq(gs_flow_collect(f, &out, &n), GS_EUSER + 7);
		gs_flow_free(f);
		cr_assert_eq(atomic_load(&live_boxes), 0, "%ld events leaked",
			     atomic_load(&live_boxes));
		cr_assert_eq(atomic_load(&live_accs), 0, "%ld accs leaked",
			     atomic_load(&live_accs));
	}
}

Test(flow_run, a_flow_never_run_frees_its_events, .timeout = 30)
{
	atomic_store(&live_boxes, 0);
	gs_flow *f = boxed_flow(100);
	gs_flow_free(f);
	cr_assert_eq(atomic_load(&live_boxes), 0);
}

Test(flow_run, collected_states_belong_to_the_caller, .timeout = 30)
{
	atomic_store(&live_boxes, 0);
	atomic_store(&live_accs, 0);
	gs_flow *f = boxed_flow(1000); /* no 777 below 1000? there is */
	gs_flow_free(f);
	f = boxed_flow(700);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	gs_flow_reduce(f, acc_new, sum_boxes, NULL);
	gs_flow_acc_free(f, acc_free);
	void **out;
	size_t n;
	collect_ok(f, &out, &n);
	cr_assert_eq(n, 2);
	cr_assert_eq(*(uintptr_t *)out[0] + *(uintptr_t *)out[1], 245350);
	cr_assert_eq(atomic_load(&live_accs), 2, "the two states are ours now");
	acc_free(NULL, out[0]);
	acc_free(NULL, out[1]);
	free(out);
	gs_flow_free(f);
	cr_assert_eq(atomic_load(&live_boxes), 0);
	cr_assert_eq(atomic_load(&live_accs), 0);
}

/* gs_flow_run drops the results: emitted states go to acc_free (value
 * states to nothing), never to the events' event_free; also when layers
 * that only route them (a departition, a partition) passed them on. */
static int sum_into_value(void *arg, void **acc, void *e)
{
	(void)arg;
	uintptr_t v = *(uintptr_t *)e;
	unbox(e, NULL);
	*acc = U(V(*acc) + v);
	return 0;
}

/* After a reduce: nothing more (0), a departition (1) or a partition
 * (2), layers that pass its results on as they are. */
static void route_on(gs_flow *f, int how)
{
	if (how == 1)
		gs_flow_departition(f, NULL);
	else if (how == 2)
		gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
}

Test(flow_run, run_frees_emitted_states_with_acc_free, .timeout = 30)
{
	for (int how = 0; how < 3; how++) {
		atomic_store(&live_boxes, 0);
		atomic_store(&live_accs, 0);
		gs_flow *f = boxed_flow(700);
		gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
		gs_flow_reduce(f, acc_new, sum_boxes, NULL);
		gs_flow_acc_free(f, acc_free);
		route_on(f, how);
		cr_assert_eq(gs_flow_run(f), GS_OK, "%s", gs_flow_errmsg(f));
		gs_flow_free(f);
		cr_assert_eq(atomic_load(&live_boxes), 0, "%ld events",
			     atomic_load(&live_boxes));
		cr_assert_eq(atomic_load(&live_accs), 0, "%ld states (%d)",
			     atomic_load(&live_accs), how);
	}
	gs_flow *f = boxed_flow(700);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	gs_flow_reduce(f, NULL, sum_into_value, NULL);
	cr_assert_eq(gs_flow_run(f), GS_OK, "a value state is not freed");
	gs_flow_free(f);
	cr_assert_eq(atomic_load(&live_boxes), 0);
}

static uint64_t boxed_mod7(void *arg, const void *e)
{
	(void)arg;
	return *(const uintptr_t *)e % 7;
}

static int boxed_cmp(void *arg, const void *a, const void *b)
{
	(void)arg;
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

Test(flow_run, run_frees_groups_and_sorted_lists_with_their_events,
     .timeout = 30)
{
	for (int how = 0; how < 3; how++)
		for (int sorted = 0; sorted < 2; sorted++) {
			atomic_store(&live_boxes, 0);
			gs_flow *f = boxed_flow(1000);
			gs_flow_partition(f, &(gs_flow_partition_opts){
						     .stages = 2,
						     .key = boxed_mod7 });
			if (sorted)
				gs_flow_take_sort(f, 10, boxed_cmp, NULL);
			else
				gs_flow_group_by(f, boxed_mod7, NULL);
			route_on(f, how);
			cr_assert_eq(gs_flow_run(f), GS_OK, "%s",
				     gs_flow_errmsg(f));
			gs_flow_free(f);
			/* A group or list freed as an event, or leaked,
			 * leaves its events counted. */
			cr_assert_eq(atomic_load(&live_boxes), 0,
				     "%ld events (%s, %d)",
				     atomic_load(&live_boxes),
				     sorted ? "take_sort" : "group_by", how);
		}
}

static atomic_ulong consumed;
static int user_consume(void *state, gs_stage *stage, gs_sub *from, void **ev,
			size_t n)
{
	(void)state;
	(void)stage;
	(void)from;
	for (size_t i = 0; i < n; i++)
		atomic_fetch_add(&consumed, V(ev[i]));
	return 0;
}

Test(flow_run, into_stages_feeds_existing_consumers, .timeout = 30)
{
	atomic_store(&consumed, 0);
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	static const gs_stage_ops ops = { .handle_events = user_consume };
	gs_stage *c[2];
	gs_stage_new(p, GS_CONSUMER, &ops, NULL, NULL, &c[0]);
	gs_stage_new(p, GS_CONSUMER, &ops, NULL, NULL, &c[1]);
	gs_flow *f = range(1, 5000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	cr_assert_eq(gs_flow_into_stages(f, p, c, 2, NULL), GS_OK);
	cr_assert_eq(gs_pipeline_start(p), GS_OK);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&consumed), 5000 * 5001 / 2);
	gs_pipeline_free(p);
	gs_flow_free(f);
}

/* Refusals leave nothing in the caller's pipeline: the refused flow may
 * be freed at once, and p runs a later flow alone (the refused flow's
 * stages stayed in p, waiting for ever, and ran on its freed state). */
Test(flow_run, a_refused_into_stages_builds_nothing, .timeout = 30)
{
	atomic_store(&consumed, 0);
	gs_pipeline *p, *q;
	gs_pipeline_new(NULL, &p);
	gs_pipeline_new(NULL, &q);
	static const gs_stage_ops ops = { .handle_events = user_consume };
	gs_stage *c, *foreign, *none = NULL;
	gs_stage_new(p, GS_CONSUMER, &ops, NULL, NULL, &c);
	gs_stage_new(q, GS_CONSUMER, &ops, NULL, NULL, &foreign);
	gs_flow *f = range(1, 100);
	cr_assert_eq(gs_flow_into_stages(f, p, &c, 1,
					 &(gs_sub_opts){ .max_demand = 5,
							 .min_demand = 5 }),
		     GS_EDEMAND);
	cr_assert_not_null(strstr(gs_flow_errmsg(f), "min"), "%s",
			   gs_flow_errmsg(f));
	gs_flow_free(f);
	f = range(1, 100);
	cr_assert_eq(gs_flow_into_stages(f, p, &foreign, 1, NULL),
		     GS_EPIPELINE);
	gs_flow_free(f);
	f = range(1, 100);
	cr_assert_eq(gs_flow_into_stages(f, p, &none, 1, NULL), GS_EINVAL);
	gs_flow_free(f);
	f = range(1, 100);
	cr_assert_eq(gs_flow_into_stages(f, p, &c, 1, NULL), GS_OK);
	cr_assert_eq(gs_pipeline_start(p), GS_OK);
	cr_assert_eq(gs_pipeline_wait_for(p, 20000), GS_OK);
	cr_assert_eq(atomic_load(&consumed), 100 * 101 / 2);
	gs_pipeline_free(p);
	gs_pipeline_free(q);
	gs_flow_free(f);
}

/* Pulls a stream to its end and sums what came. */
static uintptr_t pull_sum(gs_stage *s)
{
	void *buf[100];
	size_t n;
	uintptr_t total = 0;
	while (gs_stream_next(s, buf, 100, &n, 5000) == GS_OK)
		for (size_t i = 0; i < n; i++)
			total += V(buf[i]);
	return total;
}

Test(flow_run, stream_in_its_own_pipeline, .timeout = 30)
{
	gs_flow *f = range(1, 3000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	gs_stage *s;
	cr_assert_eq(gs_flow_stream(f, NULL, NULL, &s), GS_OK);
	cr_assert_eq(pull_sum(s), 3000 * 3001 / 2);
	gs_flow_free(f);
}

Test(flow_run, stream_stopped_early_frees_what_is_in_flight, .timeout = 30)
{
	atomic_store(&live_boxes, 0);
	gs_flow *f = boxed_flow(50000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	gs_stage *s;
	cr_assert_eq(gs_flow_stream(f, NULL, NULL, &s), GS_OK);
	void *buf[10];
	size_t n;
	cr_assert_eq(gs_stream_next(s, buf, 10, &n, 5000), GS_OK);
	for (size_t i = 0; i < n; i++)
		unbox(buf[i], NULL);
	gs_flow_free(f); /* stops the pipeline mid-way */
	cr_assert_eq(atomic_load(&live_boxes), 0, "%ld leaked",
		     atomic_load(&live_boxes));
}

Test(flow_run, a_second_stream_is_refused_and_the_first_keeps_going,
     .timeout = 30)
{
	gs_flow *f = range(1, 3000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	gs_stage *s, *again = NULL;
	cr_assert_eq(gs_flow_stream(f, NULL, NULL, &s), GS_OK);
	cr_assert_eq(gs_flow_stream(f, NULL, NULL, &again), GS_ESTATE);
	cr_assert_null(again);
	cr_assert(strstr(gs_flow_errmsg(f), "already run"));
	cr_assert_eq(pull_sum(s), 3000 * 3001 / 2);
	gs_flow_free(f);
}

static int fail_at_1000(void *arg, const void *e)
{
	(void)arg;
	return V(e) == 1000 ? 1234 : 0;
}

Test(flow_run, a_failed_run_keeps_its_error_in_the_flow, .timeout = 30)
{
	gs_flow *f = range(1, 5000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	gs_flow_each(f, fail_at_1000, NULL);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), 1234);
	cr_assert_eq(gs_flow_error(f), 1234);
	cr_assert(strstr(gs_flow_errmsg(f), "1234"), "%s", gs_flow_errmsg(f));
	cr_assert_eq(gs_flow_run(f), GS_ESTATE, "still run only once");
	gs_flow_free(f);
}

Test(flow_run, a_stream_ends_with_the_error_that_stopped_the_flow,
     .timeout = 30)
{
	gs_flow *f = range(1, 5000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	gs_flow_each(f, fail_at_1000, NULL);
	gs_stage *s;
	cr_assert_eq(gs_flow_stream(f, NULL, NULL, &s), GS_OK);
	void *buf[100];
	size_t n;
	gs_err e;
	while ((e = gs_stream_next(s, buf, 100, &n, 5000)) == GS_OK)
		;
	cr_assert_eq(e, 1234, "not GS_ECLOSED, as after a complete run");
	gs_flow_free(f);
}

/* A reduce without acc_new starts every stage from NULL; stages that get
 * no event emit it. */
static atomic_int null_frees;
static void acc_free_counting_null(void *arg, void *acc)
{
	(void)arg;
	if (!acc)
		atomic_fetch_add(&null_frees, 1);
}

Test(flow_run, acc_free_is_never_given_null, .timeout = 30)
{
	atomic_store(&null_frees, 0);
	gs_flow *f = range(1, 2);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 8 });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_acc_free(f, acc_free_counting_null);
	cr_assert_eq(gs_flow_run(f), GS_OK);
	cr_assert_eq(atomic_load(&null_frees), 0);
	gs_flow_free(f);
}

static long endless(void *arg, void **out, size_t max)
{
	(void)arg;
	for (size_t k = 0; k < max; k++)
		out[k] = U(k + 1);
	return (long)max;
}

static int fail_at_once(void *arg, const void *e)
{
	(void)arg;
	(void)e;
	return 1234;
}

Test(flow_run, a_flow_built_in_a_running_pipeline_gives_its_stages_error,
     .timeout = 30)
{
	/* The flow's first stages start, and fail, while the later ones and
	 * the sink are still being built. */
	for (int round = 0; round < 5; round++) {
		gs_pipeline *p;
		gs_pipeline_new(NULL, &p);
		gs_stage *prod;
		gs_from_fn(p, endless, NULL, NULL, &prod);
		gs_flow *f;
		cr_assert_eq(gs_flow_from_stages(p, &prod, 1, NULL, &f), GS_OK);
		gs_flow_each(f, fail_at_once, NULL);
		for (int i = 0; i < 4; i++)
			gs_flow_partition(
				f, &(gs_flow_partition_opts){ .stages = 2 });
		cr_assert_eq(gs_pipeline_start(p), GS_OK);
		cr_assert_eq(gs_flow_run(f), 1234, "round %d", round);
		gs_pipeline_free(p);
		gs_flow_free(f);
	}
}

static uint64_t key_of_any(void *arg, const void *event)
{
	(void)arg;
	return (uintptr_t)event;
}

static void *join_any(void *arg, void *left, void *right)
{
	(void)arg, (void)right;
	return left;
}

Test(flow_run, combining_refusals_say_why_in_the_given_flows, .timeout = 30)
{
	gs_flow *f = range(1, 10), *g = range(1, 10), *out = NULL;
	gs_flow *twice[2] = { f, f };
	cr_assert_eq(gs_flow_merge(twice, 2, NULL, &out), GS_EINVAL);
	cr_assert_null(out);
	cr_assert(strstr(gs_flow_errmsg(f), "twice"), "%s", gs_flow_errmsg(f));
	gs_flow_join j = { .left_key = NULL };
	cr_assert_eq(gs_flow_bounded_join(g, NULL, &j, NULL, &out), GS_EINVAL);
	cr_assert(strstr(gs_flow_errmsg(g), "NULL"), "%s", gs_flow_errmsg(g));
	gs_flow_free(f);
	gs_flow_free(g);
	/* A refused join spec or window is recorded in both flows. */
	gs_flow *l = range(1, 10), *r = range(1, 10);
	cr_assert_eq(gs_flow_bounded_join(l, r, &j, NULL, &out), GS_EINVAL);
	cr_assert_null(out);
	for (int k = 0; k < 2; k++)
		cr_assert(strstr(gs_flow_errmsg(k ? r : l),
				 "two key functions"),
			  "%s", gs_flow_errmsg(k ? r : l));
	gs_flow_free(l);
	gs_flow_free(r);
	l = range(1, 10);
	r = range(1, 10);
	cr_assert_eq(gs_flow_bounded_join(
			     l, r,
			     &(gs_flow_join){ .left_key = key_of_any,
					      .right_key = key_of_any,
					      .join = join_any },
			     &(gs_flow_partition_opts){
				     .window = { .kind = GS_FLOW_WINDOW_COUNT,
						 .count = 2 } },
			     &out),
		     GS_EINVAL);
	for (int k = 0; k < 2; k++)
		cr_assert(strstr(gs_flow_errmsg(k ? r : l), "global window"),
			  "%s", gs_flow_errmsg(k ? r : l));
	gs_flow_free(l);
	gs_flow_free(r);

	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_stage *prod;
	gs_from_fn(p, endless, NULL, NULL, &prod);
	cr_assert_eq(gs_flow_from_stages(p, &prod, 1,
					 &(gs_flow_opts){ .max_demand = 10,
							  .min_demand = 10 },
					 &out),
		     GS_EDEMAND);
	cr_assert_null(out);
	gs_pipeline_free(p);
}
