// SPDX-License-Identifier: MIT
/*
 * The word count behind examples/wordcount.c and gs-bench (see
 * wordcount.h), in two shapes. In both the source only cuts the text into
 * large chunks at word boundaries (a pointer each, no copy), and nothing
 * is allocated per word: words are slices of the text, lowercased and
 * NUL-terminated in place.
 *
 * WC_WORDS is Flow's textbook word count: the source hands out the chunks,
 * a flat_map splits them into words in the `stages` stages after it (in
 * parallel, as Flow's mapper stages), gs_flow_partition sends each word to
 * the counting stage its hash picks, and gs_flow_reduce counts it there.
 * It pays for every word what the loop does not: the word is hashed twice
 * more (its key, its table) and handed from a splitting to a counting
 * stage.
 *
 * WC_CHUNKS does less: gs_flow_shuffle hands the chunks by demand to the
 * counting stages, each of which splits its chunks and counts their words
 * in its own table (gs_flow_reduce). A word then appears in several
 * tables, so gs_flow_departition_merge merges them in one stage, as Flow's
 * departition does.
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

/* FNV-1a: a few instructions per byte, and good enough for a table. */
#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

/*
 * The per-word work, shared by every count: cuts the next word of
 * [*p, end), overwriting the separators before it and the one after it with
 * NULs and lowercasing it in place, and hashes it as it goes unless h is
 * NULL. Returns the word, or NULL when none is left. The byte at `end`
 * must be a separator or the NUL after the text.
 */
static inline char *cut_word(char **p, char *end, uint32_t *len, uint64_t *h)
{
	char *q = *p;
	while (q < end && !isalnum((unsigned char)*q))
		*q++ = '\0';
	if (q == end) {
		*p = q;
		return NULL;
	}
	char *w = q;
	uint64_t x = FNV_OFFSET;
	for (; q < end && isalnum((unsigned char)*q); q++) {
		*q = (char)tolower((unsigned char)*q);
		if (h)
			x = (x ^ (unsigned char)*q) * FNV_PRIME;
	}
	*len = (uint32_t)(q - w);
	if (h)
		*h = x;
	if (q < end)
		*q++ = '\0';
	*p = q;
	return w;
}

/* The hash cut_word gives, of a word it cut. */
static uint64_t word_hash(const char *w, uint32_t *len)
{
	uint64_t x = FNV_OFFSET;
	const char *q = w;
	for (; *q; q++)
		x = (x ^ (unsigned char)*q) * FNV_PRIME;
	*len = (uint32_t)(q - w);
	return x;
}

/* Counts every word of [p, end) in `t`. */
static int count_words(table *t, char *p, char *end)
{
	uint32_t len;
	uint64_t h;
	int r = 0;
	for (char *w; !r && (w = cut_word(&p, end, &len, &h));)
		r = table_add(t, w, len, h, 1);
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

/* Flow callbacks. Chunks and words belong to the corpus, so an event
 * needs no freeing; tables are freed by table_free. */
static void *acc_new(void *arg)
{
	(void)arg;
	return table_new();
}

/* WC_CHUNKS: a counting stage splits and counts a whole chunk. */
static int count_chunk(void *arg, void **acc, void *event)
{
	(void)arg;
	chunk *ch = event;
	return *acc ? count_words(*acc, ch->p, ch->end) : GS_ENOMEM;
}

/* WC_WORDS: the stages after the source split the chunks into words
 * (events that point into the text), the partition routes a word by its
 * hash (the library's string key), and the counting stage hashes it
 * again for its table: an event carries only a pointer. */
static int split_chunk(void *arg, void *event, gs_flow_out *out)
{
	(void)arg;
	chunk *ch = event;
	char *p = ch->p;
	uint32_t len;
	int r = 0;
	/* No hash here: the key and the count make their own. */
	for (char *w; !r && (w = cut_word(&p, ch->end, &len, NULL));)
		r = gs_flow_out_push(out, w);
	return r;
}

static uint64_t word_key(void *arg, const void *event)
{
	(void)arg;
	return gs_flow_hash_str(event);
}

static int count_word(void *arg, void **acc, void *event)
{
	(void)arg;
	uint32_t len;
	uint64_t h = word_hash(event, &len);
	return *acc ? table_add(*acc, event, len, h, 1) : GS_ENOMEM;
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

gs_err wc_count_flow(char *text, size_t len, wc_shape shape, size_t stages,
		     table **out, char *why, size_t whylen)
{
	text[len] = '\0';
	corpus c = { .text = text, .len = len };
	c.chunks = malloc((len / CHUNK + 1) * sizeof(*c.chunks));
	if (!c.chunks)
		return GS_ENOMEM;
	gs_flow *f;
	/* WC_WORDS splits in `stages` stages fed by the source; WC_CHUNKS
	 * adds no operation there (its split is in the counting stages). */
	gs_err e = gs_flow_from_fn(next_chunk, &c,
				   &(gs_flow_opts){ .stages = stages }, &f);
	if (e) {
		free(c.chunks);
		return e;
	}
	if (shape == WC_WORDS) {
		gs_flow_flat_map(f, split_chunk, NULL);
		gs_flow_partition(f, &(gs_flow_partition_opts){
					     .stages = stages,
					     .key = word_key,
				     });
		gs_flow_reduce(f, acc_new, count_word, NULL);
	} else {
		/* A few chunks in flight per stage: enough to keep it
		 * busy, few enough that the stages finish together. */
		gs_flow_shuffle(f, &(gs_flow_partition_opts){
					   .stages = stages,
					   .max_demand = 4,
				   });
		gs_flow_reduce(f, acc_new, count_chunk, NULL);
	}
	gs_flow_acc_free(f, table_free);
	/* One table per counting stage, merged into one (as Flow's
	 * departition would; with WC_WORDS their words are disjoint). */
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
	text[len] = '\0';
	table *t = table_new();
	if (!t || count_words(t, text, text + len)) {
		table_free(NULL, t);
		return GS_ENOMEM;
	}
	*out = t;
	return GS_OK;
}

gs_err wc_count_words_serial(char *text, size_t len, size_t parts, table **out)
{
	if (!parts)
		return GS_EINVAL;
	text[len] = '\0';
	table **t = calloc(parts, sizeof *t);
	gs_err e = t ? GS_OK : GS_ENOMEM;
	for (size_t k = 0; !e && k < parts; k++)
		if (!(t[k] = table_new()))
			e = GS_ENOMEM;
	/* A batch of words at a time, as the splitting stages hand them on
	 * (a thousand per batch, still in cache when they are counted: the
	 * cheapest hand-off there is), then what the partition and the
	 * counting stages do with each. */
	char *words[1000], *p = text;
	uint32_t wlen;
	for (size_t n = 1; !e && n;) {
		for (n = 0; n < 1000 &&
			    (words[n] = cut_word(&p, text + len, &wlen, NULL));
		     n++)
			continue;
		for (size_t i = 0; !e && i < n; i++) {
			void *acc = t[word_key(NULL, words[i]) % parts];
			e = count_word(NULL, &acc, words[i]);
		}
	}
	/* Their tables hold disjoint words: merged as the flow merges. */
	void *acc = NULL;
	for (size_t k = 0; t && k < parts; k++) {
		if (!t[k])
			continue;
		if (e)
			table_free(NULL, t[k]);
		else
			e = merge_tables(NULL, &acc, t[k]); /* takes t[k] */
	}
	free(t);
	if (e || !acc) {
		table_free(NULL, acc);
		return e ? e : GS_ENOMEM;
	}
	*out = acc;
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
