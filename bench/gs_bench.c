// SPDX-License-Identifier: MIT
/*
 * gs-bench: runs named topologies, the library's and the baselines', each
 * in a child process of its own, and reports events/s, ratios against the
 * baselines of the same run, peak RSS, and the targets.
 *
 *	gs-bench [--only NAME,...] [--events [NAME=]N] [--repeat N]
 *		 [--timeout S] [--json FILE] [--markdown FILE] [--list]
 *
 * Exits 0 when every run completed with the right checksum (whatever the
 * targets say), 1 when one did not, 2 on bad arguments.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "report.h"

#define MILLION 1000000u

/* Default events give runs of roughly 1-2 s on a quiet 2-core machine. */
static const gsb_topology topologies[] = {
	{ .name = "mutex-queue",
	  .what = "baseline: a mutex and condvar queue of 1024, one item per "
		  "lock acquisition, producer thread to consumer thread",
	  .run = gsb_run_mutex_queue,
	  .default_events = 10 * MILLION },
	{ .name = "ck-ring",
	  .what = "baseline and ceiling: a ck_ring of 1024, one item per "
		  "call, both threads spinning (yielding after long waits)",
	  .run = gsb_run_ck_ring,
	  .default_events = 50 * MILLION },
	{ .name = "gs-ring",
	  .what = "the engine's private bulk ring (stage/ring.h) of 1024, "
		  "batches of 500, both threads spinning (yielding after "
		  "long waits)",
	  .run = gsb_run_gs_ring,
	  .default_events = 600 * MILLION },
	{ .name = "gs-ring/1",
	  .what = "as gs-ring but one item per push and per peek, as ck-ring "
		  "must: the two rings compared without batching",
	  .run = gsb_run_gs_ring_1,
	  .default_events = 50 * MILLION },
	{ .name = "1-1/md1000",
	  .what = "counter producer emitting exactly the demand -> summing "
		  "consumer, max_demand 1000",
	  .run = gsb_run_1_1,
	  .max_demand = 1000,
	  .default_events = 300 * MILLION },
	{ .name = "1-1/md10000",
	  .what = "as 1-1/md1000 with max_demand 10000",
	  .run = gsb_run_1_1,
	  .max_demand = 10000,
	  .default_events = 1000 * MILLION },
	{ .name = "1-map-1/md1000",
	  .what = "counter -> producer-consumer adding one -> summing "
		  "consumer, max_demand 1000",
	  .run = gsb_run_1_map_1,
	  .max_demand = 1000,
	  .default_events = 100 * MILLION },
	{ .name = "1-map-1/md10000",
	  .what = "as 1-map-1/md1000 with max_demand 10000",
	  .run = gsb_run_1_map_1,
	  .max_demand = 10000,
	  .default_events = 400 * MILLION },
	{ .name = "1-4-demand",
	  .what = "counter -> 4 summing consumers, demand dispatcher, "
		  "max_demand 1000",
	  .run = gsb_run_1_4_demand,
	  .max_demand = 1000,
	  .default_events = 200 * MILLION },
	{ .name = "1-4-broadcast",
	  .what = "counter -> 4 summing consumers, broadcast dispatcher, "
		  "max_demand 1000; events are deliveries (4 per value)",
	  .run = gsb_run_1_4_broadcast,
	  .max_demand = 1000,
	  .default_events = 200 * MILLION },
	{ .name = "1-4-partition",
	  .what = "counter -> 4 summing consumers, partition dispatcher by "
		  "value mod 4 (each consumer checks its class), max_demand "
		  "1000",
	  .run = gsb_run_1_4_partition,
	  .max_demand = 1000,
	  .default_events = 100 * MILLION },
	{ .name = "push-4-1",
	  .what = "4 ordinary threads gs_push batches of 64 (blocking) into "
		  "a push producer -> summing consumer, max_demand 1000",
	  .run = gsb_run_push_4_1,
	  .max_demand = 1000,
	  .default_events = 50 * MILLION },
#ifdef GSB_HAVE_ZMQ
	{ .name = "zmq-1-1",
	  .what = "peer: ZeroMQ inproc PUSH -> PULL (high-water mark 1000), "
		  "one 8-byte message per event",
	  .run = gsb_run_zmq_1_1,
	  .default_events = 4 * MILLION },
	{ .name = "zmq-1-4-broadcast",
	  .what = "peer: ZeroMQ inproc PUB -> 4 SUB, no high-water mark (a "
		  "PUB drops at its mark: no back-pressure); deliveries",
	  .run = gsb_run_zmq_1_4_broadcast,
	  .default_events = 4 * MILLION },
#endif
#ifdef GSB_HAVE_TBB
	{ .name = "tbb-1-1",
	  .what = "peer: oneTBB flow graph, input_node -> serial "
		  "function_node summing",
	  .run = gsb_run_tbb_1_1,
	  .default_events = 4 * MILLION },
	{ .name = "tbb-1-4-broadcast",
	  .what = "peer: oneTBB flow graph, input_node -> broadcast_node -> 4 "
		  "serial function_nodes; deliveries",
	  .run = gsb_run_tbb_1_4_broadcast,
	  .default_events = 4 * MILLION },
#endif
	{ .name = "wordcount-loop",
	  .what = "baseline: examples/wordcount.c's plain single-threaded "
		  "loop over a generated 50 MiB corpus; events are its bytes",
	  .run = gsb_run_wordcount,
	  .default_events = 50u << 20 },
	{ .name = "flow-wordcount/1",
	  .what = "the same count by wordcount's flow: chunks -> 1 counting "
		  "stage -> departition_merge of the tables",
	  .run = gsb_run_wordcount,
	  .stages = 1,
	  .default_events = 50u << 20 },
	{ .name = "flow-wordcount/2",
	  .what = "as flow-wordcount/1 with 2 counting stages (shuffled "
		  "chunks)",
	  .run = gsb_run_wordcount,
	  .stages = 2,
	  .default_events = 50u << 20 },
	{ .name = "flow-words/1",
	  .what = "wordcount by Flow's textbook shape: chunks -> 1 stage "
		  "splitting them into words (flat_map) -> partition by word "
		  "-> 1 counting stage",
	  .run = gsb_run_wordcount,
	  .stages = 1,
	  .by_word = true,
	  .default_events = 50u << 20 },
	{ .name = "flow-words/2",
	  .what = "as flow-words/1 with 2 splitting and 2 counting stages",
	  .run = gsb_run_wordcount,
	  .stages = 2,
	  .by_word = true,
	  .default_events = 50u << 20 },
	{ .name = "latency",
	  .what = "max_demand 1, one event in flight: p50/p99 one-way "
		  "latency from gs_emit to handle_events, then the CPU an "
		  "idle pipeline burns (see the note)",
	  .run = gsb_run_latency,
	  .max_demand = 1,
	  .default_events = 10000 },
	{ .name = "pubsub-mutex",
	  .what = "baseline for bus-fanout: hand-written publish/subscribe, "
		  "a thread and a mutex+condvar queue of 4096 per "
		  "subscriber, routes by topic in a hash table, one publish "
		  "per call; events are deliveries",
	  .run = gsb_run_pubsub_mutex,
	  .default_events = 10 * MILLION },
	{ .name = "bus-fanout",
	  .what = "gs_bus: 1 publisher, batches of 64, 16 topics, 8 "
		  "subscriptions on overlapping patterns (4 per topic), "
		  "block queues of 4096; events are deliveries",
	  .run = gsb_run_bus_fanout,
	  .default_events = 100 * MILLION },
	{ .name = "bus-publish-4",
	  .what = "gs_bus: 4 threads gs_bus_publish one event per call "
		  "(blocking), 4 subscriptions on '#'; publish latency in "
		  "the note",
	  .run = gsb_run_bus_publish_4,
	  .default_events = 4 * MILLION },
	{ .name = "bus-slow/c1",
	  .what = "the talk's benchmark: events to 10 subscriptions whose "
		  "handler sleeps 10 ms, concurrency 1 (ideal 10 s for "
		  "1000)",
	  .run = gsb_run_bus_slow,
	  .concurrency = 1,
	  .default_events = 1000,
	  .events_divisor = 1000 },
	{ .name = "bus-slow/c10",
	  .what = "as bus-slow/c1 with concurrency 10: a pool of 10 "
		  "handler threads per subscription (ideal 1 s for 1000)",
	  .run = gsb_run_bus_slow,
	  .concurrency = 10,
	  .default_events = 1000,
	  .events_divisor = 1000 },
	{ .name = "1-1-slow",
	  .what = "1-1/md1000 with a consumer about 10x slower than the "
		  "producer (busy work per event): memory must stay bounded",
	  .run = gsb_run_1_1_slow,
	  .max_demand = 1000,
	  .default_events = 20 * MILLION },
};

