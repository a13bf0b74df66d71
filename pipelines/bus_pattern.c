// SPDX-License-Identifier: MIT
/*
 * Topics and what subscriptions match them: AMQP topic-exchange patterns
 * ("*" one word, "#" zero or more), matched word by word with one
 * backtracking point as a glob matcher does, and anchored POSIX extended
 * regular expressions. Matching runs only when a topic's cached route is
 * computed (bus_route.c), never per event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"

/* A topic of 255 bytes has at most 128 words. */
#define MAX_WORDS (GS__BUS_TOPIC_MAX / 2 + 1)

/* Shared by topics and patterns, in one pass (it runs on every publish):
 * non-empty, at most 255 bytes, no empty word; `wild` allows "*" and "#"
 * as whole words. */
static gs_err check_words(const char *s, bool wild, const char *what,
			  size_t *len, char *why, size_t why_len)
{
	const char *err = NULL;
	size_t i = 0, wl = 0;
	bool has_wild = false; /* the current word holds '*' or '#' */
	for (;; i++) {
		char c = s[i];
		if (c != '.' && c != '\0') {
			if (i >= GS__BUS_TOPIC_MAX) {
				err = "is longer than 255 bytes";
				break;
			}
			wl++;
			has_wild |= c == '*' || c == '#';
			continue;
		}
		if (!wl)
			err = !i && !c ? "is empty" : "has an empty word";
		else if (has_wild && !(wild && wl == 1))
			err = wild ? "has '*' or '#' inside a word"
				   : "contains '*' or '#'";
		if (err || !c)
			break;
		wl = 0;
		has_wild = false;
	}
	if (err) {
		/* The whole input (its first 64 bytes), and where it failed. */
		size_t shown = strnlen(s, 64);
		snprintf(why, why_len, "%s '%.*s%s' %s", what, (int)shown, s,
			 s[shown] ? "..." : "", err);
		if (i)
			snprintf(why + strlen(why), why_len - strlen(why),
				 " (at byte %zu)", i);
		return GS_EINVAL;
	}
	*len = i;
	return GS_OK;
}

gs_err gs__bus_topic_check(const char *topic, size_t *len, char *why,
			   size_t why_len)
{
	if (!topic) {
		snprintf(why, why_len, "NULL topic");
		return GS_EINVAL;
	}
	return check_words(topic, false, "topic", len, why, why_len);
}

/* Splits s (valid, len bytes) into words: starts and lengths. */
static size_t split(const char *s, size_t len, const char **w, size_t *wl)
{
	size_t n = 0;
	for (size_t i = 0, start = 0; i <= len; i++)
		if (i == len || s[i] == '.') {
			w[n] = s + start;
			wl[n++] = i - start;
			start = i + 1;
		}
	return n;
}

static bool word_eq(const char *p, const char *t, size_t tl)
{
	return strncmp(p, t, tl) == 0 && p[tl] == '\0';
}

/* Glob matching over words: "#" is the star, remembered as the single
 * backtracking point (a later "#" replaces it: it can absorb anything an
 * earlier one would have). */
static bool amqp_match(const gs__bus_amqp *p, const char *topic, size_t len)
{
	const char *tw[MAX_WORDS];
	size_t tl[MAX_WORDS];
	size_t nt = split(topic, len, tw, tl);
	size_t pi = 0, ti = 0, back_pi = SIZE_MAX, back_ti = 0;
	while (ti < nt) {
		const char *w = pi < p->n ? p->words[pi] : NULL;
		if (w && w[0] == '#' && !w[1]) {
			back_pi = pi++;
			back_ti = ti;
		} else if (w && ((w[0] == '*' && !w[1]) ||
				 word_eq(w, tw[ti], tl[ti]))) {
			pi++;
			ti++;
		} else if (back_pi != SIZE_MAX) {
			pi = back_pi + 1;
			ti = ++back_ti;
		} else {
			return false;
		}
	}
	while (pi < p->n && p->words[pi][0] == '#')
		pi++;
	return pi == p->n;
}

