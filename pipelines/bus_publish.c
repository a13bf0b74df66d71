// SPDX-License-Identifier: MIT
/*
 * Publishing. A publish call builds its envelopes in one block before it
 * takes the publish lock; under the lock it routes each envelope (a hash
 * lookup), checks that every matched GS_BUS_BLOCK queue has room for all of
 * its events (else it refuses, or waits and routes again), assigns ids,
 * and puts each delivery into its subscription's queue. The queues' new
 * ends are shown once per call. Feeders to wake, unrouted hooks and the
 * release of the block wait until the lock is returned.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_internal.h"

#if defined(__GNUC__)
#define PREFETCH_WRITE(p) __builtin_prefetch((p), 1)
#else
#define PREFETCH_WRITE(p) ((void)(p))
#endif

/* Feeders woken after the lock is returned; more are woken under it. */
#define WAKE_LATER 16

/* Why a publish was refused, said once the lock is returned. */
typedef struct refusal {
	char why[160];
} refusal;

/* Under the lock: env's topic entry, its route current. A shared entry's
 * route is overwritten by each lookup, so it is computed again. */
static inline gs__bus_topic *route_of(gs_bus *bus, gs__bus_env *e, gs_err *err,
				      refusal *no)
{
	*err = GS_OK;
	if (e->topic && e->topic != &bus->routes.other)
		return e->topic; /* routed earlier in this publish */
	e->topic = gs__bus_route(bus, e->pub.topic, e->topic_len, e->topic_hash,
				 err, no->why, sizeof no->why);
	return e->topic;
}

static gs_err route_all(gs_bus *bus, gs__bus_block *b, refusal *no)
{
	for (size_t i = 0; i < b->n; i++) {
		gs__bus_env *e = &b->env[i];
		gs__bus_env *prev = i ? e - 1 : NULL;
		gs_err err;
		/* Batches often repeat a topic. */
		if (prev && prev->topic_hash == e->topic_hash &&
		    prev->topic_len == e->topic_len &&
		    !gs__bus_topic_shared(bus, prev->topic) &&
		    !memcmp(prev->pub.topic, e->pub.topic, e->topic_len))
			e->topic = prev->topic;
		else
			e->topic = NULL;
		if (!route_of(bus, e, &err, no))
			return err;
		e->matched = (uint32_t)e->topic->n_subs;
	}
	return GS_OK;
}

/* Under the lock: starts a new set of touched subscriptions. */
static void touch_reset(gs_bus *bus)
{
	bus->epoch++;
	bus->n_touched = 0;
}

static void touch(gs_bus *bus, gs_bus_sub *s)
{
	if (s->epoch == bus->epoch)
		return;
	s->epoch = bus->epoch;
	s->need = 0;
	bus->touched[bus->n_touched++] = s;
}

static uint64_t used(const gs_bus_sub *s)
{
	return atomic_load_explicit(&s->accepted, memory_order_relaxed) -
	       atomic_load(&s->finished);
}

/* Under the lock: whether s lacks room for `need` more. With `arm`, a
 * queue found full is told to wake this publisher once it has drained to
 * half (or to `need`, if more), which spares a wake-up per batch the
 * subscriber finishes. */
static bool lacks_room(gs_bus_sub *s, size_t need, bool arm)
{
	if (used(s) + need <= s->queue_size)
		return false;
	if (!arm)
		return true;
	size_t want = need > s->queue_size / 2 ? need : s->queue_size / 2;
	uint64_t accepted = atomic_load_explicit(&s->accepted,
						 memory_order_relaxed);
	gs__bus_wait_for(s, accepted - s->queue_size + want);
	/* Again, after saying so: see gs__bus_broadcast. */
	return used(s) + need > s->queue_size;
}

/* Under the lock: adds `count` events of topic t to the needs of its
 * GS_BUS_BLOCK subscriptions. */
static void add_need(gs_bus *bus, const gs__bus_topic *t, size_t count)
{
	for (size_t k = 0; k < t->n_subs; k++)
		if (t->subs[k]->overflow == GS_BUS_BLOCK) {
			touch(bus, t->subs[k]);
			t->subs[k]->need += count;
		}
}

/* Under the lock: whether every matched GS_BUS_BLOCK queue has room for
 * its share of the block; GS_EINVAL if one never could. Events are counted
 * per topic first, so that a block of many events on few topics costs a
 * pass over each topic's route, not over every delivery. */
