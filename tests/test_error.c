// SPDX-License-Identifier: MIT
/* Error codes and messages, and every bad input refused with its code. */
#include <limits.h>
#include <string.h>

#include "gs_test.h"

/* Written out by hand, apart from the GS_ERRORS list, so that a message
 * changed or a code moved there shows here. */
static const struct {
	int code;
	const char *msg;
} expected[] = {
	{ GS_OK, "success" },
	{ GS_EINVAL, "invalid argument" },
	{ GS_ENOMEM, "out of memory" },
	{ GS_ESTATE, "not allowed in the current state" },
	{ GS_EKIND, "the stage's kind does not allow this" },
	{ GS_ESELF, "a stage cannot subscribe to itself" },
	{ GS_ECYCLE, "the subscription would create a cycle" },
	{ GS_EDEMAND, "min_demand must be less than max_demand" },
	{ GS_EPIPELINE, "the stages belong to different pipelines" },
	{ GS_ETHREAD, "not allowed from the calling thread or callback" },
	{ GS_ESPAWN, "could not start a thread" },
	{ GS_ECANCELED, "the subscription was cancelled" },
	{ GS_ETIMEDOUT, "timed out" },
	{ GS_EFULL, "buffer full" },
	{ GS_ECLOSED, "the stage, bus or stream is closed or has stopped" },
	{ GS_EBUSY, "the partition is already taken" },
	{ GS_EVERSION, "a struct version newer than this library knows" },
	{ GS_EEXIST, "the consumer is already subscribed to this producer" },
	{ GS_EIO, "an input/output error" },
};

#define N_EXPECTED (sizeof expected / sizeof expected[0])

/* The text for codes outside the list (error.h). */
#define UNKNOWN "unknown error"

Test(error, strerror_gives_each_code_the_message_written_here)
{
	cr_assert_eq(N_EXPECTED, (size_t)GS__ERR_COUNT,
		     "%d codes, %zu written here: add the new ones",
		     (int)GS__ERR_COUNT, N_EXPECTED);
	for (size_t i = 0; i < N_EXPECTED; i++) {
		cr_assert_eq(expected[i].code, (int)i,
			     "\"%s\" is code %d, not %zu: codes are ABI",
			     expected[i].msg, expected[i].code, i);
		cr_assert_str_eq(gs_strerror(expected[i].code), expected[i].msg,
				 "code %d", expected[i].code);
	}
}

Test(error, strerror_gives_every_code_a_distinct_nonempty_message)
{
	for (int i = 0; i < GS__ERR_COUNT; i++) {
		const char *a = gs_strerror(i);
		cr_assert_not_null(a, "code %d", i);
		cr_assert_neq(a[0], '\0', "code %d", i);
		cr_assert_str_neq(a, UNKNOWN, "code %d", i);
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(a, gs_strerror(j), "codes %d and %d",
					  i, j);
	}
}

Test(error, codes_are_ok_zero_and_positive_failures)
{
	cr_assert_eq(GS_OK, 0);
	cr_assert_gt(GS_EINVAL, 0);
	cr_assert_gt(GS_EUSER, GS__ERR_COUNT);
}

Test(error, negative_and_unlisted_codes_give_the_unknown_error_text)
{
	static const int unknown[] = {
		-1,
		-2,
		-GS_EINVAL,
		-GS_EUSER,
		INT_MIN,
		GS__ERR_COUNT,
		GS__ERR_COUNT + 1,
		GS_EUSER - 1,
	};
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
		cr_assert_str_eq(gs_strerror(unknown[i]), UNKNOWN, "code %d",
				 unknown[i]);
}

/* A callback's own code: one message for all of them, not a listed one's
 * and not the unknown-error text. */
Test(error, user_codes_from_gs_euser_up_share_a_message_of_their_own)
{
	const char *user = gs_strerror(GS_EUSER);
	cr_assert_not_null(user);
	cr_assert_neq(user[0], '\0');
	cr_assert_str_neq(user, UNKNOWN);
	for (int i = 0; i < GS__ERR_COUNT; i++)
		cr_assert_str_neq(user, gs_strerror(i), "code %d", i);
	static const int more[] = { GS_EUSER + 1, GS_TEST_FAIL, 123456,
				    INT_MAX };
	for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
		cr_assert_str_eq(gs_strerror(more[i]), user, "code %d",
				 more[i]);
}

