// SPDX-License-Identifier: MIT
/*
 * The executor: a fixed set of worker threads that run scheduled stages.
 *
 * Each worker has a "next" slot and a FIFO run queue. A stage woken by the
 * stage a worker is running goes into that worker's next slot and runs as
 * soon as the current one yields, on a warm cache and without a system
 * call (Go's and Tokio's LIFO slot); the stage it displaces moves to the
 * FIFO, where idle workers may steal it. Taking from the next slot more than
 * LIFO_STREAK times in a row gives way to the FIFO, and every GLOBAL_EVERY
 * picks a worker looks at the shared queue first, so that two stages waking
 * each other cannot starve a third. Threads that are not workers (pushers,
 * callers, timers' owners on other executors) use the shared queue.
 *
 * Stealing moves a stage away from the caches that hold its state and its
 * input, which costs more than running it in a cheap pipeline: on two
 * cores, a producer, a map and a consumer that steal from each other run
 * at less than half the speed of the same three on one worker. So a thief
 * takes a queued stage only when it would otherwise wait: when the victim
 * has a backlog (two or more queued), or when the stage has waited
 * STEAL_AGE_NS (its worker is busy with something long). Looking costs
 * too: every look reads lines the victim writes at each hand-off, so a
 * thief that found nothing waits STEAL_POLL_NS before it looks again.
 * Times are the clock each thread last read (gs__clock_seen), which the
 * callbacks' timing and the idle loop keep fresh; a stale one only makes
 * a stage look older, as stealing did before these rules.
 *
 * An idle worker spins for a short while with exponential backoff, then
 * sleeps on the executor's event count. A worker that queues work wakes a
 * sleeper only when no worker is spinning (a spinner will find it), and a
 * spinner that finds work and was the last one spinning wakes another if
 * more work is waiting, so just as many workers wake as there is work for
 * and a busy worker is never the target of a wake-up system call.
 *
 * Ordering: queue lengths, the spinning and sleeping counts and the event
 * count are sequentially consistent, so that a worker going to sleep and a
 * thread queueing work cannot both miss each other (each writes its own
 * variable, then reads the other's).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "annotate.h"
#include "backoff.h"
#include "futex.h"
#include "internal.h"
#include "struct_version.h"

#define MAX_WORKERS 1024
#define LIFO_STREAK 3
#define GLOBAL_EVERY 61
/* See the top: measured on 1-map-1, 1-4-demand and chain-1000. */
#define STEAL_AGE_NS 10000
#define STEAL_POLL_NS 10000

/* How long an idle worker looks for work before it sleeps: long enough to
 * bridge the gap between two batches of a busy pipeline, short enough that
 * an idle process burns nothing after a fraction of a millisecond. */
#ifndef GS_WORKER_SPIN_NS
#define GS_WORKER_SPIN_NS 50000
#endif

typedef struct gs__worker {
	/* Taken by the owner, and by thieves while the owner is busy. */
	_Alignas(GS__CACHELINE) _Atomic(gs_stage *) next;
	_Atomic bool busy;
	_Atomic uint64_t next_since; /* when `next` was last filled */
	/* The FIFO, under `lock`; `n` lets thieves and sleepers look
	 * without the lock. */
	_Alignas(GS__CACHELINE) pthread_mutex_t lock;
	gs_stage *head, *tail;
	_Atomic size_t n;
	/* The worker's own. */
	_Alignas(GS__CACHELINE) gs_executor *ex;
	pthread_t thread;
	size_t index;
	unsigned lifo_streak;
	uint64_t picks;
	uint64_t look_after; /* no stealing before this time */
} gs__worker;

typedef struct timer_entry {
	uint64_t deadline;
	gs_stage *s;
} timer_entry;

struct gs_executor {
	_Atomic long refs;
	bool is_default;
	size_t n;
	gs__worker *w;
	char name[11];

	/* The shared queue. */
	_Alignas(GS__CACHELINE) pthread_mutex_t glock;
	gs_stage *ghead, *gtail;
	_Atomic size_t gn;

