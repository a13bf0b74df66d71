// SPDX-License-Identifier: MIT
/*
 * Every event accounted for where ownership is easy to get wrong: a drain
 * of a push producer, demand a cancelled subscription left unmet, a second
 * subscription to the same producer, a finished producer still waiting for
 * its first subscriber, and a temporary subscription whose producer fails.
 */
#include <pthread.h>

#include "gs_test.h"

#define PUSHED 2000

Test(ownership, drain_delivers_what_a_push_producer_accepted,
     .timeout = GS_TEST_TIMEOUT)
{
	tally t;
	tally_init(&t, PUSHED);
	holder g = { .rec = { .tally = &t, .check_order = true } };
	gs_pipeline *p;
	gs_stage *push, *cons;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	push = tallied_push_new(p, &t);
	/* It blocks in its callback until the test opens it (a blocking
	 * stage). */
	cons = holder_new(p, &g, NULL);
	recorder_subscribe(&g.rec, cons, push,
			   &(gs_sub_opts){ .max_demand = 10 });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	for (uintptr_t i = 0; i < PUSHED; i += 100) {
		void *ev[100];
		for (size_t k = 0; k < 100; k++)
			ev[k] = GS_EV(i + k);
		GS_OK_OR_DIE(gs_push(push, ev, 100, -1));
	}
	wait_int_at_least(&g.entered, 1);
	/* Accepted pushes are buffered events, and the counters say so. */
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(push, &st));
	cr_assert_geq(st.buffered, PUSHED - 10, "buffered %llu",
		      (unsigned long long)st.buffered);
	atomic_store(&g.open, 1);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	tally_check(&t, PUSHED, true);
	cr_assert_eq(atomic_load(&t.freed_count), 0, "drain dropped events");
	cr_assert_eq(atomic_load(&g.rec.received), PUSHED);
	GS_OK_OR_DIE(gs_stage_stats(push, &st));
	cr_assert_eq(st.buffered, 0);
	gs_pipeline_free(p);
	tally_fini(&t);
}

Test(ownership, drain_of_a_push_producer_with_no_subscriber_counts_its_drops,
     .timeout = GS_TEST_TIMEOUT)
{
	tally t;
	tally_init(&t, 50);
	log_count log = { 0 };
	gs_pipeline *p;
	gs_stage *push;
	GS_OK_OR_DIE(gs_pipeline_new(&(gs_pipeline_opts){ .log = log_counter,
							  .log_arg = &log },
				     &p));
	push = tallied_push_new(p, &t);
	GS_OK_OR_DIE(gs_pipeline_start(p));
	void *ev[50];
	fill_ids(ev, 50, 0);
	GS_OK_OR_DIE(gs_push(push, ev, 50, -1));
	/* Nobody will ever take them: the drain ends, and says what it
	 * dropped. */
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	tally_check(&t, 50, true);
	cr_assert_eq(atomic_load(&t.freed_count), 50);
	cr_assert_geq(atomic_load(&log.warn), 1);
	cr_assert_eq(gs_push(push, ev, 1, 0), GS_ECLOSED);
	gs_pipeline_free(p);
	tally_fini(&t);
}

/* Waits until the producer has seen `n` events of pending demand. */
static void wait_pending(gs_stage *producer, uint64_t n)
{
	for (;;) {
		gs_stats st;
		GS_OK_OR_DIE(gs_stage_stats(producer, &st));
		if (st.pending_demand == n)
			return;
		struct timespec ts = { .tv_nsec = 100000 };
		nanosleep(&ts, NULL);
	}
}

Test(ownership, demand_a_cancelled_subscription_left_unmet_is_not_lost,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *push, *c1, *c2;
	recorder r1 = { 0 }, r2 = { .check_order = true };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_push_producer(p, NULL, &push));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r1, NULL, &c1));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r2, NULL, &c2));
	gs_sub *s1 = recorder_subscribe(&r1, c1, push,
					&(gs_sub_opts){ .max_demand = 10 });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* c1's ask of 10 reached the producer, which had nothing to send. */
	wait_pending(push, 10);
	GS_OK_OR_DIE(gs_cancel(s1));
	wait_int_at_least(&r1.cancels, 1);
	void *ev[100];
	fill_ids(ev, 100, 0);
	GS_OK_OR_DIE(gs_push(push, ev, 100, -1));
	GS_OK_OR_DIE(gs_push_close(push));
	/* (Untracked by the recorder: its table is filled before start.) */
	GS_OK_OR_DIE(gs_subscribe(c2, push, &(gs_sub_opts){ .max_demand = 10 },
				  NULL));
	/* Everything reaches c2 and the pipeline finishes; before the fix
	 * c2 got 10 events and the wait never returned. */
	wait_at_least(&r2.received, 100);
	cr_assert_eq(gs_pipeline_stop(p, GS_STOP_DRAIN), GS_OK);
	cr_assert_eq(atomic_load(&r2.received), 100);
	cr_assert_eq(atomic_load(&r1.received), 0);
	gs_pipeline_free(p);
}

