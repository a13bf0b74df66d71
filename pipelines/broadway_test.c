// SPDX-License-Identifier: MIT
/*
 * The in-memory test producer and Broadway's test_message/test_batch: a
 * push producer per producer slot, messages whose acknowledger records
 * what came back under a ref, and a wait for every message of a ref to be
 * acknowledged.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "broadway_internal.h"

/* Messages pushed per gs_push call: within the push queue's size. */
#define PUSH_CHUNK 1000

struct gs__bw_test {
	pthread_mutex_t lock;
	pthread_cond_t cv; /* signalled when a ref gets acknowledgements */
	gs_broadway_test_ref *refs; /* not waited for yet */
	_Atomic size_t rr;
};

struct gs_broadway_test_ref {
	gs__bw_test *t;
	gs_broadway_test_ref *prev, *next;
	size_t expected, acked;
	gs_broadway_test_ack ack; /* arrays sized `expected` */
	gs_message *msgs;
	bool flush; /* test_message's: its batch goes out at once */
};

static gs_err test_new(void *arg, gs_pipeline *p, size_t index,
		       const gs_stage_opts *opts, gs_stage **out)
{
	(void)arg;
	(void)index;
	return gs_push_producer(p, opts, out);
}

GS_BROADWAY_API gs_broadway_producer gs_broadway_test_producer(void)
{
	return (gs_broadway_producer){ .make = test_new };
}

gs_err gs__bw_test_attach(gs_broadway *bw)
{
	if (bw->o.producer.make != test_new)
		return GS_OK;
	gs__bw_test *t = calloc(1, sizeof *t);
	if (!t)
		return GS_ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	bw->test = t;
	return GS_OK;
}

static void ref_free(gs_broadway_test_ref *r)
{
	gs_broadway_test_ack_fini(&r->ack);
	free(r->msgs);
	free(r);
}

void gs__bw_test_free(gs__bw_test *t)
{
	if (!t)
		return;
	for (gs_broadway_test_ref *r = t->refs, *next; r; r = next) {
		next = r->next;
		ref_free(r);
	}
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static void test_ack(void *ack_ref, gs_message **ok, size_t n_ok,
		     gs_message **failed, size_t n_failed)
{
	gs_broadway_test_ref *r = ack_ref;
	gs_broadway_test_ack *a = &r->ack;
	pthread_mutex_lock(&r->t->lock);
	for (size_t i = 0; i < n_ok; i++)
		a->ok[a->n_ok++] = ok[i]->data;
	for (size_t i = 0; i < n_failed; i++) {
		a->reasons[a->n_failed] = failed[i]->status;
		a->failed[a->n_failed++] = failed[i]->data;
	}
	a->ack_calls++;
	r->acked += n_ok + n_failed;
	pthread_cond_broadcast(&r->t->cv);
	pthread_mutex_unlock(&r->t->lock);
}

static const gs_acknowledger test_acknowledger = { .ack = test_ack };

bool gs__bw_test_flushes(const gs_message *m)
{
	return m->acknowledger == &test_acknowledger &&
	       ((const gs_broadway_test_ref *)m->ack_ref)->flush;
}

static gs_broadway_test_ref *ref_new(gs__bw_test *t, void *const *data,
				     size_t n, bool flush)
{
	gs_broadway_test_ref *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->t = t;
	r->flush = flush;
	r->expected = n;
	r->msgs = calloc(n, sizeof *r->msgs);
	r->ack.ok = calloc(n, sizeof *r->ack.ok);
	r->ack.failed = calloc(n, sizeof *r->ack.failed);
	r->ack.reasons = calloc(n, sizeof *r->ack.reasons);
	if (!r->msgs || !r->ack.ok || !r->ack.failed || !r->ack.reasons) {
		ref_free(r);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		r->msgs[i] = (gs_message){ .data = data[i],
					   .acknowledger = &test_acknowledger,
					   .ack_ref = r };
	return r;
}

static void link_ref(gs__bw_test *t, gs_broadway_test_ref *r)
{
	pthread_mutex_lock(&t->lock);
	r->next = t->refs;
	if (t->refs)
		t->refs->prev = r;
	t->refs = r;
	pthread_mutex_unlock(&t->lock);
}

/* Under t->lock. */
static void unlink_ref(gs__bw_test *t, gs_broadway_test_ref *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		t->refs = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

/* test_batch's and test_message's work; `flush` marks the messages'
 * batches to go out at once. */
static gs_err send_test(gs_broadway *bw, void *const *data, size_t n,
			bool flush, gs_broadway_test_ref **ref)
{
	if (!bw || !ref || !n || !data)
		return GS_EINVAL;
	gs__bw_test *t = bw->test;
	if (!t)
		return GS_ESTATE;
	gs_broadway_test_ref *r = ref_new(t, data, n, flush);
	if (!r)
		return GS_ENOMEM;
	link_ref(t, r);
	/* One producer for all, so that they enter in order. */
	size_t rr = atomic_fetch_add(&t->rr, 1);
	gs_stage *producer = bw->producers[rr % bw->n_producers];
	size_t sent = 0;
	gs_err err = GS_OK;
	while (sent < n && !err) {
		void *chunk[PUSH_CHUNK];
		size_t k = n - sent < PUSH_CHUNK ? n - sent : PUSH_CHUNK;
		for (size_t i = 0; i < k; i++)
			chunk[i] = &r->msgs[sent + i];
		err = gs_push(producer, chunk, k, -1);
		if (!err)
			sent += k;
	}
	if (err && !sent) {
		pthread_mutex_lock(&t->lock);
		unlink_ref(t, r);
		pthread_mutex_unlock(&t->lock);
		ref_free(r);
		return err == GS_ECLOSED ? GS_ESTATE : err;
	}
	/* Those that could not enter come back failed, as cancelled. */
	for (size_t i = sent; i < n; i++) {
		gs_message *m = &r->msgs[i];
		m->status = GS_ECANCELED;
		test_ack(r, NULL, 0, &m, 1);
	}
	*ref = r;
	return GS_OK;
}

GS_BROADWAY_API gs_err gs_broadway_test_batch(gs_broadway *bw,
					      void *const *data, size_t n,
					      gs_broadway_test_ref **ref)
{
	return send_test(bw, data, n, false, ref);
}

GS_BROADWAY_API gs_err gs_broadway_test_message(gs_broadway *bw, void *data,
						gs_broadway_test_ref **ref)
{
	return send_test(bw, &data, 1, true, ref);
}

GS_BROADWAY_API gs_err gs_broadway_test_wait(gs_broadway_test_ref *r,
					     int timeout_ms,
					     gs_broadway_test_ack *out)
{
	if (!r || !out)
		return GS_EINVAL;
	gs__bw_test *t = r->t;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&t->lock);
	while (r->acked < r->expected) {
		if (timeout_ms < 0)
			pthread_cond_wait(&t->cv, &t->lock);
		else if (pthread_cond_timedwait(&t->cv, &t->lock, &until))
			break;
	}
	if (r->acked < r->expected) {
		pthread_mutex_unlock(&t->lock);
		return GS_ETIMEDOUT;
	}
	unlink_ref(t, r);
	pthread_mutex_unlock(&t->lock);
	*out = r->ack;
	r->ack = (gs_broadway_test_ack){ 0 };
	ref_free(r);
	return GS_OK;
}

GS_BROADWAY_API void gs_broadway_test_ack_fini(gs_broadway_test_ack *a)
{
	if (!a)
		return;
	free(a->ok);
	free(a->failed);
	free(a->reasons);
	*a = (gs_broadway_test_ack){ 0 };
}
