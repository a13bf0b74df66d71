// SPDX-License-Identifier: MIT
/*
 * The worker pool (GenStage's ConsumerSupervisor), on the public API only:
 * a consumer stage whose handle_events only queues what arrives, and a set
 * of threads of its own that run the handler on each queued event. Every
 * subscription is manual: the stage asks max_demand at first, and asks
 * again as handlers complete, by min_demand at a time, so at most
 * max_demand events per producer are queued or running. The asks are made
 * in the stage's own callbacks (a worker that completes enough events
 * wakes the stage with a gs_cast), because only there is a subscription
 * the library passed known to be alive: it may end, and be freed, at any
 * moment in between. One lock guards the queue and the counters; it is
 * taken once per batch on the stage's side and once per event (which a
 * handler worth a thread of its own dwarfs) on the workers' side.
 *
 * Two things the public API cannot say. The pool's threads are joined when
 * its pipeline stops, so they mark themselves (gs__joined_by, internal.h)
 * and that pipeline's stop, wait and free refuse them instead of waiting
 * for themselves for ever. And terminate's reason is GS_OK both for a drain
 * and for a stop; the stage's stop_claimed tells them apart when no
 * subscription is left to say it.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "genstage/genstage.h"
#include "genstage/pool.h"
#include "internal.h"

#define GS_POOL_API __attribute__((visibility("default")))

/* One subscription: what it has in flight and how many completions wait
 * to be asked for again. Freed once it has ended and nothing of it is left
 * in flight. */
typedef struct input {
	gs_sub *sub;
	size_t inflight;  /* received, not yet done */
	size_t completed; /* done since the last ask */
	bool ended;
	struct input *next;
} input;

typedef struct item {
	void *event;
	input *from;
} item;

struct gs_pool {
	gs_pool_handler_fn handler;
	gs_pool_done_fn on_done;
	void *arg;
	size_t workers, max_demand;
	size_t ask_every; /* completions per ask: min_demand, at least 1 */
	bool ask_posted;  /* lock: a gs_cast to ask again is on its way */
	gs_stage *stage;
	gs_pipeline *p;
	/* Written by init before it starts the threads, which read it. */
	char thread_name[16];

	pthread_mutex_t lock;
	pthread_cond_t work; /* queue non-empty, or quit */
	/* lock: the queue, a ring that grows to what demand allows */
	item *q;
	size_t qcap, qhead, qcount;
	input *inputs;
	size_t live;    /* subscriptions attached and not ended */
	size_t idle;    /* workers waiting on `work` */
	size_t running; /* handlers running */
	bool quit;      /* workers leave once the queue is empty */
	pthread_t *threads;
	size_t started;
	/* lock: counters */
	uint64_t received, handled, failed, cancelled, peak;
};

static void refuse(const char *what)
{
	fprintf(stderr, "genstage: pool: %s\n", what);
}

static input *find_input(gs_pool *pool, const gs_sub *sub)
{
	input *in = pool->inputs;
	while (in && in->sub != sub)
		in = in->next;
	return in;
}

/* Under the lock: unlinks and frees `in` once it can see no more use. */
static void maybe_forget(gs_pool *pool, input *in)
{
	if (!in->ended || in->inflight)
		return;
	input **at = &pool->inputs;
	while (*at != in)
		at = &(*at)->next;
	*at = in->next;
	free(in);
}

/* Under the lock: one event of `in` is done. Returns true when the stage
 * should be woken to ask again. */
static bool complete(gs_pool *pool, input *in)
{
	in->inflight--;
	bool ask = !in->ended && ++in->completed >= pool->ask_every &&
		   !pool->ask_posted;
	if (ask)
		pool->ask_posted = true;
	maybe_forget(pool, in);
	return ask;
}

/* Wakes the stage to ask for what completed. A cast that fails means the
 * stage is stopping (nothing to ask), unless there was no memory for the
 * message: then the ask must not be lost, or the producers would never
 * send again and the pool would stall with events queued upstream. A
 * worker may block, so it tries again, a little later each time, until the
 * cast gets through or the pool quits. */
