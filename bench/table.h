// SPDX-License-Identifier: MIT
/*
 * A table of text cells, written either aligned for a terminal or as
 * Markdown, so that both outputs show the same cells.
 */
#ifndef GSB_TABLE_H
#define GSB_TABLE_H

#include <stdio.h>

#define GSB_TABLE_COLS 12
#define GSB_TABLE_ROWS 64
#define GSB_CELL 64

typedef struct gsb_table {
	size_t cols, rows;
	const char *head[GSB_TABLE_COLS];
	char cell[GSB_TABLE_ROWS][GSB_TABLE_COLS][GSB_CELL];
} gsb_table;

/* Starts an empty table with these headers (NULL-terminated, kept). The
 * first column is left-aligned, the others right-aligned. */
void gsb_table_init(gsb_table *t, const char *const *head);

/* Adds a row of empty cells; returns its index, or -1 when full. */
int gsb_table_row(gsb_table *t);

/* Fills a cell as printf does, cutting what does not fit. */
void gsb_table_set(gsb_table *t, int row, size_t col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

void gsb_table_text(FILE *f, const gsb_table *t);
void gsb_table_markdown(FILE *f, const gsb_table *t);

#endif
