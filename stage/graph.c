// SPDX-License-Identifier: MIT
/*
 * The pipeline's graph: checking and creating subscriptions (gs_subscribe),
 * the cycle check, the user's handles and when a subscription's memory goes.
 *
 * Under the pipeline lock each producer keeps the list of its live
 * subscriptions (the edges the cycle check walks), and the pipeline keeps
 * every subscription that is live or whose handle the user still holds. A
 * subscription is freed once both its ends have let go and nobody holds its
 * handle, so a graph that subscribes and cancels for ever stays bounded in
 * memory, and each check costs time in the live graph only.
 */
#include <stdlib.h>
#include <string.h>

#include "annotate.h"
#include "internal.h"
#include "reap.h"
#include "struct_version.h"

/* max_demand above which gs_subscribe logs what the ring costs. */
#define BIG_RING ((size_t)1 << 23)

/* The subscription's place in one list: `off` says which gs__link of it
 * (offsetof). Pushed at the head; unlinked in constant time. */
static gs__link *link_of(gs_sub *sub, size_t off)
{
	return (gs__link *)((char *)sub + off);
}

static void list_push(gs_sub **head, gs_sub *sub, size_t off)
{
	link_of(sub, off)->prev = NULL;
	link_of(sub, off)->next = *head;
	if (*head)
		link_of(*head, off)->prev = sub;
	*head = sub;
}

static void list_unlink(gs_sub **head, gs_sub *sub, size_t off)
{
	gs__link *l = link_of(sub, off);
	if (l->prev)
		link_of(l->prev, off)->next = l->next;
	else
		*head = l->next;
	if (l->next)
		link_of(l->next, off)->prev = l->prev;
}

static void list_add(gs_pipeline *p, gs_sub *sub)
{
	list_push(&p->subs, sub, offsetof(gs_sub, all));
}

static void list_remove(gs_pipeline *p, gs_sub *sub)
{
	list_unlink(&p->subs, sub, offsetof(gs_sub, all));
}

/* Each live subscription is an edge in two lists: its producer's (what the
 * cycle check walks) and its consumer's. */
static void edge_add(gs_sub *sub)
{
	list_push(&sub->producer->down, sub, offsetof(gs_sub, down));
	sub->producer->n_down++;
	list_push(&sub->consumer->up, sub, offsetof(gs_sub, up));
	sub->consumer->n_up++;
}

static void edge_remove(gs_sub *sub)
{
	list_unlink(&sub->producer->down, sub, offsetof(gs_sub, down));
	sub->producer->n_down--;
	list_unlink(&sub->consumer->up, sub, offsetof(gs_sub, up));
	sub->consumer->n_up--;
}

/* Is `to` downstream of `from` along live subscriptions? A depth-first walk
 * with an intrusive stack and a mark per pipeline-wide epoch: it allocates
 * nothing and visits each reachable stage once. */
static bool reaches(gs_pipeline *p, gs_stage *from, gs_stage *to)
{
	uint64_t epoch = ++p->epoch;
	from->visit = epoch;
	from->dfs_next = NULL;
	gs_stage *stack = from;
	while (stack) {
		gs_stage *at = stack;
		stack = at->dfs_next;
		for (gs_sub *e = at->down; e; e = e->down.next) {
			gs_stage *c = e->consumer;
			if (c == to)
				return true;
			if (c->visit == epoch)
				continue;
			c->visit = epoch;
			c->dfs_next = stack;
			stack = c;
		}
	}
	return false;
}

/* Along the shorter of the two lists: a producer with thousands of
 * consumers (a pool, Broadway's processors) costs each new one a look at
 * its own few producers, not at all the others. */
static bool subscribed(gs_stage *c, gs_stage *pr)
{
	if (c->n_up <= pr->n_down) {
		for (gs_sub *e = c->up; e; e = e->up.next)
			if (e->producer == pr)
				return true;
		return false;
	}
	for (gs_sub *e = pr->down; e; e = e->down.next)
		if (e->consumer == c)
			return true;
	return false;
}

