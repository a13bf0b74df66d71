// SPDX-License-Identifier: MIT
/*
 * A Broadway pipeline: checking the options, building the stages (the
 * caller's producers, an optional rate limiter, processors, batchers and
 * batch processors) and wiring them, and starting, draining, counting and
 * freeing the whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broadway_internal.h"

/* Broadway's defaults. */
#define DEFAULT_PROCESSOR_MAX_DEMAND 10
#define DEFAULT_BATCH_SIZE 100
#define DEFAULT_BATCH_TIMEOUT_MS 1000
#define DEFAULT_INTERVAL_MS 1000
/* A batch processor takes a batch at a time, with one more queued. */
#define BATCH_PROCESSOR_MAX_DEMAND 2

gs_err gs__bw_keep(gs_broadway *bw, void *state, void (*fn)(void *state))
{
	struct gs__bw_kept *v = realloc(bw->kept, (bw->n_kept + 1) * sizeof *v);
	if (!v) {
		fn(state);
		return GS_ENOMEM;
	}
	bw->kept = v;
	v[bw->n_kept++] = (struct gs__bw_kept){ state, fn };
	return GS_OK;
}

/* Lists `s` in bw->stages (see gs__bw_failed). */
static gs_err listed(gs_broadway *bw, gs_stage *s)
{
	gs_stage **v = realloc(bw->stages, (bw->n_stages + 1) * sizeof *v);
	if (!v)
		return GS_ENOMEM;
	bw->stages = v;
	v[bw->n_stages++] = s;
	return GS_OK;
}

void gs__bw_failed(gs_broadway *bw, int reason)
{
	if (reason == GS_OK)
		return;
	for (size_t i = 0; i < bw->n_stages; i++)
		gs_stage_stop(bw->stages[i], reason);
}

static size_t by_processor_key(void *arg, const void *event)
{
	const gs_broadway *bw = arg;
	return gs__bw_partition(bw->o.processors.partition_by(
					bw->o.processors.partition_arg, event),
				bw->o.processors.concurrency);
}

/* Says why gs_broadway_new refused, through the pipeline's log hook (NULL
 * stage) or on stderr, and returns code. */
static gs_err refuse(const gs_broadway_opts *in, gs_err code, const char *why)
{
	char msg[256];
	snprintf(msg, sizeof msg, "gs_broadway_new: %s", why);
	if (in && in->pipeline.log)
		in->pipeline.log(in->pipeline.log_arg, GS_LOG_ERROR, NULL, msg);
	else
		fprintf(stderr, "genstage: error: %s\n", msg);
	return code;
}

/* Fills in the defaults; GS_OK if what is left makes sense. */
static gs_err check(const gs_broadway_ops *ops, const gs_broadway_opts *in,
		    gs_broadway_opts *o)
{
	if (!ops || !in)
		return refuse(in, GS_EINVAL, "NULL ops or opts");
	if (!ops->handle_message)
		return refuse(in, GS_EINVAL, "no handle_message");
	if (!in->producer.make)
		return refuse(in, GS_EINVAL, "no producer.make");
	if (ops->version > GS_BROADWAY_OPS_VERSION ||
	    in->version > GS_BROADWAY_OPTS_VERSION ||
	    in->producer.version > GS_BROADWAY_PRODUCER_VERSION)
		return refuse(in, GS_EVERSION,
			      "a struct version newer than this library "
			      "knows (ops, opts or producer)");
	if (in->n_batchers && !in->batchers)
		return refuse(in, GS_EINVAL, "n_batchers but no batchers");
	if (in->n_batchers && !ops->handle_batch)
		return refuse(in, GS_EINVAL, "batchers but no handle_batch");
	*o = *in;
	if (!o->producer.concurrency)
		o->producer.concurrency = 1;
	if (!o->processors.concurrency) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		o->processors.concurrency = cpus > 0 ? (size_t)cpus : 1;
	}
	if (!o->processors.max_demand)
		o->processors.max_demand = DEFAULT_PROCESSOR_MAX_DEMAND;
	if (o->processors.max_demand > GS_MAX_DEMAND)
		return refuse(in, GS_EINVAL,
			      "processors.max_demand above GS_MAX_DEMAND");
	for (size_t b = 0; b < in->n_batchers; b++)
		if (in->batchers[b].max_demand > GS_MAX_DEMAND)
			return refuse(in, GS_EINVAL,
				      "a batcher's max_demand above "
				      "GS_MAX_DEMAND");
	if (o->processors.min_demand >= o->processors.max_demand &&
	    o->processors.min_demand != GS_MIN_DEMAND_ZERO)
		return refuse(in, GS_EDEMAND,
			      "processors.min_demand must be less than "
			      "processors.max_demand");
	if (o->rate_limiting.allowed_messages && !o->rate_limiting.interval)
		o->rate_limiting.interval = DEFAULT_INTERVAL_MS;
	return GS_OK;
}

