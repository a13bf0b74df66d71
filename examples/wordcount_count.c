// SPDX-License-Identifier: MIT
/*
 * The word count behind examples/wordcount.c and gs-bench (see
 * wordcount.h). The work runs where it can run in parallel: the source
 * only cuts the text into large chunks at word boundaries (a pointer each,
 * no copy); gs_flow_shuffle hands the chunks by demand to the counting
 * stages, each of which splits its chunks into words, hashes and counts
 * them in its own table (gs_flow_reduce); gs_flow_departition_merge then
 * merges those tables in one stage, as Flow's departition does. Nothing is
 * allocated per word: words are slices of the text, lowercased and
 * NUL-terminated in place.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wordcount.h"

/* Chunks this large make the per-chunk cost (an event, a wake-up) vanish
 * next to the per-word work, and still split the text into hundreds. */
#define CHUNK (256 * 1024)

/* A counting table keyed by words that live in the text. */
struct wc_table {
	const char **word;
	uint32_t *len;
	uint64_t *hash;
	size_t *count;
	size_t n, cap;
};
typedef struct wc_table table;

static void table_free(void *arg, void *acc)
{
	(void)arg;
	table *t = acc;
	if (!t)
		return;
	free(t->word);
	free(t->len);
	free(t->hash);
	free(t->count);
	free(t);
}

static int table_alloc(table *t, size_t cap)
{
	t->cap = cap;
	t->n = 0;
	t->word = calloc(cap, sizeof(*t->word));
	t->len = calloc(cap, sizeof(*t->len));
	t->hash = calloc(cap, sizeof(*t->hash));
	t->count = calloc(cap, sizeof(*t->count));
	return t->word && t->len && t->hash && t->count ? 0 : GS_ENOMEM;
}

static table *table_new(void)
{
	table *t = calloc(1, sizeof(*t));
	if (t && table_alloc(t, 1 << 12)) {
		table_free(NULL, t);
		t = NULL;
	}
	return t;
}

static int table_add(table *t, const char *w, uint32_t len, uint64_t h,
		     size_t by);

static int table_grow(table *t)
{
	table old = *t;
	if (table_alloc(t, old.cap * 2)) {
		free(t->word);
		free(t->len);
		free(t->hash);
		free(t->count);
		*t = old;
		return GS_ENOMEM;
	}
	for (size_t i = 0; i < old.cap; i++)
		if (old.word[i])
			table_add(t, old.word[i], old.len[i], old.hash[i],
				  old.count[i]);
	free(old.word);
	free(old.len);
	free(old.hash);
	free(old.count);
	return 0;
}

static int table_add(table *t, const char *w, uint32_t len, uint64_t h,
		     size_t by)
{
	size_t mask = t->cap - 1, i = h & mask;
	while (t->word[i]) {
		if (t->hash[i] == h && t->len[i] == len &&
		    memcmp(t->word[i], w, len) == 0) {
			t->count[i] += by;
			return 0;
		}
		i = (i + 1) & mask;
	}
	t->word[i] = w;
	t->len[i] = len;
	t->hash[i] = h;
	t->count[i] = by;
	if (++t->n * 2 > t->cap)
		return table_grow(t);
	return 0;
}

/* Finds `w` in `t`: its count, or 0. */
static size_t table_count(const table *t, const char *w, uint32_t len,
			  uint64_t h)
{
	size_t mask = t->cap - 1, i = h & mask;
	for (; t->word[i]; i = (i + 1) & mask)
		if (t->hash[i] == h && t->len[i] == len &&
		    memcmp(t->word[i], w, len) == 0)
			return t->count[i];
	return 0;
}

/*
 * The per-word work, shared by the flow and the plain loop: splits
 * [p, end) into words of letters and digits, lowercases them and
 * NUL-terminates them in place, hashes them (FNV-1a) as it goes and counts
 * them in `t`.
 */
static int count_words(table *t, char *p, char *end)
{
	int r = 0;
	while (p < end && !r) {
		while (p < end && !isalnum((unsigned char)*p))
			*p++ = '\0';
		if (p == end)
			break;
		char *w = p;
		uint64_t h = 1469598103934665603ULL;
		for (; p < end && isalnum((unsigned char)*p); p++) {
			*p = (char)tolower((unsigned char)*p);
			h = (h ^ (unsigned char)*p) * 1099511628211ULL;
		}
		uint32_t len = (uint32_t)(p - w);
		if (p < end)
			*p++ = '\0';
		r = table_add(t, w, len, h, 1);
	}
	return r;
}

/* The whole text, cut into chunks as the source asks for them. */
typedef struct chunk {
	char *p, *end;
} chunk;

typedef struct corpus {
	char *text;
	size_t len, pos;
	chunk *chunks; /* len / CHUNK + 1 of them, handed out in order */
	size_t nchunks;
} corpus;

/* The source's generator: the next chunks, each ending just after a
 * separator so that no word is cut in two. */
