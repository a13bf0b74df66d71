// SPDX-License-Identifier: MIT
/*
 * gs-bench-amqp: the RabbitMQ connector against plain rabbitmq-c loops on
 * the same private broker in the same run (started here as the tests
 * start theirs), and the Broadway rate limiter's achieved rate.
 *
 *   amqp-consume  N small persistent messages consumed, processed and
 *                 acked: a Broadway pipeline on the source vs a plain
 *                 loop (basic.consume, ack `multiple` every prefetch/2)
 *                 with the same prefetch. Then end-to-end latency (publish
 *                 to handle_message) with a publisher at a fixed rate.
 *   amqp-publish  N persistent messages published with confirms: the sink
 *                 vs a plain loop keeping the same number unconfirmed;
 *                 latency is publish to confirmation.
 *   amqp-bridge   N events published on a bus and forwarded by the bus
 *                 bridge to a topic exchange, each envelope completing once
 *                 the broker confirmed it, with 1 and then 16 forwards
 *                 unconfirmed at once, vs a plain loop publishing to the
 *                 same exchange keeping as many unconfirmed.
 *   broadway-rate allowed_messages per interval over 5 s: achieved rate
 *                 over allowed (no broker).
 *
 * Each comparison runs --repeat times, alternating which side goes
 * first, and prints min/median/max of messages/s for both sides and of
 * the ratio ours/plain (1.0 = as fast as the plain loop), with the CPU
 * seconds of this process and of the broker per run.
 *
 * Usage: gs-bench-amqp [--messages N] [--repeat R] [--only NAME]
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <genstage/amqp.h>
#include <genstage/genstage.h>

#include "../tests/amqp/broker.h"

#define PREFETCH 1000
#define WINDOW PREFETCH
#define MAX_RUNS 16

static size_t n_messages = 200000;
/* What plain_publish publishes to, and how many it keeps unconfirmed. */
static const char *pub_exchange = "";
static size_t pub_window = WINDOW;
static int repeat = 3;
static const char *only;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double self_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* The broker's beam.smp: named beam.smp, with our node in its
 * environment. */
static long find_broker(void)
{
	const char *node = getenv("RABBITMQ_NODENAME");
	char want[160], path[300];
	static char buf[65536];
	snprintf(want, sizeof want, "RABBITMQ_NODENAME=%s", node ? node : "");
	DIR *d = opendir("/proc");
	long found = 0;
	for (struct dirent *e; node && d && !found && (e = readdir(d));) {
		long p = strtol(e->d_name, NULL, 10);
		if (p <= 0)
			continue;
		snprintf(path, sizeof path, "/proc/%ld/comm", p);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, 64, f);
		fclose(f);
		buf[n] = '\0';
		if (strncmp(buf, "beam", 4))
			continue;
		snprintf(path, sizeof path, "/proc/%ld/environ", p);
		f = fopen(path, "r");
		if (!f)
			continue;
		n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		for (size_t i = 0; i + strlen(want) <= n && !found; i++)
			if (!memcmp(buf + i, want, strlen(want)))
				found = p;
	}
	if (d)
		closedir(d);
	return found;
}

/* The broker's CPU seconds so far (0 if it cannot be found). */
static double broker_cpu(void)
{
	static long pid = -1;
	if (pid < 0)
		pid = find_broker();
	char path[64];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = pid > 0 ? fopen(path, "r") : NULL;
	unsigned long ut = 0, st = 0;
	if (f) {
		if (fscanf(f,
			   "%*d (%*[^)]) %*c %*d %*d %*d %*d %*d %*u %*u %*u "
			   "%*u %*u %lu %lu",
			   &ut, &st) != 2)
			ut = st = 0;
		fclose(f);
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static amqp_connection_state_t plain_conn(void)
{
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = amqp_tcp_socket_new(c);
	if (amqp_socket_open(s, "127.0.0.1", broker_port()) ||
	    amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest",
		       "guest")
			    .reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "gs-bench-amqp: cannot connect\n");
		exit(1);
	}
	amqp_channel_open(c, 1);
	amqp_get_rpc_reply(c);
	return c;
}