static gs_err copy_batchers(gs_broadway *bw)
{
	if (!bw->o.n_batchers)
		return GS_OK;
	bw->batchers = calloc(bw->o.n_batchers, sizeof *bw->batchers);
	if (!bw->batchers)
		return GS_ENOMEM;
	for (size_t b = 0; b < bw->o.n_batchers; b++) {
		gs__bw_batcher *x = &bw->batchers[b];
		x->o = bw->o.batchers[b];
		if (x->o.name)
			snprintf(x->name, sizeof x->name, "%s", x->o.name);
		else
			snprintf(x->name, sizeof x->name, "batcher_%zu", b);
		x->o.name = x->name;
		if (!x->o.concurrency)
			x->o.concurrency = 1;
		if (!x->o.batch_size)
			x->o.batch_size = DEFAULT_BATCH_SIZE;
		if (!x->o.batch_timeout)
			x->o.batch_timeout = DEFAULT_BATCH_TIMEOUT_MS;
		if (!x->o.max_demand)
			x->o.max_demand = x->o.batch_size;
	}
	bw->o.batchers = NULL; /* the caller's: not kept */
	return GS_OK;
}

/* Stage options for one of ours: a name, the event_free that settles
 * dropped messages, and the blocking flag. */
static gs_stage_opts stage_opts(gs_broadway *bw, char *name, size_t size,
				const char *what, size_t i, bool blocking)
{
	snprintf(name, size, "%s_%s_%zu", bw->name, what, i);
	return (gs_stage_opts){ .name = name,
				.event_free = gs__bw_drop_message,
				.event_free_arg = bw,
				.blocking = blocking };
}

/* Every subscription inside is transient: a stage whose input finished
 * normally keeps taking from its other inputs (a permanent one would
 * finish with the first, dropping what the others still send), and one
 * that failed stops what it feeds. */
/* Whether p dispatches as `want` says: producer.make must pass the
 * stage options on unchanged. */
static bool same_dispatcher(const gs_stage *p, const gs_dispatcher *want)
{
	gs_dispatcher d;
	return gs_stage_dispatcher(p, &d) == GS_OK && d.kind == want->kind &&
	       d.partitions == want->partitions && d.hash == want->hash &&
	       d.arg == want->arg;
}