	/* Idle workers. */
	_Alignas(GS__CACHELINE) _Atomic uint32_t idle_ec;
	_Atomic int sleeping, spinning;
	_Atomic bool shutdown;

	/* Stages waiting for a timer: a min-heap by deadline, under tlock. */
	_Alignas(GS__CACHELINE) pthread_mutex_t tlock;
	timer_entry *heap;
	size_t hn, hcap;
	_Atomic uint64_t earliest;
};

/* The worker the calling thread is, if it is one. */
static _Thread_local gs__worker *self;

static void queue_push(pthread_mutex_t *lock, gs_stage **head, gs_stage **tail,
		       _Atomic size_t *n, gs_stage *s)
{
	s->rq_next = NULL;
	s->rq_since = gs__clock_seen;
	pthread_mutex_lock(lock);
	if (*tail)
		(*tail)->rq_next = s;
	else
		*head = s;
	*tail = s;
	atomic_fetch_add(n, 1);
	pthread_mutex_unlock(lock);
}

static gs_stage *queue_pop(pthread_mutex_t *lock, gs_stage **head,
			   gs_stage **tail, _Atomic size_t *n)
{
	if (!atomic_load_explicit(n, memory_order_relaxed))
		return NULL;
	pthread_mutex_lock(lock);
	gs_stage *s = *head;
	if (s) {
		*head = s->rq_next;
		if (!*head)
			*tail = NULL;
		atomic_fetch_sub(n, 1);
	}
	pthread_mutex_unlock(lock);
	return s;
}

static void fifo_push(gs__worker *w, gs_stage *s)
{
	queue_push(&w->lock, &w->head, &w->tail, &w->n, s);
}

static gs_stage *fifo_pop(gs__worker *w)
{
	return queue_pop(&w->lock, &w->head, &w->tail, &w->n);
}

static void global_push(gs_executor *ex, gs_stage *s)
{
	queue_push(&ex->glock, &ex->ghead, &ex->gtail, &ex->gn, s);
}

static gs_stage *global_pop(gs_executor *ex)
{
	return queue_pop(&ex->glock, &ex->ghead, &ex->gtail, &ex->gn);
}

/* Is there queued work a sleeping worker should get up for? */
static bool work_waiting(gs_executor *ex)
{
	if (atomic_load(&ex->gn))
		return true;
	for (size_t i = 0; i < ex->n; i++)
		if (atomic_load(&ex->w[i].n))
			return true;
	return false;
}

static void wake_one(gs_executor *ex)
{
	atomic_fetch_add(&ex->idle_ec, 1);
	gs__futex_wake(&ex->idle_ec, 1);
}

/* After queueing work others may take. The queue's length was raised
 * with a sequentially consistent read-modify-write just before, so these
 * loads come after it in the single total order (see the top). */
static void notify(gs_executor *ex)
{
	if (!atomic_load(&ex->spinning) && atomic_load(&ex->sleeping))
		wake_one(ex);
}

static void enqueue(gs_stage *s)
{
	gs_executor *ex = s->ex;
	gs__worker *w = self;
	if (w && w->ex == ex) {
		atomic_store_explicit(&w->next_since, gs__clock_seen,
				      memory_order_relaxed);
		GS__HB(&w->next);
		gs_stage *old = atomic_exchange_explicit(&w->next, s,
							 memory_order_acq_rel);
		GS__HA(&w->next);
		if (!old)
			return;
		fifo_push(w, old);
	} else {
		global_push(ex, s);
	}
	notify(ex);
}

void gs__executor_wake(gs_stage *s)
{
	/* The read-modify-write orders what the caller wrote (events,
	 * demand, a message) before the stage's next look: see executor.h. */
	GS__HB(&s->sched);
	uint32_t prev = atomic_fetch_or_explicit(&s->sched, GS__SCHED_WOKEN,
						 memory_order_acq_rel);
	GS__HA(&s->sched);
	if (!prev)
		enqueue(s);
}

