// SPDX-License-Identifier: MIT
/*
 * The baselines: the same work as 1-1 (a producer thread hands 1..n to a
 * consumer thread that sums them) without the library. The floor is a
 * mutex and condition-variable queue moving batches of up to 500, as a
 * competent C programmer writes it; the ceiling is the engine's private
 * bulk ring moving the same batches with both threads spinning. The
 * one-item rows (the mutex queue, ck_ring, and the bulk ring, one item per
 * call) show what batching is worth. The spinning ones yield the CPU after
 * long waits (see gsb_backoff).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <ck_ring.h>

#include "bench.h"
#include "ring.h"

/* Slots in every baseline's queue: the ring a max_demand of 1000 gets. */
#define QUEUE_SLOTS 1024u
/* Items per push and per peek on the bulk ring: the chunk a consumer
 * with max_demand 1000 and min_demand 500 takes. gs-ring/1 moves one
 * item per call instead, as ck_ring must, to compare the rings alone. */
#define BULK 500u

_Static_assert((QUEUE_SLOTS & (QUEUE_SLOTS - 1)) == 0,
	       "ck_ring sizes are powers of two");

/* Cache-line aligned memory, so that the shared indices of a queue never
 * share a line with anything else; aligned_alloc wants whole lines. */
static void *alloc_lines(size_t size)
{
	size_t lines = (size + GS__CACHELINE - 1) / GS__CACHELINE;
	return aligned_alloc(GS__CACHELINE, lines * GS__CACHELINE);
}

/* A bounded queue under a mutex: one item per lock acquisition
 * (mutex-queue/1), or as many as fit up to a batch (mutex-batch). */
typedef struct mutex_queue {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	void *slots[QUEUE_SLOTS];
	size_t head, count;
} mutex_queue;

/* Whichever queue a pair of threads shares, and what the consumer saw.
 * Both threads read it, so the consumer keeps its running sum and count
 * to itself and writes them here once, at the end. */
typedef struct pair {
	const gsb_params *params;
	void *queue;
	size_t batch; /* items per call, where the queue takes several */
	uint64_t sum, count;
} pair;

/* Runs produce and consume on two threads over `queue`; fills r. */
static void run_pair(const gsb_params *p, void *queue, size_t batch,
		     void *(*produce)(void *), void *(*consume)(void *),
		     gsb_result *r)
{
	pair pr = { .params = p, .queue = queue, .batch = batch };
	pthread_t prod, cons;
	double t0 = gsb_now();
	if (pthread_create(&cons, NULL, consume, &pr)) {
		r->err = 1;
		snprintf(r->note, sizeof r->note, "pthread_create failed");
		return;
	}
	if (pthread_create(&prod, NULL, produce, &pr)) {
		/* The consumer waits for ever: exit, and let the parent see
		 * the error. */
		fprintf(stderr, "gs-bench: pthread_create failed\n");
		_Exit(1);
	}
	pthread_join(prod, NULL);
	pthread_join(cons, NULL);
	r->seconds = gsb_now() - t0;
	r->delivered = pr.count;
	r->checksum = pr.sum;
	r->expected = gsb_expected_sum(p->events, 0);
}

/* A consumer's bookkeeping once it has taken n items: their sum, its
 * count, and now and then the progress. */
static inline void took(const pair *pr, void *const *items, size_t n,
			uint64_t *sum, uint64_t *count)
{
	for (size_t i = 0; i < n; i++)
		*sum += (uintptr_t)items[i];
	*count += n;
	if (*count % GSB_PROGRESS_EVERY < n)
		gsb_progress(pr->params, *count);
}

static void *mq_produce(void *arg)
{
	pair *pr = arg;
	mutex_queue *q = pr->queue;
	uint64_t last = pr->params->events;
	for (uint64_t v = 1; v <= last; v++) {
		pthread_mutex_lock(&q->lock);
		while (q->count == QUEUE_SLOTS)
			pthread_cond_wait(&q->not_full, &q->lock);
		q->slots[(q->head + q->count) % QUEUE_SLOTS] =
			(void *)(uintptr_t)v;
		q->count++;
		pthread_cond_signal(&q->not_empty);
		pthread_mutex_unlock(&q->lock);
	}
	return NULL;
}

