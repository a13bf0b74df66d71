// SPDX-License-Identifier: MIT
/*
 * The stages that drain a subscription's queue into its handler.
 *
 * Concurrency 1: one consumer stage with no subscription at all. The queue
 * is already a bounded, back-pressured buffer, so the stage takes batches
 * from it directly and handles them in order; publishers wake it with a
 * gs_cast when it waits (see bus_queue.c), and it re-casts itself after a
 * quantum of batches so that it never holds its thread for long.
 *
 * Concurrency N: a feeder producer moves the queue, as far as demand
 * reaches, into a worker pool (pool.h) of N threads, which asks for one
 * more event as each handler completes. The pool holds up to 2N events, so
 * that a worker that finishes finds the next one there instead of waiting
 * for its ask to reach the feeder and come back.
 *
 * Either way, once the subscription is closing and its queue is empty the
 * stages finish; a stage that stops first drops what the queue still holds.
 */
#include <stdio.h>

#include "bus_internal.h"

/* Batches a direct stage handles before it lets its thread go. */
#define QUANTUM 4
/* Envelopes per gs_emit from a feeder. */
#define CHUNK 256

void gs__bus_sub_close(gs_bus_sub *s)
{
	atomic_store(&s->closing, true);
	/* If this fails the stage has finished already, and dropped what
	 * its queue held on the way out; unless there was no memory for the
	 * message. A stage waiting for its queue would then never learn of
	 * the close, and whoever waits for it would wait for ever: it is
	 * stopped instead (a stop needs no memory), which drops what the
	 * queue holds, counted. */
	if (gs_cast(s->driver, NULL) == GS_ENOMEM) {
		gs__bus_log(s->bus,
			    "subscription '%s': out of memory to tell it to "
			    "close: stopped, its queued events dropped",
			    s->name);
		(void)gs_stage_stop(s->driver, GS_OK);
	}
}

static bool closed_and_empty(const gs_bus_sub *s)
{
	return atomic_load(&s->closing) && !gs__bus_queue_depth(s);
}

static int direct_cast(void *state, gs_stage *stage, void *msg)
{
	(void)msg;
	gs_bus_sub *s = state;
	gs__bus_env *batch[GS_BUS_MAX_BATCH];
	for (unsigned round = 1;; round++) {
		size_t n = gs__bus_queue_take(s, batch, s->batch);
		/* Having just worked, look once more after whatever else waits
		 * for the thread, before saying it waits: under a stream of
		 * small publishes, that saves a wake-up per publish. */
		if (!n && round > 1 && gs_cast(stage, NULL) == GS_OK)
			return GS_OK;
		if (!n && !(n = gs__bus_queue_next(s, batch, s->batch)))
			return closed_and_empty(s) ? gs_stage_stop(stage, GS_OK)
						   : GS_OK;
		gs__bus_deliver_batch(s, batch, n);
		/* More may wait: after a quantum, come back once whatever
		 * else waits for the thread has run (if no message can be
		 * queued, carry on now). */
		if (round % QUANTUM == 0 && gs_cast(stage, NULL) == GS_OK)
			return GS_OK;
	}
}

/* Never called: the stage has no subscription (a consumer must have it). */
static int direct_events(void *state, gs_stage *stage, gs_sub *from,
			 void **events, size_t n)
{
	(void)state;
	(void)stage;
	(void)from;
	(void)events;
	(void)n;
	return GS_EINVAL;
}

/* The stage that drains the queue stops. On a close or an unsubscribe the
 * bus took the subscription off its routes first; a stage that stops
 * before that (it failed: out of memory, no thread) takes it off now, or
 * events would go on being accepted into a queue nobody drains, and a
 * drain or a publisher waiting for room would wait for ever. Either way
 * nothing reaches the queue any more, and what is left is dropped. */
static void drain_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	gs_bus_sub *s = state;
	bool was_routed = gs__bus_sub_unroute(s);
	gs__bus_drop_queue(s);
	if (was_routed) {
		gs__bus_log(s->bus,
			    "subscription '%s' ended: its stage stopped: %s",
			    s->name, gs_strerror(reason));
		gs__bus_sub_unref(s); /* the routes' */
	}
}

/* The pool behind a feeder stopped on an error: nothing will take what
 * the feeder emits, so the feeder stops too (and its terminate ends the
 * subscription). */
static int feeder_cancel(void *state, gs_stage *stage, gs_sub *sub,
			 gs_role role, int reason)
{
	(void)state;
	(void)stage;
	(void)sub;
	(void)role;
	return reason == GS_ECANCELED ? GS_OK : reason;
}

