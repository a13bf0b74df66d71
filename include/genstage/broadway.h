// SPDX-License-Identifier: MIT
/*
 * Broadway for C: acknowledged processing. Producers emit messages, each
 * carrying its data, metadata and an acknowledger; processors run
 * handle_message on them with some concurrency; optional batchers group
 * them by batcher and batch key into batches for handle_batch; and every
 * message, once done, is acknowledged exactly once, successful or failed,
 * in groups by acknowledger, after handle_failed has seen the failed ones.
 *
 *	static const gs_broadway_ops ops = {
 *		.handle_message = on_message,
 *		.handle_batch = on_batch,
 *	};
 *	gs_broadway *bw;
 *	gs_broadway_new(&ops, ctx, &(gs_broadway_opts){
 *		.producer = gs_broadway_test_producer(),
 *		.processors = { .concurrency = 4 },
 *		.batchers = &(gs_broadway_batcher_opts){ .batch_size = 50 },
 *		.n_batchers = 1,
 *	}, &bw);
 *	gs_broadway_start(bw);
 *	...
 *	gs_broadway_stop(bw);   (drains: see below)
 *	gs_broadway_free(bw);
 *
 * The shape, as Broadway's: `producer.concurrency` producer stages (the
 * caller's, made by producer.make), then, with rate limiting, one limiter
 * stage that passes demand upstream only as the rate allows; then
 * `processors.concurrency` processor stages, each subscribed to every
 * producer; then per batcher one batcher stage fed by every processor and
 * `concurrency` batch processor stages that call handle_batch.
 *
 * Acknowledgement. A message that fails in a processor (handle_message
 * marked it with gs_message_failed or returned non-zero) is acknowledged
 * there and never reaches a batcher. Without batchers, successful messages
 * are acknowledged by the processor after handle_message; with batchers,
 * by the batch processor after handle_batch (which may fail some of the
 * batch, or all of it by returning non-zero). Each acknowledgement point
 * first calls handle_failed with the failed messages it holds, then calls
 * each acknowledger once per distinct (acknowledger, ack_ref) with the
 * successful and failed messages of that group.
 *
 * A stage of the pipeline that fails (its producer's error, no memory)
 * stops every stage with its reason, as Broadway's supervisor takes the
 * pipeline down; gs_broadway_wait returns that reason. Messages the
 * pipeline could not process because it was stopped with GS_STOP_NOW (or
 * a stage failed) are acknowledged as failed with the
 * reason GS_ECANCELED, which an acknowledger should take as "not
 * processed: give it back to the source" (the RabbitMQ connector requeues
 * them). Nothing is dropped without its acknowledger hearing of it.
 *
 * Graceful drain. gs_broadway_stop stops the producers taking new
 * messages, lets every message in flight finish and be acknowledged,
 * flushes partial batches (trigger GS_BATCH_FLUSH), then stops. Each
 * producer is a pipeline drain's source: it is marked done as if it had
 * called gs_done (its handle_demand is not called again, and it need not
 * call gs_done itself), and what it emitted is still delivered.
 *
 * Where we differ from Broadway, and why:
 * - Batchers are named in the options but messages carry a batcher index
 *   (gs_message_put_batcher), and batch keys are uint64_t: no string
 *   compare or hashing per message.
 * - A handler "raising" is a handler returning non-zero: the message (or
 *   the batch) fails with that code as its reason.
 * - Producers are ordinary stages emitting gs_message pointers, made by a
 *   factory (gs_broadway_producer) so that the pipeline can make several.
 * - The rate limiter is a stage of its own between producers and
 *   processors (Broadway keeps it inside its producer wrapper); it asks
 *   its producers only for what the rate allows, so excess demand never
 *   reaches them and nothing is dropped.
 */
#ifndef GENSTAGE_BROADWAY_H
#define GENSTAGE_BROADWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "pipeline.h"
#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gs_message gs_message;
typedef struct gs_broadway gs_broadway;

#define GS_ACKNOWLEDGER_VERSION 0

/*
 * How a producer settles its messages. `ack` receives every message of one
 * group (same acknowledger, same ack_ref) that is done: successful[0..n_ok)
 * and failed[0..n_failed) (each failed message's reason in its `status`).
 * Either count may be 0, not both. It takes the messages: from here on the
 * pipeline never touches them. Called on processor and batch processor
 * threads, possibly several at once: thread-safe, and quick (hand slow
 * work to a thread of your own). The arrays are lent for the call.
 */
