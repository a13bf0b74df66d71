// SPDX-License-Identifier: MIT
/*
 * hg_pipeline: a small pipeline meant to run under valgrind's helgrind and
 * DRD in a build configured with -Dvalgrind=true (.ci/helgrind runs it).
 * Every hand-off the library makes is exercised with heap events whose
 * fields one stage writes and the next reads: numbers -> square ->
 * (broadcast, with event_free) -> "sum" (a blocking stage) and "check" (a
 * scheduled one); and a push producer fed by a pusher thread -> "twice" (a
 * blocking stage) -> a stream pulled by a puller thread. Meanwhile the main thread reads every
 * stage's counters and asks "sum" for its running total with gs_call.
 * Then an event bus: heap payloads, freed by the bus at completion, go to
 * a subscription in order, a blocking one and one of concurrency 3 (whose
 * handlers add under a lock of their own).
 *
 * In mode "clean" the callbacks and handlers touch only their own state and the events
 * they were given, so the tools must report nothing. In mode "race" the
 * "sum" and "check" callbacks also count into one plain global without a
 * lock, and so do the bus's handlers, a data race in the user's code that
 * the tools must report (in
 * racy_count). The program checks its results either way and exits non-zero
 * if they are wrong.
 *
 * Run:  valgrind --tool=helgrind build-valgrind/tests/valgrind/hg_pipeline
 *       [clean|race [EVENTS]]      (EVENTS per chain, default 2000)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <genstage/genstage.h>

#define CHUNK 64

/* An event: heap memory that changes hands at every stage. */
typedef struct item {
	uint64_t n;
	uint64_t derived; /* written by square or twice */
} item;

typedef struct source {
	uint64_t next, last;
} source;

typedef struct totals {
	uint64_t sum, count;
	bool bad; /* an event arrived wrong */
} totals;

/* The race mode's victim: counted into by two stages, without a lock. */
static bool racy;
static uint64_t racy_hits;

static void racy_count(size_t n)
{
	if (racy)
		racy_hits += n;
}

/* Writes over the event before freeing it, so that the tools check that
 * whoever read it before (both consumers of the broadcast, for one) is
 * done with it. */
static void free_item(void *event, void *arg)
{
	(void)arg;
	memset(event, 0xa5, sizeof(item));
	free(event);
}

/* Fills chunk with up to `max` new items numbered from *next to `last`;
 * returns how many (0 only when out of memory). */
static size_t new_items(void **chunk, size_t max, uint64_t *next, uint64_t last)
{
	size_t k = 0;
	for (; k < max && *next <= last; k++) {
		item *it = malloc(sizeof *it);
		if (!it)
			break;
		*it = (item){ .n = (*next)++ };
		chunk[k] = it;
	}
	return k;
}

static int numbers_demand(void *state, gs_stage *stage, size_t demand)
{
	source *s = state;
	while (demand && s->next <= s->last) {
		void *chunk[CHUNK];
		size_t k = new_items(chunk, demand < CHUNK ? demand : CHUNK,
				     &s->next, s->last);
		if (!k)
			return GS_ENOMEM;
		gs_err err = gs_emit(stage, chunk, k);
		if (err)
			return err;
		demand -= k;
	}
	return s->next > s->last ? gs_done(stage) : GS_OK;
}

static int square_events(void *state, gs_stage *stage, gs_sub *from,
			 void **events, size_t n)
{
	(void)state;
	(void)from;
	for (size_t i = 0; i < n; i++) {
		item *it = events[i];
		it->derived = it->n * it->n;
	}
	return gs_emit(stage, events, n);
}

static int twice_events(void *state, gs_stage *stage, gs_sub *from,
			void **events, size_t n)
{
	(void)state;
	(void)from;
	for (size_t i = 0; i < n; i++) {
		item *it = events[i];
		it->derived = 2 * it->n;
	}
	return gs_emit(stage, events, n);
}