Test(ownership, a_second_subscription_to_the_same_producer_is_refused,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp = { .total = 100 };
	recorder r = { .check_order = true };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	recorder_subscribe(&r, cons, prod, NULL);
	gs_sub *again = NULL;
	cr_assert_eq(gs_subscribe(cons, prod, NULL, &again), GS_EEXIST);
	cr_assert_null(again, "out-parameter untouched on error");
	cr_assert_str_eq(gs_strerror(GS_EEXIST),
			 "the consumer is already subscribed to this producer");
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&r.received), 100, "each event once");
	gs_pipeline_free(p);
}

/* --- a producer that is done before anybody subscribes ----------------- */

static int emit_then_done(void *state, gs_stage *stage)
{
	(void)state;
	void *ev[100];
	fill_ids(ev, 100, 0);
	gs_err err = gs_emit(stage, ev, 100);
	return err ? (int)err : (int)gs_done(stage);
}

static int no_demand(void *state, gs_stage *stage, size_t demand)
{
	(void)state, (void)stage, (void)demand;
	return GS_OK;
}

Test(ownership, a_done_producer_waits_for_its_first_subscriber,
     .timeout = GS_TEST_TIMEOUT)
{
	tally t;
	tally_init(&t, 100);
	gs_pipeline *p;
	gs_stage *prod, *cons;
	recorder r = { .tally = &t };
	static const gs_stage_ops ops = { .init = emit_then_done,
					  .handle_demand = no_demand };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &ops, NULL,
				  &(gs_stage_opts){ .event_free = tally_free,
						    .event_free_arg = &t },
				  &prod));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	/* start returns once init ran: the events are buffered and the
	 * producer is done, with nobody subscribed. */
	GS_OK_OR_DIE(gs_pipeline_start(p));
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(prod, &st));
	cr_assert_eq(st.buffered, 100);
	GS_OK_OR_DIE(gs_subscribe(cons, prod, NULL, NULL));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	tally_check(&t, 100, true);
	cr_assert_eq(atomic_load(&r.received), 100);
	cr_assert_eq(atomic_load(&t.freed_count), 0);
	gs_pipeline_free(p);
	tally_fini(&t);
}

Test(ownership, a_temporary_consumer_outlives_a_failed_producer,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *bad, *good, *cons;
	seq_producer b = { .total = 0,
			   .fail_at = 1,
			   .fail_code = GS_TEST_FAIL };
	seq_producer g = { .first = 1000, .total = 10 };
	recorder r = { .check_order = true };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &b, NULL,
				  &bad));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &g, NULL,
				  &good));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	recorder_subscribe(&r, cons, bad,
			   &(gs_sub_opts){ .cancel = GS_CANCEL_TEMPORARY });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* Its only producer failed: it is told, and runs on. */
	wait_int_at_least(&r.cancels, 1);
	cr_assert_eq(atomic_load(&r.cancel_reason), GS_TEST_FAIL);
	cr_assert_eq(atomic_load(&r.terminated), 0);
	/* Proof that it still runs: a new producer's events reach it, and
	 * its normal end finishes the consumer normally. */
	GS_OK_OR_DIE(gs_subscribe(cons, good, NULL, NULL));
	cr_assert_eq(gs_pipeline_wait(p), GS_TEST_FAIL,
		     "the failure is still the pipeline's first error");
	cr_assert_eq(atomic_load(&r.received), 10);
	cr_assert_eq(atomic_load(&r.terminated), 1);
	cr_assert_eq(atomic_load(&r.reason), GS_OK);
	gs_pipeline_free(p);
}

/* --- broadcast: heap events, released once ------------------------------ */

