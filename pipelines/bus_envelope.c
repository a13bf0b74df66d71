// SPDX-License-Identifier: MIT
/*
 * Envelopes and their completion. The envelopes of one publish call live in
 * one block with their source string, and the block is the unit of reference
 * counting: a subscription releases a run of consecutive deliveries of one
 * block with one atomic operation, so fan-out costs no atomic per delivery.
 * When the last delivery is released the block completes: each envelope's
 * summary, on_complete and free function, its topic's counters (summed per
 * topic over the block), then one free.
 */
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"

static gs_err side_init(gs__bus_pool_side *side)
{
	/* Held for a few pointer moves: a thread that finds it taken spins
	 * a little before it sleeps, rather than paying two system calls
	 * and a wake-up for a lock that is free again in nanoseconds. */
	pthread_mutexattr_t a;
	if (pthread_mutexattr_init(&a))
		return GS_ENOMEM;
#ifdef __GLIBC__
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
	int err = pthread_mutex_init(&side->lock, &a);
	pthread_mutexattr_destroy(&a);
	return err ? GS_ENOMEM : GS_OK;
}

static void side_fini(gs__bus_pool_side *side)
{
	for (unsigned c = 0; c < GS__BUS_CLASSES; c++)
		while (side->list[c]) {
			gs__bus_block *b = side->list[c];
			side->list[c] = b->next;
			free(b);
		}
	pthread_mutex_destroy(&side->lock);
}

gs_err gs__bus_pool_init(gs__bus_pool *pool)
{
	*pool = (gs__bus_pool){ 0 };
	if (side_init(&pool->free))
		return GS_ENOMEM;
	if (side_init(&pool->given)) {
		pthread_mutex_destroy(&pool->free.lock);
		return GS_ENOMEM;
	}
	return GS_OK;
}

void gs__bus_pool_fini(gs__bus_pool *pool)
{
	side_fini(&pool->free);
	side_fini(&pool->given);
}

static size_t class_size(unsigned c)
{
	return (size_t)GS__BUS_POOLED_MIN << c;
}

gs__bus_block *gs__bus_block_new(gs_bus *bus, size_t n, size_t strings,
				 char **strings_out)
{
	size_t sums = n < GS__BUS_SUMS ? n : GS__BUS_SUMS;
	size_t head = sizeof(gs__bus_block) + n * sizeof(gs__bus_env) +
		      sums * sizeof(gs__bus_sum);
	unsigned c = 0;
	while (c < GS__BUS_CLASSES && class_size(c) < head + strings)
		c++;
	gs__bus_block *b = NULL;
	if (c < GS__BUS_CLASSES) {
		gs__bus_pool_side *f = &bus->pool.free, *g = &bus->pool.given;
		pthread_mutex_lock(&f->lock);
		if (!f->list[c]) {
			pthread_mutex_lock(&g->lock);
			f->list[c] = g->list[c];
			f->count[c] = g->count[c];
			g->list[c] = NULL;
			g->count[c] = 0;
			pthread_mutex_unlock(&g->lock);
		}
		b = f->list[c];
		if (b) {
			f->list[c] = b->next;
			f->count[c]--;
		}
		gs__bus_block *after = f->list[c];
		pthread_mutex_unlock(&f->lock);
		/* The block the next call gets was last written on the core
		 * that completed it: its lines are asked for now, so that
		 * the next publish fills them without a transfer for its
		 * barriers to wait on (up to 1 KiB: a publish of a few
		 * envelopes). */
		for (size_t k = 0; after && k < class_size(c) && k < 1024;
		     k += GS__BUS_LINE)
			gs__bus_prefetch_write((char *)after + k);
	}
	if (!b)
		b = malloc(c < GS__BUS_CLASSES ? class_size(c)
					       : head + strings);
	if (!b)
		return NULL;
	/* The envelopes are filled by the publisher, field by field. */
	memset(b, 0, sizeof *b);
	GS__ATOMIC(b->pending);
	GS__ATOMIC(b->lossy);
	b->bus = bus;
	b->n = n;
	b->size_class = c;
	b->sums = (gs__bus_sum *)&b->env[n];
	b->sums_cap = sums;
	*strings_out = (char *)b + head;
	return b;
}

void gs__bus_block_free(gs__bus_block *b)
{
	unsigned c = b->size_class;
	free(b->copies); /* gs__bus_block_new clears the header */
	gs__bus_pool_side *g = &b->bus->pool.given;
	if (c < GS__BUS_CLASSES) {
		pthread_mutex_lock(&g->lock);
		bool keep = g->count[c] <
			    GS__BUS_POOL_BYTES / 2 / class_size(c);
		if (keep) {
			b->next = g->list[c];
			g->list[c] = b;
			g->count[c]++;
		}
		pthread_mutex_unlock(&g->lock);
		if (keep)
			return;
	}
	free(b);
}