static gs_err check_room(gs_bus *bus, gs__bus_block *b, bool arm, bool *full,
			 refusal *no)
{
	touch_reset(bus);
	gs__bus_topic *topics = NULL;
	for (size_t i = 0; i < b->n; i++) {
		gs_err err;
		gs__bus_topic *t = route_of(bus, &b->env[i], &err, no);
		if (!t)
			return err;
		if (gs__bus_topic_shared(bus, t)) {
			add_need(bus, t, 1); /* its route is this event's */
		} else if (t->epoch != bus->epoch) {
			t->epoch = bus->epoch;
			t->count = 1;
			t->next_touched = topics;
			topics = t;
		} else {
			t->count++;
		}
	}
	for (; topics; topics = topics->next_touched)
		add_need(bus, topics, topics->count);
	*full = false;
	for (size_t i = 0; i < bus->n_touched; i++) {
		gs_bus_sub *s = bus->touched[i];
		if (s->need > s->queue_size) {
			snprintf(no->why, sizeof no->why,
				 "%zu events for '%s', whose queue_size is %zu",
				 s->need, s->name, s->queue_size);
			return GS_EINVAL;
		}
		*full |= lacks_room(s, s->need, arm);
	}
	return GS_OK;
}

/* Under the lock: one delivery to s, by its overflow policy. */
static void put(gs_bus *bus, gs_bus_sub *s, gs__bus_env *e,
		gs__bus_block **defer)
{
	touch(bus, s);
	bool room = s->overflow == GS_BUS_BLOCK || used(s) < s->queue_size;
	atomic_store_explicit(
		&s->accepted,
		atomic_load_explicit(&s->accepted, memory_order_relaxed) + 1,
		memory_order_relaxed);
	if (!room && s->overflow == GS_BUS_DROP_OLDEST) {
		gs__bus_env *old;
		room = gs__bus_queue_take(s, &old, 1) == 1;
		if (room)
			gs__bus_drop(s, &old, 1, defer);
	}
	if (!room) { /* drop newest, or everything is being handled */
		gs__bus_drop(s, &e, 1, defer);
		return;
	}
	gs__bus_queue_put(s, e);
	if (s->overflow != GS_BUS_BLOCK) /* droppable from the moment it is
					    in: take from it as it is */
		atomic_store_explicit(&s->head, s->put, memory_order_release);
}

/* What a publish does after it returned the lock. */
typedef struct after {
	gs_bus_sub *wake[WAKE_LATER];
	size_t n_wake;
	gs__bus_block *defer;
	size_t unrouted;
	refusal no;
} after;

static void set_ids(gs_bus *bus, gs__bus_block *b, uint64_t correlation)
{
	const gs__bus_ctx *ctx = gs__bus_ctx_now();
	const gs__bus_env *cause = ctx && ctx->bus == bus ? ctx->env : NULL;
	uint64_t id = bus->next_id;
	bus->next_id += b->n;
	for (size_t i = 0; i < b->n; i++, id++) {
		gs_bus_envelope *pub = &b->env[i].pub;
		pub->id = id;
		pub->causation_id = cause ? cause->pub.id : 0;
		pub->correlation_id = correlation ? correlation
				      : cause     ? cause->pub.correlation_id
						  : id;
	}
}

/* Under the lock, with room checked: the block is accepted. */
static void accept(gs_bus *bus, gs__bus_block *b, uint64_t correlation,
		   after *a)
{
	set_ids(bus, b, correlation);
	size_t deliveries = 0;
	for (size_t i = 0; i < b->n; i++)
		deliveries += b->env[i].matched;
	/* Before any delivery is shown; plus the one the publisher holds
	 * until it is done with the block. */
	atomic_store_explicit(&b->pending, deliveries + 1,
			      memory_order_relaxed);
	touch_reset(bus);
	for (size_t i = 0; i < b->n; i++) {
		gs__bus_env *e = &b->env[i];
		gs_err err;
		/* Routed already: only a shared entry is computed again. */
		gs__bus_topic *t = route_of(bus, e, &err, &a->no);
		gs__bus_trace(bus, GS_BUS_TRACE_PUBLISH, e, NULL);
		for (size_t k = 0; k < t->n_subs; k++)
			put(bus, t->subs[k], e, &a->defer);
		atomic_store_explicit(
			&t->published,
			atomic_load_explicit(&t->published,
					     memory_order_relaxed) +
				1,
			memory_order_relaxed);
		atomic_store_explicit(
			&t->deliveries,
			atomic_load_explicit(&t->deliveries,
					     memory_order_relaxed) +
				e->matched,
			memory_order_relaxed);
		if (!e->matched) {
			atomic_fetch_add_explicit(&t->unrouted, 1,
						  memory_order_relaxed);
			a->unrouted++;
		}
	}
	atomic_fetch_add_explicit(&bus->published, b->n, memory_order_relaxed);
	atomic_fetch_add_explicit(&bus->unrouted, a->unrouted,
				  memory_order_relaxed);
	for (size_t i = 0; i < bus->n_touched; i++) {
		gs_bus_sub *s = bus->touched[i];
		if (!gs__bus_queue_show(s))
			continue;
		if (a->n_wake < WAKE_LATER)
			a->wake[a->n_wake++] = s;
		else
			gs__bus_queue_wake(s);
	}
}

