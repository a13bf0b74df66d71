// SPDX-License-Identifier: MIT
/*
 * Messages and their acknowledgement: the gs_message_* calls handlers use,
 * and the one routine every acknowledgement point shares, which shows the
 * failed messages to handle_failed and then calls each acknowledger once
 * per group of messages with the same (acknowledger, ack_ref).
 */
#include <stdlib.h>

#include "broadway_internal.h"

GS_BROADWAY_API void gs_message_failed(gs_message *m, int reason)
{
	if (m)
		m->status = reason ? reason : GS_EINVAL;
}

GS_BROADWAY_API void gs_message_put_batcher(gs_message *m, size_t index)
{
	if (m)
		m->batcher = index;
}

GS_BROADWAY_API void gs_message_put_batch_key(gs_message *m, uint64_t key)
{
	if (m)
		m->batch_key = key;
}

size_t gs__bw_partition(uint64_t key, size_t n)
{
	/* splitmix64's finalizer: consecutive keys spread evenly. */
	key ^= key >> 30;
	key *= 0xbf58476d1ce4e5b9ULL;
	key ^= key >> 27;
	key *= 0x94d049bb133111ebULL;
	key ^= key >> 31;
	return (size_t)(key % n);
}

gs_err gs__bw_acker_reserve(gs__bw_acker *a, size_t n)
{
	if (n <= a->cap)
		return GS_OK;
	size_t cap = a->cap ? a->cap : 64;
	while (cap < n)
		cap *= 2;
	gs_message **v = malloc(3 * cap * sizeof *v);
	if (!v)
		return GS_ENOMEM;
	free(a->ok);
	a->ok = v;
	a->failed = v + cap;
	a->rest = v + 2 * cap;
	a->cap = cap;
	return GS_OK;
}

void gs__bw_acker_fini(gs__bw_acker *a)
{
	free(a->ok);
	*a = (gs__bw_acker){ 0 };
}

static void count(gs_broadway *bw, gs_message *const *failed, size_t n_ok,
		  size_t n_failed)
{
	gs__bw_counts *c = &bw->counts;
	size_t cancelled = 0;
	for (size_t i = 0; i < n_failed; i++)
		cancelled += failed[i]->status == GS_ECANCELED;
	atomic_fetch_add_explicit(&c->successful, n_ok, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->failed, n_failed, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->cancelled, cancelled,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&c->ack_calls, 1, memory_order_relaxed);
}

/* The fallback when no scratch could be had: one call per message. */
static void ack_one(gs_broadway *bw, gs_message *m)
{
	bool failed = m->status != GS_OK;
	if (failed && bw->ops.handle_failed) {
		bw->ops.handle_failed(bw->arg, &m, 1);
		if (!m->status)
			m->status = GS_EINVAL;
	}
	count(bw, &m, !failed, failed);
	m->acknowledger->ack(m->ack_ref, failed ? NULL : &m, !failed,
			     failed ? &m : NULL, failed);
}

void gs__bw_ack(gs_broadway *bw, gs__bw_acker *a, gs_message **msgs, size_t n)
{
	if (!n)
		return;
	if (gs__bw_acker_reserve(a, n)) {
		for (size_t i = 0; i < n; i++)
			ack_one(bw, msgs[i]);
		return;
	}
	size_t nf = 0;
	for (size_t i = 0; i < n; i++)
		if (msgs[i]->status)
			a->failed[nf++] = msgs[i];
	if (nf && bw->ops.handle_failed) {
		bw->ops.handle_failed(bw->arg, a->failed, nf);
		/* handle_failed may change a reason, not undo the failure. */
		for (size_t i = 0; i < nf; i++)
			if (!a->failed[i]->status)
				a->failed[i]->status = GS_EINVAL;
	}
	/* Groups are few (usually one per producer): take the first
	 * message's group out of `rest` until nothing is left. Order within
	 * a group is the order of msgs. */
	size_t left = n;
	gs_message **rest = msgs;
	while (left) {
		const gs_acknowledger *ack = rest[0]->acknowledger;
		void *ref = rest[0]->ack_ref;
		size_t n_ok = 0, n_failed = 0, kept = 0;
		for (size_t i = 0; i < left; i++) {
			gs_message *m = rest[i];
			if (m->acknowledger != ack || m->ack_ref != ref)
				a->rest[kept++] = m;
			else if (m->status)
				a->failed[n_failed++] = m;
			else
				a->ok[n_ok++] = m;
		}
		count(bw, a->failed, n_ok, n_failed);
		ack->ack(ref, a->ok, n_ok, a->failed, n_failed);
		rest = a->rest;
		left = kept;
	}
}

void gs__bw_drop_message(void *event, void *arg)
{
	gs_broadway *bw = arg;
	gs_message *m = event;
	m->status = GS_ECANCELED;
	ack_one(bw, m);
}
