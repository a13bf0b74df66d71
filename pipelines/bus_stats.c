// SPDX-License-Identifier: MIT
/*
 * The bus's counters, for the bus, per subscription (those freed summed as
 * "retired") and per topic, as structs and as one JSON object. Each counter
 * is an atomic read on its own; a snapshot is not taken atomically, so
 * in_flight is computed from counters read in an order that never makes it
 * negative (finished before accepted).
 */
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"

static uint64_t get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

GS_BUS_API gs_err gs_bus_sub_stats_get(const gs_bus_sub *s,
				       gs_bus_sub_stats *out)
{
	if (!s || !out)
		return GS_EINVAL;
	uint64_t finished = atomic_load(&s->finished);
	uint64_t accepted = atomic_load(&s->accepted);
	*out = (gs_bus_sub_stats){
		.accepted = accepted,
		.delivered = get(&s->delivered),
		.handled = get(&s->handled),
		.skipped = get(&s->skipped),
		.failed = get(&s->failed),
		.retried = get(&s->retried),
		.dropped = get(&s->dropped),
		.in_flight = accepted - finished,
		.queue_depth = gs__bus_queue_depth(s),
		.handler_ns = get(&s->handler_ns),
	};
	return GS_OK;
}

static gs_bus_topic_stats topic_stats(const gs__bus_topic *t)
{
	uint64_t completed = get(&t->completed);
	uint64_t published = get(&t->published);
	return (gs_bus_topic_stats){
		.published = published,
		.deliveries = get(&t->deliveries),
		.unrouted = get(&t->unrouted),
		.handled = get(&t->handled),
		.dropped = get(&t->dropped),
		.failed = get(&t->failed),
		.retried = get(&t->retried),
		.in_flight = published > completed ? published - completed : 0,
	};
}

GS_BUS_API gs_err gs_bus_topic_stats_get(gs_bus *bus, const char *topic,
					 gs_bus_topic_stats *out)
{
	char why[160];
	size_t len;
	if (!bus || !out || gs__bus_topic_check(topic, &len, why, sizeof why))
		return GS_EINVAL;
	pthread_mutex_lock(&bus->lock);
	const gs__bus_topic *t = gs__bus_topic_find(bus, topic, len);
	*out = t ? topic_stats(t) : (gs_bus_topic_stats){ 0 };
	pthread_mutex_unlock(&bus->lock);
	return GS_OK;
}

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlong form, no surrogate, nothing above U+10FFFF), 0 if there is
 * none. Reads no further than the first byte that breaks it, so never past
 * the NUL. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n = c < 0x80                 ? 1
		   : c >= 0xC2 && c <= 0xDF ? 2
		   : c >= 0xE0 && c <= 0xEF ? 3
		   : c >= 0xF0 && c <= 0xF4 ? 4
					    : 0;
	if (n < 2)
		return n;
	unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
	unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

/* Names are the user's: what JSON would read as syntax is escaped. Topics
 * may hold any byte, and a name cut to its first 63 bytes may end inside
 * a character: what is not UTF-8 is written as U+FFFD, so that the
 * document stays JSON. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		unsigned char c = *p;
		size_t n = utf8_len(p);
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else if (n)
			fwrite(p, 1, n, f);
		else
			fputs("\\ufffd", f);
		p += n ? n : 1;
	}
	fputc('"', f);
}

/* A topic's counters as JSON members (the object's closing brace
 * included). */
static void json_topic_counts(FILE *f, const gs__bus_topic *t)
{
	gs_bus_topic_stats st = topic_stats(t);
	fprintf(f,
		"\"published\": %llu, \"deliveries\": %llu, "
		"\"unrouted\": %llu, \"handled\": %llu, \"dropped\": %llu, "
		"\"failed\": %llu, \"retried\": %llu, \"in_flight\": %llu}",
		(unsigned long long)st.published,
		(unsigned long long)st.deliveries,
		(unsigned long long)st.unrouted, (unsigned long long)st.handled,
		(unsigned long long)st.dropped, (unsigned long long)st.failed,
		(unsigned long long)st.retried,
		(unsigned long long)st.in_flight);
}

static void json_topic(FILE *f, const gs__bus_topic *t, bool first)
{
	fprintf(f, "%s\n    {\"topic\": ", first ? "" : ",");
	json_str(f, t->name);
	fprintf(f, ", ");
	json_topic_counts(f, t);
}

/* A subscription's counters, or the retired ones' sums, as JSON members
 * (the object's closing brace included). */
