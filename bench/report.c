// SPDX-License-Identifier: MIT
/*
 * Turns the runs into figures (median events/s, ratios against the
 * baselines of the same harness run, peak RSS), checks the targets, and
 * writes it all as a table, as JSON and as Markdown.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

#define CEILING "ck-ring"
#define FLOOR "mutex-queue"

typedef enum target_kind {
	VS_BASE,    /* at least `bound` times `base`'s events/s */
	RSS_BELOW,  /* peak RSS under `bound` KiB */
	RATE_ABOVE, /* at least `bound` events/s */
	OWN_BELOW,  /* the run's own ratio (own_ratio) at most `bound` */
} target_kind;

typedef struct target {
	const char *topology;
	target_kind kind;
	const char *base;
	double bound;
} target;

/* From the issues; informational, they do not change the exit code. */
static const target targets[] = {
	{ "1-1/md1000", VS_BASE, CEILING, 0.50 },
	{ "1-1/md1000", VS_BASE, FLOOR, 10.0 },
	{ "1-map-1/md1000", VS_BASE, CEILING, 0.35 },
	{ "1-map-1/md10000", VS_BASE, CEILING, 0.35 },
	{ "1-1-slow", RSS_BELOW, NULL, 32 * 1024 },
	{ "1-4-demand", VS_BASE, CEILING, 0.25 },
	{ "1-4-partition", VS_BASE, CEILING, 0.25 },
	{ "1-4-broadcast", VS_BASE, CEILING, 0.20 },
	/* "within 1.3x of the loop": at least 1/1.3 of its speed. */
	{ "flow-wordcount/1", VS_BASE, "wordcount-loop", 1 / 1.3 },
	{ "flow-wordcount/2", VS_BASE, "wordcount-loop", 1.5 },
	/* Flow's textbook shape, with its split in the stages after the
	 * source. */
	{ "flow-words/2", VS_BASE, "wordcount-loop", 1.5 },
	{ "bus-fanout", VS_BASE, "pubsub-mutex", 10.0 },
	{ "bus-fanout", RATE_ABOVE, NULL, 50e6 },
	{ "bus-slow/c1", OWN_BELOW, NULL, 1.01 },
	{ "bus-slow/c10", OWN_BELOW, NULL, 1.02 },
};

#define N_TARGETS (sizeof targets / sizeof targets[0])

static double run_rate(const gsb_row *row, size_t i)
{
	const gsb_result *r = &row->run[i].result;
	return r->seconds > 0 ? (double)row->events / r->seconds : 0;
}

/* The successful run with the median rate (the lower of the middle two
 * for an even count); -1 if none succeeded. */
static int median_run(const gsb_row *row)
{
	int idx[GSB_MAX_REPEAT];
	size_t n = 0;
	for (size_t i = 0; i < row->runs; i++)
		if (!row->run[i].error[0])
			idx[n++] = (int)i;
	if (!n)
		return -1;
	/* Insertion sort: a handful of runs. */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j && run_rate(row, (size_t)idx[j - 1]) >
						run_rate(row, (size_t)idx[j]);
		     j--) {
			int tmp = idx[j];
			idx[j] = idx[j - 1];
			idx[j - 1] = tmp;
		}
	return idx[(n - 1) / 2];
}

/* Median events/s over a row's successful runs; 0 if none succeeded. */
static double row_rate(const gsb_row *row)
{
	int m = median_run(row);
	return m < 0 ? 0 : run_rate(row, (size_t)m);
}

static long row_rss(const gsb_row *row)
{
	long max = -1;
	for (size_t i = 0; i < row->runs; i++)
		if (row->run[i].peak_rss_kib > max)
			max = row->run[i].peak_rss_kib;
	return max;
}

static const gsb_row *find_row(const gsb_report *rep, const char *name)
{
	for (size_t i = 0; i < rep->n_rows; i++)
		if (!strcmp(rep->rows[i].t->name, name))
			return &rep->rows[i];
	return NULL;
}

/* row's events/s over the named baseline's; NAN when either is missing
 * or failed. */
static double ratio(const gsb_report *rep, const gsb_row *row, const char *base)
{
	const gsb_row *b = find_row(rep, base);
	double num = row ? row_rate(row) : 0;
	double den = b ? row_rate(b) : 0;
	return num > 0 && den > 0 ? num / den : NAN;
}

