// SPDX-License-Identifier: MIT
/*
 * One producer, four consumers, with each dispatcher (demand, broadcast,
 * partition), and four ordinary threads pushing into one pipeline: the
 * library's public API only. Broadcast counts deliveries, as the issue
 * asks: --events is the number of deliveries, a quarter of them produced.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <genstage/genstage.h>

#include "bench.h"

#define FAN 4
#define PUSH_BATCH 64

typedef struct source {
	_Alignas(64) uint64_t next;
	uint64_t last;
	void *batch[1024];
} source;

typedef struct sink {
	_Alignas(64) uint64_t sum;
	uint64_t count;
	uint64_t residue; /* partition: the value class it must see */
	uint64_t wrong;   /* partition: events of another class */
	const gsb_params *params;
	_Atomic uint64_t *total; /* shared progress over the four */
} sink;

static int source_demand(void *state, gs_stage *stage, size_t demand)
{
	source *s = state;
	while (demand && s->next <= s->last) {
		size_t n = demand < 1024 ? demand : 1024;
		if (n > s->last - s->next + 1)
			n = (size_t)(s->last - s->next + 1);
		for (size_t i = 0; i < n; i++)
			s->batch[i] = (void *)(uintptr_t)(s->next + i);
		s->next += n;
		demand -= n;
		gs_err err = gs_emit(stage, s->batch, n);
		if (err)
			return err;
	}
	return s->next > s->last ? gs_done(stage) : GS_OK;
}

static int sink_events(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	(void)stage;
	(void)from;
	sink *k = state;
	for (size_t i = 0; i < n; i++) {
		uintptr_t v = (uintptr_t)events[i];
		k->sum += v;
		k->wrong += v % FAN != k->residue;
	}
	k->count += n;
	uint64_t all = atomic_fetch_add_explicit(k->total, n,
						 memory_order_relaxed);
	gsb_progress(k->params, all + n);
	return GS_OK;
}

static size_t by_residue(void *arg, const void *event)
{
	(void)arg;
	return (uintptr_t)event % FAN;
}

static const gs_stage_ops source_ops = { .handle_demand = source_demand };
static const gs_stage_ops sink_ops = { .handle_events = sink_events };

/* Runs producer -> FAN consumers; `produced` events 1..produced. */
static void run_fan(const gsb_topology *t, const gsb_params *p, gs_dispatcher d,
		    uint64_t produced, gsb_result *r)
{
	source *src = aligned_alloc(64, sizeof *src);
	sink k[FAN];
	_Atomic uint64_t total = 0;
	gs_pipeline *pl = NULL;
	gs_stage *prod = NULL, *cons[FAN];
	bool part = d.kind == GS_DISPATCH_PARTITION;
	gs_err err = src ? gs_pipeline_new(NULL, &pl) : GS_ENOMEM;
	if (src)
		*src = (source){ .next = 1, .last = produced };
	if (!err)
		err = gs_stage_new(pl, GS_PRODUCER, &source_ops, src,
				   &(gs_stage_opts){ .name = "source",
						     .dispatcher = d },
				   &prod);
	for (size_t i = 0; i < FAN; i++) {
		/* Only the partition topology checks residues. */
		k[i] = (sink){ .residue = d.kind == GS_DISPATCH_PARTITION
						  ? (i + 1) % FAN
						  : 0,
			       .params = p,
			       .total = &total };
		if (!err)
			err = gs_stage_new(pl, GS_CONSUMER, &sink_ops, &k[i],
					   NULL, &cons[i]);
		if (!err)
			err = gs_subscribe(
				cons[i], prod,
				&(gs_sub_opts){
					.max_demand = t->max_demand,
					.partition = part ? GS_PARTITION(
								    (i + 1) %
								    FAN)
							  : 0 },
				NULL);
	}
	double t0 = gsb_now();
	if (!err)
		err = gs_pipeline_start(pl);
	if (!err)
		err = gs_pipeline_wait(pl);
	r->seconds = gsb_now() - t0;
	r->err = err;
	r->delivered = r->checksum = 0;
	uint64_t wrong = 0;
	for (size_t i = 0; !err && i < FAN; i++) {
		r->delivered += k[i].count;
		r->checksum += k[i].sum;
		if (d.kind == GS_DISPATCH_PARTITION)
			wrong += k[i].wrong;
	}
	r->expected = gsb_expected_sum(produced, 0) *
		      (d.kind == GS_DISPATCH_BROADCAST ? FAN : 1);
	if (wrong) /* an event in the wrong partition fails the checksum */
		r->expected++;
	if (err)
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(err));
	else
		snprintf(r->note, sizeof r->note,
			 "per consumer: %llu %llu %llu %llu events",
			 (unsigned long long)k[0].count,
			 (unsigned long long)k[1].count,
			 (unsigned long long)k[2].count,
			 (unsigned long long)k[3].count);
	gs_pipeline_free(pl);
	free(src);
}