static gs_err check(gs_stage *c, gs_stage *pr, const gs_sub_opts *o)
{
	if (!c || !pr)
		return GS_EINVAL;
	if (c == pr)
		return GS_ESELF;
	if (c->kind == GS_PRODUCER || pr->kind == GS_CONSUMER)
		return GS_EKIND;
	if (c->p != pr->p)
		return GS_EPIPELINE;
	if (gs__is_current(c) || gs__is_current(pr))
		return GS_ETHREAD;
	if (o->max_demand > GS_MAX_DEMAND)
		return GS_EINVAL;
	if (o->cancel != GS_CANCEL_PERMANENT &&
	    o->cancel != GS_CANCEL_TRANSIENT &&
	    o->cancel != GS_CANCEL_TEMPORARY)
		return GS_EINVAL;
	if (o->selector && pr->dconf.kind != GS_DISPATCH_BROADCAST)
		return GS_EINVAL;
	if (c->keeps_events && pr->dconf.kind == GS_DISPATCH_BROADCAST &&
	    pr->event_free)
		return gs__refuse(&c->p->opts, GS_EINVAL,
				  "gs_subscribe %s to %s: %s keeps events past "
				  "handle_events, and %s broadcasts with an "
				  "event_free, which frees each event once "
				  "every handle_events returned",
				  c->name, pr->name, c->name, pr->name);
	return GS_OK;
}

static gs_sub *sub_new(gs_stage *c, gs_stage *pr, const gs_sub_opts *o,
		       size_t max, size_t min)
{
	size_t size = (sizeof(gs_sub) + GS__CACHELINE - 1) &
		      ~(size_t)(GS__CACHELINE - 1);
	gs_sub *sub = aligned_alloc(GS__CACHELINE, size);
	if (!sub)
		return NULL;
	memset(sub, 0, sizeof *sub);
	if (gs__ring_init(&sub->ring, max)) {
		free(sub);
		return NULL;
	}
	atomic_init(&sub->ends, 2);
	atomic_init(&sub->cancel_why, GS__CANCEL_UNSET);
	GS__ATOMIC(sub->granted);
	GS__ATOMIC(sub->cons_cancel);
	GS__ATOMIC(sub->cancel_why);
	GS__ATOMIC(sub->prod_end);
	GS__ATOMIC(sub->ends);
	GS__ATOMIC(sub->st_sent);
	GS__ATOMIC(sub->st_received);
	GS__ATOMIC(sub->st_dropped);
	GS__ATOMIC(sub->st_filtered);
	GS__ATOMIC(sub->manual);
	GS__ATOMIC(sub->asked);
	sub->producer = pr;
	sub->consumer = c;
	sub->max_demand = max;
	sub->min_demand = min;
	sub->demand = (gs__demand){ .max = max, .min = min };
	sub->cancel = o->cancel;
	atomic_init(&sub->manual, o->manual);
	sub->selector = o->selector;
	sub->selector_arg = o->selector_arg;
	return sub;
}

/* Queues both attach messages, or neither if either stage has closed its
 * inbox. Lock order: pipeline, then inboxes by address. */
static gs_err post_attach(gs_sub *sub, gs__msg *in, gs__msg *out)
{
	gs_stage *a = sub->consumer, *b = sub->producer;
	if ((uintptr_t)a > (uintptr_t)b) {
		gs_stage *t = a;
		a = b;
		b = t;
	}
	pthread_mutex_lock(&a->inbox_lock);
	pthread_mutex_lock(&b->inbox_lock);
	bool closed = a->inbox_closed || b->inbox_closed;
	if (!closed) {
		gs__inbox_push_locked(sub->consumer, in);
		gs__inbox_push_locked(sub->producer, out);
	}
	pthread_mutex_unlock(&b->inbox_lock);
	pthread_mutex_unlock(&a->inbox_lock);
	return closed ? GS_ECLOSED : GS_OK;
}

/* Under the pipeline lock: the checks that need the live graph, then the
 * attach messages. */
static gs_err link_sub(gs_pipeline *p, gs_sub *sub, const gs_sub_opts *o,
		       gs__msg *in, gs__msg *out)
{
	gs_stage *c = sub->consumer, *pr = sub->producer;
	if (subscribed(c, pr))
		return GS_EEXIST;
	if (reaches(p, c, pr))
		return GS_ECYCLE;
	gs_err err = gs__partition_claim(pr, sub, o->partition,
					 o->share_partition);
	if (err)
		return err;
	err = post_attach(sub, in, out);
	if (err) {
		gs__partition_release(sub);
		return err;
	}
	/* Neither stage is freed while the subscription exists (reap.h). */
	c->refs++;
	pr->refs++;
	sub->live = true;
	edge_add(sub);
	list_add(p, sub);
	if (pr->disp->link)
		pr->disp->link(pr, sub);
	return GS_OK;
}

/* What gs_subscribe_sync waits on: each end's result, under the pipeline
 * lock, whose mutex the condition variable goes with. */
struct gs__sync {
	pthread_cond_t cv;
	int ends;
	int err;
};

