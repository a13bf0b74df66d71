// SPDX-License-Identifier: MIT
/*
 * The partition dispatcher: a hash sends each event to one partition, and
 * each partition has its own group of subscriptions, demand and queue.
 * Usually a group is one subscription; subscriptions that ask to share a
 * partition (gs_sub_opts.share_partition, GenStage #320) get its events
 * demand-dispatched among them, each batch to the one with the most room.
 * Events for a partition without demand wait in its queue without holding
 * back the others; a queue that reaches its bound holds back new demand
 * instead of growing (see include/genstage/dispatcher.h). Queues belong to
 * partitions, not subscriptions, so a partition's next subscriber receives
 * what waited.
 */
#include <stdlib.h>

#include "annotate.h"
#include "internal.h"

/* Events staged per partition before they are pushed or queued. */
#define CHUNK 128

typedef struct part {
	gs__buffer q;   /* own: events waiting for the group's demand */
	gs_sub **group; /* own: the attached subscriptions */
	size_t n, cap;
	size_t holders; /* pipeline lock: subscriptions that claimed it */
	bool exclusive; /* pipeline lock: one holds it alone */
} part;

typedef struct pstate {
	part *parts;
	void **stage;   /* CHUNK slots per partition */
	size_t *staged; /* events in each partition's slots */
} pstate;

static pstate *state_of(const gs_stage *s)
{
	return s->dstate;
}

static part *part_of(const gs_stage *s, size_t i)
{
	return &state_of(s)->parts[i];
}

static void drop_cb(void *ctx, void *const *events, size_t n)
{
	gs__drop(ctx, events, n);
}

static gs_err init(gs_stage *s)
{
	size_t n = s->dconf.partitions;
	pstate *ps = calloc(1, sizeof *ps);
	if (!ps)
		return GS_ENOMEM;
	s->dstate = ps; /* the stage's free releases what exists */
	ps->parts = calloc(n, sizeof *ps->parts);
	ps->stage = calloc(n * CHUNK, sizeof *ps->stage);
	ps->staged = calloc(n, sizeof *ps->staged);
	if (!ps->parts || !ps->stage || !ps->staged)
		return GS_ENOMEM;
	for (size_t i = 0; i < n; i++)
		gs__buffer_init(&ps->parts[i].q, GS_UNBOUNDED, GS_KEEP_LAST);
	return GS_OK;
}

/* Under the pipeline lock. */
gs_err gs__partition_claim(gs_stage *producer, gs_sub *sub, size_t want,
			   bool share)
{
	if (producer->disp != &gs__dispatch_partition_ops)
		return want || share ? GS_EINVAL : GS_OK;
	size_t n = producer->dconf.partitions;
	size_t idx = want - 1;
	if (!want) {
		idx = 0;
		while (idx < n && part_of(producer, idx)->holders)
			idx++;
		if (idx == n)
			return GS_EBUSY;
	} else if (idx >= n) {
		return GS_EINVAL;
	}
	part *pt = part_of(producer, idx);
	if (pt->exclusive || (pt->holders && !share))
		return GS_EBUSY;
	pt->holders++;
	pt->exclusive = !share;
	sub->partition = idx;
	sub->holds_partition = true;
	return GS_OK;
}

/* Under the pipeline lock, once neither end uses the subscription. */
void gs__partition_release(gs_sub *sub)
{
	if (!sub->holds_partition)
		return;
	sub->holds_partition = false;
	part *pt = part_of(sub->producer, sub->partition);
	if (--pt->holders == 0)
		pt->exclusive = false;
}

static void attach(gs_stage *s, gs_sub *sub)
{
	part *pt = part_of(s, sub->partition);
	if (pt->n == pt->cap) {
		size_t cap = pt->cap ? pt->cap * 2 : 2;
		gs_sub **g = realloc(pt->group, cap * sizeof *g);
		if (!g) {
			gs__log(s, GS_LOG_ERROR,
				"out of memory for a partition's group");
			gs__stop(s, GS_ENOMEM);
			return;
		}
		pt->group = g;
		pt->cap = cap;
	}
	pt->group[pt->n++] = sub;
}

static void detach(gs_stage *s, gs_sub *sub)
{
	part *pt = part_of(s, sub->partition);
	for (size_t k = 0; k < pt->n; k++)
		if (pt->group[k] == sub) {
			pt->group[k] = pt->group[--pt->n];
			return;
		}
}

/* Pushes up to n events to the partition's group, each batch to the
 * member with the most room; returns how many went. */
static size_t send(gs_stage *s, part *pt, void *const *events, size_t n)
{
	size_t sent = 0;
	while (sent < n) {
		gs_sub *best = NULL;
		size_t best_room = 0;
		for (size_t k = 0; k < pt->n; k++) {
			size_t room = gs__sub_room(pt->group[k]);
			if (room > best_room) {
				best = pt->group[k];
				best_room = room;
			}
		}
		if (!best)
			break;
		size_t m = n - sent < best_room ? n - sent : best_room;
		sent += gs__push(s, best, events + sent, m);
	}
	return sent;
}

/* Moves queued events of a partition to its group, as demand and room
 * allow; returns how many moved. */
