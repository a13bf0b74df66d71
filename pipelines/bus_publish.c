// SPDX-License-Identifier: MIT
/*
 * Publishing. A publish call builds its envelopes in one block before it
 * takes the publish lock; under the lock it routes each envelope (a hash
 * lookup, once per topic per call), checks that every matched GS_BUS_BLOCK
 * queue has room for all of its events (else it refuses, or waits and
 * routes again), assigns ids, and puts each delivery into its
 * subscription's queue. The queues' new ends are shown once per call.
 * Feeders to wake, unrouted hooks and the release of the block wait until
 * the lock is returned.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_internal.h"

/* Feeders woken after the lock is returned; more are woken under it. */
#define WAKE_LATER 16

/* Why a publish was refused, said once the lock is returned. */
typedef struct refusal {
	char why[160];
} refusal;

/* Topics looked up in one call, by the caller's string (the pointer in
 * its gs_bus_msg): a batch that repeats a topic (most do) finds its entry
 * here instead of hashing the name, probing the table and comparing.
 * Open addressing by the pointer over SEEN slots, those in use marked in
 * `used`, so that a call starts it with one store; it stops taking
 * topics at three-quarters full. */
#define SEEN 64 /* seen_find takes 6 bits */

typedef struct seen {
	uint64_t used;
	size_t n;
	struct {
		const char *key; /* the caller's topic string */
		gs__bus_topic *t;
	} slot[SEEN];
} seen;

/* The slot holding key, or the free one where it would go. By the
 * pointer's bits: a topic found here is never hashed. */
static size_t seen_find(const seen *c, const char *key)
{
	size_t i = (size_t)(((uintptr_t)key >> 3) * 0x9e3779b97f4a7c15u >> 58);
	while ((c->used >> i & 1) && c->slot[i].key != key)
		i = (i + 1) & (SEEN - 1);
	return i;
}

/* Under the lock: env's topic entry, its route current. A shared entry's
 * route is overwritten by each lookup, so it is computed again. */
