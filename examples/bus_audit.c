// SPDX-License-Identifier: MIT
/*
 * bus_audit: an event bus with three very different listeners. An account
 * service publishes user and order events without knowing who listens:
 *
 *  - "audit" takes every event ("#") one at a time, in order, losslessly
 *    (GS_BUS_BLOCK: a full audit queue makes the service wait);
 *  - "webhook" posts order events ("order.#") to a slow, flaky endpoint
 *    with 8 requests in flight (a worker pool), retrying with backoff;
 *    what still fails goes to a dead letter, which publishes
 *    "webhook.dead" from inside the handler, so its causation id points
 *    at the order event and its correlation id at the first one;
 *  - "metrics" counts sign-ups and payments ("*.signed_up",
 *    "order.paid") and may drop the oldest when it lags, so it never
 *    slows anyone down.
 *
 * At the end (or on Ctrl-C) the bus is closed with drain: every accepted
 * event reaches every listener that matched it, and what handlers publish
 * meanwhile (the dead letters) is still taken. Then the counters are
 * printed as JSON, and the run checks itself: the audit saw every event
 * and every dead letter, in order, and for each listener accepted =
 * handled + dropped + failed.
 *
 * Run:  make demo
 *   or  build/examples/bus_audit [EVENTS]      (default 2000)
 *       build/examples/bus_audit 0             (until Ctrl-C)
 *       AUDIT_LOG=FILE build/examples/bus_audit (the audit's lines to FILE)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <genstage/genstage.h>

/* What the account service publishes. */
typedef struct account_event {
	uint64_t seq;
	unsigned user;
	unsigned cents;
} account_event;

