// SPDX-License-Identifier: MIT
/*
 * What gs-bench's parts share: a topology's parameters and result, the
 * functions that run them, and the few helpers every topology uses (the
 * clock, the expected checksum, a spin-wait hint).
 */
#ifndef GSB_BENCH_H
#define GSB_BENCH_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* What a run gets: how many events to move, and where to report how many
 * have arrived so far (shared with the parent, which prints progress). */
typedef struct gsb_params {
	uint64_t events;
	_Atomic uint64_t *progress;
} gsb_params;

/* What a run reports back through the pipe, as plain bytes. */
typedef struct gsb_result {
	uint64_t delivered; /* events the last stage received */
	uint64_t checksum;  /* sum of the values it received */
	uint64_t expected;  /* what checksum must be */
	double seconds;     /* from starting the threads to joining them */
	int err;            /* 0, or why the run could not complete */
	double own_ratio;   /* a ratio the run measured itself (bus-slow:
			       its time over the ideal); 0 if none */
	char note[192];     /* a line on how the run went (batches, costs) */
} gsb_result;

typedef struct gsb_topology gsb_topology;
typedef void (*gsb_run_fn)(const gsb_topology *t, const gsb_params *p,
			   gsb_result *r);

struct gsb_topology {
	const char *name;
	const char *what; /* one line for --list and RESULTS.md */
	gsb_run_fn run;
	size_t max_demand;  /* genstage topologies only */
	size_t stages;      /* flow-wordcount: counting stages, 0 the loop */
	bool by_word;       /* flow-wordcount: WC_WORDS, not WC_CHUNKS */
	size_t concurrency; /* bus-slow: handler threads per subscription */
	uint64_t default_events;
	/* A global --events N gives this topology N / divisor events (at
	 * least 1), for topologies whose events cost fixed time (bus-slow
	 * sleeps 10 ms per event); --events NAME=N sets it exactly. */
	uint64_t events_divisor;
};

/* topo_genstage.c: the library's own pipelines. */
void gsb_run_1_1(const gsb_topology *t, const gsb_params *p, gsb_result *r);
void gsb_run_1_map_1(const gsb_topology *t, const gsb_params *p, gsb_result *r);
void gsb_run_1_1_slow(const gsb_topology *t, const gsb_params *p,
		      gsb_result *r);

/* topo_fanout.c: one producer to four consumers, four pushers to one. */
void gsb_run_1_4_demand(const gsb_topology *t, const gsb_params *p,
			gsb_result *r);
void gsb_run_1_4_broadcast(const gsb_topology *t, const gsb_params *p,
			   gsb_result *r);
void gsb_run_1_4_partition(const gsb_topology *t, const gsb_params *p,
			   gsb_result *r);
void gsb_run_push_4_1(const gsb_topology *t, const gsb_params *p,
		      gsb_result *r);

/* topo_latency.c: one event in flight, then an idle pipeline. */
void gsb_run_latency(const gsb_topology *t, const gsb_params *p, gsb_result *r);

/* topo_peers_zmq.c and topo_peers_tbb.c: what a C or C++ user might pick
 * instead, built only when the libraries are present (GSB_HAVE_ZMQ,
 * GSB_HAVE_TBB). */
void gsb_run_zmq_1_1(const gsb_topology *t, const gsb_params *p, gsb_result *r);
void gsb_run_zmq_1_4_broadcast(const gsb_topology *t, const gsb_params *p,
			       gsb_result *r);
void gsb_run_tbb_1_1(const gsb_topology *t, const gsb_params *p, gsb_result *r);
void gsb_run_tbb_1_4_broadcast(const gsb_topology *t, const gsb_params *p,
			       gsb_result *r);

/* topo_wordcount.c: examples/wordcount.c's count, by a flow or a loop. */
void gsb_run_wordcount(const gsb_topology *t, const gsb_params *p,
		       gsb_result *r);

/* topo_bus.c: the event bus; topo_pubsub.c: bus-fanout's baseline, a
 * mutex and condvar publish/subscribe over the same topics and patterns. */
#define GSB_FANOUT_TOPICS 16
#define GSB_FANOUT_SUBS 8
#define GSB_FANOUT_MATCHES 4 /* subscriptions per topic */
extern const char *const gsb_fanout_topics[GSB_FANOUT_TOPICS];
extern const char *const *const gsb_fanout_patterns[GSB_FANOUT_SUBS];
void gsb_run_bus_slow(const gsb_topology *t, const gsb_params *p,
		      gsb_result *r);
void gsb_run_bus_fanout(const gsb_topology *t, const gsb_params *p,
			gsb_result *r);
void gsb_run_bus_publish_4(const gsb_topology *t, const gsb_params *p,
			   gsb_result *r);
void gsb_run_pubsub_mutex(const gsb_topology *t, const gsb_params *p,
			  gsb_result *r);

/* topo_baselines.c: the same work without the library. */
void gsb_run_mutex_queue(const gsb_topology *t, const gsb_params *p,
			 gsb_result *r);
void gsb_run_ck_ring(const gsb_topology *t, const gsb_params *p, gsb_result *r);
void gsb_run_gs_ring(const gsb_topology *t, const gsb_params *p, gsb_result *r);
void gsb_run_gs_ring_1(const gsb_topology *t, const gsb_params *p,
		       gsb_result *r);

/* threads.c: runs fn(args + i * size) for i in [0, n) on n threads at
 * once and joins them; false if some thread could not be started (those
 * that were are joined first). */
bool gsb_run_threads(size_t n, void *(*fn)(void *), void *args, size_t size);

static inline double gsb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Every producer emits 1..n (never 0, which would be a NULL event); each
 * map stage on the way adds one to every value. */
static inline uint64_t gsb_expected_sum(uint64_t n, uint64_t maps)
{
	return (n % 2 ? n * ((n + 1) / 2) : (n / 2) * (n + 1)) + maps * n;
}

/* Busy-wait hint: lets the sibling hyperthread (or the other side's cache
 * line) make progress while we spin. */
static inline void gsb_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Failed tries before a spinning thread yields the CPU: a few
 * microseconds of pause, far longer than a hand-off takes when both
 * threads have a core, so it matters only when they do not (a shared,
 * busy machine), where spinning on would burn the time slice the other
 * thread needs. */
#define GSB_YIELD_AFTER 1024u

/* One failed try of a spin-wait; `tries` counts them. */
static inline void gsb_backoff(unsigned *tries)
{
	if (++*tries % GSB_YIELD_AFTER)
		gsb_relax();
	else
		sched_yield();
}

/* Progress is published every this many events by per-item loops, so the
 * shared line is touched rarely. */
#define GSB_PROGRESS_EVERY 4096u

static inline void gsb_progress(const gsb_params *p, uint64_t delivered)
{
	atomic_store_explicit(p->progress, delivered, memory_order_relaxed);
}

#endif
