// SPDX-License-Identifier: MIT
/*
 * The RabbitMQ sink: a blocking consumer stage that owns its connection,
 * publishes each event with publisher confirms, and hands an event on
 * (`confirmed`) only once the broker confirmed it. Unconfirmed events wait
 * in a ring in publish order; while it holds max_unconfirmed the stage
 * waits for confirmations instead of taking events, so the pipeline feels
 * the broker's pace. After a lost connection it reconnects with backoff
 * and publishes the unconfirmed events again. A publish the broker refuses
 * by closing the channel (an exchange that does not exist) is found by
 * publishing the unconfirmed events again one at a time: it fails alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amqp_internal.h"

#define DEFAULT_MAX_UNCONFIRMED 1000
#define DEFAULT_MAX_MESSAGE_SIZE (128u << 20)
#define DEFAULT_DRAIN_TIMEOUT_MS 30000
/* How often an idle sink looks for confirmations still due. */
#define IDLE_POLL_MS 1

typedef struct pending {
	void *event; /* events may be NULL (the integer 0) */
	bool live;   /* not settled yet */
	bool again;  /* published on a channel that is gone */
} pending;

struct gs_amqp_sink {
	gs_amqp_sink_opts o;
	gs__amqp_conf conf;
	char *exchange, *exchange_type, *declare_queue, *bind_key;
	gs_stage *stage;
	amqp_connection_state_t conn;
	unsigned failures;
	bool gave_up;
	unsigned armed_ms; /* the shortest timer pending, 0: none */
	/* Unconfirmed events in publish order: ring[(first + i) % cap] has
	 * sequence number first_seq + i on the current channel, but for the
	 * last `unsent`, not published on it yet. */
	pending *ring;
	size_t cap, first, count, unsent;
	uint64_t first_seq;
	/* After the broker closed the channel over a publish: the first
	 * `probing` events are suspects, published one at a time, each
	 * confirmed before the next goes, so that the refused one shows. */
	size_t probing;
	struct {
		_Atomic uint64_t published, confirmed, failed, republished,
			connects, unconfirmed, max_unconfirmed;
	} c;
};

