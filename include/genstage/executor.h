// SPDX-License-Identifier: MIT
/*
 * Executors: the worker threads that run stages. A stage is a task, not a
 * thread: it is runnable when it has something to do (a control message,
 * events it has credit to take, demand to serve, a due timer), and a worker
 * runs it for a bounded quantum, then takes the next, so any number of
 * stages share a few threads and none starves another. A stage never runs
 * on two workers at once, and each of its callbacks sees the effects of the
 * ones before it, so its state needs no lock.
 *
 * By default every pipeline shares one executor per process, with one
 * worker per CPU the process may use (its affinity mask, so taskset and
 * cpusets are honoured; the GS_WORKERS environment variable overrides the
 * count: a number from 1 to 1024, anything else is ignored with a warning on
 * stderr). Give pipelines an executor of their own with gs_executor_new and
 * gs_pipeline_opts.executor.
 *
 * Callbacks of scheduled stages must not block: a worker blocked in one
 * stage runs no other. A stage whose callbacks block (sleep, disk, network,
 * a slow webhook) sets gs_stage_opts.blocking and gets a thread of its own.
 */
#ifndef GENSTAGE_EXECUTOR_H
#define GENSTAGE_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gs_executor gs_executor;

/* The version of gs_executor_opts (see genstage/version.h). */
#define GS_EXECUTOR_OPTS_VERSION 0

typedef struct gs_executor_opts {
	uint32_t version; /* GS_EXECUTOR_OPTS_VERSION, or 0 */
	/* Worker threads; 0: GS_WORKERS from the environment if set, else
	 * one per CPU in the process's affinity mask. */
	size_t workers;
	/* Thread name prefix (up to 10 characters are kept); NULL: "gs". The
	 * workers are named "<prefix>-w<i>", cut to Linux's 15 characters:
	 * with a 10-character prefix, workers 1000 and up share names. */
	const char *name;
} gs_executor_opts;

/* Creates an executor and starts its workers, which park at once and use
 * no CPU until there is work. `opts` may be NULL and is read once. On
 * error *out is untouched: GS_EINVAL (more than 1024 workers), GS_ENOMEM,
 * GS_ESPAWN, GS_EVERSION (said on stderr: there is no log hook yet). */
gs_err gs_executor_new(const gs_executor_opts *opts, gs_executor **out);

/* Gives up the caller's reference. Pipelines created with the executor
 * hold references of their own: the workers stop and the executor is freed
 * once the last of those pipelines has been freed. NULL is a no-op. Not
 * from inside a stage's callbacks (it may have to join the workers). */
void gs_executor_free(gs_executor *ex);

/* The number of worker threads; 0 for NULL. Thread-safe. */
size_t gs_executor_workers(const gs_executor *ex);

#ifdef __cplusplus
}
#endif

#endif
