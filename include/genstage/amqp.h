// SPDX-License-Identifier: MIT
/*
 * RabbitMQ (AMQP 0-9-1) sources and sinks, over rabbitmq-c. Link with
 * libgenstage-amqp (pkg-config genstage-amqp); the core library does not
 * depend on rabbitmq-c.
 *
 * A source is a producer stage consuming one queue. Its messages are
 * gs_message (see broadway.h) with the body as `data` (`metadata` is a
 * gs_amqp_meta) and an acknowledger that settles them with the broker:
 * successful ones are acked, failed ones retried or dead-lettered (see
 * gs_amqp_on_failure), cancelled ones (GS_ECANCELED: the pipeline stopped
 * before processing them) requeued. The connection runs on a thread of
 * the source's own (rabbitmq-c connections are not thread-safe), so the
 * stage itself never blocks.
 *
 * Delivery is at least once. The broker redelivers every message that was
 * not acked when a connection closed: after a reconnect, messages that
 * were being processed come again (gs_amqp_meta.redelivered is set), and
 * a message processed but whose ack was lost is processed twice. Where
 * that matters, give messages ids (the publisher's message_id property)
 * and a dedup hook: the source acks a message the hook reports as seen
 * without delivering it.
 *
 * Demand drives the broker: the source consumes only once it has demand,
 * and its prefetch (basic.qos, channel-wide), the number of
 * unacknowledged messages the broker lets it hold, follows the demand its
 * consumers asked for: it rises to the most demand they ever had pending
 * at once (at most their max_demand, summed), also while consuming,
 * unless opts.prefetch sets it. Messages a consumer holds unsettled count
 * against it until they are acked. With batchers, set
 * prefetch to at least batch_size times the batchers' concurrency, or
 * batches fill only by timeout. Acks travel as one `multiple` ack per run
 * of settled messages: a run shorter than half the prefetch waits up to
 * 5 ms for more (each ack frame costs the broker work), so the broker may
 * see an ack that late; a connection lost meanwhile means redelivery.
 *
 * A sink is a consumer stage publishing each event to an exchange with
 * publisher confirms. An event is delivered only once the broker confirmed
 * it: then (or when it is finally refused) the sink hands it to
 * `confirmed`. At most max_unconfirmed publishes wait for confirmation; the
 * sink takes no more events until some are confirmed, so back-pressure
 * reaches the pipeline. After a reconnect, unconfirmed events are
 * published again (at least once, again). A publish the broker refuses by
 * closing the channel (403, 404 or 406: an exchange that does not exist,
 * say) fails alone: the sink opens the channel again and publishes what
 * was in flight one at a time, each confirmed before the next, so the
 * refused event shows; it goes to `confirmed` with GS_EINVAL and a log
 * line, and the others go on (those published before it may arrive
 * twice).
 *
 * Both reconnect after a lost connection with exponential backoff
 * (backoff_min to backoff_max, doubling), for ever unless
 * max_reconnects says otherwise; errors go to the log hook. The sink
 * reconnects inside its callbacks (it is a blocking stage), so a stop
 * while the broker is unreachable waits until it is back or
 * max_reconnects runs out: set max_reconnects where stops must be prompt.
 *
 * Retries wait retry_delay in the retry queue, the same delay each time
 * (the broker's dead-lettering has one destination per queue, so growing
 * delays would need a queue per retry).
 */
#ifndef GENSTAGE_AMQP_H
#define GENSTAGE_AMQP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broadway.h"
#include "bus.h"
#include "error.h"
#include "pipeline.h"
#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called on the connector's thread for each error (connection refused or
 * lost, a refused login, a missing queue...), with a message for people. */
typedef void (*gs_amqp_log_fn)(void *arg, const char *msg);

/* Where and how to connect. Zero fields mean the defaults. */
typedef struct gs_amqp_conn_opts {
	const char *host;     /* NULL: "127.0.0.1" */
	int port;             /* 0: 5672 */
	const char *vhost;    /* NULL: "/" */
	const char *user;     /* NULL: "guest" */
	const char *password; /* NULL: "guest" */
	/* Seconds; 0: none (a closed socket is still noticed at once). An
	 * idle sink reads its connection at half the period, so that
	 * heartbeats go out and the broker keeps it. */
	unsigned heartbeat;
	unsigned connect_timeout; /* ms; 0: 5000 */
	unsigned backoff_min;     /* ms; 0: 100 */
	unsigned backoff_max;     /* ms; 0: 5000 */
	/* Attempts after a failure before giving up (the stage then stops
	 * with GS_ECLOSED); 0: for ever. A sink's connection lost before
	 * anything was confirmed on it counts as a failure, so a broker
	 * that takes connections and drops them makes the sink back off,
	 * and give up here. */
	unsigned max_reconnects;
	gs_amqp_log_fn log; /* NULL: one line on stderr */
	void *log_arg;
} gs_amqp_conn_opts;