static void bump(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void note_unconfirmed(gs_amqp_sink *k)
{
	atomic_store_explicit(&k->c.unconfirmed, k->count,
			      memory_order_relaxed);
	if (k->count >
	    atomic_load_explicit(&k->c.max_unconfirmed, memory_order_relaxed))
		atomic_store_explicit(&k->c.max_unconfirmed, k->count,
				      memory_order_relaxed);
}

static void done(gs_amqp_sink *k, void *event, int status)
{
	bump(status ? &k->c.failed : &k->c.confirmed, 1);
	if (k->o.confirmed)
		k->o.confirmed(k->o.arg, event, status);
}

static pending *at(gs_amqp_sink *k, size_t i)
{
	return &k->ring[(k->first + i) % k->cap];
}

static size_t in_flight(const gs_amqp_sink *k)
{
	return k->count - k->unsent;
}

/* Takes the first entry off the ring. */
static void drop_first(gs_amqp_sink *k)
{
	if (in_flight(k))
		k->first_seq++;
	else
		k->unsent--;
	k->first = (k->first + 1) % k->cap;
	k->count--;
	if (k->probing)
		k->probing--;
}

/* Drops settled entries from the front. */
static void trim(gs_amqp_sink *k)
{
	while (k->count && !at(k, 0)->live)
		drop_first(k);
	note_unconfirmed(k);
}

/* Takes entry i, not published on this channel, off the ring. */
static void drop_unsent(gs_amqp_sink *k, size_t i)
{
	if (i < k->probing)
		k->probing--;
	for (; i + 1 < k->count; i++)
		*at(k, i) = *at(k, i + 1);
	k->count--;
	k->unsent--;
}

/* A lost connection counts as a failure until a confirmation shows the
 * next one works: a broker that takes the connection and drops it on the
 * first publish is not reconnected to at once, for ever, publishing the
 * same events again each time. */
static void lost(gs_amqp_sink *k, const char *why)
{
	gs__amqp_log(&k->conf, "sink '%s': connection lost: %s",
		     k->exchange ? k->exchange : "", why);
	gs__amqp_close(k->conn, false);
	k->conn = NULL;
	k->failures++;
}

static bool rpc_ok(gs_amqp_sink *k, const char *what)
{
	char why[400];
	if (gs__amqp_ok(amqp_get_rpc_reply(k->conn), why, sizeof why))
		return true;
	gs__amqp_log(&k->conf, "sink: %s: %s", what, why);
	return false;
}

/* What publish did with an event. REFUSED is the event's own fault (its
 * encode, its size, its properties): nothing was sent, the connection is
 * fine, and only that event fails. LOST is the connection's. */
typedef enum sent { SENT, REFUSED, LOST } sent;

static sent publish(gs_amqp_sink *k, void *event, int *why)
{
	gs_amqp_out out = { 0 };
	/* Any non-zero code refuses the event, negative ones too: taken
	 * for a lost connection, they were retried on every reconnect. */
	*why = k->o.encode(k->o.arg, event, &out);
	if (*why)
		return REFUSED;
	*why = GS_EINVAL;
	if (out.size > k->o.max_message_size) {
		gs__amqp_log(&k->conf,
			     "sink: a message of %zu bytes is larger than "
			     "max_message_size (%zu): refused",
			     out.size, k->o.max_message_size);
		return REFUSED;
	}
	amqp_basic_properties_t p;
	amqp_table_entry_t headers[GS_AMQP_MAX_HEADERS];
	const char *bad = gs__amqp_props(&out, &p, headers,
					 (size_t)amqp_get_frame_max(k->conn));
	if (bad) {
		gs__amqp_log(&k->conf, "sink: %s: refused", bad);
		return REFUSED;
	}
	amqp_bytes_t body = { .len = out.size, .bytes = (void *)out.body };
	int r = amqp_basic_publish(
		k->conn, GS__AMQP_CHANNEL,
		gs__amqp_bytes(out.exchange ? out.exchange : k->exchange),
		gs__amqp_bytes(out.routing_key), 0, 0, &p, body);
	if (r == AMQP_STATUS_BAD_AMQP_DATA || r == AMQP_STATUS_TABLE_TOO_BIG) {
		/* The client library could not encode it: nothing sent. */
		gs__amqp_log(&k->conf, "sink: %s: refused",
			     amqp_error_string2(r));
		return REFUSED;
	}
	bump(&k->c.published, 1);
	return r == AMQP_STATUS_OK ? SENT : LOST;
}

/* Publishes what this channel has not had yet, in order: all of it, or
 * while probing, the first suspect alone once nothing is in flight. One
 * whose encode refuses it fails there and takes no sequence number. False
 * if the connection was lost. */
static bool pump(gs_amqp_sink *k)
{
	while (k->unsent) {
		size_t i = in_flight(k);
		if (k->probing && i)
			break;
		pending *e = at(k, i);
		int why;
		sent s = publish(k, e->event, &why);
		if (s == LOST)
			return false;
		if (s == REFUSED) {
			void *event = e->event;
			drop_unsent(k, i);
			done(k, event, why);
			continue;
		}
		if (e->again)
			bump(&k->c.republished, 1);
		k->unsent--;
	}
	note_unconfirmed(k);
	return true;
}

/* Publishes every unconfirmed event again on a new channel. */
static bool republish(gs_amqp_sink *k)
{
	/* Settled holes are dropped first: sequence numbers restart. */
	size_t n = 0, suspects = 0;
	for (size_t i = 0; i < k->count; i++) {
		if (!at(k, i)->live)
			continue;
		suspects += i < k->probing;
		at(k, i)->again |= i < in_flight(k);
		*at(k, n++) = *at(k, i);
	}
	k->count = k->unsent = n;
	k->probing = suspects;
	k->first_seq = 1;
	return pump(k);
}

static bool open_conn(gs_amqp_sink *k)
{
	k->conn = gs__amqp_open(&k->conf, "sink");
	if (!k->conn)
		return false;
	bool ok = true;
	if (k->exchange_type && k->exchange && k->exchange[0]) {
		amqp_exchange_declare(k->conn, GS__AMQP_CHANNEL,
				      amqp_cstring_bytes(k->exchange),
				      amqp_cstring_bytes(k->exchange_type), 0,
				      1, 0, 0, amqp_empty_table);
		ok = rpc_ok(k, "declaring the exchange");
	}
	if (ok && k->declare_queue) {
		amqp_queue_declare(k->conn, GS__AMQP_CHANNEL,
				   amqp_cstring_bytes(k->declare_queue), 0, 1,
				   0, 0, amqp_empty_table);
		ok = rpc_ok(k, "declaring the queue");
		if (ok && k->exchange && k->exchange[0]) {
			amqp_queue_bind(k->conn, GS__AMQP_CHANNEL,
					amqp_cstring_bytes(k->declare_queue),
					amqp_cstring_bytes(k->exchange),
					gs__amqp_bytes(k->bind_key),
					amqp_empty_table);
			ok = rpc_ok(k, "binding the queue");
		}
	}
	if (ok) {
		amqp_confirm_select(k->conn, GS__AMQP_CHANNEL);
		ok = rpc_ok(k, "turning on publisher confirms");
	}
	if (ok && !republish(k)) {
		ok = false;
		gs__amqp_log(&k->conf, "sink: republishing failed");
	}
	if (!ok) {
		gs__amqp_close(k->conn, false);
		k->conn = NULL;
		return false;
	}
	/* With nothing to confirm, nothing can fail on it yet. */
	if (!k->count)
		k->failures = 0;
	bump(&k->c.connects, 1);
	return true;
}

/* Connects, waiting out the backoff between attempts; false once
 * max_reconnects is exhausted. Blocks: the stage is a blocking one. */
static uint64_t mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Connects if it must, retrying with backoff until it can, gives up
 * (max_reconnects), or the monotonic time passes until_ms (0: never). */
static bool ensure_conn(gs_amqp_sink *k, uint64_t until_ms)
{
	while (!k->conn && !k->gave_up) {
		/* After a failure (an open that failed, or a connection lost
		 * before anything was confirmed on it), the backoff first. */
		if (k->failures) {
			if (gs__amqp_give_up(&k->conf, k->failures)) {
				gs__amqp_log(&k->conf,
					     "sink: giving up after %u "
					     "attempts",
					     k->failures);
				k->gave_up = true;
				break;
			}
			uint64_t ms = gs__amqp_backoff(&k->conf, k->failures);
			if (until_ms) {
				uint64_t now = mono_ms();
				if (now >= until_ms)
					break;
				if (ms > until_ms - now)
					ms = until_ms - now;
			}
			struct timespec ts = { (time_t)(ms / 1000),
					       (long)(ms % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
		if (open_conn(k))
			return true;
		k->failures++;
	}
	return k->conn != NULL;
}

static void on_confirm(gs_amqp_sink *k, uint64_t tag, bool multiple, int st)
{
	if (tag < k->first_seq)
		return;
	uint64_t from = multiple ? k->first_seq : tag;
	for (uint64_t s = from; s <= tag && s - k->first_seq < in_flight(k);
	     s++) {
		pending *e = at(k, (size_t)(s - k->first_seq));
		if (e->live) {
			e->live = false;
			done(k, e->event, st);
		}
	}
	trim(k);
}

/* Replies to the broker's closing of the channel and opens it again,
 * with confirms; false if that fails. */
static bool reopen_channel(gs_amqp_sink *k)
{
	amqp_channel_close_ok_t close_ok = { 0 };
	if (amqp_send_method(k->conn, GS__AMQP_CHANNEL,
			     AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok))
		return false;
	amqp_channel_open(k->conn, GS__AMQP_CHANNEL);
	if (!rpc_ok(k, "opening the channel again"))
		return false;
	amqp_confirm_select(k->conn, GS__AMQP_CHANNEL);
	return rpc_ok(k, "turning on publisher confirms");
}

/* Reply codes with which the broker closes a channel over a publish. */
static bool blames_a_publish(uint16_t code)
{
	return code == AMQP_ACCESS_REFUSED || code == AMQP_NOT_FOUND ||
	       code == AMQP_PRECONDITION_FAILED;
}

/* The broker closed the channel over a publish: one of the events in
 * flight is to blame. Alone in flight, it fails (GS_EINVAL); otherwise
 * they all become suspects, published again one at a time. The channel is
 * opened again; false if the connection was lost. */
static bool refused(gs_amqp_sink *k, const char *why)
{
	if (in_flight(k) == 1) {
		void *event = at(k, 0)->event;
		gs__amqp_log(&k->conf,
			     "sink: the broker refused an event: %s; it fails "
			     "with GS_EINVAL, the others go on",
			     why);
		drop_first(k);
		done(k, event, GS_EINVAL);
	} else {
		gs__amqp_log(&k->conf,
			     "sink: %s; the %zu events in flight go again "
			     "one at a time, to find the one it refused",
			     why, in_flight(k));
		k->probing = in_flight(k);
	}
	return reopen_channel(k) && republish(k);
}

/* Reads confirmations, waiting up to wait_ms for the first (0: only what
 * has arrived), and publishes what a probe held back. False if the
 * connection was lost. */
static bool read_confirms(gs_amqp_sink *k, int wait_ms)
{
	for (;;) {
		amqp_frame_t f;
		struct timeval tv = { wait_ms / 1000, (wait_ms % 1000) * 1000 };
		int r = amqp_simple_wait_frame_noblock(k->conn, &f, &tv);
		if (r == AMQP_STATUS_TIMEOUT)
			return true;
		if (r != AMQP_STATUS_OK) {
			lost(k, amqp_error_string2(r));
			return false;
		}
		wait_ms = 0;
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		if (f.payload.method.id == AMQP_BASIC_ACK_METHOD ||
		    f.payload.method.id == AMQP_BASIC_NACK_METHOD)
			k->failures = 0; /* this connection works */
		if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
			const amqp_basic_ack_t *a = f.payload.method.decoded;
			on_confirm(k, a->delivery_tag, a->multiple, GS_OK);
		} else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
			const amqp_basic_nack_t *a = f.payload.method.decoded;
			on_confirm(k, a->delivery_tag, a->multiple, GS_ECLOSED);
		} else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
			   f.payload.method.id ==
				   AMQP_CONNECTION_CLOSE_METHOD) {
			char why[400];
			amqp_rpc_reply_t rr = {
				.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
				.reply = f.payload.method
			};
			gs__amqp_ok(rr, why, sizeof why);
			const amqp_channel_close_t *cc =
				f.payload.method.decoded;
			if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD &&
			    blames_a_publish(cc->reply_code) && in_flight(k) &&
			    refused(k, why))
				continue;
			lost(k, why);
			return false;
		}
		if (!pump(k)) {
			lost(k, "publishing failed");
			return false;
		}
		if (!amqp_data_in_buffer(k->conn) &&
		    !amqp_frames_enqueued(k->conn))
			return true;
	}
}

