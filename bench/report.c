// SPDX-License-Identifier: MIT
/*
 * Writes a harness run three ways: tables on a terminal, JSON and
 * Markdown. Throughput rows, latency rows and scale rows each get a table
 * of their own, since their figures differ; every figure is the median of
 * the runs with the min and max beside it, and every ratio is taken round
 * by round (see summary.c).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "table.h"

/* How a spread is written: "median (min..max)", "-" for none. */
typedef enum style { SI, PCT, TIMES, FIXED, SECONDS } style;

static void fmt_one(char *buf, size_t len, double x, style s)
{
	if (s == SI && x >= 1e9)
		snprintf(buf, len, "%.2fG", x / 1e9);
	else if (s == SI && x >= 1e6)
		snprintf(buf, len, "%.2fM", x / 1e6);
	else if (s == SI && x >= 1e3)
		snprintf(buf, len, "%.1fk", x / 1e3);
	else if (s == SI)
		snprintf(buf, len, "%.0f", x);
	else if (s == PCT)
		snprintf(buf, len, "%.1f%%", x * 100);
	else if (s == TIMES)
		snprintf(buf, len, "%.2fx", x);
	else if (s == SECONDS)
		snprintf(buf, len, "%.3f", x);
	else if (x >= 100)
		snprintf(buf, len, "%.0f", x);
	else if (x >= 10)
		snprintf(buf, len, "%.1f", x);
	else if (x >= 0.1)
		snprintf(buf, len, "%.2f", x);
	else
		snprintf(buf, len, "%.2g", x);
}

static void fmt_spread(char *buf, size_t len, gsb_spread s, style st)
{
	char med[16], lo[16], hi[16];
	if (!s.n) {
		snprintf(buf, len, "-");
		return;
	}
	fmt_one(med, sizeof med, s.median, st);
	if (s.n == 1) {
		snprintf(buf, len, "%s", med);
		return;
	}
	fmt_one(lo, sizeof lo, s.min, st);
	fmt_one(hi, sizeof hi, s.max, st);
	/* Fits a GSB_CELL (three 15-byte figures); a narrower buf is cut
	 * short, its last character saying so. */
	if (snprintf(buf, len, "%s (%s..%s)", med, lo, hi) >= (int)len &&
	    len > 1)
		buf[len - 2] = '~';
}

static void set_spread(gsb_table *t, int r, size_t c, gsb_spread s, style st)
{
	char buf[GSB_CELL];
	fmt_spread(buf, sizeof buf, s, st);
	gsb_table_set(t, r, c, "%s", buf);
}

/* The CPUs a row ran on: its pin, or all the harness may use. */
static long row_cpus(const gsb_report *rep, const gsb_row *row)
{
	return row->t->cpus ? (long)row->t->cpus : rep->machine.usable_cpus;
}

static double peak_rss_mib(const gsb_row *row)
{
	long max = -1;
	for (size_t i = 0; i < row->runs; i++)
		if (row->run[i].peak_rss_kib > max)
			max = row->run[i].peak_rss_kib;
	return max < 0 ? NAN : (double)max / 1024;
}

static void set_rss(gsb_table *t, int r, size_t c, const gsb_row *row)
{
	double mib = peak_rss_mib(row);
	if (isnan(mib))
		gsb_table_set(t, r, c, "-");
	else
		gsb_table_set(t, r, c, "%.1f MiB", mib);
}

static void throughput_table(const gsb_report *rep, gsb_table *t)
{
	static const char *const head[] = { "topology",
					    "CPUs",
					    "events",
					    "events/s",
					    "vs gs-ring",
					    "vs floor",
					    "vs its baseline",
					    "CPU s / M events",
					    "switches vol/invol",
					    "peak RSS",
					    "others' CPUs",
					    NULL };
	gsb_table_init(t, head);
	for (size_t i = 0; i < rep->n_rows; i++) {
		const gsb_row *row = &rep->rows[i];
		if (row->t->kind != GSB_THROUGHPUT)
			continue;
		int r = gsb_table_row(t);
		char buf[GSB_CELL];
		gsb_table_set(t, r, 0, "%s", row->t->name);
		gsb_table_set(t, r, 1, "%ld", row_cpus(rep, row));
		fmt_one(buf, sizeof buf, (double)row->events, SI);
		gsb_table_set(t, r, 2, "%s", buf);
		gsb_spread rate = gsb_over_runs(row, gsb_rate);
		if (rate.n)
			set_spread(t, r, 3, rate, SI);
		else
			gsb_table_set(t, r, 3, "FAILED");
		set_spread(t, r, 4, gsb_ratio(rep, row, row->t->ceiling), PCT);
		set_spread(t, r, 5, gsb_ratio(rep, row, row->t->floor), TIMES);
		gsb_spread base = gsb_ratio(rep, row, row->t->base);
		fmt_spread(buf, sizeof buf, base, PCT);
		if (base.n)
			gsb_table_set(t, r, 6, "%s of %s", buf, row->t->base);
		else
			gsb_table_set(t, r, 6, "-");
		set_spread(t, r, 7, gsb_over_runs(row, gsb_cpu_per_m), FIXED);
		int m = gsb_median_run(row);
		if (m >= 0)
			gsb_table_set(t, r, 8, "%ld/%ld",
				      row->run[m].vol_switches,
				      row->run[m].invol_switches);
		else
			gsb_table_set(t, r, 8, "-");
		set_rss(t, r, 9, row);
		set_spread(t, r, 10, gsb_over_runs(row, gsb_others_cpus),
			   FIXED);
	}
}