static void *mq_consume(void *arg)
{
	pair *pr = arg;
	mutex_queue *q = pr->queue;
	uint64_t last = pr->params->events, sum = 0;
	for (uint64_t i = 1; i <= last; i++) {
		pthread_mutex_lock(&q->lock);
		while (q->count == 0)
			pthread_cond_wait(&q->not_empty, &q->lock);
		uintptr_t v = (uintptr_t)q->slots[q->head];
		q->head = (q->head + 1) % QUEUE_SLOTS;
		q->count--;
		pthread_cond_signal(&q->not_full);
		pthread_mutex_unlock(&q->lock);
		sum += v;
		if (i % GSB_PROGRESS_EVERY == 0)
			gsb_progress(pr->params, i);
	}
	pr->sum = sum;
	pr->count = last;
	return NULL;
}

/* The floor: the producer fills a batch of up to `batch` values outside
 * the lock, then takes the lock once per batch and copies in as many as
 * fit; it signals only when the queue goes from empty to non-empty, and
 * waits only when it is full. */
static void *mb_produce(void *arg)
{
	pair *pr = arg;
	mutex_queue *q = pr->queue;
	void *batch[BULK];
	uint64_t last = pr->params->events;
	for (uint64_t v = 1; v <= last;) {
		size_t n = last - v + 1 < pr->batch ? (size_t)(last - v + 1)
						    : pr->batch;
		for (size_t i = 0; i < n; i++)
			batch[i] = (void *)(uintptr_t)(v + i);
		for (size_t done = 0; done < n;) {
			pthread_mutex_lock(&q->lock);
			while (q->count == QUEUE_SLOTS)
				pthread_cond_wait(&q->not_full, &q->lock);
			bool was_empty = q->count == 0;
			size_t k = QUEUE_SLOTS - q->count;
			if (k > n - done)
				k = n - done;
			for (size_t i = 0; i < k; i++)
				q->slots[(q->head + q->count + i) %
					 QUEUE_SLOTS] = batch[done + i];
			q->count += k;
			if (was_empty)
				pthread_cond_signal(&q->not_empty);
			pthread_mutex_unlock(&q->lock);
			done += k;
		}
		v += n;
	}
	return NULL;
}

/* The consumer takes up to a batch per lock, signals only when the queue
 * goes from full to not full, and sums outside the lock. */
static void *mb_consume(void *arg)
{
	pair *pr = arg;
	mutex_queue *q = pr->queue;
	void *batch[BULK];
	uint64_t last = pr->params->events, sum = 0, count = 0;
	while (count < last) {
		pthread_mutex_lock(&q->lock);
		while (q->count == 0)
			pthread_cond_wait(&q->not_empty, &q->lock);
		bool was_full = q->count == QUEUE_SLOTS;
		size_t n = q->count < pr->batch ? q->count : pr->batch;
		for (size_t i = 0; i < n; i++)
			batch[i] = q->slots[(q->head + i) % QUEUE_SLOTS];
		q->head = (q->head + n) % QUEUE_SLOTS;
		q->count -= n;
		if (was_full)
			pthread_cond_signal(&q->not_full);
		pthread_mutex_unlock(&q->lock);
		took(pr, batch, n, &sum, &count);
	}
	pr->sum = sum;
	pr->count = count;
	return NULL;
}

