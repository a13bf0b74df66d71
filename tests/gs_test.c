// SPDX-License-Identifier: MIT
/* The stages, tally and helpers the suites share (see gs_test.h). */
#include "gs_test.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Events per gs_emit from the test stages. */
#define EMIT_CHUNK 256

static void add(_Atomic uint64_t *v, uint64_t n)
{
	atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

static void raise_max(_Atomic uint64_t *v, uint64_t n)
{
	uint64_t cur = atomic_load_explicit(v, memory_order_relaxed);
	while (n > cur &&
	       !atomic_compare_exchange_weak_explicit(
		       v, &cur, n, memory_order_relaxed, memory_order_relaxed))
		;
}

void tally_init(tally *t, size_t n)
{
	*t = (tally){ .n = n };
	t->seen = calloc(n ? n : 1, sizeof *t->seen);
	t->freed = calloc(n ? n : 1, sizeof *t->freed);
	cr_assert(t->seen && t->freed, "out of memory for a tally of %zu", n);
}

void tally_fini(tally *t)
{
	free((void *)t->seen);
	free((void *)t->freed);
	t->seen = t->freed = NULL;
}

void tally_free(void *event, void *arg)
{
	tally *t = arg;
	uintptr_t v = GS_VAL(event);
	if (v >= t->n) {
		add(&t->out_of_range, 1);
		return;
	}
	atomic_fetch_add_explicit(&t->freed[v], 1, memory_order_relaxed);
	add(&t->freed_count, 1);
}

static void tally_seen(tally *t, uintptr_t v)
{
	if (v >= t->n) {
		add(&t->out_of_range, 1);
		return;
	}
	atomic_fetch_add_explicit(&t->seen[v], 1, memory_order_relaxed);
	add(&t->delivered, 1);
}

void tally_check(const tally *t, uint64_t produced, bool all)
{
	cr_assert_eq(atomic_load(&t->out_of_range), 0,
		     "%llu events outside [0, %zu)",
		     (unsigned long long)atomic_load(&t->out_of_range), t->n);
	size_t twice = 0, missing = 0, first_bad = SIZE_MAX;
	for (size_t i = 0; i < t->n; i++) {
		unsigned k = atomic_load(&t->seen[i]) +
			     atomic_load(&t->freed[i]);
		if (k > 1)
			twice++;
		if (k == 0 && all && i < produced)
			missing++;
		if ((k > 1 || (k == 0 && all && i < produced)) &&
		    first_bad == SIZE_MAX)
			first_bad = i;
	}
	cr_assert_eq(twice, 0,
		     "%zu events delivered or freed more than once (first %zu)",
		     twice, first_bad);
	cr_assert_eq(missing, 0,
		     "%zu events neither delivered nor freed "
		     "(first %zu)",
		     missing, first_bad);
	uint64_t d = atomic_load(&t->delivered);
	uint64_t f = atomic_load(&t->freed_count);
	cr_assert_eq(d + f, produced,
		     "produced %llu != delivered %llu + freed %llu",
		     (unsigned long long)produced, (unsigned long long)d,
		     (unsigned long long)f);
}

void tally_check_range(const tally *t, size_t lo, size_t hi)
{
	cr_assert_leq(hi, t->n);
	for (size_t i = lo; i < hi; i++)
		cr_assert_eq(atomic_load(&t->seen[i]) +
				     atomic_load(&t->freed[i]),
			     1, "event %zu delivered %d and freed %d times", i,
			     (int)atomic_load(&t->seen[i]),
			     (int)atomic_load(&t->freed[i]));
}

/* --- seq_producer ------------------------------------------------------ */

static int seq_init(void *state, gs_stage *stage)
{
	seq_producer *sp = state;
	if (sp->fail_init)
		return sp->fail_code;
	if (sp->done_in_init) {
		sp->is_done = true;
		if (gs_done(stage))
			add(&sp->emit_errors, 1);
	}
	return GS_OK;
}

/* Emits up to `want` more events of the sequence; false once it ended. */
static bool seq_emit(seq_producer *sp, gs_stage *stage, uint64_t want)
{
	void *chunk[EMIT_CHUNK];
	while (want && sp->next < sp->total) {
		size_t k = want < EMIT_CHUNK ? (size_t)want : EMIT_CHUNK;
		if (k > sp->total - sp->next)
			k = sp->total - sp->next;
		for (size_t i = 0; i < k; i++)
			chunk[i] = GS_EV(sp->first + sp->next + i);
		if (gs_emit(stage, chunk, k)) {
			add(&sp->emit_errors, 1);
			return false;
		}
		sp->next += k;
		add(&sp->emitted, k);
		want -= k;
	}
	return sp->next < sp->total;
}

static int seq_demand(void *state, gs_stage *stage, size_t demand)
{
	seq_producer *sp = state;
	uint64_t call = atomic_fetch_add(&sp->calls, 1) + 1;
	if (sp->is_done)
		add(&sp->calls_after_done, 1);
	if (call == 1)
		atomic_store(&sp->first_demand, demand);
	uint64_t total = atomic_fetch_add(&sp->demanded, demand) + demand;
	if (sp->consumed && total > atomic_load(sp->consumed) + sp->slack)
		add(&sp->over_demand, 1);
	uint64_t want = (uint64_t)demand + sp->extra +
			(call == 1 ? sp->extra_first : 0);
	if (!sp->is_done && !seq_emit(sp, stage, want)) {
		sp->is_done = true;
		if (gs_done(stage))
			add(&sp->emit_errors, 1);
	}
	if (sp->fail_at && call == sp->fail_at)
		return sp->fail_code;
	return GS_OK;
}

static int seq_cancel(void *state, gs_stage *stage, gs_sub *sub, gs_role role,
		      int reason)
{
	seq_producer *sp = state;
	(void)sub;
	(void)role;
	atomic_store(&sp->cancel_reason, reason);
	atomic_fetch_add(&sp->cancels, 1);
	if (sp->done_on_cancel) {
		sp->is_done = true;
		if (gs_done(stage))
			add(&sp->emit_errors, 1);
	}
	return GS_OK;
}

static void seq_terminate(void *state, gs_stage *stage, int reason)
{
	seq_producer *sp = state;
	(void)stage;
	atomic_store(&sp->reason, reason);
	atomic_fetch_add(&sp->terminated, 1);
}

const gs_stage_ops seq_producer_ops = {
	.init = seq_init,
	.handle_demand = seq_demand,
	.handle_cancel = seq_cancel,
	.handle_call = sync_call,
	.terminate = seq_terminate,
};

/* --- recorder ---------------------------------------------------------- */

static rec_sub *find_sub(recorder *r, gs_sub *sub)
{
	for (size_t i = 0; i < r->n_subs; i++)
		if (r->subs[i].sub == sub)
			return &r->subs[i];
	return NULL;
}

gs_sub *recorder_subscribe(recorder *r, gs_stage *consumer, gs_stage *producer,
			   const gs_sub_opts *opts)
{
	gs_sub_opts o = opts ? *opts : (gs_sub_opts){ 0 };
	gs_sub *sub = NULL;
	GS_OK_OR_DIE(gs_subscribe(consumer, producer, &o, &sub));
	cr_assert_not_null(sub);
	cr_assert_lt(r->n_subs, GS_TEST_SUBS, "too many subscriptions");
	size_t max = o.max_demand ? o.max_demand : 1000;
	size_t min = o.min_demand == GS_MIN_DEMAND_ZERO ? 0
		     : o.min_demand                     ? o.min_demand
							: max / 2;
	r->subs[r->n_subs++] = (rec_sub){
		.sub = sub,
		.max = max,
		.min = min,
		.manual = o.manual,
		.asked = o.manual ? 0 : max,
		.outstanding = o.manual ? 0 : max,
	};
	return sub;
}

/* Appends to a keeping recorder's values; false when out of memory. */
static bool keep_values(recorder *r, void *const *events, size_t n)
{
	if (r->n + n > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		while (cap < r->n + n)
			cap *= 2;
		uintptr_t *v = realloc(r->vals, cap * sizeof *v);
		if (!v)
			return false;
		r->vals = v;
		r->cap = cap;
	}
	for (size_t i = 0; i < n; i++)
		r->vals[r->n++] = GS_VAL(events[i]);
	return true;
}

int recorder_take(recorder *r, gs_sub *from, void **events, size_t n)
{
	if (r->keep && !keep_values(r, events, n))
		return GS_ENOMEM;
	if (atomic_load_explicit(&r->terminated, memory_order_relaxed))
		add(&r->after_stop, 1);
	if (n == 0)
		add(&r->empty_chunks, 1);
	add(&r->chunks, 1);
	raise_max(&r->max_chunk, n);
	rec_sub *rs = find_sub(r, from);
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		uintptr_t v = GS_VAL(events[i]);
		sum += v;
		if (r->tally)
			tally_seen(r->tally, v);
		if (rs && r->check_order) {
			if (rs->any && v <= rs->last)
				add(&r->order_errors, 1);
			rs->last = v;
			rs->any = true;
		}
	}
	if (rs && !rs->manual) {
		if (n > rs->max - rs->min)
			add(&r->chunk_errors, 1);
		if (rs->received + n > rs->asked)
			add(&r->demand_errors, 1);
		/* The batch rule, as the consumer applies it after the
		 * chunk. */
		rs->received += n;
		rs->outstanding -= n < rs->outstanding ? n : rs->outstanding;
		if (rs->outstanding <= rs->min) {
			rs->asked += rs->max - rs->outstanding;
			rs->outstanding = rs->max;
		}
	} else if (!rs) {
		add(&r->untracked, n);
	}
	add(&r->sum, sum);
	/* Last, so that a producer reading `received` after seeing the
	 * resulting demand reads at least this. */
	uint64_t got = atomic_fetch_add(&r->received, n) + n;
	if (r->also_received)
		add(r->also_received, n);
	if (r->fail_after && got >= r->fail_after)
		return r->fail_code;
	return GS_OK;
}

