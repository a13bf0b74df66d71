// SPDX-License-Identifier: MIT
/*
 * The bridge's inbound half: Broadway over a RabbitMQ source consuming the
 * bridge's queue, with one blocking processor that publishes each message
 * into the bus and so acks it once the bus accepted it. A full bus makes
 * the publish wait, the processor asks for nothing more, and the source's
 * prefetch keeps the rest in the broker's queue.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amqp_bridge.h"

/* How long one wait for room in the bus lasts before the processor looks
 * whether the bridge is being freed. */
#define PUBLISH_SLICE_MS 100
/* Room on the stack for an inbound envelope's source. */
#define SOURCE_ON_STACK 512

static int decode_string(const gs_amqp_meta *meta, const void *body,
			 void **payload, gs_bus_free_fn *free_fn)
{
	char *s = malloc(meta->size + 1);
	if (!s)
		return GS_ENOMEM;
	memcpy(s, body, meta->size);
	s[meta->size] = '\0';
	*payload = s;
	*free_fn = free;
	return GS_OK;
}

static const char *header(const gs_amqp_meta *meta, const char *key)
{
	for (size_t i = 0; i < meta->n_headers; i++)
		if (!strcmp(meta->headers[i].key, key))
			return meta->headers[i].value;
	return "";
}

/* The correlation_id if it is a decimal number; else 0 (the bus then
 * gives the envelope its own id). */
static uint64_t correlation(const gs_amqp_meta *meta)
{
	const char *s = meta->correlation_id;
	if (*s < '0' || *s > '9')
		return 0;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	return *end || errno ? 0 : (uint64_t)v;
}

static void pause_slice(void)
{
	struct timespec ts = { 0, PUBLISH_SLICE_MS * 1000000L };
	nanosleep(&ts, NULL);
}

/* Publishes, waiting for room for as long as the bridge lives; the
 * bus's answer (GS_ECANCELED: the bridge is being freed). */
static int publish(gs_amqp_bridge *b, const char *topic, void *payload,
		   const gs_bus_publish_opts *po)
{
	const gs_bus_msg msg = { topic, payload };
	while (!atomic_load(&b->closing)) {
		/* A closed bus stays closed: hold the message (and so the
		 * rest in the broker's queue) until the bridge is freed. */
		if (atomic_load(&b->bus_closed)) {
			pause_slice();
			continue;
		}
		int st = gs_bus_publish_batch(b->bus, &msg, 1, po);
		if (st == GS_ECLOSED) {
			atomic_store(&b->bus_closed, true);
			gs__amqp_log(&b->conf,
				     "bridge '%s': the bus is closed: "
				     "receiving stops",
				     b->id);
		} else if (st != GS_ETIMEDOUT) {
			return st;
		}
	}
	return GS_ECANCELED;
}

static int deliver(gs_amqp_bridge *b, const gs_amqp_meta *meta, gs_message *m)
{
	void *payload = NULL;
	gs_bus_free_fn free_fn = NULL;
	int st = b->o.decode ? b->o.decode(b->o.arg, meta, m->data, &payload,
					   &free_fn)
			     : decode_string(meta, m->data, &payload, &free_fn);
	if (st) {
		gs__amqp_log(&b->conf,
			     "bridge '%s': message '%s' on '%s' rejected: "
			     "decode failed (%d)",
			     b->id, meta->message_id, meta->routing_key, st);
		return st;
	}
	const char *app = meta->app_id,
		   *from = header(meta, GS__BRIDGE_SOURCE_HEADER);
	size_t len = sizeof GS_AMQP_BRIDGE_SOURCE_PREFIX + strlen(app) +
		     strlen(from) + 1;
	char stack[SOURCE_ON_STACK];
	char *source = len <= sizeof stack ? stack : malloc(len);
	if (!source) {
		st = GS_ENOMEM;
	} else {
		snprintf(source, len, "%s%s:%s", GS_AMQP_BRIDGE_SOURCE_PREFIX,
			 app, from);
		st = publish(b, meta->routing_key, payload,
			     &(gs_bus_publish_opts){
				     .source = source,
				     .free_fn = free_fn,
				     .correlation_id = correlation(meta),
				     .timeout_ms = PUBLISH_SLICE_MS });
	}
	if (source != stack)
		free(source);
	if (st && free_fn)
		free_fn(payload); /* still ours: the bus refused it */
	if (st == GS_EINVAL)
		gs__amqp_log(&b->conf,
			     "bridge '%s': message '%s' rejected: '%s' is no "
			     "bus topic",
			     b->id, meta->message_id, meta->routing_key);
	return st;
}