#define N_TOPOLOGIES (sizeof topologies / sizeof topologies[0])

/* Every ratio needs these, so they run whatever --only says. */
static const char *const baselines[] = { "mutex-queue", "ck-ring" };

typedef struct options {
	uint64_t events[N_TOPOLOGIES];
	bool selected[N_TOPOLOGIES];
	size_t repeat;
	double timeout_s;
	const char *json, *markdown;
	bool list;
} options;

static int find_topology(const char *name)
{
	for (size_t i = 0; i < N_TOPOLOGIES; i++)
		if (!strcmp(topologies[i].name, name))
			return (int)i;
	fprintf(stderr, "gs-bench: no topology named '%s' (see --list)\n",
		name);
	return -1;
}

/* "20M", "500k", "1G" or digits; 0 on anything else. */
static uint64_t parse_count(const char *s)
{
	char *end;
	unsigned long long n = strtoull(s, &end, 10);
	uint64_t unit = 1;
	if (*end == 'k' || *end == 'K')
		unit = 1000;
	else if (*end == 'M')
		unit = MILLION;
	else if (*end == 'G')
		unit = 1000u * MILLION;
	if (unit > 1)
		end++;
	if (end == s || *end || *s == '-')
		return 0;
	return (uint64_t)n * unit;
}