void gs__executor_start(gs_stage *s)
{
	GS__HB(&s->sched);
	atomic_store_explicit(&s->sched, GS__SCHED_WOKEN, memory_order_release);
	enqueue(s);
}

/* --- timers --------------------------------------------------------- */

/* Entries know their stage, and the stage its entry's place (ex_slot). */
static void heap_put(gs_executor *ex, size_t i, timer_entry e)
{
	ex->heap[i] = e;
	e.s->ex_slot = i + 1;
}

static void heap_swap(gs_executor *ex, size_t i, size_t j)
{
	timer_entry t = ex->heap[i];
	heap_put(ex, i, ex->heap[j]);
	heap_put(ex, j, t);
}

static void heap_up(gs_executor *ex, size_t i)
{
	while (i && ex->heap[i].deadline < ex->heap[(i - 1) / 2].deadline) {
		heap_swap(ex, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(gs_executor *ex, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < ex->hn && ex->heap[l].deadline < ex->heap[m].deadline)
			m = l;
		if (r < ex->hn && ex->heap[r].deadline < ex->heap[m].deadline)
			m = r;
		if (m == i)
			return;
		heap_swap(ex, i, m);
		i = m;
	}
}

/* Takes entry i out; its stage has none after. */
static void heap_remove(gs_executor *ex, size_t i)
{
	ex->heap[i].s->ex_slot = 0;
	if (i == --ex->hn)
		return;
	heap_put(ex, i, ex->heap[ex->hn]);
	heap_down(ex, i);
	heap_up(ex, i);
}

static void set_earliest(gs_executor *ex)
{
	atomic_store(&ex->earliest, ex->hn ? ex->heap[0].deadline : UINT64_MAX);
}

/*
 * A stage has at most one entry, whose deadline is its ex_deadline: an
 * earlier deadline moves it up in place. (An entry per registration, left
 * until its deadline passed, grew the heap for as long as a far timer was
 * pending: by one for every nearer timer of the stage that fired.)
 */
void gs__executor_timer(gs_stage *s, uint64_t deadline)
{
	gs_executor *ex = s->ex;
	bool kick = false;
	pthread_mutex_lock(&ex->tlock);
	if (deadline < s->ex_deadline && s->ex_slot) {
		ex->heap[s->ex_slot - 1].deadline = deadline;
		heap_up(ex, s->ex_slot - 1);
		s->ex_deadline = deadline;
		kick = ex->heap[0].deadline == deadline;
		set_earliest(ex);
	} else if (deadline < s->ex_deadline) {
		if (ex->hn == ex->hcap) {
			size_t cap = ex->hcap ? ex->hcap * 2 : 16;
			timer_entry *h = realloc(ex->heap, cap * sizeof *h);
			if (!h) {
				pthread_mutex_unlock(&ex->tlock);
				gs__log(s, GS_LOG_ERROR,
					"out of memory for a timer");
				gs__stop(s, GS_ENOMEM);
				return;
			}
			ex->heap = h;
			ex->hcap = cap;
		}
		heap_put(ex, ex->hn, (timer_entry){ deadline, s });
		heap_up(ex, ex->hn++);
		s->ex_deadline = deadline;
		kick = ex->heap[0].deadline == deadline;
		set_earliest(ex);
	}
	pthread_mutex_unlock(&ex->tlock);
	/* A sleeper must shorten its sleep to the new earliest deadline. */
	if (kick && atomic_load(&ex->sleeping))
		wake_one(ex);
}

void gs__executor_forget(gs_stage *s)
{
	gs_executor *ex = s->ex;
	pthread_mutex_lock(&ex->tlock);
	if (s->ex_slot) {
		heap_remove(ex, s->ex_slot - 1);
		set_earliest(ex);
	}
	s->ex_deadline = UINT64_MAX;
	pthread_mutex_unlock(&ex->tlock);
}

size_t gs__executor_timers(gs_executor *ex)
{
	pthread_mutex_lock(&ex->tlock);
	size_t n = ex->hn;
	pthread_mutex_unlock(&ex->tlock);
	return n;
}

/* Wakes the stages whose timers are due. Under tlock, so that a stage
 * cannot finish (gs__executor_forget) and be freed in between. */
static void fire_timers(gs_executor *ex)
{
	/* Without a timer there is no clock to read: this runs before every
	 * stage a worker picks, and a clock read costs more than a batch's
	 * hand-off. */
	uint64_t earliest = atomic_load_explicit(&ex->earliest,
						 memory_order_relaxed);
	if (earliest == UINT64_MAX)
		return;
	uint64_t now = gs__now_ns();
	if (earliest > now)
		return;
	pthread_mutex_lock(&ex->tlock);
	while (ex->hn && ex->heap[0].deadline <= now) {
		gs_stage *s = ex->heap[0].s;
		heap_remove(ex, 0);
		s->ex_deadline = UINT64_MAX;
		gs__executor_wake(s);
	}
	set_earliest(ex);
	pthread_mutex_unlock(&ex->tlock);
}

/* --- workers -------------------------------------------------------- */

static gs_stage *local_pop(gs__worker *w)
{
	gs_stage *s = NULL;
	if (w->lifo_streak < LIFO_STREAK || !atomic_load(&w->n)) {
		GS__HB(&w->next);
		s = atomic_exchange_explicit(&w->next, NULL,
					     memory_order_acq_rel);
		GS__HA(&w->next);
	}
	if (s) {
		w->lifo_streak++;
		return s;
	}
	w->lifo_streak = 0;
	s = fifo_pop(w);
	if (!s) {
		GS__HB(&w->next);
		s = atomic_exchange_explicit(&w->next, NULL,
					     memory_order_acq_rel);
		GS__HA(&w->next);
	}
	return s;
}

static bool waited(uint64_t since)
{
	return (int64_t)(gs__clock_seen - since) >= STEAL_AGE_NS;
}

/* The oldest queued stage of v, if it is worth taking (see the top). */
static gs_stage *fifo_steal(gs__worker *v)
{
	if (!atomic_load_explicit(&v->n, memory_order_relaxed))
		return NULL;
	pthread_mutex_lock(&v->lock);
	gs_stage *s = v->head;
	if (s && (atomic_load_explicit(&v->n, memory_order_relaxed) >= 2 ||
		  waited(s->rq_since))) {
		v->head = s->rq_next;
		if (!v->head)
			v->tail = NULL;
		atomic_fetch_sub(&v->n, 1);
	} else {
		s = NULL;
	}
	pthread_mutex_unlock(&v->lock);
	return s;
}

/* Takes the oldest queued stage of another worker, or the next slot of one
 * that is busy running something else, as the rules at the top allow. */
static gs_stage *steal(gs__worker *w)
{
	gs_executor *ex = w->ex;
	if ((int64_t)(gs__clock_seen - w->look_after) < 0)
		return NULL;
	for (size_t k = 1; k < ex->n; k++) {
		gs_stage *s = fifo_steal(&ex->w[(w->index + k) % ex->n]);
		if (s)
			return s;
	}
	for (size_t k = 1; k < ex->n; k++) {
		gs__worker *v = &ex->w[(w->index + k) % ex->n];
		if (!atomic_load_explicit(&v->busy, memory_order_relaxed) ||
		    !atomic_load_explicit(&v->next, memory_order_relaxed) ||
		    !waited(atomic_load_explicit(&v->next_since,
						 memory_order_relaxed)))
			continue;
		GS__HB(&v->next);
		gs_stage *s = atomic_exchange_explicit(&v->next, NULL,
						       memory_order_acq_rel);
		GS__HA(&v->next);
		if (s)
			return s;
	}
	w->look_after = gs__clock_seen + STEAL_POLL_NS;
	return NULL;
}

static gs_stage *find(gs__worker *w)
{
	gs_executor *ex = w->ex;
	fire_timers(ex);
	gs_stage *s = NULL;
	if (++w->picks % GLOBAL_EVERY == 0)
		s = global_pop(ex);
	if (!s)
		s = local_pop(w);
	if (!s)
		s = global_pop(ex);
	if (!s)
		s = steal(w);
	return s;
}

/* Spins, then sleeps, until there is a stage to run (returned) or the
 * executor shuts down (NULL). Enters and leaves counted as spinning. */
static gs_stage *idle(gs__worker *w)
{
	gs_executor *ex = w->ex;
	for (;;) {
		uint64_t start = gs__now_ns();
		unsigned backoff = GS__BACKOFF_FIRST;
		do {
			gs_stage *s = find(w);
			if (s)
				return s;
			if (atomic_load(&ex->shutdown))
				return NULL;
			gs__backoff(&backoff);
		} while (gs__now_ns() - start < GS_WORKER_SPIN_NS);

		atomic_fetch_add(&ex->sleeping, 1);
		atomic_fetch_sub(&ex->spinning, 1);
		uint32_t seen = atomic_load(&ex->idle_ec);
		if (!work_waiting(ex) && !atomic_load(&ex->shutdown))
			gs__futex_wait(&ex->idle_ec, seen,
				       atomic_load(&ex->earliest));
		atomic_fetch_add(&ex->spinning, 1);
		atomic_fetch_sub(&ex->sleeping, 1);
	}
}

static void run(gs__worker *w, gs_stage *s)
{
	atomic_store_explicit(&w->busy, true, memory_order_relaxed);
	bool again = gs__stage_run(s);
	atomic_store_explicit(&w->busy, false, memory_order_relaxed);
	if (again) {
		fifo_push(w, s);
		notify(w->ex);
	}
}

static void *worker_main(void *arg)
{
	gs__worker *w = arg;
	gs_executor *ex = w->ex;
	char name[16];
	snprintf(name, sizeof name, "%s-w%zu", ex->name, w->index);
	pthread_setname_np(pthread_self(), name);
	self = w;
	for (;;) {
		gs_stage *s = find(w);
		if (!s) {
			atomic_fetch_add(&ex->spinning, 1);
			s = idle(w);
			/* The last spinner to find work makes sure someone
			 * keeps looking if more is waiting. */
			if (atomic_fetch_sub(&ex->spinning, 1) == 1 && s &&
			    atomic_load(&ex->sleeping) && work_waiting(ex))
				wake_one(ex);
			if (!s)
				break;
		}
		run(w, s);
	}
	self = NULL;
	gs__scratch_release();
	return NULL;
}

/* --- lifetime ------------------------------------------------------- */

/* One worker per CPU this process may run on, unless GS_WORKERS says. */
static size_t default_workers(void)
{
	const char *env = getenv("GS_WORKERS");
	if (env && *env) {
		char *end;
		unsigned long n = strtoul(env, &end, 10);
		if (!*end && n >= 1 && n <= MAX_WORKERS)
			return n;
		/* No log hook reaches here (the default executor is made
		 * for whichever pipeline comes first): stderr, once per
		 * executor. */
		fprintf(stderr,
			"genstage: warning: GS_WORKERS='%s' is not a number "
			"from 1 to %d: one worker per CPU instead\n",
			env, MAX_WORKERS);
	}
	cpu_set_t set;
	if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0)
		return (size_t)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (size_t)n : 1;
}

