// SPDX-License-Identifier: MIT
/*
 * The event bus (public API only): the talk's slow-listener benchmark, a
 * fan-out over overlapping patterns, and four threads publishing at once.
 *
 * bus-slow: events to 10 subscribers whose handler sleeps 10 ms. Its ideal
 * is measured in the same run: 1000 sleeps of 10 ms on as many threads at
 * once as the bus has handler threads (10, or 100 with concurrency 10), so
 * that both pay the same wake-up costs; the ratio of the bus's time to
 * that ideal, scaled to the run's events, is the result (own_ratio). The
 * bus's time runs from the first publish to the last envelope completed
 * (every subscriber done with every event): the ideal times each thread
 * from its start to its last sleep, without making or joining threads, so
 * the bus's close, which ends its stages and joins their threads, is
 * timed apart and reported in the note.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <genstage/genstage.h>

#include "bench.h"

/* --- the fan-out's shape, shared with the baseline --------------------- */

/* 16 topics; each matches exactly GSB_FANOUT_MATCHES subscriptions. */
const char *const gsb_fanout_topics[GSB_FANOUT_TOPICS] = {
	"shop.eu.created",  "shop.eu.paid",      "shop.eu.shipped",
	"shop.eu.refunded", "shop.us.created",   "shop.us.paid",
	"shop.us.shipped",  "shop.us.refunded",  "shop.asia.created",
	"shop.asia.paid",   "shop.asia.shipped", "shop.asia.refunded",
	"shop.af.created",  "shop.af.paid",      "shop.af.shipped",
	"shop.af.refunded",
};

/* 8 subscriptions: one per region, two by kind, two on everything. */
const char *const *const gsb_fanout_patterns[GSB_FANOUT_SUBS] = {
	(const char *const[]){ "shop.eu.*", NULL },
	(const char *const[]){ "shop.us.*", NULL },
	(const char *const[]){ "shop.asia.*", NULL },
	(const char *const[]){ "shop.af.*", NULL },
	(const char *const[]){ "shop.*.created", "shop.*.paid", NULL },
	(const char *const[]){ "#.shipped", "#.refunded", NULL },
	(const char *const[]){ "shop.#", NULL },
	(const char *const[]){ "#", NULL },
};

/* --- bus-fanout ---------------------------------------------------------- */

#define FANOUT_BATCH 64 /* unless the topology says */
#define FANOUT_QUEUE 4096

typedef struct tally {
	_Alignas(64) uint64_t sum, count;
	const gsb_params *params;
	_Atomic uint64_t *total;
} tally;

static int tally_env(void *arg, const gs_bus_envelope *env)
{
	tally *t = arg;
	t->sum += (uintptr_t)env->payload;
	if (++t->count % GSB_PROGRESS_EVERY == 0)
		gsb_progress(t->params, atomic_fetch_add_explicit(
						t->total, GSB_PROGRESS_EVERY,
						memory_order_relaxed));
	return GS_BUS_DONE;
}

/* Sums what every subscription received into r; the expected sum is the
 * publisher's. */
static void tally_result(const tally *t, size_t n, gsb_result *r)
{
	r->delivered = r->checksum = 0;
	for (size_t i = 0; i < n; i++) {
		r->delivered += t[i].count;
		r->checksum += t[i].sum;
	}
}

static void note_err(gsb_result *r, gs_err err, const char *what)
{
	r->err = err;
	snprintf(r->note, sizeof r->note, "%s: %s", what, gs_strerror(err));
}

void gsb_run_bus_fanout(const gsb_topology *t, const gsb_params *p,
			gsb_result *r)
{
	static tally subs[GSB_FANOUT_SUBS];
	_Atomic uint64_t total = 0;
	size_t per_call = t->batch && t->batch < FANOUT_BATCH ? t->batch
							      : FANOUT_BATCH;
	gs_bus *bus;
	gs_err err = gs_bus_new(&(gs_bus_opts){ .name = "fanout" }, &bus);
	for (size_t i = 0; !err && i < GSB_FANOUT_SUBS; i++) {
		subs[i] = (tally){ .params = p, .total = &total };
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){ .patterns = gsb_fanout_patterns[i],
					    .handler = tally_env,
					    .arg = &subs[i],
					    .queue_size = FANOUT_QUEUE },
			NULL);
	}
	if (err) {
		note_err(r, err, "subscribe");
		return;
	}
	uint64_t published = p->events / GSB_FANOUT_MATCHES;
	gs_bus_msg batch[FANOUT_BATCH];
	uint64_t expected = 0;
	double t0 = gsb_now();
	for (uint64_t v = 1; !err && v <= published;) {
		size_t n = 0;
		for (; n < per_call && v <= published; n++, v++) {
			batch[n] = (gs_bus_msg){
				.topic =
					gsb_fanout_topics[v % GSB_FANOUT_TOPICS],
				.payload = (void *)(uintptr_t)v
			};
			expected += v * GSB_FANOUT_MATCHES;
		}
		/* One at a time, the call a first program makes. */
		err = n == 1 ? gs_bus_publish(bus, batch[0].topic,
					      batch[0].payload, NULL,
					      GS_BUS_FOREVER)
			     : gs_bus_publish_batch(
				       bus, batch, n,
				       &(gs_bus_publish_opts){
					       .timeout_ms = GS_BUS_FOREVER });
	}
	if (!err)
		err = gs_bus_close(bus, GS_BUS_DRAIN);
	r->seconds = gsb_now() - t0;
	if (err)
		note_err(r, err, "publish");
	tally_result(subs, GSB_FANOUT_SUBS, r);
	r->expected = expected;
	if (!err)
		snprintf(r->note, sizeof r->note,
			 "%llu published in batches of %zu, %d subscriptions "
			 "per topic; per subscription %llu .. %llu",
			 (unsigned long long)published, per_call,
			 GSB_FANOUT_MATCHES, (unsigned long long)subs[0].count,
			 (unsigned long long)subs[7].count);
	gs_bus_free(bus);
}

