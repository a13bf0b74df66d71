// SPDX-License-Identifier: MIT
/*
 * kitchen: graceful shutdown with an event bus. Three waiters (threads)
 * take orders and publish them as "order.<station>.<dish>"; cooks
 * subscribe to their station ("order.grill.*" with two cooks at once,
 * "order.fry.*", "order.salad.*"), and the pass subscribes to every order
 * ("order.#") to print its ticket. Cooks' queues are short, so when the
 * grill falls behind the waiters wait (GS_BUS_BLOCK) instead of piling
 * tickets up. A plate leaves the kitchen (on_complete) once its cook and
 * the pass are both done with it.
 *
 * Closing time is gs_bus_close with drain: no new orders are taken, and
 * every order already taken is cooked and served: nothing half-cooked,
 * nothing lost. The run checks that every order was cooked once and
 * served once.
 *
 * Run:  make demo
 *   or  build/examples/kitchen [ORDERS-PER-WAITER]     (default 300)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <genstage/genstage.h>

#define WAITERS 3

typedef struct order {
	unsigned waiter, number;
} order;

static const char *const menu[] = {
	"order.grill.burger", "order.grill.steak",  "order.fry.fries",
	"order.fry.fish",     "order.salad.caesar",
};

typedef struct station {
	const char *name, *pattern;
	size_t cooks;
	long cook_us; /* how long a dish takes */
	_Atomic uint64_t cooked;
} station;

typedef struct kitchen {
	station stations[3];
	_Atomic uint64_t tickets, served;
	_Atomic uint64_t served_twice; /* a plate served again: a bug */
	_Atomic unsigned char *plates; /* served, per order */
	size_t orders;
} kitchen;

static void sleep_us(long us)
{
	struct timespec ts = { 0, us * 1000 };
	nanosleep(&ts, NULL);
}

static int cook(void *arg, const gs_bus_envelope *env)
{
	station *st = arg;
	(void)env;
	sleep_us(st->cook_us);
	atomic_fetch_add(&st->cooked, 1);
	return GS_BUS_DONE;
}

static int pass(void *arg, const gs_bus_envelope *env)
{
	kitchen *k = arg;
	const order *o = env->payload;
	if (atomic_fetch_add(&k->tickets, 1) % 200 == 0)
		printf("ticket #%" PRIu64 ": waiter %u, order %u, %s\n",
		       env->id, o->waiter, o->number, env->topic + 6);
	return GS_BUS_DONE;
}

/* The plate leaves once every subscriber that matched is done with it. */
static void serve(void *arg, const gs_bus_envelope *env,
		  const gs_bus_summary *sum)
{
	kitchen *k = arg;
	const order *o = env->payload;
	size_t id = (size_t)o->waiter * k->orders + o->number;
	if (sum->handled != sum->matched ||
	    atomic_fetch_add(&k->plates[id], 1) != 0)
		atomic_fetch_add(&k->served_twice, 1);
	atomic_fetch_add(&k->served, 1);
}

typedef struct waiter {
	gs_bus *bus;
	unsigned id, orders;
	gs_err err;
} waiter;

static void *take_orders(void *arg)
{
	waiter *w = arg;
	for (unsigned n = 0; n < w->orders && !w->err; n++) {
		order *o = malloc(sizeof *o);
		if (!o) {
			w->err = GS_ENOMEM;
			break;
		}
		*o = (order){ w->id, n };
		/* Waits while the station's queue is full. */
		w->err = gs_bus_publish(w->bus, menu[(w->id + n) % 5], o, free,
					GS_BUS_FOREVER);
		if (w->err)
			free(o);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned per_waiter = 300;
	if (argc > 1) {
		/* atoi took "-1" for four billion orders: digits only, and a
		 * bound a kitchen serves in minutes. */
		char *end;
		unsigned long n = strtoul(argv[1], &end, 10);
		if (argv[1][0] < '0' || argv[1][0] > '9' || *end ||
		    n > 1000000) {
			fprintf(stderr,
				"usage: %s [ORDERS-PER-WAITER]  (0..1000000)\n",
				argv[0]);
			return 2;
		}
		per_waiter = (unsigned)n;
	}
	kitchen k = {
		.stations = { { "grill", "order.grill.*", 2, 400, 0 },
			      { "fry", "order.fry.*", 1, 150, 0 },
			      { "salad", "order.salad.*", 1, 100, 0 } },
		.orders = per_waiter,
	};
	k.plates = calloc((size_t)WAITERS * per_waiter + 1, 1);
	gs_bus *bus;
	gs_err err = k.plates ? gs_bus_new(&(gs_bus_opts){ .name = "kitchen",
							   .on_complete = serve,
							   .complete_arg = &k },
					   &bus)
			      : GS_ENOMEM;
	for (size_t i = 0; !err && i < 3; i++) {
		station *st = &k.stations[i];
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){
				.name = st->name,
				.patterns = (const char *[]){ st->pattern,
							      NULL },
				.handler = cook,
				.arg = st,
				.queue_size = 8,
				.concurrency = st->cooks,
				.blocking = true },
			NULL);
	}
	if (!err)
		err = gs_bus_subscribe(
			bus,
			&(gs_bus_sub_opts){
				.name = "pass",
				.patterns = (const char *[]){ "order.#", NULL },
				.handler = pass,
				.arg = &k,
				.queue_size = 64,
				.blocking = true /* it prints */ },
			NULL);
	if (err) {
		fprintf(stderr, "kitchen: %s\n", gs_strerror(err));
		return 1;
	}
	waiter w[WAITERS];
	pthread_t th[WAITERS];
	for (unsigned i = 0; i < WAITERS; i++) {
		w[i] = (waiter){ bus, i, per_waiter, GS_OK };
		pthread_create(&th[i], NULL, take_orders, &w[i]);
	}
	for (unsigned i = 0; i < WAITERS; i++) {
		pthread_join(th[i], NULL);
		if (w[i].err)
			fprintf(stderr, "waiter %u: %s\n", i,
				gs_strerror(w[i].err));
	}
	/* Closing time. */
	gs_bus_close(bus, GS_BUS_DRAIN);
	uint64_t orders = (uint64_t)WAITERS * per_waiter, cooked = 0;
	for (size_t i = 0; i < 3; i++) {
		cooked += atomic_load(&k.stations[i].cooked);
		printf("%-5s cooked %" PRIu64 "\n", k.stations[i].name,
		       atomic_load(&k.stations[i].cooked));
	}
	printf("%" PRIu64 " orders, %" PRIu64 " cooked, %" PRIu64
	       " tickets, %" PRIu64 " served\n",
	       orders, cooked, atomic_load(&k.tickets), atomic_load(&k.served));
	bool ok = cooked == orders && atomic_load(&k.tickets) == orders &&
		  atomic_load(&k.served) == orders &&
		  atomic_load(&k.served_twice) == 0;
	for (unsigned i = 0; i < WAITERS; i++)
		ok = ok && !w[i].err;
	gs_bus_free(bus);
	free((void *)k.plates);
	printf("%s\n", ok ? "ok: nothing half-cooked, nothing lost" : "FAILED");
	return ok ? 0 : 1;
}
