// SPDX-License-Identifier: MIT
/* The caller's stages inside a flow (through_stages), and the log and
 * trace hooks of the pipeline a flow makes for itself. */
#include <stdatomic.h>
#include <string.h>

#include "flow_test.h"

#include <criterion/redirect.h>

static void *plus1(void *arg, void *e)
{
	(void)arg;
	return U(V(e) + 1);
}
static bool not_div3(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 3 != 0;
}

/* The caller's producer-consumer: doubles every event. */
static int double_them(void *state, gs_stage *stage, gs_sub *from, void **ev,
		       size_t n)
{
	(void)from;
	atomic_fetch_add((atomic_size_t *)state, n);
	for (size_t i = 0; i < n; i++)
		ev[i] = U(V(ev[i]) * 2);
	return gs_emit(stage, ev, n);
}

Test(flow_through, random_input_through_user_stages_matches_a_sequential_run,
     .timeout = 30)
{
	srand(5);
	for (int round = 0; round < FLOW_TEST_ROUNDS; round++) {
		size_t n = (size_t)(rand() % 20000);
		uintptr_t *v = random_ints(n, 100000);
		gs_pipeline *p;
		cr_assert_eq(gs_pipeline_new(NULL, &p), GS_OK);
		static const gs_stage_ops ops = { .handle_events = double_them };
		atomic_size_t seen = 0;
		size_t nuser = 1 + (size_t)round % 3;
		gs_stage *user[3];
		for (size_t i = 0; i < nuser; i++)
			cr_assert_eq(gs_stage_new(p, GS_PRODUCER_CONSUMER, &ops,
						  &seen, NULL, &user[i]),
				     GS_OK);
		/* Half the rounds with stages of threads of their own. */
		gs_flow *f = ints_flow(
			v, n,
			&(gs_flow_opts){ .stages = 2, .blocking = round % 2 });
		gs_flow_map(f, plus1, NULL);
		cr_assert_eq(gs_flow_through_stages(
				     f, p, user, nuser,
				     &(gs_flow_through_opts){
					     .in_max_demand = 100,
					     .stages = 1 + (size_t)round % 2 }),
			     GS_OK, "%s", gs_flow_errmsg(f));
		gs_flow_filter(f, not_div3, NULL);
		void **out;
		size_t no;
		collect_ok(f, &out, &no);
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if ((v[i] + 1) * 2 % 3)
				v[k++] = (v[i] + 1) * 2;
		cr_assert_eq(atomic_load(&seen), n, "every event went through");
		expect_same_values(out, no, v, k, round);
		free(out);
		free(v);
		gs_pipeline_free(p);
		gs_flow_free(f);
	}
}

/* The caller's producer-consumer over boxes: fails at 777. */
static int pass_until_777(void *state, gs_stage *stage, gs_sub *from, void **ev,
			  size_t n)
{
	(void)state;
	(void)from;
	for (size_t i = 0; i < n; i++)
		if (*(uintptr_t *)ev[i] == 777) {
			for (size_t j = 0; j < n; j++)
				unbox(ev[j], NULL);
			return GS_EUSER + 3;
		}
	gs_err e = gs_emit(stage, ev, n);
	for (size_t i = 0; e && i < n; i++)
		unbox(ev[i], NULL);
	return e;
}

Test(flow_through, a_failing_user_stage_stops_the_flow_without_leaks,
     .timeout = 30)
{
	atomic_store(&live_boxes, 0);
	void **ev = malloc(5000 * sizeof(void *));
	for (size_t i = 0; i < 5000; i++)
		ev[i] = box(i + 1);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_array(ev, 5000,
					&(gs_flow_opts){ .event_free = unbox,
							 .max_demand = 20 },
					&f),
		     GS_OK);
	free(ev);
	gs_pipeline *p;
	gs_pipeline_new(&(gs_pipeline_opts){ .log = NULL }, &p);
	static const gs_stage_ops ops = { .handle_events = pass_until_777 };
	gs_stage *user;
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER_CONSUMER, &ops, NULL,
				  &(gs_stage_opts){ .event_free = unbox },
				  &user),
		     GS_OK);
	cr_assert_eq(gs_flow_through_stages(f, p, &user, 1, NULL), GS_OK);
	void **out;
	size_t n;
	cr_assert_eq(gs_flow_collect(f, &out, &n), GS_EUSER + 3, "%s",
		     gs_flow_errmsg(f));
	gs_pipeline_free(p);
	gs_flow_free(f);
	cr_assert_eq(atomic_load(&live_boxes), 0, "%ld leaked",
		     atomic_load(&live_boxes));
}

