// SPDX-License-Identifier: MIT
/*
 * Private to pipelines/bus*.c: the bus, its subscriptions, envelopes and
 * the blocks they are allocated in, the topic table, the matchers, and the
 * thread-local context that says what is being handled on this thread.
 *
 * Locking: the bus's `lock` (the publish lock) guards the topic table, the
 * list of live subscriptions, id assignment and every queue's producer side
 * (so each queue has one producer at a time). Queues' consumer side, the
 * counters and the envelopes' reference counts are atomics. No user
 * callback runs under the lock except the trace hook's PUBLISH and
 * publisher-side DROP reports.
 */
#ifndef GS_BUS_INTERNAL_H
#define GS_BUS_INTERNAL_H

#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <genstage/genstage.h>

/* The engine's notes to valgrind's race detectors (stage/annotate.h):
 * the bus marks its atomics and its hand-offs the same way, so that what
 * helgrind and DRD report in a user's handlers is the user's. */
#include "annotate.h"

#define GS_BUS_API __attribute__((visibility("default")))
#define GS__BUS_LINE 64
/* AMQP routing keys are at most 255 bytes; so are our topics. */
#define GS__BUS_TOPIC_MAX 255
#define GS__BUS_NAME_MAX 64

/* Asks for the line at p in a state this core may write (exclusive), in
 * the background: for a line last written on another core, which a store
 * or an atomic would otherwise stall on, and every barrier after it with
 * them. GCC's __builtin_prefetch(p, 1) makes that instruction on x86 only
 * when the target has PRFCHW, else a read prefetch, which leaves the line
 * shared; x86-64 processors without PRFCHW execute it as a no-op. Not in
 * the valgrind build, whose race detectors take the operand for a load. */
static inline void gs__bus_prefetch_write(const void *p)
{
#if defined(GS_VALGRIND)
	(void)p;
#elif defined(__x86_64__) && defined(__GNUC__)
	__asm__ volatile("prefetchw %0" ::"m"(*(const char *)p));
#elif defined(__GNUC__)
	__builtin_prefetch(p, 1);
#else
	(void)p;
#endif
}

typedef struct gs__bus_block gs__bus_block;
typedef struct gs__bus_topic gs__bus_topic;

/* --- bus_pattern.c: what a subscription matches --------------------- */

/* One AMQP pattern, split into words ("*" and "#" kept as words). */
typedef struct gs__bus_amqp {
	char *text; /* the words, NUL-separated */
	const char **words;
	size_t n;
} gs__bus_amqp;

typedef struct gs__bus_matcher {
	gs__bus_amqp *amqp;
	size_t n_amqp;
	regex_t *re;
	size_t n_re;
} gs__bus_matcher;

/* GS_OK if `topic` is a valid topic (sets *len); else GS_EINVAL with why
 * it is not in why[0..len). */
gs_err gs__bus_topic_check(const char *topic, size_t *len, char *why,
			   size_t why_len);
/* Compiles the NULL-terminated lists; on error says why and leaves m
 * empty. */
gs_err gs__bus_matcher_init(gs__bus_matcher *m, const char *const *patterns,
			    const char *const *regexes, char *why,
			    size_t why_len);
bool gs__bus_matcher_test(const gs__bus_matcher *m, const char *topic,
			  size_t len);
void gs__bus_matcher_fini(gs__bus_matcher *m);

/* --- bus_envelope.c: envelopes, blocks, completion ------------------- */

/* An envelope as the bus keeps it: the public part first, then where it
 * lives and how it ended for the subscriptions that did not simply handle
 * it (rare, so counted per envelope; handled = matched - the rest). */
typedef struct gs__bus_env {
	gs_bus_envelope pub;
	gs__bus_block *blk;
	gs__bus_topic *topic; /* for per-topic counters */
	uint32_t topic_len;
	uint32_t matched;
	_Atomic uint32_t skipped, dropped, failed;
} gs__bus_env;

/* The envelopes of one publish call, allocated together with the source
 * string. Their topics are the topic table's names, which live as long as
 * the bus; only topics beyond the table (its shared entry) are copied, into
 * `copies`. `pending` counts deliveries not finished, plus one the
 * publisher holds until it has pushed them all; at zero the block
 * completes: on_complete and free_fn for each envelope, then one free. */