/* 1: pass, 0: fail, -1: not measured in this run. */
static int check_target(const gsb_report *rep, const target *tg, double *value)
{
	const gsb_row *row = find_row(rep, tg->topology);
	if (tg->kind == RSS_BELOW) {
		*value = row ? (double)row_rss(row) : NAN;
		if (!row || row->error[0] || *value < 0)
			return -1;
		return *value < tg->bound;
	}
	if (tg->kind == RATE_ABOVE || tg->kind == OWN_BELOW) {
		int m = row ? median_run(row) : -1;
		if (m < 0)
			return *value = NAN, -1;
		*value = tg->kind == RATE_ABOVE ? row_rate(row)
						: row->run[m].result.own_ratio;
		return tg->kind == RATE_ABOVE ? *value >= tg->bound
					      : *value <= tg->bound;
	}
	*value = ratio(rep, row, tg->base);
	if (isnan(*value))
		return -1;
	return *value >= tg->bound;
}

static void target_text(char *buf, size_t len, const target *tg, double value,
			int state)
{
	static const char *const verdict[] = { "SKIP", "FAIL", "PASS" };
	char claim[96], measured[32];
	if (tg->kind == RSS_BELOW) {
		snprintf(claim, sizeof claim, "%s peak RSS < %.0f MiB",
			 tg->topology, tg->bound / 1024);
		snprintf(measured, sizeof measured, "%.1f MiB", value / 1024);
	} else if (tg->kind == RATE_ABOVE) {
		snprintf(claim, sizeof claim, "%s >= %.0fM events/s",
			 tg->topology, tg->bound / 1e6);
		snprintf(measured, sizeof measured, "%.1fM", value / 1e6);
	} else if (tg->kind == OWN_BELOW) {
		snprintf(claim, sizeof claim,
			 "%s time / ideal from measured sleeps <= %.2f",
			 tg->topology, tg->bound);
		snprintf(measured, sizeof measured, "%.4f", value);
	} else if (!strcmp(tg->base, CEILING)) {
		snprintf(claim, sizeof claim, "%s >= %.0f%% of " CEILING,
			 tg->topology, tg->bound * 100);
		snprintf(measured, sizeof measured, "%.1f%%", value * 100);
	} else {
		snprintf(claim, sizeof claim, "%s >= %.2fx %s", tg->topology,
			 tg->bound, tg->base);
		snprintf(measured, sizeof measured, "%.2fx", value);
	}
	snprintf(buf, len, "%s %s: %s", verdict[state + 1], claim,
		 state < 0 ? "not measured" : measured);
}

/* Events/s as 12.3M or 456k; counts the same without the unit. */
static void fmt_si(char *buf, size_t len, double x)
{
	if (x >= 1e9)
		snprintf(buf, len, "%.2fG", x / 1e9);
	else if (x >= 1e6)
		snprintf(buf, len, "%.2fM", x / 1e6);
	else if (x >= 1e3)
		snprintf(buf, len, "%.1fk", x / 1e3);
	else
		snprintf(buf, len, "%.0f", x);
}

static void fmt_ratio(char *buf, size_t len, double x, bool percent)
{
	if (isnan(x))
		snprintf(buf, len, "-");
	else if (percent)
		snprintf(buf, len, "%.1f%%", x * 100);
	else
		snprintf(buf, len, "%.1fx", x);
}

/* The cells of a row, formatted once for both the table and Markdown. */
typedef struct cells {
	char events[16], rate[16], ceil[16], floor[16], rss[16], cpu[16];
} cells;

static void row_cells(const gsb_report *rep, const gsb_row *row, cells *c)
{
	int m = median_run(row);
	long rss = row_rss(row);
	fmt_si(c->events, sizeof c->events, (double)row->events);
	if (m < 0)
		snprintf(c->rate, sizeof c->rate, "FAILED");
	else
		fmt_si(c->rate, sizeof c->rate, row_rate(row));
	fmt_ratio(c->ceil, sizeof c->ceil, ratio(rep, row, CEILING), true);
	fmt_ratio(c->floor, sizeof c->floor, ratio(rep, row, FLOOR), false);
	if (rss < 0)
		snprintf(c->rss, sizeof c->rss, "-");
	else
		snprintf(c->rss, sizeof c->rss, "%.1f MiB", (double)rss / 1024);
	if (m < 0)
		snprintf(c->cpu, sizeof c->cpu, "-");
	else
		snprintf(c->cpu, sizeof c->cpu, "%.2f", row->run[m].cpu_s);
}

/* The note of the median run, or of the last run if none succeeded. */
static const char *row_note(const gsb_row *row)
{
	int m = median_run(row);
	size_t i = m < 0 ? row->runs - 1 : (size_t)m;
	return row->runs ? row->run[i].result.note : "";
}

