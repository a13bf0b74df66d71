// SPDX-License-Identifier: MIT
/*
 * The bus bridge's handle: its options checked and copied, its id, its
 * counters, and the order in which its two halves start and stop (see
 * amqp_bridge_out.c and amqp_bridge_in.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <genstage/pool.h>

#include "amqp_bridge.h"

#define DEFAULT_QUEUE_SIZE 1024
#define DEFAULT_PREFETCH 64
#define DEFAULT_DRAIN_TIMEOUT_MS 30000

void gs__bridge_bump(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static bool id_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

static bool valid_id(const char *id)
{
	size_t n = strlen(id);
	if (!n || n > GS_AMQP_BRIDGE_MAX_ID)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!id_char(id[i]))
			return false;
	return true;
}

/* "<host>.<pid>.<realtime ns, hex>": unique among the bridges of every
 * process, and across a restart that reuses a pid. Characters a host
 * name may hold outside the id's alphabet become '-'. */
static void make_id(char *id, size_t size)
{
	char host[64] = "host";
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "host");
	host[sizeof host - 1] = '\0';
	for (char *h = host; *h; h++)
		if (!id_char(*h))
			*h = '-';
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(id, size, "%s.%ld.%llx", host, (long)getpid(),
		 (unsigned long long)ts.tv_sec * 1000000000ull +
			 (unsigned long long)ts.tv_nsec);
}

