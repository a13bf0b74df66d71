// SPDX-License-Identifier: MIT
/*
 * The broadcast dispatcher, accounted as GenStage's BroadcastDispatcher:
 * each subscription keeps the demand it has beyond what every subscription
 * can take (`bdemand`); only a rise in the smallest of them becomes new
 * demand (`waiting`, events all can take). A subscription joins owing what
 * is already promised, so it starts with the next dispatched event. Events
 * a selector rejects count as taken by the stream and are given back to
 * that subscription as demand.
 */
#include <stdint.h>

#include "internal.h"

/* Events filtered per step, on the stack. */
#define CHUNK 256

static void attach(gs_stage *s, gs_sub *sub)
{
	sub->bdemand = -(int64_t)s->waiting;
}

static uint64_t collect(gs_stage *s, bool *changed)
{
	for (size_t i = 0; i < s->n_outs;) {
		if (gs__end_if_cancelled(s, i, changed))
			continue;
		gs_sub *sub = s->outs[i++];
		uint64_t g = atomic_load_explicit(&sub->granted,
						  memory_order_acquire);
		sub->bdemand += (int64_t)(g - sub->granted_seen);
		sub->granted_seen = g;
	}
	int64_t min = INT64_MAX;
	for (size_t i = 0; i < s->n_outs; i++)
		if (s->outs[i]->bdemand < min)
			min = s->outs[i]->bdemand;
	if (s->n_outs && min > 0) {
		for (size_t i = 0; i < s->n_outs; i++)
			s->outs[i]->bdemand -= min;
		s->waiting += (uint64_t)min;
	}
	atomic_store_explicit(&s->st_pending, s->waiting, memory_order_relaxed);
	return s->waiting;
}

static void send_selected(gs_stage *s, gs_sub *sub, void *const *events,
			  size_t n)
{
	void *picked[CHUNK];
	for (size_t at = 0; at < n; at += CHUNK) {
		size_t m = n - at < CHUNK ? n - at : CHUNK;
		size_t k = 0;
		for (size_t j = 0; j < m; j++)
			if (sub->selector(sub->selector_arg, events[at + j]))
				picked[k++] = events[at + j];
		gs__push(s, sub, picked, k);
		sub->bdemand += (int64_t)(m - k);
	}
}

static size_t dispatch(gs_stage *s, void *const *events, size_t n)
{
	if (!s->n_outs)
		return 0;
	size_t k = n < s->waiting ? n : s->waiting;
	/* A subscription whose first demand has not arrived yet holds the
	 * stream back rather than receive more than it asked. */
	for (size_t i = 0; i < s->n_outs && k; i++) {
		size_t room = gs__sub_room(s->outs[i]);
		if (room < k)
			k = room;
	}
	if (!k)
		return 0;
	for (size_t i = 0; i < s->n_outs; i++) {
		gs_sub *sub = s->outs[i];
		if (sub->selector)
			send_selected(s, sub, events, k);
		else
			gs__push(s, sub, events, k);
	}
	s->waiting -= k;
	atomic_store_explicit(&s->st_pending, s->waiting, memory_order_relaxed);
	return k;
}

const gs__dispatcher_ops gs__dispatch_broadcast_ops = {
	.collect = collect,
	.dispatch = dispatch,
	.attach = attach,
};
