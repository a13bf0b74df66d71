// SPDX-License-Identifier: MIT
/*
 * Batchers and batch processors. A batcher (one per configured batcher)
 * collects successful messages into batches of one batch key (and one
 * batch processor, with partition_by), and hands a batch on when it is
 * full, when batch_timeout has passed since its first message, or when
 * the batcher's inputs have all ended (a drain): then every partial batch
 * is flushed. Batch processors call handle_batch and acknowledge.
 */
#include <stdlib.h>

#include "broadway_internal.h"

/* What travels from a batcher to its batch processors. */
typedef struct batch {
	gs_batch_info info;
	uint64_t id; /* matches the batch's timer */
	gs_message *msgs[];
} batch;

typedef struct timer_msg {
	uint64_t id;
} timer_msg;

typedef struct batcher {
	gs_broadway *bw;
	const gs__bw_batcher *conf;
	size_t index;
	size_t inputs; /* subscriptions to processors still open */
	uint64_t next_id;
	/* Batches being filled: few keys at once is the common case, so a
	 * plain array searched from the newest. */
	batch **open;
	size_t n_open, cap_open;
} batcher;

static void drop_batch(gs_broadway *bw, batch *b)
{
	for (size_t i = 0; i < b->info.size; i++)
		gs__bw_drop_message(b->msgs[i], bw);
	free(b);
}

static void drop_batch_event(void *event, void *arg)
{
	drop_batch(arg, event);
}

static void close_at(batcher *bt, gs_stage *stage, size_t i,
		     gs_batch_trigger trigger)
{
	batch *b = bt->open[i];
	bt->open[i] = bt->open[--bt->n_open];
	b->info.trigger = trigger;
	if (gs_emit(stage, (void **)&b, 1))
		drop_batch(bt->bw, b);
}

/* The open batch for (key, partition), opened (with its timer) if
 * missing; NULL if no memory. */
static batch *open_for(batcher *bt, gs_stage *stage, uint64_t key, size_t part)
{
	for (size_t i = bt->n_open; i-- > 0;) {
		batch *b = bt->open[i];
		if (b->info.batch_key == key && b->info.partition == part)
			return b;
	}
	if (bt->n_open == bt->cap_open) {
		size_t cap = bt->cap_open ? 2 * bt->cap_open : 8;
		batch **v = realloc(bt->open, cap * sizeof *v);
		if (!v)
			return NULL;
		bt->open = v;
		bt->cap_open = cap;
	}
	const gs_broadway_batcher_opts *o = &bt->conf->o;
	batch *b = malloc(sizeof *b + o->batch_size * sizeof b->msgs[0]);
	timer_msg *t = malloc(sizeof *t);
	if (!b || !t) {
		free(b);
		free(t);
		return NULL;
	}
	b->info = (gs_batch_info){ .batcher = bt->index,
				   .name = bt->conf->name,
				   .batch_key = key,
				   .partition = part };
	b->id = t->id = bt->next_id++;
	if (gs_send_after(stage, o->batch_timeout, t))
		free(t); /* stopping: the batch goes out as a flush */
	bt->open[bt->n_open++] = b;
	return b;
}

static int on_events(void *state, gs_stage *stage, gs_sub *from, void **ev,
		     size_t n)
{
	(void)from;
	batcher *bt = state;
	const gs_broadway_batcher_opts *o = &bt->conf->o;
	for (size_t i = 0; i < n; i++) {
		gs_message *m = ev[i];
		size_t part = 0;
		if (o->partition_by)
			part = gs__bw_partition(
				o->partition_by(o->partition_arg, m),
				o->concurrency);
		batch *b = open_for(bt, stage, m->batch_key, part);
		if (!b) {
			gs_message_failed(m, GS_ENOMEM);
			gs__bw_drop_message(m, bt->bw);
			continue;
		}
		b->msgs[b->info.size++] = m;
		bool full = b->info.size == o->batch_size;
		if (full || gs__bw_test_flushes(m))
			for (size_t j = bt->n_open; j-- > 0;)
				if (bt->open[j] == b) {
					close_at(bt, stage, j,
						 full ? GS_BATCH_SIZE
						      : GS_BATCH_FLUSH);
					break;
				}
	}
	return GS_OK;
}

static int on_timer(void *state, gs_stage *stage, void *msg)
{
	batcher *bt = state;
	uint64_t id = ((timer_msg *)msg)->id;
	free(msg);
	for (size_t i = 0; i < bt->n_open; i++)
		if (bt->open[i]->id == id) {
			close_at(bt, stage, i, GS_BATCH_TIMEOUT);
			break;
		}
	return GS_OK;
}

static int on_subscribe(void *state, gs_stage *stage, gs_sub *sub, gs_role role)
{
	(void)stage;
	(void)sub;
	batcher *bt = state;
	bt->inputs += role == GS_ROLE_CONSUMER;
	return GS_OK;
}

