// SPDX-License-Identifier: MIT
/*
 * Connections to RabbitMQ shared by the source and the sink: settings
 * copied once, opening a socket with a timeout, logging in and opening the
 * channel, turning rabbitmq-c's replies into messages for people, and the
 * reconnect backoff.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "amqp_internal.h"

#define DEFAULT_PORT 5672
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_BACKOFF_MIN_MS 100
#define DEFAULT_BACKOFF_MAX_MS 5000
/* rabbitmq-c's default frame size; larger bodies span several frames. */
#define FRAME_MAX 131072

bool gs__amqp_strdup(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return true;
	*dst = strdup(src);
	return *dst != NULL;
}

gs_err gs__amqp_conf_init(gs__amqp_conf *c, const gs_amqp_conn_opts *o)
{
	*c = (gs__amqp_conf){ .o = *o };
	if (!gs__amqp_strdup(&c->host, o->host ? o->host : "127.0.0.1") ||
	    !gs__amqp_strdup(&c->vhost, o->vhost ? o->vhost : "/") ||
	    !gs__amqp_strdup(&c->user, o->user ? o->user : "guest") ||
	    !gs__amqp_strdup(&c->password,
			     o->password ? o->password : "guest")) {
		gs__amqp_conf_fini(c);
		return GS_ENOMEM;
	}
	c->o.host = c->host;
	c->o.vhost = c->vhost;
	c->o.user = c->user;
	c->o.password = c->password;
	if (!c->o.port)
		c->o.port = DEFAULT_PORT;
	if (!c->o.connect_timeout)
		c->o.connect_timeout = DEFAULT_CONNECT_TIMEOUT_MS;
	if (!c->o.backoff_min)
		c->o.backoff_min = DEFAULT_BACKOFF_MIN_MS;
	if (!c->o.backoff_max)
		c->o.backoff_max = DEFAULT_BACKOFF_MAX_MS;
	if (c->o.backoff_max < c->o.backoff_min)
		c->o.backoff_max = c->o.backoff_min;
	return GS_OK;
}

void gs__amqp_conf_fini(gs__amqp_conf *c)
{
	free(c->host);
	free(c->vhost);
	free(c->user);
	free(c->password);
	*c = (gs__amqp_conf){ 0 };
}

void gs__amqp_log(const gs__amqp_conf *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (c->o.log)
		c->o.log(c->o.log_arg, msg);
	else
		fprintf(stderr, "genstage-amqp: %s\n", msg);
}

gs_err gs__amqp_refuse_newer(const gs_amqp_conn_opts *conn, const char *call,
			     uint32_t version, uint32_t known)
{
	gs__amqp_conf log_only = { .o = *conn };
	gs__amqp_log(&log_only,
		     "%s: options of version %u, newer than this library's "
		     "%u: refused",
		     call, (unsigned)version, (unsigned)known);
	return GS_EVERSION;
}

amqp_bytes_t gs__amqp_bytes(const char *s)
{
	return s ? amqp_cstring_bytes(s) : amqp_empty_bytes;
}

bool gs__amqp_ok(amqp_rpc_reply_t r, char *buf, size_t size)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return true;
	case AMQP_RESPONSE_NONE:
		snprintf(buf, size, "no reply from the broker");
		return false;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		snprintf(buf, size, "%s", amqp_error_string2(r.library_error));
		return false;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		break;
	}
	if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
		const amqp_connection_close_t *m = r.reply.decoded;
		snprintf(buf, size, "the broker closed the connection: %u %.*s",
			 m->reply_code, (int)m->reply_text.len,
			 (const char *)m->reply_text.bytes);
	} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
		const amqp_channel_close_t *m = r.reply.decoded;
		snprintf(buf, size, "the broker closed the channel: %u %.*s",
			 m->reply_code, (int)m->reply_text.len,
			 (const char *)m->reply_text.bytes);
	} else {
		snprintf(buf, size, "unexpected reply 0x%08x from the broker",
			 (unsigned)r.reply.id);
	}
	return false;
}

amqp_connection_state_t gs__amqp_open(const gs__amqp_conf *c, const char *what)
{
	char why[400];
	amqp_connection_state_t conn = amqp_new_connection();
	if (!conn) {
		gs__amqp_log(c, "%s: out of memory", what);
		return NULL;
	}
	amqp_socket_t *sock = amqp_tcp_socket_new(conn);
	struct timeval tv = { .tv_sec = c->o.connect_timeout / 1000,
			      .tv_usec = (c->o.connect_timeout % 1000) * 1000 };
	int st = sock ? amqp_socket_open_noblock(sock, c->host, c->o.port, &tv)
		      : AMQP_STATUS_NO_MEMORY;
	if (st != AMQP_STATUS_OK) {
		gs__amqp_log(c, "%s: cannot connect to %s:%d: %s", what,
			     c->host, c->o.port, amqp_error_string2(st));
		amqp_destroy_connection(conn);
		return NULL;
	}
	/* Bounds every RPC (login, declares), so a broker that accepted the
	 * socket but never answers cannot hang us. */
	amqp_set_rpc_timeout(conn, &tv);
	amqp_rpc_reply_t r = amqp_login(conn, c->vhost, 0, FRAME_MAX,
					(int)c->o.heartbeat,
					AMQP_SASL_METHOD_PLAIN, c->user,
					c->password);
	if (!gs__amqp_ok(r, why, sizeof why)) {
		/* RabbitMQ answers a bad user or password by closing the
		 * socket (or with 403 ACCESS_REFUSED). */
		gs__amqp_log(c,
			     "%s: login to %s:%d as '%s' on vhost '%s' "
			     "refused: %s",
			     what, c->host, c->o.port, c->user, c->vhost, why);
		amqp_destroy_connection(conn);
		return NULL;
	}
	amqp_channel_open(conn, GS__AMQP_CHANNEL);
	if (!gs__amqp_ok(amqp_get_rpc_reply(conn), why, sizeof why)) {
		gs__amqp_log(c, "%s: cannot open a channel: %s", what, why);
		gs__amqp_close(conn, false);
		return NULL;
	}
	return conn;
}

void gs__amqp_close(amqp_connection_state_t conn, bool polite)
{
	if (!conn)
		return;
	if (polite)
		amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
}

unsigned gs__amqp_backoff(const gs__amqp_conf *c, unsigned failures)
{
	uint64_t d = c->o.backoff_min;
	for (unsigned i = 1; i < failures && d < c->o.backoff_max; i++)
		d *= 2;
	return d > c->o.backoff_max ? c->o.backoff_max : (unsigned)d;
}

bool gs__amqp_give_up(const gs__amqp_conf *c, unsigned failures)
{
	return c->o.max_reconnects && failures > c->o.max_reconnects;
}
