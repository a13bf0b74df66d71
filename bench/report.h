// SPDX-License-Identifier: MIT
/*
 * The results of a whole harness run: a row per topology (its runs, their
 * median), ratios against the baselines of the same run, the targets, and
 * the three ways to write them (a table, JSON, Markdown).
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

/* The table, then each row's note and error, then the targets. */
void gsb_print(FILE *f, const gsb_report *rep);

/* Both return 0, or -1 with errno set when the file cannot be written. */
int gsb_write_json(const char *path, const gsb_report *rep);
int gsb_write_markdown(const char *path, const gsb_report *rep);

#endif