static void plain_close(amqp_connection_state_t c)
{
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
}

static void declare(amqp_connection_state_t c, const char *q)
{
	amqp_queue_declare(c, 1, amqp_cstring_bytes(q), 0, 1, 0, 0,
			   amqp_empty_table);
	amqp_queue_purge(c, 1, amqp_cstring_bytes(q));
}

/* The body: the publish time in ns, for latency. */
static amqp_bytes_t stamp(char *buf, size_t size)
{
	snprintf(buf, size, "%llu", (unsigned long long)now_ns());
	return amqp_cstring_bytes(buf);
}

static void wait_confirms(amqp_connection_state_t c, uint64_t *confirmed,
			  uint64_t upto, uint64_t *lat, const uint64_t *sent)
{
	while (*confirmed < upto) {
		amqp_frame_t f;
		if (amqp_simple_wait_frame(c, &f) != AMQP_STATUS_OK)
			exit(1);
		if (f.frame_type != AMQP_FRAME_METHOD ||
		    f.payload.method.id != AMQP_BASIC_ACK_METHOD)
			continue;
		amqp_basic_ack_t *a = f.payload.method.decoded;
		uint64_t t = now_ns();
		uint64_t from = a->multiple ? *confirmed + 1 : a->delivery_tag;
		for (uint64_t s = from; lat && s <= a->delivery_tag; s++)
			lat[s - 1] = t - sent[s - 1];
		if (a->delivery_tag > *confirmed)
			*confirmed = a->delivery_tag;
	}
}

/* The plain publisher: publishes n to pub_exchange, at most pub_window
 * unconfirmed; if
 * `lat`, records publish-to-confirm times. `rate` > 0 paces it. */
static double plain_publish(const char *q, size_t n, uint64_t *lat, double rate)
{
	amqp_connection_state_t c = plain_conn();
	amqp_confirm_select(c, 1);
	amqp_get_rpc_reply(c);
	uint64_t *sent = lat ? malloc(n * sizeof *sent) : NULL;
	uint64_t confirmed = 0;
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
		.delivery_mode = AMQP_DELIVERY_PERSISTENT
	};
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		char buf[32];
		if (rate > 0)
			while (now_s() - t0 < (double)i / rate)
				usleep(50);
		if (sent)
			sent[i] = now_ns();
		amqp_basic_publish(c, 1, amqp_cstring_bytes(pub_exchange),
				   amqp_cstring_bytes(q), 0, 0, &p,
				   stamp(buf, sizeof buf));
		if (i + 1 - confirmed >= pub_window)
			wait_confirms(c, &confirmed, i + 2 - pub_window, lat,
				      sent);
	}
	wait_confirms(c, &confirmed, n, lat, sent);
	double dt = now_s() - t0;
	free(sent);
	plain_close(c);
	return (double)n / dt;
}

/* The plain consumer: prefetch PREFETCH, ack multiple every half. */
static double plain_consume(const char *q, size_t n, uint64_t *lat)
{
	amqp_connection_state_t c = plain_conn();
	amqp_basic_qos(c, 1, 0, PREFETCH, 0);
	amqp_basic_consume(c, 1, amqp_cstring_bytes(q), amqp_empty_bytes, 0, 0,
			   0, amqp_empty_table);
	amqp_get_rpc_reply(c);
	double t0 = 0;
	for (size_t i = 0; i < n; i++) {
		amqp_envelope_t e;
		amqp_maybe_release_buffers(c);
		if (amqp_consume_message(c, &e, NULL, 0).reply_type !=
		    AMQP_RESPONSE_NORMAL)
			exit(1);
		if (!i)
			t0 = now_s();
		char buf[32] = { 0 };
		memcpy(buf, e.message.body.bytes,
		       e.message.body.len < 31 ? e.message.body.len : 31);
		if (lat)
			lat[i] = now_ns() - strtoull(buf, NULL, 10);
		if ((i + 1) % (PREFETCH / 2) == 0 || i + 1 == n)
			amqp_basic_ack(c, 1, e.delivery_tag, 1);
		amqp_destroy_envelope(&e);
	}
	double dt = now_s() - t0;
	plain_close(c);
	return (double)(n - 1) / dt;
}