static void json_counts(FILE *f, const gs_bus_sub_stats *st)
{
	fprintf(f,
		"\"accepted\": %llu, "
		"\"delivered\": %llu, \"handled\": %llu, \"skipped\": %llu, "
		"\"failed\": %llu, \"retried\": %llu, \"dropped\": %llu, "
		"\"in_flight\": %llu, \"queue_depth\": %llu, "
		"\"handler_ns\": %llu}",
		(unsigned long long)st->accepted,
		(unsigned long long)st->delivered,
		(unsigned long long)st->handled,
		(unsigned long long)st->skipped, (unsigned long long)st->failed,
		(unsigned long long)st->retried,
		(unsigned long long)st->dropped,
		(unsigned long long)st->in_flight,
		(unsigned long long)st->queue_depth,
		(unsigned long long)st->handler_ns);
}

static void json_sub(FILE *f, const gs_bus_sub *s, bool first)
{
	static const char *const policy[] = { "block", "drop_oldest",
					      "drop_newest" };
	gs_bus_sub_stats st;
	gs_bus_sub_stats_get(s, &st);
	fprintf(f, "%s\n    {\"name\": ", first ? "" : ",");
	json_str(f, s->name);
	fprintf(f,
		", \"listed\": %s, \"overflow\": \"%s\", \"queue_size\": %zu, "
		"\"concurrency\": %zu,\n     ",
		s->listed ? "true" : "false", policy[s->overflow],
		s->queue_size, s->concurrency);
	json_counts(f, &st);
}

void gs__bus_stats_retire(gs_bus *bus, const gs_bus_sub_stats *st)
{
	gs_bus_sub_stats *r = &bus->retired;
	bus->n_retired++;
	r->accepted += st->accepted;
	r->delivered += st->delivered;
	r->handled += st->handled;
	r->skipped += st->skipped;
	r->failed += st->failed;
	r->retried += st->retried;
	r->dropped += st->dropped;
	r->in_flight += st->in_flight;
	r->queue_depth += st->queue_depth;
	r->handler_ns += st->handler_ns;
}

/* Under the lock. */
static gs_bus_stats bus_stats(const gs_bus *bus)
{
	uint64_t completed = atomic_load(&bus->completed);
	uint64_t published = atomic_load(&bus->published);
	return (gs_bus_stats){
		.published = published,
		.unrouted = get(&bus->unrouted),
		.completed = completed,
		.in_flight = published > completed ? published - completed : 0,
		.held = bus->n_all,
		.routed = bus->n_subs,
		.retired = bus->n_retired,
		.retired_totals = bus->retired,
	};
}

GS_BUS_API gs_err gs_bus_stats_get(gs_bus *bus, gs_bus_stats *out)
{
	if (!bus || !out)
		return GS_EINVAL;
	pthread_mutex_lock(&bus->lock);
	*out = bus_stats(bus);
	pthread_mutex_unlock(&bus->lock);
	return GS_OK;
}

GS_BUS_API gs_err gs_bus_write_json(gs_bus *bus, FILE *f)
{
	if (!bus || !f)
		return GS_EINVAL;
	pthread_mutex_lock(&bus->lock);
	gs_bus_stats bs = bus_stats(bus);
	fprintf(f, "{\"bus\": ");
	json_str(f, bus->name);
	fprintf(f,
		", \"published\": %llu, \"unrouted\": %llu, "
		"\"completed\": %llu, \"in_flight\": %llu, \"held\": %llu, "
		"\"routed\": %llu,\n  \"retired\": {\"subscriptions\": %llu, ",
		(unsigned long long)bs.published,
		(unsigned long long)bs.unrouted,
		(unsigned long long)bs.completed,
		(unsigned long long)bs.in_flight, (unsigned long long)bs.held,
		(unsigned long long)bs.routed, (unsigned long long)bs.retired);
	json_counts(f, &bs.retired_totals);
	fprintf(f, ",\n  \"topics\": [");
	const gs__bus_routes *r = &bus->routes;
	bool first = true;
	for (size_t i = 0; i < r->cap; i++)
		if (r->slots[i]) {
			json_topic(f, r->slots[i], first);
			first = false;
		}
	/* Apart from the named topics, whose names it could share. */
	fprintf(f, "],\n  \"other_topics\": {");
	json_topic_counts(f, &r->other);
	fprintf(f, ",\n  \"subscriptions\": [");
	first = true;
	for (const gs_bus_sub *s = bus->all; s; s = s->next_all) {
		json_sub(f, s, first);
		first = false;
	}
	fprintf(f, "]}\n");
	pthread_mutex_unlock(&bus->lock);
	/* A buffered stream says nothing of a failed write until it is
	 * flushed (a full disk, say). */
	return fflush(f) || ferror(f) ? GS_EIO : GS_OK;
}