Test(flow_through, bad_through_stages_are_refused, .timeout = 30)
{
	gs_pipeline *p, *q;
	gs_pipeline_new(NULL, &p);
	gs_pipeline_new(NULL, &q);
	static const gs_stage_ops ops = { .handle_events = double_them };
	gs_stage *pc, *src;
	gs_stage_new(p, GS_PRODUCER_CONSUMER, &ops, NULL, NULL, &pc);
	gs_push_producer(q, NULL, &src);

	gs_flow *f = range(1, 10);
	cr_assert_eq(gs_flow_through_stages(f, NULL, &pc, 1, NULL), GS_EINVAL);
	gs_flow_free(f);
	f = range(1, 10);
	cr_assert_eq(gs_flow_through_stages(f, p, &pc, 0, NULL), GS_EINVAL);
	gs_flow_free(f);
	f = range(1, 10);
	gs_stage *none = NULL;
	cr_assert_eq(gs_flow_through_stages(f, p, &none, 1, NULL), GS_EINVAL);
	cr_assert(strstr(gs_flow_errmsg(f), "NULL"), "%s", gs_flow_errmsg(f));
	gs_flow_free(f);
	f = range(1, 10);
	cr_assert_eq(
		gs_flow_through_stages(
			f, p, &pc, 1,
			&(gs_flow_through_opts){
				.version = GS_FLOW_THROUGH_OPTS_VERSION + 1 }),
		GS_EVERSION);
	gs_flow_free(f);
	f = range(1, 10);
	cr_assert_eq(gs_flow_through_stages(
			     f, p, &pc, 1,
			     &(gs_flow_through_opts){ .in_max_demand = 5,
						      .in_min_demand = 9 }),
		     GS_EDEMAND);
	gs_flow_free(f);
	f = range(1, 10);
	cr_assert_eq(gs_flow_through_stages(
			     f, p, &pc, 1,
			     &(gs_flow_through_opts){ .min_demand = 2000 }),
		     GS_EDEMAND);
	gs_flow_free(f);
	/* Sources in q, the stages in p. */
	cr_assert_eq(gs_flow_from_stages(q, &src, 1, NULL, &f), GS_OK);
	cr_assert_eq(gs_flow_through_stages(f, p, &pc, 1, NULL), GS_EPIPELINE);
	gs_flow_free(f);
	/* Sources in p, stages of q given as p's: refused at once, and the
	 * sink gives that reason, not the pipeline's state. */
	gs_stage *qpc, *psrc;
	gs_stage_new(q, GS_PRODUCER_CONSUMER, &ops, NULL, NULL, &qpc);
	gs_push_producer(p, NULL, &psrc);
	cr_assert_eq(gs_flow_from_stages(p, &psrc, 1, NULL, &f), GS_OK);
	cr_assert_eq(gs_flow_through_stages(f, p, &qpc, 1, NULL), GS_EPIPELINE);
	cr_assert_not_null(strstr(gs_flow_errmsg(f), "not of the given"), "%s",
			   gs_flow_errmsg(f));
	cr_assert_eq(gs_flow_run(f), GS_EPIPELINE, "%s", gs_flow_errmsg(f));
	gs_flow_free(f);
	/* Producers of q given as p's. */
	cr_assert_eq(gs_flow_from_stages(p, &src, 1, NULL, &f), GS_EPIPELINE);
	gs_pipeline_free(p);
	gs_pipeline_free(q);
}

/* The hooks: they count what they saw. */
typedef struct seen {
	atomic_int errors, warnings;
	atomic_size_t batches;
} seen;

static void log_to(void *arg, gs_log_level level, const gs_stage *stage,
		   const char *msg)
{
	(void)stage;
	(void)msg;
	seen *s = arg;
	atomic_fetch_add(level == GS_LOG_ERROR ? &s->errors : &s->warnings, 1);
}
static void trace_to(void *arg, const gs_stage *from, const gs_stage *to,
		     size_t n)
{
	(void)from;
	(void)to;
	(void)n;
	atomic_fetch_add(&((seen *)arg)->batches, 1);
}
static int fail_at_99(void *arg, const void *e)
{
	(void)arg;
	return V(e) == 99 ? GS_EUSER + 9 : 0;
}

Test(flow_through, the_flow_takes_the_log_and_trace_hooks,
     .init = cr_redirect_stderr, .timeout = 30)
{
	seen s = { 0 };
	gs_pipeline_opts hooks = {
		.log = log_to, .log_arg = &s, .trace = trace_to, .trace_arg = &s
	};
	gs_flow *f = range(1, 1000);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 2 });
	cr_assert_eq(gs_flow_pipeline_opts(f, &hooks), GS_OK);
	gs_flow_each(f, fail_at_99, NULL);
	cr_assert_eq(gs_flow_run(f), GS_EUSER + 9);
	gs_flow_free(f);
	cr_assert_gt(atomic_load(&s.errors), 0, "the stop was logged");
	cr_assert_gt(atomic_load(&s.batches), 0, "batches were traced");
	fflush(stderr);
	cr_assert_stderr_eq_str("", "nothing went to stderr");
}

Test(flow_through, hooks_for_the_callers_pipeline_are_refused, .timeout = 30)
{
	seen s = { 0 };
	gs_pipeline_opts hooks = { .log = log_to, .log_arg = &s };
	gs_pipeline *p;
	gs_pipeline_new(NULL, &p);
	gs_stage *src;
	gs_push_producer(p, NULL, &src);
	gs_flow *f;
	cr_assert_eq(gs_flow_from_stages(p, &src, 1, NULL, &f), GS_OK);
	cr_assert_eq(gs_flow_pipeline_opts(f, &hooks), GS_OK);
	cr_assert_eq(gs_flow_run(f), GS_EINVAL);
	cr_assert(strstr(gs_flow_errmsg(f), "caller's pipeline"), "%s",
		  gs_flow_errmsg(f));
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_pipeline_opts(f, &hooks);
	gs_stage *out;
	cr_assert_eq(gs_flow_stream(f, p, NULL, &out), GS_EINVAL);
	gs_flow_free(f);
	gs_pipeline_free(p);
}