/* Heap events hold their number; the release hook marks it and frees. */
typedef struct heap_events {
	size_t total, next;
	size_t tracked; /* ids below this are counted one by one */
	_Atomic unsigned char *released;
	_Atomic uint64_t released_count;
	_Atomic uint64_t emitted;
} heap_events;

static void heap_release(void *event, void *arg)
{
	heap_events *h = arg;
	uint64_t id = *(uint64_t *)event;
	if (id < h->tracked)
		atomic_fetch_add(&h->released[id], 1);
	atomic_fetch_add(&h->released_count, 1);
	free(event);
}

static int heap_demand(void *state, gs_stage *stage, size_t demand)
{
	heap_events *h = state;
	void *chunk[64];
	while (demand && h->next < h->total) {
		size_t k = 0;
		while (k < 64 && k < demand && h->next < h->total) {
			uint64_t *e = malloc(sizeof *e);
			if (!e)
				return GS_ENOMEM;
			*e = h->next++;
			chunk[k++] = e;
		}
		gs_err err = gs_emit(stage, chunk, k);
		if (err)
			return (int)err;
		atomic_fetch_add(&h->emitted, k);
		demand -= k;
	}
	return h->next < h->total ? GS_OK : (int)gs_done(stage);
}

static const gs_stage_ops heap_ops = { .handle_demand = heap_demand };

/* A consumer reading each broadcast event (ASan sees a read after the
 * release), in order, optionally failing after `fail_after`. */
typedef struct reader {
	uint64_t last;
	bool any;
	uint64_t fail_after;
	_Atomic uint64_t got;
	_Atomic uint64_t disorder;
} reader;

static int read_events(void *state, gs_stage *stage, gs_sub *from, void **ev,
		       size_t n)
{
	reader *r = state;
	(void)stage, (void)from;
	for (size_t i = 0; i < n; i++) {
		uint64_t id = *(const uint64_t *)ev[i];
		if (r->any && id <= r->last)
			atomic_fetch_add(&r->disorder, 1);
		r->last = id;
		r->any = true;
	}
	uint64_t got = atomic_fetch_add(&r->got, n) + n;
	return r->fail_after && got >= r->fail_after ? GS_TEST_FAIL : GS_OK;
}

static const gs_stage_ops reader_ops = { .handle_events = read_events };

static bool even_only(void *arg, const void *event)
{
	(void)arg;
	return *(const uint64_t *)event % 2 == 0;
}

#define READERS 3

typedef struct bcast {
	gs_pipeline *p;
	gs_stage *prod, *cons[READERS];
	gs_sub *sub[READERS];
	heap_events h;
	reader r[READERS];
} bcast;

/* total SIZE_MAX: an endless producer, the first 2^20 ids tracked. */
static void bcast_new(bcast *b, size_t total, const gs_sub_opts *opts)
{
	size_t tracked = total < ((size_t)1 << 20) ? total : (size_t)1 << 20;
	*b = (bcast){ .h = { .total = total, .tracked = tracked } };
	b->h.released = calloc(tracked, sizeof *b->h.released);
	cr_assert_not_null(b->h.released);
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &b->p));
	GS_OK_OR_DIE(gs_stage_new(
		b->p, GS_PRODUCER, &heap_ops, &b->h,
		&(gs_stage_opts){ .dispatcher = gs_dispatcher_broadcast(),
				  .event_free = heap_release,
				  .event_free_arg = &b->h },
		&b->prod));
	for (size_t i = 0; i < READERS; i++) {
		GS_OK_OR_DIE(gs_stage_new(b->p, GS_CONSUMER, &reader_ops,
					  &b->r[i], NULL, &b->cons[i]));
		GS_OK_OR_DIE(gs_subscribe(b->cons[i], b->prod, &opts[i],
					  &b->sub[i]));
	}
}

/* Every event the producer made was released exactly once, and each
 * subscription's counters add up. */
static void bcast_check(bcast *b)
{
	uint64_t made = atomic_load(&b->h.emitted);
	cr_assert_leq(made, b->h.tracked, "ran past the tracked ids");
	for (size_t id = 0; id < made; id++)
		cr_assert_eq(atomic_load(&b->h.released[id]), 1,
			     "event %zu released %d times", id,
			     (int)atomic_load(&b->h.released[id]));
	cr_assert_eq(atomic_load(&b->h.released_count), made);
	for (size_t i = 0; i < READERS; i++) {
		gs_sub_counts c;
		GS_OK_OR_DIE(gs_sub_stats(b->sub[i], &c));
		cr_assert_eq(c.sent, c.received + c.dropped,
			     "subscription %zu: sent %llu received %llu "
			     "dropped %llu",
			     i, (unsigned long long)c.sent,
			     (unsigned long long)c.received,
			     (unsigned long long)c.dropped);
		cr_assert_eq(c.received, atomic_load(&b->r[i].got));
		cr_assert_eq(atomic_load(&b->r[i].disorder), 0);
	}
}