struct gs__bus_block {
	_Atomic size_t pending;
	/* An envelope was dropped or failed somewhere: the sums below do
	 * not hold, and completion counts envelope by envelope. */
	_Atomic bool lossy;
	gs_bus *bus;
	gs_bus_free_fn free_fn;
	gs__bus_block *next; /* a list of blocks to complete later, or the
				pool's free list */
	size_t n;
	unsigned size_class; /* GS__BUS_CLASSES: allocated on its own */
	char *copies;        /* malloc'd, or NULL */
	size_t copies_len;
	/* What the envelopes add to their topics' counters when every
	 * delivery is handled, per topic: filled by the publisher, so that
	 * completing reads a few lines instead of every envelope. n_sums 0:
	 * more topics than room (sums_cap), or one beyond the table. */
	struct gs__bus_sum *sums;
	size_t n_sums, sums_cap;
	gs__bus_env env[];
};

/* Topics per block whose completion counts are kept as sums. */
#define GS__BUS_SUMS 16

typedef struct gs__bus_sum {
	gs__bus_topic *t;
	uint64_t events, deliveries;
} gs__bus_sum;

/* Blocks are recycled by size class (256 bytes << class), so that a
 * steady stream of publishes reuses warm memory instead of calling malloc
 * on the publisher's thread and free on a subscriber's for every call:
 * malloc's per-thread caches do not serve that pattern, and its arena
 * lock is then taken by both sides of every publish. */
#define GS__BUS_CLASSES 11
#define GS__BUS_POOLED_MIN 256
#define GS__BUS_POOL_BYTES (1u << 20) /* kept per class, at most */

/* Two lists per class, each under its own lock, so that publishers and
 * the threads that complete blocks do not queue on each other for every
 * publish: blocks are taken from `free` and given back onto `given`; a
 * taker that finds `free` empty moves all of `given` over at once. Each
 * list keeps at most half the bound. */
typedef struct gs__bus_pool_side {
	_Alignas(GS__BUS_LINE) pthread_mutex_t lock;
	gs__bus_block *list[GS__BUS_CLASSES];
	size_t count[GS__BUS_CLASSES];
} gs__bus_pool_side;

typedef struct gs__bus_pool {
	gs__bus_pool_side free, given;
} gs__bus_pool;

gs_err gs__bus_pool_init(gs__bus_pool *pool);
void gs__bus_pool_fini(gs__bus_pool *pool);
/* A block for n envelopes and `strings` bytes of strings after them;
 * the strings start at *strings_out. NULL when out of memory. */
gs__bus_block *gs__bus_block_new(gs_bus *bus, size_t n, size_t strings,
				 char **strings_out);
/* Returns a block that was never accepted, or has completed. */
void gs__bus_block_free(gs__bus_block *b);
/* k deliveries of `b` are finished. When that completes it: with `defer`,
 * queued there (the caller holds the lock), else completed now. */
void gs__bus_release(gs__bus_block *b, size_t k, gs__bus_block **defer);
/* Releases one delivery per envelope, a call per run of one block. */
void gs__bus_release_envs(gs__bus_env *const *envs, size_t n,
			  gs__bus_block **defer);
/* Completes every block of a deferred list. */
void gs__bus_complete_list(gs__bus_block *list);

/* --- bus.c: the bus, its context, its log --------------------------- */

/* What this thread is doing for a bus: set while a handler, a hook or a
 * subscription's stage runs, so that nested publishes find their cause and
 * calls that wait can refuse. */
typedef struct gs__bus_ctx {
	gs_bus *bus;
	const gs__bus_env *env; /* being handled, or NULL */
	bool may_block;
	struct gs__bus_ctx *outer;
} gs__bus_ctx;

void gs__bus_ctx_push(gs__bus_ctx *c, gs_bus *bus, bool may_block);
void gs__bus_ctx_pop(gs__bus_ctx *c);
const gs__bus_ctx *gs__bus_ctx_now(void);