void gsb_run_1_4_demand(const gsb_topology *t, const gsb_params *p,
			gsb_result *r)
{
	run_fan(t, p, gs_dispatcher_demand(), p->events, r);
}

void gsb_run_1_4_broadcast(const gsb_topology *t, const gsb_params *p,
			   gsb_result *r)
{
	run_fan(t, p, gs_dispatcher_broadcast(), p->events / FAN, r);
}

void gsb_run_1_4_partition(const gsb_topology *t, const gsb_params *p,
			   gsb_result *r)
{
	run_fan(t, p, gs_dispatcher_partition(FAN, by_residue, NULL), p->events,
		r);
}

typedef struct pusher {
	gs_stage *stage;
	uint64_t first, count; /* pushes first, first+FAN, ... */
	gs_err err;
} pusher;

static void *push_share(void *arg)
{
	pusher *ps = arg;
	void *batch[PUSH_BATCH];
	uint64_t v = ps->first;
	for (uint64_t done = 0; done < ps->count && !ps->err;) {
		size_t n = 0;
		for (; n < PUSH_BATCH && done + n < ps->count; n++, v += FAN)
			batch[n] = (void *)(uintptr_t)v;
		ps->err = gs_push(ps->stage, batch, n, -1);
		done += n;
	}
	return NULL;
}

/* Four threads push 1..events (thread i the values = i+1 mod 4) into one
 * push producer -> summing consumer. */
void gsb_run_push_4_1(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	_Atomic uint64_t total = 0;
	sink k = { .params = p, .total = &total };
	gs_pipeline *pl = NULL;
	gs_stage *push = NULL, *cons = NULL;
	gs_err err = gs_pipeline_new(NULL, &pl);
	if (!err)
		err = gs_push_producer(pl, NULL, &push);
	if (!err)
		err = gs_stage_new(pl, GS_CONSUMER, &sink_ops, &k, NULL, &cons);
	if (!err)
		err = gs_subscribe(
			cons, push,
			&(gs_sub_opts){ .max_demand = t->max_demand }, NULL);
	double t0 = gsb_now();
	if (!err)
		err = gs_pipeline_start(pl);
	pusher ps[FAN];
	for (size_t i = 0; i < FAN; i++) {
		uint64_t share = p->events / FAN + (i < p->events % FAN);
		ps[i] = (pusher){ push, i + 1, share, err };
	}
	if (!err && !gsb_run_threads(FAN, push_share, ps, sizeof *ps))
		err = GS_ESPAWN;
	for (size_t i = 0; i < FAN && !err; i++)
		err = ps[i].err;
	if (push)
		gs_push_close(push);
	gs_err werr = pl && !err ? gs_pipeline_wait(pl) : err;
	r->seconds = gsb_now() - t0;
	r->err = err ? err : werr;
	r->delivered = k.count;
	r->checksum = k.sum;
	r->expected = gsb_expected_sum(p->events, 0);
	if (r->err)
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(r->err));
	gs_pipeline_free(pl);
}