static int rec_events(void *state, gs_stage *stage, gs_sub *from, void **events,
		      size_t n)
{
	(void)stage;
	return recorder_take(state, from, events, n);
}

static int rec_subscribe(void *state, gs_stage *stage, gs_sub *sub,
			 gs_role role)
{
	recorder *r = state;
	(void)stage;
	(void)sub;
	(void)role;
	atomic_fetch_add(&r->subscribes, 1);
	return GS_OK;
}

static int rec_cancel(void *state, gs_stage *stage, gs_sub *sub, gs_role role,
		      int reason)
{
	recorder *r = state;
	(void)stage;
	(void)sub;
	(void)role;
	atomic_store(&r->cancel_reason, reason);
	if (reason == GS_OK)
		atomic_fetch_add(&r->cancels_ok, 1);
	atomic_fetch_add(&r->cancels, 1);
	return r->cancel_ret;
}

static void rec_terminate(void *state, gs_stage *stage, int reason)
{
	recorder *r = state;
	(void)stage;
	atomic_store(&r->reason, reason);
	atomic_fetch_add(&r->terminated, 1);
}

const gs_stage_ops recorder_ops = {
	.handle_events = rec_events,
	.handle_subscribe = rec_subscribe,
	.handle_cancel = rec_cancel,
	.handle_call = sync_call,
	.terminate = rec_terminate,
};

