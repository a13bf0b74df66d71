// SPDX-License-Identifier: MIT
/*
 * gs-bench: runs named topologies, the library's and the baselines', each
 * in a child process of its own, a round of every row at a time, and
 * reports min/median/max events/s, ratios against the baselines of the
 * same rounds, CPU time, peak RSS, latencies, scale figures and the
 * issue's targets (see topologies.c for the rows).
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

#define N_TOPOLOGIES gsb_n_topologies
#define MAX_TOPOLOGIES 64

typedef struct options {
	uint64_t events[MAX_TOPOLOGIES];
	bool selected[MAX_TOPOLOGIES];
	size_t repeat;
	double timeout_s;
	const char *json, *markdown;
	bool list;
} options;

static int find_topology(const char *name)
{
	for (size_t i = 0; i < N_TOPOLOGIES; i++)
		if (!strcmp(gsb_topologies[i].name, name))
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
		unit = 1000000u;
	else if (*end == 'G')
		unit = 1000000000u;
	if (unit > 1)
		end++;
	if (end == s || *end || *s == '-')
		return 0;
	return (uint64_t)n * unit;
}

/* A row's count is a whole number of values produced, at least one. */
static uint64_t whole(const gsb_topology *t, uint64_t n)
{
	uint64_t per = t->deliveries ? t->deliveries : 1;
	return n < per ? per : n - n % per;
}

/* --events N sets every topology's count (rows counting costlier units
 * get N / GSB_EVENTS_PER_UNIT, within 1 and their default), --events
 * NAME=N one. */
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
			const gsb_topology *t = &gsb_topologies[i];
			uint64_t k = n;
			if (t->unit) {
				k = n / GSB_EVENTS_PER_UNIT;
				k = k < 1 ? 1 : k;
				if (k > t->default_events)
					k = t->default_events;
			}
			o->events[i] = whole(t, k);
		}
		return 0;
	}
	char name[64];
	snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
	int i = find_topology(name);
	if (i < 0)
		return -1;
	o->events[i] = whole(&gsb_topologies[i], n);
	return 0;
}

/* Selects the rows the selected ones are compared with, and theirs. */
static void select_baselines(options *o)
{
	for (bool more = true; more;) {
		more = false;
		for (size_t i = 0; i < N_TOPOLOGIES; i++) {
			const gsb_topology *t = &gsb_topologies[i];
			const char *const base[] = { t->ceiling, t->floor,
						     t->base };
			for (size_t b = 0; o->selected[i] && b < 3; b++) {
				int j = base[b] ? find_topology(base[b]) : -1;
				if (j >= 0 && !o->selected[j])
					o->selected[j] = more = true;
			}
		}
	}
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
	select_baselines(o);
	return err;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gs-bench [options]\n"
		"  --only NAME[,NAME]   run these topologies (and the "
		"rows they are compared with)\n"
		"  --events [NAME=]N    events per run, for all or one "
		"topology (20M, 500k...);\n"
		"                       rows counting samples, stages or "
		"pipelines get N/%u\n"
		"  --repeat N           rounds: runs per topology, every row "
		"once a round (default 1)\n"
		"  --timeout S          kill a run after S seconds (default "
		"120; a row may ask more)\n"
		"  --json FILE          write the results as JSON\n"
		"  --markdown FILE      write the results table and machine "
		"as Markdown\n"
		"  --list               list the topologies and exit\n",
		GSB_EVENTS_PER_UNIT);
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
	for (size_t i = 0; i < N_TOPOLOGIES; i++) {
		const gsb_topology *t = &gsb_topologies[i];
		printf("%-20s %10llu %-9s %s\n", t->name,
		       (unsigned long long)o->events[i],
		       t->unit ? t->unit : "events", t->what);
	}
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
	printf("gs-bench  %s\n%s, %ld CPUs online (%ld usable), %.1f GiB, "
	       "load %.2f\n%s\n%s, %s%s%s\nharness floor RSS %.1f MiB\n\n",
	       m->date, m->cpu, m->cpus, m->usable_cpus, m->mem_gib,
	       m->load_before, m->kernel, m->compiler, m->build,
	       m->gs_workers[0] ? ", GS_WORKERS=" : "", m->gs_workers,
	       (double)rep->rss_floor_kib / 1024);
}

/* One run of one row, with a line on stderr saying how it went. */
static void run_row(gsb_row *row, const options *o, size_t round,
		    _Atomic uint64_t *progress)
{
	gsb_outcome *out = &row->run[row->runs++];
	double timeout_s = row->t->timeout_s > o->timeout_s ? row->t->timeout_s
							    : o->timeout_s;
	bool ok = gsb_run_forked(row->t, row->events, timeout_s, progress, out);
	if (!ok && !row->error[0])
		snprintf(row->error, sizeof row->error, "%s", out->error);
	char rate[48] = "-";
	const gsb_result *r = &out->result;
	if (ok && row->t->kind == GSB_LATENCY)
		snprintf(rate, sizeof rate, "p50 %.2f us (ref %.2f)",
			 r->lat.p50_us, r->lat.ref_p50_us);
	else if (ok && row->t->kind == GSB_SCALE)
		snprintf(rate, sizeof rate, "%.1f KiB/stage",
			 r->scale.kib_after);
	else if (ok)
		snprintf(rate, sizeof rate, "%.2fM/s",
			 (double)row->events / r->seconds / 1e6);
	fprintf(stderr,
		"  [%zu/%zu] %-20s %10llu %-9s %7.2f s %26s %7.1f MiB "
		"%6.2f CPU s  others %.2f CPUs %s\n",
		round + 1, o->repeat, row->t->name,
		(unsigned long long)row->events,
		row->t->unit ? row->t->unit : "events", r->seconds, rate,
		(double)out->peak_rss_kib / 1024, out->cpu_s, out->others_cpus,
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
	if (N_TOPOLOGIES > MAX_TOPOLOGIES) {
		fprintf(stderr, "gs-bench: raise MAX_TOPOLOGIES\n");
		return 1;
	}
	for (size_t i = 0; i < N_TOPOLOGIES; i++)
		o.events[i] = whole(&gsb_topologies[i],
				    gsb_topologies[i].default_events);
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
			rows[rep.n_rows++] = (gsb_row){ .t = &gsb_topologies[i],
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
