// SPDX-License-Identifier: MIT
/*
 * flow-wordcount: the word count of examples/wordcount.c over the same
 * deterministic corpus (events = its bytes, 50 MiB by default), by its two
 * flows with 1 and 2 counting stages and by the plain single-threaded loop,
 * so that report.c can put the flows against the loop of the same run;
 * and the textbook flow's own work done on one thread (words-serial/2),
 * which bounds what its stages can gain.
 * The corpus is generated and copied before the clock starts; the count
 * cuts and lowercases its copy in place.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "wordcount.h"

/* Words as the counters see them, counted without a table: what every
 * count must add up to. */
static uint64_t word_starts(const char *text, size_t len)
{
	uint64_t n = 0;
	bool in = false;
	for (size_t i = 0; i < len; i++) {
		bool alnum = isalnum((unsigned char)text[i]);
		n += alnum && !in;
		in = alnum;
	}
	return n;
}

void gsb_run_wordcount(const gsb_topology *t, const gsb_params *p,
		       gsb_result *r)
{
	size_t len;
	char *orig = wc_generate((size_t)p->events, &len);
	char *text = orig ? malloc(len + 1) : NULL;
	if (!text) {
		free(orig);
		r->err = GS_ENOMEM;
		snprintf(r->note, sizeof r->note, "no memory for the corpus");
		return;
	}
	memcpy(text, orig, len);
	r->expected = word_starts(orig, len);
	wc_table *got = NULL;
	char why[128] = "";
	double t0 = gsb_now(), cpu0 = gsb_cpu_s();
	gs_err e = !t->stages ? wc_count_loop(text, len, &got)
		   : t->serial
			   ? wc_count_words_serial(text, len, t->stages, &got)
			   : wc_count_flow(text, len,
					   t->by_word ? WC_WORDS : WC_CHUNKS,
					   t->stages, &got, why, sizeof why);
	r->seconds = gsb_now() - t0;
	/* Making the corpus and checking the count cost more than counting
	 * it: the CPU column is the count's alone. */
	r->cpu_s = gsb_cpu_s() - cpu0;
	if (!e && t->stages) {
		/* Checked against the loop's count, after the clock. */
		wc_table *want = NULL;
		memcpy(text, orig, len);
		e = wc_count_loop(text, len, &want);
		if (!e && !wc_same(got, want)) {
			e = GS_ESTATE;
			snprintf(why, sizeof why,
				 "the flow and the loop "
				 "disagree");
		}
		wc_table_free(want);
	}
	if (e) {
		r->err = e;
		snprintf(r->note, sizeof r->note, "%s: %s", gs_strerror(e),
			 why);
	} else {
		r->delivered = len;
		r->checksum = wc_words(got);
		snprintf(r->note, sizeof r->note,
			 "%llu words, %zu distinct, %.1f MiB",
			 (unsigned long long)r->checksum, wc_distinct(got),
			 (double)len / (1 << 20));
	}
	gsb_progress(p, r->delivered);
	wc_table_free(got);
	free(text);
	free(orig);
}
