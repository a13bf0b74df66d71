// SPDX-License-Identifier: MIT
/*
 * The bus itself: creating it (with the pipeline its subscriptions' stages
 * run in), closing it (drain or immediate) and freeing it, plus what every
 * bus file shares: the log, the trace, the thread-local context, and the
 * one condition publishers and closers wait on.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_internal.h"

static _Thread_local gs__bus_ctx *tls;

void gs__bus_ctx_push(gs__bus_ctx *c, gs_bus *bus, bool may_block)
{
	*c = (gs__bus_ctx){ .bus = bus, .may_block = may_block, .outer = tls };
	tls = c;
}

void gs__bus_ctx_pop(gs__bus_ctx *c)
{
	tls = c->outer;
}

const gs__bus_ctx *gs__bus_ctx_now(void)
{
	return tls;
}

GS_BUS_API const gs_bus_envelope *gs_bus_current(void)
{
	return tls && tls->env ? &tls->env->pub : NULL;
}

static void log_line(gs_bus *bus, const char *msg)
{
	if (bus && bus->o.log)
		bus->o.log(bus->o.log_arg, msg);
	else
		fprintf(stderr, "genstage: bus %s: %s\n", bus ? bus->name : "-",
			msg);
}

void gs__bus_log(gs_bus *bus, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_line(bus, msg);
}

void gs__bus_trace(gs_bus *bus, gs_bus_trace_kind kind, const gs__bus_env *env,
		   const char *sub)
{
	if (!bus->o.trace)
		return;
	/* A report made outside the bus's own callbacks (the drops of an
	 * immediate unsubscribe or close, on the caller's thread) is a hook
	 * all the same: calls that would wait for the bus are refused
	 * there, rather than wait for the very call that reports. */
	const gs__bus_ctx *now = gs__bus_ctx_now();
	gs__bus_ctx ctx;
	bool outside = !now || now->bus != bus;
	if (outside)
		gs__bus_ctx_push(&ctx, bus, now ? now->may_block : true);
	bus->o.trace(bus->o.trace_arg, kind, &env->pub, sub);
	if (outside)
		gs__bus_ctx_pop(&ctx);
}

uint64_t gs__bus_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Waiting without lost wake-ups. A waiter, holding the lock, first says
 * what it waits for (a subscription's wake_at, or the closers' `waiters`
 * count), then checks its condition, then sleeps. Whoever changes the
 * condition makes its change with a seq_cst read-modify-write, then reads
 * what the waiters said and, if a wait is over, broadcasts under the lock.
 * Either the waiter sees the change, or the changer sees the waiter, and
 * then it cannot broadcast before the waiter sleeps.
 */
void gs__bus_broadcast(gs_bus *bus, bool locked)
{
	if (!locked)
		pthread_mutex_lock(&bus->lock);
	pthread_cond_broadcast(&bus->room);
	if (!locked)
		pthread_mutex_unlock(&bus->lock);
}

uint64_t gs__bus_deadline(int timeout_ms)
{
	return timeout_ms < 0
		       ? 0
		       : gs__bus_now_ns() + (uint64_t)timeout_ms * 1000000u;
}

/* How soon a wait looks again while a wake-up cannot be sent. */
#define REWAKE_NS 10000000u

/* Under the lock: sends again the wake-ups that failed, to the routed
 * subscriptions (one taken off the routes was told to close, which wakes
 * or stops its stage: gs__bus_sub_close). False if one failed again. */
static bool rewake(gs_bus *bus)
{
	bool sent = true;
	for (size_t i = 0; i < bus->n_subs; i++) {
		gs_bus_sub *s = bus->subs[i];
		if (gs__bus_queue_depth(s) && atomic_load(&s->hungry) &&
		    atomic_exchange(&s->hungry, false) &&
		    gs_cast(s->driver, NULL) != GS_OK) {
			atomic_store(&s->hungry, true);
			sent = false;
		}
	}
	return sent;
}

bool gs__bus_wait(gs_bus *bus, uint64_t deadline_ns)
{
	uint64_t until = deadline_ns;
	if (bus->wake_failed) {
		bus->wake_failed = !rewake(bus);
		uint64_t soon = gs__bus_now_ns() + REWAKE_NS;
		if (bus->wake_failed && (!until || soon < until))
			until = soon;
	}
	if (!until) {
		pthread_cond_wait(&bus->room, &bus->lock);
		return false;
	}
	/* The condition runs on CLOCK_MONOTONIC, as gs__bus_now_ns. */
	struct timespec ts = { (time_t)(until / 1000000000u),
			       (long)(until % 1000000000u) };
	pthread_cond_timedwait(&bus->room, &bus->lock, &ts);
	return deadline_ns && gs__bus_now_ns() >= deadline_ns;
}