/* --events N sets every topology's count, --events NAME=N one. */
static int parse_events(options *o, const char *arg)
{
	const char *eq = strchr(arg, '=');
	uint64_t n = parse_count(eq ? eq + 1 : arg);
	if (!n) {
		fprintf(stderr, "gs-bench: bad event count in '%s'\n", arg);
		return -1;
	}
	if (!eq) {
		for (size_t i = 0; i < N_TOPOLOGIES; i++) {
			uint64_t d = topologies[i].events_divisor;
			o->events[i] = !d ? n : n / d ? n / d : 1;
		}
		return 0;
	}
	char name[64];
	snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
	int i = find_topology(name);
	if (i < 0)
		return -1;
	o->events[i] = n;
	return 0;
}

static int parse_only(options *o, const char *arg)
{
	char *list = strdup(arg), *save = NULL;
	int err = list ? 0 : -1;
	for (char *name = list ? strtok_r(list, ",", &save) : NULL;
	     name && !err; name = strtok_r(NULL, ",", &save)) {
		int i = find_topology(name);
		if (i < 0)
			err = -1;
		else
			o->selected[i] = true;
	}
	free(list);
	for (size_t b = 0; b < sizeof baselines / sizeof *baselines; b++)
		o->selected[find_topology(baselines[b])] = true;
	/* A flow word count is judged against the loop of the same run,
	 * bus-fanout against its hand-written baseline. */
	for (size_t i = 0; i < N_TOPOLOGIES; i++)
		if (o->selected[i] && topologies[i].stages)
			o->selected[find_topology("wordcount-loop")] = true;
	o->selected[find_topology("pubsub-mutex")] |=
		o->selected[find_topology("bus-fanout")];
	return err;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gs-bench [options]\n"
		"  --only NAME[,NAME]   run these topologies (and the "
		"baselines)\n"
		"  --events [NAME=]N    events per run, for all or one "
		"topology (20M, 500k...)\n"
		"  --repeat N           runs per topology; the median counts "
		"(default 1)\n"
		"  --timeout S          kill a run after S seconds (default "
		"120)\n"
		"  --json FILE          write the results as JSON\n"
		"  --markdown FILE      write the results table and machine "
		"as Markdown\n"
		"  --list               list the topologies and exit\n");
}

