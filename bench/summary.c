// SPDX-License-Identifier: MIT
/*
 * The figures drawn from a row's runs: each run's events/s, latencies,
 * scale timings and costs, their min/median/max, and ratios between rows
 * taken round by round, so that a noisy moment weighs on a row and its
 * baseline alike.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

const gsb_row *gsb_find_row(const gsb_report *rep, const char *name)
{
	for (size_t i = 0; name && i < rep->n_rows; i++)
		if (!strcmp(rep->rows[i].t->name, name))
			return &rep->rows[i];
	return NULL;
}

/* The run's result, or NULL if it failed or never ran. */
static const gsb_result *ok_run(const gsb_row *row, size_t run)
{
	if (run >= row->runs || row->run[run].error[0])
		return NULL;
	return &row->run[run].result;
}

double gsb_rate(const gsb_row *row, size_t run)
{
	const gsb_result *r = ok_run(row, run);
	return r && r->seconds > 0 ? (double)row->events / r->seconds : NAN;
}

double gsb_cpu_per_m(const gsb_row *row, size_t run)
{
	return ok_run(row, run)
		       ? row->run[run].cpu_s * 1e6 / (double)row->events
		       : NAN;
}

/* The latency and scale figures: NAN for a failed run, and for a
 * negative value (not measured). */
#define FIGURE(fn, expr)                                                       \
	double fn(const gsb_row *row, size_t run)                              \
	{                                                                      \
		const gsb_result *r = ok_run(row, run);                        \
		double x = r ? (double)(expr) : NAN;                           \
		return x >= 0 ? x : NAN;                                       \
	}

FIGURE(gsb_p50, r->lat.p50_us)
FIGURE(gsb_p99, r->lat.p99_us)
FIGURE(gsb_ref_p50, r->lat.ref_p50_us)
FIGURE(gsb_ref_p99, r->lat.ref_p99_us)
FIGURE(gsb_p50_vs_ref,
       r->lat.ref_p50_us > 0 ? r->lat.p50_us / r->lat.ref_p50_us : NAN)
FIGURE(gsb_idle_cpu, r->lat.idle_cpu)
FIGURE(gsb_idle_switches, r->lat.idle_cpu < 0 ? -1 : r->lat.idle_switches)
FIGURE(gsb_peak_rss_mib, row->run[run].peak_rss_kib / 1024.0)
FIGURE(gsb_vol_switches, row->run[run].vol_switches)
FIGURE(gsb_invol_switches, row->run[run].invol_switches)
FIGURE(gsb_others_cpus, row->run[run].others_cpus)
FIGURE(gsb_build_s, r->scale.build.wall_s)
FIGURE(gsb_start_s, r->scale.start.wall_s)
FIGURE(gsb_run_s, r->scale.run.wall_s)
FIGURE(gsb_free_s, r->scale.free.wall_s)
FIGURE(gsb_build_cpu_s, r->scale.build.cpu_s)
FIGURE(gsb_start_cpu_s, r->scale.start.cpu_s)
FIGURE(gsb_run_cpu_s, r->scale.run.cpu_s)
FIGURE(gsb_free_cpu_s, r->scale.free.cpu_s)
FIGURE(gsb_kib_idle, r->scale.kib_idle)
FIGURE(gsb_kib_after, r->scale.kib_after)
FIGURE(gsb_own_ratio, r->own_ratio > 0 ? r->own_ratio : NAN)

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

gsb_spread gsb_spread_of(double *v, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!isnan(v[i]))
			v[k++] = v[i];
	if (!k)
		return (gsb_spread){ NAN, NAN, NAN, 0 };
	qsort(v, k, sizeof *v, cmp_double);
	double mid = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
	return (gsb_spread){ v[0], mid, v[k - 1], k };
}

gsb_spread gsb_over_runs(const gsb_row *row, gsb_figure_fn f)
{
	double v[GSB_MAX_REPEAT];
	for (size_t i = 0; i < row->runs; i++)
		v[i] = f(row, i);
	return gsb_spread_of(v, row->runs);
}

gsb_spread gsb_ratio(const gsb_report *rep, const gsb_row *row,
		     const char *base)
{
	const gsb_row *b = gsb_find_row(rep, base);
	double v[GSB_MAX_REPEAT];
	size_t n = 0;
	for (size_t i = 0; b && i < row->runs && i < b->runs; i++)
		v[n++] = gsb_rate(row, i) / gsb_rate(b, i);
	return gsb_spread_of(v, n);
}

int gsb_median_run(const gsb_row *row)
{
	int idx[GSB_MAX_REPEAT];
	size_t n = 0;
	for (size_t i = 0; i < row->runs; i++)
		if (!row->run[i].error[0])
			idx[n++] = (int)i;
	if (!n)
		return -1;
	/* Insertion sort by events/s: a handful of runs. */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j && gsb_rate(row, (size_t)idx[j - 1]) >
						gsb_rate(row, (size_t)idx[j]);
		     j--) {
			int tmp = idx[j];
			idx[j] = idx[j - 1];
			idx[j - 1] = tmp;
		}
	return idx[(n - 1) / 2];
}