static void latency_table(const gsb_report *rep, gsb_table *t)
{
	static const char *const head[] = { "topology",
					    "CPUs",
					    "samples",
					    "p50 us",
					    "p99 us",
					    "reference",
					    "ref p50 us",
					    "ref p99 us",
					    "p50 / ref p50",
					    "idle CPU us/s",
					    "idle switches",
					    "others' CPUs",
					    NULL };
	gsb_table_init(t, head);
	for (size_t i = 0; i < rep->n_rows; i++) {
		const gsb_row *row = &rep->rows[i];
		if (row->t->kind != GSB_LATENCY)
			continue;
		int r = gsb_table_row(t);
		gsb_table_set(t, r, 0, "%s", row->t->name);
		gsb_table_set(t, r, 1, "%ld", row_cpus(rep, row));
		gsb_table_set(t, r, 2, "%llu", (unsigned long long)row->events);
		set_spread(t, r, 3, gsb_over_runs(row, gsb_p50), FIXED);
		set_spread(t, r, 4, gsb_over_runs(row, gsb_p99), FIXED);
		gsb_table_set(t, r, 5, "%s", row->t->reference);
		set_spread(t, r, 6, gsb_over_runs(row, gsb_ref_p50), FIXED);
		set_spread(t, r, 7, gsb_over_runs(row, gsb_ref_p99), FIXED);
		set_spread(t, r, 8, gsb_over_runs(row, gsb_p50_vs_ref), TIMES);
		gsb_spread idle = gsb_over_runs(row, gsb_idle_cpu);
		idle.min *= 1e6;
		idle.median *= 1e6;
		idle.max *= 1e6;
		set_spread(t, r, 9, idle, FIXED);
		set_spread(t, r, 10, gsb_over_runs(row, gsb_idle_switches),
			   FIXED);
		set_spread(t, r, 11, gsb_over_runs(row, gsb_others_cpus),
			   FIXED);
	}
}

/* The phases of a scale run, each timed by the clock and in CPU time. */
static const struct phase {
	const char *name;
	gsb_figure_fn wall, cpu;
} phases[] = {
	{ "build", gsb_build_s, gsb_build_cpu_s },
	{ "start", gsb_start_s, gsb_start_cpu_s },
	{ "run", gsb_run_s, gsb_run_cpu_s },
	{ "free", gsb_free_s, gsb_free_cpu_s },
};

#define N_PHASES (sizeof phases / sizeof phases[0])

/* "wall (min..max), CPU median": the clock, then the CPU time. */
static void set_phase(gsb_table *t, int r, size_t c, const gsb_row *row,
		      const struct phase *ph)
{
	char wall[40], cpu[16];
	fmt_spread(wall, sizeof wall, gsb_over_runs(row, ph->wall), SECONDS);
	fmt_one(cpu, sizeof cpu, gsb_over_runs(row, ph->cpu).median, SECONDS);
	gsb_table_set(t, r, c, "%s, %s CPU", wall, cpu);
}