void recorder_fini(recorder *r)
{
	free(r->vals);
	r->vals = NULL;
	r->n = r->cap = 0;
}

void check_exactly_once(const recorder *r, size_t k, size_t n)
{
	unsigned char *seen = calloc(n ? n : 1, 1);
	cr_assert_not_null(seen);
	size_t total = 0;
	for (size_t i = 0; i < k; i++) {
		cr_assert(r[i].keep, "recorder %zu keeps no values", i);
		for (size_t j = 0; j < r[i].n; j++) {
			uintptr_t v = r[i].vals[j];
			cr_assert_lt(v, n, "recorder %zu: %zu out of range", i,
				     (size_t)v);
			cr_assert_eq(seen[v], 0, "seen twice: %zu", (size_t)v);
			seen[v] = 1;
			if (j)
				cr_assert_gt(v, r[i].vals[j - 1],
					     "recorder %zu: out of order", i);
		}
		total += r[i].n;
	}
	cr_assert_eq(total, n, "%zu of %zu values", total, n);
	free(seen);
}

/* --- mapper ------------------------------------------------------------ */

static int map_events(void *state, gs_stage *stage, gs_sub *from, void **events,
		      size_t n)
{
	mapper *m = state;
	int r = recorder_take(&m->rec, from, events, n);
	unsigned copies = m->copies ? m->copies : 1;
	void *chunk[EMIT_CHUNK];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		for (unsigned c = 0; c < copies; c++) {
			chunk[k++] = GS_EV(GS_VAL(events[i]) + m->add);
			if (k == EMIT_CHUNK) {
				if (gs_emit(stage, chunk, k))
					add(&m->emit_errors, 1);
				add(&m->emitted, k);
				k = 0;
			}
		}
	}
	if (k) {
		if (gs_emit(stage, chunk, k))
			add(&m->emit_errors, 1);
		add(&m->emitted, k);
	}
	return r;
}