/* Parses argv into o; returns 0, or 2 (bad arguments) or 1 (--help, done). */
static int parse_args(int argc, char **argv, options *o)
{
	static const struct option longopts[] = {
		{ "only", required_argument, NULL, 'o' },
		{ "events", required_argument, NULL, 'e' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", required_argument, NULL, 'j' },
		{ "markdown", required_argument, NULL, 'm' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool only = false;
	int c, err = 0;
	while (!err &&
	       (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			only = true;
			err = parse_only(o, optarg);
			break;
		case 'e':
			err = parse_events(o, optarg);
			break;
		case 'r':
			o->repeat = (size_t)parse_count(optarg);
			err = o->repeat < 1 || o->repeat > GSB_MAX_REPEAT;
			break;
		case 't':
			o->timeout_s = atof(optarg);
			err = o->timeout_s <= 0;
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'm':
			o->markdown = optarg;
			break;
		case 'l':
			o->list = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			err = -1;
		}
	}
	if (!only)
		for (size_t i = 0; i < N_TOPOLOGIES; i++)
			o->selected[i] = true;
	if (err || optind < argc) {
		usage(stderr);
		return 2;
	}
	return 0;
}

static void list_topologies(const options *o)
{
	for (size_t i = 0; i < N_TOPOLOGIES; i++)
		printf("%-16s %6.1fM  %s\n", topologies[i].name,
		       (double)o->events[i] / 1e6, topologies[i].what);
}

/* The command line, for the results (arguments are never quoted). */
static char *join_args(int argc, char **argv)
{
	size_t len = 1;
	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	char *s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (int i = 0; i < argc; i++) {
		strcat(s, argv[i]);
		if (i + 1 < argc)
			strcat(s, " ");
	}
	return s;
}

static void print_machine(const gsb_report *rep)
{
	const gsb_machine *m = &rep->machine;
	printf("gs-bench  %s\n%s, %ld CPUs online, %.1f GiB, load %.2f\n"
	       "%s\n%s, %s\nharness floor RSS %.1f MiB\n\n",
	       m->date, m->cpu, m->cpus, m->mem_gib, m->load_before, m->kernel,
	       m->compiler, m->build, (double)rep->rss_floor_kib / 1024);
}

/* One run of one row, with a line on stderr saying how it went. */
static void run_row(gsb_row *row, const options *o, size_t round,
		    _Atomic uint64_t *progress)
{
	gsb_outcome *out = &row->run[row->runs++];
	bool ok = gsb_run_forked(row->t, row->events, o->timeout_s, progress,
				 out);
	if (!ok && !row->error[0])
		snprintf(row->error, sizeof row->error, "%s", out->error);
	char rate[32] = "-";
	if (ok)
		snprintf(rate, sizeof rate, "%.2fM/s",
			 (double)row->events / out->result.seconds / 1e6);
	fprintf(stderr,
		"  [%zu/%zu] %-16s %7.1fM events %7.2f s %10s %7.1f "
		"MiB %s\n",
		round + 1, o->repeat, row->t->name, (double)row->events / 1e6,
		out->result.seconds, rate, (double)out->peak_rss_kib / 1024,
		ok ? "" : out->error);
}

/* Runs every selected topology `repeat` times, a round at a time, so
 * that a noisy moment hits all of them alike. */
static void run_all(gsb_report *rep, const options *o,
		    _Atomic uint64_t *progress)
{
	for (size_t round = 0; round < o->repeat; round++)
		for (size_t i = 0; i < rep->n_rows; i++)
			run_row(&rep->rows[i], o, round, progress);
}

static int write_outputs(const gsb_report *rep, const options *o)
{
	int err = 0;
	if (o->json && gsb_write_json(o->json, rep)) {
		perror(o->json);
		err = 1;
	}
	if (o->markdown && gsb_write_markdown(o->markdown, rep)) {
		perror(o->markdown);
		err = 1;
	}
	return err;
}

int main(int argc, char **argv)
{
	options o = { .repeat = 1, .timeout_s = 120 };
	for (size_t i = 0; i < N_TOPOLOGIES; i++)
		o.events[i] = topologies[i].default_events;
	int err = parse_args(argc, argv, &o);
	if (err)
		return err == 1 ? 0 : err;
	if (o.list) {
		list_topologies(&o);
		return 0;
	}
	_Atomic uint64_t *progress = gsb_progress_new();
	if (!progress) {
		perror("gs-bench: mmap");
		return 1;
	}
	gsb_row *rows = calloc(N_TOPOLOGIES, sizeof *rows);
	char *cmd = join_args(argc, argv);
	if (!rows) {
		perror("gs-bench");
		return 1;
	}
	gsb_report rep = { .rows = rows, .command = cmd ? cmd : "gs-bench" };
	for (size_t i = 0; i < N_TOPOLOGIES; i++)
		if (o.selected[i])
			rows[rep.n_rows++] = (gsb_row){ .t = &topologies[i],
							.events = o.events[i] };
	gsb_machine_read(&rep.machine);
	rep.rss_floor_kib = gsb_rss_floor_kib();
	print_machine(&rep);
	run_all(&rep, &o, progress);
	rep.machine.load_after = gsb_load_now();
	printf("\n");
	gsb_print(stdout, &rep);
	err = write_outputs(&rep, &o);
	for (size_t i = 0; i < rep.n_rows; i++)
		if (rows[i].error[0])
			err = 1;
	free(cmd);
	free(rows);
	return err;
}