static void bcast_free(bcast *b)
{
	for (size_t i = 0; i < READERS; i++)
		gs_sub_release(b->sub[i]);
	gs_pipeline_free(b->p);
	free((void *)b->h.released);
}

Test(broadcast, heap_events_are_released_once_after_every_subscriber,
     .timeout = GS_TEST_TIMEOUT)
{
	bcast b;
	gs_sub_opts opts[READERS] = { { .max_demand = 7 },
				      { .max_demand = 100 },
				      { .max_demand = 1000 } };
	bcast_new(&b, 20000, opts);
	GS_OK_OR_DIE(gs_pipeline_start(b.p));
	cr_assert_eq(gs_pipeline_wait(b.p), GS_OK);
	bcast_check(&b);
	for (size_t i = 0; i < READERS; i++)
		cr_assert_eq(atomic_load(&b.r[i].got), 20000);
	gs_stats st;
	GS_OK_OR_DIE(gs_stage_stats(b.prod, &st));
	cr_assert_eq(st.released, 20000);
	cr_assert_eq(st.dropped, 0);
	bcast_free(&b);
}

Test(broadcast, events_a_selector_turns_down_are_released_too,
     .timeout = GS_TEST_TIMEOUT)
{
	bcast b;
	gs_sub_opts opts[READERS] = {
		{ .selector = even_only },
		{ .selector = even_only, .max_demand = 10 },
		{ .max_demand = 50 },
	};
	bcast_new(&b, 10000, opts);
	GS_OK_OR_DIE(gs_pipeline_start(b.p));
	cr_assert_eq(gs_pipeline_wait(b.p), GS_OK);
	bcast_check(&b);
	gs_sub_counts c;
	GS_OK_OR_DIE(gs_sub_stats(b.sub[0], &c));
	cr_assert_eq(c.received, 5000);
	cr_assert_eq(c.filtered, 5000);
	cr_assert_eq(atomic_load(&b.r[2].got), 10000);
	bcast_free(&b);
}

Test(broadcast, a_subscriber_that_fails_drops_only_its_own_share,
     .timeout = GS_TEST_TIMEOUT)
{
	bcast b;
	gs_sub_opts opts[READERS] = {
		{ .cancel = GS_CANCEL_TEMPORARY },
		{ .max_demand = 100 },
		{ .max_demand = 300 },
	};
	bcast_new(&b, 20000, opts);
	b.r[1].fail_after = 2500;
	GS_OK_OR_DIE(gs_pipeline_start(b.p));
	/* The failure stops the pipeline's others only through the
	 * producer, which keeps serving the remaining two. */
	cr_assert_eq(gs_pipeline_wait(b.p), GS_TEST_FAIL);
	bcast_check(&b);
	cr_assert_eq(atomic_load(&b.r[0].got), 20000);
	cr_assert_eq(atomic_load(&b.r[2].got), 20000);
	bcast_free(&b);
}

Test(broadcast, stop_now_releases_every_event_once, .timeout = GS_TEST_TIMEOUT)
{
	bcast b;
	gs_sub_opts opts[READERS] = { { .max_demand = 10 },
				      { .max_demand = 500 },
				      { .max_demand = 1000 } };
	bcast_new(&b, SIZE_MAX, opts);
	GS_OK_OR_DIE(gs_pipeline_start(b.p));
	wait_at_least(&b.r[0].got, 5000);
	cr_assert_eq(gs_pipeline_stop(b.p, GS_STOP_NOW), GS_OK);
	bcast_check(&b);
	bcast_free(&b);
}

