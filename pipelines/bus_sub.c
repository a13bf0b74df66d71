// SPDX-License-Identifier: MIT
/*
 * Subscriptions: creating one (its queue, the feeder stage, and a handler
 * stage or a worker pool), ending one, and what happens to each delivery:
 * the handler with its retries and dead letter, the counters, and the
 * release of the envelope. A concurrency-1 handler stage handles a batch
 * per call and releases it with one atomic operation per run of envelopes
 * from one publish; a pool handles and releases one at a time.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_internal.h"

/* The longest wait between retries. */
#define BACKOFF_MAX_MS 60000u

static void add(_Atomic uint64_t *c, uint64_t n)
{
	if (n)
		atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* n deliveries of s are over (handled, failed or dropped): release their
 * envelopes, then count them finished, which may let a publisher or an
 * unsubscriber go on. */
static void finish(gs_bus_sub *s, gs__bus_env *const *envs, size_t n,
		   gs__bus_block **defer)
{
	gs__bus_release_envs(envs, n, defer);
	atomic_fetch_add(&s->finished, n);
	gs__bus_notify(s->bus, defer != NULL);
}

void gs__bus_drop(gs_bus_sub *s, gs__bus_env *const *envs, size_t n,
		  gs__bus_block **defer)
{
	for (size_t i = 0; i < n; i++) {
		atomic_fetch_add_explicit(&envs[i]->dropped, 1,
					  memory_order_relaxed);
		add(&envs[i]->topic->dropped, 1);
		gs__bus_trace(s->bus, GS_BUS_TRACE_DROP, envs[i], s->name);
	}
	add(&s->dropped, n);
	finish(s, envs, n, defer);
}

void gs__bus_drop_queue(gs_bus_sub *s)
{
	gs__bus_env *chunk[64];
	size_t n;
	while ((n = gs__bus_queue_take(s, chunk, 64)))
		gs__bus_drop(s, chunk, n, NULL);
}

void gs__bus_sub_close(gs_bus_sub *s)
{
	atomic_store(&s->closing, true);
	/* If this fails the feeder has finished already, and dropped what
	 * its queue held on the way out. */
	(void)gs_cast(s->feeder, NULL);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts))
		continue;
}

typedef enum outcome { HANDLED, SKIPPED, FAILED } outcome;

static bool is_error(int r)
{
	return r != GS_BUS_DONE && r != GS_BUS_SKIP;
}

/* One delivery: the handler, its retries, then the dead letter. */
static outcome deliver(gs_bus_sub *s, gs__bus_ctx *ctx, gs__bus_env *e)
{
	gs_bus *bus = s->bus;
	gs__bus_trace(bus, GS_BUS_TRACE_DELIVER, e, s->name);
	ctx->env = e;
	int r = s->handler(s->arg, &e->pub);
	for (unsigned a = 1; is_error(r) && a <= s->max_retries; a++) {
		add(&s->retried, 1);
		add(&e->topic->retried, 1);
		gs__bus_trace(bus, GS_BUS_TRACE_RETRY, e, s->name);
		if (s->backoff_ms) {
			unsigned shift = a - 1 < 16 ? a - 1 : 16;
			uint64_t ms = (uint64_t)s->backoff_ms << shift;
			sleep_ms(ms < BACKOFF_MAX_MS ? (unsigned)ms
						     : BACKOFF_MAX_MS);
		}
		r = s->handler(s->arg, &e->pub);
	}
	outcome out = HANDLED;
	if (r == GS_BUS_SKIP) {
		atomic_fetch_add_explicit(&e->skipped, 1, memory_order_relaxed);
		out = SKIPPED;
	} else if (is_error(r)) {
		if (s->dead_letter)
			s->dead_letter(s->arg, &e->pub, r);
		gs__bus_trace(bus, GS_BUS_TRACE_FAIL, e, s->name);
		atomic_fetch_add_explicit(&e->failed, 1, memory_order_relaxed);
		add(&e->topic->failed, 1);
		out = FAILED;
	}
	ctx->env = NULL;
	return out;
}

/* Concurrency 1: a batch in publish order, counted and released once. */
static int stage_events(void *state, gs_stage *stage, gs_sub *from,
			void **events, size_t n)
{
	(void)stage;
	(void)from;
	gs_bus_sub *s = state;
	gs__bus_env **envs = (gs__bus_env **)events;
	gs__bus_ctx ctx;
	gs__bus_ctx_push(&ctx, s->bus, s->blocking);
	uint64_t t0 = gs__bus_now_ns();
	uint64_t skipped = 0, failed = 0;
	for (size_t i = 0; i < n; i++) {
		outcome o = deliver(s, &ctx, envs[i]);
		skipped += o == SKIPPED;
		failed += o == FAILED;
	}
	add(&s->handler_ns, gs__bus_now_ns() - t0);
	add(&s->delivered, n);
	add(&s->handled, n - failed);
	add(&s->skipped, skipped);
	add(&s->failed, failed);
	finish(s, envs, n, NULL);
	gs__bus_ctx_pop(&ctx);
	return GS_OK;
}

