// SPDX-License-Identifier: MIT
/*
 * Scale: one chain of many stages (source -> maps -> sink), or many small
 * pipelines (source -> sink) in one process, each subscription at
 * max_demand 1000. Each phase is timed: building (gs_stage_new and
 * gs_subscribe), starting, running a few events through every stage until
 * all have finished, freeing. Memory per stage is the growth of resident
 * memory divided by the stages, once they are started and idle (their
 * sources hold the demand) and again once events have crossed every ring.
 */
#include <stdio.h>
#include <stdlib.h>

#include <genstage/genstage.h>

#include "bench.h"

/* Events through the chain: one max_demand's worth, so that every ring
 * has been written end to end. */
#define CHAIN_EVENTS 1000
/* Events through each small pipeline. */
#define SMALL_EVENTS 100
#define MAX_DEMAND 1000

typedef struct sink {
	uint64_t sum, count;
} sink;

static int sink_events(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	(void)stage;
	(void)from;
	sink *k = state;
	for (size_t i = 0; i < n; i++)
		k->sum += (uintptr_t)events[i];
	k->count += n;
	return GS_OK;
}

static const gs_stage_ops sink_ops = { .handle_events = sink_events };

static gs_err subscribe(gs_stage *consumer, gs_stage *producer)
{
	return gs_subscribe(consumer, producer,
			    &(gs_sub_opts){ .max_demand = MAX_DEMAND }, NULL);
}

/* A producer of values[0..n), holding its demand until released, so the
 * stages idle once started. */
static gs_err held_source(gs_pipeline *pl, void *const *values, size_t n,
			  gs_stage **out)
{
	return gs_from_array(pl, values, n,
			     &(gs_stage_opts){ .name = "source",
					       .demand = GS_DEMAND_ACCUMULATE },
			     out);
}

/* 1..n as events. */
static void **values_new(size_t n)
{
	void **v = malloc(n * sizeof *v);
	for (size_t i = 0; v && i < n; i++)
		v[i] = (void *)(uintptr_t)(i + 1);
	return v;
}

/* Per stage, in KiB, of the growth since rss0. */
static double per_stage(long rss0, uint64_t stages)
{
	long now = gsb_rss_kib();
	return now < 0 || rss0 < 0 ? -1 : (double)(now - rss0) / (double)stages;
}

/* A phase's clock and CPU time: begin() returns the start, end() fills
 * the phase. */
typedef struct stamp {
	double wall, cpu;
} stamp;

static stamp begin(void)
{
	return (stamp){ gsb_now(), gsb_cpu_s() };
}

static void end(stamp s, gsb_phase *ph)
{
	ph->wall_s = gsb_now() - s.wall;
	ph->cpu_s = gsb_cpu_s() - s.cpu;
}

static void describe(gsb_result *r, const char *what)
{
	const gsb_scale *s = &r->scale;
	snprintf(r->note, sizeof r->note,
		 "%s; seconds (CPU): build %.3f (%.3f), start %.3f (%.3f), "
		 "run %.3f (%.3f), free %.3f (%.3f)",
		 what, s->build.wall_s, s->build.cpu_s, s->start.wall_s,
		 s->start.cpu_s, s->run.wall_s, s->run.cpu_s, s->free.wall_s,
		 s->free.cpu_s);
}

/* Starts the pipelines, lets them settle, releases the sources' demand
 * and waits for every stage to finish, timing each phase. */
static gs_err start_and_run(gs_pipeline **pls, gs_stage **sources, size_t n,
			    long rss0, gsb_result *r)
{
	gsb_scale *s = &r->scale;
	stamp t0 = begin();
	gs_err err = GS_OK;
	for (size_t i = 0; !err && i < n; i++)
		err = gs_pipeline_start(pls[i]);
	end(t0, &s->start);
	if (err)
		return err;
	if (!gsb_wait_quiet(60))
		return GS_ETIMEDOUT;
	s->kib_idle = per_stage(rss0, s->stages);
	t0 = begin();
	for (size_t i = 0; !err && i < n; i++)
		err = gs_stage_demand(sources[i], GS_DEMAND_FORWARD);
	for (size_t i = 0; i < n; i++) {
		gs_err e = gs_pipeline_wait(pls[i]);
		if (!err)
			err = e;
	}
	end(t0, &s->run);
	s->kib_after = per_stage(rss0, s->stages);
	return err;
}

static void free_all(gs_pipeline **pls, size_t n, gsb_result *r)
{
	stamp t0 = begin();
	for (size_t i = 0; i < n; i++)
		gs_pipeline_free(pls[i]);
	end(t0, &r->scale.free);
}