static void destroy(gs_executor *ex, size_t started)
{
	atomic_store(&ex->shutdown, true);
	atomic_fetch_add(&ex->idle_ec, 1);
	gs__futex_wake(&ex->idle_ec, INT_MAX);
	for (size_t i = 0; i < started; i++)
		pthread_join(ex->w[i].thread, NULL);
	for (size_t i = 0; i < ex->n; i++)
		pthread_mutex_destroy(&ex->w[i].lock);
	pthread_mutex_destroy(&ex->glock);
	pthread_mutex_destroy(&ex->tlock);
	free(ex->heap);
	free(ex->w);
	free(ex);
}

static gs_err create(const gs_executor_opts *opts, bool is_default,
		     gs_executor **out)
{
	gs_executor_opts o = opts ? *opts : (gs_executor_opts){ 0 };
	size_t n = o.workers ? o.workers : default_workers();
	if (n > MAX_WORKERS)
		return GS_EINVAL;
	gs_executor *ex = aligned_alloc(GS__CACHELINE,
					(sizeof *ex + GS__CACHELINE - 1) &
						~(size_t)(GS__CACHELINE - 1));
	gs__worker *w = aligned_alloc(GS__CACHELINE, n * sizeof *w);
	if (!ex || !w) {
		free(ex);
		free(w);
		return GS_ENOMEM;
	}
	memset(ex, 0, sizeof *ex);
	memset(w, 0, n * sizeof *w);
	ex->n = n;
	ex->w = w;
	ex->is_default = is_default;
	snprintf(ex->name, sizeof ex->name, "%s", o.name ? o.name : "gs");
	atomic_init(&ex->earliest, UINT64_MAX);
	GS__ATOMIC(ex->refs);
	GS__ATOMIC(ex->gn);
	GS__ATOMIC(ex->idle_ec);
	GS__ATOMIC(ex->sleeping);
	GS__ATOMIC(ex->spinning);
	GS__ATOMIC(ex->shutdown);
	GS__ATOMIC(ex->earliest);
	pthread_mutex_init(&ex->glock, NULL);
	pthread_mutex_init(&ex->tlock, NULL);
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_init(&w[i].lock, NULL);
		w[i].ex = ex;
		w[i].index = i;
		GS__ATOMIC(w[i].next);
		GS__ATOMIC(w[i].busy);
		GS__ATOMIC(w[i].next_since);
		GS__ATOMIC(w[i].n);
	}
	for (size_t i = 0; i < n; i++) {
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i])) {
			destroy(ex, i);
			return GS_ESPAWN;
		}
	}
	*out = ex;
	return GS_OK;
}