typedef struct gs_acknowledger {
	uint32_t version;
	void (*ack)(void *ack_ref, gs_message **successful, size_t n_ok,
		    gs_message **failed, size_t n_failed);
} gs_acknowledger;

/*
 * A message. Producers allocate it (embedding it in a struct of their own
 * is the cheap way: one allocation per batch of messages is possible) and
 * fill data, metadata, acknowledger, ack_ref and ack_data, with the other
 * fields zero. Handlers read data and metadata and change only what the
 * gs_message_* calls change, or `data` itself (a handler that replaces
 * `data` frees what it put there by the time the message is done: the
 * acknowledger releases only what its producer made).
 */
struct gs_message {
	void *data;
	void *metadata; /* the producer's (gs_amqp_meta for RabbitMQ) */
	const gs_acknowledger *acknowledger;
	void *ack_ref;     /* groups messages for one ack call */
	uint64_t ack_data; /* the producer's own per-message value */
	/* GS_OK, or why the message failed (gs_message_failed). */
	int status;
	size_t batcher;     /* index into gs_broadway_opts.batchers */
	uint64_t batch_key; /* batches hold messages of one key */
};

/* Marks `m` failed with `reason` (non-zero; 0 becomes GS_EINVAL). From
 * the handler that holds the message. */
void gs_message_failed(gs_message *m, int reason);

/* Sends `m` to batcher number `index` (default 0). From handle_message.
 * An index past the configured batchers fails the message with GS_EINVAL
 * when the processor routes it. */
void gs_message_put_batcher(gs_message *m, size_t index);

/* Batches hold messages of one key (default 0). From handle_message. */
void gs_message_put_batch_key(gs_message *m, uint64_t key);

/* Why a batch was handed over. */
typedef enum gs_batch_trigger {
	GS_BATCH_SIZE = 0, /* it reached batch_size */
	GS_BATCH_TIMEOUT,  /* batch_timeout passed since its first message */
	GS_BATCH_FLUSH,    /* the pipeline is draining, or a test message
			    * (gs_broadway_test_message) joined it */
} gs_batch_trigger;

typedef struct gs_batch_info {
	size_t batcher;     /* index into gs_broadway_opts.batchers */
	const char *name;   /* that batcher's name */
	uint64_t batch_key; /* the key of every message in the batch */
	size_t partition;   /* the batch processor, 0..concurrency-1 */
	size_t size;        /* messages in the batch */
	gs_batch_trigger trigger;
} gs_batch_info;

#define GS_BROADWAY_OPS_VERSION 0

/*
 * The callbacks, each given the `arg` of gs_broadway_new first. Processor
 * callbacks run on `processors.concurrency` stages at once, batch
 * callbacks on every batcher's batch processors at once: keep `arg`
 * read-only or locked. Each may block only if the stages that run it were
 * declared blocking (processors.blocking, gs_broadway_batcher_opts.blocking).
 */
typedef struct gs_broadway_ops {
	uint32_t version;
	/* Required. Processes one message on processor `processor`. May mark
	 * it failed, choose its batcher and batch key. Returning non-zero
	 * fails the message with that reason. */
	int (*handle_message)(void *arg, size_t processor, gs_message *m);
	/* Required with batchers. `msgs[0..n)` are one batch (the array is
	 * lent; the messages stay the pipeline's). May fail some of them;
	 * returning non-zero fails all that are not failed yet. */
	int (*handle_batch)(void *arg, gs_message **msgs, size_t n,
			    const gs_batch_info *info);
	/* Optional. Sees failed messages just before they are acknowledged
	 * (may change their data, status reasons or ack_data). */
	void (*handle_failed)(void *arg, gs_message **msgs, size_t n);
} gs_broadway_ops;

/* A key for partition_by: messages with equal keys keep their order. */
typedef uint64_t (*gs_broadway_key_fn)(void *arg, const gs_message *m);

#define GS_BROADWAY_PRODUCER_VERSION 0