static const char *const topics[] = {
	"user.signed_up", "order.placed", "order.paid",
	"order.shipped",  "user.deleted",
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

/* --- audit: every event, in order ---------------------------------- */

typedef struct audit {
	uint64_t last_id, seen, out_of_order, dead_letters;
	FILE *out; /* the log, or NULL */
} audit;

static int audit_event(void *arg, const gs_bus_envelope *env)
{
	audit *a = arg;
	if (env->id <= a->last_id)
		a->out_of_order++;
	a->last_id = env->id;
	a->seen++;
	if (!strcmp(env->topic, "webhook.dead"))
		a->dead_letters++;
	if (a->out)
		fprintf(a->out,
			"%" PRIu64 " %s from %s (correlation %" PRIu64
			", cause %" PRIu64 ")\n",
			env->id, env->topic, env->source, env->correlation_id,
			env->causation_id);
	return GS_BUS_DONE;
}

/* --- webhook: slow, flaky, 8 at a time --------------------------------- */

typedef struct webhook {
	gs_bus *bus;
	_Atomic uint64_t calls, posted;
} webhook;

static int webhook_post(void *arg, const gs_bus_envelope *env)
{
	webhook *w = arg;
	const account_event *ev = env->payload;
	uint64_t call = atomic_fetch_add(&w->calls, 1);
	sleep_us(500); /* the endpoint is slow */
	/* One order in 50 is refused for good; one call in 7 times out. */
	if (ev->seq % 50 == 7 || call % 7 == 3)
		return GS_EUSER + 503;
	atomic_fetch_add(&w->posted, 1);
	return GS_BUS_DONE;
}

static void webhook_dead(void *arg, const gs_bus_envelope *env, int error)
{
	webhook *w = arg;
	(void)error;
	account_event *copy = malloc(sizeof *copy);
	if (!copy)
		return;
	*copy = *(const account_event *)env->payload;
	/* From inside the handler's call: the bus links it to env. */
	if (gs_bus_publish(w->bus, "webhook.dead", copy, free, GS_BUS_FOREVER))
		free(copy);
}

/* --- metrics: counts, lossy by design ------------------------------ */

typedef struct metrics {
	uint64_t signups, payments, cents;
} metrics;

static int metrics_count(void *arg, const gs_bus_envelope *env)
{
	metrics *m = arg;
	const account_event *ev = env->payload;
	if (!strcmp(env->topic, "order.paid")) {
		m->payments++;
		m->cents += ev->cents;
	} else {
		m->signups++;
	}
	return GS_BUS_DONE;
}

/* --- the service ------------------------------------------------------- */

static gs_err publish_one(gs_bus *bus, uint64_t seq)
{
	account_event *ev = malloc(sizeof *ev);
	if (!ev)
		return GS_ENOMEM;
	*ev = (account_event){ .seq = seq,
			       .user = (unsigned)(seq * 7919 % 1000),
			       .cents = (unsigned)(seq * 31 % 10000) };
	gs_bus_msg msg = { topics[seq % 5], ev };
	gs_err err = gs_bus_publish_batch(
		bus, &msg, 1,
		&(gs_bus_publish_opts){ .source = "accounts",
					.free_fn = free,
					.timeout_ms = GS_BUS_FOREVER });
	if (err)
		free(ev);
	return err;
}

static bool conserved(const gs_bus_sub *sub)
{
	gs_bus_sub_stats st;
	gs_bus_sub_stats_get(sub, &st);
	printf("  %-8s accepted %6" PRIu64 "  handled %6" PRIu64
	       "  dropped %5" PRIu64 "  failed %4" PRIu64 "  retried %4" PRIu64
	       "\n",
	       gs_bus_sub_name(sub), st.accepted, st.handled, st.dropped,
	       st.failed, st.retried);
	return st.accepted == st.handled + st.dropped + st.failed &&
	       st.in_flight == 0;
}

int main(int argc, char **argv)
{
	uint64_t events = 2000;
	if (argc > 1) {
		/* strtoull takes "-1" as 2^64 - 1 and "abc" as 0 (for ever):
		 * only plain digits are a count. */
		char *end;
		errno = 0;
		events = strtoull(argv[1], &end, 10);
		if (argv[1][0] < '0' || argv[1][0] > '9' || *end || errno) {
			fprintf(stderr,
				"usage: %s [EVENTS]  (0: until Ctrl-C)\n",
				argv[0]);
			return 2;
		}
	}
	signal(SIGINT, on_sigint);

	gs_bus *bus;
	gs_err err = gs_bus_new(&(gs_bus_opts){ .name = "accounts" }, &bus);
	if (err) {
		fprintf(stderr, "bus_audit: %s\n", gs_strerror(err));
		return 1;
	}
	audit a = { .out = getenv("AUDIT_LOG") ? fopen(getenv("AUDIT_LOG"), "w")
					       : NULL };
	webhook w = { .bus = bus };
	metrics m = { 0 };
	gs_bus_sub *audit_sub, *webhook_sub, *metrics_sub;
	err = gs_bus_subscribe(
		bus,
		&(gs_bus_sub_opts){ .name = "audit",
				    .patterns = (const char *[]){ "#", NULL },
				    .handler = audit_event,
				    .arg = &a,
				    .queue_size = 256,
				    /* Writing a file may block. */
				    .blocking = a.out != NULL },
		&audit_sub);
	if (!err)
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){
				.name = "webhook",
				.patterns = (const char *[]){ "order.#", NULL },
				.handler = webhook_post,
				.arg = &w,
				.dead_letter = webhook_dead,
				.queue_size = 512,
				.concurrency = 8,
				.max_retries = 2,
				.retry_backoff_ms = 1 },
			&webhook_sub);
	if (!err)
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){
				.name = "metrics",
				.patterns = (const char *[]){ "*.signed_up",
							      "order.paid",
							      NULL },
				.handler = metrics_count,
				.arg = &m,
				.queue_size = 64,
				.overflow = GS_BUS_DROP_OLDEST },
			&metrics_sub);
	uint64_t published = 0;
	while (!err && !interrupted && (!events || published < events))
		if (!(err = publish_one(bus, ++published)) && !events)
			sleep_us(1000);
	if (err) {
		published--;
		fprintf(stderr, "bus_audit: %s\n", gs_strerror(err));
	}
	/* Closing time: everything accepted reaches its listeners. */
	gs_bus_close(bus, GS_BUS_DRAIN);
	printf("published %" PRIu64 " account events; the audit saw %" PRIu64
	       " (%" PRIu64 " dead letters), %" PRIu64
	       " orders reached the webhook, metrics counted %" PRIu64
	       " sign-ups and %" PRIu64 " payments\n",
	       published, a.seen, a.dead_letters, atomic_load(&w.posted),
	       m.signups, m.payments);
	/* Each prints its line, so all three are called. */
	bool audit_ok = conserved(audit_sub);
	bool webhook_ok = conserved(webhook_sub);
	bool metrics_ok = conserved(metrics_sub);
	bool ok = audit_ok && webhook_ok && metrics_ok;
	gs_bus_sub_stats hooks;
	gs_bus_sub_stats_get(webhook_sub, &hooks);
	/* Every failed post became a dead letter, and the drain let each
	 * reach the audit. */
	ok = ok && a.out_of_order == 0 && a.dead_letters == hooks.failed &&
	     a.seen == published + a.dead_letters;
	gs_bus_write_json(bus, stdout);
	gs_bus_free(bus);
	if (a.out)
		fclose(a.out);
	printf("%s\n", ok && !err ? "ok" : "FAILED");
	return ok && !err ? 0 : 1;
}
