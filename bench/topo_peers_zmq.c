// SPDX-License-Identifier: MIT
/*
 * ZeroMQ peers on the same work, built only when libzmq is present:
 * inproc PUSH/PULL for 1-1, and PUB with four SUBs for 1-4-broadcast. One
 * 8-byte message per event, as a user would send events. The high-water
 * marks are set to 0 (no limit) for PUB/SUB, since a PUB drops rather than
 * waits at its mark: ZeroMQ has no back-pressure there, only buffering.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "bench.h"

#define SUBS 4

typedef struct zpeer {
	void *ctx;
	const char *endpoint;
	int type;
	uint64_t expect; /* events this receiver takes */
	uint64_t sum, count;
	_Atomic int *ready;
	const gsb_params *params;
} zpeer;

static void *receive(void *arg)
{
	zpeer *z = arg;
	void *sock = zmq_socket(z->ctx, z->type);
	int hwm = 0;
	zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
	if (z->type == ZMQ_SUB)
		zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
	zmq_connect(sock, z->endpoint);
	atomic_fetch_add(z->ready, 1);
	uint64_t v;
	while (z->count < z->expect &&
	       zmq_recv(sock, &v, sizeof v, 0) == (int)sizeof v) {
		z->sum += v;
		z->count++;
		if (z->count % 4096 == 0)
			gsb_progress(z->params, z->count);
	}
	zmq_close(sock);
	return NULL;
}

static void run_zmq(const gsb_params *p, int out_type, int in_type,
		    size_t receivers, uint64_t produced, gsb_result *r)
{
	void *ctx = zmq_ctx_new();
	void *out = zmq_socket(ctx, out_type);
	int hwm = out_type == ZMQ_PUB ? 0 : 1000;
	zmq_setsockopt(out, ZMQ_SNDHWM, &hwm, sizeof hwm);
	zmq_bind(out, "inproc://gsb");
	_Atomic int ready = 0;
	zpeer z[SUBS];
	pthread_t th[SUBS];
	double t0 = gsb_now();
	for (size_t i = 0; i < receivers; i++) {
		z[i] = (zpeer){ ctx, "inproc://gsb", in_type, produced, 0,
				0,   &ready,         p };
		pthread_create(&th[i], NULL, receive, &z[i]);
	}
	while (atomic_load(&ready) < (int)receivers)
		sched_yield();
	if (out_type == ZMQ_PUB) /* let the subscriptions reach the PUB */
		nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
	t0 = gsb_now();
	for (uint64_t v = 1; v <= produced; v++)
		zmq_send(out, &v, sizeof v, 0);
	r->delivered = r->checksum = 0;
	for (size_t i = 0; i < receivers; i++) {
		pthread_join(th[i], NULL);
		r->delivered += z[i].count;
		r->checksum += z[i].sum;
	}
	r->seconds = gsb_now() - t0;
	r->expected = gsb_expected_sum(produced, 0) * receivers;
	snprintf(r->note, sizeof r->note,
		 "libzmq %d.%d.%d, one message per "
		 "event",
		 ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH);
	zmq_close(out);
	zmq_ctx_term(ctx);
}

void gsb_run_zmq_1_1(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	(void)t;
	run_zmq(p, ZMQ_PUSH, ZMQ_PULL, 1, p->events, r);
}

void gsb_run_zmq_1_4_broadcast(const gsb_topology *t, const gsb_params *p,
			       gsb_result *r)
{
	(void)t;
	run_zmq(p, ZMQ_PUB, ZMQ_SUB, SUBS, p->events / SUBS, r);
}