/* What the source does with a message that failed (not cancelled). */
typedef enum gs_amqp_on_failure {
	/* Reject it to the retry queue "<queue>.retry" (declared with
	 * opts.declare), which returns it to the queue after retry_delay;
	 * once the broker's x-death count for the queue reaches
	 * max_retries, publish it to the dead-letter queue and ack it. */
	GS_AMQP_RETRY = 0,
	/* nack with requeue: it comes back at once, without limit. */
	GS_AMQP_REQUEUE,
	/* reject without requeue: the broker dead-letters it if the queue
	 * has a dead-letter exchange, else drops it. */
	GS_AMQP_REJECT,
} gs_amqp_on_failure;

/* One message header with a string value. */
typedef struct gs_amqp_header {
	const char *key;
	const char *value;
} gs_amqp_header;

/* Headers a sink publishes with one message, at most. */
#define GS_AMQP_MAX_HEADERS 16

/* The source's metadata for each message (gs_message.metadata). Strings
 * are NUL-terminated, valid as long as the message. */
typedef struct gs_amqp_meta {
	uint64_t delivery_tag;
	bool redelivered;
	const char *exchange;
	const char *routing_key;
	const char *message_id; /* "" if none */
	const char *content_type;
	size_t size;                /* body bytes (gs_message.data) */
	uint64_t deaths;            /* x-death count for this queue (retries) */
	const char *correlation_id; /* "" if none */
	const char *app_id;         /* "" if none */
	/* The headers whose values are strings, in the order sent (others,
	 * such as x-death, are left out). */
	const gs_amqp_header *headers;
	size_t n_headers;
} gs_amqp_meta;

/* Whether a message with this id was processed already (dedup). Called on
 * the connector thread for every message that has a message_id. */
typedef bool (*gs_amqp_seen_fn)(void *arg, const char *message_id);

typedef struct gs_amqp_binding {
	const char *exchange; /* declared as a topic exchange, durable */
	const char *routing_key;
} gs_amqp_binding;

#define GS_AMQP_SOURCE_OPTS_VERSION 0

typedef struct gs_amqp_source_opts {
	uint32_t version;
	gs_amqp_conn_opts conn;
	const char *queue; /* required */
	/* Declare the queue (durable), its retry and dead-letter queues and
	 * the bindings before consuming; otherwise the queue must exist. */
	bool declare;
	const gs_amqp_binding *bindings;
	size_t n_bindings;
	size_t prefetch; /* 0: follows the demand (see above) */
	gs_amqp_on_failure on_failure;
	unsigned max_retries;          /* 0: 3 */
	unsigned retry_delay;          /* ms; 0: 1000 */
	const char *dead_letter_queue; /* NULL: "<queue>.dead" */
	gs_amqp_seen_fn seen;          /* NULL: no dedup */
	void *seen_arg;
	/* How long gs_amqp_source_free waits for messages still in the
	 * pipeline to be acknowledged before closing (they are then
	 * redelivered). ms; 0: 30000. */
	unsigned drain_timeout;
} gs_amqp_source_opts;

typedef struct gs_amqp_source gs_amqp_source;

/*
 * Creates the source's producer stage in `p` with `stage_opts` (name,
 * dispatcher; NULL for defaults; its buffer is made unbounded, since the
 * prefetch bounds it) and its connector thread, which connects once the
 * stage runs. `opts` and its strings are copied. Refused: a NULL queue,
 * NULL arguments, an on_failure that is none of gs_amqp_on_failure's
 * (GS_EINVAL), a version above this header's
 * (GS_EVERSION). Nothing is connected yet, so a wrong port or password is
 * reported through the log hook and stops the stage with GS_ECLOSED once
 * max_reconnects is exhausted.
 */
gs_err gs_amqp_source_new(gs_pipeline *p, const gs_amqp_source_opts *opts,
			  const gs_stage_opts *stage_opts,
			  gs_amqp_source **out);