/* Engine messages (a stage that failed, events it dropped) reach the
 * bus's log. */
static void engine_log(void *arg, gs_log_level level, const gs_stage *stage,
		       const char *msg)
{
	gs__bus_log(arg, "%s: %s: %s",
		    level == GS_LOG_ERROR ? "error" : "warning",
		    stage ? gs_stage_name(stage) : "-", msg);
}

static void bus_destroy(gs_bus *bus)
{
	/* Released subscriptions go with their stages; then those whose
	 * handles are still held. */
	gs_pipeline_free(bus->p);
	for (gs_bus_sub *s = bus->all, *next; s; s = next) {
		next = s->next_all;
		gs__bus_sub_free(s);
	}
	gs__bus_routes_fini(&bus->routes);
	gs__bus_pool_fini(&bus->pool);
	free(bus->subs);
	free(bus->touched);
	pthread_cond_destroy(&bus->room);
	pthread_mutex_destroy(&bus->close_lock);
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

static gs_err init_sync(gs_bus *bus)
{
	pthread_condattr_t attr;
	if (pthread_mutex_init(&bus->lock, NULL))
		return GS_ENOMEM;
	if (pthread_mutex_init(&bus->close_lock, NULL)) {
		pthread_mutex_destroy(&bus->lock);
		return GS_ENOMEM;
	}
	int err = pthread_condattr_init(&attr);
	if (!err) {
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		err = pthread_cond_init(&bus->room, &attr);
		pthread_condattr_destroy(&attr);
	}
	if (err) {
		pthread_mutex_destroy(&bus->close_lock);
		pthread_mutex_destroy(&bus->lock);
		return GS_ENOMEM;
	}
	return GS_OK;
}

GS_BUS_API gs_err gs_bus_new(const gs_bus_opts *opts, gs_bus **out)
{
	gs_bus_opts o = opts ? *opts : (gs_bus_opts){ 0 };
	if (!out || o.version > GS_BUS_OPTS_VERSION) {
		/* Said through the log hook the caller gave, bus or not. */
		gs_bus tmp = { .o = o };
		snprintf(tmp.name, sizeof tmp.name, "-");
		if (!out) {
			gs__bus_log(&tmp, "gs_bus_new: NULL out-parameter");
			return GS_EINVAL;
		}
		gs__bus_log(&tmp, "gs_bus_opts.version %u is newer than %u",
			    (unsigned)o.version, (unsigned)GS_BUS_OPTS_VERSION);
		return GS_EVERSION;
	}
	/* Its lines are laid out apart (see bus_internal.h): whole lines. */
	size_t size = (sizeof(gs_bus) + GS__BUS_LINE - 1) &
		      ~(size_t)(GS__BUS_LINE - 1);
	gs_bus *bus = aligned_alloc(GS__BUS_LINE, size);
	if (!bus)
		return GS_ENOMEM;
	memset(bus, 0, sizeof *bus);
	GS__ATOMIC(bus->waiters);
	GS__ATOMIC(bus->closing);
	GS__ATOMIC(bus->closed);
	GS__ATOMIC(bus->published);
	GS__ATOMIC(bus->unrouted);
	GS__ATOMIC(bus->completed);
	bus->o = o;
	snprintf(bus->name, sizeof bus->name, "%s", o.name ? o.name : "bus");
	bus->next_id = 1;
	if (init_sync(bus)) {
		free(bus);
		return GS_ENOMEM;
	}
	if (gs__bus_pool_init(&bus->pool)) {
		pthread_cond_destroy(&bus->room);
		pthread_mutex_destroy(&bus->close_lock);
		pthread_mutex_destroy(&bus->lock);
		free(bus);
		return GS_ENOMEM;
	}
	gs_err err = gs__bus_routes_init(
		&bus->routes,
		o.max_topics ? o.max_topics : GS_BUS_DEFAULT_MAX_TOPICS);
	if (!err)
		err = gs_pipeline_new(
			&(gs_pipeline_opts){ .log = engine_log,
					     .log_arg = bus,
					     .executor = o.executor },
			&bus->p);
	if (!err)
		err = gs_pipeline_start(bus->p);
	if (err) {
		bus_destroy(bus);
		return err;
	}
	*out = bus;
	return GS_OK;
}

/* Under the lock: the subscriptions routed to, now taken off the routes
 * for good. */
static gs_bus_sub **take_subs(gs_bus *bus, size_t *n)
{
	gs_bus_sub **subs = bus->subs;
	*n = bus->n_subs;
	for (size_t i = 0; i < *n; i++)
		subs[i]->listed = false;
	bus->subs = NULL;
	bus->n_subs = bus->cap_subs = 0;
	bus->routes.gen++;
	return subs;
}

/* Under the lock: the first subscription from s on that is not being
 * freed, with a reference taken. */
static gs_bus_sub *held_from(gs_bus_sub *s)
{
	while (s && !gs__bus_sub_try_ref(s))
		s = s->next_all;
	return s;
}

/* Under the lock: whether every subscription (those unsubscribed too) has
 * finished what it accepted, and every accepted envelope has completed,
 * its hooks run (an unrouted one's, or one whose last reference was its
 * publisher's, completes on the publisher's thread, after every
 * subscription is done with it). Then no handler or hook runs, and with
 * outside publishes refused none can start. */
static bool quiet(const gs_bus *bus)
{
	for (const gs_bus_sub *s = bus->all; s; s = s->next_all)
		if (atomic_load(&s->finished) != atomic_load(&s->accepted))
			return false;
	return atomic_load(&bus->completed) == atomic_load(&bus->published);
}

/* Under the lock: a drain lets the handlers finish what was accepted,
 * while what they publish in reaction is still routed, so that a chain of
 * causes is never cut by the close; then the routes can go. */
static void quiesce(gs_bus *bus)
{
	atomic_fetch_add(&bus->waiters, 1); /* see gs__bus_finish */
	while (!quiet(bus))
		gs__bus_wait(bus, 0);
	atomic_fetch_sub(&bus->waiters, 1);
}

GS_BUS_API gs_err gs_bus_close(gs_bus *bus, gs_bus_close_mode mode)
{
	if (!bus || (mode != GS_BUS_DRAIN && mode != GS_BUS_IMMEDIATE)) {
		log_line(bus, "gs_bus_close: NULL bus or unknown mode");
		return GS_EINVAL;
	}
	if (tls) {
		gs__bus_log(bus, "gs_bus_close: not from a bus handler or "
				 "hook (it would wait for itself)");
		return GS_ETHREAD;
	}
	pthread_mutex_lock(&bus->close_lock);
	if (bus->close_done) {
		pthread_mutex_unlock(&bus->close_lock);
		return GS_OK;
	}
	pthread_mutex_lock(&bus->lock);
	atomic_store(&bus->closing, true);
	pthread_cond_broadcast(&bus->room); /* publishers that wait: closed */
	if (mode == GS_BUS_DRAIN)
		quiesce(bus);
	atomic_store(&bus->closed, true);
	size_t n;
	gs_bus_sub **subs = take_subs(bus, &n);
	pthread_mutex_unlock(&bus->lock);
	/* Immediate: the queues are emptied here, and the stop below ends
	 * the stages; a drain lets each stage finish once its queue is.
	 * Either way the routes let go of each. */
	for (size_t i = 0; i < n; i++) {
		if (mode == GS_BUS_IMMEDIATE)
			gs__bus_cut(subs[i]);
		else
			gs__bus_sub_close(subs[i]);
		gs__bus_sub_unref(subs[i]);
	}
	free(subs);
	/* Immediate: what is on its way to a handler is dropped too (the
	 * feeders' event_free, the pools' cancellations). */
	gs_err err = mode == GS_BUS_IMMEDIATE
			     ? gs_pipeline_stop(bus->p, GS_STOP_NOW)
			     : gs_pipeline_wait(bus->p);
	/* Every stage has finished; a queue whose feeder ended before its
	 * subscription was closed (out of memory) could still hold events
	 * that will never be handled: they are dropped, not lost. Each is
	 * held meanwhile, since one released is freed as its stages are;
	 * one already let go drops its queue as it is freed. */
	pthread_mutex_lock(&bus->lock);
	gs_bus_sub *s = held_from(bus->all);
	pthread_mutex_unlock(&bus->lock);
	while (s) {
		gs__bus_drop_queue(s);
		pthread_mutex_lock(&bus->lock);
		gs_bus_sub *next = held_from(s->next_all);
		pthread_mutex_unlock(&bus->lock);
		gs__bus_sub_unref(s);
		s = next;
	}
	/* A publish accepted just before the close may still hold its block:
	 * wait for the last one to let go. */
	pthread_mutex_lock(&bus->lock);
	atomic_fetch_add(&bus->waiters, 1);
	while (atomic_load(&bus->published) != atomic_load(&bus->completed))
		gs__bus_wait(bus, 0);
	atomic_fetch_sub(&bus->waiters, 1);
	pthread_mutex_unlock(&bus->lock);
	bus->close_done = true;
	pthread_mutex_unlock(&bus->close_lock);
	if (err)
		gs__bus_log(bus, "a subscription's stage failed: %s",
			    gs_strerror(err));
	return GS_OK;
}

GS_BUS_API void gs_bus_free(gs_bus *bus)
{
	if (!bus)
		return;
	if (gs_bus_close(bus, GS_BUS_DRAIN) == GS_ETHREAD)
		return; /* logged: freeing it from inside would crash */
	bus_destroy(bus);
}
