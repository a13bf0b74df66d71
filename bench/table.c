// SPDX-License-Identifier: MIT
/* Text tables for the terminal and for Markdown (see table.h). */
#include <stdarg.h>
#include <string.h>

#include "table.h"

void gsb_table_init(gsb_table *t, const char *const *head)
{
	t->cols = t->rows = 0;
	while (t->cols < GSB_TABLE_COLS && head[t->cols]) {
		t->head[t->cols] = head[t->cols];
		t->cols++;
	}
}

int gsb_table_row(gsb_table *t)
{
	if (t->rows == GSB_TABLE_ROWS)
		return -1;
	memset(t->cell[t->rows], 0, sizeof t->cell[t->rows]);
	return (int)t->rows++;
}

void gsb_table_set(gsb_table *t, int row, size_t col, const char *fmt, ...)
{
	if (row < 0 || col >= t->cols)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->cell[row][col], GSB_CELL, fmt, ap);
	va_end(ap);
}

void gsb_table_text(FILE *f, const gsb_table *t)
{
	size_t width[GSB_TABLE_COLS];
	for (size_t c = 0; c < t->cols; c++) {
		width[c] = strlen(t->head[c]);
		for (size_t r = 0; r < t->rows; r++)
			if (strlen(t->cell[r][c]) > width[c])
				width[c] = strlen(t->cell[r][c]);
	}
	for (size_t r = 0; r <= t->rows; r++)
		for (size_t c = 0; c < t->cols; c++) {
			const char *s = r ? t->cell[r - 1][c] : t->head[c];
			fprintf(f, c ? "  %*s" : "%-*s", (int)width[c], s);
			if (c + 1 == t->cols)
				fputc('\n', f);
		}
}

void gsb_table_markdown(FILE *f, const gsb_table *t)
{
	for (size_t c = 0; c < t->cols; c++)
		fprintf(f, "| %s ", t->head[c]);
	fprintf(f, "|\n");
	for (size_t c = 0; c < t->cols; c++)
		fprintf(f, "|%s", c ? "---:" : "---");
	fprintf(f, "|\n");
	for (size_t r = 0; r < t->rows; r++) {
		for (size_t c = 0; c < t->cols; c++)
			fprintf(f, "| %s ", t->cell[r][c]);
		fprintf(f, "|\n");
	}
}
