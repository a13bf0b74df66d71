// SPDX-License-Identifier: MIT
/*
 * What the bus suites share: heap payloads whose frees are counted, a
 * recording subscriber (ids in the order handled, a count per id, a gate
 * that holds its handler until the test opens it, scripted failures), a
 * log hook that counts, and the conservation check every test ends with.
 * Handlers never assert (Criterion's asserts belong to the test thread):
 * they record, and the test checks after gs_bus_close.
 */
#ifndef BUS_TEST_H
#define BUS_TEST_H

#include <criterion/criterion.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_test.h"

/* A heap payload: ASan reports any not freed, or freed twice. */
typedef struct payload {
	uint64_t id;
	uint64_t from; /* the publishing thread, where it matters */
} payload;

static _Atomic uint64_t bt_freed;

static inline payload *bt_payload(uint64_t id, uint64_t from)
{
	payload *p = malloc(sizeof *p);
	cr_assert_not_null(p);
	*p = (payload){ id, from };
	return p;
}

static inline void bt_free(void *p)
{
	free(p);
	atomic_fetch_add(&bt_freed, 1);
}

static inline void bt_yield(void)
{
	sched_yield();
}

/* A recording subscriber. Set the options before subscribing. */
typedef struct bt_sub {
	gs_bus_sub *sub;
	/* options */
	bool gated;        /* hold each handler until `open` */
	uint64_t fail_id;  /* this id fails every attempt */
	uint64_t flaky_id; /* this id fails its first two attempts */
	int skip_every;    /* ids divisible by it are skipped */
	unsigned spin;     /* busy work per event */
	bool publish_next; /* republish on `next_topic` from the handler */
	gs_bus *bus;
	const char *next_topic;
	/* records */
	_Atomic bool open;
	_Atomic uint64_t holding; /* handlers waiting at the gate */
	_Atomic uint64_t calls;   /* handler calls, retries included */
	_Atomic uint64_t flaky_calls;
	_Atomic uint64_t dead; /* dead_letter calls */
	_Atomic int dead_error;
	uint64_t ids[8192]; /* payload ids, in the order handled */
	/* The first envelopes, copied with their strings (the envelope's
	 * own are the bus's, freed once it completes). */
	struct {
		gs_bus_envelope env;
		char topic[32], source[32];
	} envs[16];
	_Atomic size_t n;
	_Atomic unsigned char seen[8192];
	_Atomic uint64_t current_ok; /* gs_bus_current() was the envelope */
	_Atomic uint64_t republish_failed;
} bt_sub;

static inline int bt_handle(void *arg, const gs_bus_envelope *env)
{
	bt_sub *b = arg;
	atomic_fetch_add(&b->calls, 1);
	if (gs_bus_current() == env)
		atomic_fetch_add(&b->current_ok, 1);
	const payload *p = env->payload;
	uint64_t id = p ? p->id : 0;
	if (b->gated) {
		atomic_fetch_add(&b->holding, 1);
		while (!atomic_load(&b->open))
			bt_yield();
		atomic_fetch_sub(&b->holding, 1);
	}
	for (volatile unsigned i = 0; i < b->spin; i++)
		continue;
	if (b->fail_id && id == b->fail_id)
		return GS_TEST_FAIL;
	if (b->flaky_id && id == b->flaky_id &&
	    atomic_fetch_add(&b->flaky_calls, 1) < 2)
		return GS_TEST_FAIL;
	size_t at = atomic_fetch_add(&b->n, 1);
	if (at < sizeof b->ids / sizeof *b->ids)
		b->ids[at] = id;
	if (at < sizeof b->envs / sizeof *b->envs) {
		b->envs[at].env = *env;
		snprintf(b->envs[at].topic, 32, "%s", env->topic);
		snprintf(b->envs[at].source, 32, "%s", env->source);
	}
	if (id < sizeof b->seen)
		atomic_fetch_add(&b->seen[id], 1);
	if (b->publish_next) {
		/* Timeout 0: a handler that may not block must not wait. */
		payload *next = bt_payload(id, 0);
		if (gs_bus_publish(b->bus, b->next_topic, next, bt_free, 0)) {
			free(next);
			atomic_fetch_add(&b->republish_failed, 1);
		}
	}
	return b->skip_every && id % (uint64_t)b->skip_every == 0 ? GS_BUS_SKIP
								  : GS_BUS_DONE;
}