void gsb_print(FILE *f, const gsb_report *rep)
{
	fprintf(f, "%-18s %8s %10s %10s %12s %10s %7s\n", "topology", "events",
		"events/s", "vs " CEILING, "vs " FLOOR, "peak RSS", "CPU s");
	for (size_t i = 0; i < rep->n_rows; i++) {
		cells c;
		row_cells(rep, &rep->rows[i], &c);
		fprintf(f, "%-18s %8s %10s %10s %12s %10s %7s\n",
			rep->rows[i].t->name, c.events, c.rate, c.ceil, c.floor,
			c.rss, c.cpu);
	}
	fprintf(f, "\n");
	for (size_t i = 0; i < rep->n_rows; i++) {
		const gsb_row *row = &rep->rows[i];
		if (row->error[0])
			fprintf(f, "ERROR %s: %s\n", row->t->name, row->error);
		else if (row_note(row)[0])
			fprintf(f, "  %-16s %s\n", row->t->name, row_note(row));
	}
	fprintf(f, "\n");
	for (size_t i = 0; i < N_TARGETS; i++) {
		char line[160];
		double v;
		int state = check_target(rep, &targets[i], &v);
		target_text(line, sizeof line, &targets[i], v, state);
		fprintf(f, "%s\n", line);
	}
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, double x)
{
	if (isfinite(x))
		fprintf(f, "%.6g", x);
	else
		fprintf(f, "null");
}

static void json_machine(FILE *f, const gsb_report *rep)
{
	const gsb_machine *m = &rep->machine;
	fprintf(f, "  \"date\": ");
	json_str(f, m->date);
	fprintf(f, ",\n  \"command\": ");
	json_str(f, rep->command);
	fprintf(f, ",\n  \"machine\": {\"cpu\": ");
	json_str(f, m->cpu);
	fprintf(f, ", \"cpus\": %ld, \"mem_gib\": %.1f, \"kernel\": ", m->cpus,
		m->mem_gib);
	json_str(f, m->kernel);
	fprintf(f, ", \"compiler\": ");
	json_str(f, m->compiler);
	fprintf(f, ", \"build\": ");
	json_str(f, m->build);
	fprintf(f, ", \"load_before\": %.2f, \"load_after\": %.2f}",
		m->load_before, m->load_after);
	fprintf(f, ",\n  \"rss_floor_kib\": %ld,\n", rep->rss_floor_kib);
}

static void json_runs(FILE *f, const gsb_row *row)
{
	fprintf(f, "[");
	for (size_t i = 0; i < row->runs; i++) {
		fprintf(f, "%s{\"events_per_s\": ", i ? ", " : "");
		json_num(f, row->run[i].error[0] ? NAN : run_rate(row, i));
		fprintf(f, ", \"seconds\": ");
		json_num(f, row->run[i].result.seconds);
		fprintf(f, ", \"cpu_s\": ");
		json_num(f, row->run[i].cpu_s);
		if (row->run[i].result.own_ratio > 0) {
			fprintf(f, ", \"own_ratio\": ");
			json_num(f, row->run[i].result.own_ratio);
		}
		fprintf(f,
			", \"peak_rss_kib\": %ld, \"ctx_switches\": %ld, "
			"\"error\": ",
			row->run[i].peak_rss_kib, row->run[i].ctx_switches);
		if (row->run[i].error[0])
			json_str(f, row->run[i].error);
		else
			fprintf(f, "null");
		fprintf(f, "}");
	}
	fprintf(f, "]");
}

static void json_row(FILE *f, const gsb_report *rep, const gsb_row *row)
{
	fprintf(f, "    {\"name\": ");
	json_str(f, row->t->name);
	fprintf(f, ", \"what\": ");
	json_str(f, row->t->what);
	fprintf(f, ",\n     \"events\": %llu, \"events_per_s\": ",
		(unsigned long long)row->events);
	json_num(f, median_run(row) < 0 ? NAN : row_rate(row));
	fprintf(f, ", \"vs_ck_ring\": ");
	json_num(f, ratio(rep, row, CEILING));
	fprintf(f, ", \"vs_mutex_queue\": ");
	json_num(f, ratio(rep, row, FLOOR));
	fprintf(f, ", \"peak_rss_kib\": %ld, \"ok\": %s,\n     \"note\": ",
		row_rss(row), row->error[0] ? "false" : "true");
	json_str(f, row_note(row));
	fprintf(f, ",\n     \"runs\": ");
	json_runs(f, row);
	fprintf(f, "}");
}

static void json_targets(FILE *f, const gsb_report *rep)
{
	for (size_t i = 0; i < N_TARGETS; i++) {
		char line[160];
		double v;
		int state = check_target(rep, &targets[i], &v);
		target_text(line, sizeof line, &targets[i], v, state);
		fprintf(f, "%s    {\"text\": ", i ? ",\n" : "");
		json_str(f, line + 5); /* without the verdict */
		fprintf(f, ", \"value\": ");
		json_num(f, v);
		static const char *const pass[] = { "null", "false", "true" };
		fprintf(f, ", \"bound\": %g, \"pass\": %s}", targets[i].bound,
			pass[state + 1]);
	}
}

