// SPDX-License-Identifier: MIT
/*
 * What the suites share: a sequence producer, a recording consumer (which
 * can keep every value it receives), a mapping producer-consumer, a
 * generator for gs_from_fn, a tally of every event delivered or freed,
 * counting event_free and log hooks, and ways to wait for what a test
 * asserts. Stage callbacks never assert (Criterion's asserts belong to the
 * test's own thread): they count violations in atomics that the test checks
 * after gs_pipeline_wait.
 */
#ifndef GS_TEST_H
#define GS_TEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <criterion/criterion.h>
#include <genstage/genstage.h>

/* Criterion's per-test limit, in seconds; generous for sanitizer builds. */
#ifndef GS_TEST_TIMEOUT
#define GS_TEST_TIMEOUT 60
#endif

/* Integers travel as events. */
#define GS_EV(i) ((void *)(uintptr_t)(i))
#define GS_VAL(e) ((uintptr_t)(e))

/* A user error code for callbacks to fail with. */
#define GS_TEST_FAIL (GS_EUSER + 1)

/* Asserts that a gs_err expression is GS_OK, naming it if not. */
#define GS_OK_OR_DIE(expr)                                                     \
	do {                                                                   \
		gs_err gs_ok_or_die_ = (expr);                                 \
		cr_assert_eq(gs_ok_or_die_, GS_OK, "%s: %s (%d)", #expr,       \
			     gs_strerror(gs_ok_or_die_), (int)gs_ok_or_die_);  \
	} while (0)

/*
 * Every event of ids [0, n): how often each was delivered to a recorder
 * and how often freed (event_free with this tally as its argument). The
 * counts are atomic so that any stage thread may mark them.
 */
typedef struct tally {
	size_t n;
	_Atomic unsigned char *seen;
	_Atomic unsigned char *freed;
	_Atomic uint64_t delivered;
	_Atomic uint64_t freed_count;
	_Atomic uint64_t out_of_range;
} tally;

void tally_init(tally *t, size_t n);
void tally_fini(tally *t);
/* event_free for stage options: marks the event freed in the tally `arg`. */
void tally_free(void *event, void *arg);
/* Checks (with cr_assert) that no event was delivered or freed twice, nor
 * both, that none was out of range, and that delivered + freed equals
 * `produced`; when `all`, that every id below `produced` was accounted. */
void tally_check(const tally *t, uint64_t produced, bool all);
/* Checks that every id in [lo, hi) was delivered or freed. */
void tally_check_range(const tally *t, size_t lo, size_t hi);

/*
 * A producer emitting first, first + 1, ... as it is asked, `total` events
 * in all (SIZE_MAX: without end), then gs_done. Options set before start;
 * counters read after the pipeline finished (or atomically while it runs).
 */
typedef struct seq_producer {
	uintptr_t first;
	size_t total;
	/* Emit this many events more than asked on each call, and
	 * extra_first more on the first. */
	size_t extra;
	size_t extra_first;
	/* Return fail_code from the fail_at-th handle_demand (1-based), after
	 * emitting; 0: never. */
	uint64_t fail_at;
	int fail_code;
	/* Return fail_code from init. */
	bool fail_init;
	/* Call gs_done from init (with total 0, nothing is ever emitted). */
	bool done_in_init;
	/* Call gs_done from handle_cancel (the producer's role). */
	bool done_on_cancel;
	/* When set: check on each handle_demand that the demand passed so far
	 * is at most *consumed + slack (the batch rule's bound). */
	const _Atomic uint64_t *consumed;
	uint64_t slack;

	size_t next; /* own */

	_Atomic uint64_t calls;
	_Atomic uint64_t demanded;
	_Atomic uint64_t first_demand;
	_Atomic uint64_t emitted;
	_Atomic uint64_t over_demand; /* handle_demand calls past the bound */
	_Atomic uint64_t emit_errors;
	_Atomic uint64_t calls_after_done;
	_Atomic int cancels;
	_Atomic int cancel_reason; /* the last */
	_Atomic int terminated;
	_Atomic int reason;
	bool is_done; /* own */
} seq_producer;

extern const gs_stage_ops seq_producer_ops;

/* At most this many subscriptions a recorder tracks in detail. */
#define GS_TEST_SUBS 8

/* What a recorder knows of one of its subscriptions. */
typedef struct rec_sub {
	gs_sub *sub;
	size_t max, min;
	bool manual;
	/* own: the consumer's demand as the batch rule computes it */
	uint64_t asked, received, outstanding;
	uintptr_t last;
	bool any;
} rec_sub;