/*
 * Where messages come from. `make` makes producer number `index` in `p`
 * with the stage options it is given (name, dispatcher, event_free: pass
 * them on unchanged, setting only `blocking` or `buffer_size` if the
 * producer needs them; gs_broadway_new refuses a producer made with
 * another dispatcher, GS_EINVAL, logged). Its events must be gs_message pointers. `free`
 * (optional) releases what `make` allocated, given the stage's state
 * (gs_stage_state), once every stage has stopped and before the stages
 * are freed. Both run on the thread calling gs_broadway_new /
 * gs_broadway_free.
 */
typedef struct gs_broadway_producer {
	uint32_t version;
	gs_err (*make)(void *arg, gs_pipeline *p, size_t index,
		       const gs_stage_opts *opts, gs_stage **out);
	void (*free)(void *arg, void *stage_state);
	void *arg;
	size_t concurrency; /* 0: 1 */
} gs_broadway_producer;

typedef struct gs_broadway_batcher_opts {
	const char *name;       /* copied; NULL: "batcher_<index>" */
	size_t concurrency;     /* batch processors; 0: 1 */
	size_t batch_size;      /* 0: 100 */
	unsigned batch_timeout; /* milliseconds; 0: 1000 */
	size_t max_demand;      /* from each processor; 0: batch_size */
	/* Messages with equal keys go to one batch processor, in order.
	 * NULL: batches go to whichever batch processor is free. */
	gs_broadway_key_fn partition_by;
	void *partition_arg;
	bool blocking; /* handle_batch may block */
} gs_broadway_batcher_opts;

/* What a trace hook is told about a message. */
typedef enum gs_broadway_trace_kind {
	GS_BROADWAY_TRACE_MESSAGE = 0, /* handle_message is about to run */
	GS_BROADWAY_TRACE_BATCH,       /* handle_batch is about to run; once per
				  * message of the batch */
	GS_BROADWAY_TRACE_ACK, /* about to go to its acknowledger: `status`
				* says successful (0) or why it failed */
} gs_broadway_trace_kind;

/*
 * Called on the stage where it happened (`stage`; NULL for a message the
 * engine cancelled because the pipeline stopped), possibly on several
 * threads at once, once per message and kind: MESSAGE once for each
 * message a processor takes, BATCH once for each message handed to
 * handle_batch, ACK exactly once for every message. The message is lent
 * for the call (after ACK its acknowledger may free it): keep the hook
 * short, copy what it keeps. With no hook set the pipeline pays one
 * branch per batch of messages.
 */
typedef void (*gs_broadway_trace_fn)(void *arg, gs_broadway_trace_kind kind,
				     const gs_message *m,
				     const gs_stage *stage);

#define GS_BROADWAY_OPTS_VERSION 0

typedef struct gs_broadway_opts {
	uint32_t version;
	const char *name; /* prefix of the stage names; NULL: "broadway" */
	gs_broadway_producer producer; /* required */
	struct {
		size_t concurrency; /* 0: the number of CPUs */
		size_t max_demand;  /* from each producer; 0: 10 */
		size_t min_demand;  /* 0: max_demand / 2 */
		/* Messages with equal keys go to one processor, in order. */
		gs_broadway_key_fn partition_by;
		void *partition_arg;
		bool blocking; /* handle_message may block */
	} processors;
	/* At most allowed_messages leave the producers per interval
	 * (milliseconds, 0: 1000). 0 allowed_messages: no limit. */
	struct {
		size_t allowed_messages;
		unsigned interval;
	} rate_limiting;
	const gs_broadway_batcher_opts *batchers; /* copied */
	size_t n_batchers;
	/* Log and trace hooks for the underlying pipeline. */
	gs_pipeline_opts pipeline;
	/* Per-message tracing (see gs_broadway_trace_fn); NULL: none. */
	gs_broadway_trace_fn trace;
	void *trace_arg;
} gs_broadway_opts;

/*
 * Builds the pipeline, not started. `ops` and `opts` are copied (names
 * too); `arg` stays the caller's. Refused: a NULL or missing
 * handle_message, producer.make or handle_batch with batchers, a
 * max_demand above GS_MAX_DEMAND (GS_EINVAL), a version above this
 * header's (GS_EVERSION), min_demand >= max_demand (GS_EDEMAND), each with
 * a message through opts.pipeline's log hook (NULL
 * stage) or on stderr; or whatever producer.make returned. On error *out
 * is untouched and nothing is left behind (producers made so far are
 * freed).
 */