/* The producer stage, to subscribe consumers to. */
gs_stage *gs_amqp_source_stage(gs_amqp_source *src);

typedef struct gs_amqp_source_stats {
	uint64_t delivered;     /* messages received from the broker */
	uint64_t acked;         /* acked successful */
	uint64_t retried;       /* rejected to the retry queue */
	uint64_t dead_lettered; /* published to the dead-letter queue */
	uint64_t requeued;      /* nacked back (cancelled, or REQUEUE) */
	uint64_t rejected;      /* rejected (REJECT) */
	uint64_t deduplicated;  /* acked unseen: the seen hook said so */
	uint64_t stale;         /* settled after their connection was gone:
				  the broker redelivers them */
	uint64_t connects;      /* successful connections */
	uint64_t outstanding;   /* in the pipeline, not settled yet */
} gs_amqp_source_stats;

/* A snapshot of the counters, from any thread. */
gs_err gs_amqp_source_stats_get(const gs_amqp_source *src,
				gs_amqp_source_stats *out);

/*
 * Stops the connector: waits (up to drain_timeout) until every message
 * the pipeline holds is settled, sends the last acks, closes the
 * connection and frees the source. Call once the pipeline has finished
 * (gs_pipeline_wait or gs_pipeline_stop), and before gs_pipeline_free:
 * the connector talks to the stage until it is joined here. NULL is a
 * no-op.
 *
 * Outside Broadway, whoever takes a message settles it through its
 * acknowledger (acked, or failed with gs_message_failed: GS_ECANCELED
 * requeues it). That includes what a gs_stream still holds after a stop:
 * pull it (gs_stream_next returns it after the end) and settle it before
 * this call. A message never settled holds this call for drain_timeout;
 * the broker then requeues it as the connection closes, and its memory is
 * left allocated, since whoever holds the message may still read it.
 */
void gs_amqp_source_free(gs_amqp_source *src);

/* A gs_broadway_producer making one source per producer (each with its
 * own connection), from `opts`, which must outlive gs_broadway_free. */
gs_broadway_producer gs_amqp_broadway_producer(const gs_amqp_source_opts *opts,
					       size_t concurrency);

/* What to publish for an event. Strings and body are read during the
 * encode call's publish only. */
typedef struct gs_amqp_out {
	const char *exchange;    /* NULL: the sink's exchange */
	const char *routing_key; /* NULL: "" */
	const void *body;
	size_t size;
	const char *message_id; /* NULL: none */
	const char *content_type;
	bool transient;             /* not persistent (delivery_mode 1) */
	const char *correlation_id; /* NULL: none */
	const char *app_id;         /* NULL: none */
	/* String headers; more than GS_AMQP_MAX_HEADERS, or properties and
	 * headers together larger than a frame (128 KiB), are refused as an
	 * oversize body is (GS_EINVAL to confirmed). */
	const gs_amqp_header *headers;
	size_t n_headers;
} gs_amqp_out;

/* Fills *out for `event`, on the sink's thread. Non-zero (negative too)
 * fails the event: it goes to `confirmed` with that code, unpublished. It
 * is called again when the event is published again (after a reconnect,
 * or one at a time after the broker refused a publish: see above); a
 * refusal then fails the event there. */
typedef int (*gs_amqp_encode_fn)(void *arg, void *event, gs_amqp_out *out);

/* The end of an event: status GS_OK once the broker confirmed it; else
 * why it was not: GS_ECLOSED (the broker nacked it, or the sink stopped
 * before its confirmation came), GS_EINVAL (too large, bad properties, or
 * the broker refused it by closing the channel) or the code encode
 * returned. The event
 * is the callee's from then on. Called on the sink's thread. */
typedef void (*gs_amqp_confirmed_fn)(void *arg, void *event, int status);

#define GS_AMQP_SINK_OPTS_VERSION 0

