// SPDX-License-Identifier: MIT
/*
 * Private to pipelines/broadway*.c: the pipeline's description and
 * counters, the per-stage states of processors, batchers, batch processors
 * and the rate limiter, and the acknowledgement of a set of messages.
 */
#ifndef GS_BROADWAY_INTERNAL_H
#define GS_BROADWAY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <genstage/broadway.h>
#include <genstage/genstage.h>

#define GS_BROADWAY_API __attribute__((visibility("default")))

#define GS__BW_NAME 48

typedef struct gs__bw_batcher {
	gs_broadway_batcher_opts o; /* name points at `name` */
	char name[GS__BW_NAME];
} gs__bw_batcher;

/* Counters every stage adds to. */
typedef struct gs__bw_counts {
	_Atomic uint64_t received, successful, failed, cancelled, batches,
		ack_calls;
} gs__bw_counts;

/* Scratch arrays an acknowledgement point sorts a set of messages into,
 * grown to the largest set it has seen (so no allocation per message). */
typedef struct gs__bw_acker {
	gs_message **ok, **failed, **rest;
	size_t cap;
} gs__bw_acker;

typedef struct gs__bw_test gs__bw_test;

struct gs_broadway {
	gs_broadway_ops ops;
	void *arg;
	gs_broadway_opts o; /* name points at `name`, batchers at `batchers` */
	char name[GS__BW_NAME];
	gs__bw_batcher *batchers;
	gs_pipeline *p;
	gs_stage **producers; /* producer.concurrency */
	/* Every stage of the pipeline, listed as it is made (then read
	 * only): one that fails stops them all (gs__bw_failed). */
	gs_stage **stages;
	size_t n_stages;
	void **producer_states;
	size_t n_producers;
	gs__bw_counts counts;
	gs__bw_test *test; /* the test producer's registry, or NULL */
	/* The per-stage states, freed with bw. */
	struct gs__bw_kept {
		void *state;
		void (*fn)(void *state);
	} * kept;
	size_t n_kept;
};

/* A stage of ours stopped for `reason`: if that is a failure, every stage
 * is stopped with it, as Broadway's supervisor takes the pipeline down,
 * and what they hold is acknowledged failed. Otherwise a done stage could
 * hold, for ever, messages for the failed one (a partition of a batcher
 * that no other stage takes). From any stage's callbacks. */
void gs__bw_failed(gs_broadway *bw, int reason);

/* Settles msgs[0..n) on `stage`: handle_failed on the failed ones, then
 * one acknowledger call per group. Counts in bw and traces. Grows `a` if
 * it must; if it cannot, acknowledges one message per call (slower, never
 * lost). */
void gs__bw_ack(gs_broadway *bw, gs__bw_acker *a, const gs_stage *stage,
		gs_message **msgs, size_t n);

/* Tells opts.trace (if set) `kind` for msgs[0..n) on `stage`. */
void gs__bw_trace(gs_broadway *bw, gs_broadway_trace_kind kind,
		  const gs_stage *stage, gs_message *const *msgs, size_t n);
void gs__bw_acker_fini(gs__bw_acker *a);
/* Grows `a` for sets of n messages now, so that a stage whose sets are
 * bounded never allocates while it runs. */
gs_err gs__bw_acker_reserve(gs__bw_acker *a, size_t n);

/* event_free for stages whose events are messages: acknowledges the
 * message failed with GS_ECANCELED. `arg` is the gs_broadway. */
void gs__bw_drop_message(void *event, void *arg);

/* Registers a per-stage state to free (with `fn`) when bw is freed;
 * frees it at once and returns GS_ENOMEM if it cannot. */
gs_err gs__bw_keep(gs_broadway *bw, void *state, void (*fn)(void *state));

/* Stage builders; each makes `count` stages (or one) in bw->p and
 * subscribes them, returning the stages in out[]. */
gs_err gs__bw_rate_limiter_new(gs_broadway *bw, const gs_stage_opts *so,
			       gs_stage **out);
gs_err gs__bw_processor_new(gs_broadway *bw, size_t index,
			    const gs_stage_opts *so, gs_stage **out);
gs_err gs__bw_batcher_new(gs_broadway *bw, size_t b, const gs_stage_opts *so,
			  gs_stage **out);
/* The batch processor `index` of batcher b. */
gs_err gs__bw_batch_processor_new(gs_broadway *bw, size_t b, size_t index,
				  const gs_stage_opts *so, gs_stage **out);

/* Whether m came from gs_broadway_test_message, whose batch is flushed
 * as soon as m joins it, as Broadway's test_message asks. */
bool gs__bw_test_flushes(const gs_message *m);
/* Gives bw a test registry if its producer is the test producer. */
gs_err gs__bw_test_attach(gs_broadway *bw);
/* Frees the test registry (refs nobody waited for). NULL: nothing. */
void gs__bw_test_free(gs__bw_test *t);

/* The hash partition_by options use: the key, mixed, modulo n. */
size_t gs__bw_partition(uint64_t key, size_t n);

#endif
