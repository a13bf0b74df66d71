// SPDX-License-Identifier: MIT
/* The demand dispatcher, GenStage's default: each batch goes to the
 * subscription with the most pending demand. */
#include "annotate.h"
#include "internal.h"

static uint64_t collect(gs_stage *s, bool *changed)
{
	uint64_t pending = 0;
	for (size_t i = 0; i < s->n_outs;) {
		if (gs__end_if_cancelled(s, i, changed))
			continue;
		gs_sub *sub = s->outs[i++];
		sub->granted_seen = atomic_load_explicit(&sub->granted,
							 memory_order_acquire);
		GS__HA(&sub->granted);
		pending += sub->granted_seen - sub->sent;
	}
	atomic_store_explicit(&s->st_pending, pending, memory_order_relaxed);
	return pending;
}

static size_t dispatch(gs_stage *s, void *const *events, size_t n)
{
	size_t sent = 0;
	while (sent < n) {
		gs_sub *best = NULL;
		size_t best_room = 0;
		for (size_t i = 0; i < s->n_outs; i++) {
			gs_sub *sub = s->outs[i];
			if (sub->granted_seen - sub->sent <= best_room)
				continue;
			size_t room = gs__sub_room(sub);
			if (room > best_room) {
				best = sub;
				best_room = room;
			}
		}
		if (!best)
			break;
		size_t k = n - sent < best_room ? n - sent : best_room;
		sent += gs__push(s, best, events + sent, k);
	}
	return sent;
}

const gs__dispatcher_ops gs__dispatch_demand_ops = {
	.collect = collect,
	.dispatch = dispatch,
};