/* Closes f; -1 with errno set if anything written to it was lost. */
static int close_checked(FILE *f)
{
	if (ferror(f)) {
		fclose(f);
		errno = EIO;
		return -1;
	}
	return fclose(f) ? -1 : 0;
}

int gsb_write_json(const char *path, const gsb_report *rep)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "{\n  \"tool\": \"gs-bench\",\n");
	json_machine(f, rep);
	fprintf(f, "  \"topologies\": [\n");
	for (size_t i = 0; i < rep->n_rows; i++) {
		json_row(f, rep, &rep->rows[i]);
		fprintf(f, "%s\n", i + 1 < rep->n_rows ? "," : "");
	}
	fprintf(f, "  ],\n  \"targets\": [\n");
	json_targets(f, rep);
	fprintf(f, "\n  ]\n}\n");
	return close_checked(f);
}

static void md_header(FILE *f, const gsb_report *rep)
{
	const gsb_machine *m = &rep->machine;
	size_t runs = 0;
	for (size_t i = 0; i < rep->n_rows; i++)
		if (rep->rows[i].runs > runs)
			runs = rep->rows[i].runs;
	fprintf(f,
		"<!-- Written by gs-bench --markdown; regenerate with "
		"`make bench`. -->\n"
		"# gs-bench results\n\n"
		"Measured %s with `%s`.\n\n"
		"Events/s is the median of %zu run%s, each topology in a "
		"process of its own; the ratios compare medians from the "
		"same harness run. ck-ring (one item per call, spinning) "
		"is the issue's ceiling for a hand-off, which batching can "
		"pass; gs-ring/1 against ck-ring compares the two rings "
		"alone. mutex-queue (one item per lock) is the floor. "
		"The word counts' events are bytes of text, and their "
		"target is the wordcount-loop row, not ck-ring (their peak "
		"RSS holds the corpus and its copy). Peak RSS is "
		"the child process's ru_maxrss (a child that does nothing "
		"peaks at %.1f MiB). CPU s is user + system time of the "
		"median run.\n\n",
		m->date, rep->command, runs, runs == 1 ? "" : "s",
		(double)rep->rss_floor_kib / 1024);
}

static void md_table(FILE *f, const gsb_report *rep)
{
	fprintf(f, "| topology | events | events/s | vs " CEILING " | vs " FLOOR
		   " | peak RSS | CPU s |\n"
		   "|---|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < rep->n_rows; i++) {
		cells c;
		row_cells(rep, &rep->rows[i], &c);
		fprintf(f, "| %s | %s | %s | %s | %s | %s | %s |\n",
			rep->rows[i].t->name, c.events, c.rate, c.ceil, c.floor,
			c.rss, c.cpu);
	}
}

static void md_targets(FILE *f, const gsb_report *rep)
{
	fprintf(f, "\n## Targets\n\n");
	for (size_t i = 0; i < N_TARGETS; i++) {
		char line[160];
		double v;
		int state = check_target(rep, &targets[i], &v);
		target_text(line, sizeof line, &targets[i], v, state);
		fprintf(f, "- %s\n", line);
	}
}

static void md_topologies(FILE *f, const gsb_report *rep)
{
	fprintf(f, "\n## Topologies\n\n");
	for (size_t i = 0; i < rep->n_rows; i++) {
		const gsb_row *row = &rep->rows[i];
		fprintf(f, "- `%s`: %s", row->t->name, row->t->what);
		if (row->error[0])
			fprintf(f, " **ERROR: %s**", row->error);
		else if (row_note(row)[0])
			fprintf(f, " (median run: %s)", row_note(row));
		fprintf(f, "\n");
	}
}

static void md_machine(FILE *f, const gsb_report *rep)
{
	const gsb_machine *m = &rep->machine;
	fprintf(f,
		"\n## Machine\n\n"
		"- CPU: %s, %ld online\n"
		"- Memory: %.1f GiB\n"
		"- Kernel: %s\n"
		"- Compiler: %s; build: %s\n"
		"- Date: %s\n"
		"- 1-minute load average: %.2f before the runs, %.2f after "
		"(the machine is shared; above 0 means other work competed "
		"for the cores)\n",
		m->cpu, m->cpus, m->mem_gib, m->kernel, m->compiler, m->build,
		m->date, m->load_before, m->load_after);
}

int gsb_write_markdown(const char *path, const gsb_report *rep)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	md_header(f, rep);
	md_table(f, rep);
	md_targets(f, rep);
	md_topologies(f, rep);
	md_machine(f, rep);
	return close_checked(f);
}