void gs__bus_log(gs_bus *bus, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void gs__bus_trace(gs_bus *bus, gs_bus_trace_kind kind, const gs__bus_env *env,
		   const char *sub);
/* Wakes everyone waiting on the bus's condition. `locked`: the caller
 * holds the bus lock. */
void gs__bus_broadcast(gs_bus *bus, bool locked);
/* The monotonic time timeout_ms from now, in nanoseconds; 0 (no
 * deadline) for a negative timeout. */
uint64_t gs__bus_deadline(int timeout_ms);
/* Waits on the bus's condition (lock held) until woken or the deadline (0:
 * none); true once the deadline has passed. First sends again the wake-ups
 * that failed for want of memory, and while one still fails, wakes up
 * every few milliseconds to try again. */
bool gs__bus_wait(gs_bus *bus, uint64_t deadline_ns);
uint64_t gs__bus_now_ns(void);

/* --- bus_route.c: topics, their routes and counters ------------------ */

struct gs__bus_topic {
	char *name; /* owned, NUL-terminated */
	size_t len;
	uint64_t hash;
	uint64_t gen; /* the route generation subs was computed at */
	gs_bus_sub **subs;
	size_t n_subs, cap_subs;
	/* under the lock: this publish's events on it (bus_publish.c) */
	uint64_t epoch;
	size_t count;
	gs__bus_topic *next_touched;
	/* written under the bus lock (one writer), read by anyone */
	_Atomic uint64_t published, deliveries, unrouted;
	/* written by anyone (completers mostly), so on a line of their own:
	 * apart from what the publisher writes */
	_Alignas(GS__BUS_LINE) _Atomic uint64_t handled, dropped, failed;
	_Atomic uint64_t retried, completed;
};

typedef struct gs__bus_routes {
	gs__bus_topic **slots; /* open addressing, cap a power of two */
	size_t cap, n, max;
	uint64_t gen;        /* moves whenever subscriptions change */
	gs__bus_topic other; /* counters of topics beyond max; its route is
				computed on each lookup */
} gs__bus_routes;

gs_err gs__bus_routes_init(gs__bus_routes *r, size_t max);
void gs__bus_routes_fini(gs__bus_routes *r);
/* Eight bytes at a time, mixed by multiplication: a topic of 20 bytes
 * costs three rounds, the last over the final eight bytes (overlapping
 * the ones before). Inline: it runs once per event published. */
static inline uint64_t gs__bus_topic_hash(const char *s, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15u ^ len;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdu;
		h ^= h >> 32;
	}
	uint64_t w = 0;
	if (i == len) {
		/* nothing left */
	} else if (len >= 8) {
		memcpy(&w, s + len - 8, 8);
	} else if (len >= 4) {
		uint32_t lo, hi;
		memcpy(&hi, s, 4);
		memcpy(&lo, s + len - 4, 4);
		w = (uint64_t)hi << 32 | lo;
	} else {
		for (; i < len; i++)
			w = w << 8 | (unsigned char)s[i];
	}
	h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
	return h ^ (h >> 29);
}
/* Under the lock: the topic's entry with its route up to date. NULL with
 * GS_EINVAL (and why) for an invalid topic, GS_ENOMEM when out of
 * memory. */
gs__bus_topic *gs__bus_route(gs_bus *bus, const char *topic, size_t len,
			     uint64_t hash, gs_err *err, char *why,
			     size_t why_len);
/* Under the lock: the entry if the topic was ever published, else NULL. */
gs__bus_topic *gs__bus_topic_find(gs_bus *bus, const char *topic, size_t len);
/* Under the lock: takes t out of the table and frees it. Only for an entry
 * no publish was ever accepted on, which nothing else points at. */
void gs__bus_topic_forget(gs_bus *bus, gs__bus_topic *t);

/* --- bus_queue.c: a subscription's queue ------------------------------ */

/* gs__bus_queue_put, once per delivery, is inline: see the end. */
/* Under the lock: makes what was put into the n queues visible to their
 * consumers. Writes to `hungry` those whose stage waits for its queue, and
 * returns how many (`hungry` may be `subs`): wake them, without the lock
 * if it can, with gs__bus_queue_wake. */
size_t gs__bus_queue_show(gs_bus_sub *const *subs, size_t n,
			  gs_bus_sub **hungry);
/* `locked`: the caller holds the bus lock. */
void gs__bus_queue_wake(gs_bus_sub *s, bool locked);
/* Takes up to max of the oldest envelopes, from any thread; 0 if empty. */
size_t gs__bus_queue_take(gs_bus_sub *s, gs__bus_env **out, size_t max);
/* The consumer's take: when the queue is empty, it also marks the
 * consumer as waiting (hungry), so that the next publish wakes it. */