/* gs_subscribe's work; `sync` (may be NULL) is installed before either end
 * can attach. On success *made is the subscription, with a user_ref when
 * `hold`. */
static gs_err subscribe(gs_stage *c, gs_stage *pr, const gs_sub_opts *opts,
			bool hold, struct gs__sync *sync, gs_sub **made)
{
	if (!c || !pr)
		return GS_EINVAL;
	/* First: a newer struct's other fields may mean something else. */
	GS__REFUSE_NEWER(&c->p->opts, opts, GS_SUB_OPTS_VERSION);
	gs_sub_opts o = opts ? *opts : (gs_sub_opts){ 0 };
	gs_err err = check(c, pr, &o);
	if (err)
		return err;
	size_t max = o.max_demand ? o.max_demand : GS_DEFAULT_MAX_DEMAND;
	size_t min = o.min_demand == GS_MIN_DEMAND_ZERO ? 0
		     : o.min_demand                     ? o.min_demand
							: max / 2;
	if (min >= max)
		return GS_EDEMAND;

	/* Demand guarantees a ring never overflows, so the ring covers
	 * max_demand: say so when that is a lot of memory. */
	if (max > BIG_RING)
		gs__log(c, GS_LOG_WARN,
			"max_demand %zu: the subscription's ring takes %zu MiB",
			max, gs__ring_bytes(max) >> 20);
	gs_sub *sub = sub_new(c, pr, &o, max, min);
	gs__msg *in = gs__msg_new(GS__MSG_ATTACH_IN, sub, 0);
	gs__msg *outm = gs__msg_new(GS__MSG_ATTACH_OUT, sub, 0);
	if (!sub || !in || !outm) {
		if (sub)
			gs__ring_fini(&sub->ring);
		free(sub);
		free(in);
		free(outm);
		return GS_ENOMEM;
	}
	sub->user_ref = hold;
	sub->sync_wanted = sync != NULL;
	sub->sync = sync;
	gs_pipeline *p = c->p;
	pthread_mutex_lock(&p->lock);
	err = link_sub(p, sub, &o, in, outm);
	pthread_mutex_unlock(&p->lock);
	if (err) {
		gs__ring_fini(&sub->ring);
		free(sub);
		free(in);
		free(outm);
		return err;
	}
	gs__wake(c);
	gs__wake(pr);
	*made = sub;
	return GS_OK;
}

GS__API gs_err gs_subscribe(gs_stage *c, gs_stage *pr, const gs_sub_opts *opts,
			    gs_sub **out)
{
	gs_sub *sub;
	gs_err err = subscribe(c, pr, opts, out != NULL, NULL, &sub);
	if (!err && out)
		*out = sub;
	return err;
}

void gs__sync_report(gs_sub *sub, int result)
{
	if (!sub->sync_wanted)
		return;
	gs_pipeline *p = sub->consumer->p;
	pthread_mutex_lock(&p->lock);
	struct gs__sync *w = sub->sync;
	if (w) {
		w->ends++;
		if (result && !w->err)
			w->err = result;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&p->lock);
}

GS__API gs_err gs_subscribe_sync(gs_stage *c, gs_stage *pr,
				 const gs_sub_opts *opts, gs_sub **out,
				 int timeout_ms)
{
	if (gs__in_scheduled_stage())
		return GS_ETHREAD; /* the wait would hold a worker */
	struct gs__sync w = { .ends = 0 };
	if (gs__cond_init(&w.cv))
		return GS_ENOMEM;
	gs_sub *sub;
	gs_err err = subscribe(c, pr, opts, true, &w, &sub);
	if (err) {
		pthread_cond_destroy(&w.cv);
		return err;
	}
	gs_pipeline *p = c->p;
	struct timespec until = gs__deadline(timeout_ms);
	pthread_mutex_lock(&p->lock);
	while (w.ends < 2 && !w.err)
		if (gs__cond_wait(&w.cv, &p->lock, timeout_ms, &until) &&
		    w.ends < 2 && !w.err)
			break;
	sub->sync = NULL;
	err = w.err ? w.err : w.ends < 2 ? GS_ETIMEDOUT : GS_OK;
	pthread_mutex_unlock(&p->lock);
	pthread_cond_destroy(&w.cv);
	/* A subscription that did not come up whole is taken down. */
	if (err == GS_ETIMEDOUT)
		gs_cancel(sub);
	if (err || !out)
		gs_sub_release(sub);
	else
		*out = sub;
	return (gs_err)err;
}

/* Under the pipeline lock: `sub` is about to be freed, so its stages are
 * reached by one subscription less; those that may go now are claimed into
 * reap[] (at most two), for the caller to free after unlocking. */