/* Concurrency N: on a pool thread, which may block. The outcome is counted
 * here; the pool sees GS_OK, so that its on_done can tell a delivery that
 * ran from one it cancelled. */
static int pool_handle(void *arg, void *event)
{
	gs_bus_sub *s = arg;
	gs__bus_ctx ctx;
	gs__bus_ctx_push(&ctx, s->bus, true);
	uint64_t t0 = gs__bus_now_ns();
	outcome o = deliver(s, &ctx, event);
	add(&s->handler_ns, gs__bus_now_ns() - t0);
	add(&s->delivered, 1);
	add(o == FAILED ? &s->failed : &s->handled, 1);
	add(&s->skipped, o == SKIPPED);
	gs__bus_ctx_pop(&ctx);
	return GS_OK;
}

static void pool_done(void *arg, void *event, int result)
{
	gs_bus_sub *s = arg;
	gs__bus_env *e = event;
	gs__bus_ctx ctx;
	gs__bus_ctx_push(&ctx, s->bus, true);
	if (result == GS_OK)
		finish(s, &e, 1, NULL);
	else /* cancelled by a stop before it ran */
		gs__bus_drop(s, &e, 1, NULL);
	gs__bus_ctx_pop(&ctx);
}

static gs_err check_opts(gs_bus *bus, const gs_bus_sub_opts *o)
{
	if (!o) {
		gs__bus_log(bus, "gs_bus_subscribe: NULL options");
		return GS_EINVAL;
	}
	if (o->version > GS_BUS_SUB_VERSION) {
		gs__bus_log(bus, "gs_bus_sub_opts.version %u is newer than %u",
			    (unsigned)o->version, (unsigned)GS_BUS_SUB_VERSION);
		return GS_EVERSION;
	}
	const char *why = !o->handler      ? "no handler"
			  : !o->queue_size ? "queue_size must be at least 1"
			  : o->overflow != GS_BUS_BLOCK &&
					  o->overflow != GS_BUS_DROP_OLDEST &&
					  o->overflow != GS_BUS_DROP_NEWEST
				  ? "unknown overflow policy"
			  : o->concurrency > GS_POOL_MAX_WORKERS
				  ? "concurrency above GS_POOL_MAX_WORKERS"
				  : NULL;
	if (why) {
		gs__bus_log(bus, "gs_bus_subscribe '%s': %s",
			    o->name ? o->name : "", why);
		return GS_EINVAL;
	}
	return GS_OK;
}

static gs_bus_sub *sub_new(gs_bus *bus, const gs_bus_sub_opts *o)
{
	size_t size = (sizeof(gs_bus_sub) + GS__BUS_LINE - 1) &
		      ~(size_t)(GS__BUS_LINE - 1);
	gs_bus_sub *s = aligned_alloc(GS__BUS_LINE, size);
	if (!s)
		return NULL;
	memset(s, 0, sizeof *s);
	s->bus = bus;
	s->handler = o->handler;
	s->arg = o->arg;
	s->dead_letter = o->dead_letter;
	s->queue_size = o->queue_size;
	s->overflow = o->overflow;
	s->concurrency = o->concurrency ? o->concurrency : 1;
	s->max_retries = o->max_retries;
	s->backoff_ms = o->retry_backoff_ms;
	s->blocking = o->blocking || o->retry_backoff_ms;
	size_t quarter = o->queue_size / 4 ? o->queue_size / 4 : 1;
	s->batch = quarter < GS_BUS_MAX_BATCH ? quarter : GS_BUS_MAX_BATCH;
	if (s->concurrency > 1)
		s->batch = s->concurrency;
	return s;
}

/* The subscription's stages: feeder -> handler stage or pool. On error,
 * whatever was made is stopped (its state, s, lives until the bus is
 * freed). */
static gs_err make_stages(gs_bus_sub *s)
{
	gs_err err = gs__bus_feeder_new(s);
	if (!err && s->concurrency > 1) {
		err = gs_pool_new(
			s->bus->p,
			&(gs_pool_opts){ .name = s->name,
					 .workers = s->concurrency,
					 .max_demand = s->concurrency,
					 .min_demand = GS_MIN_DEMAND_ZERO,
					 .handler = pool_handle,
					 .on_done = pool_done,
					 .arg = s },
			&s->pool);
		s->stage = gs_pool_stage(s->pool);
	} else if (!err) {
		static const gs_stage_ops ops = {
			.handle_events = stage_events
		};
		err = gs_stage_new(s->bus->p, GS_CONSUMER, &ops, s,
				   &(gs_stage_opts){ .name = s->name,
						     .blocking = s->blocking },
				   &s->stage);
	}
	if (!err)
		err = gs_subscribe(s->stage, s->feeder,
				   &(gs_sub_opts){ .max_demand = s->batch },
				   NULL);
	if (err) {
		if (s->feeder)
			(void)gs_stage_stop(s->feeder, GS_OK);
		if (s->stage)
			(void)gs_stage_stop(s->stage, GS_OK);
	}
	return err;
}

