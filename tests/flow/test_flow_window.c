// SPDX-License-Identifier: MIT
/* Windows and triggers, against the expectations of Flow's documentation
 * computed by hand or a sequential run on random input: custom triggers,
 * emit_and_reduce, and windows refused where nothing reduces. */
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "flow_test.h"

Test(flow_window, global_trigger_every_keeps_the_sum, .timeout = 30)
{
	gs_flow *f = range(1, 100);
	gs_flow_partition(f, &(gs_flow_partition_opts){
				     .stages = 1,
				     .window = gs_flow_window_trigger_every(
					     gs_flow_window_global(), 10) });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_emit(f, GS_FLOW_EMIT_STATE);
	static const uintptr_t want[] = { 55,   210,  465,  820,  1275, 1830,
					  2485, 3240, 4095, 5050, 5050 };
	expect_results(f, want, 11);
}

Test(flow_window, count_window_ends_with_an_empty_window, .timeout = 30)
{
	gs_flow *f = range(1, 100);
	gs_flow_partition(f, &(gs_flow_partition_opts){
				     .stages = 1,
				     .window = gs_flow_window_count(10) });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	static const uintptr_t want[] = { 55,  155, 255, 355, 455, 555,
					  655, 755, 855, 955, 0 };
	expect_results(f, want, 11);
}

/* Word events as ts*4 + word; a window's accumulator counts each word in
 * its own 16 bits. */
enum { ELIXIR, ERLANG, CONCURRENCY };
#define EV(w, ts) ((uintptr_t)(ts)*4 + (w))
#define C(e, er, c)                                                            \
	((uintptr_t)(e) | (uintptr_t)(er) << 16 | (uintptr_t)(c) << 32)

static int64_t ev_time(void *arg, const void *e)
{
	(void)arg;
	return (int64_t)(V(e) / 4);
}
static int count_words(void *arg, void **acc, void *e)
{
	(void)arg;
	*acc = U(V(*acc) + ((uintptr_t)1 << (16 * (V(e) % 4))));
	return 0;
}
static atomic_int dropped;
static void count_drop(void *e, void *arg)
{
	(void)e;
	(void)arg;
	atomic_fetch_add(&dropped, 1);
}

/* Counts the words of `data` in fixed windows of an hour (with
 * `lateness`), and checks that the windows' counts are `want`. */
static void check_fixed(const uintptr_t *data, size_t n, int64_t lateness,
			const uintptr_t *want, size_t nw)
{
	gs_flow *f = ints_flow(data, n,
			       &(gs_flow_opts){ .event_free = count_drop });
	gs_flow_window w = gs_flow_window_fixed(3600000, ev_time, NULL);
	if (lateness)
		w = gs_flow_window_lateness(w, lateness);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 1,
							.window = w,
							.max_demand = 5 });
	gs_flow_reduce(f, NULL, count_words, NULL);
	expect_results(f, want, nw);
}

Test(flow_window, fixed_windows_split_by_event_time, .timeout = 30)
{
	static const uintptr_t data[] = {
		EV(ELIXIR, 0),       EV(ELIXIR, 1000),
		EV(ERLANG, 60000),   EV(CONCURRENCY, 3200000),
		EV(ELIXIR, 4000000), EV(ERLANG, 5000000),
		EV(ERLANG, 6000000),
	};
	static const uintptr_t want[] = { C(2, 1, 1), C(1, 2, 0) };
	check_fixed(data, 7, 0, want, 2);
}

/* The first hour's last word comes after the second hour's. */
static const uintptr_t late[] = {
	EV(ELIXIR, 1000),    EV(ERLANG, 60000),   EV(CONCURRENCY, 3200000),
	EV(ELIXIR, 4000000), EV(ERLANG, 5000000), EV(ERLANG, 6000000),
	EV(ELIXIR, 0),
};

Test(flow_window, fixed_window_drops_late_events_without_lateness,
     .timeout = 30)
{
	atomic_store(&dropped, 0);
	static const uintptr_t want[] = { C(1, 1, 1), C(1, 2, 0) };
	check_fixed(late, 7, 0, want, 2);
	cr_assert_eq(atomic_load(&dropped), 1);
}