/* Hands every unconfirmed event back with `status`. */
static void fail_all(gs_amqp_sink *k, int status)
{
	for (size_t i = 0; i < k->count; i++)
		if (at(k, i)->live)
			done(k, at(k, i)->event, status);
	k->count = k->unsent = k->probing = 0;
	note_unconfirmed(k);
}

/* Waits until at most `limit` events are unconfirmed, reconnecting as
 * needed; false if the sink gave up. */
static bool settle_to(gs_amqp_sink *k, size_t limit, int wait_ms)
{
	while (k->count > limit) {
		if (!ensure_conn(k, 0))
			return false;
		read_confirms(k, wait_ms);
	}
	return true;
}

/* Unconfirmed events: confirmations are looked for every IDLE_POLL_MS.
 * An idle connection with heartbeats is read at half their period: the
 * client library sends its heartbeats only inside its calls, and the
 * broker closed a connection idle for longer. */
static void arm_timer(gs_amqp_sink *k, gs_stage *stage)
{
	unsigned heartbeat = k->conf.o.heartbeat;
	unsigned ms = k->count               ? IDLE_POLL_MS
		      : k->conn && heartbeat ? heartbeat * 500
					     : 0;
	if (ms && (!k->armed_ms || ms < k->armed_ms) &&
	    gs_send_after(stage, ms, NULL) == GS_OK)
		k->armed_ms = ms;
}