/* --- NULL handles ------------------------------------------------------ */

Test(error, null_handles_are_refused_with_einval)
{
	cr_assert_eq(gs_pipeline_new(NULL, NULL), GS_EINVAL);
	cr_assert_eq(gs_pipeline_start(NULL), GS_EINVAL);
	cr_assert_eq(gs_pipeline_wait(NULL), GS_EINVAL);
	cr_assert_eq(gs_pipeline_stop(NULL, GS_STOP_DRAIN), GS_EINVAL);
	cr_assert_eq(gs_pipeline_stop(NULL, GS_STOP_NOW), GS_EINVAL);
	gs_pipeline_free(NULL);
	cr_assert_eq(gs_pipeline_write_dot(NULL, stderr), GS_EINVAL);

	gs_stage *s = (gs_stage *)&s;
	cr_assert_eq(gs_stage_new(NULL, GS_PRODUCER, &seq_producer_ops, NULL,
				  NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(s, (gs_stage *)&s, "out-param touched on error");

	void *ev = GS_EV(1);
	cr_assert_eq(gs_emit(NULL, &ev, 1), GS_EINVAL);
	cr_assert_eq(gs_done(NULL), GS_EINVAL);
	cr_assert_eq(gs_stage_stop(NULL, GS_OK), GS_EINVAL);
	cr_assert_eq(gs_stage_demand(NULL, GS_DEMAND_FORWARD), GS_EINVAL);
	cr_assert_eq(gs_subscribe(NULL, NULL, NULL, NULL), GS_EINVAL);
	cr_assert_eq(gs_cancel(NULL), GS_EINVAL);
	cr_assert_eq(gs_ask(NULL, 1), GS_EINVAL);
	gs_stats st;
	cr_assert_eq(gs_stage_stats(NULL, &st), GS_EINVAL);
	cr_assert_null(gs_stage_state(NULL));
	cr_assert_null(gs_sub_producer(NULL));
	cr_assert_null(gs_sub_consumer(NULL));
	void *reply = NULL;
	cr_assert_eq(gs_call(NULL, NULL, &reply, 0), GS_EINVAL);
	cr_assert_eq(gs_cast(NULL, NULL), GS_EINVAL);
}

Test(error, null_arguments_to_stage_new_are_refused_and_out_is_untouched)
{
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *sentinel = (gs_stage *)&p;
	gs_stage *s = sentinel;
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER, NULL, NULL, NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(s, sentinel);
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, NULL, NULL,
				  NULL),
		     GS_EINVAL);
	gs_stats st;
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, NULL, NULL,
				  &s),
		     GS_OK);
	cr_assert_eq(gs_stage_stats(s, NULL), GS_EINVAL);
	cr_assert_eq(gs_stage_stats(s, &st), GS_OK);
	cr_assert_eq(gs_subscribe(s, NULL, NULL, NULL), GS_EINVAL);
	cr_assert_eq(gs_subscribe(NULL, s, NULL, NULL), GS_EINVAL);
	gs_pipeline_free(p);
}

/* --- stage kinds and callbacks ------------------------------------------ */

static _Atomic int init_calls;

static int count_init(void *state, gs_stage *stage)
{
	(void)state;
	(void)stage;
	atomic_fetch_add(&init_calls, 1);
	return GS_OK;
}

static int no_demand(void *state, gs_stage *stage, size_t demand)
{
	(void)state;
	(void)stage;
	(void)demand;
	return GS_OK;
}

static int no_events(void *state, gs_stage *stage, gs_sub *from, void **ev,
		     size_t n)
{
	(void)state;
	(void)stage;
	(void)from;
	(void)ev;
	(void)n;
	return GS_OK;
}