/* Under the lock: routes events to s from now on. */
static gs_err list_sub(gs_bus *bus, gs_bus_sub *s)
{
	size_t cap = bus->cap_subs ? bus->cap_subs * 2 : 8;
	if (bus->n_subs == bus->cap_subs) {
		gs_bus_sub **subs = realloc(bus->subs, cap * sizeof *subs);
		if (!subs)
			return GS_ENOMEM;
		bus->subs = subs;
		bus->cap_subs = cap;
	}
	/* A publish touches each subscription at most once. */
	if (bus->cap_touched <= bus->n_subs) {
		gs_bus_sub **t = realloc(bus->touched,
					 bus->cap_subs * sizeof *t);
		if (!t)
			return GS_ENOMEM;
		bus->touched = t;
		bus->cap_touched = bus->cap_subs;
	}
	bus->subs[bus->n_subs++] = s;
	s->listed = true;
	bus->routes.gen++;
	return GS_OK;
}

GS_BUS_API gs_err gs_bus_subscribe(gs_bus *bus, const gs_bus_sub_opts *opts,
				   gs_bus_sub **out)
{
	if (!bus)
		return GS_EINVAL;
	gs_err err = check_opts(bus, opts);
	if (err)
		return err;
	if (atomic_load(&bus->closed)) {
		gs__bus_log(bus, "gs_bus_subscribe: the bus is closed");
		return GS_ECLOSED;
	}
	char why[192];
	gs_bus_sub *s = sub_new(bus, opts);
	if (!s)
		return GS_ENOMEM;
	err = gs__bus_matcher_init(&s->match, opts->patterns, opts->regexes,
				   why, sizeof why);
	if (err) {
		gs__bus_log(bus, "gs_bus_subscribe '%s': %s",
			    opts->name ? opts->name : "", why);
		free(s);
		return err;
	}
	pthread_mutex_lock(&bus->lock);
	size_t seq = bus->n_made++;
	pthread_mutex_unlock(&bus->lock);
	if (opts->name)
		snprintf(s->name, sizeof s->name, "%s", opts->name);
	else
		snprintf(s->name, sizeof s->name, "sub-%zu", seq);
	err = gs__bus_queue_init(s);
	if (err) {
		gs__bus_matcher_fini(&s->match);
		free(s);
		return err;
	}
	err = make_stages(s);
	pthread_mutex_lock(&bus->lock);
	/* From here s belongs to the bus, whatever happens. */
	s->next_all = bus->all;
	bus->all = s;
	if (!err && atomic_load(&bus->closed))
		err = GS_ECLOSED;
	if (!err)
		err = list_sub(bus, s);
	pthread_mutex_unlock(&bus->lock);
	if (err) {
		gs__bus_log(bus, "gs_bus_subscribe '%s': %s", s->name,
			    gs_strerror(err));
		if (s->feeder)
			gs__bus_sub_close(s);
		return err;
	}
	if (out)
		*out = s;
	return GS_OK;
}

GS_BUS_API gs_err gs_bus_unsubscribe(gs_bus_sub *s, gs_bus_close_mode mode,
				     int timeout_ms)
{
	if (!s || (mode != GS_BUS_DRAIN && mode != GS_BUS_IMMEDIATE))
		return GS_EINVAL;
	gs_bus *bus = s->bus;
	if (timeout_ms != 0 && gs__bus_ctx_now()) {
		gs__bus_log(bus,
			    "gs_bus_unsubscribe '%s': only with timeout "
			    "0 from a bus handler or hook",
			    s->name);
		return GS_ETHREAD;
	}
	pthread_mutex_lock(&bus->lock);
	bool was_listed = s->listed;
	if (was_listed) {
		size_t i = 0;
		while (bus->subs[i] != s)
			i++;
		bus->subs[i] = bus->subs[--bus->n_subs];
		s->listed = false;
		bus->routes.gen++;
		/* Publishers waiting for its room route again. */
		pthread_cond_broadcast(&bus->room);
	}
	pthread_mutex_unlock(&bus->lock);
	if (mode == GS_BUS_IMMEDIATE)
		gs__bus_drop_queue(s);
	if (was_listed)
		gs__bus_sub_close(s);
	struct timespec dl = gs__bus_deadline(timeout_ms);
	pthread_mutex_lock(&bus->lock);
	atomic_fetch_add(&bus->waiters, 1);
	bool timed_out = false;
	while (atomic_load(&s->finished) != atomic_load(&s->accepted) &&
	       !timed_out)
		timed_out = timeout_ms == 0 ||
			    gs__bus_wait(bus, timeout_ms, &dl);
	bool done = atomic_load(&s->finished) == atomic_load(&s->accepted);
	atomic_fetch_sub(&bus->waiters, 1);
	pthread_mutex_unlock(&bus->lock);
	return done ? GS_OK : GS_ETIMEDOUT;
}

void gs__bus_sub_free(gs_bus_sub *s)
{
	gs__bus_matcher_fini(&s->match);
	gs__bus_queue_fini(s);
	gs_pool_free(s->pool);
	free(s);
}

GS_BUS_API const char *gs_bus_sub_name(const gs_bus_sub *s)
{
	return s ? s->name : NULL;
}
