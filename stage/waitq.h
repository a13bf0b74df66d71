// SPDX-License-Identifier: MIT
/*
 * A queue of events shared by a stage's worker and ordinary threads (the
 * push producer's pushers, the stream's puller): a buffer under a mutex,
 * with a condition variable on the monotonic clock to wait for room or for
 * events.
 */
#ifndef GS_WAITQ_H
#define GS_WAITQ_H

#include <pthread.h>

#include "buffer.h"

typedef struct gs_stage gs_stage;

typedef struct gs__waitq {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	gs__buffer q; /* lock */
} gs__waitq;

/* 0, or -1 when the mutex or condition variable cannot be made. */
int gs__waitq_init(gs__waitq *w, size_t limit, gs_keep keep);

/* Drops what is left as `owner`'s (counted, to its event_free; NULL owner
 * only when the queue is known empty) and destroys the queue. Returns how
 * many were dropped. */
size_t gs__waitq_fini(gs__waitq *w, gs_stage *owner);

#endif
