// SPDX-License-Identifier: MIT
/*
 * Subscriptions: checking their options, creating one (its matcher, its
 * queue, the stages that drain it) and putting it on the routes, taking it
 * off again and waiting until everything it accepted is finished, and
 * freeing it once it has ended and its handle is given back.
 *
 * Lifetime. Outside its own stages, a subscription is reached through a
 * reference each: its handle (until gs_bus_sub_release), the routes (from
 * gs_bus_subscribe until whoever took it off them, gs_bus_unsubscribe or
 * gs_bus_close, has told its stages to finish) and each publisher that
 * showed it events and wakes its stage after returning the lock. When the
 * last goes, only its stages reach it: they are handed to the engine,
 * which frees each once it has finished (reap.h), and the last one freed
 * takes the subscription with it, its counters added to the bus's retired
 * totals.
 */
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"
#include "reap.h"

/* Says why a subscription was refused, naming it if it was given a name
 * (the default one is made only once it is accepted). */
static void refused(gs_bus *bus, const gs_bus_sub_opts *o, const char *why)
{
	if (o->name)
		gs__bus_log(bus, "gs_bus_subscribe '%s': %s", o->name, why);
	else
		gs__bus_log(bus, "gs_bus_subscribe: %s", why);
}

static gs_err check_opts(gs_bus *bus, const gs_bus_sub_opts *o)
{
	if (!o) {
		gs__bus_log(bus, "gs_bus_subscribe: NULL options");
		return GS_EINVAL;
	}
	if (o->version > GS_BUS_SUB_OPTS_VERSION) {
		gs__bus_log(bus, "gs_bus_sub_opts.version %u is newer than %u",
			    (unsigned)o->version,
			    (unsigned)GS_BUS_SUB_OPTS_VERSION);
		return GS_EVERSION;
	}
	const char *why = !o->handler      ? "no handler"
			  : !o->queue_size ? "queue_size must be at least 1"
			  : o->queue_size > GS_BUS_MAX_QUEUE
				  ? "queue_size above GS_BUS_MAX_QUEUE"
			  : o->overflow != GS_BUS_BLOCK &&
					  o->overflow != GS_BUS_DROP_OLDEST &&
					  o->overflow != GS_BUS_DROP_NEWEST
				  ? "unknown overflow policy"
			  : o->concurrency > GS_POOL_MAX_WORKERS
				  ? "concurrency above GS_POOL_MAX_WORKERS"
				  : NULL;
	if (why) {
		refused(bus, o, why);
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
	/* Its stage starts out waiting: the first publish wakes it. */
	atomic_init(&s->hungry, true);
	atomic_init(&s->refs, 1); /* the routes' */
	GS__ATOMIC(s->stages_left);
	GS__ATOMIC(s->accepted);
	GS__ATOMIC(s->refs);
	GS__ATOMIC(s->head);
	GS__ATOMIC(s->tail);
	GS__ATOMIC(s->hungry);
	GS__ATOMIC(s->closing);
	GS__ATOMIC(s->cut);
	GS__ATOMIC(s->finished);
	GS__ATOMIC(s->wake_at);
	GS__ATOMIC(s->delivered);
	GS__ATOMIC(s->handled);
	GS__ATOMIC(s->skipped);
	GS__ATOMIC(s->failed);
	GS__ATOMIC(s->retried);
	GS__ATOMIC(s->dropped);
	GS__ATOMIC(s->handler_ns);
	size_t quarter = o->queue_size / 4 ? o->queue_size / 4 : 1;
	s->batch = quarter < GS_BUS_MAX_BATCH ? quarter : GS_BUS_MAX_BATCH;
	return s;
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
	if (!bus) {
		gs__bus_log(NULL, "gs_bus_subscribe: NULL bus");
		return GS_EINVAL;
	}
	gs_err err = check_opts(bus, opts);
	if (err)
		return err;
	if (atomic_load(&bus->closing)) {
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
		refused(bus, opts, why);
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
	err = gs__bus_drain_new(s);
	pthread_mutex_lock(&bus->lock);
	/* From here s belongs to the bus, whatever happens: its stages,
	 * those that were made, hold it until they are freed. */
	s->next_all = bus->all;
	if (bus->all)
		bus->all->prev_all = s;
	bus->all = s;
	bus->n_all++;
	if (!err && atomic_load(&bus->closing))
		err = GS_ECLOSED;
	if (!err)
		err = list_sub(bus, s);
	/* The handle's, before a close may take the routes' away. */
	if (!err && out)
		gs__bus_sub_ref(s);
	pthread_mutex_unlock(&bus->lock);
	if (err) {
		gs__bus_log(bus, "gs_bus_subscribe '%s': %s", s->name,
			    gs_strerror(err));
		if (s->driver)
			gs__bus_sub_close(s);
		gs__bus_sub_unref(s);
		return err;
	}
	if (out)
		*out = s;
	return GS_OK;
}

bool gs__bus_sub_unroute(gs_bus_sub *s)
{
	gs_bus *bus = s->bus;
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
	return was_listed;
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
	bool was_listed = gs__bus_sub_unroute(s);
	if (mode == GS_BUS_IMMEDIATE)
		gs__bus_cut(s);
	if (was_listed) {
		gs__bus_sub_close(s);
		gs__bus_sub_unref(s); /* the routes' (the caller holds one) */
	}
	/* accepted is final now: nothing routes to s any more. */
	uint64_t dl = gs__bus_deadline(timeout_ms);
	pthread_mutex_lock(&bus->lock);
	uint64_t accepted = atomic_load(&s->accepted);
	bool timed_out = false;
	for (;;) {
		if (timeout_ms)
			gs__bus_wait_for(s, accepted);
		if (atomic_load(&s->finished) == accepted || timed_out ||
		    timeout_ms == 0)
			break;
		timed_out = gs__bus_wait(bus, dl);
	}
	bool done = atomic_load(&s->finished) == accepted;
	pthread_mutex_unlock(&bus->lock);
	return done ? GS_OK : GS_ETIMEDOUT;
}

void gs__bus_wait_for(gs_bus_sub *s, uint64_t target)
{
	uint64_t at = atomic_load(&s->wake_at);
	if (!at || target < at)
		atomic_store(&s->wake_at, target);
}

GS_BUS_API void gs_bus_sub_release(gs_bus_sub *s)
{
	if (!s)
		return;
	/* Still subscribed: it ends as a drain would, in the background. */
	(void)gs_bus_unsubscribe(s, GS_BUS_DRAIN, 0);
	gs__bus_sub_unref(s);
}

void gs__bus_sub_ref(gs_bus_sub *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

bool gs__bus_sub_try_ref(gs_bus_sub *s)
{
	size_t n = atomic_load_explicit(&s->refs, memory_order_relaxed);
	while (n && !atomic_compare_exchange_weak_explicit(
			    &s->refs, &n, n + 1, memory_order_relaxed,
			    memory_order_relaxed))
		continue;
	return n != 0;
}

/* Its stages are all freed: nothing reaches s any more. */
static void sub_gone(gs_bus_sub *s)
{
	gs_bus *bus = s->bus;
	/* Events left by a stage that ended before s was closed (out of
	 * memory) are dropped, not lost. */
	gs__bus_drop_queue(s);
	gs_bus_sub_stats st;
	gs_bus_sub_stats_get(s, &st);
	pthread_mutex_lock(&bus->lock);
	if (s->prev_all)
		s->prev_all->next_all = s->next_all;
	else
		bus->all = s->next_all;
	if (s->next_all)
		s->next_all->prev_all = s->prev_all;
	bus->n_all--;
	gs__bus_stats_retire(bus, &st);
	pthread_mutex_unlock(&bus->lock);
	gs__bus_sub_free(s);
}

/* The engine freed one of s's stages; on whatever thread freed it. */
static void stage_freed(void *arg)
{
	gs_bus_sub *s = arg;
	if (atomic_fetch_sub(&s->stages_left, 1) == 1)
		sub_gone(s);
}

void gs__bus_sub_unref(gs_bus_sub *s)
{
	/* acq_rel: whoever frees s sees what every holder wrote. */
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Nobody casts its stages any more but themselves: they go once
	 * they have finished (a closed subscription's do once its queue is
	 * empty), and s with the last. */
	gs_stage *stages[2];
	unsigned n = 0;
	if (s->driver)
		stages[n++] = s->driver;
	if (s->stage && s->stage != s->driver)
		stages[n++] = s->stage;
	if (!n) {
		sub_gone(s);
		return;
	}
	atomic_store(&s->stages_left, n);
	for (unsigned i = 0; i < n; i++)
		gs__stage_release(stages[i], stage_freed, s);
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