/* --- bus-publish-4 ------------------------------------------------------ */

#define PUBLISHERS 4
#define LISTENERS 4

typedef struct pub_thread {
	gs_bus *bus;
	uint64_t first, count; /* publishes first, first + 4, ... */
	uint64_t *lat_ns;      /* one per publish */
	gs_err err;
} pub_thread;

static void *publish_share(void *arg)
{
	pub_thread *pt = arg;
	uint64_t v = pt->first;
	for (uint64_t i = 0; i < pt->count && !pt->err; i++, v += PUBLISHERS) {
		uint64_t t0 = gsb_now_ns();
		pt->err = gs_bus_publish(
			pt->bus, gsb_fanout_topics[v % GSB_FANOUT_TOPICS],
			(void *)(uintptr_t)v, NULL, GS_BUS_FOREVER);
		pt->lat_ns[i] = gsb_now_ns() - t0;
	}
	return NULL;
}

void gsb_run_bus_publish_4(const gsb_topology *t, const gsb_params *p,
			   gsb_result *r)
{
	(void)t;
	static tally subs[LISTENERS];
	_Atomic uint64_t total = 0;
	uint64_t *lat = malloc(p->events * sizeof *lat);
	gs_bus *bus = NULL;
	gs_err err = lat ? gs_bus_new(NULL, &bus) : GS_ENOMEM;
	for (size_t i = 0; !err && i < LISTENERS; i++) {
		subs[i] = (tally){ .params = p, .total = &total };
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){
				.patterns = (const char *const[]){ "#", NULL },
				.handler = tally_env,
				.arg = &subs[i],
				.queue_size = FANOUT_QUEUE },
			NULL);
	}
	pub_thread pt[PUBLISHERS];
	uint64_t at = 0;
	for (size_t i = 0; i < PUBLISHERS; i++) {
		uint64_t share = p->events / PUBLISHERS +
				 (i < p->events % PUBLISHERS);
		pt[i] = (pub_thread){ bus, i + 1, share, lat + at, err };
		at += share;
	}
	double t0 = gsb_now();
	if (!err && !gsb_run_threads(PUBLISHERS, publish_share, pt, sizeof *pt))
		err = GS_ESPAWN;
	for (size_t i = 0; i < PUBLISHERS && !err; i++)
		err = pt[i].err;
	if (bus && !err)
		err = gs_bus_close(bus, GS_BUS_DRAIN);
	r->seconds = gsb_now() - t0;
	tally_result(subs, LISTENERS, r);
	r->delivered /= LISTENERS;
	r->expected = gsb_expected_sum(p->events, 0) * LISTENERS;
	if (err) {
		note_err(r, err, "bus-publish-4");
	} else {
		double p50, p99;
		gsb_percentiles(lat, p->events, &p50, &p99); /* sorts lat */
		snprintf(r->note, sizeof r->note,
			 "publish latency p50 %.2f us, p99 %.2f us, max "
			 "%.1f us; %d subscriptions on '#', queues of %d",
			 p50, p99, (double)lat[p->events - 1] / 1e3, LISTENERS,
			 FANOUT_QUEUE);
	}
	gs_bus_free(bus);
	free(lat);
}

/* --- bus-slow ----------------------------------------------------------- */

#define SLOW_SUBS 10
#define SLOW_MS 10
#define SLEEPS 1000

typedef struct sleeper {
	size_t count;
	double spent; /* seconds, the sum of this thread's sleeps */
} sleeper;

static void *sleep_share(void *arg)
{
	sleeper *s = arg;
	double t0 = gsb_now();
	for (size_t i = 0; i < s->count; i++)
		gsb_sleep_ms(SLOW_MS);
	s->spent = gsb_now() - t0;
	return NULL;
}

