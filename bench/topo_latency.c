// SPDX-License-Identifier: MIT
/*
 * Hot latency: one event in flight (max_demand 1), each carrying the time
 * of its gs_emit; the consumer records how long it took to reach
 * handle_events. The reference is the same hand-off over a mutex and
 * condition variable (the floor queue with one event in flight), measured
 * in the same process in alternating blocks, so both see the same machine.
 * Then the pipeline idles with nothing to do, and the CPU the process burns
 * meanwhile is measured: idle workers must be asleep.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include <genstage/genstage.h>

#include "bench.h"

/* Blocks of samples, alternating between the pipeline and the reference. */
#define BLOCKS 10

/* Emits one stamped event per unit of demand while its budget lasts; the
 * measuring thread raises the budget with gs_cast, one block at a time. */
typedef struct stamper {
	_Alignas(64) uint64_t budget;
	uint64_t pending; /* demand not met for lack of budget */
} stamper;

/* Records each event's age; posts `done` when `until` events are in. */
typedef struct timer {
	_Alignas(64) uint64_t *ns;
	uint64_t count, until;
	sem_t done;
	const gsb_params *params;
} timer;

static int stamp_emit(stamper *s, gs_stage *stage)
{
	for (; s->pending && s->budget; s->pending--, s->budget--) {
		void *ev = (void *)(uintptr_t)gsb_now_ns();
		gs_err err = gs_emit(stage, &ev, 1);
		if (err)
			return err;
	}
	return GS_OK;
}

static int stamp_demand(void *state, gs_stage *stage, size_t demand)
{
	stamper *s = state;
	s->pending += demand;
	return stamp_emit(s, stage);
}

/* The message is the block's size, as a pointer. */
static int stamp_cast(void *state, gs_stage *stage, void *msg)
{
	stamper *s = state;
	s->budget += (uintptr_t)msg;
	return stamp_emit(s, stage);
}

static int time_events(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	(void)stage;
	(void)from;
	timer *t = state;
	uint64_t now = gsb_now_ns();
	for (size_t i = 0; i < n; i++)
		t->ns[t->count++] = now - (uintptr_t)events[i];
	gsb_progress(t->params, t->count);
	if (t->count >= t->until)
		sem_post(&t->done);
	return GS_OK;
}

static const gs_stage_ops stamp_ops = { .handle_demand = stamp_demand,
					.handle_cast = stamp_cast };
static const gs_stage_ops time_ops = { .handle_events = time_events };

/* The reference: a slot under a mutex, one event in flight; the producer
 * stamps it, the consumer records its age as soon as it sees it. */
typedef struct handoff {
	pthread_mutex_t lock;
	pthread_cond_t filled, emptied;
	bool full;
	uint64_t stamp;
	uint64_t *ns;
	size_t n;
} handoff;

