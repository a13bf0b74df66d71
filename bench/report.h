// SPDX-License-Identifier: MIT
/*
 * The results of a whole harness run: a row per topology with its runs
 * (run k of every row belongs to round k), the figures drawn from them
 * (min/median/max over the runs, ratios round by round), the targets, and
 * the three ways to write them (tables on a terminal, JSON, Markdown).
 */
#ifndef GSB_REPORT_H
#define GSB_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "machine.h"
#include "runner.h"

#define GSB_MAX_REPEAT 15

typedef struct gsb_row {
	const gsb_topology *t;
	uint64_t events;
	size_t runs;
	gsb_outcome run[GSB_MAX_REPEAT];
	char error[224]; /* the first failure, empty if none */
} gsb_row;

typedef struct gsb_report {
	gsb_row *rows;
	size_t n_rows;
	long rss_floor_kib;
	const char *command;
	gsb_machine machine;
} gsb_report;

/* A figure over several runs: n of them gave one (0: none did). */
typedef struct gsb_spread {
	double min, median, max;
	size_t n;
} gsb_spread;

/* One figure of one run; NAN when the run has none (it failed). */
typedef double (*gsb_figure_fn)(const gsb_row *row, size_t run);

/* summary.c: the figures. */
const gsb_row *gsb_find_row(const gsb_report *rep, const char *name);
double gsb_rate(const gsb_row *row, size_t run);      /* events/s */
double gsb_cpu_per_m(const gsb_row *row, size_t run); /* CPU s per M */
double gsb_p50(const gsb_row *row, size_t run);       /* us */
double gsb_p99(const gsb_row *row, size_t run);
double gsb_ref_p50(const gsb_row *row, size_t run);
double gsb_ref_p99(const gsb_row *row, size_t run);
double gsb_p50_vs_ref(const gsb_row *row, size_t run); /* p50 / ref p50 */
double gsb_idle_cpu(const gsb_row *row, size_t run);   /* of a core */
double gsb_idle_switches(const gsb_row *row, size_t run);
double gsb_peak_rss_mib(const gsb_row *row, size_t run);
double gsb_vol_switches(const gsb_row *row, size_t run);
double gsb_invol_switches(const gsb_row *row, size_t run);
double gsb_others_cpus(const gsb_row *row, size_t run); /* others' load */
double gsb_build_s(const gsb_row *row, size_t run);     /* by the clock */
double gsb_start_s(const gsb_row *row, size_t run);
double gsb_run_s(const gsb_row *row, size_t run);
double gsb_free_s(const gsb_row *row, size_t run);
double gsb_build_cpu_s(const gsb_row *row, size_t run); /* CPU time */
double gsb_start_cpu_s(const gsb_row *row, size_t run);
double gsb_run_cpu_s(const gsb_row *row, size_t run);
double gsb_free_cpu_s(const gsb_row *row, size_t run);
double gsb_kib_idle(const gsb_row *row, size_t run);
double gsb_kib_after(const gsb_row *row, size_t run);
double gsb_own_ratio(const gsb_row *row, size_t run); /* gsb_result's */

/* The spread of the values of v[0..n) that are numbers; sorts v. */
gsb_spread gsb_spread_of(double *v, size_t n);

/* A figure over the row's runs. */
gsb_spread gsb_over_runs(const gsb_row *row, gsb_figure_fn f);

/* row's events/s over the named row's, round by round (run k against run
 * k); n is 0 when either is missing or no round has both. */
gsb_spread gsb_ratio(const gsb_report *rep, const gsb_row *row,
		     const char *base);

/* The run whose events/s is the median's (the lower middle one), for its
 * note and counters; -1 if none succeeded. */
int gsb_median_run(const gsb_row *row);

/* targets.c: the targets, checked against a report; they do not
 * change the exit code. */
typedef struct gsb_verdict {
	char text[320]; /* "PASS claim: measured (rounds...)" */
	const char *group;
	double value, bound;
	int state; /* 1 pass, 0 fail, -1 not measured */
} gsb_verdict;

size_t gsb_n_targets(void);
void gsb_check_target(const gsb_report *rep, size_t i, gsb_verdict *v);

/* report.c: the tables, then each row's note and error, then the
 * targets. */
void gsb_print(FILE *f, const gsb_report *rep);

/* Both return 0, or -1 with errno set when the file cannot be written. */
int gsb_write_json(const char *path, const gsb_report *rep);
int gsb_write_markdown(const char *path, const gsb_report *rep);

#endif