/* The mean length of one sleep, over SLEEPS sleeps on `threads` threads
 * at once; 0 on failure. */
static double measure_sleep(size_t threads)
{
	sleeper *s = calloc(threads, sizeof *s);
	if (!s)
		return 0;
	for (size_t i = 0; i < threads; i++)
		s[i].count = SLEEPS / threads + (i < SLEEPS % threads);
	bool ok = gsb_run_threads(threads, sleep_share, s, sizeof *s);
	double total = 0;
	for (size_t i = 0; i < threads; i++)
		total += s[i].spent;
	free(s);
	return ok ? total / SLEEPS : 0;
}

typedef struct slow_done {
	_Atomic uint64_t completed, sum, matched_all;
	_Atomic uint64_t slept_ns, sleeps; /* the handlers' own sleeps */
	double last; /* when the last envelope completed */
	const gsb_params *params;
} slow_done;

static int sleep_handler(void *arg, const gs_bus_envelope *env)
{
	(void)env;
	slow_done *d = arg;
	double t0 = gsb_now();
	gsb_sleep_ms(SLOW_MS);
	atomic_fetch_add(&d->slept_ns, (uint64_t)((gsb_now() - t0) * 1e9));
	atomic_fetch_add(&d->sleeps, 1);
	return GS_BUS_DONE;
}

static void slow_complete(void *arg, const gs_bus_envelope *env,
			  const gs_bus_summary *sum)
{
	slow_done *d = arg;
	atomic_fetch_add(&d->sum, (uintptr_t)env->payload);
	atomic_fetch_add(&d->matched_all, sum->handled == SLOW_SUBS);
	uint64_t done = atomic_fetch_add(&d->completed, 1) + 1;
	/* The close that reads it waits for this hook to return. */
	if (done == d->params->events)
		d->last = gsb_now();
	gsb_progress(d->params, done);
}

void gsb_run_bus_slow(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	size_t conc = t->concurrency ? t->concurrency : 1;
	/* Sleeps get longer and shorter as the machine's load moves: they
	 * are measured before and after the bus's run, and averaged. */
	double before = measure_sleep(SLOW_SUBS * conc);
	slow_done d = { .params = p };
	gs_bus *bus;
	gs_err err = before > 0 ? gs_bus_new(
					  &(gs_bus_opts){
						  .on_complete = slow_complete,
						  .complete_arg = &d },
					  &bus)
				: GS_ESPAWN;
	for (size_t i = 0; !err && i < SLOW_SUBS; i++)
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){
				.patterns = (const char *const[]){ "#", NULL },
				.handler = sleep_handler,
				.arg = &d,
				.queue_size = 128,
				.concurrency = conc,
				.blocking = true },
			NULL);
	double t0 = gsb_now();
	for (uint64_t v = 1; !err && v <= p->events; v++)
		err = gs_bus_publish(bus, "talk.event", (void *)(uintptr_t)v,
				     NULL, GS_BUS_FOREVER);
	if (!err)
		err = gs_bus_close(bus, GS_BUS_DRAIN);
	double closed = gsb_now();
	double after = err ? 0 : measure_sleep(SLOW_SUBS * conc);
	double one = (before + after) / 2;
	r->delivered = atomic_load(&d.completed);
	r->seconds = (r->delivered == p->events ? d.last : closed) - t0;
	r->checksum = atomic_load(&d.sum);
	r->expected = gsb_expected_sum(p->events, 0);
	if (atomic_load(&d.matched_all) != p->events)
		r->expected++; /* a delivery went missing: fail the check */
	/* Each handler thread sleeps its share of the events in turn. */
	double turns = (double)((p->events + conc - 1) / conc);
	double ideal = one * turns;
	r->own_ratio = after > 0 ? r->seconds / ideal : 0;
	uint64_t sleeps = atomic_load(&d.sleeps);
	double handlers = sleeps ? (double)atomic_load(&d.slept_ns) /
					   (double)sleeps / 1e6
				 : 0;
	if (err)
		note_err(r, err, "bus-slow");
	else
		snprintf(r->note, sizeof r->note,
			 "%.3f s to last completion (+%.1f ms to close); "
			 "ideal %.3f s: 2x%d sleeps of %.3f/%.3f ms on %zu "
			 "threads; %.4f of handlers' %.3f ms sleeps; ratio "
			 "%.4f",
			 r->seconds, (closed - t0 - r->seconds) * 1e3, ideal,
			 SLEEPS, before * 1e3, after * 1e3, SLOW_SUBS * conc,
			 handlers > 0 ? r->seconds / (handlers / 1e3 * turns)
				      : 0,
			 handlers, r->own_ratio);
	gs_bus_free(bus);
}