static gs_err amqp_compile(gs__bus_amqp *p, const char *pattern, char *why,
			   size_t why_len)
{
	size_t len;
	gs_err err = check_words(pattern, true, "pattern", &len, why, why_len);
	if (err)
		return err;
	const char *w[MAX_WORDS];
	size_t wl[MAX_WORDS];
	size_t n = split(pattern, len, w, wl);
	p->text = malloc(len + 1);
	p->words = malloc(n * sizeof *p->words);
	if (!p->text || !p->words) {
		free(p->text);
		free(p->words);
		snprintf(why, why_len, "out of memory");
		return GS_ENOMEM;
	}
	memcpy(p->text, pattern, len + 1);
	for (size_t i = 0; i < n; i++) {
		p->text[w[i] - pattern + wl[i]] = '\0';
		p->words[i] = p->text + (w[i] - pattern);
	}
	p->n = n;
	return GS_OK;
}

/* The expression is compiled as it is written (wrapped in "^(...)$", an
 * unbalanced one such as "x)|(y" came out valid and anchored at one end
 * only, and the groups a back-reference counts moved by one); a topic
 * matches when the match POSIX finds, the leftmost and then longest,
 * spans all of it, as one does whenever any match does. */
static gs_err regex_compile(regex_t *re, const char *expr, char *why,
			    size_t why_len)
{
	if (!*expr) {
		snprintf(why, why_len, "empty regex");
		return GS_EINVAL;
	}
	int rc = regcomp(re, expr, REG_EXTENDED);
	if (rc) {
		char msg[128];
		regerror(rc, re, msg, sizeof msg);
		snprintf(why, why_len, "regex '%.64s': %s", expr, msg);
		return GS_EINVAL;
	}
	return GS_OK;
}

static bool regex_match(const regex_t *re, const char *topic, size_t len)
{
	regmatch_t whole;
	return regexec(re, topic, 1, &whole, 0) == 0 && whole.rm_so == 0 &&
	       (size_t)whole.rm_eo == len;
}

static size_t count(const char *const *list)
{
	size_t n = 0;
	while (list && list[n])
		n++;
	return n;
}

gs_err gs__bus_matcher_init(gs__bus_matcher *m, const char *const *patterns,
			    const char *const *regexes, char *why,
			    size_t why_len)
{
	*m = (gs__bus_matcher){ 0 };
	size_t na = count(patterns), nr = count(regexes);
	if (!na && !nr) {
		snprintf(why, why_len, "no pattern and no regex");
		return GS_EINVAL;
	}
	m->amqp = na ? calloc(na, sizeof *m->amqp) : NULL;
	m->re = nr ? calloc(nr, sizeof *m->re) : NULL;
	gs_err err = (na && !m->amqp) || (nr && !m->re) ? GS_ENOMEM : GS_OK;
	if (err)
		snprintf(why, why_len, "out of memory");
	while (!err && m->n_amqp < na) {
		err = amqp_compile(&m->amqp[m->n_amqp], patterns[m->n_amqp],
				   why, why_len);
		m->n_amqp += !err;
	}
	while (!err && m->n_re < nr) {
		err = regex_compile(&m->re[m->n_re], regexes[m->n_re], why,
				    why_len);
		m->n_re += !err;
	}
	if (err)
		gs__bus_matcher_fini(m);
	return err;
}

bool gs__bus_matcher_test(const gs__bus_matcher *m, const char *topic,
			  size_t len)
{
	for (size_t i = 0; i < m->n_amqp; i++)
		if (amqp_match(&m->amqp[i], topic, len))
			return true;
	for (size_t i = 0; i < m->n_re; i++)
		if (regex_match(&m->re[i], topic, len))
			return true;
	return false;
}

/* Frees what init compiled: n_amqp and n_re count only what succeeded. */
void gs__bus_matcher_fini(gs__bus_matcher *m)
{
	for (size_t i = 0; i < m->n_amqp; i++) {
		free(m->amqp[i].text);
		free(m->amqp[i].words);
	}
	for (size_t i = 0; i < m->n_re; i++)
		regfree(&m->re[i]);
	free(m->amqp);
	free(m->re);
	*m = (gs__bus_matcher){ 0 };
}

GS_BUS_API gs_err gs_bus_pattern_matches(const char *pattern, const char *topic,
					 bool *match)
{
	char why[160];
	size_t len;
	if (!pattern || !match ||
	    gs__bus_topic_check(topic, &len, why, sizeof why))
		return GS_EINVAL;
	gs__bus_amqp p;
	gs_err err = amqp_compile(&p, pattern, why, sizeof why);
	if (err)
		return err;
	*match = amqp_match(&p, topic, len);
	free(p.text);
	free(p.words);
	return GS_OK;
}
