// SPDX-License-Identifier: MIT
/*
 * wordcount: counts the words of a text with a flow and prints the 20 most
 * frequent. The work runs where it can run in parallel: the source only
 * cuts the text into large chunks at word boundaries (a pointer each, no
 * copy); gs_flow_shuffle hands the chunks by demand to STAGES stages, each
 * of which splits its chunks into words, hashes and counts them in its own
 * table (gs_flow_reduce); gs_flow_departition then funnels the STAGES
 * tables into one stage whose reduce merges them. Nothing is allocated per
 * word: words are slices of the text, lowercased and NUL-terminated in
 * place. It then counts again with a plain single-threaded loop over the
 * same code, checks that both agree and prints both times.
 *
 *   build/examples/wordcount [FILE | -g MB] [STAGES] [ROUNDS]
 *
 * Without FILE it generates a deterministic corpus of MB megabytes
 * (default 8). STAGES is the number of counting stages (default 2). With
 * ROUNDS (default 1) it times that many runs of each and prints the best.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <genstage/flow.h>

/* Chunks this large make the per-chunk cost (an event, a wake-up) vanish
 * next to the per-word work, and still split the text into hundreds. */
#define CHUNK (256 * 1024)

/* A counting table keyed by words that live in the text. */
typedef struct table {
	const char **word;
	uint32_t *len;
	uint64_t *hash;
	size_t *count;
	size_t n, cap;
} table;

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

/* Counts text[0..len) with a flow of `stages` counting stages. */
static gs_err count_flow(char *text, size_t len, size_t stages, table **out,
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
	gs_flow_departition(f, NULL);
	gs_flow_reduce(f, NULL, merge_tables, NULL);
	gs_flow_acc_free(f, table_free);
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

/* The corpus: words of a fixed vocabulary with a skewed frequency. */
static char *generate(size_t bytes, size_t *len)
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

/* Whether both tables hold the same words with the same counts. */
static int same_counts(const table *a, const table *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->cap; i++)
		if (a->word[i] && table_count(b, a->word[i], a->len[i],
					      a->hash[i]) != a->count[i])
			return 0;
	return 1;
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
	char *orig = path ? load(path, &len) : generate(mb << 20, &len);
	if (!orig) {
		fprintf(stderr, "wordcount: cannot read %s\n",
			path ? path : "(out of memory)");
		return 1;
	}
	/* Both counts lowercase and cut their text in place: each round
	 * works on fresh copies, made before the clock starts. */
	char *ftext = malloc(len), *ptext = malloc(len);
	table *flow = NULL, *plain = NULL;
	double tflow = 0, tplain = 0;
	int bad = !ftext || !ptext;
	for (size_t r = 0; r < rounds && !bad; r++) {
		char why[256] = "";
		table_free(NULL, flow);
		table_free(NULL, plain);
		flow = plain = NULL;
		memcpy(ftext, orig, len);
		memcpy(ptext, orig, len);
		double t0 = now();
		gs_err e = count_flow(ftext, len, stages, &flow, why,
				      sizeof(why));
		double t1 = now();
		plain = table_new();
		if (!e && (!plain || count_words(plain, ptext, ptext + len)))
			e = GS_ENOMEM;
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
		top best[20] = { { 0 } };
		size_t words = 0;
		for (size_t j = 0; j < flow->cap; j++)
			if (flow->word[j]) {
				words += flow->count[j];
				top_add(best, 20, flow->word[j],
					flow->count[j]);
			}
		printf("%zu words, %zu distinct, %zu MB, %zu counting "
		       "stages\n",
		       words, flow->n, len >> 20, stages);
		for (size_t i = 0; i < 20 && best[i].word; i++)
			printf("%8zu %s\n", best[i].count, best[i].word);
		printf("flow %.3f s, plain loop %.3f s: the flow is %.2fx "
		       "the loop's speed\n",
		       tflow, tplain, tplain / tflow);
		bad = !same_counts(flow, plain);
		if (bad)
			fprintf(stderr, "wordcount: the flow and the loop "
					"disagree\n");
	}
	table_free(NULL, flow);
	table_free(NULL, plain);
	free(orig);
	free(ftext);
	free(ptext);
	return bad;
}
