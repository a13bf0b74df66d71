// SPDX-License-Identifier: MIT
/*
 * What happens to each delivery: the handler with its retries (and their
 * backoff) and dead letter, the counters, and the end of it, handled or
 * dropped: its envelope released (one atomic operation per run of
 * envelopes from one publish), the subscription's finished count moved,
 * and whoever waits for that count woken once it is reached.
 */
#include <time.h>

#include "bus_internal.h"

/* The longest wait between retries. */
#define BACKOFF_MAX_MS 60000u

static void add(_Atomic uint64_t *c, uint64_t n)
{
	if (n)
		atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void gs__bus_finish(gs_bus_sub *s, gs__bus_env *const *envs, size_t n,
		    gs__bus_block **defer)
{
	gs__bus_release_envs(envs, n, defer);
	/* seq_cst, then wake_at: see gs__bus_broadcast. */
	uint64_t done = atomic_fetch_add(&s->finished, n) + n;
	uint64_t at = atomic_load(&s->wake_at);
	if ((at && done >= at && atomic_exchange(&s->wake_at, 0)) ||
	    atomic_load(&s->bus->waiters))
		gs__bus_broadcast(s->bus, defer != NULL);
}

void gs__bus_drop(gs_bus_sub *s, gs__bus_env *const *envs, size_t n,
		  gs__bus_block **defer)
{
	for (size_t i = 0; i < n; i++) {
		atomic_fetch_add_explicit(&envs[i]->dropped, 1,
					  memory_order_relaxed);
		atomic_store_explicit(&envs[i]->blk->lossy, true,
				      memory_order_relaxed);
		add(&envs[i]->topic->dropped, 1);
		gs__bus_trace(s->bus, GS_BUS_TRACE_DROP, envs[i], s->name);
	}
	add(&s->dropped, n);
	gs__bus_finish(s, envs, n, defer);
}

void gs__bus_drop_queue(gs_bus_sub *s)
{
	gs__bus_env *chunk[64];
	size_t n;
	while ((n = gs__bus_queue_take(s, chunk, 64)))
		gs__bus_drop(s, chunk, n, NULL);
}

void gs__bus_cut(gs_bus_sub *s)
{
	atomic_store(&s->cut, true);
	gs__bus_drop_queue(s);
}

static bool is_cut(const gs_bus_sub *s)
{
	return atomic_load_explicit(&s->cut, memory_order_relaxed);
}

/* A retry's backoff, in slices short enough that a cut ends it soon. */
static void backoff(gs_bus_sub *s, unsigned ms)
{
	for (unsigned left = ms; left && !is_cut(s);) {
		unsigned slice = left < 10 ? left : 10;
		struct timespec ts = { 0, (long)slice * 1000000 };
		while (nanosleep(&ts, &ts))
			continue;
		left -= slice;
	}
}

static bool is_error(int r)
{
	return r != GS_BUS_DONE && r != GS_BUS_SKIP;
}

/* What follows a first attempt that did not return GS_BUS_DONE: the
 * retries, then skip or failure, counted on the envelope and its topic. */
static gs__bus_outcome settle(gs_bus_sub *s, gs__bus_env *e, int r)
{
	gs_bus *bus = s->bus;
	for (unsigned a = 1; is_error(r) && a <= s->max_retries && !is_cut(s);
	     a++) {
		if (s->backoff_ms) {
			unsigned shift = a - 1 < 16 ? a - 1 : 16;
			uint64_t ms = (uint64_t)s->backoff_ms << shift;
			backoff(s, ms < BACKOFF_MAX_MS ? (unsigned)ms
						       : BACKOFF_MAX_MS);
			if (is_cut(s))
				break;
		}
		/* Counted and traced as it runs: a cut during the backoff
		 * leaves nothing that did not happen. */
		add(&s->retried, 1);
		add(&e->topic->retried, 1);
		gs__bus_trace(bus, GS_BUS_TRACE_RETRY, e, s->name);
		r = s->handler(s->arg, &e->pub);
	}
	if (r == GS_BUS_DONE)
		return GS__BUS_HANDLED;
	if (r == GS_BUS_SKIP) {
		atomic_fetch_add_explicit(&e->skipped, 1, memory_order_relaxed);
		return GS__BUS_SKIPPED;
	}
	if (s->dead_letter)
		s->dead_letter(s->arg, &e->pub, r);
	gs__bus_trace(bus, GS_BUS_TRACE_FAIL, e, s->name);
	atomic_fetch_add_explicit(&e->failed, 1, memory_order_relaxed);
	atomic_store_explicit(&e->blk->lossy, true, memory_order_relaxed);
	add(&e->topic->failed, 1);
	return GS__BUS_FAILED;
}

gs__bus_outcome gs__bus_deliver(gs_bus_sub *s, gs__bus_ctx *ctx, gs__bus_env *e)
{
	gs__bus_trace(s->bus, GS_BUS_TRACE_DELIVER, e, s->name);
	ctx->env = e;
	int r = s->handler(s->arg, &e->pub);
	gs__bus_outcome out = r == GS_BUS_DONE ? GS__BUS_HANDLED
					       : settle(s, e, r);
	ctx->env = NULL;
	return out;
}

/* Counts and finishes envs[from, to) of a batch: handled but for `failed`
 * of them (skips are counted as they happen). */
static void settle_run(gs_bus_sub *s, gs__bus_env *const *envs, size_t from,
		       size_t to, uint64_t failed)
{
	add(&s->delivered, to - from);
	add(&s->handled, to - from - failed);
	add(&s->failed, failed);
	gs__bus_finish(s, envs + from, to - from, NULL);
}

/* The common case costs the handler's call and a test per delivery: the
 * trace hook is looked up once per batch, and only a handler that did not
 * return GS_BUS_DONE goes the long way (settle). Deliveries are counted and
 * finished in runs that double (1, 2, 4 ... events): a fast handler's batch
 * costs a few atomic operations, and a slow handler's first events are
 * completed (on_complete, free_fn) without waiting for the whole batch.
 * A cut (gs__bus_cut) drops what is not begun. */
void gs__bus_deliver_batch(gs_bus_sub *s, gs__bus_env *const *envs, size_t n)
{
	gs__bus_ctx ctx;
	gs__bus_ctx_push(&ctx, s->bus, s->blocking);
	gs_bus_handler_fn handler = s->handler;
	void *arg = s->arg;
	bool traced = s->bus->o.trace != NULL;
	uint64_t t0 = gs__bus_now_ns();
	uint64_t skipped = 0, failed = 0;
	size_t done = 0, i = 0, next_run = 1;
	/* The envelopes were written on the publisher's core: their lines
	 * are asked for together rather than one handler at a time, and
	 * each block's count (which gs__bus_finish changes) as soon as the
	 * envelope says where it is. */
	for (size_t k = 0; k < n; k++)
		__builtin_prefetch(envs[k]);
	for (; i < n && !is_cut(s); i++) {
		gs__bus_env *e = envs[i];
		gs__bus_prefetch_write(&e->blk->pending);
		if (traced)
			gs__bus_trace(s->bus, GS_BUS_TRACE_DELIVER, e, s->name);
		ctx.env = e;
		int r = handler(arg, &e->pub);
		if (r != GS_BUS_DONE) {
			gs__bus_outcome o = settle(s, e, r);
			skipped += o == GS__BUS_SKIPPED;
			failed += o == GS__BUS_FAILED;
		}
		/* Before the run is settled, which may complete and free e,
		 * and before the next DELIVER report, which is not inside
		 * its handler. */
		ctx.env = NULL;
		if (i + 1 == next_run && i + 1 < n) {
			settle_run(s, envs, done, i + 1, failed);
			done = i + 1;
			failed = 0;
			next_run *= 2;
		}
	}
	add(&s->handler_ns, gs__bus_now_ns() - t0);
	add(&s->skipped, skipped);
	if (i > done)
		settle_run(s, envs, done, i, failed);
	if (i < n)
		gs__bus_drop(s, envs + i, n - i, NULL);
	gs__bus_ctx_pop(&ctx);
}