/* "sum" and "check" read the broadcast events; its event_free frees them
 * once both are done. */
static int sum_events(void *state, gs_stage *stage, gs_sub *from, void **events,
		      size_t n)
{
	(void)stage;
	(void)from;
	totals *t = state;
	for (size_t i = 0; i < n; i++)
		t->sum += ((const item *)events[i])->derived;
	t->count += n;
	racy_count(n);
	return GS_OK;
}

static int sum_call(void *state, gs_stage *stage, void *request, void **reply)
{
	(void)stage;
	(void)request;
	*reply = (void *)(uintptr_t)((totals *)state)->count;
	return GS_OK;
}

static int check_events(void *state, gs_stage *stage, gs_sub *from,
			void **events, size_t n)
{
	(void)stage;
	(void)from;
	totals *t = state;
	for (size_t i = 0; i < n; i++) {
		const item *it = events[i];
		t->bad |= it->derived != it->n * it->n;
	}
	t->count += n;
	racy_count(n);
	return GS_OK;
}

typedef struct pusher {
	gs_stage *stage;
	uint64_t events;
	gs_err err;
} pusher;

static void *push_main(void *arg)
{
	pusher *ps = arg;
	for (uint64_t next = 1; next <= ps->events;) {
		void *chunk[CHUNK];
		size_t k = new_items(chunk, CHUNK, &next, ps->events);
		gs_err err = k ? gs_push(ps->stage, chunk, k, -1) : GS_ENOMEM;
		if (err) {
			for (size_t j = 0; j < k; j++)
				free(chunk[j]);
			ps->err = err;
			break;
		}
	}
	gs_push_close(ps->stage);
	return NULL;
}

typedef struct puller {
	gs_stage *stage;
	totals got;
	gs_err end;
} puller;

static void *pull_main(void *arg)
{
	puller *pl = arg;
	for (;;) {
		void *events[CHUNK];
		size_t n = 0; /* untouched when the call fails */
		gs_err err = gs_stream_next(pl->stage, events, CHUNK, &n, -1);
		for (size_t i = 0; i < n; i++) {
			item *it = events[i];
			pl->got.bad |= it->derived != 2 * it->n;
			pl->got.sum += it->n;
			free(it);
		}
		pl->got.count += n;
		if (err && err != GS_ETIMEDOUT) {
			pl->end = err;
			return NULL;
		}
	}
}

static int fail(const char *what, gs_err err)
{
	fprintf(stderr, "hg_pipeline: %s: %s\n", what, gs_strerror(err));
	return 1;
}

/* The main thread's part while the pipeline runs: what an observer does. */
static gs_err observe(gs_stage *const *stages, size_t n, gs_stage *sum)
{
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < n; i++) {
			gs_stats st;
			gs_err err = gs_stage_stats(stages[i], &st);
			if (err)
				return err;
		}
		void *reply;
		gs_err err = gs_call(sum, NULL, &reply, -1);
		if (err && err != GS_ECLOSED)
			return err;
	}
	return GS_OK;
}

/* --- the bus --------------------------------------------------------- */

/* A subscription's own totals; with `locked`, its handlers (which may run
 * at once) add under `lock`. */
typedef struct listener {
	pthread_mutex_t lock;
	bool locked;
	totals t;
} listener;

static void free_payload(void *payload)
{
	free_item(payload, NULL);
}

static int listen_event(void *arg, const gs_bus_envelope *env)
{
	listener *l = arg;
	const item *it = env->payload;
	if (l->locked)
		pthread_mutex_lock(&l->lock);
	l->t.sum += it->n;
	l->t.count++;
	l->t.bad |= it->derived != 3 * it->n;
	if (l->locked)
		pthread_mutex_unlock(&l->lock);
	racy_count(1);
	return GS_BUS_DONE;
}

/* Publishes 1..events (odd ones on "n.odd") to l[0] (everything, in
 * order), l[1] (the odd ones, blocking) and l[2] (everything, concurrency
 * 3), then closes with drain. */