typedef struct gs_amqp_sink_opts {
	uint32_t version;
	gs_amqp_conn_opts conn;
	const char *exchange;      /* NULL: "" (the default exchange) */
	const char *exchange_type; /* declare it as this (e.g. "topic");
				      NULL: not declared */
	/* Declare this queue (durable) bound to exchange with routing key
	 * bind_key, so that nothing published is unroutable. NULL: none. */
	const char *declare_queue;
	const char *bind_key;
	size_t max_unconfirmed; /* 0: 1000 */
	/* Larger bodies are refused (GS_EINVAL to confirmed, and a log
	 * line) instead of published: the broker would close the channel.
	 * So are an exchange, routing key, property or header key longer
	 * than AMQP's 255 bytes, which could not be sent at all. Only that
	 * event fails; the connection is kept. 0: 128 MiB, RabbitMQ's
	 * default max_message_size. */
	size_t max_message_size;
	gs_amqp_encode_fn encode;       /* required */
	gs_amqp_confirmed_fn confirmed; /* NULL: nothing to tell */
	void *arg;
	/* How long the sink waits at its end for confirmations,
	 * reconnecting (and publishing again) if it must; then what is
	 * still unconfirmed goes to `confirmed` with GS_ECLOSED. ms; 0:
	 * 30000. */
	unsigned drain_timeout;
} gs_amqp_sink_opts;

typedef struct gs_amqp_sink gs_amqp_sink;

/* Creates the sink's consumer stage (blocking: it owns its connection).
 * Ownership and refusals as gs_amqp_source_new. */
gs_err gs_amqp_sink_new(gs_pipeline *p, const gs_amqp_sink_opts *opts,
			const gs_stage_opts *stage_opts, gs_amqp_sink **out);

gs_stage *gs_amqp_sink_stage(gs_amqp_sink *sink);

typedef struct gs_amqp_sink_stats {
	uint64_t published;   /* basic.publish calls (republishes too) */
	uint64_t confirmed;   /* events confirmed */
	uint64_t failed;      /* events handed back with an error */
	uint64_t republished; /* published again: after a reconnect, or while
				 finding a publish the broker refused */
	uint64_t connects;
	uint64_t unconfirmed; /* now */
	uint64_t max_unconfirmed_seen;
} gs_amqp_sink_stats;

gs_err gs_amqp_sink_stats_get(const gs_amqp_sink *sink,
			      gs_amqp_sink_stats *out);

/* Frees the sink after its pipeline finished (or was freed). NULL is a
 * no-op. */
void gs_amqp_sink_free(gs_amqp_sink *sink);

/*
 * The bus across processes: a bridge between a local event bus (bus.h) and
 * a topic exchange, both ways, with the bus's pattern syntax (AMQP's:
 * "orders.*", "audit.#") on both sides.
 *
 *	const char *const out[] = { "orders.#", NULL };
 *	const char *const in[] = { "orders.#", "audit.*", NULL };
 *	gs_amqp_bridge *br;
 *	gs_amqp_bridge_new(bus, &(gs_amqp_bridge_opts){
 *		.exchange = "events", .forward = out,
 *		.receive = in, .queue = "billing.events" }, &br);
 *	...
 *	gs_amqp_bridge_free(br);   (before gs_bus_free)
 *
 * Outbound. A subscription on the bus (its `forward` patterns) publishes
 * each event to the exchange with the topic as routing key, through a
 * sink with publisher confirms, and its handler returns only once the
 * broker confirmed the message: so the envelope completes (on_complete,
 * and the payload is freed) only after the broker has it, a slow or
 * absent broker fills the subscription's queue (queue_size) and then
 * holds up the publishers of matching topics (GS_BUS_BLOCK), and nothing
 * is lost unseen: the sink reconnects and publishes again what was not
 * confirmed (so a receiver may see an event twice), and a forward that
 * fails for good (the broker nacked or refused it, encode failed, the sink gave up
 * reconnecting) is not retried but fails the event for the bus (counted
 * in its stats, handed to dead_letter) and counts in `failed`. As for any
 * publish, the broker confirms and drops a message that no queue is bound
 * for: bind the receiving queues before forwarding. With concurrency
 * 1 the exchange receives events in the order the bus accepted them, one
 * at a time awaiting its confirmation; concurrency N keeps up to N
 * unconfirmed (each on a thread of the bus's pool) and drops the order.
 * Each message carries, besides the body encode gives:
 *	message_id      "<id>:<envelope id>" (unique across bridges)
 *	correlation_id  the envelope's correlation id, in decimal
 *	app_id          the bridge's id
 *	headers         x-gs-source (the envelope's source) and
 *	                x-gs-causation-id (decimal; "0" for none)
 *
 * Inbound. A source (above) consumes `queue`, declared durable and bound
 * to the exchange with each `receive` pattern as binding key, and
 * publishes each message into the bus on the thread of one blocking
 * stage, in queue order: topic = routing key, payload = what decode made,
 * correlation id = the message's correlation_id (when it is a decimal
 * number; else the bus gives the envelope its own id), source =
 * GS_AMQP_BRIDGE_SOURCE_PREFIX "<app_id>:<x-gs-source>" (the remote
 * bridge's id and the remote envelope's source). The bus's publish takes
 * no causation id: x-gs-causation-id reaches decode through the metadata's
 * headers. A message is acked once the bus accepted it: from then on the
 * local bus owns it, as any event published locally (a crash of this
 * process loses what the bus had not handled yet, as it would for local
 * events; messages not yet accepted are redelivered). While the bus has
 * no room (a slow GS_BUS_BLOCK subscriber), the publish waits, the stage
 * asks for nothing more, and at most `prefetch` messages are unacked: the
 * rest wait in the queue. Messages decode refused or whose routing key is
 * no bus topic are rejected (dead-lettered if the queue has a dead-letter
 * exchange, by a policy) and counted; those in hand when the bridge is
 * freed go back to the queue. Bridges that should each see every message
 * use one queue each; bridges sharing a queue share the messages.
 *
 * Loops. A bridge that forwards to and receives from one exchange would
 * hear itself, and two such bridges would bounce each event between them
 * for ever. So: a message whose app_id is this bridge's id is acked and
 * not published (skipped_own); and events whose source starts with
 * GS_AMQP_BRIDGE_SOURCE_PREFIX, which came in through a bridge, are not
 * forwarded (skipped_bridged) unless forward_bridged is set (for a chain
 * over different exchanges, where no cycle exists). Ids must therefore be
 * unique among the bridges on an exchange, and no local publisher should
 * name itself with the prefix.
 *
 * Threads: the outbound subscription's stage or pool, the sink's thread,
 * the source's connector thread and the inbound stage's thread, besides
 * the shared executor's workers. encode and release run on the outbound
 * subscription's threads (up to `concurrency` at once), decode on the
 * inbound stage's thread.
 */