/*
 * A consumer (or the consuming half of a test stage) that records what it
 * receives: counts and sums, the tally, each subscription's order and the
 * batch rule (chunk sizes, never more than asked).
 */
typedef struct recorder {
	tally *tally;     /* may be NULL */
	bool check_order; /* each subscription's values strictly increase */
	/* Return fail_code once this many events have arrived; 0: never. */
	uint64_t fail_after;
	int fail_code;
	/* What handle_cancel returns. */
	int cancel_ret;
	/* Also counts what arrives here, when set (shared by recorders). */
	_Atomic uint64_t *also_received;

	rec_sub subs[GS_TEST_SUBS]; /* set with recorder_track before start */
	size_t n_subs;

	_Atomic uint64_t received;
	_Atomic uint64_t sum;
	_Atomic uint64_t chunks;
	_Atomic uint64_t max_chunk;
	_Atomic uint64_t untracked; /* events from subscriptions not tracked */
	_Atomic uint64_t order_errors;
	_Atomic uint64_t chunk_errors;  /* a chunk above max - min */
	_Atomic uint64_t demand_errors; /* more events than asked */
	_Atomic uint64_t empty_chunks;
	_Atomic uint64_t after_stop; /* callbacks after terminate */
	_Atomic int subscribes;
	_Atomic int cancels;
	_Atomic int cancels_ok;
	_Atomic int cancel_reason; /* the last */
	_Atomic int terminated;
	_Atomic int reason;

	/* When set before start: every value received is kept, in arrival
	 * order, in vals[0..n) (read them once the stage has finished;
	 * recorder_fini frees them). */
	bool keep;
	uintptr_t *vals;
	size_t n, cap;
} recorder;

extern const gs_stage_ops recorder_ops;

/* Frees the values a keeping recorder kept. */
void recorder_fini(recorder *r);

/* Checks that k keeping recorders got every value in [0, n) exactly once
 * between them, each in increasing order. */
void check_exactly_once(const recorder *r, size_t k, size_t n);

/* Subscribes `consumer` (whose state is `r`) to `producer` and tracks the
 * subscription in r; asserts success. */
gs_sub *recorder_subscribe(recorder *r, gs_stage *consumer, gs_stage *producer,
			   const gs_sub_opts *opts);

/* Records a chunk in r (for stages that wrap a recorder). */
int recorder_take(recorder *r, gs_sub *from, void **events, size_t n);

/*
 * A producer-consumer that emits each event plus `add`, `copies` times
 * (0 means once), recording what it receives like a recorder.
 */
typedef struct mapper {
	recorder rec;
	uintptr_t add;
	unsigned copies;
	_Atomic uint64_t emitted;
	_Atomic uint64_t emit_errors;
} mapper;

extern const gs_stage_ops mapper_ops;

/* A pipeline with `opts` (NULL: the defaults); asserts success. */
gs_pipeline *pipeline_new(const gs_pipeline_opts *opts);

/*
 * A consumer that records like a recorder but holds every batch inside
 * handle_events until `open` is set; `entered` counts the batches that came
 * in. Its callbacks block, so holder_new makes it a blocking stage.
 */
typedef struct holder {
	recorder rec;
	_Atomic int entered;
	_Atomic int open;
} holder;

extern const gs_stage_ops holder_ops;

/* Stages on the ops above with `state` and `opts` (NULL: the defaults);
 * each asserts success. */
gs_stage *seq_producer_new(gs_pipeline *p, seq_producer *sp,
			   const gs_stage_opts *opts);
gs_stage *recorder_new(gs_pipeline *p, recorder *r, const gs_stage_opts *opts);
gs_stage *mapper_new(gs_pipeline *p, mapper *m, const gs_stage_opts *opts);
gs_stage *holder_new(gs_pipeline *p, holder *h, const gs_stage_opts *opts);

/*
 * The smallest pipeline: a seq_producer of `total` events and a recorder
 * that checks order, created but not subscribed. With tally_n > 0 the
 * recorder also marks the tally t of ids [0, tally_n).
 */
typedef struct pair {
	gs_pipeline *p;
	gs_stage *prod, *cons;
	seq_producer sp;
	recorder r;
	tally t;
} pair;

void pair_new(pair *x, size_t total, size_t tally_n);
void pair_free(pair *x);
/* Subscribes the pair's consumer to its producer with `opts` (tracked by
 * the recorder), then start_and_wait. */
