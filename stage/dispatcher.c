// SPDX-License-Identifier: MIT
/*
 * What every dispatcher shares: choosing one, pushing into a subscription
 * within its demand, ending subscriptions whose consumer let go, draining
 * the producer's buffer and waking the consumers that got events.
 */
#include "annotate.h"
#include "internal.h"

GS__API gs_dispatcher gs_dispatcher_demand(void)
{
	return (gs_dispatcher){ .kind = GS_DISPATCH_DEMAND };
}

GS__API gs_dispatcher gs_dispatcher_broadcast(void)
{
	return (gs_dispatcher){ .kind = GS_DISPATCH_BROADCAST };
}

GS__API gs_dispatcher gs_dispatcher_partition(size_t n, gs_hash_fn hash,
					      void *arg)
{
	return (gs_dispatcher){ .kind = GS_DISPATCH_PARTITION,
				.partitions = n,
				.hash = hash,
				.arg = arg };
}

gs_err gs__dispatcher_init(gs_stage *s, const gs_dispatcher *d)
{
	s->dconf = *d;
	switch (d->kind) {
	case GS_DISPATCH_DEMAND:
		s->disp = &gs__dispatch_demand_ops;
		return GS_OK;
	case GS_DISPATCH_BROADCAST:
		s->disp = &gs__dispatch_broadcast_ops;
		return s->disp->init(s);
	case GS_DISPATCH_PARTITION:
		if (!d->partitions || !d->hash)
			return GS_EINVAL;
		s->disp = &gs__dispatch_partition_ops;
		return s->disp->init(s);
	}
	return GS_EINVAL;
}

void gs__dispatcher_fini(gs_stage *s)
{
	if (s->disp && s->disp->drop)
		s->disp->drop(s);
	if (s->disp && s->disp->free)
		s->disp->free(s);
}

size_t gs__dispatch(gs_stage *s, void *const *events, size_t n)
{
	return s->disp->dispatch(s, events, n);
}

/* How many events `sub` may take now: its pending demand, within the
 * room its ring has. */
size_t gs__sub_room(gs_sub *sub)
{
	uint64_t pending = sub->granted_seen - sub->sent;
	if (!pending)
		return 0;
	size_t room = gs__ring_space(&sub->ring, pending);
	return room < pending ? room : pending;
}

/* Pushes n events that fit (see gs__sub_room) into `sub`. */
size_t gs__push(gs_stage *s, gs_sub *sub, void *const *events, size_t n)
{
	if (!n)
		return 0;
	n = gs__ring_push(&sub->ring, events, n);
	sub->sent += n;
	gs__count(&sub->st_sent, n);
	sub->needs_wake = true;
	gs__count(&s->st_out, n);
	gs__count(&s->st_bout, 1);
	return n;
}

/* Ends outs[idx] if its consumer let go; true if it did (the array then
 * holds the next subscription at idx). */
bool gs__end_if_cancelled(gs_stage *s, size_t idx, bool *changed)
{
	gs_sub *sub = s->outs[idx];
	int cc = atomic_load_explicit(&sub->cons_cancel, memory_order_acquire);
	if (cc == GS__CONS_LIVE)
		return false;
	GS__HA(&sub->cons_cancel);
	int why = cc == GS__CONS_CANCEL
			  ? atomic_load_explicit(&sub->cancel_why,
						 memory_order_relaxed)
			  : sub->cons_reason;
	if (s->disp->detach)
		s->disp->detach(s, sub);
	gs__end_out(s, idx, cc == GS__CONS_CANCEL ? why : GS_ECANCELED, why,
		    true);
	*changed = true;
	/* A producer whose every consumer has stopped has nobody to produce
	 * for: it finishes, and so does a finite pipeline; unless a
	 * subscription is still to be attached from its backlog. */
	if (cc == GS__CONS_GONE && !s->n_outs && !s->backlog_attaches)
		gs__stop(s, GS_OK);
	return true;
}

bool gs__dispatch_buffer(gs_stage *s)
{
	bool moved = false;
	while (s->buf.count) {
		void **ev = NULL;
		size_t n = gs__buffer_peek(&s->buf, &ev);
		size_t k = gs__dispatch(s, ev, n);
		gs__buffer_consume(&s->buf, k);
		moved |= k > 0;
		if (k < n)
			break;
	}
	gs__count_buffered(s);
	return moved;
}

/* The buffer and the dispatcher's own queues, for gs_stage_stats. */
void gs__count_buffered(gs_stage *s)
{
	size_t queued = s->disp && s->disp->queued ? s->disp->queued(s) : 0;
	atomic_store_explicit(&s->st_buffered, s->buf.count + queued,
			      memory_order_relaxed);
}

void gs__wake_consumers(gs_stage *s)
{
	for (size_t i = 0; i < s->n_outs; i++) {
		gs_sub *sub = s->outs[i];
		if (sub->needs_wake) {
			sub->needs_wake = false;
			gs__wake(sub->consumer);
		}
	}
}