typedef struct ours_ctx {
	_Atomic uint64_t handled;
	_Atomic uint64_t first_ns;
	uint64_t *lat;
} ours_ctx;

static int on_message(void *arg, size_t processor, gs_message *m)
{
	(void)processor;
	ours_ctx *c = arg;
	uint64_t t = now_ns();
	uint64_t zero = 0;
	atomic_compare_exchange_strong(&c->first_ns, &zero, t);
	uint64_t i = atomic_fetch_add(&c->handled, 1);
	if (c->lat)
		c->lat[i] = t - strtoull(m->data, NULL, 10);
	return GS_OK;
}

static double ours_consume(const char *q, size_t n, uint64_t *lat)
{
	static const gs_broadway_ops ops = { .handle_message = on_message };
	ours_ctx c = { .lat = lat };
	gs_amqp_source_opts o = { .conn = { .port = broker_port() },
				  .queue = q,
				  .prefetch = PREFETCH,
				  .on_failure = GS_AMQP_REQUEUE };
	gs_broadway *bw;
	if (gs_broadway_new(&ops, &c,
			    &(gs_broadway_opts){
				    .producer = gs_amqp_broadway_producer(&o, 1),
				    .processors = { .concurrency = 2,
						    .max_demand = 500 } },
			    &bw) ||
	    gs_broadway_start(bw))
		exit(1);
	while (atomic_load(&c.handled) < n)
		usleep(200);
	double dt = (double)(now_ns() - atomic_load(&c.first_ns)) * 1e-9;
	gs_broadway_stop(bw);
	gs_broadway_free(bw); /* the last acks */
	return (double)(n - 1) / dt;
}

typedef struct pub_ctx {
	size_t next, n;
	uint64_t *sent, *lat;
	_Atomic uint64_t confirmed;
	char q[64];
} pub_ctx;

static long gen(void *arg, void **out, size_t max)
{
	pub_ctx *c = arg;
	size_t k = 0;
	while (k < max && c->next < c->n)
		out[k++] = (void *)(uintptr_t)c->next++;
	return (long)k;
}

static int encode(void *arg, void *event, gs_amqp_out *out)
{
	pub_ctx *c = arg;
	static _Thread_local char buf[32];
	size_t i = (uintptr_t)event;
	if (c->sent)
		c->sent[i] = now_ns();
	*out = (gs_amqp_out){ .routing_key = c->q,
			      .body = buf,
			      .size = strlen(stamp(buf, sizeof buf).bytes) };
	return GS_OK;
}

static void confirmed(void *arg, void *event, int status)
{
	pub_ctx *c = arg;
	size_t i = (uintptr_t)event;
	if (c->lat && !status)
		c->lat[i] = now_ns() - c->sent[i];
	atomic_fetch_add(&c->confirmed, 1);
}

