// SPDX-License-Identifier: MIT
/*
 * What the connector suites share: a plain rabbitmq-c connection to the
 * suite's broker for setting up and checking queues (publishing with
 * confirms, counting, draining), a log hook that keeps the messages, and
 * per-id counters for "every message at least once" claims.
 */
#ifndef GS_AMQP_TEST_H
#define GS_AMQP_TEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <criterion/criterion.h>
#include <genstage/amqp.h>
#include <genstage/genstage.h>

#include "../gs_test.h"
#include "broker.h"

/* Fails the test if the suite's broker is not there; starts it again
 * first if an earlier test left it dead (see broker_ensure). */
void need_broker(void);

/* Connection settings for the suite's broker, quick to give up. */
gs_amqp_conn_opts test_conn(void);

/* Publishes bodies "first".."first+n-1" (decimal) as persistent messages
 * with message ids "id-<n>", to the default exchange with routing key
 * `queue`, waiting for every confirm. */
void publish_ids(const char *queue, size_t first, size_t n);

/* Names a new queue for this test (need_broker first), declares it and
 * publishes ids 0..n-1 into it (see publish_ids). */
void filled_queue(char *q, size_t size, const char *what, size_t n);

/* Ready messages in `queue` (a passive declare); -1 if it is missing. */
long queue_ready(const char *queue);

/* Declares a plain durable queue. */
void declare_queue(const char *queue);

/* Takes every ready message out of `queue` (basic.get with ack), adding
 * each body's number to counts[]; returns how many. */
size_t drain_queue(const char *queue, _Atomic unsigned *counts, size_t n);

/* Waits (the test's timeout bounds it) until queue_ready == want. */
void wait_ready(const char *queue, long want);

/* The number in a message body. */
size_t body_id(const gs_message *m);

/* A log hook keeping the last messages. */
typedef struct log_keep {
	_Atomic int n;
	char last[512];
	char all[4096];
	pthread_mutex_t lock;
} log_keep;
void log_keep_fn(void *arg, const char *msg);
bool log_has(log_keep *l, const char *text);

#endif