static gs_err build_producers(gs_broadway *bw, gs_stage **sources,
			      size_t *n_sources)
{
	char name[GS__BW_NAME * 3];
	size_t np = bw->o.producer.concurrency;
	bool limited = bw->o.rate_limiting.allowed_messages > 0;
	gs_dispatcher to_processors = gs_dispatcher_demand();
	if (bw->o.processors.partition_by)
		to_processors = gs_dispatcher_partition(
			bw->o.processors.concurrency, by_processor_key, bw);
	/* The stages, then their states (read now: producer.free needs
	 * them after the stages are gone). */
	bw->producers = calloc(2 * np, sizeof *bw->producers);
	if (!bw->producers)
		return GS_ENOMEM;
	bw->producer_states = (void **)(bw->producers + np);
	for (size_t i = 0; i < np; i++) {
		gs_stage_opts so = stage_opts(bw, name, sizeof name, "producer",
					      i, false);
		if (!limited)
			so.dispatcher = to_processors;
		gs_err err = bw->o.producer.make(bw->o.producer.arg, bw->p, i,
						 &so, &bw->producers[i]);
		if (err)
			return err;
		bw->producer_states[i] = gs_stage_state(bw->producers[i]);
		bw->n_producers++;
		if ((err = listed(bw, bw->producers[i])))
			return err;
		if (!same_dispatcher(bw->producers[i], &so.dispatcher))
			return refuse(&bw->o, GS_EINVAL,
				      "producer.make did not pass on the "
				      "dispatcher it was given (a broadcast "
				      "one would have every processor handle "
				      "and ack each message)");
	}
	if (!limited) {
		memcpy(sources, bw->producers, np * sizeof *sources);
		*n_sources = np;
		return GS_OK;
	}
	gs_stage *limiter;
	gs_stage_opts so = stage_opts(bw, name, sizeof name, "rate_limiter", 0,
				      false);
	so.dispatcher = to_processors;
	gs_err err = gs__bw_rate_limiter_new(bw, &so, &limiter);
	if (!err)
		err = listed(bw, limiter);
	uint64_t room = (uint64_t)bw->o.processors.concurrency *
			bw->o.processors.max_demand;
	if (room < bw->o.rate_limiting.allowed_messages)
		room = bw->o.rate_limiting.allowed_messages;
	for (size_t i = 0; !err && i < np; i++)
		err = gs_subscribe(
			limiter, bw->producers[i],
			&(gs_sub_opts){ .max_demand = room,
					.manual = true,
					.cancel = GS_CANCEL_TRANSIENT },
			NULL);
	sources[0] = limiter;
	*n_sources = 1;
	return err;
}

static gs_err build_batcher(gs_broadway *bw, size_t b, gs_stage **processors)
{
	char name[GS__BW_NAME * 3];
	const gs_broadway_batcher_opts *o = &bw->batchers[b].o;
	gs_stage *batcher;
	snprintf(name, sizeof name, "%s_batcher_%s", bw->name,
		 bw->batchers[b].name);
	gs_stage_opts so = { .name = name };
	gs_err err = gs__bw_batcher_new(bw, b, &so, &batcher);
	if (!err)
		err = listed(bw, batcher);
	for (size_t i = 0; !err && i < bw->o.processors.concurrency; i++)
		err = gs_subscribe(
			batcher, processors[i],
			&(gs_sub_opts){ .max_demand = o->max_demand,
					.partition = GS_PARTITION(b),
					.cancel = GS_CANCEL_TRANSIENT },
			NULL);
	for (size_t j = 0; !err && j < o->concurrency; j++) {
		gs_stage *bp;
		char bp_name[GS__BW_NAME * 4];
		snprintf(bp_name, sizeof bp_name, "%s_batch_processor_%s_%zu",
			 bw->name, bw->batchers[b].name, j);
		so = (gs_stage_opts){ .name = bp_name,
				      .blocking = o->blocking };
		err = gs__bw_batch_processor_new(bw, b, j, &so, &bp);
		if (!err)
			err = listed(bw, bp);
		if (!err)
			err = gs_subscribe(
				bp, batcher,
				&(gs_sub_opts){
					.max_demand = BATCH_PROCESSOR_MAX_DEMAND,
					.cancel = GS_CANCEL_TRANSIENT,
					.partition = o->partition_by
							     ? GS_PARTITION(j)
							     : 0 },
				NULL);
	}
	return err;
}

