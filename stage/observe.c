// SPDX-License-Identifier: MIT
/*
 * What a pipeline shows of itself: the graph in Graphviz dot syntax with
 * live counts, and, for a pipeline that has not finished, what each
 * unfinished stage waits for (logged when gs_pipeline_wait_for gives up,
 * and written into the graph), so that a pipeline that can never finish
 * says why instead of hanging in silence.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "reap.h"

/* Appends to a fixed buffer, truncating. */
typedef struct text {
	char *buf;
	size_t cap, len;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt,
						      ...)
{
	if (t->len >= t->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n;
}

/* The names of the producers `s` still has live subscriptions to. Under
 * the pipeline lock. */
static void put_producers(text *t, const gs_stage *s)
{
	const char *sep = "";
	for (gs_sub *sub = s->up; sub; sub = sub->up.next) {
		put(t, "%s'%s'", sep, sub->producer->name);
		sep = ", ";
	}
}

static bool has_consumers(const gs_stage *s)
{
	return s->down != NULL;
}

/*
 * One line on why `s` has not finished, from what other threads may read:
 * its counters and the graph. Under the pipeline lock.
 */
static void describe(gs_stage *s, text *t)
{
	if (!s->started) {
		put(t, "not started");
		return;
	}
	gs_stats st;
	gs_stage_stats(s, &st);
	uint32_t ins = atomic_load_explicit(&s->st_ins, memory_order_relaxed);
	bool done = atomic_load_explicit(&s->st_done, memory_order_relaxed);
	if (s->kind != GS_PRODUCER && !done) {
		if (ins) {
			put(t, "waits for its producers to finish: ");
			put_producers(t, s);
		} else {
			put(t, "consumes but has no subscription: nothing "
			       "will finish it (subscribe it, or stop the "
			       "pipeline)");
		}
		return;
	}
	if (s->kind == GS_CONSUMER)
		return;
	if (done && !has_consumers(s)) {
		put(t,
		    "is done but holds %llu events and has no subscriber "
		    "to deliver them to",
		    (unsigned long long)st.buffered);
	} else if (done) {
		put(t, "is done, delivering %llu buffered events",
		    (unsigned long long)st.buffered);
		if (s->dconf.kind == GS_DISPATCH_PARTITION)
			put(t, " (those of a partition nobody subscribed to "
			       "wait for its subscriber; a drain drops them)");
	} else if (!has_consumers(s)) {
		put(t, "has no subscriber, and produces only on demand");
	} else {
		put(t,
		    "produces (pending demand %llu); it finishes when it "
		    "calls gs_done or every consumer has stopped",
		    (unsigned long long)st.pending_demand);
	}
	if (s->hooks.tag == GS__PUSH && !done)
		put(t, gs__push_closed(s)
			       ? "; a push producer, closed: it ends once its "
				 "queue is delivered"
			       : "; a push producer: gs_push_close ends it");
}

void gs__log_unfinished(gs_pipeline *p)
{
	gs_stage *reap = NULL; /* claimed as they were unpinned, to free */
	pthread_mutex_lock(&p->lock);
	for (gs_stage *s = p->stages, *next; s; s = next) {
		next = s->next;
		if (s->finished)
			continue;
		char buf[200];
		text t = { buf, sizeof buf, 0 };
		buf[0] = '\0';
		describe(s, &t);
		/* The log hook may call into the pipeline, whose lock is not
		 * recursive (a hook that wrote the graph hung): it is called
		 * unlocked, the stage pinned as a subscription pins it
		 * (reap.h), so it and its place in the list stay. */
		s->refs++;
		pthread_mutex_unlock(&p->lock);
		gs__log(s, GS_LOG_WARN, "unfinished: %s", buf);
		pthread_mutex_lock(&p->lock);
		s->refs--;
		next = s->next;
		if (gs__reap_claim(s)) {
			s->next = reap; /* off the list now */
			reap = s;
		}
	}
	pthread_mutex_unlock(&p->lock);
	for (gs_stage *s = reap, *next; s; s = next) {
		next = s->next;
		gs__reap(s, false);
	}
}

/* Stage names are the user's: quote what dot would read as syntax. */
static void write_quoted(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
}

static void write_graph(gs_pipeline *p, FILE *f)
{
	static const char *const shapes[] = {
		[GS_PRODUCER] = "invhouse",
		[GS_PRODUCER_CONSUMER] = "box",
		[GS_CONSUMER] = "house",
	};
	fprintf(f, "digraph genstage {\n\trankdir=LR;\n");
	for (gs_stage *s = p->stages; s; s = s->next) {
		gs_stats st;
		gs_stage_stats(s, &st);
		fprintf(f, "\t\"%p\" [shape=%s, label=\"", (void *)s,
			shapes[s->kind]);
		write_quoted(f, s->name);
		fprintf(f,
			"\\nin %llu  out %llu\\nbuffered %llu  dropped "
			"%llu",
			(unsigned long long)st.events_in,
			(unsigned long long)st.events_out,
			(unsigned long long)st.buffered,
			(unsigned long long)st.dropped);
		if (p->started && !s->finished) {
			char buf[200];
			text t = { buf, sizeof buf, 0 };
			buf[0] = '\0';
			describe(s, &t);
			fputs("\\n", f);
			write_quoted(f, buf);
		}
		fprintf(f, "\"%s];\n", s->finished ? ", style=dashed" : "");
	}
	/* Ended subscriptions whose handle is still held stay, dashed. */
	for (gs_sub *sub = p->subs; sub; sub = sub->all.next)
		fprintf(f,
			"\t\"%p\" -> \"%p\" [label=\"max %zu min %zu\"%s];\n",
			(void *)sub->producer, (void *)sub->consumer,
			sub->max_demand, sub->min_demand,
			sub->live ? "" : ", style=dashed");
	fprintf(f, "}\n");
}

/* The graph is drawn into memory under the pipeline lock, and written to
 * the caller's FILE after it, so a slow or blocked stream holds up no
 * stage. */
GS__API gs_err gs_pipeline_write_dot(gs_pipeline *p, FILE *f)
{
	if (!p || !f)
		return GS_EINVAL;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	if (!mem)
		return GS_ENOMEM;
	pthread_mutex_lock(&p->lock);
	write_graph(p, mem);
	pthread_mutex_unlock(&p->lock);
	bool drawn = !ferror(mem);
	if (fclose(mem) || !drawn) {
		free(buf);
		return GS_ENOMEM;
	}
	bool written = fwrite(buf, 1, len, f) == len && fflush(f) == 0;
	free(buf);
	return written ? GS_OK : GS_EIO;
}