static void scale_table(const gsb_report *rep, gsb_table *t)
{
	static const char *const head[] = {
		"topology", "CPUs",           "stages",
		"build s",  "start s",        "run s",
		"free s",   "KiB/stage idle", "KiB/stage after events",
		"peak RSS", "others' CPUs",   NULL
	};
	gsb_table_init(t, head);
	for (size_t i = 0; i < rep->n_rows; i++) {
		const gsb_row *row = &rep->rows[i];
		if (row->t->kind != GSB_SCALE)
			continue;
		int r = gsb_table_row(t);
		int m = gsb_median_run(row);
		gsb_table_set(t, r, 0, "%s", row->t->name);
		gsb_table_set(t, r, 1, "%ld", row_cpus(rep, row));
		if (m >= 0)
			gsb_table_set(t, r, 2, "%llu",
				      (unsigned long long)row->run[m]
					      .result.scale.stages);
		for (size_t p = 0; p < N_PHASES; p++)
			set_phase(t, r, 3 + p, row, &phases[p]);
		set_spread(t, r, 7, gsb_over_runs(row, gsb_kib_idle), FIXED);
		set_spread(t, r, 8, gsb_over_runs(row, gsb_kib_after), FIXED);
		set_rss(t, r, 9, row);
		set_spread(t, r, 10, gsb_over_runs(row, gsb_others_cpus),
			   FIXED);
	}
}

typedef void (*table_fn)(const gsb_report *rep, gsb_table *t);

static const struct {
	const char *title;
	table_fn make;
} tables[] = {
	{ "Throughput", throughput_table },
	{ "Latency", latency_table },
	{ "Scale", scale_table },
};

#define N_TABLES (sizeof tables / sizeof tables[0])

/* The note of the median run, or of the last run if none succeeded. */
static const char *row_note(const gsb_row *row)
{
	int m = gsb_median_run(row);
	size_t i = m < 0 ? row->runs - 1 : (size_t)m;
	return row->runs ? row->run[i].result.note : "";
}

/* Writes the targets, a heading (prefixed by `mark`) per group. */
static void print_targets(FILE *f, const gsb_report *rep, const char *mark,
			  const char *item)
{
	const char *group = NULL;
	for (size_t i = 0; i < gsb_n_targets(); i++) {
		gsb_verdict v;
		gsb_check_target(rep, i, &v);
		if (!group || strcmp(group, v.group))
			fprintf(f, "%s%s%s\n\n", group ? "\n" : "", mark,
				v.group);
		group = v.group;
		fprintf(f, "%s%s\n", item, v.text);
	}
}