Test(broadcast, a_cancelled_subscriber_reads_what_it_was_sent_safely,
     .timeout = GS_TEST_TIMEOUT)
{
	bcast b;
	gs_sub_opts opts[READERS] = { { .max_demand = 1000 },
				      { .max_demand = 10 },
				      { .max_demand = 10 } };
	bcast_new(&b, 50000, opts);
	GS_OK_OR_DIE(gs_pipeline_start(b.p));
	wait_at_least(&b.r[0].got, 1000);
	GS_OK_OR_DIE(gs_cancel(b.sub[0]));
	/* The others carry on to the end; the cancelled one, which its own
	 * cancel keeps running, is drained. */
	wait_at_least(&b.r[1].got, 50000);
	wait_at_least(&b.r[2].got, 50000);
	cr_assert_eq(gs_pipeline_stop(b.p, GS_STOP_DRAIN), GS_OK);
	bcast_check(&b);
	bcast_free(&b);
}

static int pool_ignore(void *arg, void *event)
{
	(void)arg;
	(void)event;
	return GS_OK;
}

/* A stream, a pool, or a consumer that says it keeps events would read
 * what a broadcast producer with an event_free frees once every
 * handle_events returned: subscribing one is refused, and logged; without
 * the event_free (events that outlive the pipeline) it is taken. */
Test(broadcast, a_consumer_that_keeps_events_is_refused_a_freeing_producer,
     .timeout = GS_TEST_TIMEOUT)
{
	log_count log = { 0 };
	gs_pipeline *p = counted_pipeline_new(&log);
	heap_events h = { .total = 10 };
	gs_stage *freeing, *lending, *stream, *keeper, *borrower;
	GS_OK_OR_DIE(gs_stage_new(
		p, GS_PRODUCER, &heap_ops, &h,
		&(gs_stage_opts){ .dispatcher = gs_dispatcher_broadcast(),
				  .event_free = heap_release,
				  .event_free_arg = &h },
		&freeing));
	GS_OK_OR_DIE(gs_stage_new(
		p, GS_PRODUCER, &heap_ops, &h,
		&(gs_stage_opts){ .dispatcher = gs_dispatcher_broadcast() },
		&lending));
	GS_OK_OR_DIE(gs_stream(p, NULL, &stream));
	gs_pool *pool;
	GS_OK_OR_DIE(gs_pool_new(p, &(gs_pool_opts){ .handler = pool_ignore },
				 &pool));
	reader r = { 0 };
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &reader_ops, &r,
			     &(gs_stage_opts){ .version = GS_STAGE_OPTS_VERSION,
					       .keeps_events = true },
			     &keeper));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &reader_ops, &r, NULL, &borrower));
	gs_stage *keepers[] = { stream, gs_pool_stage(pool), keeper };
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(gs_subscribe(keepers[i], freeing, NULL, NULL),
			     GS_EINVAL, "keeper %zu", i);
		cr_assert_eq(atomic_load(&log.error), (int)i + 1);
		cr_assert_eq(gs_subscribe(keepers[i], lending, NULL, NULL),
			     GS_OK, "keeper %zu", i);
	}
	GS_OK_OR_DIE(gs_subscribe(borrower, freeing, NULL, NULL));
	cr_assert_eq(atomic_load(&log.error), 3);
	gs_pipeline_free(p);
	gs_pool_free(pool);
}

Test(ownership,
     a_consumer_completes_when_a_temporary_input_fails_after_the_others_finished,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p;
	gs_stage *bad, *good, *cons;
	seq_producer b = { .total = SIZE_MAX };
	seq_producer g = { .first = 1u << 30, .total = 10 };
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &b, NULL,
				  &bad));
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &g, NULL,
				  &good));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &cons));
	recorder_subscribe(&r, cons, bad,
			   &(gs_sub_opts){ .cancel = GS_CANCEL_TEMPORARY });
	/* Transient: its normal end leaves the consumer to its other input. */
	recorder_subscribe(&r, cons, good,
			   &(gs_sub_opts){ .cancel = GS_CANCEL_TRANSIENT });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	/* The good input finishes first... */
	wait_int_at_least(&g.terminated, 1);
	wait_int_at_least(&r.cancels_ok, 1);
	/* ...then the temporary one fails: nothing is left, and one input
	 * finished normally, so the consumer completes. It hung before. */
	GS_OK_OR_DIE(gs_stage_stop(bad, GS_TEST_FAIL));
	gs_err err = gs_pipeline_wait(p);
	cr_assert_eq(err, GS_TEST_FAIL, "wait: %d", (int)err);
	cr_assert_eq(atomic_load(&r.terminated), 1);
	cr_assert_eq(atomic_load(&r.reason), GS_OK);
	gs_pipeline_free(p);
}