static void ask_again(gs_pool *pool)
{
	long ms = 1;
	while (gs_cast(pool->stage, NULL) == GS_ENOMEM) {
		pthread_mutex_lock(&pool->lock);
		bool quit = pool->quit;
		pthread_mutex_unlock(&pool->lock);
		if (quit)
			return;
		struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };
		nanosleep(&ts, NULL);
		if (ms < 100)
			ms *= 2;
	}
}

static void *worker_main(void *arg)
{
	gs_pool *pool = arg;
	pthread_setname_np(pthread_self(), pool->thread_name);
	gs__joined_by = pool->p;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (!pool->qcount && !pool->quit) {
			pool->idle++;
			pthread_cond_wait(&pool->work, &pool->lock);
			pool->idle--;
		}
		if (!pool->qcount)
			break; /* quit, and nothing left to run */
		item it = pool->q[pool->qhead];
		pool->qhead = (pool->qhead + 1) % pool->qcap;
		pool->qcount--;
		if (++pool->running > pool->peak)
			pool->peak = pool->running;
		pthread_mutex_unlock(&pool->lock);

		int r = pool->handler(pool->arg, it.event);
		if (pool->on_done)
			pool->on_done(pool->arg, it.event, r);

		pthread_mutex_lock(&pool->lock);
		pool->running--;
		if (r)
			pool->failed++;
		else
			pool->handled++;
		if (complete(pool, it.from)) {
			/* Outside the lock: the stage may run at once. */
			pthread_mutex_unlock(&pool->lock);
			ask_again(pool);
			pthread_mutex_lock(&pool->lock);
		}
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Tells the workers to leave once the queue is empty, and joins them. */
static void stop_workers(gs_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->quit = true;
	pthread_cond_broadcast(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	for (size_t i = 0; i < pool->started; i++)
		pthread_join(pool->threads[i], NULL);
	pool->started = 0;
}

static int pool_init(void *state, gs_stage *stage)
{
	gs_pool *pool = state;
	/* A new thread takes its creator's name (a worker's or the pool
	 * stage's own): mark the pool's as its own. `stage` here, since
	 * pool->stage may not be stored yet when a running pipeline starts
	 * this stage at once. */
	snprintf(pool->thread_name, sizeof pool->thread_name, "%.12s-p",
		 gs_stage_name(stage));
	for (; pool->started < pool->workers; pool->started++)
		if (pthread_create(&pool->threads[pool->started], NULL,
				   worker_main, pool)) {
			stop_workers(pool);
			return GS_ESPAWN;
		}
	return GS_OK;
}

static int pool_subscribe(void *state, gs_stage *stage, gs_sub *sub,
			  gs_role role)
{
	(void)stage;
	gs_pool *pool = state;
	if (role != GS_ROLE_CONSUMER)
		return GS_OK;
	input *in = calloc(1, sizeof *in);
	if (!in)
		return GS_ENOMEM;
	in->sub = sub;
	gs_err err = gs_sub_manual(sub);
	if (!err)
		err = gs_ask(sub, pool->max_demand);
	if (err) {
		free(in);
		return err;
	}
	pthread_mutex_lock(&pool->lock);
	in->next = pool->inputs;
	pool->inputs = in;
	pool->live++;
	pthread_mutex_unlock(&pool->lock);
	return GS_OK;
}

/* Under the lock: room for n more queued items. */
static bool reserve(gs_pool *pool, size_t n)
{
	if (pool->qcount + n <= pool->qcap)
		return true;
	size_t cap = pool->qcap ? pool->qcap : 64;
	while (cap < pool->qcount + n)
		cap *= 2;
	item *q = malloc(cap * sizeof *q);
	if (!q)
		return false;
	for (size_t i = 0; i < pool->qcount; i++)
		q[i] = pool->q[(pool->qhead + i) % pool->qcap];
	free(pool->q);
	pool->q = q;
	pool->qcap = cap;
	pool->qhead = 0;
	return true;
}

static int pool_events(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	(void)stage;
	gs_pool *pool = state;
	pthread_mutex_lock(&pool->lock);
	input *in = find_input(pool, from);
	if (!in || !reserve(pool, n)) {
		pthread_mutex_unlock(&pool->lock);
		/* Ours now, and nowhere to put them: handed back, counted. */
		for (size_t i = 0; pool->on_done && i < n; i++)
			pool->on_done(pool->arg, events[i], GS_ENOMEM);
		pthread_mutex_lock(&pool->lock);
		pool->received += n;
		pool->cancelled += n;
		pthread_mutex_unlock(&pool->lock);
		return GS_ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		pool->q[(pool->qhead + pool->qcount + i) % pool->qcap] = (item){
			events[i], in
		};
	pool->qcount += n;
	pool->received += n;
	in->inflight += n;
	if (pool->idle >= n)
		for (size_t i = 0; i < n; i++)
			pthread_cond_signal(&pool->work);
	else if (pool->idle)
		pthread_cond_broadcast(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	return GS_OK;
}

/* Woken by a worker: asks for what completed, on every subscription still
 * attached (its pointer is valid here, in the stage's own callback). */
static int pool_ask(void *state, gs_stage *stage, void *msg)
{
	(void)stage;
	(void)msg;
	gs_pool *pool = state;
	pthread_mutex_lock(&pool->lock);
	pool->ask_posted = false;
	gs_err err = GS_OK;
	for (input *in = pool->inputs; in && !err; in = in->next)
		if (!in->ended && in->completed >= pool->ask_every) {
			err = gs_ask(in->sub, in->completed);
			in->completed = 0;
		}
	pthread_mutex_unlock(&pool->lock);
	return err;
}

static int pool_cancel(void *state, gs_stage *stage, gs_sub *sub, gs_role role,
		       int reason)
{
	(void)stage;
	(void)reason;
	gs_pool *pool = state;
	if (role != GS_ROLE_CONSUMER)
		return GS_OK;
	pthread_mutex_lock(&pool->lock);
	input *in = find_input(pool, sub);
	if (in && !in->ended) {
		in->ended = true;
		pool->live--;
		maybe_forget(pool, in);
	}
	pthread_mutex_unlock(&pool->lock);
	return GS_OK;
}

/*
 * The stage stops. When every subscription ended normally (its producers
 * finished, or a drain), the workers run what is queued; otherwise (a stop,
 * a failure) what is queued is cancelled. Either way this waits for the
 * handlers still running, which is why the stage is marked blocking.
 */
static void pool_terminate(void *state, gs_stage *stage, int reason)
{
	gs_pool *pool = state;
	/* A stop (gs_stage_stop, GS_STOP_NOW, a free) after every
	 * subscription had ended, cancelled or failed temporarily: no live
	 * one is left to show it, and a drain never claims a stop. */
	bool stopped = atomic_load_explicit(&stage->stop_claimed,
					    memory_order_relaxed);
	pthread_mutex_lock(&pool->lock);
	/* The queue is taken whole, so that the workers find it empty: it
	 * needs no memory (a copy did, and without it the workers ran what
	 * a stop had to cancel). */
	item *cancel = NULL;
	size_t n = 0, head = 0, cap = 0;
	if ((reason != GS_OK || pool->live || stopped) && pool->qcount) {
		cancel = pool->q;
		n = pool->qcount;
		head = pool->qhead;
		cap = pool->qcap;
		pool->q = NULL;
		pool->qcap = pool->qhead = pool->qcount = 0;
		pool->cancelled += n;
	}
	pthread_mutex_unlock(&pool->lock);
	for (size_t i = 0; i < n; i++) {
		item *it = &cancel[(head + i) % cap];
		if (pool->on_done)
			pool->on_done(pool->arg, it->event, GS_ECANCELED);
		pthread_mutex_lock(&pool->lock);
		it->from->ended = true; /* no asks while stopping */
		(void)complete(pool, it->from);
		pthread_mutex_unlock(&pool->lock);
	}
	free(cancel);
	stop_workers(pool);
}

static const gs_stage_ops pool_ops = {
	.init = pool_init,
	.handle_subscribe = pool_subscribe,
	.handle_events = pool_events,
	.handle_cast = pool_ask,
	.handle_cancel = pool_cancel,
	.terminate = pool_terminate,
};

static gs_err check_opts(const gs_pool_opts *o)
{
	if (o->version > GS_POOL_OPTS_VERSION) {
		refuse("gs_pool_opts.version is newer than this library");
		return GS_EVERSION;
	}
	if (!o->handler) {
		refuse("no handler");
		return GS_EINVAL;
	}
	if (o->workers > GS_POOL_MAX_WORKERS) {
		refuse("more workers than GS_POOL_MAX_WORKERS");
		return GS_EINVAL;
	}
	if (o->max_demand > GS_MAX_DEMAND) {
		refuse("max_demand above GS_MAX_DEMAND");
		return GS_EINVAL;
	}
	size_t max = o->max_demand ? o->max_demand : GS_POOL_DEFAULT_MAX_DEMAND;
	if (o->min_demand != GS_MIN_DEMAND_ZERO && o->min_demand >= max) {
		refuse("min_demand must be less than max_demand");
		return GS_EDEMAND;
	}
	return GS_OK;
}

static void pool_destroy(gs_pool *pool)
{
	for (input *in = pool->inputs, *next; in; in = next) {
		next = in->next;
		free(in);
	}
	pthread_cond_destroy(&pool->work);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool->q);
	free(pool);
}

GS_POOL_API gs_err gs_pool_new(gs_pipeline *p, const gs_pool_opts *opts,
			       gs_pool **out)
{
	if (!p || !opts || !out) {
		refuse("NULL pipeline, options or out-parameter");
		return GS_EINVAL;
	}
	gs_err err = check_opts(opts);
	if (err)
		return err;
	gs_pool *pool = calloc(1, sizeof *pool);
	if (!pool)
		return GS_ENOMEM;
	pool->handler = opts->handler;
	pool->p = p;
	pool->on_done = opts->on_done;
	pool->arg = opts->arg;
	pool->max_demand = opts->max_demand ? opts->max_demand
					    : GS_POOL_DEFAULT_MAX_DEMAND;
	size_t min = opts->min_demand == GS_MIN_DEMAND_ZERO ? 0
		     : opts->min_demand                     ? opts->min_demand
					: pool->max_demand / 2;
	pool->ask_every = min ? min : 1;
	pool->workers = opts->workers ? opts->workers
			: pool->max_demand < GS_POOL_DEFAULT_WORKERS_CAP
				? pool->max_demand
				: GS_POOL_DEFAULT_WORKERS_CAP;
	pool->threads = calloc(pool->workers, sizeof *pool->threads);
	if (!pool->threads || pthread_mutex_init(&pool->lock, NULL)) {
		free(pool->threads);
		free(pool);
		return GS_ENOMEM;
	}
	if (pthread_cond_init(&pool->work, NULL)) {
		pthread_mutex_destroy(&pool->lock);
		free(pool->threads);
		free(pool);
		return GS_ENOMEM;
	}
	err = gs_stage_new(p, GS_CONSUMER, &pool_ops, pool,
			   &(gs_stage_opts){ .version = GS_STAGE_OPTS_VERSION,
					     .name = opts->name ? opts->name
								: "pool",
					     .blocking = true,
					     /* until its handler is done */
					     .keeps_events = true },
			   &pool->stage);
	if (err) {
		pool_destroy(pool);
		return err;
	}
	*out = pool;
	return GS_OK;
}

GS_POOL_API gs_stage *gs_pool_stage(const gs_pool *pool)
{
	return pool ? pool->stage : NULL;
}

GS_POOL_API gs_err gs_pool_stats_get(gs_pool *pool, gs_pool_stats *out)
{
	if (!pool || !out)
		return GS_EINVAL;
	pthread_mutex_lock(&pool->lock);
	*out = (gs_pool_stats){
		.received = pool->received,
		.handled = pool->handled,
		.failed = pool->failed,
		.cancelled = pool->cancelled,
		.running = pool->running,
		.queued = pool->qcount,
		.peak_running = pool->peak,
	};
	pthread_mutex_unlock(&pool->lock);
	return GS_OK;
}

GS_POOL_API void gs_pool_free(gs_pool *pool)
{
	if (pool)
		pool_destroy(pool);
}
