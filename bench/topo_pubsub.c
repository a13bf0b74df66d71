// SPDX-License-Identifier: MIT
/*
 * The bus-fanout baseline: the publish/subscribe a competent C programmer
 * writes first. One thread per subscriber, each with a bounded queue under
 * a mutex and two condition variables; the publisher looks the topic up in
 * a hash table of routes computed at subscribe time (the same patterns and
 * topics as bus-fanout, matched with the same function), then for each
 * matching subscriber locks its queue, waits while it is full, pushes, and
 * signals only when the queue was empty. A subscriber takes everything
 * queued under one lock, signals only when the queue was full, and handles
 * the batch outside the lock.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <genstage/genstage.h>

#include "bench.h"

#define QUEUE 4096
#define ROUTE_SLOTS 64 /* a power of two, above 2 x the topics */

typedef struct item {
	const char *topic;
	void *payload;
} item;

typedef struct queue {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	item slots[QUEUE];
	size_t head, count;
	bool closed;
	/* the subscriber's own */
	_Alignas(64) uint64_t sum, count_in;
	const gsb_params *params;
	_Atomic uint64_t *total;
} queue;

typedef struct route {
	const char *topic; /* NULL: free slot */
	uint64_t hash;
	size_t n;
	size_t subs[GSB_FANOUT_SUBS];
} route;

static uint64_t fnv(const char *s)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3u;
	}
	return h;
}

static route *find(route *table, const char *topic, uint64_t h)
{
	size_t i = (size_t)h & (ROUTE_SLOTS - 1);
	while (table[i].topic &&
	       (table[i].hash != h || strcmp(table[i].topic, topic)))
		i = (i + 1) & (ROUTE_SLOTS - 1);
	return &table[i];
}

static void build_routes(route *table)
{
	memset(table, 0, ROUTE_SLOTS * sizeof *table);
	for (size_t t = 0; t < GSB_FANOUT_TOPICS; t++) {
		const char *topic = gsb_fanout_topics[t];
		uint64_t h = fnv(topic);
		route *r = find(table, topic, h);
		*r = (route){ .topic = topic, .hash = h };
		for (size_t s = 0; s < GSB_FANOUT_SUBS; s++) {
			bool any = false;
			for (const char *const *p = gsb_fanout_patterns[s]; *p;
			     p++) {
				bool m = false;
				gs_bus_pattern_matches(*p, topic, &m);
				any |= m;
			}
			if (any)
				r->subs[r->n++] = s;
		}
	}
}

static void push(queue *q, const char *topic, void *payload)
{
	pthread_mutex_lock(&q->lock);
	while (q->count == QUEUE)
		pthread_cond_wait(&q->not_full, &q->lock);
	q->slots[(q->head + q->count) % QUEUE] = (item){ topic, payload };
	if (q->count++ == 0)
		pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
}

static void *subscriber(void *arg)
{
	queue *q = arg;
	static _Thread_local item batch[QUEUE];
	for (;;) {
		pthread_mutex_lock(&q->lock);
		while (!q->count && !q->closed)
			pthread_cond_wait(&q->not_empty, &q->lock);
		size_t n = q->count;
		for (size_t i = 0; i < n; i++)
			batch[i] = q->slots[(q->head + i) % QUEUE];
		q->head = (q->head + n) % QUEUE;
		q->count = 0;
		bool done = q->closed && !n;
		if (n == QUEUE)
			pthread_cond_signal(&q->not_full);
		pthread_mutex_unlock(&q->lock);
		if (done)
			break;
		for (size_t i = 0; i < n; i++)
			q->sum += (uintptr_t)batch[i].payload;
		q->count_in += n;
		gsb_progress(q->params,
			     atomic_fetch_add_explicit(q->total, n,
						       memory_order_relaxed) +
				     n);
	}
	return NULL;
}

void gsb_run_pubsub_mutex(const gsb_topology *t, const gsb_params *p,
			  gsb_result *r)
{
	(void)t;
	static route table[ROUTE_SLOTS];
	queue *qs = aligned_alloc(64, GSB_FANOUT_SUBS * sizeof *qs);
	pthread_t th[GSB_FANOUT_SUBS];
	_Atomic uint64_t total = 0;
	if (!qs) {
		r->err = 1;
		snprintf(r->note, sizeof r->note, "out of memory");
		return;
	}
	build_routes(table);
	double t0 = gsb_now();
	for (size_t i = 0; i < GSB_FANOUT_SUBS; i++) {
		queue *q = &qs[i];
		memset(q, 0, sizeof *q);
		pthread_mutex_init(&q->lock, NULL);
		pthread_cond_init(&q->not_empty, NULL);
		pthread_cond_init(&q->not_full, NULL);
		q->params = p;
		q->total = &total;
		if (pthread_create(&th[i], NULL, subscriber, q)) {
			fprintf(stderr, "gs-bench: pthread_create failed\n");
			_Exit(1);
		}
	}
	uint64_t published = p->events / GSB_FANOUT_MATCHES, expected = 0;
	for (uint64_t v = 1; v <= published; v++) {
		const char *topic = gsb_fanout_topics[v % GSB_FANOUT_TOPICS];
		route *rt = find(table, topic, fnv(topic));
		for (size_t k = 0; k < rt->n; k++)
			push(&qs[rt->subs[k]], topic, (void *)(uintptr_t)v);
		expected += v * rt->n;
	}
	for (size_t i = 0; i < GSB_FANOUT_SUBS; i++) {
		pthread_mutex_lock(&qs[i].lock);
		qs[i].closed = true;
		pthread_cond_signal(&qs[i].not_empty);
		pthread_mutex_unlock(&qs[i].lock);
	}
	r->delivered = r->checksum = 0;
	for (size_t i = 0; i < GSB_FANOUT_SUBS; i++) {
		pthread_join(th[i], NULL);
		r->delivered += qs[i].count_in;
		r->checksum += qs[i].sum;
		pthread_mutex_destroy(&qs[i].lock);
		pthread_cond_destroy(&qs[i].not_empty);
		pthread_cond_destroy(&qs[i].not_full);
	}
	r->seconds = gsb_now() - t0;
	r->expected = expected;
	snprintf(r->note, sizeof r->note,
		 "%llu published one at a time, %d subscriptions per topic",
		 (unsigned long long)published, GSB_FANOUT_MATCHES);
	free(qs);
}