static gs_err direct_new(gs_bus_sub *s)
{
	static const gs_stage_ops ops = {
		.handle_events = direct_events,
		.handle_cast = direct_cast,
		.terminate = drain_terminate,
	};
	gs_err err = gs_stage_new(s->bus->p, GS_CONSUMER, &ops, s,
				  &(gs_stage_opts){ .name = s->name,
						    .blocking = s->blocking },
				  &s->stage);
	s->driver = s->stage;
	return err;
}

/* Emits what the queue holds, up to the demand owed; when it runs dry
 * the feeder finishes (closing) or waits to be woken. */
static int pump(gs_bus_sub *s, gs_stage *stage)
{
	gs__bus_env *chunk[CHUNK];
	while (s->owed) {
		size_t max = s->owed < CHUNK ? (size_t)s->owed : CHUNK;
		size_t n = gs__bus_queue_next(s, chunk, max);
		if (!n)
			break;
		s->owed -= n;
		if (gs_emit(stage, (void *const *)chunk, n))
			gs__bus_drop(s, chunk, n, NULL); /* stopping */
	}
	return closed_and_empty(s) ? gs_done(stage) : GS_OK;
}

static int feeder_demand(void *state, gs_stage *stage, size_t demand)
{
	gs_bus_sub *s = state;
	s->owed += demand;
	return pump(s, stage);
}

static int feeder_cast(void *state, gs_stage *stage, void *msg)
{
	(void)msg;
	return pump(state, stage);
}

/* Envelopes the engine could not deliver (the pipeline stops now, or the
 * pool went away) come back here. */
static void feeder_drop(void *event, void *arg)
{
	gs__bus_env *e = event;
	gs__bus_drop(arg, &e, 1, NULL);
}

/* On a pool thread, which may block. The outcome is counted here; the
 * pool sees GS_OK, so that pool_done can tell a delivery that ran from
 * one the pool cancelled. */
static int pool_handle(void *arg, void *event)
{
	gs_bus_sub *s = arg;
	gs__bus_ctx ctx;
	gs__bus_ctx_push(&ctx, s->bus, true);
	uint64_t t0 = gs__bus_now_ns();
	gs__bus_outcome o = gs__bus_deliver(s, &ctx, event);
	atomic_fetch_add(&s->handler_ns, gs__bus_now_ns() - t0);
	atomic_fetch_add(&s->delivered, 1);
	atomic_fetch_add(o == GS__BUS_FAILED ? &s->failed : &s->handled, 1);
	if (o == GS__BUS_SKIPPED)
		atomic_fetch_add(&s->skipped, 1);
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
		gs__bus_finish(s, &e, 1, NULL);
	else /* cancelled by a stop before it ran */
		gs__bus_drop(s, &e, 1, NULL);
	gs__bus_ctx_pop(&ctx);
}

static gs_err pooled_new(gs_bus_sub *s)
{
	static const gs_stage_ops ops = {
		.handle_demand = feeder_demand,
		.handle_cast = feeder_cast,
		.handle_cancel = feeder_cancel,
		.terminate = drain_terminate,
	};
	char name[GS__BUS_NAME_MAX];
	snprintf(name, sizeof name, "%.50s.queue", s->name);
	gs_err err = gs_stage_new(s->bus->p, GS_PRODUCER, &ops, s,
				  &(gs_stage_opts){ .name = name,
						    .buffer_size = GS_UNBOUNDED,
						    .event_free = feeder_drop,
						    .event_free_arg = s },
				  &s->driver);
	if (!err)
		err = gs_pool_new(
			s->bus->p,
			&(gs_pool_opts){ .name = s->name,
					 .workers = s->concurrency,
					 .max_demand = 2 * s->concurrency,
					 .min_demand = GS_MIN_DEMAND_ZERO,
					 .handler = pool_handle,
					 .on_done = pool_done,
					 .arg = s },
			&s->pool);
	s->stage = gs_pool_stage(s->pool);
	const gs_sub_opts sub = { .max_demand = 2 * s->concurrency };
	/* Waiting for both ends means the pool's threads exist when
	 * gs_bus_subscribe returns, so that the first events published do
	 * not wait for them to be made; where this thread may not wait,
	 * they come up in the background. */
	if (!err)
		err = gs_subscribe_sync(s->stage, s->driver, &sub, NULL, -1);
	if (err == GS_ETHREAD)
		err = gs_subscribe(s->stage, s->driver, &sub, NULL);
	return err;
}

gs_err gs__bus_drain_new(gs_bus_sub *s)
{
	gs_err err = s->concurrency > 1 ? pooled_new(s) : direct_new(s);
	if (err) {
		/* Whatever was made stops; its state, s, lives until those
		 * stages are freed. */
		if (s->driver)
			(void)gs_stage_stop(s->driver, GS_OK);
		if (s->stage && s->stage != s->driver)
			(void)gs_stage_stop(s->stage, GS_OK);
	}
	return err;
}