static gs_err build(gs_broadway *bw)
{
	char name[GS__BW_NAME * 3];
	size_t np = bw->o.processors.concurrency;
	gs_stage **sources = calloc(bw->o.producer.concurrency + np,
				    sizeof *sources);
	if (!sources)
		return GS_ENOMEM;
	gs_stage **processors = sources + bw->o.producer.concurrency;
	size_t n_sources = 0;
	gs_err err = build_producers(bw, sources, &n_sources);
	for (size_t i = 0; !err && i < np; i++) {
		gs_stage_opts so = stage_opts(bw, name, sizeof name,
					      "processor", i,
					      bw->o.processors.blocking);
		err = gs__bw_processor_new(bw, i, &so, &processors[i]);
		if (err == GS_ENOMEM) {
			char why[160];
			snprintf(why, sizeof why,
				 "no memory for processor %zu (its buffers "
				 "take about 5 x max_demand %zu pointers)",
				 i, bw->o.processors.max_demand);
			refuse(&bw->o, err, why);
		}
		if (!err)
			err = listed(bw, processors[i]);
		for (size_t k = 0; !err && k < n_sources; k++)
			err = gs_subscribe(
				processors[i], sources[k],
				&(gs_sub_opts){
					.max_demand =
						bw->o.processors.max_demand,
					.min_demand =
						bw->o.processors.min_demand,
					.cancel = GS_CANCEL_TRANSIENT,
					.partition =
						bw->o.processors.partition_by
							? GS_PARTITION(i)
							: 0 },
				NULL);
	}
	for (size_t b = 0; !err && b < bw->o.n_batchers; b++)
		err = build_batcher(bw, b, processors);
	free(sources);
	return err;
}

GS_BROADWAY_API gs_err gs_broadway_new(const gs_broadway_ops *ops, void *arg,
				       const gs_broadway_opts *opts,
				       gs_broadway **out)
{
	gs_broadway_opts o;
	if (!out)
		return GS_EINVAL;
	gs_err err = check(ops, opts, &o);
	if (err)
		return err;
	gs_broadway *bw = calloc(1, sizeof *bw);
	if (!bw)
		return GS_ENOMEM;
	bw->ops = *ops;
	bw->arg = arg;
	bw->o = o;
	snprintf(bw->name, sizeof bw->name, "%s", o.name ? o.name : "broadway");
	bw->o.name = bw->name;
	err = copy_batchers(bw);
	if (!err)
		err = gs__bw_test_attach(bw);
	if (!err)
		err = gs_pipeline_new(&o.pipeline, &bw->p);
	if (!err)
		err = build(bw);
	if (err) {
		gs_broadway_free(bw);
		return err;
	}
	*out = bw;
	return GS_OK;
}

GS_BROADWAY_API gs_err gs_broadway_start(gs_broadway *bw)
{
	return bw ? gs_pipeline_start(bw->p) : GS_EINVAL;
}

GS_BROADWAY_API gs_err gs_broadway_wait(gs_broadway *bw)
{
	return bw ? gs_pipeline_wait(bw->p) : GS_EINVAL;
}

GS_BROADWAY_API gs_err gs_broadway_stop(gs_broadway *bw)
{
	return bw ? gs_pipeline_stop(bw->p, GS_STOP_DRAIN) : GS_EINVAL;
}

GS_BROADWAY_API gs_pipeline *gs_broadway_pipeline(gs_broadway *bw)
{
	return bw ? bw->p : NULL;
}

GS_BROADWAY_API void gs_broadway_free(gs_broadway *bw)
{
	if (!bw)
		return;
	/* Stopped first, so that every message it drops is acknowledged to
	 * its producer; then the producers go (they may own threads that
	 * talk to their stages); then the stages. */
	gs_pipeline_stop(bw->p, GS_STOP_NOW);
	for (size_t i = 0; bw->o.producer.free && i < bw->n_producers; i++)
		bw->o.producer.free(bw->o.producer.arg, bw->producer_states[i]);
	gs_pipeline_free(bw->p);
	for (size_t i = 0; i < bw->n_kept; i++)
		bw->kept[i].fn(bw->kept[i].state);
	free(bw->kept);
	gs__bw_test_free(bw->test);
	free(bw->producers);
	free(bw->stages);
	free(bw->batchers);
	free(bw);
}

GS_BROADWAY_API gs_err gs_broadway_stats_get(const gs_broadway *bw,
					     gs_broadway_stats *out)
{
	if (!bw || !out)
		return GS_EINVAL;
	const gs__bw_counts *c = &bw->counts;
	*out = (gs_broadway_stats){
		.received = atomic_load(&c->received),
		.successful = atomic_load(&c->successful),
		.failed = atomic_load(&c->failed),
		.cancelled = atomic_load(&c->cancelled),
		.batches = atomic_load(&c->batches),
		.ack_calls = atomic_load(&c->ack_calls),
	};
	return GS_OK;
}