/* The start of the source of every event a bridge published into a bus. */
#define GS_AMQP_BRIDGE_SOURCE_PREFIX "amqp:"

/* Fills out->body and out->size (and, if you like, content_type and
 * transient) for `env`. The body must stay valid until release is called
 * (or, without release, as long as env: pointing into the payload is
 * fine). The bridge sets the exchange, routing key, ids and headers. Non-
 * zero fails the forward with that code. */
typedef int (*gs_amqp_bridge_encode_fn)(void *arg, const gs_bus_envelope *env,
					gs_amqp_out *out);

/* Called once per successful encode, once the broker settled the message
 * (or the forward failed), on the same thread. */
typedef void (*gs_amqp_bridge_release_fn)(void *arg, const gs_bus_envelope *env,
					  const gs_amqp_out *out);

/* Makes the bus payload of a message (body[0..meta->size), metadata as
 * the source gives it) into *payload, with *free_fn to free it (NULL: not
 * freed) once the bus is done with it. Non-zero rejects the message,
 * except GS_ECANCELED and GS_ENOMEM, which give it back to the queue. */
typedef int (*gs_amqp_bridge_decode_fn)(void *arg, const gs_amqp_meta *meta,
					const void *body, void **payload,
					gs_bus_free_fn *free_fn);

#define GS_AMQP_BRIDGE_OPTS_VERSION 0
/* Longest bridge id. */
#define GS_AMQP_BRIDGE_MAX_ID 128

typedef struct gs_amqp_bridge_opts {
	uint32_t version;       /* GS_AMQP_BRIDGE_OPTS_VERSION */
	gs_amqp_conn_opts conn; /* its log also gets the bridge's messages */
	/* The topic exchange, declared durable; required. */
	const char *exchange;
	/* This bridge on the exchange (app_id): letters, digits, '.', '_'
	 * and '-', at most GS_AMQP_BRIDGE_MAX_ID. NULL:
	 * "<host>.<pid>.<clock>", unique. A stable id is right for one
	 * process that restarts, wrong for two processes at once. */
	const char *id;

	/* Outbound: NULL-terminated patterns of the local topics to forward.
	 * NULL: none. */
	const char *const *forward;
	/* NULL: the payload is a NUL-terminated string (a NULL payload, an
	 * empty body). */
	gs_amqp_bridge_encode_fn encode;
	gs_amqp_bridge_release_fn release; /* NULL: none */
	/* Forwards awaiting confirmation at once; 0: 1 (in order). At most
	 * GS_POOL_MAX_WORKERS. */
	size_t concurrency;
	/* The outbound subscription's queue; 0: 1024. */
	size_t queue_size;
	/* Also forward events that came in through a bridge (see Loops). */
	bool forward_bridged;
	/* Called for each forward that failed, as the bus's dead_letter, on
	 * the subscription's thread. NULL: counted and logged only. */
	gs_bus_dead_letter_fn dead_letter;

	/* Inbound: NULL-terminated binding keys. NULL: none. */
	const char *const *receive;
	/* The queue to consume, declared durable and bound to the exchange
	 * with each binding key; required with `receive`. */
	const char *queue;
	/* NULL: the body, copied and NUL-terminated (freed with free). */
	gs_amqp_bridge_decode_fn decode;
	/* Unacknowledged messages at most; 0: 64. */
	size_t prefetch;

	void *arg; /* passed to encode, release, decode and dead_letter */
	/* How long gs_amqp_bridge_free waits for queued forwards and their
	 * confirmations, ms; 0: 30000. */
	unsigned drain_timeout;
} gs_amqp_bridge_opts;