Test(error, kind_zero_or_unknown_is_refused, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	static const gs_stage_ops ops = { .init = count_init,
					  .handle_demand = no_demand,
					  .handle_events = no_events };
	gs_stage *sentinel = (gs_stage *)&p;
	gs_stage *s = sentinel;
	cr_assert_eq(gs_stage_new(p, (gs_kind)0, &ops, NULL, NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(gs_stage_new(p, (gs_kind)(GS_CONSUMER + 1), &ops, NULL,
				  NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(gs_stage_new(p, (gs_kind)-1, &ops, NULL, NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(s, sentinel);
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* A refused stage on a running pipeline never runs a callback. */
	cr_assert_eq(gs_stage_new(p, (gs_kind)0, &ops, NULL, NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	gs_pipeline_free(p);
	cr_assert_eq(atomic_load(&init_calls), 0);
}

Test(error, a_missing_required_callback_is_refused, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *sentinel = (gs_stage *)&p;
	gs_stage *s = sentinel;
	static const gs_stage_ops events_only = { .init = count_init,
						  .handle_events = no_events };
	static const gs_stage_ops demand_only = { .init = count_init,
						  .handle_demand = no_demand };
	static const gs_stage_ops none = { .init = count_init };
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER, &events_only, NULL, NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER, &none, NULL, NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(gs_stage_new(p, GS_CONSUMER, &demand_only, NULL, NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER_CONSUMER, &demand_only, NULL,
				  NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(gs_stage_new(p, GS_CONSUMER, &none, NULL, NULL, &s),
		     GS_EINVAL);
	cr_assert_eq(s, sentinel);
	gs_pipeline_free(p);
	cr_assert_eq(atomic_load(&init_calls), 0);
}

Test(error, a_partition_dispatcher_needs_partitions_and_a_hash)
{
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *s = NULL;
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, NULL,
				  &(gs_stage_opts){
					  .dispatcher = gs_dispatcher_partition(
						  0, NULL, NULL) },
				  &s),
		     GS_EINVAL);
	cr_assert_null(s);
	gs_pipeline_free(p);
}

/* Keeps the last message logged with no stage, and its level. */
typedef struct refusal_log {
	char last[256];
	int lines;
	gs_log_level level;
} refusal_log;

static void keep_refusal(void *arg, gs_log_level level, const gs_stage *stage,
			 const char *msg)
{
	refusal_log *l = arg;
	if (stage)
		return;
	snprintf(l->last, sizeof l->last, "%s", msg);
	l->level = level;
	l->lines++;
}

Test(error, a_refused_stage_is_named_in_a_message_that_says_why)
{
	refusal_log l = { .lines = 0 };
	gs_pipeline *p = pipeline_new(
		&(gs_pipeline_opts){ .log = keep_refusal, .log_arg = &l });
	static const gs_stage_ops demand_only = { .handle_demand = no_demand };
	gs_stage *s = NULL;
	static const struct {
		gs_kind kind;
		const gs_stage_ops *ops;
		gs_stage_opts opts;
		gs_err code;
		const char *said;
	} cases[] = {
		{ (gs_kind)9,
		  &seq_producer_ops,
		  { .name = "k" },
		  GS_EINVAL,
		  "gs_stage_new k: unknown kind 9" },
		{ GS_CONSUMER,
		  &demand_only,
		  { .name = "c" },
		  GS_EINVAL,
		  "gs_stage_new c: a consumer or producer-consumer needs "
		  "handle_events" },
		{ GS_PRODUCER,
		  &seq_producer_ops,
		  { .name = "b", .buffer_keep = (gs_keep)7 },
		  GS_EINVAL,
		  "gs_stage_new b: unknown buffer_keep 7" },
		{ GS_PRODUCER,
		  &seq_producer_ops,
		  { .name = "d", .demand = (gs_demand_mode)5 },
		  GS_EINVAL,
		  "gs_stage_new d: unknown demand mode 5" },
		{ GS_PRODUCER,
		  &seq_producer_ops,
		  { .name = "part" },
		  GS_EINVAL,
		  "gs_stage_new part: invalid dispatcher" },
		{ GS_CONSUMER,
		  &recorder_ops,
		  { .name = "cd" },
		  GS_EKIND,
		  "gs_stage_new cd: a consumer has no dispatcher" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		gs_stage_opts o = cases[i].opts;
		if (i >= 4)
			o.dispatcher = gs_dispatcher_partition(i == 4 ? 0 : 2,
							       NULL, NULL);
		int before = l.lines;
		cr_expect_eq(gs_stage_new(p, cases[i].kind, cases[i].ops, NULL,
					  &o, &s),
			     cases[i].code, "case %zu", i);
		cr_expect_eq(l.lines, before + 1, "case %zu: one message", i);
		cr_expect_eq(l.level, GS_LOG_ERROR);
		cr_expect_not_null(strstr(l.last, cases[i].said),
				   "case %zu: %s", i, l.last);
	}
	cr_expect_null(s);
	gs_pipeline_free(p);
}

/* --- subscriptions ------------------------------------------------------ */

typedef struct graph {
	gs_pipeline *p;
	gs_stage *prod, *pc1, *pc2, *pc3, *cons;
	seq_producer sp;
	mapper m1, m2, m3;
	recorder r;
} graph;

static void graph_new(graph *g)
{
	*g = (graph){ .sp = { .total = 0 } };
	g->p = pipeline_new(NULL);
	g->prod = seq_producer_new(g->p, &g->sp, NULL);
	g->pc1 = mapper_new(g->p, &g->m1, NULL);
	g->pc2 = mapper_new(g->p, &g->m2, NULL);
	g->pc3 = mapper_new(g->p, &g->m3, NULL);
	g->cons = recorder_new(g->p, &g->r, NULL);
}

/* Subscribes the whole graph in a line, so that a started pipeline
 * finishes: prod -> pc1 -> pc2 -> pc3 -> cons. */
static void graph_chain(graph *g)
{
	GS_OK_OR_DIE(gs_subscribe(g->pc1, g->prod, NULL, NULL));
	GS_OK_OR_DIE(gs_subscribe(g->pc2, g->pc1, NULL, NULL));
	GS_OK_OR_DIE(gs_subscribe(g->pc3, g->pc2, NULL, NULL));
	GS_OK_OR_DIE(gs_subscribe(g->cons, g->pc3, NULL, NULL));
}

Test(error, min_demand_at_or_above_max_demand_is_refused)
{
	graph g;
	graph_new(&g);
	gs_sub *sentinel = (gs_sub *)&g;
	gs_sub *sub = sentinel;
	cr_assert_eq(gs_subscribe(g.cons, g.prod,
				  &(gs_sub_opts){ .max_demand = 10,
						  .min_demand = 10 },
				  &sub),
		     GS_EDEMAND);
	cr_assert_eq(gs_subscribe(g.cons, g.prod,
				  &(gs_sub_opts){ .max_demand = 10,
						  .min_demand = 11 },
				  &sub),
		     GS_EDEMAND);
	/* The default max is 1000. */
	cr_assert_eq(gs_subscribe(g.cons, g.prod,
				  &(gs_sub_opts){ .min_demand = 1000 }, &sub),
		     GS_EDEMAND);
	cr_assert_eq(sub, sentinel, "out-param touched on error");
	/* Zero spelled explicitly, and max 1 with its default min of 0, are
	 * fine. */
	GS_OK_OR_DIE(
		gs_subscribe(g.cons, g.prod,
			     &(gs_sub_opts){ .max_demand = 10,
					     .min_demand = GS_MIN_DEMAND_ZERO },
			     NULL));
	GS_OK_OR_DIE(gs_subscribe(g.pc1, g.prod,
				  &(gs_sub_opts){ .max_demand = 1 }, NULL));
	gs_pipeline_free(g.p);
}

Test(error, a_consumer_cannot_produce_nor_a_producer_consume)
{
	graph g;
	graph_new(&g);
	/* The consumer as the producer end. */
	cr_assert_eq(gs_subscribe(g.pc1, g.cons, NULL, NULL), GS_EKIND);
	/* The producer as the consumer end. */
	cr_assert_eq(gs_subscribe(g.prod, g.pc1, NULL, NULL), GS_EKIND);
	/* Both wrong way round. */
	cr_assert_eq(gs_subscribe(g.prod, g.cons, NULL, NULL), GS_EKIND);

	void *ev = GS_EV(1);
	cr_assert_eq(gs_emit(g.cons, &ev, 1), GS_EKIND);
	gs_pipeline_free(g.p);
}

Test(error, a_second_subscription_is_refused_from_either_side)
{
	gs_pipeline *p = pipeline_new(NULL);
	seq_producer sp[3] = { { .total = 0 }, { .total = 0 }, { .total = 0 } };
	recorder r[3] = { { 0 }, { 0 }, { 0 } };
	gs_stage *prod[3], *cons[3];
	for (int i = 0; i < 3; i++) {
		prod[i] = seq_producer_new(p, &sp[i], NULL);
		cons[i] = recorder_new(p, &r[i], NULL);
	}
	/* prod[0] feeds every consumer; cons[0] reads every producer. */
	for (int i = 0; i < 3; i++)
		GS_OK_OR_DIE(gs_subscribe(cons[i], prod[0], NULL, NULL));
	for (int i = 1; i < 3; i++)
		GS_OK_OR_DIE(gs_subscribe(cons[0], prod[i], NULL, NULL));
	/* A consumer with one producer, a producer with three consumers. */
	cr_assert_eq(gs_subscribe(cons[2], prod[0], NULL, NULL), GS_EEXIST);
	/* A consumer with three producers, a producer with one consumer. */
	cr_assert_eq(gs_subscribe(cons[0], prod[2], NULL, NULL), GS_EEXIST);
	/* Neither: allowed. */
	GS_OK_OR_DIE(gs_subscribe(cons[1], prod[1], NULL, NULL));
	gs_pipeline_free(p);
}

Test(error, a_stage_cannot_subscribe_to_itself)
{
	graph g;
	graph_new(&g);
	cr_assert_eq(gs_subscribe(g.pc1, g.pc1, NULL, NULL), GS_ESELF);
	gs_pipeline_free(g.p);
}

Test(error, a_cycle_among_producer_consumers_is_refused)
{
	graph g;
	graph_new(&g);
	GS_OK_OR_DIE(gs_subscribe(g.pc2, g.pc1, NULL, NULL));
	cr_assert_eq(gs_subscribe(g.pc1, g.pc2, NULL, NULL), GS_ECYCLE);
	GS_OK_OR_DIE(gs_subscribe(g.pc3, g.pc2, NULL, NULL));
	cr_assert_eq(gs_subscribe(g.pc1, g.pc3, NULL, NULL), GS_ECYCLE);
	/* A diamond is not a cycle. */
	GS_OK_OR_DIE(gs_subscribe(g.pc3, g.pc1, NULL, NULL));
	GS_OK_OR_DIE(gs_subscribe(g.pc1, g.prod, NULL, NULL));
	GS_OK_OR_DIE(gs_subscribe(g.cons, g.pc3, NULL, NULL));
	gs_pipeline_free(g.p);
}

Test(error, stages_of_two_pipelines_cannot_subscribe)
{
	graph a, b;
	graph_new(&a);
	graph_new(&b);
	cr_assert_eq(gs_subscribe(a.cons, b.prod, NULL, NULL), GS_EPIPELINE);
	cr_assert_eq(gs_subscribe(b.pc1, a.pc1, NULL, NULL), GS_EPIPELINE);
	gs_pipeline_free(a.p);
	gs_pipeline_free(b.p);
}

static bool pick_all(void *arg, const void *event)
{
	(void)arg;
	(void)event;
	return true;
}

Test(error, a_selector_needs_a_broadcast_producer)
{
	graph g;
	graph_new(&g);
	cr_assert_eq(gs_subscribe(g.cons, g.prod,
				  &(gs_sub_opts){ .selector = pick_all }, NULL),
		     GS_EINVAL);
	gs_pipeline_free(g.p);
}

Test(error, subscribing_to_a_finished_stage_is_refused,
     .timeout = GS_TEST_TIMEOUT)
{
	graph g;
	graph_new(&g);
	g.sp.done_in_init = true;
	graph_chain(&g);
	cr_assert_eq(start_and_wait(g.p), GS_OK);
	cr_assert_eq(gs_subscribe(g.pc1, g.prod, NULL, NULL), GS_ECLOSED);
	cr_assert_eq(gs_subscribe(g.cons, g.pc3, NULL, NULL), GS_ECLOSED);
	gs_pipeline_free(g.p);
}

/* --- threads and states ------------------------------------------------- */

Test(error, emit_and_done_from_outside_the_stage_thread_are_refused)
{
	graph g;
	graph_new(&g);
	void *ev = GS_EV(1);
	cr_assert_eq(gs_emit(g.prod, &ev, 1), GS_ETHREAD);
	cr_assert_eq(gs_emit(g.pc1, &ev, 1), GS_ETHREAD);
	cr_assert_eq(gs_done(g.prod), GS_ETHREAD);
	gs_pipeline_free(g.p);
}

/* A producer that tries to emit into another stage from its own thread. */
typedef struct meddler {
	gs_stage *other;
	_Atomic int emit_err;
	_Atomic int done_err;
	_Atomic int tried;
} meddler;

static int meddle_init(void *state, gs_stage *stage)
{
	meddler *m = state;
	void *ev = GS_EV(7);
	atomic_store(&m->emit_err, gs_emit(m->other, &ev, 1));
	atomic_store(&m->done_err, gs_done(m->other));
	atomic_store(&m->tried, 1);
	return gs_done(stage);
}

Test(error, emit_into_another_stage_from_a_callback_is_refused,
     .timeout = GS_TEST_TIMEOUT)
{
	graph g;
	graph_new(&g);
	g.sp.done_in_init = true;
	graph_chain(&g);
	meddler m = { .other = g.prod };
	gs_stage *s = NULL;
	static const gs_stage_ops ops = { .init = meddle_init,
					  .handle_demand = no_demand };
	GS_OK_OR_DIE(gs_stage_new(g.p, GS_PRODUCER, &ops, &m, NULL, &s));
	cr_assert_eq(start_and_wait(g.p), GS_OK);
	cr_assert_eq(atomic_load(&m.tried), 1);
	cr_assert_eq(atomic_load(&m.emit_err), GS_ETHREAD);
	cr_assert_eq(atomic_load(&m.done_err), GS_ETHREAD);
	gs_pipeline_free(g.p);
}

typedef struct asker {
	recorder rec;
	_Atomic int ask_err;
} asker;

static int ask_events(void *state, gs_stage *stage, gs_sub *from, void **ev,
		      size_t n)
{
	asker *a = state;
	(void)stage;
	atomic_store(&a->ask_err, gs_ask(from, 1));
	return recorder_take(&a->rec, from, ev, n);
}

Test(error, ask_on_an_automatic_subscription_is_refused,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	seq_producer sp = { .total = 10 };
	asker a = { .ask_err = -1 };
	gs_stage *prod = NULL, *cons = NULL;
	static const gs_stage_ops ops = { .handle_events = ask_events };
	prod = seq_producer_new(p, &sp, NULL);
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &ops, &a, NULL, &cons));
	gs_sub *sub = recorder_subscribe(&a.rec, cons, prod, NULL);
	/* And from outside the consumer's thread. */
	cr_assert_neq(gs_ask(sub, 1), GS_OK);
	cr_assert_eq(start_and_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&a.ask_err), GS_ESTATE);
	cr_assert_eq(atomic_load(&a.rec.received), 10);
	gs_pipeline_free(p);
}

Test(error, starting_twice_is_refused, .timeout = GS_TEST_TIMEOUT)
{
	graph g;
	graph_new(&g);
	g.sp.done_in_init = true;
	graph_chain(&g);
	GS_OK_OR_DIE(gs_pipeline_start(g.p));
	cr_assert_eq(gs_pipeline_start(g.p), GS_ESTATE);
	cr_assert_eq(gs_pipeline_wait(g.p), GS_OK);
	cr_assert_eq(gs_pipeline_start(g.p), GS_ESTATE);
	gs_pipeline_free(g.p);
}

Test(error, an_unknown_cancel_mode_or_keep_policy_is_refused)
{
	graph g;
	graph_new(&g);
	cr_assert_eq(gs_subscribe(g.cons, g.prod,
				  &(gs_sub_opts){ .cancel = (gs_cancel_mode)7 },
				  NULL),
		     GS_EINVAL);
	gs_stage *s = NULL;
	cr_assert_eq(gs_stage_new(g.p, GS_PRODUCER, &seq_producer_ops, &g.sp,
				  &(gs_stage_opts){ .buffer_keep = (gs_keep)5 },
				  &s),
		     GS_EINVAL);
	cr_assert_null(s);
	cr_assert_eq(gs_pipeline_stop(g.p, (gs_stop_mode)9), GS_EINVAL);
	gs_pipeline_free(g.p);
}