static size_t count_patterns(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* Why the options are refused, or NULL. */
static const char *check(const gs_amqp_bridge_opts *o)
{
	if (!o->exchange || !o->exchange[0])
		return "no exchange";
	size_t n_fwd = count_patterns(o->forward);
	size_t n_rcv = count_patterns(o->receive);
	if (!n_fwd && !n_rcv)
		return "no patterns: neither forward nor receive";
	if (n_rcv && (!o->queue || !o->queue[0]))
		return "receive patterns without a queue";
	if (o->id && !valid_id(o->id))
		return "a bad id (letters, digits, '.', '_', '-', at most "
		       "GS_AMQP_BRIDGE_MAX_ID)";
	if (o->concurrency > GS_POOL_MAX_WORKERS)
		return "concurrency above GS_POOL_MAX_WORKERS";
	bool match;
	for (size_t i = 0; i < n_fwd; i++)
		if (gs_bus_pattern_matches(o->forward[i], "x", &match))
			return "a malformed forward pattern";
	for (size_t i = 0; i < n_rcv; i++)
		if (gs_bus_pattern_matches(o->receive[i], "x", &match))
			return "a malformed receive pattern";
	return NULL;
}

static void free_patterns(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static bool copy_patterns(char ***dst, const char *const *src)
{
	size_t n = count_patterns(src);
	*dst = NULL;
	if (!n)
		return true;
	*dst = calloc(n + 1, sizeof **dst);
	if (!*dst)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!gs__amqp_strdup(&(*dst)[i], src[i]))
			return false;
	return true;
}

static void bridge_free(gs_amqp_bridge *b)
{
	gs__amqp_conf_fini(&b->conf);
	free(b->exchange);
	free(b->queue);
	free_patterns(b->forward);
	free_patterns(b->receive);
	free(b->bindings);
	free(b);
}

static gs_err copy_opts(gs_amqp_bridge *b, const gs_amqp_bridge_opts *o)
{
	b->o = *o;
	if (!b->o.concurrency)
		b->o.concurrency = 1;
	if (!b->o.queue_size)
		b->o.queue_size = DEFAULT_QUEUE_SIZE;
	if (!b->o.prefetch)
		b->o.prefetch = DEFAULT_PREFETCH;
	if (!b->o.drain_timeout)
		b->o.drain_timeout = DEFAULT_DRAIN_TIMEOUT_MS;
	if (o->id)
		snprintf(b->id, sizeof b->id, "%s", o->id);
	else
		make_id(b->id, sizeof b->id);
	b->o.id = b->id;
	if (!gs__amqp_strdup(&b->exchange, o->exchange) ||
	    !gs__amqp_strdup(&b->queue, o->queue) ||
	    !copy_patterns(&b->forward, o->forward) ||
	    !copy_patterns(&b->receive, o->receive))
		return GS_ENOMEM;
	b->o.exchange = b->exchange;
	b->o.queue = b->queue;
	b->o.forward = (const char *const *)b->forward;
	b->o.receive = (const char *const *)b->receive;
	return GS_OK;
}

GS_AMQP_API gs_err gs_amqp_bridge_new(gs_bus *bus,
				      const gs_amqp_bridge_opts *opts,
				      gs_amqp_bridge **out)
{
	/* The log hook before the options are taken (stderr without). */
	gs__amqp_conf log_only = { .o = opts ? opts->conn
					     : (gs_amqp_conn_opts){ 0 } };
	if (!opts) {
		gs__amqp_log(&log_only, "gs_amqp_bridge_new: NULL options");
		return GS_EINVAL;
	}
	const char *why = !bus ? "NULL bus" : !out ? "NULL out" : check(opts);
	if (opts->version > GS_AMQP_BRIDGE_OPTS_VERSION)
		return gs__amqp_refuse_newer(&opts->conn, "gs_amqp_bridge_new",
					     opts->version,
					     GS_AMQP_BRIDGE_OPTS_VERSION);
	if (why) {
		gs__amqp_log(&log_only, "gs_amqp_bridge_new: %s", why);
		return GS_EINVAL;
	}
	gs_amqp_bridge *b = calloc(1, sizeof *b);
	if (!b)
		return GS_ENOMEM;
	b->bus = bus;
	gs_err err = gs__amqp_conf_init(&b->conf, &opts->conn);
	if (!err)
		err = copy_opts(b, opts);
	if (!err && b->forward)
		err = gs__bridge_out_start(b);
	if (!err && b->receive) {
		err = gs__bridge_in_start(b);
		if (err && b->forward)
			gs__bridge_out_stop(b);
	}
	if (err) {
		bridge_free(b);
		return err;
	}
	*out = b;
	return GS_OK;
}

GS_AMQP_API const char *gs_amqp_bridge_id(const gs_amqp_bridge *br)
{
	return br ? br->id : NULL;
}

GS_AMQP_API gs_err gs_amqp_bridge_stats_get(const gs_amqp_bridge *br,
					    gs_amqp_bridge_stats *out)
{
	if (!br || !out)
		return GS_EINVAL;
	const gs__bridge_counts *c = &br->c;
	gs_amqp_sink_stats sink = { 0 };
	gs_amqp_source_stats source = { 0 };
	if (br->sink)
		gs_amqp_sink_stats_get(br->sink, &sink);
	if (br->source)
		gs_amqp_source_stats_get(br->source, &source);
	*out = (gs_amqp_bridge_stats){
		.forwarded = atomic_load(&c->forwarded),
		.confirmed = atomic_load(&c->confirmed),
		.failed = atomic_load(&c->failed),
		.skipped_bridged = atomic_load(&c->skipped_bridged),
		.received = atomic_load(&c->received),
		.published = atomic_load(&c->published),
		.rejected = atomic_load(&c->rejected),
		.requeued = atomic_load(&c->requeued),
		.skipped_own = atomic_load(&c->skipped_own),
		.out_connects = sink.connects,
		.in_connects = source.connects,
	};
	return GS_OK;
}

GS_AMQP_API void gs_amqp_bridge_free(gs_amqp_bridge *br)
{
	if (!br)
		return;
	/* Inbound first, so that the outbound drain is the last word: it
	 * forwards whatever the bus accepted for it until then. */
	atomic_store(&br->closing, true);
	if (br->receive)
		gs__bridge_in_stop(br);
	if (br->forward)
		gs__bridge_out_stop(br);
	bridge_free(br);
}