size_t gs__bus_queue_next(gs_bus_sub *s, gs__bus_env **out, size_t max);
uint64_t gs__bus_queue_depth(const gs_bus_sub *s);
gs_err gs__bus_queue_init(gs_bus_sub *s);
void gs__bus_queue_fini(gs_bus_sub *s);

/* --- bus_deliver.c: one delivery, and the end of deliveries ----------- */

typedef enum gs__bus_outcome {
	GS__BUS_HANDLED,
	GS__BUS_SKIPPED,
	GS__BUS_FAILED,
} gs__bus_outcome;

/* Hands e to s's handler, with its retries and dead letter, on a thread
 * whose context is ctx (its env is set for the call). */
gs__bus_outcome gs__bus_deliver(gs_bus_sub *s, gs__bus_ctx *ctx,
				gs__bus_env *e);
/* Handles a batch on s's own stage: counted once, then finished. */
void gs__bus_deliver_batch(gs_bus_sub *s, gs__bus_env *const *envs, size_t n);
/* n deliveries of s are over: released, counted as finished, and a
 * waiter on s woken if its wait is over. `defer`: as gs__bus_release (the
 * caller holds the lock). */
void gs__bus_finish(gs_bus_sub *s, gs__bus_env *const *envs, size_t n,
		    gs__bus_block **defer);
/* Drops envelopes of `s` that will never reach its handler: counted,
 * traced, then finished. */
void gs__bus_drop(gs_bus_sub *s, gs__bus_env *const *envs, size_t n,
		  gs__bus_block **defer);
/* Drops everything in s's queue, from any thread. */
void gs__bus_drop_queue(gs_bus_sub *s);
/* An immediate close or unsubscribe of s: its queue is dropped, and so is
 * what its handler stage has taken and not begun; retries stop. */
void gs__bus_cut(gs_bus_sub *s);

/* --- bus_stats.c -------------------------------------------------------- */

/* Under the lock: adds a subscription's final counters to the bus's
 * retired totals, as it is freed. */
void gs__bus_stats_retire(gs_bus *bus, const gs_bus_sub_stats *st);

/* --- bus_drain.c: the stages that drain a queue ------------------------- */

/* Makes them: for concurrency 1, one stage that takes batches from the
 * queue itself, woken by gs_cast; for N, a feeder producer and a worker
 * pool. Sets s->driver (the stage to wake) and s->stage. */
gs_err gs__bus_drain_new(gs_bus_sub *s);
/* Asks s's stages to finish once its queue is empty. */
void gs__bus_sub_close(gs_bus_sub *s);

/* --- bus_sub.c: subscriptions ---------------------------------------- */

struct gs_bus_sub {
	/* immutable after gs_bus_subscribe */
	gs_bus *bus;
	char name[GS__BUS_NAME_MAX];
	gs__bus_matcher match;
	gs_bus_handler_fn handler;
	void *arg;
	gs_bus_dead_letter_fn dead_letter;
	size_t queue_size;
	gs_bus_overflow overflow;
	size_t concurrency;
	bool blocking;
	unsigned max_retries, backoff_ms;
	size_t batch;     /* envelopes taken from the queue at once */
	gs_stage *driver; /* the stage that drains the queue */
	gs_stage *stage;  /* the handler's stage (the pool's, for N) */
	gs_pool *pool;
	_Atomic(gs__bus_env *) *slots;
	uint64_t mask;
	/* the bus's list of the subscriptions it holds, under the lock */
	gs_bus_sub *next_all, *prev_all;
	/* stages released to the engine and not yet freed (bus_sub.c) */
	_Atomic unsigned stages_left;

	/* producer side, under the bus lock */
	_Alignas(GS__BUS_LINE) uint64_t put; /* end being written */
	_Atomic uint64_t accepted;
	uint64_t finished_seen; /* `finished` when last read (a bound) */
	size_t need;            /* this publish's events for it */
	uint64_t epoch;         /* the publish that last touched it */
	bool listed;            /* routed to */
	/* Who may still reach it from outside its stages (bus_sub.c): taken
	 * mostly by publishers about to wake its stage, so on their line. */
	_Atomic size_t refs;

	/* the visible end: written once per publish, read by takers, so
	 * on a line of its own */
	_Alignas(GS__BUS_LINE) _Atomic uint64_t head;

