// SPDX-License-Identifier: MIT
/* The locked event queue behind the push producer and the stream. */
#include "waitq.h"

#include "internal.h"

int gs__waitq_init(gs__waitq *w, size_t limit, gs_keep keep)
{
	if (pthread_mutex_init(&w->lock, NULL))
		return -1;
	if (gs__cond_init(&w->cv)) {
		pthread_mutex_destroy(&w->lock);
		return -1;
	}
	gs__buffer_init(&w->q, limit, keep);
	return 0;
}

static void drop_cb(void *ctx, void *const *events, size_t n)
{
	gs__drop(ctx, events, n);
}

size_t gs__waitq_fini(gs__waitq *w, gs_stage *owner)
{
	size_t dropped = w->q.count;
	if (owner)
		gs__buffer_clear(&w->q, drop_cb, owner);
	gs__buffer_fini(&w->q);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->lock);
	return dropped;
}
