// SPDX-License-Identifier: MIT
/*
 * bus_bridge: one event bus per process, the buses bridged through a
 * RabbitMQ topic exchange. Each copy forwards its local "orders.#" events
 * to the exchange "bus_bridge" and feeds what the other copies forwarded
 * into its own bus, from a queue of its own ("bus_bridge.<name>"), where a
 * subscriber prints every order event, local or remote. A copy never
 * hears its own events back, and never sends on what it received.
 *
 * Run (a broker on localhost:5672, guest/guest), in two terminals:
 *   build/examples/bus_bridge --name eu
 *   build/examples/bus_bridge --name us --publish 5
 * The second publishes 5 orders on its bus, waits until the broker has
 * them, and exits; the first prints them ("from amqp:us:shop"). Start
 * the listener first: its queue, once declared, keeps what is sent while
 * it is away, but nothing is kept for a queue not yet bound. Ctrl-C stops
 * it; --count N makes it exit once N remote events have arrived.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <genstage/amqp.h>
#include <genstage/genstage.h>

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

typedef struct printer {
	const char *name;
	_Atomic uint64_t remote;
} printer;

static int print_order(void *arg, const gs_bus_envelope *env)
{
	printer *p = arg;
	bool remote = !strncmp(env->source, GS_AMQP_BRIDGE_SOURCE_PREFIX,
			       strlen(GS_AMQP_BRIDGE_SOURCE_PREFIX));
	printf("%s: %s '%s' from %s (correlation %llu)\n", p->name, env->topic,
	       (const char *)env->payload, env->source,
	       (unsigned long long)env->correlation_id);
	if (remote)
		atomic_fetch_add(&p->remote, 1);
	return GS_BUS_DONE;
}

static int publish_orders(gs_bus *bus, size_t n)
{
	for (size_t i = 1; i <= n; i++) {
		char *body = malloc(32);
		if (!body)
			return 1;
		snprintf(body, 32, "order %zu", i);
		gs_err err = gs_bus_publish_batch(
			bus,
			&(gs_bus_msg){ i % 2 ? "orders.created" : "orders.paid",
				       body },
			1,
			&(gs_bus_publish_opts){ .source = "shop",
						.free_fn = free,
						.timeout_ms = GS_BUS_FOREVER });
		if (err) {
			free(body);
			fprintf(stderr, "bus_bridge: %s\n", gs_strerror(err));
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	int port = 5672;
	const char *name = "a";
	size_t to_publish = 0, count = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--name") && i + 1 < argc)
			name = argv[++i];
		else if (!strcmp(argv[i], "--publish") && i + 1 < argc)
			to_publish = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: bus_bridge [--port P] "
					"[--name NAME] [--publish N] "
					"[--count N]\n");
			return 2;
		}
	}
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);

	gs_bus *bus;
	printer p = { .name = name };
	const char *const orders[] = { "orders.#", NULL };
	gs_err err = gs_bus_new(NULL, &bus);
	if (!err)
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){ .patterns = orders,
					    .handler = print_order,
					    .arg = &p,
					    .queue_size = 64,
					    .blocking = true },
			NULL);
	/* The bridge: its id names this copy on the exchange (the sources
	 * of what it forwards read "amqp:<name>:..." at the others). */
	char queue[128];
	snprintf(queue, sizeof queue, "bus_bridge.%s", name);
	gs_amqp_bridge *br = NULL;
	if (!err)
		err = gs_amqp_bridge_new(
			bus,
			&(gs_amqp_bridge_opts){ .conn = { .port = port },
						.exchange = "bus_bridge",
						.id = name,
						.forward = orders,
						.receive = orders,
						.queue = queue },
			&br);
	if (err) {
		fprintf(stderr, "bus_bridge: %s\n", gs_strerror(err));
		gs_bus_free(bus);
		return 1;
	}
	int rc = to_publish ? publish_orders(bus, to_publish) : 0;
	while (!to_publish && !interrupted &&
	       (!count || atomic_load(&p.remote) < count))
		usleep(100000);
	/* Freeing the bridge forwards what the bus accepted for it, each
	 * confirmed by the broker, before it returns. */
	gs_amqp_bridge_free(br);
	gs_bus_free(bus);
	return rc;
}