void gsb_print(FILE *f, const gsb_report *rep)
{
	gsb_table *t = malloc(sizeof *t);
	for (size_t k = 0; t && k < N_TABLES; k++) {
		tables[k].make(rep, t);
		if (!t->rows)
			continue;
		fprintf(f, "%s\n", tables[k].title);
		gsb_table_text(f, t);
		fprintf(f, "\n");
	}
	free(t);
	for (size_t i = 0; i < rep->n_rows; i++) {
		const gsb_row *row = &rep->rows[i];
		if (row->error[0])
			fprintf(f, "ERROR %s: %s\n", row->t->name, row->error);
		else if (row_note(row)[0])
			fprintf(f, "  %-20s %s\n", row->t->name, row_note(row));
	}
	fprintf(f, "\n");
	print_targets(f, rep, "", "");
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
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

static void json_spread(FILE *f, const char *key, gsb_spread s)
{
	fprintf(f, "\"%s\": ", key);
	if (!s.n) {
		fprintf(f, "null");
		return;
	}
	fprintf(f, "{\"min\": ");
	json_num(f, s.min);
	fprintf(f, ", \"median\": ");
	json_num(f, s.median);
	fprintf(f, ", \"max\": ");
	json_num(f, s.max);
	fprintf(f, ", \"rounds\": %zu}", s.n);
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
	fprintf(f,
		", \"virtual\": %s, \"cpus\": %ld, \"usable_cpus\": %ld, "
		"\"mem_gib\": %.1f, \"kernel\": ",
		m->virtual_cpu ? "true" : "false", m->cpus, m->usable_cpus,
		m->mem_gib);
	json_str(f, m->kernel);
	fprintf(f, ", \"compiler\": ");
	json_str(f, m->compiler);
	fprintf(f, ", \"build\": ");
	json_str(f, m->build);
	fprintf(f, ", \"gs_workers\": ");
	json_str(f, m->gs_workers);
	fprintf(f, ", \"load_before\": %.2f, \"load_after\": %.2f}",
		m->load_before, m->load_after);
	fprintf(f, ",\n  \"rss_floor_kib\": %ld,\n", rep->rss_floor_kib);
}

/* One run's raw figures. */
static void json_run(FILE *f, const gsb_row *row, size_t i)
{
	const gsb_outcome *o = &row->run[i];
	const gsb_result *r = &o->result;
	fprintf(f, "{\"seconds\": ");
	json_num(f, r->seconds);
	fprintf(f, ", \"events_per_s\": ");
	json_num(f, gsb_rate(row, i));
	fprintf(f, ", \"cpu_s\": ");
	json_num(f, o->cpu_s);
	fprintf(f,
		", \"peak_rss_kib\": %ld, \"vol_switches\": %ld, "
		"\"invol_switches\": %ld",
		o->peak_rss_kib, o->vol_switches, o->invol_switches);
	fprintf(f, ", \"others_cpus\": ");
	json_num(f, gsb_others_cpus(row, i));
	if (r->own_ratio > 0) {
		fprintf(f, ", \"own_ratio\": ");
		json_num(f, r->own_ratio);
	}
	if (row->t->kind == GSB_LATENCY) {
		fprintf(f, ", \"p50_us\": ");
		json_num(f, gsb_p50(row, i));
		fprintf(f, ", \"p99_us\": ");
		json_num(f, gsb_p99(row, i));
		fprintf(f, ", \"ref_p50_us\": ");
		json_num(f, gsb_ref_p50(row, i));
		fprintf(f, ", \"ref_p99_us\": ");
		json_num(f, gsb_ref_p99(row, i));
		fprintf(f, ", \"idle_cpu\": ");
		json_num(f, gsb_idle_cpu(row, i));
		fprintf(f, ", \"idle_switches\": ");
		json_num(f, gsb_idle_switches(row, i));
	}
	if (row->t->kind == GSB_SCALE) {
		fprintf(f, ", \"stages\": %llu",
			(unsigned long long)r->scale.stages);
		for (size_t p = 0; p < N_PHASES; p++) {
			fprintf(f, ", \"%s_s\": ", phases[p].name);
			json_num(f, phases[p].wall(row, i));
			fprintf(f, ", \"%s_cpu_s\": ", phases[p].name);
			json_num(f, phases[p].cpu(row, i));
		}
		fprintf(f, ", \"kib_per_stage_idle\": ");
		json_num(f, gsb_kib_idle(row, i));
		fprintf(f, ", \"kib_per_stage_after\": ");
		json_num(f, gsb_kib_after(row, i));
	}
	fprintf(f, ", \"note\": ");
	json_str(f, r->note);
	fprintf(f, ", \"error\": ");
	if (o->error[0])
		json_str(f, o->error);
	else
		fprintf(f, "null");
	fprintf(f, "}");
}

/* The row's ratios against the rows it names, round by round. */
static void json_ratios(FILE *f, const gsb_report *rep, const gsb_row *row)
{
	const char *const base[] = { row->t->ceiling, row->t->floor,
				     row->t->base };
	fprintf(f, "{");
	bool first = true;
	for (size_t b = 0; b < 3; b++) {
		if (!base[b])
			continue;
		fprintf(f, "%s", first ? "" : ", ");
		json_spread(f, base[b], gsb_ratio(rep, row, base[b]));
		first = false;
	}
	fprintf(f, "}");
}

static void json_row(FILE *f, const gsb_report *rep, const gsb_row *row)
{
	static const char *const kind[] = { "throughput", "latency", "scale" };
	fprintf(f, "    {\"name\": ");
	json_str(f, row->t->name);
	fprintf(f, ", \"kind\": \"%s\", \"what\": ", kind[row->t->kind]);
	json_str(f, row->t->what);
	fprintf(f, ",\n     \"cpus\": %ld, \"count\": %llu, \"unit\": ",
		row_cpus(rep, row), (unsigned long long)row->events);
	json_str(f, row->t->unit ? row->t->unit : "events");
	fprintf(f, ", \"ok\": %s,\n     ", row->error[0] ? "false" : "true");
	if (row->t->kind == GSB_THROUGHPUT) {
		json_spread(f, "events_per_s", gsb_over_runs(row, gsb_rate));
		fprintf(f, ",\n     \"vs\": ");
		json_ratios(f, rep, row);
		fprintf(f, ",\n     ");
		json_spread(f, "cpu_s_per_m_events",
			    gsb_over_runs(row, gsb_cpu_per_m));
	} else if (row->t->kind == GSB_LATENCY) {
		json_spread(f, "p50_us", gsb_over_runs(row, gsb_p50));
		fprintf(f, ", ");
		json_spread(f, "p99_us", gsb_over_runs(row, gsb_p99));
		fprintf(f, ",\n     \"reference\": ");
		json_str(f, row->t->reference);
		fprintf(f, ", ");
		json_spread(f, "ref_p50_us", gsb_over_runs(row, gsb_ref_p50));
		fprintf(f, ", ");
		json_spread(f, "ref_p99_us", gsb_over_runs(row, gsb_ref_p99));
		fprintf(f, ",\n     ");
		json_spread(f, "p50_vs_ref",
			    gsb_over_runs(row, gsb_p50_vs_ref));
		fprintf(f, ", ");
		json_spread(f, "idle_cpu", gsb_over_runs(row, gsb_idle_cpu));
	} else {
		json_spread(f, "start_s", gsb_over_runs(row, gsb_start_s));
		fprintf(f, ", ");
		json_spread(f, "kib_per_stage_idle",
			    gsb_over_runs(row, gsb_kib_idle));
		fprintf(f, ",\n     ");
		json_spread(f, "kib_per_stage_after",
			    gsb_over_runs(row, gsb_kib_after));
	}
	fprintf(f, ",\n     \"peak_rss_kib\": ");
	json_num(f, peak_rss_mib(row) * 1024);
	fprintf(f, ", \"note\": ");
	json_str(f, row_note(row));
	fprintf(f, ",\n     \"runs\": [");
	for (size_t i = 0; i < row->runs; i++) {
		fprintf(f, "%s\n       ", i ? "," : "");
		json_run(f, row, i);
	}
	fprintf(f, "]}");
}

static void json_targets(FILE *f, const gsb_report *rep)
{
	for (size_t i = 0; i < gsb_n_targets(); i++) {
		gsb_verdict v;
		gsb_check_target(rep, i, &v);
		fprintf(f, "%s    {\"group\": ", i ? ",\n" : "");
		json_str(f, v.group);
		fprintf(f, ", \"text\": ");
		json_str(f, v.text + 5); /* without the verdict */
		fprintf(f, ", \"value\": ");
		json_num(f, v.value);
		static const char *const pass[] = { "null", "false", "true" };
		fprintf(f, ", \"bound\": %g, \"pass\": %s}", v.bound,
			pass[v.state + 1]);
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

/* Others' CPUs over every run of every row. */
static gsb_spread others_spread(const gsb_report *rep)
{
	size_t n = 0;
	for (size_t i = 0; i < rep->n_rows; i++)
		n += rep->rows[i].runs;
	double *v = malloc((n ? n : 1) * sizeof *v);
	gsb_spread s = { NAN, NAN, NAN, 0 };
	if (!v)
		return s;
	n = 0;
	for (size_t i = 0; i < rep->n_rows; i++)
		for (size_t k = 0; k < rep->rows[i].runs; k++)
			v[n++] = gsb_others_cpus(&rep->rows[i], k);
	s = gsb_spread_of(v, n);
	free(v);
	return s;
}

static void md_header(FILE *f, const gsb_report *rep)
{
	const gsb_machine *m = &rep->machine;
	size_t runs = 0;
	for (size_t i = 0; i < rep->n_rows; i++)
		if (rep->rows[i].runs > runs)
			runs = rep->rows[i].runs;
	gsb_spread others = others_spread(rep);
	fprintf(f,
		"<!-- Written by gs-bench --markdown; regenerate with "
		"`make bench`. -->\n"
		"# gs-bench results\n\n"
		"Measured %s with `%s`: %zu round%s, every row once a round, "
		"each run in a child process of its own. The machine is "
		"shared: during the runs other processes kept %.2f of its "
		"%ld CPUs busy (median over the runs; %.2f to %.2f), and the "
		"1-minute load average was %.2f before and %.2f after. "
		"Ratios against the spinning gs-ring suffer most from that: "
		"two spinning threads need both CPUs at once.\n\n",
		m->date, rep->command, runs, runs == 1 ? "" : "s",
		others.median, m->cpus, others.min, others.max, m->load_before,
		m->load_after);
	fprintf(f,
		"## How to read it\n\n"
		"- Every cell is the **median (min..max)** over the rounds. "
		"A ratio is taken **round by round**: a row's run in round k "
		"against its baseline's run in round k, then the median, "
		"min and max of those ratios.\n"
		"- **vs gs-ring**: events/s over gs-ring's, the engine's own "
		"ring moving the same 500-event batches between two spinning "
		"threads: the ceiling for a hand-off between two cores. "
		"Blank where it means nothing (pinned rows, the slow "
		"consumer, word counts, rows with a baseline of their own, "
		"the bus's sleeping handlers).\n"
		"- **vs floor**: events/s over mutex-batch's, a mutex and "
		"condvar queue moving batches of up to 500, signalling only "
		"empty to non-empty and full to not full: what a competent "
		"C programmer writes. Pinned rows (`@1cpu`) are divided by "
		"`mutex-batch@1cpu`, the same queue on the same single CPU.\n"
		"- **vs its baseline**: word counts against the plain loop "
		"(events are bytes of text; `words-serial/2` is "
		"flow-words/2's own work done by one thread with no library, "
		"so twice its ratio is the most flow-words/2 can reach on 2 "
		"CPUs); `oversubscribed` (8 copies of "
		"1-map-1/md1000 at once, all their events) against one copy "
		"alone; `chain-1000` against 1-1/md1000, both counted in "
		"deliveries (an event crossing a subscription; a value "
		"crosses 1001 in chain-1000, one in 1-1); `bus-fanout` "
		"against `pubsub-mutex`, the same fan-out written by hand "
		"(both count deliveries). `bus-slow/c1` and `bus-slow/c10` "
		"are judged instead by their time over an ideal measured in "
		"the same run (sleeps of 10 ms on as many threads; in their "
		"note and the targets).\n"
		"- Rows suffixed `/1` move one item per call (lock, push or "
		"pop); the others move batches. 1-4-broadcast counts "
		"deliveries (4 per value).\n"
		"- `@1cpu` rows run confined to one CPU "
		"(sched_setaffinity in the child before anything starts, "
		"as `taskset -c 0` would), so the default executor has one "
		"worker; the others run on every CPU the harness may use.\n"
		"- **others' CPUs**: how many CPUs other processes kept "
		"busy on average during the run (the machine's busy time "
		"from /proc/stat less the run's own): a round with a high "
		"figure was measured on a busy machine.\n"
		"- **CPU s / M events**: user + system time of the whole "
		"child per million events (deliveries where the row counts "
		"them); for the word counts, of the count alone (the "
		"process's CPU clock around it), since making and checking "
		"the corpus cost more. **switches**: the median run's voluntary "
		"(blocking: futex, sleep) and involuntary (preempted) "
		"context switches. **Peak RSS**: the child's ru_maxrss, the "
		"most of any run (a child that does nothing peaks at "
		"%.1f MiB).\n"
		"- **Latency**: p50 and p99 of one-way times, with a "
		"reference measured in the same process and interleaved "
		"with the row: a mutex+condvar hand-off of one event for the "
		"hot rows, a bare futex wake for `wake-latency`. **Idle "
		"CPU**: what every thread but the measuring one burns from "
		"1 ms after the last event, over %d ms, in microseconds "
		"per second (millionths of a core), with their context "
		"switches meanwhile.\n"
		"- **Scale**: phases timed once per run; KiB per stage is "
		"the growth of resident memory divided by the stages, once "
		"started and idle, and again after events crossed every "
		"ring (every ring is then resident).\n\n",
		(double)rep->rss_floor_kib / 1024, GSB_IDLE_MS);
}

static void md_tables(FILE *f, const gsb_report *rep)
{
	gsb_table *t = malloc(sizeof *t);
	for (size_t k = 0; t && k < N_TABLES; k++) {
		tables[k].make(rep, t);
		if (!t->rows)
			continue;
		fprintf(f, "## %s\n\n", tables[k].title);
		gsb_table_markdown(f, t);
		fprintf(f, "\n");
	}
	free(t);
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
		"- CPU: %s, %ld online, %ld usable by the harness%s\n"
		"- Memory: %.1f GiB\n"
		"- Kernel: %s\n"
		"- Compiler: %s; build: %s\n"
		"- GS_WORKERS: %s\n"
		"- Date: %s\n"
		"- 1-minute load average: %.2f before the runs, %.2f after\n",
		m->cpu, m->cpus, m->usable_cpus,
		m->virtual_cpu ? "; a virtual machine (the CPUs' flags say "
				 "hypervisor)"
			       : "",
		m->mem_gib, m->kernel, m->compiler, m->build,
		m->gs_workers[0] ? m->gs_workers : "unset", m->date,
		m->load_before, m->load_after);
}

int gsb_write_markdown(const char *path, const gsb_report *rep)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	md_header(f, rep);
	md_tables(f, rep);
	fprintf(f, "## Targets\n\n");
	print_targets(f, rep, "### ", "- ");
	md_topologies(f, rep);
	md_machine(f, rep);
	return close_checked(f);
}