const gs_stage_ops mapper_ops = {
	.handle_events = map_events,
	.handle_subscribe = rec_subscribe,
	.handle_cancel = rec_cancel,
	.handle_call = sync_call,
	.terminate = rec_terminate,
};

/* --- holder ------------------------------------------------------------ */

static int hold_events(void *state, gs_stage *stage, gs_sub *from,
		       void **events, size_t n)
{
	holder *h = state;
	(void)stage;
	atomic_fetch_add(&h->entered, 1);
	wait_int_at_least(&h->open, 1);
	return recorder_take(&h->rec, from, events, n);
}

const gs_stage_ops holder_ops = {
	.handle_events = hold_events,
	.handle_subscribe = rec_subscribe,
	.handle_cancel = rec_cancel,
	.terminate = rec_terminate,
};

/* --- constructors ------------------------------------------------------ */

gs_pipeline *pipeline_new(const gs_pipeline_opts *opts)
{
	gs_pipeline *p = NULL;
	GS_OK_OR_DIE(gs_pipeline_new(opts, &p));
	return p;
}

static gs_stage *stage_new(gs_pipeline *p, gs_kind kind,
			   const gs_stage_ops *ops, void *state,
			   const gs_stage_opts *opts)
{
	gs_stage *s = NULL;
	GS_OK_OR_DIE(gs_stage_new(p, kind, ops, state, opts, &s));
	return s;
}

gs_stage *seq_producer_new(gs_pipeline *p, seq_producer *sp,
			   const gs_stage_opts *opts)
{
	return stage_new(p, GS_PRODUCER, &seq_producer_ops, sp, opts);
}

gs_stage *recorder_new(gs_pipeline *p, recorder *r, const gs_stage_opts *opts)
{
	return stage_new(p, GS_CONSUMER, &recorder_ops, r, opts);
}

gs_stage *mapper_new(gs_pipeline *p, mapper *m, const gs_stage_opts *opts)
{
	return stage_new(p, GS_PRODUCER_CONSUMER, &mapper_ops, m, opts);
}

gs_stage *holder_new(gs_pipeline *p, holder *h, const gs_stage_opts *opts)
{
	gs_stage_opts o = opts ? *opts : (gs_stage_opts){ 0 };
	o.blocking = true;
	return stage_new(p, GS_CONSUMER, &holder_ops, h, &o);
}

gs_stage *tallied_push_new(gs_pipeline *p, tally *t)
{
	gs_stage *s = NULL;
	GS_OK_OR_DIE(
		gs_push_producer(p,
				 &(gs_stage_opts){ .event_free = tally_free,
						   .event_free_arg = t },
				 &s));
	return s;
}

void fill_ids(void **ev, size_t n, uintptr_t first)
{
	for (size_t i = 0; i < n; i++)
		ev[i] = GS_EV(first + i);
}