static size_t deliver_queued(gs_stage *s, part *pt)
{
	size_t moved = 0;
	while (pt->q.count) {
		void **ev = NULL;
		size_t n = gs__buffer_peek(&pt->q, &ev);
		size_t k = send(s, pt, ev, n);
		gs__buffer_consume(&pt->q, k);
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
	for (size_t i = 0; i < s->n_outs;) {
		if (gs__end_if_cancelled(s, i, changed))
			continue;
		gs_sub *sub = s->outs[i++];
		sub->granted_seen = atomic_load_explicit(&sub->granted,
							 memory_order_acquire);
		GS__HA(&sub->granted);
	}
	for (size_t i = 0; i < s->dconf.partitions; i++)
		*changed |= deliver_queued(s, part_of(s, i)) > 0;
	uint64_t unmet = 0;
	for (size_t i = 0; i < s->n_outs; i++) {
		gs_sub *sub = s->outs[i];
		if (!part_of(s, sub->partition)->q.count)
			unmet += sub->granted_seen - sub->sent;
	}
	atomic_store_explicit(&s->st_pending, unmet, memory_order_relaxed);
	return unmet;
}

static void flush(gs_stage *s, size_t i)
{
	pstate *ps = state_of(s);
	part *pt = &ps->parts[i];
	void **ev = ps->stage + i * CHUNK;
	size_t n = ps->staged[i];
	ps->staged[i] = 0;
	size_t sent = pt->q.count ? 0 : send(s, pt, ev, n);
	size_t lost = sent < n ? gs__buffer_put(&pt->q, ev + sent, n - sent,
						drop_cb, s)
			       : 0;
	/* The queue is unbounded: it drops only when it cannot grow. The
	 * stage then stops, as one whose buffer cannot grow does: a flow
	 * would otherwise finish without those events, and say GS_OK. */
	if (lost) {
		gs__log(s, GS_LOG_ERROR,
			"out of memory for the queue of partition %zu: "
			"dropped %zu events",
			i, lost);
		gs__stop(s, GS_ENOMEM);
	}
}

static size_t dispatch(gs_stage *s, void *const *events, size_t n)
{
	/* Locals, not fields: the hash is the caller's code, so after each
	 * call the compiler would load every field again. */
	const gs_hash_fn hash = s->dconf.hash;
	void *const arg = s->dconf.arg;
	const size_t parts = s->dconf.partitions;
	pstate *ps = state_of(s);
	void **stage = ps->stage;
	size_t *staged = ps->staged;
	size_t invalid = 0;
	for (size_t j = 0; j < n; j++) {
		size_t i = hash(arg, events[j]);
		if (i >= parts) {
			gs__drop(s, events + j, 1);
			invalid += i != GS_DISCARD;
			continue;
		}
		size_t k = staged[i]++;
		stage[i * CHUNK + k] = events[j];
		if (k == CHUNK - 1)
			flush(s, i);
	}
	for (size_t i = 0; i < parts; i++)
		if (staged[i])
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
		total += part_of(s, i)->q.count;
	return total;
}

/* The producer's buffer_size bounds each partition's queue. */
static bool gated(const gs_stage *s)
{
	for (size_t i = 0; i < s->dconf.partitions; i++)
		if (part_of(s, i)->q.count >= s->buf.limit)
			return true;
	return false;
}

static void drop(gs_stage *s)
{
	pstate *ps = state_of(s);
	size_t dropped = 0;
	for (size_t i = 0; ps && ps->parts && i < s->dconf.partitions; i++) {
		dropped += ps->parts[i].q.count;
		gs__buffer_clear(&ps->parts[i].q, drop_cb, s);
	}
	if (dropped)
		gs__log(s, GS_LOG_WARN, "stopped: dropped %zu queued events",
			dropped);
}

/* Draining: a partition with no subscription attached will get none, so
 * its queue would keep the producer, and the drain, waiting (and, full,
 * would hold back a producer-consumer's input for the others). */
static size_t drop_unheld(gs_stage *s)
{
	size_t total = 0;
	for (size_t i = 0; i < s->dconf.partitions; i++) {
		part *pt = part_of(s, i);
		size_t n = pt->q.count;
		if (pt->n || !n)
			continue;
		gs__buffer_clear(&pt->q, drop_cb, s);
		gs__log(s, GS_LOG_WARN,
			"drained: dropped %zu events of partition %zu, which "
			"has no subscriber",
			n, i);
		total += n;
	}
	return total;
}

/* At the stage's free: subscriptions may release their claims until then. */
static void free_state(gs_stage *s)
{
	pstate *ps = state_of(s);
	if (!ps)
		return;
	for (size_t i = 0; ps->parts && i < s->dconf.partitions; i++) {
		gs__buffer_fini(&ps->parts[i].q);
		free(ps->parts[i].group);
	}
	free(ps->parts);
	free(ps->stage);
	free(ps->staged);
	free(ps);
	s->dstate = NULL;
}

const gs__dispatcher_ops gs__dispatch_partition_ops = {
	.init = init,
	.collect = collect,
	.dispatch = dispatch,
	.attach = attach,
	.detach = detach,
	.queued = queued,
	.gated = gated,
	.drop_unheld = drop_unheld,
	.drop = drop,
	.free = free_state,
};