	/* consumer side */
	_Alignas(GS__BUS_LINE) _Atomic uint64_t tail;
	_Atomic bool hungry;  /* the driver waits for the queue */
	_Atomic bool closing; /* finish once the queue is empty */
	/* An immediate close or unsubscribe: what a handler stage took and
	 * has not begun is dropped, and retries stop. */
	_Atomic bool cut;
	uint64_t owed; /* feeder-own: demand not yet met */

	/* counters, any thread */
	_Alignas(GS__BUS_LINE) _Atomic uint64_t finished;
	/* the finished count someone waits for (0: nobody): set under the
	 * bus lock, cleared by the finisher that reaches it */
	_Atomic uint64_t wake_at;
	_Atomic uint64_t delivered, handled, skipped, failed, retried, dropped;
	_Atomic uint64_t handler_ns;
};

/* Under the lock: someone will wait on the bus's condition until s has
 * finished `target` deliveries (see gs__bus_finish). The caller checks its
 * condition again after this, before it waits. */
void gs__bus_wait_for(gs_bus_sub *s, uint64_t target);
/* Takes s off the routes: nothing published after this reaches it. True
 * if it was on them (the caller then lets go of the routes' reference). */
bool gs__bus_sub_unroute(gs_bus_sub *s);
/* References to s (see bus_sub.c): gs__bus_sub_ref from one already
 * held (or under the lock while s is routed to); gs__bus_sub_try_ref, under
 * the lock, fails once the last is gone; gs__bus_sub_unref, never under the
 * lock, may free s. */
void gs__bus_sub_ref(gs_bus_sub *s);
bool gs__bus_sub_try_ref(gs_bus_sub *s);
void gs__bus_sub_unref(gs_bus_sub *s);
/* Frees what s owns and s, as gs_bus_free does for those still held. */
void gs__bus_sub_free(gs_bus_sub *s);

/* --- bus.c ------------------------------------------------------------ */

struct gs_bus {
	/* immutable after gs_bus_new */
	char name[GS__BUS_NAME_MAX];
	gs_bus_opts o;
	gs_pipeline *p;

	/* the publish lock, and what it guards */
	_Alignas(GS__BUS_LINE) pthread_mutex_t lock;
	uint64_t next_id;
	gs_bus_sub **subs; /* routed to */
	size_t n_subs, cap_subs;
	gs_bus_sub *all; /* every subscription not yet freed, newest first */
	size_t n_all, n_made;
	/* subscriptions freed (bus_sub.c), and their counters summed */
	uint64_t n_retired;
	gs_bus_sub_stats retired;
	gs__bus_routes routes;
	gs_bus_sub **touched; /* this publish's subscriptions */
	size_t n_touched, cap_touched;
	uint64_t epoch;

	/* read on every publish and by every finisher, written rarely */
	_Alignas(GS__BUS_LINE) pthread_cond_t room; /* a wait_at reached, an
						       envelope completed while
						       a closer waits, or
						       closed */
	_Atomic uint64_t waiters; /* closers waiting: for quiet, then for
				     completions */
	/* written under the lock: closing refuses publishes but the bus's
	 * own handlers' (a drain), closed refuses them all */
	_Atomic bool closing, closed;
	/* A stage's wake-up could not be sent (out of memory): waits on
	 * `room` wake it again, and look again soon (gs__bus_wait). Under
	 * the lock. */
	bool wake_failed;

	/* written by publishers, and by completers: a line each */
	_Alignas(GS__BUS_LINE) _Atomic uint64_t published, unrouted;
	_Alignas(GS__BUS_LINE) _Atomic uint64_t completed;

	_Alignas(GS__BUS_LINE) gs__bus_pool pool;
	pthread_mutex_t close_lock; /* one closer at a time */
	bool close_done;
};

/* Whether an entry is the one the topics beyond the table share (its
 * route is not cached). */
static inline bool gs__bus_topic_shared(const gs_bus *bus,
					const gs__bus_topic *t)
{
	return t == &bus->routes.other;
}

/* Under the lock: puts one envelope at the producer's end (not visible
 * until gs__bus_queue_show); the caller has checked there is room. */
static inline void gs__bus_queue_put(gs_bus_sub *s, gs__bus_env *e)
{
	atomic_store_explicit(&s->slots[s->put & s->mask], e,
			      memory_order_relaxed);
	s->put++;
}

#endif
