// SPDX-License-Identifier: MIT
/*
 * Private to connectors/amqp*.c: a connection with its copied settings,
 * reconnect backoff and error reporting, shared by the source and sink.
 */
#ifndef GS_AMQP_INTERNAL_H
#define GS_AMQP_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <genstage/amqp.h>
#include <genstage/genstage.h>

#define GS_AMQP_API __attribute__((visibility("default")))

/* The one channel each connection uses. */
#define GS__AMQP_CHANNEL 1

/* gs_amqp_conn_opts with its strings copied and defaults filled in. */
typedef struct gs__amqp_conf {
	gs_amqp_conn_opts o;
	char *host, *vhost, *user, *password;
} gs__amqp_conf;

gs_err gs__amqp_conf_init(gs__amqp_conf *c, const gs_amqp_conn_opts *o);
void gs__amqp_conf_fini(gs__amqp_conf *c);

/* Copies a string (NULL stays NULL); false if there was no memory. */
bool gs__amqp_strdup(char **dst, const char *src);

/* Reports an error through the log hook (printf-style). */
void gs__amqp_log(const gs__amqp_conf *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* GS_EVERSION, said through conn's log hook: `call`'s options have a
 * version above `known`, what this library was built with. */
gs_err gs__amqp_refuse_newer(const gs_amqp_conn_opts *conn, const char *call,
			     uint32_t version, uint32_t known);

/* Opens a connection and channel 1 (logged in); NULL on failure, with
 * the reason logged. `what` names the caller in the messages. */
amqp_connection_state_t gs__amqp_open(const gs__amqp_conf *c, const char *what);

/* Closes (politely if `polite`) and destroys. NULL: nothing. */
void gs__amqp_close(amqp_connection_state_t conn, bool polite);

/* True if r is a normal reply; else writes why into buf. */
bool gs__amqp_ok(amqp_rpc_reply_t r, char *buf, size_t size);

/* The delay before reconnect attempt `failures` (1, 2, ...): doubling
 * from backoff_min, capped at backoff_max. */
unsigned gs__amqp_backoff(const gs__amqp_conf *c, unsigned failures);

/* Whether `failures` consecutive failures exhaust max_reconnects. */
bool gs__amqp_give_up(const gs__amqp_conf *c, unsigned failures);

/* An amqp_bytes_t for a C string (NULL: empty). */
amqp_bytes_t gs__amqp_bytes(const char *s);

/* Fills *p with the properties `out` asks for, its headers in
 * entries[GS_AMQP_MAX_HEADERS] (pointing into out's strings); NULL, or
 * why they cannot be sent: too many headers, one without a key, a
 * string AMQP caps at 255 bytes that is longer, or all of them larger
 * than the connection's frame_max (the client library would not encode
 * the frame). */
const char *gs__amqp_props(const gs_amqp_out *out, amqp_basic_properties_t *p,
			   amqp_table_entry_t *entries, size_t frame_max);

/* The length of a property, 0 if p does not have it. */
size_t gs__amqp_prop_len(const amqp_basic_properties_t *p, amqp_flags_t flag,
			 const amqp_bytes_t *b);

/* Copies len bytes and a NUL to *at, moves *at past them, and returns
 * where they went. */
char *gs__amqp_put(char **at, const void *bytes, size_t len);

/* The room gs__amqp_meta_fill takes for p: the bytes returned, and
 * *n_headers header entries. */
size_t gs__amqp_meta_size(const amqp_basic_properties_t *p, size_t *n_headers);

/* Sets m's correlation_id, app_id and string headers from p, taking header
 * entries from *hdrs and bytes from *at (both moved on). */
void gs__amqp_meta_fill(gs_amqp_meta *m, const amqp_basic_properties_t *p,
			gs_amqp_header **hdrs, char **at);

#endif