/* When the last input ends (the processors finished: a drain, or the
 * producers ran out), what is still open is flushed before the batcher
 * finishes and delivers its buffer. */
static int on_cancel(void *state, gs_stage *stage, gs_sub *sub, gs_role role,
		     int reason)
{
	(void)sub;
	batcher *bt = state;
	if (role != GS_ROLE_CONSUMER || --bt->inputs || reason != GS_OK)
		return GS_OK;
	while (bt->n_open)
		close_at(bt, stage, bt->n_open - 1, GS_BATCH_FLUSH);
	return GS_OK;
}

/* A stop that is not a drain: open batches were not processed. */
static void on_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	batcher *bt = state;
	while (bt->n_open)
		drop_batch(bt->bw, bt->open[--bt->n_open]);
	gs__bw_failed(bt->bw, reason);
}

static const gs_stage_ops batcher_ops = {
	.handle_events = on_events,
	.handle_info = on_timer,
	.handle_subscribe = on_subscribe,
	.handle_cancel = on_cancel,
	.terminate = on_terminate,
};

static size_t by_partition(void *arg, const void *event)
{
	(void)arg;
	return ((const batch *)event)->info.partition;
}

static void free_timer(void *msg, void *arg)
{
	(void)arg;
	free(msg);
}

static void batcher_free(void *state)
{
	batcher *bt = state;
	free(bt->open);
	free(bt);
}

gs_err gs__bw_batcher_new(gs_broadway *bw, size_t b, const gs_stage_opts *so,
			  gs_stage **out)
{
	batcher *bt = calloc(1, sizeof *bt);
	if (!bt)
		return GS_ENOMEM;
	bt->bw = bw;
	bt->conf = &bw->batchers[b];
	bt->index = b;
	gs_err err = gs__bw_keep(bw, bt, batcher_free);
	if (err)
		return err;
	const gs_broadway_batcher_opts *o = &bt->conf->o;
	gs_stage_opts opts = *so;
	opts.event_free = drop_batch_event;
	opts.event_free_arg = bw; /* drop_batch acknowledges through it */
	opts.msg_free = free_timer;
	if (o->partition_by)
		opts.dispatcher = gs_dispatcher_partition(o->concurrency,
							  by_partition, NULL);
	return gs_stage_new(bw->p, GS_PRODUCER_CONSUMER, &batcher_ops, bt,
			    &opts, out);
}

typedef struct batch_processor {
	gs_broadway *bw;
	size_t index; /* 0..concurrency-1 among its batcher's */
	gs__bw_acker acker;
} batch_processor;

static int on_batches(void *state, gs_stage *stage, gs_sub *from, void **ev,
		      size_t n)
{
	(void)from;
	batch_processor *bp = state;
	gs_broadway *bw = bp->bw;
	for (size_t i = 0; i < n; i++) {
		batch *b = ev[i];
		/* Which batch processor runs it: with partition_by the
		 * batcher's partition, which is this one; without, the one
		 * demand picked. */
		b->info.partition = bp->index;
		atomic_fetch_add_explicit(&bw->counts.batches, 1,
					  memory_order_relaxed);
		gs__bw_trace(bw, GS_BROADWAY_TRACE_BATCH, stage, b->msgs,
			     b->info.size);
		int r = bw->ops.handle_batch(bw->arg, b->msgs, b->info.size,
					     &b->info);
		for (size_t j = 0; r && j < b->info.size; j++)
			if (!b->msgs[j]->status)
				gs_message_failed(b->msgs[j], r);
		gs__bw_ack(bw, &bp->acker, stage, b->msgs, b->info.size);
		free(b);
	}
	return GS_OK;
}

static void batch_processor_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	batch_processor *bp = state;
	gs__bw_failed(bp->bw, reason);
}

static const gs_stage_ops batch_processor_ops = {
	.handle_events = on_batches,
	.terminate = batch_processor_terminate,
};

static void batch_processor_free(void *state)
{
	batch_processor *bp = state;
	gs__bw_acker_fini(&bp->acker);
	free(bp);
}

gs_err gs__bw_batch_processor_new(gs_broadway *bw, size_t b, size_t index,
				  const gs_stage_opts *so, gs_stage **out)
{
	batch_processor *bp = calloc(1, sizeof *bp);
	if (!bp ||
	    gs__bw_acker_reserve(&bp->acker, bw->batchers[b].o.batch_size)) {
		free(bp);
		return GS_ENOMEM;
	}
	bp->bw = bw;
	bp->index = index;
	gs_err err = gs__bw_keep(bw, bp, batch_processor_free);
	if (err)
		return err;
	gs_stage_opts opts = *so;
	opts.event_free = drop_batch_event;
	opts.event_free_arg = bw; /* drop_batch acknowledges through it */
	return gs_stage_new(bw->p, GS_CONSUMER, &batch_processor_ops, bp, &opts,
			    out);
}
