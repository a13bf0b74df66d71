// SPDX-License-Identifier: MIT
/*
 * demo: the smallest complete pipeline, producer -> producer-consumer ->
 * consumer. "numbers" emits the integers 1..N, only as many at a time as
 * were asked for, and finishes with gs_done; "squares" squares them; "sum"
 * adds them up. Demand flows up and events flow down, so however fast the
 * producer is, no more than max_demand events per subscription are ever in
 * flight. The pipeline runs to completion by itself; the demo then checks
 * the sum against N(N+1)(2N+1)/6, prints each stage's counters, and writes
 * the graph in Graphviz dot syntax.
 *
 * Run:  make demo
 *   or  build/examples/demo [N [FILE]]
 * N defaults to 1000000; the graph goes to FILE, or to stdout without one
 * (render it with `dot -Tpng FILE -o graph.png`).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <genstage/genstage.h>

/* Events are void pointers; integers travel as uintptr_t. */
#define AS_EVENT(x) ((void *)(uintptr_t)(x))
#define AS_INT(e) ((uintptr_t)(e))

/* Events are emitted from a stack array, this many at a time. */
#define CHUNK 256

typedef struct numbers {
	uintptr_t next, last;
} numbers;

typedef struct total {
	uint64_t sum, count;
} total;

/* numbers's callback, run (on a worker thread) whenever its consumers
 * want more. */
static int numbers_demand(void *state, gs_stage *stage, size_t demand)
{
	numbers *s = state;
	void *chunk[CHUNK];

	while (demand > 0 && s->next <= s->last) {
		size_t n = 0;
		while (n < CHUNK && n < demand && s->next <= s->last)
			chunk[n++] = AS_EVENT(s->next++);
		gs_err err = gs_emit(stage, chunk, n);
		if (err != GS_OK)
			return err;
		demand -= n;
	}
	if (s->next > s->last)
		return gs_done(stage);
	return GS_OK;
}

/* squares's callback: emits one square per event it receives. */
static int squares_events(void *state, gs_stage *stage, gs_sub *from,
			  void **events, size_t n)
{
	void *chunk[CHUNK];

	(void)state;
	(void)from;
	for (size_t i = 0; i < n;) {
		size_t k = 0;
		for (; k < CHUNK && i < n; k++, i++) {
			uintptr_t x = AS_INT(events[i]);
			chunk[k] = AS_EVENT(x * x);
		}
		gs_err err = gs_emit(stage, chunk, k);
		if (err != GS_OK)
			return err;
	}
	return GS_OK;
}

/* sum's callback; a stage's callbacks never run at once, so only they
 * touch the total. */
static int sum_events(void *state, gs_stage *stage, gs_sub *from, void **events,
		      size_t n)
{
	total *t = state;

	(void)stage;
	(void)from;
	for (size_t i = 0; i < n; i++)
		t->sum += AS_INT(events[i]);
	t->count += n;
	return GS_OK;
}

static const gs_stage_ops numbers_ops = { .handle_demand = numbers_demand };
static const gs_stage_ops squares_ops = { .handle_events = squares_events };
static const gs_stage_ops sum_ops = { .handle_events = sum_events };

static void print_stats(gs_stage *stage)
{
	gs_stats st;

	if (gs_stage_stats(stage, &st) != GS_OK)
		return;
	printf("%-8s %10" PRIu64 " %10" PRIu64 " %9" PRIu64 " %9" PRIu64
	       " %8" PRIu64 " %9.1f\n",
	       gs_stage_name(stage), st.events_in, st.events_out, st.batches_in,
	       st.batches_out, st.dropped, st.busy_ns / 1e6);
}

static int write_graph(gs_pipeline *p, const char *path)
{
	FILE *f = path ? fopen(path, "w") : stdout;

	if (!f) {
		perror(path);
		return 1;
	}
	gs_err err = gs_pipeline_write_dot(p, f);
	if (path && fclose(f) != 0)
		err = err ? err : GS_EINVAL;
	if (err != GS_OK) {
		fprintf(stderr, "demo: writing the graph: %s\n",
			gs_strerror(err));
		return 1;
	}
	if (path)
		printf("graph written to %s\n", path);
	return 0;
}

int main(int argc, char **argv)
{
	uintptr_t n = argc > 1 ? (uintptr_t)strtoull(argv[1], NULL, 10)
			       : 1000000;
	const char *graph = argc > 2 ? argv[2] : NULL;

	/* The squares must fit in an event, and their sum in 64 bits. */
	if (n == 0 || n > (UINTPTR_MAX > UINT32_MAX ? 2000000 : 65535)) {
		fprintf(stderr, "usage: %s [N [FILE]], 1 <= N <= 2000000\n",
			argv[0]);
		return 2;
	}

	numbers src = { .next = 1, .last = n };
	total tot = { 0 };
	gs_pipeline *p = NULL;
	gs_stage *numbers_st, *squares_st, *sum_st;
	/* Held so that the graph, written after the run, still draws the
	 * subscriptions (ended by then); gs_pipeline_free frees them. */
	gs_sub *numbers_to_squares, *squares_to_sum;
	gs_err err;

	/* Build the graph, subscribe each stage to the one above it, run it
	 * to completion: numbers -> squares -> sum. */
	if ((err = gs_pipeline_new(NULL, &p)) ||
	    (err = gs_stage_new(p, GS_PRODUCER, &numbers_ops, &src,
				&(gs_stage_opts){ .name = "numbers" },
				&numbers_st)) ||
	    (err = gs_stage_new(p, GS_PRODUCER_CONSUMER, &squares_ops, NULL,
				&(gs_stage_opts){ .name = "squares" },
				&squares_st)) ||
	    (err = gs_stage_new(p, GS_CONSUMER, &sum_ops, &tot,
				&(gs_stage_opts){ .name = "sum" }, &sum_st)) ||
	    (err = gs_subscribe(squares_st, numbers_st,
				&(gs_sub_opts){ .max_demand = 1000 },
				&numbers_to_squares)) ||
	    (err = gs_subscribe(sum_st, squares_st,
				&(gs_sub_opts){ .max_demand = 1000 },
				&squares_to_sum)) ||
	    (err = gs_pipeline_start(p)) || (err = gs_pipeline_wait(p))) {
		fprintf(stderr, "demo: %s\n", gs_strerror(err));
		gs_pipeline_free(p);
		return 1;
	}

	uint64_t n64 = n;
	uint64_t want = n64 * (n64 + 1) / 2 * (2 * n64 + 1) / 3;
	int bad = tot.sum != want || tot.count != n64;
	printf("sum of the squares of 1..%" PRIu64 " = %" PRIu64 " (%" PRIu64
	       " events, expected %" PRIu64 "): %s\n\n",
	       n64, tot.sum, tot.count, want, bad ? "WRONG" : "ok");

	printf("%-8s %10s %10s %9s %9s %8s %9s\n", "stage", "in", "out",
	       "batch-in", "batch-out", "dropped", "busy-ms");
	print_stats(numbers_st);
	print_stats(squares_st);
	print_stats(sum_st);
	printf("\n");

	bad |= write_graph(p, graph);
	gs_pipeline_free(p);
	return bad ? 1 : 0;
}