/* Per-topic sums over a block, so that a block of many envelopes on few
 * topics touches each topic's counters once. Direct-mapped: a collision
 * just flushes the slot. Slots are valid where `used` says, so a block of
 * one envelope clears nothing. */
#define SUMS 32

typedef struct topic_sum {
	gs__bus_topic *t;
	uint64_t completed, handled;
} topic_sum;

typedef struct topic_sums {
	uint32_t used;
	topic_sum s[SUMS];
} topic_sums;

static void flush(const topic_sum *s)
{
	atomic_fetch_add_explicit(&s->t->completed, s->completed,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&s->t->handled, s->handled,
				  memory_order_relaxed);
}

static void add_sum(topic_sums *sums, gs__bus_topic *t, uint64_t handled)
{
	size_t i = ((uintptr_t)t / GS__BUS_LINE) % SUMS;
	topic_sum *s = &sums->s[i];
	if ((sums->used & (1u << i)) && s->t == t) {
		s->completed++;
		s->handled += handled;
		return;
	}
	if (sums->used & (1u << i))
		flush(s);
	sums->used |= 1u << i;
	*s = (topic_sum){ t, 1, handled };
}

static void flush_all(const topic_sums *sums)
{
	for (size_t i = 0; i < SUMS; i++)
		if (sums->used & (1u << i))
			flush(&sums->s[i]);
}

/* Counts a block's completion on its topics, calls the hooks for each
 * envelope, and frees the payloads and the block. Without hooks, and with
 * every delivery handled, that reads the publisher's sums only. */
static void complete(gs__bus_block *b)
{
	gs_bus *bus = b->bus;
	const gs_bus_opts *o = &bus->o;
	topic_sums sums;
	sums.used = 0;
	bool hooks = o->on_complete || o->trace || b->free_fn;
	bool per_env = !b->n_sums ||
		       atomic_load_explicit(&b->lossy, memory_order_relaxed);
	/* Hooks may block where the thread that finished the block may. */
	const gs__bus_ctx *now = gs__bus_ctx_now();
	gs__bus_ctx ctx;
	if (hooks)
		gs__bus_ctx_push(&ctx, bus, now ? now->may_block : true);
	for (size_t i = 0; (hooks || per_env) && i < b->n; i++) {
		gs__bus_env *e = &b->env[i];
		gs_bus_summary sum = {
			.matched = e->matched,
			.skipped = atomic_load_explicit(&e->skipped,
							memory_order_relaxed),
			.dropped = atomic_load_explicit(&e->dropped,
							memory_order_relaxed),
			.failed = atomic_load_explicit(&e->failed,
						       memory_order_relaxed),
		};
		sum.handled = sum.matched - sum.dropped - sum.failed;
		if (per_env)
			add_sum(&sums, e->topic, sum.handled);
		if (!hooks)
			continue;
		gs__bus_trace(bus, GS_BUS_TRACE_COMPLETE, e, NULL);
		if (o->on_complete)
			o->on_complete(o->complete_arg, &e->pub, &sum);
		if (b->free_fn)
			b->free_fn(e->pub.payload);
	}
	if (hooks)
		gs__bus_ctx_pop(&ctx);
	if (per_env)
		flush_all(&sums);
	for (size_t i = 0; !per_env && i < b->n_sums; i++)
		flush(&(topic_sum){ b->sums[i].t, b->sums[i].events,
				    b->sums[i].deliveries });
	size_t n = b->n;
	gs__bus_block_free(b);
	/* After the hooks: a closer waiting for this sees them done. */
	atomic_fetch_add(&bus->completed, n);
	if (atomic_load(&bus->waiters))
		gs__bus_broadcast(bus, false);
}

void gs__bus_release(gs__bus_block *b, size_t k, gs__bus_block **defer)
{
	/* acq_rel: whoever completes the block sees every other releaser's
	 * writes to its envelopes (the rare-outcome counts). */
	GS__HB(&b->pending);
	if (atomic_fetch_sub_explicit(&b->pending, k, memory_order_acq_rel) !=
	    k)
		return;
	GS__HA(&b->pending);
	if (defer) {
		b->next = *defer;
		*defer = b;
	} else {
		complete(b);
	}
}

void gs__bus_release_envs(gs__bus_env *const *envs, size_t n,
			  gs__bus_block **defer)
{
	size_t i = 0;
	while (i < n) {
		gs__bus_block *b = envs[i]->blk;
		size_t j = i + 1;
		while (j < n && envs[j]->blk == b)
			j++;
		gs__bus_release(b, j - i, defer);
		i = j;
	}
}

void gs__bus_complete_list(gs__bus_block *list)
{
	while (list) {
		gs__bus_block *next = list->next;
		complete(list);
		list = next;
	}
}