static int on_message(void *arg, size_t processor, gs_message *m)
{
	(void)processor;
	gs_amqp_bridge *b = arg;
	const gs_amqp_meta *meta = m->metadata;
	gs__bridge_bump(&b->c.received);
	if (!strcmp(meta->app_id, b->id)) {
		gs__bridge_bump(&b->c.skipped_own);
		return GS_OK;
	}
	int st = atomic_load(&b->closing) ? GS_ECANCELED : deliver(b, meta, m);
	if (!st) {
		gs__bridge_bump(&b->c.published);
		return GS_OK;
	}
	/* Only for good reasons is a message rejected; the rest, GS_ENOMEM
	 * included, go back to the queue. */
	if (st == GS_ECANCELED || st == GS_ENOMEM) {
		gs__bridge_bump(&b->c.requeued);
		st = GS_ECANCELED;
	} else {
		gs__bridge_bump(&b->c.rejected);
	}
	gs_message_failed(m, st);
	return GS_OK;
}

static const gs_broadway_ops in_ops = { .handle_message = on_message };

/* gs_amqp_broadway_producer's, keeping the source for the stats. */
static gs_err make_source(void *arg, gs_pipeline *p, size_t index,
			  const gs_stage_opts *opts, gs_stage **out)
{
	(void)index;
	gs_amqp_bridge *b = arg;
	gs_err err = gs_amqp_source_new(p, &b->src, opts, &b->source);
	if (!err)
		*out = gs_amqp_source_stage(b->source);
	return err;
}

static void free_source(void *arg, void *stage_state)
{
	gs_amqp_bridge *b = arg;
	gs_amqp_source_free(stage_state);
	b->source = NULL;
}

gs_err gs__bridge_in_start(gs_amqp_bridge *b)
{
	size_t n = 0;
	while (b->o.receive[n])
		n++;
	b->bindings = calloc(n, sizeof *b->bindings);
	if (!b->bindings)
		return GS_ENOMEM;
	for (size_t i = 0; i < n; i++)
		b->bindings[i] = (gs_amqp_binding){ b->exchange,
						    b->o.receive[i] };
	b->src = (gs_amqp_source_opts){ .conn = b->o.conn,
					.queue = b->queue,
					.declare = true,
					.bindings = b->bindings,
					.n_bindings = n,
					.prefetch = b->o.prefetch,
					.on_failure = GS_AMQP_REJECT,
					.drain_timeout = b->o.drain_timeout };
	gs_err err = gs_broadway_new(
		&in_ops, b,
		&(gs_broadway_opts){
			.name = "bridge-in",
			.producer = { .make = make_source,
				      .free = free_source,
				      .arg = b },
			.processors = { .concurrency = 1,
					.max_demand = b->o.prefetch,
					.blocking = true } },
		&b->in);
	if (!err) {
		err = gs_broadway_start(b->in);
		if (err)
			gs_broadway_free(b->in);
	}
	if (err) {
		gs__amqp_log(&b->conf, "bridge '%s': cannot receive: %s", b->id,
			     gs_strerror(err));
		b->in = NULL;
	}
	return err;
}

void gs__bridge_in_stop(gs_amqp_bridge *b)
{
	gs_broadway_stop(b->in);
	gs_broadway_free(b->in);
	b->in = NULL;
}
