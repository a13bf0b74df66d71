// SPDX-License-Identifier: MIT
/*
 * Wake-from-parked latency: an event reaches a pipeline whose workers
 * have had nothing to do for 10 ms (so they are asleep). The measuring
 * thread stamps it and hands it to a push producer with gs_push; the
 * consumer behind it records its age. That is the path of an event from
 * outside (a socket, a timer, a user's thread) into an idle pipeline: the
 * push, the wake-up of a parked worker, the producer's run and the
 * hand-off to the consumer. The reference, measured in the same process
 * and alternating with it sample by sample, is a bare futex wake: one
 * thread stamps and wakes another asleep on a futex, which records the
 * age when it runs. A third series, for the note, sends the stamp with
 * gs_cast straight to a stage's handle_cast: the wake-up and one stage's
 * run without the push producer and the hand-off.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <genstage/genstage.h>

#include "bench.h"

/* How long everything idles before each sample. */
#define IDLE_GAP_MS 10

/* Records each sample's age; posts `done` after each. Used by both the
 * pipeline's consumer and the futex sleeper. */
typedef struct recorder {
	_Alignas(64) uint64_t *ns;
	uint64_t count;
	sem_t done;
	const gsb_params *params;
} recorder;

static void record(recorder *rec, uint64_t stamp)
{
	rec->ns[rec->count++] = gsb_now_ns() - stamp;
	gsb_progress(rec->params, rec->count);
	sem_post(&rec->done);
}

static int record_events(void *state, gs_stage *stage, gs_sub *from,
			 void **events, size_t n)
{
	(void)stage;
	(void)from;
	for (size_t i = 0; i < n; i++)
		record(state, (uintptr_t)events[i]);
	return GS_OK;
}

static int no_demand(void *state, gs_stage *stage, size_t demand)
{
	(void)state;
	(void)stage;
	(void)demand;
	return GS_OK;
}

static int record_cast(void *state, gs_stage *stage, void *msg)
{
	(void)stage;
	record(state, (uintptr_t)msg);
	return GS_OK;
}

static const gs_stage_ops record_ops = { .handle_events = record_events };
/* A producer with no consumer that only records the casts it gets. */
static const gs_stage_ops castee_ops = { .handle_demand = no_demand,
					 .handle_cast = record_cast };

/* The reference's sleeper: waits on `word` until it moves, then records
 * the age of `stamp`; `last` samples in all, unless told to quit. */
typedef struct sleeper {
	_Alignas(64) _Atomic uint32_t word;
	_Atomic bool quit;
	uint64_t stamp;
	uint64_t last;
	recorder rec;
} sleeper;

static void *sleep_on_futex(void *arg)
{
	sleeper *sl = arg;
	uint32_t seen = 0;
	while (sl->rec.count < sl->last) {
		uint32_t now;
		while ((now = atomic_load_explicit(
				&sl->word, memory_order_acquire)) == seen)
			syscall(SYS_futex, &sl->word, FUTEX_WAIT_PRIVATE, seen,
				NULL, NULL, 0);
		seen = now;
		if (atomic_load(&sl->quit))
			break;
		record(&sl->rec, sl->stamp);
	}
	return NULL;
}