static gs_err run_bus(gs_executor *ex, uint64_t events, listener *l)
{
	gs_bus *bus;
	gs_err err = gs_bus_new(&(gs_bus_opts){ .name = "hg", .executor = ex },
				&bus);
	if (err)
		return err;
	static const char *const all[] = { "#", NULL };
	static const char *const odd[] = { "n.odd", NULL };
	const gs_bus_sub_opts subs[3] = {
		{ .name = "in-order",
		  .patterns = all,
		  .handler = listen_event,
		  .arg = &l[0],
		  .queue_size = 64 },
		{ .name = "blocking",
		  .patterns = odd,
		  .handler = listen_event,
		  .arg = &l[1],
		  .queue_size = 64,
		  .blocking = true },
		{ .name = "crowd",
		  .patterns = all,
		  .handler = listen_event,
		  .arg = &l[2],
		  .queue_size = 64,
		  .concurrency = 3 },
	};
	for (int i = 0; !err && i < 3; i++)
		err = gs_bus_subscribe(bus, &subs[i], NULL);
	for (uint64_t n = 1; !err && n <= events; n++) {
		item *it = malloc(sizeof *it);
		if (!it) {
			err = GS_ENOMEM;
			break;
		}
		*it = (item){ .n = n, .derived = 3 * n };
		err = gs_bus_publish(bus, n % 2 ? "n.odd" : "n.even", it,
				     free_payload, GS_BUS_FOREVER);
		if (err)
			free_payload(it);
	}
	gs_err closed = gs_bus_close(bus, GS_BUS_DRAIN);
	gs_bus_free(bus);
	return err ? err : closed;
}