gs_err pair_run(pair *x, const gs_sub_opts *opts);

/* Starts p, asserting that it started, and returns what gs_pipeline_wait
 * returns. */
gs_err start_and_wait(gs_pipeline *p);

/* A generator for gs_from_fn: next, next + 1, ... up to end (exclusive;
 * 0: without end); `produced` counts what it wrote. */
typedef struct counter {
	uintptr_t next, end;
	_Atomic uint64_t produced;
} counter;

long counter_gen(void *arg, void **out, size_t max);

/* A push producer whose dropped events mark tally `t`; asserts success. */
gs_stage *tallied_push_new(gs_pipeline *p, tally *t);

/* ev[0..n) = the ids first, first + 1, ... */
void fill_ids(void **ev, size_t n, uintptr_t first);

/* A gs_from_fn producer on counter_gen and `c`; asserts success. */
gs_stage *counter_new(gs_pipeline *p, counter *c, const gs_stage_opts *opts);

/* event_free (or msg_free) for stage options: counts into the
 * _Atomic uint64_t `arg`. */
void count_free(void *event, void *arg);

/* Callbacks that do nothing, for stages whose callbacks do not matter. */
int nop_demand(void *state, gs_stage *stage, size_t demand);
int nop_events(void *state, gs_stage *stage, gs_sub *from, void **events,
	       size_t n);

/*
 * A round trip through a stage, to know that it has moved on. A stage
 * takes calls between its turns, so when stage_sync(s) returns, s has
 * finished the turn in which it did whatever the caller saw it do before
 * calling (a counter raised, a statistic set): if that turn was going to
 * call handle_demand or emit, it has. The stage's handle_call must be
 * sync_call (which answers NULL), as in seq_producer_ops, recorder_ops and
 * mapper_ops, or answer a NULL request some other way. From the test's
 * thread only.
 */
int sync_call(void *state, gs_stage *stage, void *request, void **reply);
void stage_sync(gs_stage *stage);

/* A log hook counting each level; `arg` is a log_count. */
typedef struct log_count {
	_Atomic int warn;
	_Atomic int error;
	_Atomic int null_stage;
} log_count;

void log_counter(void *arg, gs_log_level level, const gs_stage *stage,
		 const char *msg);

/* A pipeline whose log lines are counted in lc; asserts success. Tests
 * count drops by its warnings, so it must not set warn_callback_ms: under
 * a sanitizer on a loaded machine any callback may be slow. */
gs_pipeline *counted_pipeline_new(log_count *lc);

/* Waits (without a time limit: the test's .timeout is the limit) until
 * *v >= at_least. */
void wait_at_least(const _Atomic uint64_t *v, uint64_t at_least);
void wait_int_at_least(const _Atomic int *v, int at_least);

/* A short pause for a loop that polls for what it waits for. */
void nap(void);

/* What this process writes on stderr between the two calls, kept in a
 * temporary file instead of shown. */
typedef struct stderr_capture {
	FILE *tmp;
	int saved;
} stderr_capture;
void stderr_capture_begin(stderr_capture *c);
/* Ends the capture and puts what was written into buf (cut to size - 1). */
void stderr_capture_end(stderr_capture *c, char *buf, size_t size);

/* The pipeline's Graphviz graph (gs_pipeline_write_dot), in memory; the
 * caller frees it. */
char *dot_text(gs_pipeline *p);

/* A small deterministic generator for randomized tests. */
typedef struct gs_rng {
	uint64_t s;
} gs_rng;

uint64_t gs_rng_next(gs_rng *r);
/* Uniform in [lo, hi]. */
size_t gs_rng_range(gs_rng *r, size_t lo, size_t hi);

/* A finished bus subscription's counters obey the conservation law
 * (accepted = handled + dropped + failed) and nothing is in flight; `who`
 * names it in a failure. */
static inline void gs_test_bus_conserved(const gs_bus_sub_stats *st,
					 const char *who)
{
	cr_assert_eq(st->accepted, st->handled + st->dropped + st->failed,
		     "%s: accepted %llu != handled %llu + dropped %llu + "
		     "failed %llu",
		     who, (unsigned long long)st->accepted,
		     (unsigned long long)st->handled,
		     (unsigned long long)st->dropped,
		     (unsigned long long)st->failed);
	cr_assert_eq(st->in_flight, 0, "%s: %llu in flight", who,
		     (unsigned long long)st->in_flight);
}

#endif