/* Builds source -> stages-2 maps -> sink, subscribing each new stage to
 * the one before as it is made. */
static gs_err build_chain(gs_pipeline *pl, const gsb_params *p, uint64_t stages,
			  void **values, sink *k, gs_stage **source)
{
	gs_stage *prev = NULL, *next;
	gs_err err = held_source(pl, values, CHAIN_EVENTS, source);
	prev = *source;
	for (uint64_t i = 1; !err && i + 1 < stages; i++) {
		err = gs_stage_new(pl, GS_PRODUCER_CONSUMER, &gsb_map_ops, NULL,
				   &(gs_stage_opts){ .name = "map" }, &next);
		if (!err)
			err = subscribe(next, prev);
		prev = next;
		if (i % 1024 == 0)
			gsb_progress(p, i); /* stages built so far */
	}
	if (!err)
		err = gs_stage_new(pl, GS_CONSUMER, &sink_ops, k,
				   &(gs_stage_opts){ .name = "sink" }, &next);
	return err ? err : subscribe(next, prev);
}

void gsb_run_scale_chain(const gsb_topology *t, const gsb_params *p,
			 gsb_result *r)
{
	(void)t;
	uint64_t stages = p->events < 2 ? 2 : p->events;
	void **values = values_new(CHAIN_EVENTS);
	sink k = { 0 };
	gs_pipeline *keep = NULL, *pl = NULL;
	gs_stage *source = NULL;
	/* An empty pipeline holds the shared executor, so that its workers
	 * are in rss0. */
	gs_err err = values ? gs_pipeline_new(NULL, &keep) : GS_ENOMEM;
	long rss0 = gsb_rss_kib();
	if (!err)
		err = gs_pipeline_new(NULL, &pl);
	r->scale.stages = stages;
	stamp t0 = begin();
	if (!err)
		err = build_chain(pl, p, stages, values, &k, &source);
	end(t0, &r->scale.build);
	if (!err)
		err = start_and_run(&pl, &source, 1, rss0, r);
	r->seconds = r->scale.run.wall_s;
	free_all(&pl, 1, r);
	r->err = err;
	r->checksum = k.sum;
	r->expected = gsb_expected_sum(CHAIN_EVENTS, stages - 2);
	/* The count is of stages: every one saw the events. */
	r->delivered = k.count == CHAIN_EVENTS ? stages : k.count;
	if (err)
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(err));
	else
		describe(r, "one chain");
	gs_pipeline_free(keep);
	free(values);
}

/* Builds `n` pipelines of source -> sink. */
static gs_err build_small(gs_pipeline **pls, gs_stage **sources, sink *sinks,
			  size_t n, void **values)
{
	gs_err err = GS_OK;
	for (size_t i = 0; !err && i < n; i++) {
		gs_stage *cons;
		err = gs_pipeline_new(NULL, &pls[i]);
		if (!err)
			err = held_source(pls[i], values, SMALL_EVENTS,
					  &sources[i]);
		if (!err)
			err = gs_stage_new(pls[i], GS_CONSUMER, &sink_ops,
					   &sinks[i], NULL, &cons);
		if (!err)
			err = subscribe(cons, sources[i]);
	}
	return err;
}

void gsb_run_scale_pipelines(const gsb_topology *t, const gsb_params *p,
			     gsb_result *r)
{
	(void)t;
	size_t n = (size_t)p->events;
	void **values = values_new(SMALL_EVENTS);
	gs_pipeline **pls = calloc(n, sizeof *pls);
	gs_stage **sources = calloc(n, sizeof *sources);
	sink *sinks = calloc(n, sizeof *sinks);
	gs_pipeline *keep = NULL;
	gs_err err = values && pls && sources && sinks
			     ? gs_pipeline_new(NULL, &keep)
			     : GS_ENOMEM;
	long rss0 = gsb_rss_kib();
	r->scale.stages = 2 * (uint64_t)n;
	stamp t0 = begin();
	if (!err)
		err = build_small(pls, sources, sinks, n, values);
	end(t0, &r->scale.build);
	if (!err)
		err = start_and_run(pls, sources, n, rss0, r);
	r->seconds = r->scale.run.wall_s;
	if (pls)
		free_all(pls, n, r);
	r->err = err;
	r->checksum = r->delivered = 0;
	for (size_t i = 0; sinks && i < n; i++) {
		r->checksum += sinks[i].sum;
		r->delivered += sinks[i].count == SMALL_EVENTS;
	}
	r->expected = n * gsb_expected_sum(SMALL_EVENTS, 0);
	if (err)
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(err));
	else
		describe(r, "source -> sink each");
	gs_pipeline_free(keep);
	free(sinks);
	free(sources);
	free(pls);
	free(values);
}