/* The process's shared executor, made by the first pipeline that needs it
 * and freed with the last one that used it. */
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static gs_executor *default_ex;

gs_err gs__executor_get(gs_executor *ex, gs_executor **out)
{
	if (ex) {
		atomic_fetch_add(&ex->refs, 1);
		*out = ex;
		return GS_OK;
	}
	pthread_mutex_lock(&default_lock);
	gs_err err = default_ex ? GS_OK : create(NULL, true, &default_ex);
	if (!err) {
		atomic_fetch_add(&default_ex->refs, 1);
		*out = default_ex;
	}
	pthread_mutex_unlock(&default_lock);
	return err;
}

void gs__executor_put(gs_executor *ex)
{
	if (!ex)
		return;
	if (ex->is_default) {
		pthread_mutex_lock(&default_lock);
		bool last = atomic_fetch_sub(&ex->refs, 1) == 1;
		if (last)
			default_ex = NULL;
		pthread_mutex_unlock(&default_lock);
		if (last)
			destroy(ex, ex->n);
		return;
	}
	GS__HB(&ex->refs);
	if (atomic_fetch_sub(&ex->refs, 1) == 1) {
		GS__HA(&ex->refs);
		destroy(ex, ex->n);
	}
}

GS__API gs_err gs_executor_new(const gs_executor_opts *opts, gs_executor **out)
{
	if (!out)
		return GS_EINVAL;
	GS__REFUSE_NEWER(NULL, opts, GS_EXECUTOR_OPTS_VERSION);
	gs_executor *ex;
	gs_err err = create(opts, false, &ex);
	if (err)
		return err;
	atomic_init(&ex->refs, 1);
	*out = ex;
	return GS_OK;
}

GS__API void gs_executor_free(gs_executor *ex)
{
	gs__executor_put(ex);
}

GS__API size_t gs_executor_workers(const gs_executor *ex)
{
	return ex ? ex->n : 0;
}