static double ours_publish(const char *q, size_t n, uint64_t *lat)
{
	pub_ctx c = { .n = n, .lat = lat };
	snprintf(c.q, sizeof c.q, "%s", q);
	if (lat)
		c.sent = malloc(n * sizeof *c.sent);
	gs_pipeline *p;
	gs_stage *src;
	gs_amqp_sink *sink;
	gs_pipeline_new(NULL, &p);
	gs_from_fn(p, gen, &c, NULL, &src);
	if (gs_amqp_sink_new(
		    p,
		    &(gs_amqp_sink_opts){ .conn = { .port = broker_port() },
					  .max_unconfirmed = WINDOW,
					  .encode = encode,
					  .confirmed = confirmed,
					  .arg = &c },
		    NULL, &sink))
		exit(1);
	gs_subscribe(gs_amqp_sink_stage(sink), src,
		     &(gs_sub_opts){ .max_demand = 500 }, NULL);
	double t0 = now_s();
	gs_pipeline_start(p);
	gs_pipeline_wait(p);
	double dt = now_s() - t0;
	gs_pipeline_free(p);
	gs_amqp_sink_free(sink);
	free(c.sent);
	return (double)n / dt;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int cmp_u(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void summary(const char *what, double *v, int n, const char *unit)
{
	qsort(v, (size_t)n, sizeof *v, cmp_d);
	printf("  %-34s min %10.3f  median %10.3f  max %10.3f %s\n", what, v[0],
	       v[n / 2], v[n - 1], unit);
}

static void percentiles(const char *what, uint64_t *lat, size_t n)
{
	qsort(lat, n, sizeof *lat, cmp_u);
	printf("  %-34s p50 %8.3f ms  p99 %8.3f ms\n", what,
	       (double)lat[n / 2] * 1e-6, (double)lat[n * 99 / 100] * 1e-6);
}

static bool selected(const char *name)
{
	return !only || !strcmp(only, name);
}

/* One side's run: messages/s, and CPU seconds of us and the broker. */
typedef double (*run_fn)(const char *q, size_t n, uint64_t *lat);

static void measure(run_fn f, const char *q, size_t n, double *rate,
		    double *cpu, double *bcpu)
{
	double c0 = self_cpu(), b0 = broker_cpu();
	*rate = f(q, n, NULL);
	*cpu = self_cpu() - c0;
	*bcpu = broker_cpu() - b0;
}

static double fill(const char *q, size_t n, uint64_t *lat)
{
	(void)lat;
	return plain_publish(q, n, NULL, 0);
}

/* `target`: what the ratio should reach, printed beside it ("" none). */
static void compare(const char *name, run_fn plain, run_fn ours, bool prefill,
		    const char *target)
{
	double rp[MAX_RUNS], ro[MAX_RUNS], ratio[MAX_RUNS], cp[MAX_RUNS],
		co[MAX_RUNS], bp[MAX_RUNS], bo[MAX_RUNS];
	const char *q = "gs-bench-amqp";
	amqp_connection_state_t c = plain_conn();
	declare(c, q);
	plain_close(c);
	/* PREFETCH and WINDOW are equal; the bridge rows change the window. */
	printf("%s: %zu messages, prefetch/window %zu, %d runs\n", name,
	       n_messages, pub_window, repeat);
	for (int r = 0; r < repeat; r++) {
		for (int side = 0; side < 2; side++) {
			bool us = (side + r) % 2;
			if (prefill)
				fill(q, n_messages, NULL);
			measure(us ? ours : plain, q, n_messages,
				us ? &ro[r] : &rp[r], us ? &co[r] : &cp[r],
				us ? &bo[r] : &bp[r]);
			/* A run of a million messages takes minutes. */
			fprintf(stderr, "  [%d/%d] %-8s %10.0f msgs/s\n", r + 1,
				repeat, us ? "genstage" : "plain",
				us ? ro[r] : rp[r]);
		}
		ratio[r] = ro[r] / rp[r];
	}
	summary("plain rabbitmq-c msgs/s", rp, repeat, "");
	summary("genstage msgs/s", ro, repeat, "");
	summary("ratio genstage/plain", ratio, repeat, target);
	summary("our CPU s, plain", cp, repeat, "");
	summary("our CPU s, genstage", co, repeat, "");
	summary("broker CPU s, plain", bp, repeat, "");
	summary("broker CPU s, genstage", bo, repeat, "");
}

/* Latency: a paced publisher (plain) and the consumer under test. */
typedef struct paced {
	const char *q;
	size_t n;
	double rate;
} paced;

static void *pace(void *arg)
{
	paced *p = arg;
	plain_publish(p->q, p->n, NULL, p->rate);
	return NULL;
}

static void consume_latency(void)
{
	size_t n = n_messages / 10 < 20000 ? n_messages / 10 : 20000;
	uint64_t *lat = malloc(n * sizeof *lat);
	const char *q = "gs-bench-amqp-lat";
	amqp_connection_state_t c = plain_conn();
	declare(c, q);
	plain_close(c);
	for (int us = 0; us < 2; us++) {
		paced pc = { q, n, 5000.0 };
		pthread_t t;
		pthread_create(&t, NULL, pace, &pc);
		(us ? ours_consume : plain_consume)(q, n, lat);
		pthread_join(t, NULL);
		percentiles(us ? "genstage publish->handle (5k/s)"
			       : "plain publish->consume (5k/s)",
			    lat, n);
	}
	free(lat);
}

static void publish_latency(void)
{
	size_t n = n_messages / 10 < 20000 ? n_messages / 10 : 20000;
	uint64_t *lat = malloc(n * sizeof *lat);
	const char *q = "gs-bench-amqp-lat";
	plain_publish(q, n, lat, 0);
	percentiles("plain publish->confirm", lat, n);
	ours_publish(q, n, lat);
	percentiles("genstage publish->confirm", lat, n);
	amqp_connection_state_t c = plain_conn();
	amqp_queue_purge(c, 1, amqp_cstring_bytes(q));
	plain_close(c);
	free(lat);
}

static double publish_plain(const char *q, size_t n, uint64_t *lat)
{
	double r = plain_publish(q, n, lat, 0);
	amqp_connection_state_t c = plain_conn();
	amqp_queue_purge(c, 1, amqp_cstring_bytes(q));
	plain_close(c);
	return r;
}

static double publish_ours(const char *q, size_t n, uint64_t *lat)
{
	double r = ours_publish(q, n, lat);
	amqp_connection_state_t c = plain_conn();
	amqp_queue_purge(c, 1, amqp_cstring_bytes(q));
	plain_close(c);
	return r;
}

/* The bridge row's exchange; its queue is bound to it with "#". */
#define BRIDGE_EXCHANGE "gs-bench-bridge"

static void purge(const char *q)
{
	amqp_connection_state_t c = plain_conn();
	amqp_queue_purge(c, 1, amqp_cstring_bytes(q));
	plain_close(c);
}

static double bridge_plain(const char *q, size_t n, uint64_t *lat)
{
	pub_exchange = BRIDGE_EXCHANGE;
	double r = plain_publish(q, n, lat, 0);
	pub_exchange = "";
	purge(q);
	return r;
}

/* Publishes n events on a bus whose bridge forwards them (topic q), and
 * waits until the broker confirmed the last. */
static double bridge_ours(const char *q, size_t n, uint64_t *lat)
{
	(void)lat;
	gs_bus *bus;
	gs_amqp_bridge *br;
	gs_amqp_bridge_stats st = { 0 };
	if (gs_bus_new(NULL, &bus) ||
	    gs_amqp_bridge_new(
		    bus,
		    &(gs_amqp_bridge_opts){
			    .conn = { .port = broker_port() },
			    .exchange = BRIDGE_EXCHANGE,
			    .forward = (const char *const[]){ "#", NULL },
			    .concurrency = pub_window },
		    &br))
		exit(1);
	/* A body as long as the plain loop's time stamps. One forward
	 * first: the sink connects when its first event comes. */
	static char body[] = "1700000000000000000";
	if (gs_bus_publish(bus, q, body, NULL, GS_BUS_FOREVER))
		exit(1);
	while (!st.confirmed) {
		usleep(1000);
		gs_amqp_bridge_stats_get(br, &st);
	}
	double t0 = now_s();
	for (size_t i = 0; i < n; i++)
		if (gs_bus_publish(bus, q, body, NULL, GS_BUS_FOREVER))
			exit(1);
	while (st.confirmed < n + 1) {
		usleep(200);
		gs_amqp_bridge_stats_get(br, &st);
	}
	double dt = now_s() - t0;
	gs_amqp_bridge_free(br);
	gs_bus_free(bus);
	purge(q);
	return (double)n / dt;
}

static void bridge_rows(void)
{
	amqp_connection_state_t c = plain_conn();
	amqp_exchange_declare(c, 1, amqp_cstring_bytes(BRIDGE_EXCHANGE),
			      amqp_cstring_bytes("topic"), 0, 1, 0, 0,
			      amqp_empty_table);
	declare(c, "gs-bench-amqp");
	amqp_queue_bind(c, 1, amqp_cstring_bytes("gs-bench-amqp"),
			amqp_cstring_bytes(BRIDGE_EXCHANGE),
			amqp_cstring_bytes("#"), amqp_empty_table);
	plain_close(c);
	size_t n = n_messages;
	static const size_t windows[] = { 1, 16 };
	for (size_t i = 0; i < 2; i++) {
		pub_window = windows[i];
		/* One at a time is slow: fewer messages. */
		n_messages = pub_window == 1 && n > 5000 ? 5000 : n;
		compare("amqp-bridge", bridge_plain, bridge_ours, false, "");
	}
	n_messages = n;
	pub_window = WINDOW;
}

static _Atomic uint64_t rate_seen;

static int count_only(void *arg, size_t processor, gs_message *m)
{
	(void)arg;
	(void)processor;
	(void)m;
	atomic_fetch_add(&rate_seen, 1);
	return GS_OK;
}

typedef struct feeder {
	gs_broadway *bw;
	void **data;
	size_t n;
} feeder;

/* test_batch blocks while the producer's queue is full: a thread of its
 * own keeps the limiter fed while the main thread measures. */
static void *feed(void *arg)
{
	feeder *f = arg;
	gs_broadway_test_ref *ref;
	gs_broadway_test_batch(f->bw, f->data, f->n, &ref);
	return NULL;
}

static void broadway_rate(void)
{
	enum { allowed = 1000, interval = 100, seconds = 5 };
	static const gs_broadway_ops ops = { .handle_message = count_only };
	double ratio[MAX_RUNS];
	printf("broadway-rate: %d messages per %d ms over %d s, %d runs\n",
	       allowed, interval, seconds, repeat);
	size_t n = allowed * (1000 / interval) * (seconds + 2);
	void **data = calloc(n, sizeof *data);
	for (int r = 0; r < repeat; r++) {
		atomic_store(&rate_seen, 0);
		gs_broadway *bw;
		gs_broadway_new(
			&ops, NULL,
			&(gs_broadway_opts){
				.producer = gs_broadway_test_producer(),
				.processors = { .concurrency = 2 },
				.rate_limiting = { .allowed_messages = allowed,
						   .interval = interval } },
			&bw);
		gs_broadway_start(bw);
		feeder f = { bw, data, n };
		pthread_t t;
		pthread_create(&t, NULL, feed, &f);
		/* Measured from the first message, over whole seconds. */
		while (!atomic_load(&rate_seen))
			usleep(100);
		double t0 = now_s();
		uint64_t c0 = atomic_load(&rate_seen);
		while (now_s() - t0 < seconds)
			usleep(1000);
		uint64_t got = atomic_load(&rate_seen) - c0;
		double dt = now_s() - t0;
		ratio[r] = (double)got / dt / (allowed * (1000.0 / interval));
		gs_broadway_stop(bw); /* the feeder's push fails: it ends */
		pthread_join(t, NULL);
		gs_broadway_free(bw);
	}
	summary("achieved/allowed rate", ratio, repeat, "(target 0.95-1.05)");
	free(data);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--messages") && i + 1 < argc)
			n_messages = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
			repeat = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: gs-bench-amqp [--messages N] "
					"[--repeat R] [--only NAME]\n");
			return 2;
		}
	}
	if (repeat < 1 || repeat > MAX_RUNS || n_messages < 100)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (selected("broadway-rate"))
		broadway_rate();
	if (!selected("amqp-consume") && !selected("amqp-publish") &&
	    !selected("amqp-bridge"))
		return 0;
	broker_suite_start();
	if (!broker_port()) {
		fprintf(stderr, "gs-bench-amqp: %s\n", broker_error());
		return 1;
	}
	if (selected("amqp-consume")) {
		compare("amqp-consume", plain_consume, ours_consume, true,
			"(target >= 0.9)");
		consume_latency();
	}
	if (selected("amqp-publish")) {
		compare("amqp-publish", publish_plain, publish_ours, false,
			"(target >= 0.9)");
		publish_latency();
	}
	if (selected("amqp-bridge"))
		bridge_rows();
	broker_suite_stop();
	return 0;
}
