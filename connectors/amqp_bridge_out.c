// SPDX-License-Identifier: MIT
/*
 * The bridge's outbound half: a bus subscription whose handler encodes an
 * envelope, pushes it (a `fwd` on the handler's stack) to a sink through a
 * push producer, and waits until the sink hands it back confirmed or
 * failed. The handler's result is the envelope's, so the bus completes an
 * envelope only once the broker has it, and a slow broker fills the
 * subscription's queue: the bus's own back-pressure. At most `concurrency`
 * handlers wait at once, so the sink never holds more unconfirmed.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "amqp_bridge.h"

/* One forward, alive while its handler waits. */
typedef struct fwd {
	gs_amqp_out out;
	gs_amqp_header headers[2];
	char message_id[GS_AMQP_BRIDGE_MAX_ID + 24];
	char correlation[24], causation[24];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool settled;
	int status;
} fwd;

/* The sink's encode: the forward was encoded on the handler's thread. */
static int sink_encode(void *arg, void *event, gs_amqp_out *out)
{
	(void)arg;
	*out = ((const fwd *)event)->out;
	return GS_OK;
}

/* Wakes the handler; from here on the fwd may be gone. */
static void settle(void *event, int status)
{
	fwd *f = event;
	pthread_mutex_lock(&f->lock);
	f->status = status;
	f->settled = true;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static void sink_confirmed(void *arg, void *event, int status)
{
	(void)arg;
	settle(event, status);
}

/* A forward the push producer dropped: its sink is gone. */
static void drop_fwd(void *event, void *arg)
{
	(void)arg;
	settle(event, GS_ECLOSED);
}

/* NUL-terminated string payloads, the default. */
static int encode_string(const gs_bus_envelope *env, gs_amqp_out *out)
{
	out->body = env->payload ? env->payload : "";
	out->size = strlen(out->body);
	return GS_OK;
}

static void fill_ids(gs_amqp_bridge *b, const gs_bus_envelope *env, fwd *f)
{
	snprintf(f->message_id, sizeof f->message_id, "%s:%" PRIu64, b->id,
		 env->id);
	snprintf(f->correlation, sizeof f->correlation, "%" PRIu64,
		 env->correlation_id);
	snprintf(f->causation, sizeof f->causation, "%" PRIu64,
		 env->causation_id);
	f->headers[0] = (gs_amqp_header){ GS__BRIDGE_SOURCE_HEADER,
					  env->source };
	f->headers[1] = (gs_amqp_header){ GS__BRIDGE_CAUSATION_HEADER,
					  f->causation };
	f->out.exchange = b->exchange;
	f->out.routing_key = env->topic;
	f->out.message_id = f->message_id;
	f->out.correlation_id = f->correlation;
	f->out.app_id = b->id;
	f->out.headers = f->headers;
	f->out.n_headers = 2;
}

/* Hands f to the sink and waits for its end. */
static int send_and_wait(gs_amqp_bridge *b, fwd *f)
{
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	void *ev = f;
	int st = gs_push(b->push, &ev, 1, -1);
	if (!st) {
		pthread_mutex_lock(&f->lock);
		while (!f->settled)
			pthread_cond_wait(&f->cond, &f->lock);
		st = f->status;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	return st;
}

static int forward(void *arg, const gs_bus_envelope *env)
{
	gs_amqp_bridge *b = arg;
	if (!b->o.forward_bridged &&
	    !strncmp(env->source, GS_AMQP_BRIDGE_SOURCE_PREFIX,
		     sizeof GS_AMQP_BRIDGE_SOURCE_PREFIX - 1)) {
		gs__bridge_bump(&b->c.skipped_bridged);
		return GS_BUS_SKIP;
	}
	gs__bridge_bump(&b->c.forwarded);
	fwd f = { .status = GS_ECLOSED };
	int st = GS_ECLOSED;
	if (!atomic_load(&b->abandon)) {
		st = b->o.encode ? b->o.encode(b->o.arg, env, &f.out)
				 : encode_string(env, &f.out);
		/* A negative code would read as GS_BUS_SKIP. */
		if (st < 0)
			st = GS_EINVAL;
		if (!st) {
			fill_ids(b, env, &f);
			st = send_and_wait(b, &f);
			if (b->o.release)
				b->o.release(b->o.arg, env, &f.out);
		}
	}
	gs__bridge_bump(st ? &b->c.failed : &b->c.confirmed);
	return st;
}

static void dead_letter(void *arg, const gs_bus_envelope *env, int error)
{
	gs_amqp_bridge *b = arg;
	gs__amqp_log(&b->conf,
		     "bridge '%s': event %" PRIu64 " on '%s' not forwarded: %s",
		     b->id, env->id, env->topic, gs_strerror(error));
	if (b->o.dead_letter)
		b->o.dead_letter(b->o.arg, env, error);
}

/* The sink's pipeline reports here; once the sink has stopped (it gave
 * up reconnecting), forwards fail at once instead of waiting in the push
 * producer for ever. */
static void out_log(void *arg, gs_log_level level, const gs_stage *stage,
		    const char *msg)
{
	gs_amqp_bridge *b = arg;
	gs__amqp_log(&b->conf, "bridge '%s': %s", b->id, msg);
	if (level == GS_LOG_ERROR && b->sink &&
	    stage == gs_amqp_sink_stage(b->sink) &&
	    !atomic_exchange(&b->abandon, true))
		gs_stage_stop(b->push, GS_ECLOSED);
}

static gs_err out_pipeline(gs_amqp_bridge *b)
{
	gs_err err = gs_pipeline_new(
		&(gs_pipeline_opts){ .log = out_log, .log_arg = b }, &b->out);
	if (err)
		return err;
	size_t n = b->o.concurrency;
	err = gs_push_producer(b->out,
			       &(gs_stage_opts){ .name = "bridge-out",
						 .buffer_size = n,
						 .event_free = drop_fwd },
			       &b->push);
	if (!err)
		err = gs_amqp_sink_new(
			b->out,
			&(gs_amqp_sink_opts){
				.conn = b->o.conn,
				.exchange = b->exchange,
				.exchange_type = "topic",
				.max_unconfirmed = n,
				.encode = sink_encode,
				.confirmed = sink_confirmed,
				.arg = b,
				.drain_timeout = b->o.drain_timeout },
			&(gs_stage_opts){ .name = "bridge-sink" }, &b->sink);
	if (!err)
		err = gs_subscribe(gs_amqp_sink_stage(b->sink), b->push,
				   &(gs_sub_opts){ .max_demand = n }, NULL);
	if (!err)
		err = gs_pipeline_start(b->out);
	return err;
}

static void out_free(gs_amqp_bridge *b)
{
	gs_pipeline_free(b->out);
	gs_amqp_sink_free(b->sink);
	b->out = NULL;
	b->sink = NULL;
}

gs_err gs__bridge_out_start(gs_amqp_bridge *b)
{
	gs_err err = out_pipeline(b);
	char name[GS_AMQP_BRIDGE_MAX_ID + 16];
	snprintf(name, sizeof name, "amqp-bridge:%s", b->id);
	if (!err)
		err = gs_bus_subscribe(
			b->bus,
			&(gs_bus_sub_opts){ .name = name,
					    .patterns = b->o.forward,
					    .handler = forward,
					    .arg = b,
					    .queue_size = b->o.queue_size,
					    .concurrency = b->o.concurrency,
					    .blocking = true,
					    .dead_letter = dead_letter },
			&b->sub);
	if (err) {
		gs__amqp_log(&b->conf, "bridge '%s': cannot forward: %s", b->id,
			     gs_strerror(err));
		out_free(b);
	}
	return err;
}

void gs__bridge_out_stop(gs_amqp_bridge *b)
{
	int ms = b->o.drain_timeout > INT_MAX ? INT_MAX
					      : (int)b->o.drain_timeout;
	gs_err err = gs_bus_unsubscribe(b->sub, GS_BUS_DRAIN, ms);
	if (err == GS_ETIMEDOUT) {
		gs__amqp_log(&b->conf,
			     "bridge '%s': forwards still unconfirmed after "
			     "%u ms: they fail",
			     b->id, b->o.drain_timeout);
		atomic_store(&b->abandon, true);
		gs_pipeline_stop(b->out, GS_STOP_NOW);
		gs_bus_unsubscribe(b->sub, GS_BUS_DRAIN, GS_BUS_FOREVER);
	} else {
		gs_push_close(b->push);
		gs_pipeline_wait(b->out);
	}
	/* The bus frees it as soon as its stages end: a bridge made and
	 * freed while the bus runs on leaves nothing behind. */
	gs_bus_sub_release(b->sub);
	b->sub = NULL;
	out_free(b);
}