/* Validates the topics, then builds the block: envelopes, topic and
 * source copies. */
static gs_err build(gs_bus *bus, const gs_bus_msg *msgs, size_t n,
		    const gs_bus_publish_opts *o, gs__bus_block **out)
{
	/* Only what is cheap here; a topic is checked in full when the
	 * table does not know it yet (see gs__bus_route). */
	size_t strings = 0;
	for (size_t i = 0; i < n; i++) {
		const char *topic = msgs[i].topic;
		size_t len = topic ? strnlen(topic, GS__BUS_TOPIC_MAX + 1) : 0;
		if (!len || len > GS__BUS_TOPIC_MAX) {
			char why[160];
			gs__bus_topic_check(topic, &len, why, sizeof why);
			gs__bus_log(bus, "publish: %s", why);
			return GS_EINVAL;
		}
		strings += len + 1;
	}
	const char *source = o->source ? o->source : "";
	size_t slen = strlen(source);
	char *str;
	gs__bus_block *b = gs__bus_block_new(bus, n, strings + slen + 1, &str);
	if (!b)
		return GS_ENOMEM;
	b->free_fn = o->free_fn;
	memcpy(str, source, slen + 1);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t ns = (uint64_t)now.tv_sec * 1000000000u +
		      (uint64_t)now.tv_nsec;
	char *at = str + slen + 1;
	for (size_t i = 0; i < n; i++) {
		gs__bus_env *e = &b->env[i];
		/* A recycled block was last read on another core: ask for
		 * the lines a few envelopes ahead before writing them. */
		PREFETCH_WRITE(e + 4);
		size_t len = strlen(msgs[i].topic);
		memcpy(at, msgs[i].topic, len + 1);
		/* Field by field: set_ids fills the ids, routing the rest;
		 * a struct literal would clear it all first. */
		e->pub.published_ns = ns;
		e->pub.topic = at;
		e->pub.source = str;
		e->pub.payload = msgs[i].payload;
		e->blk = b;
		e->topic = NULL;
		e->topic_hash = gs__bus_topic_hash(msgs[i].topic, len);
		e->topic_len = (uint32_t)len;
		atomic_init(&e->skipped, 0);
		atomic_init(&e->dropped, 0);
		atomic_init(&e->failed, 0);
		at += len + 1;
	}
	*out = b;
	return GS_OK;
}

/* Whether this thread runs a callback of `bus` (a handler, a dead letter,
 * a hook): such publishes are still taken while a drain finishes. */
static bool from_handler(const gs_bus *bus)
{
	const gs__bus_ctx *ctx = gs__bus_ctx_now();
	return ctx && ctx->bus == bus;
}

/* Takes the lock and accepts the block, waiting for room as the timeout
 * allows. On error the lock is returned and the block is the caller's. */
static gs_err admit(gs_bus *bus, gs__bus_block *b, const gs_bus_publish_opts *o,
		    after *a)
{
	int timeout = o->timeout_ms;
	uint64_t dl = gs__bus_deadline(timeout);
	bool timed_out = false;
	gs_err err = GS_OK;
	pthread_mutex_lock(&bus->lock);
	for (;;) {
		bool full = false;
		if (atomic_load_explicit(&bus->closed, memory_order_relaxed) ||
		    (atomic_load_explicit(&bus->closing,
					  memory_order_relaxed) &&
		     !from_handler(bus)))
			err = GS_ECLOSED;
		if (!err)
			err = route_all(bus, b, &a->no);
		if (!err)
			err = check_room(bus, b, timeout && !timed_out, &full,
					 &a->no);
		if (err || !full)
			break;
		if (timeout == 0 || timed_out) {
			err = timeout == 0 ? GS_EFULL : GS_ETIMEDOUT;
			break;
		}
		timed_out = gs__bus_wait(bus, dl);
	}
	if (!err)
		accept(bus, b, o->correlation_id, a);
	pthread_mutex_unlock(&bus->lock);
	return err;
}

