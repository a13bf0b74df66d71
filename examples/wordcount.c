// SPDX-License-Identifier: MIT
/*
 * wordcount: counts the words of a text with a flow and prints the 20 most
 * frequent. It shows gs_flow_from_fn feeding chunks of text by demand,
 * gs_flow_flat_map splitting them into words (fused into the source
 * stage), gs_flow_partition routing each word to one stage by its hash,
 * and gs_flow_reduce counting in a per-partition hash table. To be fast it
 * allocates nothing per word: words are slices of the text, NUL-terminated
 * in place, and the flat_map emits one batch of words per partition and
 * chunk (with their hashes), so the stages exchange a few large events
 * rather than millions of small ones. It then counts again with a plain
 * loop, checks that both agree and prints both times.
 *
 *   build/examples/wordcount [FILE | -g MB] [STAGES]
 *
 * Without FILE it generates a deterministic corpus of MB megabytes
 * (default 8). STAGES is the number of partition stages (default 2).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <genstage/flow.h>

#define CHUNK (64 * 1024)

/* The whole text, and the chunks the generator hands out. */
typedef struct corpus {
	char *text;
	size_t len, pos;
} corpus;

typedef struct chunk {
	char *p;
	size_t len;
} chunk;

static uint64_t hash_word(const char *w)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *w; w++)
		h = (h ^ (unsigned char)*w) * 1099511628211ULL;
	return h;
}

/* A counting table keyed by words that live in the text. */
typedef struct table {
	const char **word;
	uint64_t *hash;
	size_t *count;
	size_t n, cap;
} table;

static table *table_new(void *arg)
{
	(void)arg;
	table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cap = 1 << 12;
	t->word = calloc(t->cap, sizeof(*t->word));
	t->hash = calloc(t->cap, sizeof(*t->hash));
	t->count = calloc(t->cap, sizeof(*t->count));
	return t;
}

static void table_free(void *arg, void *acc)
{
	(void)arg;
	table *t = acc;
	free(t->word);
	free(t->hash);
	free(t->count);
	free(t);
}

static int table_add(table *t, const char *w, uint64_t h, size_t by);

static int table_grow(table *t)
{
	table old = *t;
	t->cap *= 2;
	t->n = 0;
	t->word = calloc(t->cap, sizeof(*t->word));
	t->hash = calloc(t->cap, sizeof(*t->hash));
	t->count = calloc(t->cap, sizeof(*t->count));
	if (!t->word || !t->hash || !t->count)
		return GS_ENOMEM;
	for (size_t i = 0; i < old.cap; i++)
		if (old.word[i])
			table_add(t, old.word[i], old.hash[i], old.count[i]);
	free(old.word);
	free(old.hash);
	free(old.count);
	return 0;
}

static int table_add(table *t, const char *w, uint64_t h, size_t by)
{
	size_t mask = t->cap - 1, i = h & mask;
	while (t->word[i]) {
		if (t->hash[i] == h && strcmp(t->word[i], w) == 0) {
			t->count[i] += by;
			return 0;
		}
		i = (i + 1) & mask;
	}
	t->word[i] = w;
	t->hash[i] = h;
	t->count[i] = by;
	if (++t->n * 2 > t->cap)
		return table_grow(t);
	return 0;
}

/* The words of one chunk that belong to one partition. */
typedef struct batch {
	size_t part, n, cap;
	const char **word;
	uint64_t *hash;
} batch;

static void batch_free(batch *b)
{
	free(b->word);
	free(b->hash);
	free(b);
}

static int batch_add(batch *b, const char *w, uint64_t h)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		const char **nw = realloc(b->word, cap * sizeof(*nw));
		if (nw)
			b->word = nw;
		uint64_t *nh = nw ? realloc(b->hash, cap * sizeof(*nh)) : NULL;
		if (!nh)
			return GS_ENOMEM;
		b->hash = nh;
		b->cap = cap;
	}
	b->word[b->n] = w;
	b->hash[b->n++] = h;
	return 0;
}

/* Flow callbacks. */
static void *acc_new(void *arg)
{
	return table_new(arg);
}

static int count_batch(void *arg, void **acc, void *event)
{
	(void)arg;
	batch *b = event;
	int r = 0;
	for (size_t i = 0; i < b->n && !r; i++)
		r = table_add(*acc, b->word[i], b->hash[i], 1);
	batch_free(b);
	return r;
}

/* The batch says its partition: the words were routed by their hash. */
static size_t batch_partition(void *arg, const void *event)
{
	(void)arg;
	return ((const batch *)event)->part;
}

static size_t partition_of(uint64_t h, size_t stages)
{
	return (size_t)((h >> 32) % stages);
}

static long next_chunk(void *arg, void **out, size_t max)
{
	corpus *c = arg;
	size_t k = 0;
	while (k < max && c->pos < c->len) {
		chunk *ch = malloc(sizeof(*ch));
		if (!ch)
			return -GS_ENOMEM;
		size_t end = c->pos + CHUNK < c->len ? c->pos + CHUNK : c->len;
		while (end < c->len && isalnum((unsigned char)c->text[end]))
			end++;
		if (end < c->len)
			end++; /* each chunk ends with its word's separator */
		ch->p = c->text + c->pos;
		ch->len = end - c->pos;
		c->pos = end;
		out[k++] = ch;
	}
	return (long)k;
}

/* Splits a chunk into words, lowercased and NUL-terminated in place, and
 * emits them as one batch per partition. */