static size_t forget_ends(gs_sub *sub, gs_stage **reap)
{
	size_t n = 0;
	gs_stage *ends[2] = { sub->producer, sub->consumer };
	for (size_t i = 0; i < 2; i++) {
		ends[i]->refs--;
		if (gs__reap_claim(ends[i]))
			reap[n++] = ends[i];
	}
	return n;
}

/* Both ends have let go (gs__detach): the edge leaves the graph, and the
 * memory goes unless the user holds the handle. */
void gs__sub_ended(gs_sub *sub)
{
	gs_stage *pr = sub->producer;
	gs_pipeline *p = pr->p;
	gs_stage *reap[3];
	size_t n = 0;
	pthread_mutex_lock(&p->lock);
	sub->live = false;
	edge_remove(sub);
	gs__partition_release(sub);
	bool release = pr->disp->unlink && pr->disp->unlink(pr, sub);
	/* The release below still reaches the producer, whoever frees the
	 * subscription meanwhile. */
	if (release)
		pr->refs++;
	bool unused = !sub->user_ref;
	if (unused) {
		list_remove(p, sub);
		n = forget_ends(sub, reap);
	}
	/* Once unlocked, a gs_sub_release may free the subscription: touch
	 * nothing of it after this but what it no longer points to. */
	uint64_t *seq_of = sub->seq_of;
	sub->seq_of = NULL;
	pthread_mutex_unlock(&p->lock);
	free(seq_of);
	if (unused)
		free(sub);
	if (release) {
		pr->disp->release(pr);
		pthread_mutex_lock(&p->lock);
		pr->refs--;
		if (gs__reap_claim(pr))
			reap[n++] = pr;
		pthread_mutex_unlock(&p->lock);
	}
	for (size_t i = 0; i < n; i++)
		gs__reap(reap[i], false);
}

/* At gs_pipeline_free, whatever state the subscription is in. */
void gs__sub_free(gs_sub *sub)
{
	if (atomic_load_explicit(&sub->ends, memory_order_acquire) > 0) {
		GS__HA(&sub->ends);
		sub->user_ref = true; /* the caller frees it */
		atomic_store_explicit(&sub->ends, 1, memory_order_relaxed);
		gs__detach(sub);
	}
	free(sub);
}

GS__API void gs_sub_release(gs_sub *sub)
{
	if (!sub)
		return;
	gs_pipeline *p = sub->producer->p;
	gs_stage *reap[2];
	size_t n = 0;
	pthread_mutex_lock(&p->lock);
	sub->user_ref = false;
	bool ended = !sub->live;
	if (ended) {
		list_remove(p, sub);
		n = forget_ends(sub, reap);
	}
	pthread_mutex_unlock(&p->lock);
	if (ended)
		free(sub);
	for (size_t i = 0; i < n; i++)
		gs__reap(reap[i], false);
}

GS__API gs_err gs_cancel_reason(gs_sub *sub, int reason)
{
	if (!sub)
		return GS_EINVAL;
	/* The first reason wins; a later cancel changes nothing. */
	int unset = GS__CANCEL_UNSET;
	if (!atomic_compare_exchange_strong_explicit(
		    &sub->cancel_why, &unset, reason, memory_order_relaxed,
		    memory_order_relaxed))
		return GS_OK;
	int live = GS__CONS_LIVE;
	/* Release: whoever sees CANCEL sees the reason (acquire). */
	GS__HB(&sub->cons_cancel);
	if (atomic_compare_exchange_strong_explicit(
		    &sub->cons_cancel, &live, GS__CONS_CANCEL,
		    memory_order_acq_rel, memory_order_relaxed))
		gs__wake(sub->producer);
	return GS_OK;
}

GS__API gs_err gs_cancel(gs_sub *sub)
{
	return gs_cancel_reason(sub, GS_ECANCELED);
}

static uint64_t load(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

GS__API gs_err gs_sub_stats(const gs_sub *sub, gs_sub_counts *out)
{
	if (!sub || !out)
		return GS_EINVAL;
	*out = (gs_sub_counts){
		.sent = load(&sub->st_sent),
		.received = load(&sub->st_received),
		.dropped = load(&sub->st_dropped),
		.filtered = load(&sub->st_filtered),
	};
	return GS_OK;
}

GS__API gs_stage *gs_sub_producer(const gs_sub *sub)
{
	return sub ? sub->producer : NULL;
}

GS__API gs_stage *gs_sub_consumer(const gs_sub *sub)
{
	return sub ? sub->consumer : NULL;
}
