// SPDX-License-Identifier: MIT
/* The demand dispatcher, GenStage's default: each batch goes to the
 * subscription with the most pending demand. */
#include "internal.h"

static uint64_t collect(gs_stage *s, bool *changed)
{
	uint64_t fresh = 0, pending = 0;
	for (size_t i = 0; i < s->n_outs;) {
		gs_sub *sub = s->outs[i];
		/* Demand already passed on for a subscription that leaves is
		 * met by the next demand instead of being asked twice. */
		uint64_t unmet = sub->granted_seen - sub->sent;
		if (gs__end_if_cancelled(s, i, changed)) {
			s->unassigned += unmet;
			continue;
		}
		uint64_t g = atomic_load_explicit(&sub->granted,
						  memory_order_acquire);
		fresh += g - sub->granted_seen;
		sub->granted_seen = g;
		pending += g - sub->sent;
		i++;
	}
	atomic_store_explicit(&s->st_pending, pending, memory_order_relaxed);
	return fresh;
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
