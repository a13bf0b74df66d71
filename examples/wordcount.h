// SPDX-License-Identifier: MIT
/*
 * The word count shared by examples/wordcount.c and gs-bench's
 * flow-wordcount topologies: a deterministic corpus, a count by a flow and
 * the same count by a plain single-threaded loop, so that both programs
 * time exactly the same work.
 */
#ifndef WORDCOUNT_H
#define WORDCOUNT_H

#include <stdbool.h>
#include <stddef.h>

#include <genstage/flow.h>

/* Words and their counts; the words point into the counted text, which
 * must outlive the table. */
typedef struct wc_table wc_table;

/* A deterministic corpus of exactly `bytes` bytes (malloc'ed): words of a
 * fixed vocabulary with a skewed frequency. NULL when out of memory. */
char *wc_generate(size_t bytes, size_t *len);

/* How the flow is laid out (see wordcount_count.c). */
typedef enum wc_shape {
	/* The source cuts the text into chunks; the counting stages take
	 * them by demand, each splits and counts its chunks in its own table,
	 * and the tables are merged: the fast one. */
	WC_CHUNKS,
	/* Flow's textbook word count: the stages after the source split
	 * the chunks into words (flat_map), each word goes to the counting
	 * stage its hash picks (partition) and is counted there (reduce). */
	WC_WORDS,
} wc_shape;

/* Count the words of text[0..len) (letters and digits, lowercased), both
 * cutting the text in place into lowercase, NUL-terminated words: the text
 * must have room for len + 1 bytes (text[len] becomes a NUL). The flow
 * uses `stages` counting stages (and, for WC_WORDS, as many splitting
 * stages); on error *why says what failed. */
gs_err wc_count_flow(char *text, size_t len, wc_shape shape, size_t stages,
		     wc_table **out, char *why, size_t whylen);
gs_err wc_count_loop(char *text, size_t len, wc_table **out);
/* WC_WORDS's own work on one thread, without the library: the words cut
 * a batch at a time (what the splitting stages hand on), then each one's key
 * picks one of `parts` tables and it is counted there (what the partition
 * and the counting stages do), then the tables merged. Its time is the
 * least that work costs, so `parts` stages on as many CPUs can at best
 * divide it by `parts`: gs-bench's words-serial rows, the ceiling of the
 * flow-words rows. */
gs_err wc_count_words_serial(char *text, size_t len, size_t parts,
			     wc_table **out);

size_t wc_words(const wc_table *t);    /* all words, repeats included */
size_t wc_distinct(const wc_table *t); /* distinct words */
/* Calls fn for each distinct word, in no order. */
void wc_each(const wc_table *t,
	     void (*fn)(void *arg, const char *word, size_t count), void *arg);
/* Whether both hold the same words with the same counts. */
bool wc_same(const wc_table *a, const wc_table *b);
void wc_table_free(wc_table *t);

#endif
