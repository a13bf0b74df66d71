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

/* What a run gets: how many events (or samples, stages, pipelines: see
 * gsb_topology.unit) to run, and where to report how many have arrived
 * so far (shared with the parent, which prints progress). */
typedef struct gsb_params {
	uint64_t events;
	_Atomic uint64_t *progress;
} gsb_params;

/* Latency rows: the distribution measured, and a reference measured in
 * the same process, interleaved with it, so that both see the same
 * machine. Times in microseconds. */
typedef struct gsb_latency {
	double p50_us, p99_us;
	double ref_p50_us, ref_p99_us;
	/* The CPU every thread but the measuring one used while the
	 * pipeline sat idle, from GSB_IDLE_AFTER_MS after the last event
	 * for GSB_IDLE_MS, as a fraction of one core, and their context
	 * switches meanwhile; -1: not measured. */
	double idle_cpu;
	long idle_switches;
} gsb_latency;

/* How long a phase took, by the clock and in CPU time of the whole
 * process (the machine is shared: the clock alone may measure others). */
typedef struct gsb_phase {
	double wall_s, cpu_s;
} gsb_phase;

/* Scale rows: how long each phase took and what the stages cost. */
typedef struct gsb_scale {
	uint64_t stages;
	gsb_phase build;  /* gs_stage_new and gs_subscribe of them all */
	gsb_phase start;  /* gs_pipeline_start of them all */
	gsb_phase run;    /* a few events through, until every stage ended */
	gsb_phase free;   /* gs_pipeline_free of them all */
	double kib_idle;  /* RSS growth per stage, started and idle */
	double kib_after; /* RSS growth per stage once events crossed it */
} gsb_scale;

/* What a run reports back through the pipe, as plain bytes. */
typedef struct gsb_result {
	uint64_t delivered; /* events the last stage(s) received */
	uint64_t checksum;  /* sum of the values it received */
	uint64_t expected;  /* what checksum must be */
	double seconds;     /* from starting the threads to joining them */
	int err;            /* 0, or why the run could not complete */
	double own_ratio;   /* a ratio the run measured itself (bus-slow:
			       its time over the ideal); 0 if none */
	double cpu_s;       /* the process's CPU time over `seconds`, for a
			       run with heavy work outside them (the word
			       counts make and check a corpus); 0: the
			       whole child's is reported */
	char note[192];     /* a line on how the run went (batches, costs) */
	gsb_latency lat;    /* latency rows only */
	gsb_scale scale;    /* scale rows only */
} gsb_result;

typedef struct gsb_topology gsb_topology;
typedef void (*gsb_run_fn)(const gsb_topology *t, const gsb_params *p,
			   gsb_result *r);

/* Which table a row belongs in: what its figures are. */
typedef enum gsb_kind {
	GSB_THROUGHPUT = 0, /* events/s */
	GSB_LATENCY,        /* p50/p99 against a reference */
	GSB_SCALE,          /* start time and memory per stage */
} gsb_kind;

