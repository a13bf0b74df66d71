// SPDX-License-Identifier: MIT
/*
 * Freeing a finished stage while its pipeline runs on, so that a layer that
 * makes stages for things that come and go (the bus's subscriptions) runs
 * in bounded memory. Private to the library: the composition layers call
 * gs__stage_release; the engine calls the rest.
 *
 * A released stage is freed by whoever removes the last thing that may
 * still reach it: its own finish (on its worker, or its own thread), the
 * end of the last subscription (gs_sub) that names it, or the release
 * itself. Until then it stays on the pipeline's list. What may reach a
 * stage is: its run (a finished scheduled stage sits in no run queue and
 * no timer heap: finish saw to both), the subscriptions that name it at
 * either end (counted in gs_stage.refs until each is freed), and its
 * thread when blocking (which touches the stage no more once it has
 * reported itself finished; it is detached, so nobody waits for it).
 * Calls on the stage from elsewhere (gs_cast, gs_stage_stop, gs_push, a
 * new gs_subscribe) are the releaser's to rule out.
 */
#ifndef GS_REAP_H
#define GS_REAP_H

#include <stdbool.h>

#include "genstage/stage.h"

/* gs__stage_release: frees `s` once it has finished and nothing reaches it
 * any more (see above), while its pipeline runs on; then calls freed(arg)
 * (if not NULL) on the thread that freed it, with no lock held: it must
 * not wait for the pipeline (gs_pipeline_wait waits for it). A stage never
 * finished is freed, and freed called, by gs_pipeline_free. From any
 * thread, the stage's own callbacks included (it is freed after it
 * finishes); once per stage; the caller makes no call on `s` afterwards
 * and sees to it that nobody else does. */
void gs__stage_release(gs_stage *s, void (*freed)(void *arg), void *arg);

/* gs__reap_claim: under the pipeline lock, whether a released stage can
 * be freed now; if so it leaves the pipeline's list and the pipeline counts
 * it as being freed until gs__reap has freed it, which the caller does
 * next, after unlocking (`own_thread`: the caller is the blocking stage's
 * own thread, which then goes on detached). */
bool gs__reap_claim(gs_stage *s);
void gs__reap(gs_stage *s, bool own_thread);

#endif
