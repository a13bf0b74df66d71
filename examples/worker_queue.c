// SPDX-License-Identifier: MIT
/*
 * worker_queue: webhooks delivered from a RabbitMQ queue. Each message is
 * a webhook (a URL and a payload); 8 senders deliver them at once; a
 * failed delivery is tried again at once with a growing backoff (20, 40,
 * 80 ms), then handed back to the broker, which retries it after a delay
 * (the source's retry queue), up to 5 times, then dead-letters it to
 * "<queue>.dead"; Ctrl-C drains:
 * no new webhooks are taken, those being sent finish and are acked, and
 * the rest stay in the queue for the next run (or another copy).
 *
 * Several copies may run against one queue: the broker shares the
 * messages between them, and a copy that dies hands its unacknowledged
 * messages to the others (see the README).
 *
 * send_webhook stands in for an HTTP POST: it takes 5-50 ms and fails
 * one time in five, and always for one endpoint that is gone, so that
 * retries and dead letters show.
 *
 * Run (a broker on localhost:5672, guest/guest):
 *   build/examples/worker_queue [--port P] [--queue NAME] [--publish N]
 *                               [--until-done]
 * --publish N queues N sample webhooks first; --until-done exits (with a
 * drain) once every webhook published this way is sent or dead-lettered.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <genstage/amqp.h>
#include <genstage/genstage.h>

#define SENDERS 8
#define MAX_RETRIES 5
/* Tries per delivery before the message goes back to the broker. */
#define TRIES 4
#define FIRST_BACKOFF_MS 20

typedef struct counts {
	_Atomic uint64_t sent, failed_tries, dead;
} counts;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* An HTTP POST would go here. Deterministic per (body, try) so that the
 * run can be checked. */
static int send_webhook(const char *body, uint64_t try)
{
	unsigned h = 2166136261u;
	for (const char *c = body; *c; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	h ^= (unsigned)try * 2654435761u;
	struct timespec ts = { 0, (long)(5 + h % 46) * 1000000L };
	nanosleep(&ts, NULL);
	if (strstr(body, "hooks.example/13\""))
		return -1; /* the endpoint that is gone */
	return h % 5 == 0 ? -1 : 0;
}

static int handle_message(void *arg, size_t sender, gs_message *m)
{
	(void)sender;
	counts *c = arg;
	const gs_amqp_meta *meta = m->metadata;
	/* The senders are blocking stages: they may sleep between tries. */
	long backoff_ms = FIRST_BACKOFF_MS;
	for (uint64_t t = 0; t < TRIES; t++) {
		if (!send_webhook(m->data, meta->deaths * TRIES + t)) {
			atomic_fetch_add(&c->sent, 1);
			return GS_OK;
		}
		atomic_fetch_add(&c->failed_tries, 1);
		if (t + 1 < TRIES) {
			struct timespec ts = { 0, backoff_ms * 1000000L };
			nanosleep(&ts, NULL);
			backoff_ms *= 2;
		}
	}
	if (meta->deaths >= MAX_RETRIES)
		atomic_fetch_add(&c->dead, 1);
	return GS_EUSER; /* retried later, or dead-lettered at the limit */
}

/* A plain rabbitmq-c connection with channel 1 open, or NULL. */
static amqp_connection_state_t connect_to(int port)
{
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	if (amqp_socket_open(s, "127.0.0.1", port) ||
	    amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
		       "guest")
			    .reply_type != AMQP_RESPONSE_NORMAL ||
	    !amqp_channel_open(c, 1)) {
		amqp_destroy_connection(c);
		return NULL;
	}
	return c;
}

/* Queues n sample webhooks with a plain rabbitmq-c publisher, once the
 * source has declared the queue (published before, they would have
 * nowhere to go). */
static int publish(int port, const char *queue, size_t n)
{
	amqp_connection_state_t c = NULL;
	for (int i = 0; i < 200 && !c && !interrupted; i++) {
		c = connect_to(port);
		if (c && !amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 1,
					     0, 0, 0, amqp_empty_table)) {
			amqp_destroy_connection(c); /* not there yet */
			c = NULL;
		}
		if (!c)
			usleep(50000);
	}
	if (!c) {
		fprintf(stderr, "worker_queue: no queue '%s' on port %d\n",
			queue, port);
		return -1;
	}
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
		.delivery_mode = AMQP_DELIVERY_PERSISTENT
	};
	for (size_t i = 0; i < n; i++) {
		char body[128];
		snprintf(body, sizeof body,
			 "{\"url\": \"http://hooks.example/%zu\", \"event\": "
			 "%zu}",
			 i % 17, i);
		amqp_basic_publish(c, 1, amqp_empty_bytes,
				   amqp_cstring_bytes(queue), 0, 0, &p,
				   amqp_cstring_bytes(body));
	}
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	return 0;
}

int main(int argc, char **argv)
{
	int port = 5672;
	const char *queue = "webhooks";
	size_t to_publish = 0;
	bool until_done = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--queue") && i + 1 < argc)
			queue = argv[++i];
		else if (!strcmp(argv[i], "--publish") && i + 1 < argc)
			to_publish = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--until-done"))
			until_done = true;
		else {
			fprintf(stderr, "usage: worker_queue [--port P] "
					"[--queue NAME] [--publish N] "
					"[--until-done]\n");
			return 2;
		}
	}
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);

	/* The queue, its retry queue (1 s later, back to the queue) and its
	 * dead-letter queue are declared by the source. */
	gs_amqp_source_opts src = {
		.conn = { .port = port },
		.queue = queue,
		.declare = true,
		.on_failure = GS_AMQP_RETRY,
		.max_retries = MAX_RETRIES,
		.retry_delay = 1000,
		.prefetch = 2 * SENDERS,
	};
	static const gs_broadway_ops ops = { .handle_message = handle_message };
	counts c = { 0 };
	gs_broadway *bw;
	gs_err err = gs_broadway_new(
		&ops, &c,
		&(gs_broadway_opts){
			.name = "webhooks",
			.producer = gs_amqp_broadway_producer(&src, 1),
			/* Senders block on the network: each gets a thread,
			 * and takes one webhook at a time. */
			.processors = { .concurrency = SENDERS,
					.max_demand = 1,
					.min_demand = GS_MIN_DEMAND_ZERO,
					.blocking = true } },
		&bw);
	if (!err)
		err = gs_broadway_start(bw);
	if (err) {
		fprintf(stderr, "worker_queue: %s\n", gs_strerror(err));
		return 1;
	}
	if (to_publish && publish(port, queue, to_publish)) {
		gs_broadway_free(bw);
		return 1;
	}
	while (!interrupted) {
		if (until_done &&
		    atomic_load(&c.sent) + atomic_load(&c.dead) >= to_publish)
			break;
		usleep(100000);
	}
	/* The drain: nothing new is taken, what is in flight finishes and
	 * is acked, the rest stays in the queue. */
	fprintf(stderr, "worker_queue: draining\n");
	err = gs_broadway_stop(bw);
	gs_broadway_stats st;
	gs_broadway_stats_get(bw, &st);
	gs_broadway_free(bw);
	printf("sent %llu, failed tries %llu, dead-lettered %llu "
	       "(acks: %llu successful, %llu failed)\n",
	       (unsigned long long)atomic_load(&c.sent),
	       (unsigned long long)atomic_load(&c.failed_tries),
	       (unsigned long long)atomic_load(&c.dead),
	       (unsigned long long)st.successful,
	       (unsigned long long)st.failed);
	if (until_done &&
	    atomic_load(&c.sent) + atomic_load(&c.dead) != to_publish)
		return 1;
	return err != GS_OK;
}