Test(flow_window, fixed_window_with_lateness_fires_watermark_then_done,
     .timeout = 30)
{
	static const uintptr_t want[] = { C(1, 1, 1), C(2, 1, 1), C(1, 2, 0) };
	check_fixed(late, 7, 300000, want, 3);
}

/* Records (trigger kind, window id, acc) in order; `n` is read by the test
 * while the flow runs. */
typedef struct rec {
	uintptr_t kind[512], id[512], acc[512];
	_Atomic size_t n;
} rec;
static int record(void *arg, void **acc, const gs_flow_trigger *t,
		  gs_flow_out *out)
{
	(void)out;
	rec *r = arg;
	size_t n = atomic_load(&r->n);
	if (n < 512) {
		r->kind[n] = t->kind;
		r->id[n] = (uintptr_t)t->window_id;
		r->acc[n] = V(*acc);
		atomic_store(&r->n, n + 1);
	}
	return 0;
}

/* Pushes 1..100 through a one-stage flow partitioned with `w` and reduced
 * to their sum, recording every trigger in r. The events go in five
 * groups, each pushed once a trigger has fired since the last, so that
 * they span several periods however the threads are scheduled. */
static void run_pushed(gs_flow_window w, rec *r)
{
	gs_pipeline *p;
	gs_stage *push;
	gs_flow *f = pushed_flow(&p, &push);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 1,
							.window = w });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_on_trigger(f, record, r);
	gs_stage *s;
	cr_assert_eq(gs_flow_stream(f, p, NULL, &s), GS_OK);
	cr_assert_eq(gs_pipeline_start(p), GS_OK);
	for (uintptr_t i = 1; i <= 100; i++) {
		if (i % 20 == 1)
			for (size_t seen = atomic_load(&r->n);
			     atomic_load(&r->n) == seen;)
				nanosleep(&(struct timespec){ 0, 100000 },
					  NULL);
		void *e = U(i);
		cr_assert_eq(gs_push(push, &e, 1, -1), GS_OK);
	}
	cr_assert_eq(gs_push_close(push), GS_OK);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	gs_pipeline_free(p);
	gs_flow_free(f);
}

Test(flow_window, periodic_window_splits_by_processing_time, .timeout = 30)
{
	rec r = { .n = 0 };
	run_pushed(gs_flow_window_periodic(20), &r);
	/* Several windows, numbered in order, all DONE, summing to 5050. */
	cr_assert_gt(r.n, 2, "only %zu windows", (size_t)r.n);
	uintptr_t total = 0;
	for (size_t i = 0; i < r.n; i++) {
		cr_assert_eq(r.kind[i], GS_FLOW_TRIGGER_DONE);
		cr_assert_eq(r.id[i], i);
		total += r.acc[i];
	}
	cr_assert_eq(total, 5050);
}

Test(flow_window, periodic_trigger_checkpoints_the_global_window, .timeout = 30)
{
	rec r = { .n = 0 };
	run_pushed(gs_flow_window_trigger_periodically(gs_flow_window_global(),
						       10),
		   &r);
	cr_assert_gt(r.n, 1);
	uintptr_t last = 0;
	for (size_t i = 0; i + 1 < r.n; i++) {
		cr_assert_eq(r.kind[i], GS_FLOW_TRIGGER_PERIODIC);
		cr_assert_geq(r.acc[i], last, "running sums never fall");
		last = r.acc[i];
	}
	cr_assert_eq(r.kind[r.n - 1], GS_FLOW_TRIGGER_DONE);
	cr_assert_eq(r.acc[r.n - 1], 5050);
}

static void *ident(void *arg, void *e)
{
	(void)arg;
	return e;
}

Test(flow_window, a_window_on_a_layer_that_reduces_nothing_is_refused,
     .timeout = 30)
{
	/* Flow refuses it too: the window would have no effect. */
	const gs_flow_window windows[] = {
		gs_flow_window_count(10),
		gs_flow_window_trigger_every(gs_flow_window_global(), 5),
		gs_flow_window_periodic(1000),
	};
	for (size_t i = 0; i < 3; i++) {
		gs_flow *f = range(1, 100);
		cr_assert_eq(gs_flow_partition(f,
					       &(gs_flow_partition_opts){
						       .stages = 2,
						       .window = windows[i] }),
			     GS_OK);
		gs_flow_map(f, ident, NULL);
		void **out;
		size_t n;
		cr_assert_eq(gs_flow_collect(f, &out, &n), GS_EINVAL);
		cr_assert(strstr(gs_flow_errmsg(f), "reduces nothing"), "%s",
			  gs_flow_errmsg(f));
		gs_flow_free(f);
	}
	gs_flow *f = range(1, 100);
	gs_flow_shuffle(f, &(gs_flow_partition_opts){
				   .window = gs_flow_window_count(10) });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	cr_assert_eq(gs_flow_run(f), GS_OK, "with a reduce it runs");
	gs_flow_free(f);
}

