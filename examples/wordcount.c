// SPDX-License-Identifier: MIT
/*
 * wordcount: counts the words of a text with a plain single-threaded loop
 * and with two flows, prints the 20 most frequent words and the three
 * times, and checks that all three counts agree. Both flows are in
 * wordcount_count.c: Flow's textbook from_fn |> flat_map |> partition |>
 * reduce (WC_WORDS), whose split runs in the stages after the source, and
 * a shape that splits and counts the words of whole chunks in the same
 * stages (WC_CHUNKS), which hands no word from stage to stage.
 *
 *   build/examples/wordcount [FILE | -g MB] [STAGES] [ROUNDS]
 *
 * Without FILE it generates a deterministic corpus of MB megabytes
 * (default 8). STAGES is the number of counting stages, and of splitting
 * stages in the textbook flow (default 2). With ROUNDS (default 1) it
 * times that many runs of each and prints the best.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "wordcount.h"

static char *load(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return NULL;
	/* Only a regular file has a size: ftell gives a directory's as
	 * LONG_MAX here. */
	struct stat st;
	if (fstat(fileno(fp), &st) || !S_ISREG(st.st_mode)) {
		fclose(fp);
		return NULL;
	}
	fseek(fp, 0, SEEK_END);
	long sz = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	char *text = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
	if (text && fread(text, 1, (size_t)sz, fp) != (size_t)sz) {
		free(text);
		text = NULL;
	}
	fclose(fp);
	*len = (size_t)sz;
	return text;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define TOP 20

typedef struct top {
	const char *word;
	size_t count;
} top;

/* Keeps best[0..TOP) ordered by count, then alphabetically. */
static void top_add(void *arg, const char *w, size_t c)
{
	top *best = arg;
	top *last = &best[TOP - 1];
	if (c < last->count ||
	    (c == last->count && last->word && strcmp(w, last->word) > 0))
		return;
	size_t i = TOP - 1;
	while (i > 0 &&
	       (best[i - 1].count < c ||
		(best[i - 1].count == c && strcmp(best[i - 1].word, w) > 0))) {
		best[i] = best[i - 1];
		i--;
	}
	best[i] = (top){ w, c };
}

int main(int argc, char **argv)
{
	size_t len, mb = 8, stages = 2, rounds = 1;
	const char *path = NULL;
	int a = 1;
	if (a < argc && strcmp(argv[a], "-g") == 0 && a + 1 < argc) {
		mb = strtoul(argv[a + 1], NULL, 10);
		a += 2;
	} else if (a < argc) {
		path = argv[a++];
	}
	if (a < argc)
		stages = strtoul(argv[a++], NULL, 10);
	if (a < argc)
		rounds = strtoul(argv[a++], NULL, 10);
	if (stages < 1 || stages > 64 || rounds < 1) {
		fprintf(stderr, "wordcount: 1 to 64 stages, 1 round or more\n");
		return 1;
	}
	char *orig = path ? load(path, &len) : wc_generate(mb << 20, &len);
	if (!orig) {
		fprintf(stderr, "wordcount: cannot read %s\n",
			path ? path : "(out of memory)");
		return 1;
	}
	/* Every count lowercases and cuts its text in place, and its table
	 * points into it: each has its own copy, refreshed before the clock
	 * starts. */
	char *text[3]; /* the loop's, WC_CHUNKS', WC_WORDS' */
	wc_table *got[3] = { NULL, NULL, NULL };
	double best[3] = { 0, 0, 0 };
	int bad = 0;
	for (int k = 0; k < 3; k++)
		bad |= !(text[k] = malloc(len + 1));
	if (bad)
		fprintf(stderr, "wordcount: out of memory\n");
	for (size_t r = 0; r < rounds && !bad; r++) {
		for (int k = 0; k < 3 && !bad; k++) {
			char why[256] = "";
			wc_table_free(got[k]);
			got[k] = NULL;
			memcpy(text[k], orig, len);
			double t0 = now();
			gs_err e = k == 0 ? wc_count_loop(text[k], len, &got[0])
					  : wc_count_flow(text[k], len,
							  k == 1 ? WC_CHUNKS
								 : WC_WORDS,
							  stages, &got[k], why,
							  sizeof(why));
			double t = now() - t0;
			if (e) {
				fprintf(stderr, "wordcount: %s (%s)\n",
					gs_strerror(e), why);
				bad = 1;
			} else if (r == 0 || t < best[k]) {
				best[k] = t;
			}
		}
	}
	if (!bad) {
		top best20[TOP] = { { 0 } };
		wc_each(got[1], top_add, best20);
		printf("%zu words, %zu distinct, %zu MB, %zu counting "
		       "stages\n",
		       wc_words(got[1]), wc_distinct(got[1]), len >> 20,
		       stages);
		for (size_t i = 0; i < TOP && best20[i].word; i++)
			printf("%8zu %s\n", best20[i].count, best20[i].word);
		printf("plain loop  %.3f s\n", best[0]);
		printf("flow/chunks %.3f s: %.2fx the loop's speed\n", best[1],
		       best[0] / best[1]);
		printf("flow/words  %.3f s: %.2fx the loop's speed\n", best[2],
		       best[0] / best[2]);
		for (int k = 1; k < 3 && !bad; k++)
			if (!wc_same(got[k], got[0])) {
				fprintf(stderr,
					"wordcount: the %s flow and the loop "
					"disagree\n",
					k == 1 ? "chunks" : "words");
				bad = 1;
			}
	}
	for (int k = 0; k < 3; k++) {
		wc_table_free(got[k]);
		free(text[k]);
	}
	free(orig);
	return bad;
}