int main(int argc, char **argv)
{
	racy = argc > 1 && !strcmp(argv[1], "race");
	if (argc > 1 && !racy && strcmp(argv[1], "clean")) {
		fprintf(stderr, "usage: %s [clean|race [EVENTS]]\n", argv[0]);
		return 2;
	}
	uint64_t events = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000;

	/* Two workers whatever the machine has, so that scheduled stages
	 * move between threads. */
	gs_executor *ex;
	gs_err err = gs_executor_new(&(gs_executor_opts){ .workers = 2 }, &ex);
	if (err)
		return fail("executor", err);
	gs_pipeline *p;
	err = gs_pipeline_new(&(gs_pipeline_opts){ .executor = ex }, &p);
	if (err)
		return fail("pipeline", err);

	source src = { .next = 1, .last = events };
	totals sum = { 0 }, check = { 0 };
	gs_stage *numbers, *square, *sum_st, *check_st, *push, *twice, *stream;
	gs_sub_opts small = { .max_demand = 50 };
	gs_stage_opts bcast = {
		.name = "square",
		.dispatcher = gs_dispatcher_broadcast(),
		.event_free = free_item,
	};
	if ((err = gs_stage_new(
		     p, GS_PRODUCER,
		     &(gs_stage_ops){ .handle_demand = numbers_demand }, &src,
		     &(gs_stage_opts){ .name = "numbers",
				       .event_free = free_item },
		     &numbers)) ||
	    (err = gs_stage_new(
		     p, GS_PRODUCER_CONSUMER,
		     &(gs_stage_ops){ .handle_events = square_events }, NULL,
		     &bcast, &square)) ||
	    (err = gs_stage_new(
		     p, GS_CONSUMER,
		     &(gs_stage_ops){ .handle_events = sum_events,
				      .handle_call = sum_call },
		     &sum, &(gs_stage_opts){ .name = "sum", .blocking = true },
		     &sum_st)) ||
	    (err = gs_stage_new(
		     p, GS_CONSUMER,
		     &(gs_stage_ops){ .handle_events = check_events }, &check,
		     &(gs_stage_opts){ .name = "check" }, &check_st)) ||
	    (err = gs_push_producer(p,
				    &(gs_stage_opts){ .name = "pushed",
						      .buffer_size = 256,
						      .event_free = free_item },
				    &push)) ||
	    (err = gs_stage_new(
		     p, GS_PRODUCER_CONSUMER,
		     &(gs_stage_ops){ .handle_events = twice_events }, NULL,
		     &(gs_stage_opts){ .name = "twice",
				       .blocking = true,
				       .event_free = free_item },
		     &twice)) ||
	    (err = gs_stream(p,
			     &(gs_stage_opts){ .name = "pulled",
					       .buffer_size = 100,
					       .event_free = free_item },
			     &stream)))
		return fail("stage", err);
	if ((err = gs_subscribe(square, numbers, &small, NULL)) ||
	    (err = gs_subscribe(sum_st, square, &small, NULL)) ||
	    (err = gs_subscribe(check_st, square, &small, NULL)) ||
	    (err = gs_subscribe(twice, push, &small, NULL)) ||
	    (err = gs_subscribe(stream, twice, &small, NULL)))
		return fail("subscribe", err);
	if ((err = gs_pipeline_start(p)))
		return fail("start", err);

	pusher ps = { .stage = push, .events = events };
	puller pl = { .stage = stream };
	pthread_t push_thread, pull_thread;
	if (pthread_create(&push_thread, NULL, push_main, &ps) ||
	    pthread_create(&pull_thread, NULL, pull_main, &pl))
		return fail("threads", GS_ESPAWN);
	gs_stage *all[] = { numbers, square, sum_st, check_st,
			    push,    twice,  stream };
	gs_err seen = observe(all, sizeof all / sizeof *all, sum_st);
	pthread_join(push_thread, NULL);
	pthread_join(pull_thread, NULL);
	err = gs_pipeline_wait(p);
	gs_pipeline_free(p);
	listener heard[3] = { [2] = { .locked = true } };
	pthread_mutex_init(&heard[2].lock, NULL);
	gs_err bus_err = run_bus(ex, events, heard);
	pthread_mutex_destroy(&heard[2].lock);
	gs_executor_free(ex);

	uint64_t squares = events * (events + 1) * (2 * events + 1) / 6;
	uint64_t naturals = events * (events + 1) / 2;
	int bad = 0;
	if (err || seen || ps.err || pl.end != GS_ECLOSED)
		bad = fail("run", err      ? err
				  : seen   ? seen
				  : ps.err ? ps.err
					   : pl.end);
	if (bus_err)
		bad = fail("bus", bus_err);
	uint64_t odds = (events + 1) / 2;
	if (heard[0].t.count != events || heard[0].t.sum != naturals ||
	    heard[1].t.count != odds || heard[1].t.sum != odds * odds ||
	    heard[2].t.count != events || heard[2].t.sum != naturals ||
	    heard[0].t.bad || heard[1].t.bad || heard[2].t.bad) {
		fprintf(stderr,
			"hg_pipeline: the bus's listeners heard wrong: %" PRIu64
			" %" PRIu64 " %" PRIu64 " events\n",
			heard[0].t.count, heard[1].t.count, heard[2].t.count);
		bad = 1;
	}
	if (sum.count != events || sum.sum != squares ||
	    check.count != events || check.bad || pl.got.count != events ||
	    pl.got.sum != naturals || pl.got.bad) {
		fprintf(stderr,
			"hg_pipeline: wrong results: sum %" PRIu64 "/%" PRIu64
			" check %" PRIu64 "%s pulled %" PRIu64 "/%" PRIu64
			"%s\n",
			sum.count, sum.sum, check.count,
			check.bad ? " (bad)" : "", pl.got.count, pl.got.sum,
			pl.got.bad ? " (bad)" : "");
		bad = 1;
	}
	if (!bad)
		printf("hg_pipeline %s: %" PRIu64
		       " events through each chain and the bus\n",
		       racy ? "race" : "clean", events);
	return bad;
}