static void run_mutex_queue(const gsb_params *p, size_t batch,
			    void *(*produce)(void *), void *(*consume)(void *),
			    gsb_result *r)
{
	mutex_queue *q = calloc(1, sizeof *q);
	if (!q) {
		r->err = 1;
		snprintf(r->note, sizeof r->note, "out of memory");
		return;
	}
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
	run_pair(p, q, batch, produce, consume, r);
	pthread_cond_destroy(&q->not_full);
	pthread_cond_destroy(&q->not_empty);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void gsb_run_mutex_queue(const gsb_topology *t, const gsb_params *p,
			 gsb_result *r)
{
	(void)t;
	run_mutex_queue(p, 1, mq_produce, mq_consume, r);
}

void gsb_run_mutex_batch(const gsb_topology *t, const gsb_params *p,
			 gsb_result *r)
{
	(void)t;
	run_mutex_queue(p, BULK, mb_produce, mb_consume, r);
}

typedef struct ck_queue {
	ck_ring_t ring;
	ck_ring_buffer_t slots[QUEUE_SLOTS];
} ck_queue;

static void *ck_produce(void *arg)
{
	pair *pr = arg;
	ck_queue *q = pr->queue;
	uint64_t last = pr->params->events;
	for (uint64_t v = 1; v <= last; v++) {
		unsigned tries = 0;
		while (!ck_ring_enqueue_spsc(&q->ring, q->slots,
					     (void *)(uintptr_t)v))
			gsb_backoff(&tries);
	}
	return NULL;
}

static void *ck_consume(void *arg)
{
	pair *pr = arg;
	ck_queue *q = pr->queue;
	uint64_t last = pr->params->events, sum = 0;
	for (uint64_t i = 1; i <= last; i++) {
		void *v;
		unsigned tries = 0;
		/* The argument is declared void * but is a void **. */
		while (!ck_ring_dequeue_spsc(&q->ring, q->slots, &v))
			gsb_backoff(&tries);
		sum += (uintptr_t)v;
		if (i % GSB_PROGRESS_EVERY == 0)
			gsb_progress(pr->params, i);
	}
	pr->sum = sum;
	pr->count = last;
	return NULL;
}

void gsb_run_ck_ring(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	(void)t;
	ck_queue *q = alloc_lines(sizeof *q);
	if (!q) {
		r->err = 1;
		snprintf(r->note, sizeof r->note, "out of memory");
		return;
	}
	ck_ring_init(&q->ring, QUEUE_SLOTS);
	run_pair(p, q, 1, ck_produce, ck_consume, r);
	free(q);
}

/* Pushes all n items, spinning while the ring is full. */
static void push_all(gs__ring *r, void *const *items, size_t n)
{
	unsigned tries = 0;
	while (n) {
		size_t k = gs__ring_push(r, items, n);
		if (!k)
			gsb_backoff(&tries);
		items += k;
		n -= k;
	}
}

static void *gsr_produce(void *arg)
{
	pair *pr = arg;
	void *batch[BULK];
	uint64_t last = pr->params->events;
	size_t most = pr->batch;
	for (uint64_t v = 1; v <= last;) {
		size_t n = last - v + 1 < most ? (size_t)(last - v + 1) : most;
		for (size_t i = 0; i < n; i++)
			batch[i] = (void *)(uintptr_t)(v + i);
		push_all(pr->queue, batch, n);
		v += n;
	}
	return NULL;
}

static void *gsr_consume(void *arg)
{
	pair *pr = arg;
	gs__ring *r = pr->queue;
	uint64_t last = pr->params->events, sum = 0, count = 0;
	size_t most = pr->batch;
	unsigned tries = 0;
	while (count < last) {
		void **items;
		size_t n = gs__ring_peek(r, &items, most);
		if (!n) {
			gsb_backoff(&tries);
			continue;
		}
		tries = 0;
		took(pr, items, n, &sum, &count);
		gs__ring_release(r, n);
	}
	pr->sum = sum;
	pr->count = count;
	return NULL;
}

static void run_gs_ring(const gsb_params *p, size_t batch, gsb_result *r)
{
	gs__ring *ring = alloc_lines(sizeof *ring);
	if (!ring || gs__ring_init(ring, QUEUE_SLOTS)) {
		free(ring);
		r->err = 1;
		snprintf(r->note, sizeof r->note, "out of memory");
		return;
	}
	run_pair(p, ring, batch, gsr_produce, gsr_consume, r);
	gs__ring_fini(ring);
	free(ring);
}

void gsb_run_gs_ring(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	(void)t;
	run_gs_ring(p, BULK, r);
}

void gsb_run_gs_ring_1(const gsb_topology *t, const gsb_params *p,
		       gsb_result *r)
{
	(void)t;
	run_gs_ring(p, 1, r);
}
