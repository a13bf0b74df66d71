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
 * and its prefetch (basic.qos), the number of unacknowledged messages the
 * broker lets it hold, follows the demand its consumers asked for (their
 * max_demand, summed) unless opts.prefetch sets it. With batchers, set
 * prefetch to at least batch_size times the batchers' concurrency, or
 * batches fill only by timeout.
 *
 * A sink is a consumer stage publishing each event to an exchange with
 * publisher confirms. An event is delivered only once the broker confirmed
 * it: then (or when it is finally refused) the sink hands it to
 * `confirmed`. At most max_unconfirmed publishes wait for confirmation; the
 * sink takes no more events until some are confirmed, so back-pressure
 * reaches the pipeline. After a reconnect, unconfirmed events are
 * published again (at least once, again).
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
	const char *host;         /* NULL: "127.0.0.1" */
	int port;                 /* 0: 5672 */
	const char *vhost;        /* NULL: "/" */
	const char *user;         /* NULL: "guest" */
	const char *password;     /* NULL: "guest" */
	unsigned heartbeat;       /* seconds; 0: none (a closed socket is
				  still noticed at once) */
	unsigned connect_timeout; /* ms; 0: 5000 */
	unsigned backoff_min;     /* ms; 0: 100 */
	unsigned backoff_max;     /* ms; 0: 5000 */
	/* Attempts after a failure before giving up (the stage then stops
	 * with GS_ECLOSED); 0: for ever. */
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
 * NULL arguments (GS_EINVAL), a version above this header's
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
	/* String headers; more than GS_AMQP_MAX_HEADERS is refused as an
	 * oversize body is (GS_EINVAL to confirmed). */
	const gs_amqp_header *headers;
	size_t n_headers;
} gs_amqp_out;

/* Fills *out for `event`, on the sink's thread. Non-zero fails the
 * event: it goes to `confirmed` with that code, unpublished. */
typedef int (*gs_amqp_encode_fn)(void *arg, void *event, gs_amqp_out *out);

/* The end of an event: status GS_OK once the broker confirmed it; else
 * why it was not: GS_ECLOSED (the broker nacked it, or the sink stopped
 * before its confirmation came) or the code encode returned. The event
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
	 * 0: 128 MiB, RabbitMQ's default max_message_size. */
	size_t max_message_size;
	gs_amqp_encode_fn encode;       /* required */
	gs_amqp_confirmed_fn confirmed; /* NULL: nothing to tell */
	void *arg;
	/* How long the sink waits at its end for confirmations. ms; 0:
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
	uint64_t republished; /* published again after a reconnect */
	uint64_t connects;
	uint64_t unconfirmed; /* now */
	uint64_t max_unconfirmed_seen;
} gs_amqp_sink_stats;

gs_err gs_amqp_sink_stats_get(const gs_amqp_sink *sink,
			      gs_amqp_sink_stats *out);

/* Frees the sink after its pipeline finished (or was freed). NULL is a
 * no-op. */
void gs_amqp_sink_free(gs_amqp_sink *sink);

#ifdef __cplusplus
}
#endif

#endif