static void futex_sample(sleeper *sl)
{
	sl->stamp = gsb_now_ns();
	atomic_fetch_add_explicit(&sl->word, 1, memory_order_release);
	syscall(SYS_futex, &sl->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void await(recorder *rec)
{
	while (sem_wait(&rec->done))
		continue;
}

typedef struct wake_run {
	recorder rec, cast;
	sleeper *sl;
	gs_pipeline *pl;
	gs_stage *push, *cons, *castee;
} wake_run;

static gs_err build(wake_run *w)
{
	gs_err err = gs_pipeline_new(NULL, &w->pl);
	if (!err)
		err = gs_push_producer(
			w->pl, &(gs_stage_opts){ .name = "push" }, &w->push);
	if (!err)
		err = gs_stage_new(w->pl, GS_CONSUMER, &record_ops, &w->rec,
				   &(gs_stage_opts){ .name = "record" },
				   &w->cons);
	if (!err)
		err = gs_subscribe(w->cons, w->push,
				   &(gs_sub_opts){ .max_demand = 1000 }, NULL);
	if (!err)
		err = gs_stage_new(w->pl, GS_PRODUCER, &castee_ops, &w->cast,
				   &(gs_stage_opts){ .name = "castee" },
				   &w->castee);
	return err ? err : gs_pipeline_start(w->pl);
}

/* Each sample: idle, push one stamped event, wait for it; idle, wake
 * the sleeper, wait for it; idle, cast a stamp, wait for it. */
static gs_err measure(wake_run *w, uint64_t samples, gsb_result *r)
{
	double spent = 0;
	for (uint64_t i = 0; i < samples; i++) {
		gsb_sleep_ms(IDLE_GAP_MS);
		double t0 = gsb_now();
		void *ev = (void *)(uintptr_t)gsb_now_ns();
		gs_err err = gs_push(w->push, &ev, 1, 0);
		if (err)
			return err;
		await(&w->rec);
		spent += gsb_now() - t0;
		gsb_sleep_ms(IDLE_GAP_MS);
		futex_sample(w->sl);
		await(&w->sl->rec);
		gsb_sleep_ms(IDLE_GAP_MS);
		err = gs_cast(w->castee, (void *)(uintptr_t)gsb_now_ns());
		if (err)
			return err;
		await(&w->cast);
	}
	r->seconds = spent;
	return GS_OK;
}

void gsb_run_wake(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	(void)t;
	wake_run w = { .rec = { .ns = malloc(p->events * sizeof *w.rec.ns),
				.params = p },
		       .cast = { .ns = malloc(p->events * sizeof *w.cast.ns),
				 .params = p },
		       .sl = aligned_alloc(64, sizeof *w.sl) };
	uint64_t *ref = malloc(p->events * sizeof *ref);
	gs_err err = w.rec.ns && w.cast.ns && w.sl && ref ? GS_OK : GS_ENOMEM;
	pthread_t th;
	bool started = false;
	sem_init(&w.rec.done, 0, 0);
	sem_init(&w.cast.done, 0, 0);
	if (w.sl) {
		*w.sl = (sleeper){ .last = p->events,
				   .rec = { .ns = ref, .params = p } };
		sem_init(&w.sl->rec.done, 0, 0);
	}
	r->lat.idle_cpu = -1;
	if (!err)
		err = build(&w);
	if (!err && pthread_create(&th, NULL, sleep_on_futex, w.sl))
		err = GS_ESPAWN;
	started = !err;
	if (!err)
		err = measure(&w, p->events, r);
	if (!err)
		gsb_measure_idle(&r->lat);
	if (started && err) {
		/* The sleeper waits for a sample that will not come. */
		atomic_store(&w.sl->quit, true);
		futex_sample(w.sl);
	}
	if (started)
		pthread_join(th, NULL);
	/* The castee never finishes: stop them all. */
	gs_pipeline_free(w.pl);
	r->err = err;
	r->delivered = r->checksum = w.rec.count;
	r->expected = p->events;
	if (!err) {
		double p50, p99;
		gsb_percentiles(w.rec.ns, w.rec.count, &r->lat.p50_us,
				&r->lat.p99_us);
		gsb_percentiles(ref, w.sl->rec.count, &r->lat.ref_p50_us,
				&r->lat.ref_p99_us);
		gsb_percentiles(w.cast.ns, w.cast.count, &p50, &p99);
		snprintf(r->note, sizeof r->note,
			 "gs_cast -> handle_cast of an idle stage: p50 %.1f "
			 "us (%.2fx the futex wake's), p99 %.1f us",
			 p50, p50 / r->lat.ref_p50_us, p99);
	} else {
		snprintf(r->note, sizeof r->note, "genstage: %s",
			 gs_strerror(err));
	}
	if (w.sl)
		sem_destroy(&w.sl->rec.done);
	sem_destroy(&w.cast.done);
	sem_destroy(&w.rec.done);
	free(ref);
	free(w.sl);
	free(w.cast.ns);
	free(w.rec.ns);
}
