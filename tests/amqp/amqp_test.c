// SPDX-License-Identifier: MIT
/* The connector suites' shared helpers (see amqp_test.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "amqp_test.h"

void need_broker(void)
{
	cr_assert_gt(broker_port(), 0, "no broker: %s", broker_error());
	cr_assert(broker_ensure(), "no broker: %s", broker_error());
}

gs_amqp_conn_opts test_conn(void)
{
	return (gs_amqp_conn_opts){ .port = broker_port(),
				    .backoff_min = 20,
				    .backoff_max = 500 };
}

/* Fails the test with what the broker or the library said, unless `r`
 * is a normal reply. */
static void assert_normal(amqp_rpc_reply_t r, const char *what)
{
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return;
	if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
		cr_assert_fail("%s: %s", what,
			       amqp_error_string2(r.library_error));
	const amqp_bytes_t *text = NULL;
	unsigned code = 0;
	if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
		const amqp_channel_close_t *m = r.reply.decoded;
		code = m->reply_code;
		text = &m->reply_text;
	} else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
		const amqp_connection_close_t *m = r.reply.decoded;
		code = m->reply_code;
		text = &m->reply_text;
	}
	cr_assert_fail("%s: the broker closed with %u %.*s", what, code,
		       text ? (int)text->len : 0,
		       text ? (const char *)text->bytes : "");
}

static amqp_connection_state_t plain(void)
{
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	cr_assert_eq(amqp_socket_open(s, "127.0.0.1", broker_port()),
		     AMQP_STATUS_OK);
	amqp_rpc_reply_t r = amqp_login(
		c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
	assert_normal(r, "login");
	amqp_channel_open(c, 1);
	assert_normal(amqp_get_rpc_reply(c), "opening a channel");
	return c;
}

static void done(amqp_connection_state_t c)
{
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
}

void publish_ids(const char *queue, size_t first, size_t n)
{
	amqp_connection_state_t c = plain();
	amqp_confirm_select(c, 1);
	assert_normal(amqp_get_rpc_reply(c), "confirm.select");
	for (size_t i = first; i < first + n; i++) {
		char body[32], id[40];
		snprintf(body, sizeof body, "%zu", i);
		snprintf(id, sizeof id, "id-%zu", i);
		amqp_basic_properties_t p = {
			._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
				  AMQP_BASIC_MESSAGE_ID_FLAG,
			.delivery_mode = AMQP_DELIVERY_PERSISTENT,
			.message_id = amqp_cstring_bytes(id),
		};
		cr_assert_eq(amqp_basic_publish(c, 1, amqp_empty_bytes,
						amqp_cstring_bytes(queue), 0, 0,
						&p, amqp_cstring_bytes(body)),
			     AMQP_STATUS_OK);
	}
	/* Confirms arrive in order: the last tag acked means all were. */
	uint64_t confirmed = 0;
	while (confirmed < n) {
		amqp_frame_t f;
		cr_assert_eq(amqp_simple_wait_frame(c, &f), AMQP_STATUS_OK);
		if (f.frame_type == AMQP_FRAME_METHOD &&
		    f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
			amqp_basic_ack_t *a = f.payload.method.decoded;
			confirmed = a->delivery_tag;
		}
		cr_assert_neq(f.payload.method.id, AMQP_BASIC_NACK_METHOD);
	}
	done(c);
}

void filled_queue(char *q, size_t size, const char *what, size_t n)
{
	need_broker();
	broker_name(q, size, what);
	declare_queue(q);
	publish_ids(q, 0, n);
}

long queue_ready(const char *queue)
{
	amqp_connection_state_t c = plain();
	amqp_queue_declare_ok_t *ok = amqp_queue_declare(
		c, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
	long n = ok ? (long)ok->message_count : -1;
	if (ok)
		done(c);
	else
		amqp_destroy_connection(c);
	return n;
}

void declare_queue(const char *queue)
{
	amqp_connection_state_t c = plain();
	amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0,
			   amqp_empty_table);
	assert_normal(amqp_get_rpc_reply(c), queue);
	done(c);
}

size_t drain_queue(const char *queue, _Atomic unsigned *counts, size_t n)
{
	amqp_connection_state_t c = plain();
	size_t got = 0;
	for (;;) {
		amqp_rpc_reply_t r = amqp_basic_get(
			c, 1, amqp_cstring_bytes(queue), 1);
		assert_normal(r, queue);
		if (r.reply.id != AMQP_BASIC_GET_OK_METHOD)
			break;
		amqp_message_t m;
		assert_normal(amqp_read_message(c, 1, &m, 0), queue);
		char buf[32] = { 0 };
		memcpy(buf, m.body.bytes,
		       m.body.len < sizeof buf - 1 ? m.body.len
						   : sizeof buf - 1);
		size_t id = strtoul(buf, NULL, 10);
		if (id < n)
			atomic_fetch_add(&counts[id], 1);
		amqp_destroy_message(&m);
		got++;
	}
	done(c);
	return got;
}

void wait_ready(const char *queue, long want)
{
	while (queue_ready(queue) != want) {
		struct timespec ts = { 0, 20000000L };
		nanosleep(&ts, NULL);
	}
}

size_t body_id(const gs_message *m)
{
	return strtoul(m->data, NULL, 10);
}

void log_keep_fn(void *arg, const char *msg)
{
	log_keep *l = arg;
	pthread_mutex_lock(&l->lock);
	snprintf(l->last, sizeof l->last, "%s", msg);
	size_t len = strlen(l->all);
	if (len + strlen(msg) + 2 < sizeof l->all)
		snprintf(l->all + len, sizeof l->all - len, "%s\n", msg);
	pthread_mutex_unlock(&l->lock);
	atomic_fetch_add(&l->n, 1);
}

bool log_has(log_keep *l, const char *text)
{
	pthread_mutex_lock(&l->lock);
	bool found = strstr(l->all, text) != NULL;
	pthread_mutex_unlock(&l->lock);
	return found;
}