static inline void bt_dead(void *arg, const gs_bus_envelope *env, int error)
{
	(void)env;
	bt_sub *b = arg;
	atomic_store(&b->dead_error, error);
	atomic_fetch_add(&b->dead, 1);
}

/* Subscribes b with these options (handler, arg and dead letter set
 * here); asserts success. */
static inline void bt_subscribe(gs_bus *bus, bt_sub *b, gs_bus_sub_opts o)
{
	o.handler = bt_handle;
	o.arg = b;
	o.dead_letter = bt_dead;
	/* A gated handler blocks: it must not hold an executor's worker. */
	o.blocking |= b->gated;
	GS_OK_OR_DIE(gs_bus_subscribe(bus, &o, &b->sub));
}

static inline gs_bus_sub_stats bt_stats(const bt_sub *b)
{
	gs_bus_sub_stats st;
	GS_OK_OR_DIE(gs_bus_sub_stats_get(b->sub, &st));
	return st;
}

/* The conservation law, once the subscription has finished. */
static inline void bt_conserved(const bt_sub *b)
{
	gs_bus_sub_stats st = bt_stats(b);
	gs_test_bus_conserved(&st, gs_bus_sub_name(b->sub));
	cr_expect_eq(st.queue_depth, 0);
}

/* Counts the bus's log lines (a refusal must say why). */
typedef struct bt_log {
	_Atomic int lines;
} bt_log;

static inline void bt_log_line(void *arg, const char *msg)
{
	bt_log *l = arg;
	if (msg && *msg)
		atomic_fetch_add(&l->lines, 1);
}

static inline gs_bus *bt_bus(const gs_bus_opts *o)
{
	gs_bus *bus = NULL;
	GS_OK_OR_DIE(gs_bus_new(o, &bus));
	return bus;
}

/* A list of recorders, as (count, array), for bt_begin and bt_end. */
#define BT_SUBS(...)                                                           \
	sizeof((bt_sub *[]){ __VA_ARGS__ }) / sizeof(bt_sub *), (bt_sub *[])   \
	{                                                                      \
		__VA_ARGS__                                                    \
	}

/* A test's start: no payload freed yet, the recorders (static: they are
 * too big for the stack) cleared, and a bus. */
static inline gs_bus *bt_begin(const gs_bus_opts *o, size_t n,
			       bt_sub *const *subs)
{
	atomic_store(&bt_freed, 0);
	for (size_t i = 0; i < n; i++)
		memset(subs[i], 0, sizeof *subs[i]);
	return bt_bus(o);
}

/* A test's end: the bus closed (drain) and freed, the conservation law
 * for every recorder, and each of the `payloads` freed once. */
static inline void bt_end(gs_bus *bus, uint64_t payloads, size_t n,
			  bt_sub *const *subs)
{
	GS_OK_OR_DIE(gs_bus_close(bus, GS_BUS_DRAIN));
	for (size_t i = 0; i < n; i++)
		bt_conserved(subs[i]);
	gs_bus_free(bus);
	cr_expect_eq(atomic_load(&bt_freed), payloads, "%llu payloads freed",
		     (unsigned long long)atomic_load(&bt_freed));
}

/* The bus's counters as JSON, in a string the caller frees. */
static inline char *bt_json(gs_bus *bus)
{
	char *json = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&json, &len);
	cr_assert_not_null(f);
	GS_OK_OR_DIE(gs_bus_write_json(bus, f));
	fclose(f);
	return json;
}

static inline void bt_publish(gs_bus *bus, const char *topic, uint64_t id)
{
	GS_OK_OR_DIE(gs_bus_publish(bus, topic, bt_payload(id, 0), bt_free,
				    GS_BUS_FOREVER));
}

#endif