/* A punctuation: fires after every multiple of 10, and before every
 * value above 95 (one trigger each); counts the events in its state. */
static gs_flow_fire at_tens(void *arg, uint64_t *state, const void *e)
{
	(void)arg;
	++*state;
	if (V(e) > 95)
		return GS_FLOW_FIRE_BEFORE;
	return V(e) % 10 == 0 ? GS_FLOW_FIRE_AFTER : GS_FLOW_FIRE_NO;
}
/* Emits the sum so far and the trigger's state, and restarts the sum. */
static int sum_and_state(void *arg, void **acc, const gs_flow_trigger *t,
			 gs_flow_out *out)
{
	(void)arg;
	cr_assert(t->kind == GS_FLOW_TRIGGER_CUSTOM ||
		  t->kind == GS_FLOW_TRIGGER_DONE);
	int e = gs_flow_out_push(out, U(V(*acc) << 16 | t->state));
	*acc = NULL;
	return e;
}

Test(flow_window, a_custom_trigger_fires_where_its_function_says, .timeout = 30)
{
	gs_flow *f = range(1, 100);
	gs_flow_partition(
		f, &(gs_flow_partition_opts){
			   .stages = 1,
			   .window = gs_flow_window_trigger(
				   gs_flow_window_global(), at_tens, NULL) });
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	gs_flow_on_trigger(f, sum_and_state, NULL);
	/* After 10, 20, .. 90; before 96, 97, 98, 99, 100; then done. */
	uintptr_t want[16];
	size_t k = 0;
	uintptr_t sum = 0;
	for (uintptr_t v = 1; v <= 100; v++) {
		if (v > 95) {
			want[k++] = sum << 16 | v;
			sum = 0;
		}
		sum += v;
		if (v % 10 == 0 && v <= 95) {
			want[k++] = sum << 16 | v;
			sum = 0;
		}
	}
	want[k++] = sum << 16 | 100;
	expect_results(f, want, k);
}

/* Fires after every value divisible by 7. */
static gs_flow_fire at_sevens(void *arg, uint64_t *state, const void *e)
{
	(void)arg;
	(void)state;
	return V(e) % 7 == 0 ? GS_FLOW_FIRE_AFTER : GS_FLOW_FIRE_NO;
}
static size_t by_mod4(void *arg, const void *e)
{
	(void)arg;
	return V(e) % 4;
}

Test(flow_window, custom_triggers_on_random_input_match_a_sequential_run,
     .timeout = 30)
{
	srand(23);
	for (int round = 0; round < FLOW_TEST_ROUNDS; round++) {
		size_t n = (size_t)(rand() % 20000);
		uintptr_t *v = random_ints(n, 100000);
		gs_flow *f = ints_flow(v, n, NULL);
		gs_flow_partition(f, &(gs_flow_partition_opts){
					     .stages = 4,
					     .hash = by_mod4,
					     .max_demand = 30,
					     .window = gs_flow_window_trigger(
						     gs_flow_window_global(),
						     at_sevens, NULL) });
		gs_flow_reduce(f, NULL, sum_reducer, NULL);
		gs_flow_on_trigger(f, sum_and_state, NULL);
		void **out;
		size_t no;
		collect_ok(f, &out, &no);
		/* Each partition sees its events in order: a segment sum
		 * after each multiple of 7, and the rest at the end. */
		uintptr_t *w = malloc((n + 4) * sizeof(*w));
		size_t k = 0;
		for (uintptr_t p = 0; p < 4; p++) {
			uintptr_t sum = 0;
			for (size_t i = 0; i < n; i++) {
				if (v[i] % 4 != p)
					continue;
				sum += v[i];
				if (v[i] % 7 == 0) {
					w[k++] = sum << 16;
					sum = 0;
				}
			}
			w[k++] = sum << 16;
		}
		expect_same_values(out, no, w, k, round);
		free(w);
		free(out);
		free(v);
		gs_flow_free(f);
	}
}

