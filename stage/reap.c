// SPDX-License-Identifier: MIT
/*
 * Released stages: claiming one once nothing can reach it any more, taking
 * it off its pipeline's list, and freeing it while the pipeline runs on
 * (see reap.h for what "reach" covers and who frees).
 */
#include <pthread.h>

#include "internal.h"
#include "reap.h"

/* Under the pipeline lock. The list is singly linked: releases are rare,
 * and the walk is over the stages that exist now. */
static void unlink_stage(gs_pipeline *p, gs_stage *s)
{
	gs_stage **at = &p->stages;
	while (*at != s)
		at = &(*at)->next;
	*at = s->next;
	if (p->stages_tail == &s->next)
		p->stages_tail = at;
}

bool gs__reap_claim(gs_stage *s)
{
	if (!s->released || !s->finished || s->refs || s->reaped)
		return false;
	gs_pipeline *p = s->p;
	s->reaped = true;
	unlink_stage(p, s);
	/* A blocking stage's thread: a joiner that took it already (a
	 * gs_pipeline_wait) joins it; otherwise nobody will, and it goes
	 * detached (it touches the stage no more: it has finished). */
	s->detach = s->blocking && !s->joined;
	s->joined = true;
	/* Until freed: gs_pipeline_wait, and so gs_pipeline_free, wait for
	 * the freed callback too. */
	p->reaping++;
	return true;
}

void gs__reap(gs_stage *s, bool own_thread)
{
	gs_pipeline *p = s->p;
	/* Its own thread asks pthread_self: the id the creator stored under
	 * the lock is ordered only for threads that took the lock since. */
	if (s->detach)
		pthread_detach(own_thread ? pthread_self() : s->thread);
	gs__stage_free(s);
	pthread_mutex_lock(&p->lock);
	if (--p->reaping == 0)
		pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
}

void gs__stage_release(gs_stage *s, void (*freed)(void *arg), void *arg)
{
	gs_pipeline *p = s->p;
	pthread_mutex_lock(&p->lock);
	s->released = true;
	s->freed = freed;
	s->freed_arg = arg;
	bool now = gs__reap_claim(s);
	pthread_mutex_unlock(&p->lock);
	if (now)
		gs__reap(s, false);
}