gs_err gs_broadway_new(const gs_broadway_ops *ops, void *arg,
		       const gs_broadway_opts *opts, gs_broadway **out);

/* Starts every stage. GS_ESTATE if already started. */
gs_err gs_broadway_start(gs_broadway *bw);

/* Blocks until every stage has finished (the producers ran out, or a stop);
 * returns the first error a stage stopped with, or GS_OK. Any thread but
 * the pipeline's own. */
gs_err gs_broadway_wait(gs_broadway *bw);

/* Graceful drain (see above), then waits as gs_broadway_wait. Any thread
 * but the pipeline's own. */
gs_err gs_broadway_stop(gs_broadway *bw);

/* Stops at once if running (messages in flight are acknowledged failed
 * with GS_ECANCELED), then frees everything, the producers through
 * producer.free. NULL is a no-op. */
void gs_broadway_free(gs_broadway *bw);

/* The pipeline underneath, for gs_pipeline_write_dot and gs_stage_stats
 * on its stages. Owned by bw. */
gs_pipeline *gs_broadway_pipeline(gs_broadway *bw);

typedef struct gs_broadway_stats {
	uint64_t received;   /* messages handed to handle_message */
	uint64_t successful; /* acknowledged successful */
	uint64_t failed;     /* acknowledged failed (cancelled included) */
	uint64_t cancelled;  /* of those, failed with GS_ECANCELED */
	uint64_t batches;    /* handle_batch calls */
	uint64_t ack_calls;  /* acknowledger calls (one per group) */
} gs_broadway_stats;

/* A snapshot of the counters, from any thread; each counter is exact, the
 * set is not taken atomically. */
gs_err gs_broadway_stats_get(const gs_broadway *bw, gs_broadway_stats *out);

/*
 * Test helpers, as Broadway's test_message/test_batch: an in-memory
 * producer, and calls that push data through it and wait for the
 * acknowledgement.
 */

/* A producer that gs_broadway_test_message/test_batch feed. */
gs_broadway_producer gs_broadway_test_producer(void);

/* What came back for one test_message/test_batch call. `ok` and `failed`
 * hold the data pointers of the messages (in acknowledgement order),
 * `reasons` each failed one's status. Free with gs_broadway_test_ack_fini. */
typedef struct gs_broadway_test_ack {
	void **ok;
	size_t n_ok;
	void **failed;
	int *reasons;
	size_t n_failed;
	size_t ack_calls; /* acknowledger calls these took */
} gs_broadway_test_ack;

typedef struct gs_broadway_test_ref gs_broadway_test_ref;

/* Sends one message with `data` (and `batch_key`... set by the handlers)
 * through a pipeline built on gs_broadway_test_producer; one not started
 * yet holds it in the producer's queue until it starts (as gs_push does),
 * so gs_broadway_test_wait before the start times out. As in Broadway, the
 * batch it joins is handed over at once (GS_BATCH_FLUSH), without waiting
 * for batch_size or batch_timeout. *ref identifies it for
 * gs_broadway_test_wait. Thread-safe. GS_ESTATE if the pipeline's producer
 * is not the test producer or no longer runs. */
gs_err gs_broadway_test_message(gs_broadway *bw, void *data,
				gs_broadway_test_ref **ref);

/* As test_message for n messages under one ref, pushed together; their
 * batches go out as batch_size and batch_timeout say (Broadway's :bulk
 * mode). */
gs_err gs_broadway_test_batch(gs_broadway *bw, void *const *data, size_t n,
			      gs_broadway_test_ref **ref);

/* Waits up to timeout_ms (negative: for ever) until every message of `ref`
 * has been acknowledged, then fills *out and frees ref. GS_ETIMEDOUT
 * leaves ref valid to wait again. */
gs_err gs_broadway_test_wait(gs_broadway_test_ref *ref, int timeout_ms,
			     gs_broadway_test_ack *out);

/* Frees what test_wait put in *a. */
void gs_broadway_test_ack_fini(gs_broadway_test_ack *a);

#ifdef __cplusplus
}
#endif

#endif