/* Flow's emit_and_reduce example: a sliding window of the 3 latest
 * events, packed 16 bits each, emitted at every event. */
static int slide3(void *arg, void **acc, void *e, gs_flow_out *out)
{
	(void)arg;
	uintptr_t w = (V(*acc) << 16 | V(e)) & 0xffffffffffff;
	*acc = U(w);
	return gs_flow_out_push(out, U(w));
}

Test(flow_window, emit_and_reduce_emits_as_it_folds, .timeout = 30)
{
	gs_flow *f = range(1, 5);
	gs_flow_partition(f, &(gs_flow_partition_opts){ .stages = 1 });
	cr_assert_eq(gs_flow_emit_and_reduce(f, NULL, slide3, NULL), GS_OK);
#define W3(a, b, c) ((uintptr_t)(a) << 32 | (uintptr_t)(b) << 16 | (c))
	const uintptr_t want[] = { W3(0, 0, 1), W3(0, 1, 2), W3(1, 2, 3),
				   W3(2, 3, 4), W3(3, 4, 5) };
	expect_results(f, want, 5); /* and no accumulator at the end */
}

/* Running sums: emits the sum so far at every event. */
static int running_sum(void *arg, void **acc, void *e, gs_flow_out *out)
{
	(void)arg;
	*acc = U(V(*acc) + V(e));
	return gs_flow_out_push(out, *acc);
}

Test(flow_window, emit_and_reduce_on_random_input_matches_a_sequential_run,
     .timeout = 30)
{
	srand(29);
	for (int round = 0; round < FLOW_TEST_ROUNDS; round++) {
		size_t n = (size_t)(rand() % 20000);
		uintptr_t *v = random_ints(n, 100000);
		gs_flow *f = ints_flow(v, n, NULL);
		gs_flow_partition(f,
				  &(gs_flow_partition_opts){
					  .stages = 4,
					  .hash = by_mod4,
					  .max_demand = 40,
					  .window = gs_flow_window_count(50) });
		gs_flow_emit_and_reduce(f, NULL, running_sum, NULL);
		void **out;
		size_t no;
		collect_ok(f, &out, &no);
		/* Per partition, the running sum within windows of 50. */
		uintptr_t *w = malloc((n + 1) * sizeof(*w));
		size_t k = 0;
		for (uintptr_t p = 0; p < 4; p++) {
			uintptr_t sum = 0, c = 0;
			for (size_t i = 0; i < n; i++) {
				if (v[i] % 4 != p)
					continue;
				sum += v[i];
				w[k++] = sum;
				if (++c == 50)
					sum = c = 0;
			}
		}
		expect_same_values(out, no, w, k, round);
		free(w);
		free(out);
		free(v);
		gs_flow_free(f);
	}
}

static int keep_sum(void *arg, void **acc, void *e, gs_flow_out *out)
{
	(void)arg;
	(void)out;
	*acc = U(V(*acc) + V(e));
	return 0;
}

Test(flow_window, emit_and_reduce_refuses_what_cannot_apply, .timeout = 30)
{
	gs_flow *f = range(1, 10);
	gs_flow_partition(f, NULL);
	cr_assert_eq(gs_flow_emit_and_reduce(f, NULL, NULL, NULL), GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_emit_and_reduce(f, NULL, keep_sum, NULL);
	cr_assert_eq(gs_flow_emit(f, GS_FLOW_EMIT_STATE), GS_EINVAL,
		     "its accumulator is not an event");
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_emit_and_reduce(f, NULL, keep_sum, NULL);
	cr_assert_eq(gs_flow_departition_merge(
			     f,
			     &(gs_flow_departition_fns){ .merge = sum_reducer },
			     NULL),
		     GS_EINVAL);
	gs_flow_free(f);

	f = range(1, 10);
	gs_flow_partition(f, NULL);
	gs_flow_reduce(f, NULL, sum_reducer, NULL);
	cr_assert_eq(gs_flow_emit_and_reduce(f, NULL, keep_sum, NULL),
		     GS_EINVAL, "one reduce per layer");
	gs_flow_free(f);
}