static int on_events(void *state, gs_stage *stage, gs_sub *from, void **ev,
		     size_t n)
{
	(void)from;
	gs_amqp_sink *k = state;
	for (size_t i = 0; i < n; i++) {
		if (!settle_to(k, k->o.max_unconfirmed - 1, 100) ||
		    !ensure_conn(k, 0)) {
			for (size_t j = i; j < n; j++)
				done(k, ev[j], GS_ECLOSED);
			fail_all(k, GS_ECLOSED);
			return GS_ECLOSED;
		}
		k->ring[(k->first + k->count) % k->cap] = (pending){
			.event = ev[i], .live = true
		};
		k->count++;
		k->unsent++;
		if (!pump(k))
			lost(k, "publishing failed");
	}
	note_unconfirmed(k);
	if (k->conn)
		read_confirms(k, 0);
	arm_timer(k, stage);
	return GS_OK;
}

static int on_timer(void *state, gs_stage *stage, void *msg)
{
	(void)msg;
	gs_amqp_sink *k = state;
	k->armed_ms = 0;
	if (k->count && ensure_conn(k, 0))
		read_confirms(k, IDLE_POLL_MS);
	else if (k->conn)
		read_confirms(k, 0); /* heartbeats both ways */
	if (k->gave_up) {
		fail_all(k, GS_ECLOSED);
		return GS_ECLOSED;
	}
	arm_timer(k, stage);
	return GS_OK;
}