static int split_words(void *arg, void *event, gs_flow_out *out)
{
	size_t stages = *(const size_t *)arg;
	chunk *ch = event;
	char *p = ch->p, *end = ch->p + ch->len;
	free(ch);
	batch *b[64] = { 0 };
	int r = 0;
	for (size_t i = 0; i < stages && !r; i++)
		if (!(b[i] = calloc(1, sizeof(batch))))
			r = GS_ENOMEM;
		else
			b[i]->part = i;
	while (p < end && !r) {
		while (p < end && !isalnum((unsigned char)*p))
			*p++ = '\0';
		if (p == end)
			break;
		char *w = p;
		for (; p < end && isalnum((unsigned char)*p); p++)
			*p = (char)tolower((unsigned char)*p);
		if (p < end)
			*p++ = '\0';
		uint64_t h = hash_word(w);
		r = batch_add(b[partition_of(h, stages)], w, h);
	}
	for (size_t i = 0; i < stages; i++) {
		if (!b[i])
			continue;
		if (!r && b[i]->n && !(r = gs_flow_out_push(out, b[i])))
			continue;
		batch_free(b[i]);
	}
	return r;
}

/* The corpus: words of a fixed vocabulary with a skewed frequency. */
static char *generate(size_t bytes, size_t *len)
{
	static const char *syl[] = { "ka", "lo", "mi", "ne", "su", "ta",
				     "ri", "po", "de", "va", "xu", "zo" };
	char *text = malloc(bytes + 64);
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
	*len = n;
	return text;
}

static char *load(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return NULL;
	fseek(fp, 0, SEEK_END);
	long sz = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	char *text = malloc((size_t)sz + 1);
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

/* The plain single-threaded loop, for checking (and comparing). */
static table *count_plain(char *text, size_t len)
{
	table *t = table_new(NULL);
	char *p = text, *end = text + len;
	while (p < end) {
		while (p < end && !isalnum((unsigned char)*p))
			*p++ = '\0';
		if (p == end)
			break;
		char *w = p;
		for (; p < end && isalnum((unsigned char)*p); p++)
			*p = (char)tolower((unsigned char)*p);
		if (p < end)
			*p++ = '\0';
		table_add(t, w, hash_word(w), 1);
	}
	return t;
}

typedef struct top {
	const char *word;
	size_t count;
} top;

static void top_add(top *best, size_t n, const char *w, size_t c)
{
	if (c < best[n - 1].count ||
	    (c == best[n - 1].count && best[n - 1].word &&
	     strcmp(w, best[n - 1].word) > 0))
		return;
	size_t i = n - 1;
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
	size_t len, mb = 8, stages = 2;
	const char *path = NULL;
	int a = 1;
	if (a < argc && strcmp(argv[a], "-g") == 0 && a + 1 < argc) {
		mb = strtoul(argv[a + 1], NULL, 10);
		a += 2;
	} else if (a < argc) {
		path = argv[a++];
	}
	if (a < argc)
		stages = strtoul(argv[a], NULL, 10);
	if (stages < 1 || stages > 64) {
		fprintf(stderr, "wordcount: 1 to 64 stages\n");
		return 1;
	}
	char *text = path ? load(path, &len) : generate(mb << 20, &len);
	if (!text) {
		fprintf(stderr, "wordcount: cannot read %s\n", path);
		return 1;
	}
	char *copy = malloc(len);
	memcpy(copy, text, len);

	double t0 = now();
	corpus c = { text, len, 0 };
	gs_flow *f;
	gs_flow_from_fn(next_chunk, &c, NULL, &f);
	gs_flow_flat_map(f, split_words, &stages);
	gs_flow_partition(f,
			  &(gs_flow_partition_opts){ .stages = stages,
						     .hash = batch_partition });
	gs_flow_reduce(f, acc_new, count_batch, NULL);
	gs_flow_acc_free(f, table_free);
	void **tables;
	size_t nt;
	gs_err e = gs_flow_collect(f, &tables, &nt);
	if (e) {
		fprintf(stderr, "wordcount: %s (%s)\n", gs_strerror(e),
			gs_flow_errmsg(f));
		return 1;
	}
	double t1 = now();

	top best[20] = { { 0 } };
	size_t words = 0, distinct = 0;
	for (size_t i = 0; i < nt; i++) {
		table *t = tables[i];
		distinct += t->n;
		for (size_t j = 0; j < t->cap; j++)
			if (t->word[j]) {
				words += t->count[j];
				top_add(best, 20, t->word[j], t->count[j]);
			}
	}
	double t2 = now();
	table *plain = count_plain(copy, len);
	double t3 = now();

	printf("%zu words, %zu distinct, %zu partition stages\n", words,
	       distinct, stages);
	for (size_t i = 0; i < 20 && best[i].word; i++)
		printf("%8zu %s\n", best[i].count, best[i].word);
	printf("flow %.3f s, plain loop %.3f s (%.2fx)\n", t1 - t0, t3 - t2,
	       (t3 - t2) / (t1 - t0));

	/* Check: same distinct words and every count equal. */
	int bad = plain->n != distinct;
	for (size_t i = 0; i < nt && !bad; i++) {
		table *t = tables[i];
		for (size_t j = 0; j < t->cap && !bad; j++) {
			if (!t->word[j])
				continue;
			uint64_t h = t->hash[j];
			size_t k = h & (plain->cap - 1);
			while (plain->word[k] &&
			       strcmp(plain->word[k], t->word[j]))
				k = (k + 1) & (plain->cap - 1);
			bad = !plain->word[k] || plain->count[k] != t->count[j];
		}
	}
	if (bad)
		fprintf(stderr,
			"wordcount: the flow and the loop disagree (%zu/%zu "
			"distinct)\n",
			distinct, plain->n);
	for (size_t i = 0; i < nt; i++)
		table_free(NULL, tables[i]);
	free(tables);
	table_free(NULL, plain);
	gs_flow_free(f);
	free(text);
	free(copy);
	return bad;
}