static long next_chunk(void *arg, void **out, size_t max)
{
	corpus *c = arg;
	size_t k = 0;
	while (k < max && c->pos < c->len) {
		size_t end = c->pos + CHUNK < c->len ? c->pos + CHUNK : c->len;
		while (end < c->len && isalnum((unsigned char)c->text[end]))
			end++;
		if (end < c->len)
			end++;
		chunk *ch = &c->chunks[c->nchunks++];
		ch->p = c->text + c->pos;
		ch->end = c->text + end;
		c->pos = end;
		out[k++] = ch;
	}
	return (long)k;
}

/* Flow callbacks. The chunks belong to the corpus, so a chunk event needs
 * no freeing; tables are freed by table_free. */
static void *acc_new(void *arg)
{
	(void)arg;
	return table_new();
}

static int count_chunk(void *arg, void **acc, void *event)
{
	(void)arg;
	chunk *ch = event;
	return *acc ? count_words(*acc, ch->p, ch->end) : GS_ENOMEM;
}

/* The merge: the first table becomes the accumulator, the others are
 * added into it and freed. */
static int merge_tables(void *arg, void **acc, void *event)
{
	(void)arg;
	table *in = event;
	if (!*acc) {
		*acc = in;
		return 0;
	}
	int r = 0;
	for (size_t i = 0; i < in->cap && !r; i++)
		if (in->word[i])
			r = table_add(*acc, in->word[i], in->len[i],
				      in->hash[i], in->count[i]);
	table_free(NULL, in);
	return r;
}

gs_err wc_count_flow(char *text, size_t len, size_t stages, table **out,
		     char *why, size_t whylen)
{
	corpus c = { .text = text, .len = len };
	c.chunks = malloc((len / CHUNK + 1) * sizeof(*c.chunks));
	if (!c.chunks)
		return GS_ENOMEM;
	gs_flow *f;
	gs_err e = gs_flow_from_fn(next_chunk, &c, NULL, &f);
	if (e) {
		free(c.chunks);
		return e;
	}
	/* A few chunks in flight per stage: enough to keep it busy, few
	 * enough that the stages finish together. */
	gs_flow_shuffle(f, &(gs_flow_partition_opts){ .stages = stages,
						      .max_demand = 4 });
	gs_flow_reduce(f, acc_new, count_chunk, NULL);
	gs_flow_acc_free(f, table_free);
	gs_flow_departition_merge(
		f,
		&(gs_flow_departition_fns){ .merge = merge_tables,
					    .acc_free = table_free },
		NULL);
	void **res;
	size_t n;
	e = gs_flow_collect(f, &res, &n);
	if (e) {
		snprintf(why, whylen, "%s", gs_flow_errmsg(f));
	} else if (n != 1) {
		for (size_t i = 0; i < n; i++)
			table_free(NULL, res[i]);
		e = GS_ESTATE;
		snprintf(why, whylen, "%zu results", n);
	} else {
		*out = res[0];
	}
	if (!e)
		free(res);
	gs_flow_free(f);
	free(c.chunks);
	return e;
}

char *wc_generate(size_t bytes, size_t *len)
{
	static const char *syl[] = { "ka", "lo", "mi", "ne", "su", "ta",
				     "ri", "po", "de", "va", "xu", "zo" };
	char *text = malloc(bytes + 64);
	if (!text)
		return NULL;
	uint64_t x = 42;
	size_t n = 0;
	while (n < bytes) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t r = x >> 33;
		/* Square the draw so low word numbers are frequent. */
		uint64_t id = ((r % 4096) * (r % 4096)) / 4096 + (r % 7);
		do {
			const char *s = syl[id % 12];
			text[n++] = s[0];
			text[n++] = s[1];
			id /= 12;
		} while (id);
		text[n++] = (x >> 20) % 9 ? ' ' : '\n';
	}
	*len = bytes; /* the last word may be cut short */
	return text;
}

bool wc_same(const table *a, const table *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->cap; i++)
		if (a->word[i] && table_count(b, a->word[i], a->len[i],
					      a->hash[i]) != a->count[i])
			return false;
	return true;
}

gs_err wc_count_loop(char *text, size_t len, table **out)
{
	table *t = table_new();
	if (!t || count_words(t, text, text + len)) {
		table_free(NULL, t);
		return GS_ENOMEM;
	}
	*out = t;
	return GS_OK;
}

size_t wc_words(const table *t)
{
	size_t words = 0;
	for (size_t i = 0; i < t->cap; i++)
		words += t->word[i] ? t->count[i] : 0;
	return words;
}

size_t wc_distinct(const table *t)
{
	return t->n;
}

void wc_each(const table *t,
	     void (*fn)(void *arg, const char *word, size_t count), void *arg)
{
	for (size_t i = 0; i < t->cap; i++)
		if (t->word[i])
			fn(arg, t->word[i], t->count[i]);
}

void wc_table_free(table *t)
{
	table_free(NULL, t);
}