static void on_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	(void)reason;
	gs_amqp_sink *k = state;
	uint64_t until = mono_ms() + k->o.drain_timeout;
	/* As in on_events: a lost connection is opened again, and what it
	 * had not confirmed published again, unless the sink gives up or
	 * the drain_timeout passes. */
	while (k->count && ensure_conn(k, until) && mono_ms() < until)
		read_confirms(k, 50);
	fail_all(k, GS_ECLOSED);
	gs__amqp_close(k->conn, k->conn != NULL);
	k->conn = NULL;
}

static const gs_stage_ops sink_ops = {
	.handle_events = on_events,
	.handle_info = on_timer,
	.terminate = on_terminate,
};

static void sink_free(gs_amqp_sink *k)
{
	gs__amqp_conf_fini(&k->conf);
	free(k->exchange);
	free(k->exchange_type);
	free(k->declare_queue);
	free(k->bind_key);
	free(k->ring);
	free(k);
}

GS_AMQP_API gs_err gs_amqp_sink_new(gs_pipeline *p,
				    const gs_amqp_sink_opts *opts,
				    const gs_stage_opts *stage_opts,
				    gs_amqp_sink **out)
{
	/* The version first: a newer struct's fields may mean more. */
	if (opts && opts->version > GS_AMQP_SINK_OPTS_VERSION)
		return gs__amqp_refuse_newer(&opts->conn, "gs_amqp_sink_new",
					     opts->version,
					     GS_AMQP_SINK_OPTS_VERSION);
	if (!p || !opts || !out || !opts->encode)
		return GS_EINVAL;
	gs_amqp_sink *k = calloc(1, sizeof *k);
	if (!k)
		return GS_ENOMEM;
	k->o = *opts;
	if (!k->o.max_unconfirmed)
		k->o.max_unconfirmed = DEFAULT_MAX_UNCONFIRMED;
	if (!k->o.max_message_size)
		k->o.max_message_size = DEFAULT_MAX_MESSAGE_SIZE;
	if (!k->o.drain_timeout)
		k->o.drain_timeout = DEFAULT_DRAIN_TIMEOUT_MS;
	k->cap = k->o.max_unconfirmed;
	k->ring = calloc(k->cap, sizeof *k->ring);
	k->first_seq = 1;
	gs_err err = k->ring ? gs__amqp_conf_init(&k->conf, &opts->conn)
			     : GS_ENOMEM;
	if (!err && (!gs__amqp_strdup(&k->exchange, opts->exchange) ||
		     !gs__amqp_strdup(&k->exchange_type, opts->exchange_type) ||
		     !gs__amqp_strdup(&k->declare_queue, opts->declare_queue) ||
		     !gs__amqp_strdup(&k->bind_key, opts->bind_key)))
		err = GS_ENOMEM;
	gs_stage_opts so = gs_stage_opts_copy(stage_opts);
	so.blocking = true;     /* it waits on its socket */
	so.keeps_events = true; /* until the broker confirms them */
	if (!err)
		err = gs_stage_new(p, GS_CONSUMER, &sink_ops, k, &so,
				   &k->stage);
	if (err) {
		sink_free(k);
		return err;
	}
	*out = k;
	return GS_OK;
}

GS_AMQP_API gs_stage *gs_amqp_sink_stage(gs_amqp_sink *sink)
{
	return sink ? sink->stage : NULL;
}

GS_AMQP_API gs_err gs_amqp_sink_stats_get(const gs_amqp_sink *k,
					  gs_amqp_sink_stats *out)
{
	if (!k || !out)
		return GS_EINVAL;
	*out = (gs_amqp_sink_stats){
		.published = atomic_load(&k->c.published),
		.confirmed = atomic_load(&k->c.confirmed),
		.failed = atomic_load(&k->c.failed),
		.republished = atomic_load(&k->c.republished),
		.connects = atomic_load(&k->c.connects),
		.unconfirmed = atomic_load(&k->c.unconfirmed),
		.max_unconfirmed_seen = atomic_load(&k->c.max_unconfirmed),
	};
	return GS_OK;
}

GS_AMQP_API void gs_amqp_sink_free(gs_amqp_sink *sink)
{
	if (sink)
		sink_free(sink);
}
