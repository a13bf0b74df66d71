// SPDX-License-Identifier: MIT
/*
 * Pipelines own stages: they start them on an executor (or, for blocking
 * stages, on threads of their own), wait for them, stop them and free
 * them, and report the first error any stage stopped with. Several
 * pipelines may share one executor.
 */
#ifndef GENSTAGE_PIPELINE_H
#define GENSTAGE_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "executor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gs_pipeline gs_pipeline;
typedef struct gs_stage gs_stage;

typedef enum gs_log_level {
	GS_LOG_WARN = 0, /* events dropped */
	GS_LOG_ERROR,    /* a stage stopped abnormally */
} gs_log_level;

/* Called on the thread where the drop or stop happened; may be called from
 * several threads at once. `stage` is valid for the call; it is NULL for a
 * call that made no stage (a struct version refused, on the caller's
 * thread). No lock of the library's is held: the hook may call into it as
 * its thread may (gs_pipeline_write_dot while gs_pipeline_wait_for reports,
 * say). */
typedef void (*gs_log_fn)(void *arg, gs_log_level level, const gs_stage *stage,
			  const char *msg);

/* Called in the consumer's run before each batch is handed to
 * handle_events. Keep it cheap: it runs once per batch. */
typedef void (*gs_trace_fn)(void *arg, const gs_stage *from, const gs_stage *to,
			    size_t n);

/* Versions of the structs below (see genstage/version.h). */
#define GS_PIPELINE_OPTS_VERSION 0

typedef struct gs_pipeline_opts {
	uint32_t version; /* GS_PIPELINE_OPTS_VERSION, or 0 */
	gs_log_fn log;    /* NULL: one line on stderr per drop or error */
	void *log_arg;
	gs_trace_fn trace; /* NULL: no tracing */
	void *trace_arg;
	/* The workers that run the pipeline's scheduled stages; the pipeline
	 * holds a reference until gs_pipeline_free. NULL: the process's
	 * shared executor (see executor.h). */
	gs_executor *executor;
	/* A debug aid, off by default (0): a scheduled stage's callback
	 * that holds its worker longer than this many milliseconds is logged
	 * once (GS_LOG_WARN, naming the stage) when it returns: it probably
	 * blocks, and the stage should be a blocking one. Wall-clock time,
	 * so on a loaded machine a callback that was only preempted may be
	 * named too: pick a threshold well above your callbacks' work. */
	uint32_t warn_callback_ms;
} gs_pipeline_opts;

typedef enum gs_stop_mode {
	/* Sources stop producing; every buffered and in-flight event is
	 * delivered downstream; stages finish from the top. What no
	 * subscription can ever take is dropped (counted, to event_free): a
	 * done producer's buffer when it has no subscriber, what waits for a
	 * producer-consumer with no subscriber in its input, a partition's
	 * queue when no subscription holds the partition. What waits for a
	 * subscriber's demand is still delivered, so a manual subscription
	 * that never asks again holds the drain: stop it with
	 * GS_STOP_NOW, or wait with gs_pipeline_wait_for. */
	GS_STOP_DRAIN = 0,
	/* Every stage stops at once; undelivered events go to their
	 * producer's event_free and are counted as dropped. */
	GS_STOP_NOW,
} gs_stop_mode;

/* Creates an empty pipeline. `opts` may be NULL; it is read once. On error
 * *out is untouched: GS_EINVAL, GS_ENOMEM, or GS_ESPAWN when the shared
 * executor's workers could not be started. */
gs_err gs_pipeline_new(const gs_pipeline_opts *opts, gs_pipeline **out);

/* Starts every stage: scheduled ones are queued on the executor, blocking
 * ones get their thread. Waits until every stage's init has run and
 * returns the first init's failure (the pipeline is then stopped and
 * waited for), as GenStage's start_link does, or GS_ESPAWN when a blocking
 * stage gets no thread (the stages not started then never run, as after a
 * stop before the start); from inside a stage's
 * callbacks it does not wait. Stages created later start at once.
 * GS_ESTATE if already started, or stopped. */
gs_err gs_pipeline_start(gs_pipeline *p);

/* Blocks until every stage has finished. Returns the first error a stage
 * stopped with, or GS_OK. May be called more than once, from any thread
 * but not from inside a stage's callbacks, nor from a handler of a pool
 * (pool.h) in this pipeline, which the wait would wait for (GS_ETHREAD).
 * GS_ESTATE before gs_pipeline_start. */
gs_err gs_pipeline_wait(gs_pipeline *p);

/* As gs_pipeline_wait, for at most timeout_ms (negative: for ever). If
 * some stage has not finished by then, returns GS_ETIMEDOUT and logs, for
 * each unfinished stage, what it waits for (a consumer with no
 * subscription, a done producer with no subscriber, a push producer never
 * closed...): the same lines gs_pipeline_write_dot puts in the graph. */
gs_err gs_pipeline_wait_for(gs_pipeline *p, int timeout_ms);

/* Stops every stage (see gs_stop_mode) and waits for them; returns what
 * gs_pipeline_wait returns. A stage created while it stops, or after, is
 * stopped the same way (GS_STOP_NOW overrides an earlier drain). From any
 * thread, but not from inside a stage's callbacks nor from a handler of a
 * pool in this pipeline (GS_ETHREAD; gs_stage_stop, which does not wait,
 * may be called there). Threads blocked in gs_push or gs_stream_next on
 * its stages return GS_ECLOSED. Allocates nothing. A pipeline stopped
 * before gs_pipeline_start, in either mode, never runs (its start is then
 * GS_ESTATE): calls waiting on its stages (gs_push, gs_stream_next,
 * gs_call) return GS_ECLOSED, later ones are refused so, and what was
 * pushed goes to event_free, counted and logged. */
gs_err gs_pipeline_stop(gs_pipeline *p, gs_stop_mode mode);

/* Stops (GS_STOP_NOW) if running, then frees every stage and subscription;
 * subscription handles are invalid afterwards. NULL is a no-op (GS_OK).
 * Refused with GS_ETHREAD from inside a stage's callbacks (it would free
 * the stage running it) and from a handler of a pool in this pipeline.
 * Like any object a C program frees, no other thread may be inside a call
 * on the pipeline or its stages (gs_push, gs_stream_next, gs_call...) as
 * it is freed, nor call one after: to end threads blocked in such calls,
 * gs_pipeline_stop first (they return GS_ECLOSED), join them, then free. */
gs_err gs_pipeline_free(gs_pipeline *p);

/* Writes the graph in Graphviz dot syntax, with live counts from
 * gs_stage_stats and, while the pipeline runs, what each unfinished stage
 * waits for. Thread-safe; the graph is drawn in memory and written after,
 * so a slow FILE holds up no stage. GS_EINVAL on NULL arguments, GS_EIO
 * when writing to `f` fails, GS_ENOMEM. */
gs_err gs_pipeline_write_dot(gs_pipeline *p, FILE *f);

#ifdef __cplusplus
}
#endif

#endif
