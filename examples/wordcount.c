// SPDX-License-Identifier: MIT
/*
 * wordcount: counts the words of a text with a flow and prints the 20 most
 * frequent, then counts again with a plain single-threaded loop over the
 * same code, checks that both agree and prints both times. How the flow
 * is built, and why, is in wordcount_count.c.
 *
 *   build/examples/wordcount [FILE | -g MB] [STAGES] [ROUNDS]
 *
 * Without FILE it generates a deterministic corpus of MB megabytes
 * (default 8). STAGES is the number of counting stages (default 2). With
 * ROUNDS (default 1) it times that many runs of each and prints the best.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wordcount.h"

static char *load(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return NULL;
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
	/* Both counts lowercase and cut their text in place: each round
	 * works on fresh copies, made before the clock starts. */
	char *ftext = malloc(len ? len : 1), *ptext = malloc(len ? len : 1);
	wc_table *flow = NULL, *plain = NULL;
	double tflow = 0, tplain = 0;
	int bad = !ftext || !ptext;
	for (size_t r = 0; r < rounds && !bad; r++) {
		char why[256] = "";
		wc_table_free(flow);
		wc_table_free(plain);
		flow = plain = NULL;
		memcpy(ftext, orig, len);
		memcpy(ptext, orig, len);
		double t0 = now();
		gs_err e = wc_count_flow(ftext, len, stages, &flow, why,
					 sizeof(why));
		double t1 = now();
		if (!e)
			e = wc_count_loop(ptext, len, &plain);
		double t2 = now();
		if (e) {
			fprintf(stderr, "wordcount: %s (%s)\n", gs_strerror(e),
				why);
			bad = 1;
			break;
		}
		if (r == 0 || t1 - t0 < tflow)
			tflow = t1 - t0;
		if (r == 0 || t2 - t1 < tplain)
			tplain = t2 - t1;
	}
	if (!bad) {
		top best[TOP] = { { 0 } };
		wc_each(flow, top_add, best);
		printf("%zu words, %zu distinct, %zu MB, %zu counting "
		       "stages\n",
		       wc_words(flow), wc_distinct(flow), len >> 20, stages);
		for (size_t i = 0; i < TOP && best[i].word; i++)
			printf("%8zu %s\n", best[i].count, best[i].word);
		printf("flow %.3f s, plain loop %.3f s: the flow is %.2fx "
		       "the loop's speed\n",
		       tflow, tplain, tplain / tflow);
		bad = !wc_same(flow, plain);
		if (bad)
			fprintf(stderr, "wordcount: the flow and the loop "
					"disagree\n");
	}
	wc_table_free(flow);
	wc_table_free(plain);
	free(orig);
	free(ftext);
	free(ptext);
	return bad;
}