static void finish_publish(gs_bus *bus, gs__bus_block *b, after *a)
{
	for (size_t i = 0; i < a->n_wake; i++)
		gs__bus_queue_wake(a->wake[i]);
	if (a->unrouted && (bus->o.unrouted || bus->o.trace)) {
		const gs__bus_ctx *now = gs__bus_ctx_now();
		gs__bus_ctx ctx;
		gs__bus_ctx_push(&ctx, bus, now ? now->may_block : true);
		for (size_t i = 0; i < b->n; i++) {
			if (b->env[i].matched)
				continue;
			gs__bus_trace(bus, GS_BUS_TRACE_UNROUTED, &b->env[i],
				      NULL);
			if (bus->o.unrouted)
				bus->o.unrouted(bus->o.unrouted_arg,
						&b->env[i].pub);
		}
		gs__bus_ctx_pop(&ctx);
	}
	gs__bus_complete_list(a->defer);
	gs__bus_release(b, 1, NULL);
}

GS_BUS_API gs_err gs_bus_publish_batch(gs_bus *bus, const gs_bus_msg *msgs,
				       size_t n,
				       const gs_bus_publish_opts *opts)
{
	gs_bus_publish_opts o = opts ? *opts : (gs_bus_publish_opts){ 0 };
	if (!bus || (!msgs && n)) {
		gs__bus_log(bus, "publish: NULL bus or messages");
		return GS_EINVAL;
	}
	if (o.version > GS_BUS_PUBLISH_OPTS_VERSION) {
		gs__bus_log(bus,
			    "gs_bus_publish_opts.version %u is newer "
			    "than %u",
			    (unsigned)o.version,
			    (unsigned)GS_BUS_PUBLISH_OPTS_VERSION);
		return GS_EVERSION;
	}
	const gs__bus_ctx *ctx = gs__bus_ctx_now();
	if (o.timeout_ms != 0 && ctx && !ctx->may_block) {
		gs__bus_log(bus, "publish: a handler that may not block "
				 "publishes with timeout 0 only");
		return GS_ETHREAD;
	}
	if (!n)
		return GS_OK;
	if (n > UINT32_MAX)
		return GS_EINVAL;
	gs__bus_block *b;
	gs_err err = build(bus, msgs, n, &o, &b);
	if (err)
		return err;
	after a = { 0 };
	err = admit(bus, b, &o, &a);
	if (err) {
		gs__bus_block_free(b);
		if (err == GS_ECLOSED)
			gs__bus_log(bus, "publish: the bus is closed");
		else if (err == GS_EINVAL)
			gs__bus_log(bus, "publish: %s", a.no.why);
		return err;
	}
	finish_publish(bus, b, &a);
	return GS_OK;
}

GS_BUS_API gs_err gs_bus_publish(gs_bus *bus, const char *topic, void *payload,
				 gs_bus_free_fn free_fn, int timeout_ms)
{
	return gs_bus_publish_batch(
		bus, &(gs_bus_msg){ .topic = topic, .payload = payload }, 1,
		&(gs_bus_publish_opts){ .free_fn = free_fn,
					.timeout_ms = timeout_ms });
}

GS_BUS_API gs_err gs_bus_route_count(gs_bus *bus, const char *topic, size_t *n)
{
	char why[160];
	size_t len;
	if (!bus || !n)
		return GS_EINVAL;
	if (gs__bus_topic_check(topic, &len, why, sizeof why)) {
		gs__bus_log(bus, "route_count: %s", why);
		return GS_EINVAL;
	}
	size_t count = 0;
	pthread_mutex_lock(&bus->lock);
	for (size_t i = 0; i < bus->n_subs; i++)
		count += gs__bus_matcher_test(&bus->subs[i]->match, topic, len);
	pthread_mutex_unlock(&bus->lock);
	*n = count;
	return GS_OK;
}