void pair_new(pair *x, size_t total, size_t tally_n)
{
	*x = (pair){ .sp = { .total = total }, .r = { .check_order = true } };
	if (tally_n) {
		tally_init(&x->t, tally_n);
		x->r.tally = &x->t;
	}
	x->p = pipeline_new(NULL);
	x->prod = seq_producer_new(x->p, &x->sp, NULL);
	x->cons = recorder_new(x->p, &x->r, NULL);
}

void pair_free(pair *x)
{
	gs_pipeline_free(x->p);
	tally_fini(&x->t);
}

gs_err start_and_wait(gs_pipeline *p)
{
	GS_OK_OR_DIE(gs_pipeline_start(p));
	return gs_pipeline_wait(p);
}

gs_err pair_run(pair *x, const gs_sub_opts *opts)
{
	recorder_subscribe(&x->r, x->cons, x->prod, opts);
	return start_and_wait(x->p);
}

/* --- helpers ----------------------------------------------------------- */

long counter_gen(void *arg, void **out, size_t max)
{
	counter *c = arg;
	size_t k = 0;
	while (k < max && (!c->end || c->next < c->end))
		out[k++] = GS_EV(c->next++);
	add(&c->produced, k);
	return (long)k;
}

gs_stage *counter_new(gs_pipeline *p, counter *c, const gs_stage_opts *opts)
{
	gs_stage *s = NULL;
	GS_OK_OR_DIE(gs_from_fn(p, counter_gen, c, opts, &s));
	return s;
}

void count_free(void *event, void *arg)
{
	(void)event;
	add(arg, 1);
}

int nop_demand(void *state, gs_stage *stage, size_t demand)
{
	(void)state;
	(void)stage;
	(void)demand;
	return GS_OK;
}

int nop_events(void *state, gs_stage *stage, gs_sub *from, void **events,
	       size_t n)
{
	(void)state;
	(void)stage;
	(void)from;
	(void)events;
	(void)n;
	return GS_OK;
}

int sync_call(void *state, gs_stage *stage, void *request, void **reply)
{
	(void)state;
	(void)stage;
	(void)request;
	*reply = NULL;
	return GS_OK;
}

void stage_sync(gs_stage *stage)
{
	void *reply;
	GS_OK_OR_DIE(gs_call(stage, NULL, &reply, -1));
}

void log_counter(void *arg, gs_log_level level, const gs_stage *stage,
		 const char *msg)
{
	log_count *lc = arg;
	(void)msg;
	if (!stage)
		atomic_fetch_add(&lc->null_stage, 1);
	if (level == GS_LOG_ERROR)
		atomic_fetch_add(&lc->error, 1);
	else
		atomic_fetch_add(&lc->warn, 1);
}

gs_pipeline *counted_pipeline_new(log_count *lc)
{
	return pipeline_new(
		&(gs_pipeline_opts){ .log = log_counter, .log_arg = lc });
}

char *dot_text(gs_pipeline *p)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	GS_OK_OR_DIE(gs_pipeline_write_dot(p, f));
	fclose(f);
	return buf;
}

void nap(void)
{
	struct timespec ts = { .tv_nsec = 100000 };
	nanosleep(&ts, NULL);
}

void wait_at_least(const _Atomic uint64_t *v, uint64_t at_least)
{
	while (atomic_load(v) < at_least)
		nap();
}

void wait_int_at_least(const _Atomic int *v, int at_least)
{
	while (atomic_load(v) < at_least)
		nap();
}

uint64_t gs_rng_next(gs_rng *r)
{
	/* splitmix64 */
	uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

size_t gs_rng_range(gs_rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)(gs_rng_next(r) % (uint64_t)(hi - lo + 1));
}

void stderr_capture_begin(stderr_capture *c)
{
	c->tmp = tmpfile();
	cr_assert_not_null(c->tmp);
	fflush(stderr);
	c->saved = dup(2);
	dup2(fileno(c->tmp), 2);
}

void stderr_capture_end(stderr_capture *c, char *buf, size_t size)
{
	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	rewind(c->tmp);
	size_t k = fread(buf, 1, size - 1, c->tmp);
	buf[k] = '\0';
	fclose(c->tmp);
}