static void *handoff_produce(void *arg)
{
	handoff *h = arg;
	for (size_t i = 0; i < h->n; i++) {
		pthread_mutex_lock(&h->lock);
		while (h->full)
			pthread_cond_wait(&h->emptied, &h->lock);
		h->stamp = gsb_now_ns();
		h->full = true;
		pthread_cond_signal(&h->filled);
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

static void *handoff_consume(void *arg)
{
	handoff *h = arg;
	for (size_t i = 0; i < h->n; i++) {
		pthread_mutex_lock(&h->lock);
		while (!h->full)
			pthread_cond_wait(&h->filled, &h->lock);
		h->ns[i] = gsb_now_ns() - h->stamp;
		h->full = false;
		pthread_cond_signal(&h->emptied);
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

/* n reference samples into ns; false if a thread could not start. */
static bool handoff_block(uint64_t *ns, size_t n)
{
	handoff h = { .ns = ns, .n = n };
	pthread_mutex_init(&h.lock, NULL);
	pthread_cond_init(&h.filled, NULL);
	pthread_cond_init(&h.emptied, NULL);
	pthread_t prod, cons;
	bool ok = !pthread_create(&cons, NULL, handoff_consume, &h);
	if (ok && pthread_create(&prod, NULL, handoff_produce, &h)) {
		/* The consumer waits for ever: let the parent see it. */
		fprintf(stderr, "gs-bench: pthread_create failed\n");
		_Exit(1);
	}
	if (ok) {
		pthread_join(prod, NULL);
		pthread_join(cons, NULL);
	}
	pthread_cond_destroy(&h.emptied);
	pthread_cond_destroy(&h.filled);
	pthread_mutex_destroy(&h.lock);
	return ok;
}

typedef struct lat_run {
	stamper *s;
	timer tm;
	uint64_t *ref;
	gs_pipeline *pl;
	gs_stage *prod, *cons;
} lat_run;

static gs_err build(lat_run *lr)
{
	gs_err err = gs_pipeline_new(NULL, &lr->pl);
	if (!err)
		err = gs_stage_new(lr->pl, GS_PRODUCER, &stamp_ops, lr->s,
				   &(gs_stage_opts){ .name = "stamp" },
				   &lr->prod);
	if (!err)
		err = gs_stage_new(lr->pl, GS_CONSUMER, &time_ops, &lr->tm,
				   &(gs_stage_opts){ .name = "time" },
				   &lr->cons);
	if (!err)
		err = gs_subscribe(
			lr->cons, lr->prod,
			&(gs_sub_opts){ .max_demand = 1,
					.min_demand = GS_MIN_DEMAND_ZERO },
			NULL);
	return err ? err : gs_pipeline_start(lr->pl);
}

/* BLOCKS blocks of the pipeline's samples, each followed by as many of the
 * reference's; r->seconds is the pipeline's share of the time. */
static gs_err measure(lat_run *lr, uint64_t events, gsb_result *r)
{
	uint64_t done = 0;
	r->seconds = 0;
	for (size_t b = 0; b < BLOCKS && done < events; b++) {
		uint64_t n = b + 1 < BLOCKS ? events / BLOCKS : events - done;
		if (!n)
			continue;
		lr->tm.until = done + n;
		double t0 = gsb_now();
		gs_err err = gs_cast(lr->prod, (void *)(uintptr_t)n);
		if (err)
			return err;
		while (sem_wait(&lr->tm.done))
			continue;
		r->seconds += gsb_now() - t0;
		if (!handoff_block(lr->ref + done, n))
			return GS_ESPAWN;
		done += n;
	}
	return GS_OK;
}

void gsb_run_latency(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	(void)t;
	lat_run lr = { .s = aligned_alloc(64, sizeof *lr.s),
		       .tm = { .ns = malloc(p->events * sizeof *lr.tm.ns),
			       .params = p },
		       .ref = malloc(p->events * sizeof *lr.ref) };
	sem_init(&lr.tm.done, 0, 0);
	r->lat.idle_cpu = -1;
	gs_err err = lr.s && lr.tm.ns && lr.ref ? GS_OK : GS_ENOMEM;
	if (lr.s)
		*lr.s = (stamper){ 0 };
	if (!err)
		err = build(&lr);
	if (!err)
		err = measure(&lr, p->events, r);
	if (!err) {
		gsb_measure_idle(&r->lat);
		gs_pipeline_stop(lr.pl, GS_STOP_NOW);
	}
	uint64_t n = lr.tm.count;
	r->err = err;
	r->delivered = r->checksum = n;
	r->expected = p->events;
	if (!err) {
		gsb_percentiles(lr.tm.ns, n, &r->lat.p50_us, &r->lat.p99_us);
		gsb_percentiles(lr.ref, n, &r->lat.ref_p50_us,
				&r->lat.ref_p99_us);
	} else {
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(err));
	}
	gs_pipeline_free(lr.pl);
	sem_destroy(&lr.tm.done);
	free(lr.ref);
	free(lr.tm.ns);
	free(lr.s);
}