static inline gs__bus_topic *route_of(gs_bus *bus, gs__bus_env *e, gs_err *err,
				      refusal *no)
{
	*err = GS_OK;
	if (e->topic && !gs__bus_topic_shared(bus, e->topic))
		return e->topic; /* routed earlier in this publish */
	e->topic = gs__bus_route(bus, e->pub.topic, e->topic_len,
				 gs__bus_topic_hash(e->pub.topic, e->topic_len),
				 err, no->why, sizeof no->why);
	return e->topic;
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

/* Under the lock: adds `count` events of topic t to the needs of the
 * subscriptions it routes to. */
static void add_need(gs_bus *bus, const gs__bus_topic *t, size_t count)
{
	for (size_t k = 0; k < t->n_subs; k++) {
		touch(bus, t->subs[k]);
		t->subs[k]->need += count;
	}
}

/* Under the lock: routes every envelope of the block and says what it
 * asks of each subscription: the touched set, each with its `need`.
 * Events are counted per topic first (the topic's `count`, the list in
 * *topics), so that a block of many events on few topics costs a pass
 * over each topic's route, not over every delivery. A shared entry's
 * route is its event's alone, so it is counted at once; *copies says how
 * many bytes its topics take (see accept). */
static gs_err route_all(gs_bus *bus, gs__bus_block *b, const gs_bus_msg *msgs,
			gs__bus_topic **topics, size_t *copies, refusal *no)
{
	seen cache;
	cache.used = 0;
	cache.n = 0;
	*topics = NULL;
	*copies = 0;
	touch_reset(bus);
	for (size_t i = 0; i < b->n; i++) {
		gs__bus_env *e = &b->env[i];
		size_t k = seen_find(&cache, msgs[i].topic);
		gs__bus_topic *t = cache.used >> k & 1 ? cache.slot[k].t : NULL;
		gs_err err;
		e->topic = t;
		if (!t && !(t = route_of(bus, e, &err, no)))
			return err;
		e->matched = (uint32_t)t->n_subs;
		if (gs__bus_topic_shared(bus, t)) {
			add_need(bus, t, 1);
			*copies += e->topic_len + 1;
			continue;
		}
		if (!(cache.used >> k & 1) && cache.n < SEEN * 3 / 4) {
			cache.used |= (uint64_t)1 << k;
			cache.n++;
			cache.slot[k].key = msgs[i].topic;
			cache.slot[k].t = t;
		}
		if (t->epoch != bus->epoch) {
			t->epoch = bus->epoch;
			t->count = 0;
			t->next_touched = *topics;
			*topics = t;
		}
		t->count++;
	}
	for (gs__bus_topic *t = *topics; t; t = t->next_touched)
		add_need(bus, t, t->count);
	return GS_OK;
}

/* Under the lock: whether s has room for `need` more deliveries. Its
 * consumers move `finished` on their own line, often; reading it on every
 * publish would fetch that line each time. It only grows, so the value
 * last read (finished_seen, on the publisher's line) bounds what s holds
 * from above, and it is read again only when that bound leaves no room. */
static bool has_room(gs_bus_sub *s, size_t need)
{
	uint64_t accepted = atomic_load_explicit(&s->accepted,
						 memory_order_relaxed);
	if (accepted - s->finished_seen + need <= s->queue_size)
		return true;
	s->finished_seen = atomic_load(&s->finished);
	return accepted - s->finished_seen + need <= s->queue_size;
}

/* Under the lock: whether s lacks room for `need` more. With `arm`, a
 * queue found full is told to wake this publisher once it has drained to
 * half (or to `need`, if more), which spares a wake-up per batch the
 * subscriber finishes. */
static bool lacks_room(gs_bus_sub *s, size_t need, bool arm)
{
	if (has_room(s, need))
		return false;
	if (!arm)
		return true;
	size_t want = need > s->queue_size / 2 ? need : s->queue_size / 2;
	uint64_t accepted = atomic_load_explicit(&s->accepted,
						 memory_order_relaxed);
	gs__bus_wait_for(s, accepted - s->queue_size + want);
	/* Again, after saying so: see gs__bus_broadcast. */
	return !has_room(s, need);
}

/* Under the lock, after route_all: whether every touched GS_BUS_BLOCK
 * queue has room for its share of the block; GS_EINVAL if one never
 * could. */
static gs_err check_room(gs_bus *bus, bool arm, bool *full, refusal *no)
{
	*full = false;
	for (size_t i = 0; i < bus->n_touched; i++) {
		gs_bus_sub *s = bus->touched[i];
		if (s->overflow != GS_BUS_BLOCK)
			continue;
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

static void count(_Atomic uint64_t *c, uint64_t n)
{
	/* One writer (the lock holder): a load and a store, no locked
	 * instruction. */
	atomic_store_explicit(c,
			      atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* Under the lock: one delivery to a drop-policy subscription. Its events
 * are droppable from the moment they are in, so it is taken from as it
 * is (head moves at once). */
static void put_droppable(gs_bus_sub *s, gs__bus_env *e, gs__bus_block **defer)
{
	bool room = has_room(s, 1);
	count(&s->accepted, 1);
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

/* Under the lock, with room checked: the block is accepted. Each
 * envelope's topic becomes the table's name (or its copy, beyond the
 * table) before anyone sees it. Each GS_BUS_BLOCK subscription's accepted
 * count moves once by its need (it has room for all of it); a delivery is
 * then a store into its queue. */
static void accept(gs_bus *bus, gs__bus_block *b, gs__bus_topic *topics,
		   uint64_t correlation, after *a)
{
	set_ids(bus, b, correlation);
	size_t deliveries = 0;
	for (size_t i = 0; i < b->n; i++)
		deliveries += b->env[i].matched;
	/* Before any delivery is shown; plus the one the publisher holds
	 * until it is done with the block. */
	atomic_store_explicit(&b->pending, deliveries + 1,
			      memory_order_relaxed);
	for (size_t i = 0; i < bus->n_touched; i++)
		if (bus->touched[i]->overflow == GS_BUS_BLOCK)
			count(&bus->touched[i]->accepted,
			      bus->touched[i]->need);
	bool traced = bus->o.trace != NULL;
	char *copy = b->copies;
	for (size_t i = 0; i < b->n; i++) {
		gs__bus_env *e = &b->env[i];
		gs__bus_topic *t = e->topic;
		if (gs__bus_topic_shared(bus, t)) {
			gs_err err;
			/* Its route is computed again: same lock, same
			 * answer. */
			t = route_of(bus, e, &err, &a->no);
			count(&t->published, 1);
			count(&t->deliveries, e->matched);
			if (!e->matched) {
				count(&t->unrouted, 1);
				a->unrouted++;
			}
			memcpy(copy, e->pub.topic, e->topic_len + 1);
			e->pub.topic = copy;
			copy += e->topic_len + 1;
		} else {
			e->pub.topic = t->name;
		}
		if (traced)
			gs__bus_trace(bus, GS_BUS_TRACE_PUBLISH, e, NULL);
		for (size_t k = 0; k < t->n_subs; k++) {
			gs_bus_sub *s = t->subs[k];
			if (s->overflow == GS_BUS_BLOCK)
				gs__bus_queue_put(s, e);
			else
				put_droppable(s, e, &a->defer);
		}
	}
	size_t k = 0;
	for (gs__bus_topic *t = topics; t; t = t->next_touched, k++) {
		count(&t->published, t->count);
		count(&t->deliveries, t->count * t->n_subs);
		if (!t->n_subs) {
			count(&t->unrouted, t->count);
			a->unrouted += t->count;
		}
		if (k < b->sums_cap)
			b->sums[k] = (gs__bus_sum){ t, t->count,
						    t->count * t->n_subs };
	}
	/* Beyond the table, or too many topics: counted per envelope. */
	b->n_sums = copy == b->copies && k <= b->sums_cap ? k : 0;
	count(&bus->published, b->n);
	if (a->unrouted)
		count(&bus->unrouted, a->unrouted);
	/* The hungry ones are written over the touched set, which is done
	 * with. */
	size_t hungry = gs__bus_queue_show(bus->touched, bus->n_touched,
					   bus->touched);
	for (size_t i = 0; i < hungry; i++) {
		gs_bus_sub *s = bus->touched[i];
		if (a->n_wake < WAKE_LATER) {
			/* Reached after the lock is returned, when it may
			 * have been unsubscribed and released: held. */
			gs__bus_sub_ref(s);
			a->wake[a->n_wake++] = s;
		} else {
			gs__bus_queue_wake(s, true);
		}
	}
}

/* Validates the topics, then builds the block: envelopes, topic and
 * source copies. */
static gs_err build(gs_bus *bus, const gs_bus_msg *msgs, size_t n,
		    const gs_bus_publish_opts *o, gs__bus_block **out)
{
	const char *source = o->source ? o->source : "";
	size_t slen = strlen(source);
	char *str;
	gs__bus_block *b = gs__bus_block_new(bus, n, slen + 1, &str);
	if (!b)
		return GS_ENOMEM;
	b->free_fn = o->free_fn;
	memcpy(str, source, slen + 1);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t ns = (uint64_t)now.tv_sec * 1000000000u +
		      (uint64_t)now.tv_nsec;
	for (size_t i = 0; i < n; i++) {
		gs__bus_env *e = &b->env[i];
		const char *topic = msgs[i].topic;
		/* Only what is cheap here; a topic is checked in full when
		 * the table does not know it yet (see gs__bus_route). */
		size_t len = topic ? strnlen(topic, GS__BUS_TOPIC_MAX + 1) : 0;
		if (!len || len > GS__BUS_TOPIC_MAX) {
			char why[160];
			gs__bus_topic_check(topic, &len, why, sizeof why);
			gs__bus_log(bus, "publish: %s", why);
			gs__bus_block_free(b);
			return GS_EINVAL;
		}
		/* A recycled block was last read on another core: ask for
		 * both lines of the envelope ten ahead before writing it.
		 * Ten covers the time a line takes to come from the other
		 * core while this loop fills the ones between (four ahead,
		 * one line, was 15% slower in bus-fanout when the workers
		 * ran on another physical core). */
		gs__bus_prefetch_write(e + 10);
		gs__bus_prefetch_write((char *)(e + 10) + 64);
		/* Field by field: set_ids fills the ids, routing the rest;
		 * a struct literal would clear it all first. The topic is
		 * the caller's until accept points it at the table's. */
		e->pub.published_ns = ns;
		e->pub.topic = topic;
		e->pub.source = str;
		e->pub.payload = msgs[i].payload;
		e->blk = b;
		e->topic = NULL;
		e->topic_len = (uint32_t)len;
		atomic_init(&e->skipped, 0);
		atomic_init(&e->dropped, 0);
		atomic_init(&e->failed, 0);
		GS__ATOMIC(e->skipped);
		GS__ATOMIC(e->dropped);
		GS__ATOMIC(e->failed);
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

/* Under the lock, after a refusal: the topics this call put in the table
 * that no publish was ever accepted on leave it, so that a refused
 * publish neither shows them nor takes the table's room from later ones
 * (a bad topic late in a batch refuses the batch after the good ones
 * before it were interned). */
static void forget_unused(gs_bus *bus, gs__bus_topic *topics)
{
	for (gs__bus_topic *t = topics, *next; t; t = next) {
		next = t->next_touched;
		if (!atomic_load_explicit(&t->published, memory_order_relaxed))
			gs__bus_topic_forget(bus, t);
	}
}

/* Takes the lock and accepts the block, waiting for room as the timeout
 * allows. On error the lock is returned and the block is the caller's. */
static gs_err admit(gs_bus *bus, gs__bus_block *b, const gs_bus_msg *msgs,
		    const gs_bus_publish_opts *o, after *a)
{
	int timeout = o->timeout_ms;
	uint64_t dl = gs__bus_deadline(timeout);
	bool timed_out = false;
	gs_err err = GS_OK;
	pthread_mutex_lock(&bus->lock);
	gs__bus_topic *topics = NULL;
	for (;;) {
		bool full = false;
		if (atomic_load_explicit(&bus->closed, memory_order_relaxed) ||
		    (atomic_load_explicit(&bus->closing,
					  memory_order_relaxed) &&
		     !from_handler(bus)))
			err = GS_ECLOSED;
		size_t copies = 0;
		if (!err)
			err = route_all(bus, b, msgs, &topics, &copies, &a->no);
		if (!err && copies > b->copies_len) {
			/* Room for the topics beyond the table, made without
			 * the lock; then everything is routed again. */
			pthread_mutex_unlock(&bus->lock);
			char *c = realloc(b->copies, copies);
			pthread_mutex_lock(&bus->lock);
			if (!c) {
				err = GS_ENOMEM;
				break;
			}
			b->copies = c;
			b->copies_len = copies;
			continue;
		}
		if (!err)
			err = check_room(bus, timeout && !timed_out, &full,
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
		accept(bus, b, topics, o->correlation_id, a);
	else
		forget_unused(bus, topics);
	pthread_mutex_unlock(&bus->lock);
	return err;
}

static void finish_publish(gs_bus *bus, gs__bus_block *b, after *a)
{
	for (size_t i = 0; i < a->n_wake; i++) {
		gs__bus_queue_wake(a->wake[i], false);
		gs__bus_sub_unref(a->wake[i]);
	}
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
	if (n > UINT32_MAX) {
		gs__bus_log(bus,
			    "publish: %zu messages in one batch; at most "
			    "%u",
			    n, (unsigned)UINT32_MAX);
		return GS_EINVAL;
	}
	gs__bus_block *b;
	gs_err err = build(bus, msgs, n, &o, &b);
	if (err)
		return err;
	/* Field by field: clearing the whole struct (the wake list and the
	 * refusal's text) was 3% of a single publish's instructions. */
	after a;
	a.n_wake = 0;
	a.defer = NULL;
	a.unrouted = 0;
	a.no.why[0] = '\0';
	err = admit(bus, b, msgs, &o, &a);
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
