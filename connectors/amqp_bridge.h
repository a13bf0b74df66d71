// SPDX-License-Identifier: MIT
/*
 * Private to connectors/amqp_bridge*.c: the bridge between a bus and a
 * topic exchange, its outbound half (a bus subscription feeding a sink)
 * and its inbound half (a source feeding the bus through Broadway).
 */
#ifndef GS_AMQP_BRIDGE_H
#define GS_AMQP_BRIDGE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "amqp_internal.h"

/* The message headers that carry an envelope's source and causation. */
#define GS__BRIDGE_SOURCE_HEADER "x-gs-source"
#define GS__BRIDGE_CAUSATION_HEADER "x-gs-causation-id"

typedef struct gs__bridge_counts {
	_Atomic uint64_t forwarded, confirmed, failed, skipped_bridged,
		received, published, rejected, requeued, skipped_own;
} gs__bridge_counts;

struct gs_amqp_bridge {
	gs_amqp_bridge_opts o; /* strings and arrays point to copies */
	gs__amqp_conf conf;    /* for the log */
	gs_bus *bus;
	char id[GS_AMQP_BRIDGE_MAX_ID + 1];
	char *exchange, *queue;
	char **forward, **receive; /* NULL-terminated copies */

	/* Outbound: a bus subscription whose handlers push into `push`,
	 * which feeds the sink. */
	gs_bus_sub *sub;
	gs_pipeline *out;
	gs_stage *push;
	gs_amqp_sink *sink;
	/* Forwards fail at once: the sink gave up, or the drain timed out. */
	_Atomic bool abandon;

	/* Inbound. */
	gs_amqp_source_opts src; /* what make_source makes */
	gs_amqp_binding *bindings;
	gs_broadway *in;
	gs_amqp_source *source;  /* in's producer */
	_Atomic bool closing;    /* gs_amqp_bridge_free has begun */
	_Atomic bool bus_closed; /* the inbound side found it closed */

	gs__bridge_counts c;
};

/* Adds one to a counter. */
void gs__bridge_bump(_Atomic uint64_t *c);

/* Starts the outbound half (b->o.forward non-NULL): the sink's pipeline,
 * then the subscription. On error nothing of it is left. */
gs_err gs__bridge_out_start(gs_amqp_bridge *b);
/* Ends the subscription, forwarding what it holds (see
 * gs_amqp_bridge_free), and frees the outbound half. */
void gs__bridge_out_stop(gs_amqp_bridge *b);

/* Starts the inbound half (b->o.receive non-NULL). On error nothing of it
 * is left. */
gs_err gs__bridge_in_start(gs_amqp_bridge *b);
/* Gives back what it holds and frees the inbound half. */
void gs__bridge_in_stop(gs_amqp_bridge *b);

#endif