typedef struct gs_amqp_bridge gs_amqp_bridge;

typedef struct gs_amqp_bridge_stats {
	/* Outbound: forwarded = confirmed + failed + those in flight. */
	uint64_t forwarded; /* events to forward (matched, not skipped) */
	uint64_t confirmed; /* confirmed by the broker */
	/* Not confirmed: nacked, encode failed, the sink gave up, or still
	 * unconfirmed when the drain timed out. */
	uint64_t failed;
	/* Events not forwarded because they came in through a bridge. */
	uint64_t skipped_bridged;
	/* Inbound: received = published + rejected + requeued + skipped_own
	 * + those in hand. */
	uint64_t received;    /* messages taken from the queue */
	uint64_t published;   /* accepted by the bus, then acked */
	uint64_t rejected;    /* decode failed or no bus topic */
	uint64_t requeued;    /* given back: being freed (or no memory) */
	uint64_t skipped_own; /* sent by this bridge: acked, not published */
	/* Successful connections: the sink's (it connects for its first
	 * forward) and the source's (the queue is declared and bound then:
	 * messages sent from then on reach it, while the broker drops those
	 * sent before, which no queue was bound for). */
	uint64_t out_connects, in_connects;
} gs_amqp_bridge_stats;

/*
 * Creates a bridge on `bus` and starts it: the outbound subscription is on
 * the bus when this returns; the connections open in the background
 * (errors go to conn.log). `opts` and its strings are copied. Refused,
 * with a message to conn.log: NULL bus, opts or out, no exchange, neither
 * forward nor receive patterns, a malformed pattern, receive without a
 * queue, a bad id, concurrency above GS_POOL_MAX_WORKERS (GS_EINVAL); a
 * version above GS_AMQP_BRIDGE_OPTS_VERSION (GS_EVERSION); what
 * gs_bus_subscribe refuses (a closed bus: GS_ECLOSED). On error *out is
 * untouched and nothing is left running. Not from a bus handler or hook,
 * nor a scheduled stage's callbacks.
 */
gs_err gs_amqp_bridge_new(gs_bus *bus, const gs_amqp_bridge_opts *opts,
			  gs_amqp_bridge **out);

/* The bridge's id (generated or given), from any thread; valid until
 * gs_amqp_bridge_free. NULL for NULL. */
const char *gs_amqp_bridge_id(const gs_amqp_bridge *br);

/* A snapshot of the counters, from any thread; each exact, the set not
 * taken atomically. GS_EINVAL on NULL. */
gs_err gs_amqp_bridge_stats_get(const gs_amqp_bridge *br,
				gs_amqp_bridge_stats *out);

/*
 * Stops and frees the bridge: the inbound side first (messages in hand
 * go back to the queue), then the outbound subscription ends, forwarding
 * what it had accepted and waiting for the confirmations up to
 * drain_timeout; forwards still unconfirmed then fail (counted, and
 * dead_letter). The bus keeps running. Call it before gs_bus_free (after
 * gs_bus_close is fine), once no other call on the bridge runs or will
 * be made, and not from a bus handler or hook or a stage's callbacks
 * (the waits would be refused there). As for the
 * sink, while the broker is unreachable this waits until it is back or
 * conn.max_reconnects runs out. NULL is a no-op.
 */
void gs_amqp_bridge_free(gs_amqp_bridge *br);

#ifdef __cplusplus
}
#endif

#endif