struct gsb_topology {
	const char *name;
	const char *what; /* one line for --list and RESULTS.md */
	gsb_run_fn run;
	gsb_kind kind;
	/* CPUs the run is confined to (the first ones the harness may use),
	 * set in the child before anything starts, so that the default
	 * executor sees only them; 0: all the harness may use. */
	unsigned cpus;
	/* Throughput rows: the rows whose events/s this one is divided by,
	 * round by round; NULL leaves the cell blank (a ratio that would
	 * mean nothing). */
	const char *ceiling;   /* gs-ring, or NULL */
	const char *floor;     /* the batched mutex queue on the same CPUs */
	const char *base;      /* another row: a loop, one copy, 1-1 */
	const char *reference; /* latency rows: what their reference is */
	size_t max_demand;     /* genstage topologies only */
	size_t stages;         /* flow-wordcount: counting stages, 0 the loop;
				chains: map stages */
	size_t copies;         /* oversubscribed: pipelines at once */
	size_t concurrency;    /* bus-slow: handler threads per subscription */
	size_t batch;          /* bus-fanout: events per publish call, 1
				  with gs_bus_publish; 0 means 64 */
	/* Deliveries counted per value produced, where the row counts
	 * deliveries (broadcast: one per consumer; chain-1000: one per
	 * hop); 0 means 1. The harness makes the count a multiple. */
	unsigned deliveries;
	bool by_word; /* flow-wordcount: WC_WORDS, not WC_CHUNKS */
	bool serial;  /* by_word: its work on one thread, no library */
	/* What the count counts when each one is costly ("samples",
	 * "stages", "pipelines", or bus-slow's "events", which sleep 10 ms
	 * each): a global --events N gives these rows N /
	 * GSB_EVENTS_PER_UNIT instead (at least 1, at most their default),
	 * so that a smoke run stays short; --events NAME=N sets it exactly. */
	const char *unit;
	uint64_t default_events;
	/* Seconds a run may take before it is killed; 0: --timeout's. */
	double timeout_s;
};

/* See gsb_topology.unit. */
#define GSB_EVENTS_PER_UNIT 1000u

/* Latency rows: how long the pipeline idles before its CPU is measured,
 * and for how long it is measured. */
#define GSB_IDLE_AFTER_MS 1
#define GSB_IDLE_MS 200

/* topologies.c: every row gs-bench knows, in the order it runs them. */
extern const gsb_topology gsb_topologies[];
extern const size_t gsb_n_topologies;

/* topo_genstage.c: the library's own pipelines: counter -> t->stages maps
 * -> summer, t->copies of them at once (default one), or with a slow
 * summer. */
void gsb_run_chain(const gsb_topology *t, const gsb_params *p, gsb_result *r);
/* The map stages' callbacks: add one to every value, emit them. */
struct gs_stage_ops;
extern const struct gs_stage_ops gsb_map_ops;
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

/* topo_latency.c: one event in flight against a mutex and condvar
 * hand-off, then an idle pipeline. */
void gsb_run_latency(const gsb_topology *t, const gsb_params *p, gsb_result *r);

/* topo_wake.c: one event after 10 ms of idleness, against a bare futex
 * wake. */
void gsb_run_wake(const gsb_topology *t, const gsb_params *p, gsb_result *r);

/* topo_scale.c: one long chain, or many small pipelines. */
void gsb_run_scale_chain(const gsb_topology *t, const gsb_params *p,
			 gsb_result *r);
void gsb_run_scale_pipelines(const gsb_topology *t, const gsb_params *p,
			     gsb_result *r);

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
void gsb_run_mutex_batch(const gsb_topology *t, const gsb_params *p,
			 gsb_result *r);
void gsb_run_ck_ring(const gsb_topology *t, const gsb_params *p, gsb_result *r);
void gsb_run_gs_ring(const gsb_topology *t, const gsb_params *p, gsb_result *r);
void gsb_run_gs_ring_1(const gsb_topology *t, const gsb_params *p,
		       gsb_result *r);

/* measure.c: the monotonic clock in ns; the CPU time of the whole process
 * (every thread) in seconds; its resident memory now in KiB (-1 if
 * unknown); a sleep; the p50 and p99 of n samples in ns (sorts them;
 * -1 for none). */
uint64_t gsb_now_ns(void);
double gsb_cpu_s(void);
long gsb_rss_kib(void);
void gsb_sleep_ms(unsigned ms);
void gsb_percentiles(uint64_t *ns, size_t n, double *p50_us, double *p99_us);

/* Lets the pipeline idle GSB_IDLE_AFTER_MS, then records in lat the CPU
 * and context switches of the process's other threads over GSB_IDLE_MS. */
void gsb_measure_idle(gsb_latency *lat);

/* Waits until the process has used almost no CPU for 10 ms (its pipelines
 * have settled), or timeout_s has passed (false). */
bool gsb_wait_quiet(double timeout_s);

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
