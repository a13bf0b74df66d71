// SPDX-License-Identifier: MIT
/*
 * The demand dispatcher, GenStage's default: each batch goes to the
 * subscription with the most pending demand. Also the producer's reading of
 * demand, since pending demand is what the dispatcher spends.
 */
#include "internal.h"
#include "park.h"

/* Reads every subscription's demand; returns the demand that arrived since
 * the last call, and ends the subscriptions whose consumer let go. */
uint64_t gs__collect_demand(gs_stage *s, bool *changed)
{
	uint64_t fresh = 0, pending = 0;
	for (size_t i = 0; i < s->n_outs;) {
		gs_sub *sub = s->outs[i];
		int cc = atomic_load_explicit(&sub->cons_cancel,
					      memory_order_acquire);
		if (cc == GS__CONS_LIVE) {
			uint64_t g = atomic_load_explicit(&sub->granted,
							  memory_order_acquire);
			fresh += g - sub->granted_seen;
			sub->granted_seen = g;
			pending += g - sub->sent;
			i++;
			continue;
		}
		/* Demand already passed on for it is met by the next
		 * subscriber's demand instead of being asked twice. */
		s->unassigned += sub->granted_seen - sub->sent;
		int why = cc == GS__CONS_CANCEL ? GS_ECANCELED
						: sub->cons_reason;
		gs__end_out(s, i, GS_ECANCELED, why, true);
		*changed = true;
		/* A producer whose every consumer has stopped has nobody to
		 * produce for: it finishes, and so does a finite pipeline. */
		if (cc == GS__CONS_GONE && !s->n_outs)
			gs__stop(s, GS_OK);
	}
	atomic_store_explicit(&s->st_pending, pending, memory_order_relaxed);
	return fresh;
}

size_t gs__dispatch(gs_stage *s, void *const *events, size_t n)
{
	size_t sent = 0;
	while (sent < n) {
		gs_sub *best = NULL;
		size_t best_room = 0;
		for (size_t i = 0; i < s->n_outs; i++) {
			gs_sub *sub = s->outs[i];
			uint64_t pending = sub->granted_seen - sub->sent;
			if (pending <= best_room)
				continue;
			size_t room = gs__ring_space(&sub->ring, pending);
			if (room > pending)
				room = pending;
			if (room > best_room) {
				best = sub;
				best_room = room;
			}
		}
		if (!best)
			break;
		size_t k = n - sent < best_room ? n - sent : best_room;
		gs__ring_push(&best->ring, events + sent, k);
		best->sent += k;
		best->needs_wake = true;
		sent += k;
		gs__count(&s->st_out, k);
		gs__count(&s->st_bout, 1);
	}
	return sent;
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
	atomic_store_explicit(&s->st_buffered, s->buf.count,
			      memory_order_relaxed);
	return moved;
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
