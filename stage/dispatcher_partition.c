// SPDX-License-Identifier: MIT
/*
 * The partition dispatcher: a hash sends each event to one partition, each
 * partition has its own subscription, demand and queue. Events for a
 * partition without demand wait in its queue without holding back the
 * others; a queue that reaches its bound holds back new demand instead of
 * growing (see include/genstage/dispatcher.h). Queues belong to partitions,
 * not subscriptions, so a partition's next subscriber receives what waited.
 */
#include <stdlib.h>

#include "internal.h"

/* Events staged per partition before they are pushed or queued. */
#define CHUNK 128

static void drop_cb(void *ctx, void *const *events, size_t n)
{
	gs__drop(ctx, events, n);
}

gs_err gs__partition_init(gs_stage *s)
{
	size_t n = s->dconf.partitions;
	s->pq = calloc(n, sizeof *s->pq);
	s->pout = calloc(n, sizeof *s->pout);
	s->ptaken = calloc(n, sizeof *s->ptaken);
	s->pstaged = calloc(n, sizeof *s->pstaged);
	s->pstage = calloc(n * CHUNK, sizeof *s->pstage);
	if (!s->pq || !s->pout || !s->ptaken || !s->pstaged || !s->pstage)
		return GS_ENOMEM; /* the stage's free releases what exists */
	for (size_t i = 0; i < n; i++)
		gs__buffer_init(&s->pq[i], GS_UNBOUNDED, GS_KEEP_LAST);
	return GS_OK;
}

/* Under the pipeline lock. */
gs_err gs__partition_claim(gs_stage *producer, gs_sub *sub, size_t want)
{
	if (producer->disp != &gs__dispatch_partition_ops)
		return want ? GS_EINVAL : GS_OK;
	size_t n = producer->dconf.partitions;
	size_t idx = want - 1;
	if (!want) {
		idx = 0;
		while (idx < n && producer->ptaken[idx])
			idx++;
		if (idx == n)
			return GS_EBUSY;
	} else if (idx >= n) {
		return GS_EINVAL;
	} else if (producer->ptaken[idx]) {
		return GS_EBUSY;
	}
	producer->ptaken[idx] = sub;
	sub->partition = idx;
	return GS_OK;
}

/* Under the pipeline lock, once neither end uses the subscription. */
void gs__partition_release(gs_sub *sub)
{
	gs_stage *p = sub->producer;
	if (p->disp == &gs__dispatch_partition_ops &&
	    p->ptaken[sub->partition] == sub)
		p->ptaken[sub->partition] = NULL;
}

static void attach(gs_stage *s, gs_sub *sub)
{
	s->pout[sub->partition] = sub;
}

static void detach(gs_stage *s, gs_sub *sub)
{
	if (s->pout[sub->partition] == sub)
		s->pout[sub->partition] = NULL;
}

/* Moves queued events of partition i to its subscription, as demand and
 * room allow; returns how many moved. */
static size_t deliver_queued(gs_stage *s, size_t i)
{
	gs_sub *sub = s->pout[i];
	size_t moved = 0;
	while (sub && s->pq[i].count) {
		void **ev = NULL;
		size_t n = gs__buffer_peek(&s->pq[i], &ev);
		size_t room = gs__sub_room(sub);
		size_t k = gs__push(s, sub, ev, n < room ? n : room);
		gs__buffer_consume(&s->pq[i], k);
		moved += k;
		if (k < n)
			break;
	}
	return moved;
}

/*
 * Demand is passed on by level, not by increment: events spread over all
 * partitions, so an increment asked for one partition may be spent on
 * others' queues and leave it starving. Instead the producer is always owed
 * at least the demand of the partitions that have nothing queued.
 */
static uint64_t collect(gs_stage *s, bool *changed)
{
	uint64_t unmet = 0;
	for (size_t i = 0; i < s->n_outs;) {
		if (gs__end_if_cancelled(s, i, changed))
			continue;
		gs_sub *sub = s->outs[i++];
		sub->granted_seen = atomic_load_explicit(&sub->granted,
							 memory_order_acquire);
		*changed |= deliver_queued(s, sub->partition) > 0;
		if (!s->pq[sub->partition].count)
			unmet += sub->granted_seen - sub->sent;
	}
	atomic_store_explicit(&s->st_pending, unmet, memory_order_relaxed);
	return unmet;
}

static void flush(gs_stage *s, size_t i)
{
	void **ev = s->pstage + i * CHUNK;
	size_t n = s->pstaged[i];
	s->pstaged[i] = 0;
	size_t sent = 0;
	if (!s->pq[i].count && s->pout[i]) {
		size_t room = gs__sub_room(s->pout[i]);
		sent = gs__push(s, s->pout[i], ev, n < room ? n : room);
	}
	if (sent < n &&
	    gs__buffer_put(&s->pq[i], ev + sent, n - sent, drop_cb, s))
		gs__log(s, GS_LOG_WARN,
			"out of memory: dropped events of "
			"partition %zu",
			i);
}

static size_t dispatch(gs_stage *s, void *const *events, size_t n)
{
	size_t parts = s->dconf.partitions, discarded = 0, invalid = 0;
	for (size_t j = 0; j < n; j++) {
		size_t i = s->dconf.hash(s->dconf.arg, events[j]);
		if (i >= parts) {
			gs__drop(s, events + j, 1);
			discarded++;
			invalid += i != GS_DISCARD;
			continue;
		}
		s->pstage[i * CHUNK + s->pstaged[i]++] = events[j];
		if (s->pstaged[i] == CHUNK)
			flush(s, i);
	}
	for (size_t i = 0; i < parts; i++)
		if (s->pstaged[i])
			flush(s, i);
	if (invalid)
		gs__log(s, GS_LOG_WARN,
			"hash returned a partition out of range for %zu "
			"events: dropped",
			invalid);
	return n;
}

static size_t queued(const gs_stage *s)
{
	size_t total = 0;
	for (size_t i = 0; i < s->dconf.partitions; i++)
		total += s->pq[i].count;
	return total;
}

/* The producer's buffer_size bounds each partition's queue. */
static bool gated(const gs_stage *s)
{
	for (size_t i = 0; i < s->dconf.partitions; i++)
		if (s->pq[i].count >= s->buf.limit)
			return true;
	return false;
}

static void drop(gs_stage *s)
{
	size_t dropped = 0;
	for (size_t i = 0; s->pq && i < s->dconf.partitions; i++) {
		dropped += s->pq[i].count;
		gs__buffer_clear(&s->pq[i], drop_cb, s);
	}
	if (dropped)
		gs__log(s, GS_LOG_WARN, "stopped: dropped %zu queued events",
			dropped);
}

/* At the stage's free: subscriptions may use ptaken until then. */
static void free_state(gs_stage *s)
{
	for (size_t i = 0; s->pq && i < s->dconf.partitions; i++)
		gs__buffer_fini(&s->pq[i]);
	free(s->pq);
	free(s->pout);
	free(s->ptaken);
	free(s->pstaged);
	free(s->pstage);
	s->pq = NULL;
	s->pout = NULL;
	s->ptaken = NULL;
	s->pstaged = NULL;
	s->pstage = NULL;
}

const gs__dispatcher_ops gs__dispatch_partition_ops = {
	.collect = collect,
	.dispatch = dispatch,
	.attach = attach,
	.detach = detach,
	.queued = queued,
	.gated = gated,
	.drop = drop,
	.free = free_state,
};
