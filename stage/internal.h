// SPDX-License-Identifier: MIT
/*
 * The engine's private structures: pipelines, stages, subscriptions and the
 * control messages between them, with the functions the stage/ files share.
 *
 * Threading: a stage's fields marked "own" are touched only inside its
 * run, by whichever worker (or its own thread) runs it. Fields marked "atomic" are the only ones two threads share on the
 * hot path. Everything else is written before the thread starts or under
 * the lock named beside it.
 */
#ifndef GS_INTERNAL_H
#define GS_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "genstage/genstage.h"

#include "buffer.h"
#include "demand.h"
#include "executor.h"
#include "ring.h"
#include "timers.h"

#define GS__API __attribute__((visibility("default")))

/* A dispatcher: how a producer reads demand and spreads events. */
typedef struct gs__dispatcher_ops {
	/* Optional: makes the dispatcher's own state (gs_stage.dstate). */
	gs_err (*init)(gs_stage *s);
	/* Reads every subscription's demand, ends those whose consumer let
	 * go, and returns how many events the subscriptions can take now (a
	 * level, not an increment). Sets *changed if anything moved. */
	uint64_t (*collect)(gs_stage *s, bool *changed);
	/* Sends up to n events; returns how many it took (the rest wait in
	 * the producer's buffer). */
	size_t (*dispatch)(gs_stage *s, void *const *events, size_t n);
	/* Optional: a subscription was attached, or is leaving because its
	 * consumer let go, on the producer's thread. */
	void (*attach)(gs_stage *s, gs_sub *sub);
	void (*detach)(gs_stage *s, gs_sub *sub);
	/* Optional: takes over the producer's end of a subscription that
	 * ends while its consumer may still read (true), to let go later. */
	bool (*linger)(gs_stage *s, gs_sub *sub);
	/* Optional, under the pipeline lock: a subscription was made, or has
	 * let go at both ends; unlink returns true when the caller must call
	 * release (after unlocking). */
	void (*link)(gs_stage *s, gs_sub *sub);
	bool (*unlink)(gs_stage *s, gs_sub *sub);
	void (*release)(gs_stage *s);
	/* Every subscription gets the same events: what is left in an ended
	 * subscription's ring is counted, not passed to event_free (the
	 * dispatcher releases each event once). */
	bool shares_events;
	/* Optional: events the dispatcher holds itself, and whether new
	 * demand must wait (back-pressure from its own queues). */
	size_t (*queued)(const gs_stage *s);
	bool (*gated)(const gs_stage *s);
	/* Optional: a draining stage drops what no attached subscription
	 * can ever take (a partition nobody holds); returns how many. */
	size_t (*drop_unheld)(gs_stage *s);
	/* Optional: drops what it holds (the stage is finishing), and frees
	 * its state (the stage is being freed). */
	void (*drop)(gs_stage *s);
	void (*free)(gs_stage *s);
} gs__dispatcher_ops;

extern const gs__dispatcher_ops gs__dispatch_demand_ops;
extern const gs__dispatcher_ops gs__dispatch_broadcast_ops;
extern const gs__dispatcher_ops gs__dispatch_partition_ops;

/* What stages the library builds (sources, push, stream) add to the
 * worker loop. Set before the worker starts. */
typedef enum gs__role_tag { GS__PLAIN = 0, GS__PUSH, GS__STREAM } gs__role_tag;
typedef struct gs__hooks {
	gs__role_tag tag;
	/* Called on every turn of the worker loop; true if it did work. */
	bool (*poll)(gs_stage *s, void *state);
	/* Consumers: read input only while `credit` lasts, as a
	 * producer-consumer does (the credit comes from poll). */
	bool pull;
	/* A pipeline drain reached the stage: it takes nothing new and
	 * finishes once what it holds is delivered (instead of gs_done). */
	void (*drain)(gs_stage *s, void *state);
	/* Events the stage holds beyond its buffer (for gs_stage_stats);
	 * from any thread. */
	size_t (*buffered)(const gs_stage *s, void *state);
	/* Frees the state with the stage. */
	void (*cleanup)(gs_stage *s, void *state);
	/* The pipeline stopped before the stage could start: it never will,
	 * so the threads that wait on it (gs_push, gs_stream_next) are let
	 * go. Not under the pipeline's lock. */
	void (*abandon)(gs_stage *s, void *state);
} gs__hooks;

/* gs_sub.cancel_why before any gs_cancel_reason. */
#define GS__CANCEL_UNSET INT_MIN

/* Why a subscription's consumer end let go (gs_sub.cons_cancel). */
enum {
	GS__CONS_LIVE = 0,
	GS__CONS_CANCEL, /* gs_cancel: the consumer drains what was sent */
	GS__CONS_GONE,   /* the consumer stopped: it reads no more */
};

/* A place in one of the graph's lists of subscriptions (graph.c). */
typedef struct gs__link {
	struct gs_sub *prev, *next;
} gs__link;

struct gs_sub {
	gs__ring ring; /* events, producer -> consumer */
	/* atomic: total demand the consumer has asked for (consumer writes) */
	_Alignas(GS__CACHELINE) _Atomic uint64_t granted;
	/* atomic: GS__CONS_*; cons_reason is written before it */
	_Atomic int cons_cancel;
	int cons_reason;
	/* atomic: the reason of the first gs_cancel_reason (CANCEL_UNSET
	 * until then), set before cons_cancel moves to GS__CONS_CANCEL */
	_Atomic int cancel_why;
	/* atomic: set once the producer will push no more; prod_reason is
	 * written before it */
	_Atomic int prod_end;
	int prod_reason;
	/* atomic: ends still attached; the last to let go frees the ring */
	_Atomic int ends;

	/* producer-own */
	uint64_t granted_seen; /* granted as last read */
	uint64_t sent;         /* events pushed into the ring */
	bool needs_wake;       /* pushed since the consumer was last woken */

	/* producer-own, for the dispatcher */
	int64_t bdemand;  /* broadcast: demand beyond what all can take */
	uint64_t *seq_of; /* broadcast: the number of the event in each slot */

	/* atomic counters for gs_sub_stats, each with one writer */
	_Atomic uint64_t st_sent, st_received, st_dropped, st_filtered;

	/* consumer-own */
	gs__demand demand; /* automatic subscriptions */
	uint64_t received; /* events handed to handle_events */
	/* atomic: manual demand (gs_ask may come from any thread) */
	_Atomic bool manual;
	_Atomic uint64_t asked; /* manual: total asked */

	/* immutable after gs_subscribe */
	bool sync_wanted; /* made by gs_subscribe_sync */
	gs_stage *producer;
	gs_stage *consumer;
	size_t max_demand;
	size_t min_demand;
	gs_cancel_mode cancel;
	size_t partition;     /* partition dispatcher: the one it takes */
	bool holds_partition; /* pipeline lock: its claim is not released */
	gs_selector_fn selector;
	void *selector_arg;

	/* pipeline lock */
	bool live;     /* both ends not yet let go: an edge of the graph */
	bool user_ref; /* the user has the handle (gs_sub_release) */
	struct gs__sync *sync; /* gs_subscribe_sync's waiter, while it waits */
	gs__link all;          /* the pipeline's list */
	gs__link down;         /* the producer's live edges */
	gs__link up;           /* the consumer's live edges */
};

typedef enum gs__msg_kind {
	GS__MSG_ATTACH_OUT, /* a new subscription where we produce */
	GS__MSG_ATTACH_IN,  /* a new subscription where we consume */
	GS__MSG_CALL,       /* gs_call: msg.call */
	GS__MSG_CAST,       /* gs_cast: msg.payload */
	GS__MSG_TIMER,      /* gs_send_after: msg.payload at msg.deadline */
	GS__MSG_INFO,       /* gs_async_info (msg.call set: gs_sync_info) */
} gs__msg_kind;

/* Requests that need no memory, so that stopping never fails for lack of
 * it: bits of gs_stage.ctl, set by any thread (gs__request). */
enum {
	GS__CTL_STOP = 1,   /* stop now with stop_req_reason */
	GS__CTL_DRAIN = 2,  /* pipeline drain: sources finish */
	GS__CTL_DEMAND = 4, /* switch the demand mode to demand_req */
};

typedef struct gs__call gs__call;

typedef struct gs__msg {
	gs__msg_kind kind;
	gs_sub *sub;
	int reason;
	void *payload;
	uint64_t deadline;
	gs__call *call;
	struct gs__msg *next;
} gs__msg;

struct gs_stage {
	/* immutable after gs_stage_new */
	gs_pipeline *p;
	gs_executor *ex; /* the pipeline's */
	gs_kind kind;
	bool blocking;     /* on a thread of its own, not on the executor */
	bool keeps_events; /* gs_stage_opts.keeps_events */
	gs_stage_ops ops;
	void *state;
	char name[64];
	void (*event_free)(void *event, void *arg);
	void *event_free_arg;
	void (*msg_free)(void *msg, void *arg);
	void *msg_free_arg;
	void (*request_free)(void *request, void *reply, void *arg);
	void *request_free_arg;
	const gs__dispatcher_ops *disp;
	gs_dispatcher dconf;
	gs__hooks hooks; /* for stages the library builds itself */

	/* Wake-ups (see executor.h and futex.h): a scheduled stage's state
	 * word, or a blocking stage's event count; control requests. */
	_Alignas(GS__CACHELINE) _Atomic uint32_t sched;
	_Atomic uint32_t ec;
	_Atomic int ctl;           /* GS__CTL_* */
	_Atomic bool stop_claimed; /* the first gs__request(STOP) wins */
	int stop_req_reason;       /* written before GS__CTL_STOP is set */
	_Atomic int demand_req;    /* written before GS__CTL_DEMAND is set */
	_Atomic int demand_mode;   /* the mode last asked for, for readers */
	struct gs_stage *rq_next;  /* run queue link, under the queue's lock */
	uint64_t rq_since;    /* when it was queued (executor.c), same lock */
	uint64_t ex_deadline; /* the executor's timer lock */
	size_t ex_slot; /* same lock: 1 + its entry's index in the heap, 0: none */
	_Atomic bool warned_slow; /* the long-callback warning was given */

	/* control inbox, under inbox_lock; inbox_pending lets the worker skip
	 * the lock when the inbox is empty */
	_Alignas(GS__CACHELINE) pthread_mutex_t inbox_lock;
	gs__msg *inbox_head, *inbox_tail;
	bool inbox_closed;
	_Atomic int inbox_pending;

	/* pipeline lock */
	pthread_t thread; /* blocking stages */
	bool started;
	bool abandoned; /* its pipeline stopped before it could start */
	bool joined;    /* its thread is joined, or being joined, or detached */
	bool finished;
	int reason;
	struct gs_stage *next;
	/* pipeline lock: gs__stage_release (reap.h) */
	bool released; /* free it once finished and unreached */
	bool reaped;   /* claimed for freeing, off the list */
	bool detach;   /* reaped: nobody joins its thread */
	size_t refs;   /* subscriptions (gs_sub) naming it, not yet freed */
	void (*freed)(void *arg);
	void *freed_arg;

	/* own */
	bool inited;
	gs_sub **outs;
	size_t n_outs, cap_outs;
	gs_sub **ins;
	size_t n_ins, cap_ins;
	gs_sub *subscribing;    /* the input whose handle_subscribe runs */
	size_t in_cursor;       /* round-robin start over ins */
	size_t inputs_finished; /* inputs whose producer finished normally */
	gs__buffer buf;
	bool done;     /* gs_done: finish once the buffer is delivered */
	bool stopping; /* leave the loop with stop_reason */
	bool draining; /* GS_STOP_DRAIN: finish once no input is left */
	int stop_reason;
	/* Demand passed on (to handle_demand, or as a producer-consumer's
	 * input credit) that no emitted event has answered yet. */
	uint64_t owed;
	uint64_t credit; /* pull streams: events the puller has room for */
	bool accumulate; /* GS_DEMAND_ACCUMULATE: demand not passed on */
	void *dstate;    /* the dispatcher's own state */
	/* Messages taken from the inbox that a turn left for the next (see
	 * gs__turn_full), in order; how many of them attach a subscription
	 * (the "nobody left" rules wait for those). */
	gs__msg *backlog, *backlog_tail;
	size_t backlog_attaches;

	/* pipeline lock: the graph (graph.c) */
	gs_sub *down;        /* live subscriptions where we produce */
	gs_sub *up;          /* live subscriptions where we consume */
	size_t n_down, n_up; /* their lengths */
	uint64_t visit;      /* cycle check: the epoch this stage was seen */
	gs_stage *dfs_next;  /* cycle check: the walk's stack */
	uint64_t want;       /* demand to pass on, or kept while accumulating */
	gs__timers timers;
	/* gs_async_info: messages keyed by the buffer position they wait
	 * for (the heap of timers.h, positions for deadlines) */
	gs__timers markers;

	/* atomic counters, written by the worker (dropped: by anyone) */
	_Atomic uint64_t st_in, st_out, st_bin, st_bout, st_dropped, st_busy;
	_Atomic uint64_t st_pending, st_buffered, st_released;
	_Atomic uint32_t st_ins, st_outs; /* subscriptions on each side */
	_Atomic bool st_done;             /* gs_done, or drained */
};

struct gs_pipeline {
	pthread_mutex_t lock;
	pthread_cond_t changed;    /* stages finished, or inits ran */
	pthread_mutex_t join_lock; /* one joiner at a time; never under lock */
	gs_pipeline_opts opts;
	gs_executor *ex;  /* a reference, given back at gs_pipeline_free */
	uint64_t slow_ns; /* the long-callback warning's threshold; 0: off */
	gs_stage *stages, **stages_tail;
	gs_sub *subs;   /* live subscriptions, and those with a user_ref */
	uint64_t epoch; /* the cycle check's marks */
	size_t n_stages;
	size_t running;       /* started and not finished */
	size_t reaping;       /* released stages being freed (reap.h) */
	size_t inits_pending; /* started and init not yet run */
	bool started;
	int first_err;
	int init_err; /* the first init that failed */
	/* The stop asked of every stage (0, GS__CTL_DRAIN or GS__CTL_STOP,
	 * which overrides a drain), with its reason: a stage created since
	 * gets it too, or a stop would wait for it for ever. */
	int stop_ctl, stop_reason;
};

/* error.c: a call refused before there is a stage to name: logs why at
 * GS_LOG_ERROR through log's hook (NULL stage), else on stderr, and
 * returns code. */
gs_err gs__refuse(const gs_pipeline_opts *log, gs_err code, const char *fmt,
		  ...) __attribute__((format(printf, 3, 4)));

/* pipeline.c */
void gs__log(gs_stage *s, gs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void gs__stage_failing(gs_stage *s, int reason);
void gs__stage_inited(gs_stage *s, int reason);
/* run.c: s never ran and never will (see gs__hooks.abandon): calls waiting
 * on it are answered GS_ECLOSED and later ones refused; the rest waits for
 * gs_pipeline_free. Not under the pipeline's lock. */
void gs__stage_abandon(gs_stage *s);
/* Marks s finished; true if it was released and is now the caller's to
 * free (gs__reap), once the caller is done with it. */
bool gs__stage_finished(gs_stage *s, int reason);

/* push.c: whether gs_push_close was called on push producer s (false for
 * any other stage). */
bool gs__push_closed(gs_stage *s);

/* observe.c */
/* Logs, for each stage that has not finished, what it waits for. */
void gs__log_unfinished(gs_pipeline *p);

/* stage.c */
extern _Thread_local gs_stage *gs__current; /* the stage being run here */
/* The pipeline whose stop joins the calling thread (a pool's handler
 * thread, pool.c): its stop, wait and free would wait for this thread
 * itself, and are refused (GS_ETHREAD). */
extern _Thread_local const gs_pipeline *gs__joined_by;
gs_err gs__stage_create(gs_pipeline *p, gs_kind kind, const gs_stage_ops *ops,
			void *state, const gs_stage_opts *opts,
			const gs__hooks *hooks, gs_stage **out);
gs_err gs__post_msg(gs_stage *s, gs__msg *m);
gs__msg *gs__msg_new(gs__msg_kind kind, gs_sub *sub, int reason);
void gs__inbox_push_locked(gs_stage *s, gs__msg *m);
void gs__request(gs_stage *s, int ctl, int reason);
void gs__stage_free(gs_stage *s);
void gs__drop(gs_stage *owner, void *const *events, size_t n);
void gs__count_dropped(gs_stage *owner, size_t n);
void gs__stop(gs_stage *s, int reason);
bool gs__is_current(const gs_stage *s);
bool gs__in_any_stage(void);
bool gs__in_scheduled_stage(void);
void gs__busy_add(gs_stage *s, uint64_t since_ns);
uint64_t gs__now_ns(void);
/* What gs__now_ns last returned on this thread (0 before it ran here): a
 * time a little in the past, for checks that may err early, read for
 * free. Callbacks are timed, and idle workers read the clock as they
 * spin, so it is seldom more than a turn old. */
extern _Thread_local uint64_t gs__clock_seen;

/* A scheduled stage's quantum: it yields after this many productive turns
 * or this much time, whichever comes first, so that no stage starves the
 * others on its worker. A turn moves at most a chunk per input, and
 * handles at most GS__TURN_MESSAGES messages and as many due timers, or
 * what fits in the quantum's time: a flood of casts or timers waits for
 * the next turns, after the run has checked its quantum. */
#ifndef GS_QUANTUM_TURNS
#define GS_QUANTUM_TURNS 32
#endif
#ifndef GS_QUANTUM_NS
#define GS_QUANTUM_NS 200000
#endif
#define GS__TURN_MESSAGES 64

/* Whether a turn that has handled `n` messages since the clock read
 * `since` has had its share. */
static inline bool gs__turn_full(unsigned n, uint64_t since)
{
	return n >= GS__TURN_MESSAGES ||
	       gs__clock_seen - since >= GS_QUANTUM_NS;
}
void gs__count(_Atomic uint64_t *counter, uint64_t n);
/* Condition variables on the monotonic clock, waited on with a timeout in
 * milliseconds (negative: for ever) turned into a deadline once; the wait
 * returns true when the deadline has passed. */
int gs__cond_init(pthread_cond_t *cv);
struct timespec gs__deadline(int timeout_ms);
bool gs__cond_wait(pthread_cond_t *cv, pthread_mutex_t *m, int timeout_ms,
		   const struct timespec *deadline);

/* run.c: the stage loop */
gs_err gs__start_stage(gs_stage *s);
void gs__enter_done(gs_stage *s);
/* Makes `s` look for work: queues a scheduled stage, or moves a blocking
 * stage's event count. From any thread, once per batch at most. */
void gs__wake(gs_stage *s);

/* messages.c */
void gs__handle_message(gs_stage *s, gs__msg *m);
void gs__discard_message(gs_stage *s, gs__msg *m);
bool gs__fire_timers(gs_stage *s);
bool gs__fire_markers(gs_stage *s);
void gs__discard_timers(gs_stage *s);

/* subscription.c */
void gs__attach_out(gs_stage *s, gs_sub *sub);
void gs__attach_in(gs_stage *s, gs_sub *sub);
void gs__end_out(gs_stage *s, size_t idx, int reason, int notify_reason,
		 bool notify);
void gs__grant(gs_sub *sub, uint64_t n);
void gs__release_in(gs_stage *s, size_t idx, int reason);
void gs__detach(gs_sub *sub);
bool gs__read_inputs(gs_stage *s);

/* graph.c */
void gs__sub_ended(gs_sub *sub);
/* One end of `sub` attached (GS_OK) or could not (the reason): tells a
 * gs_subscribe_sync caller still waiting. */
void gs__sync_report(gs_sub *sub, int result);
void gs__sub_free(gs_sub *sub);

/* dispatcher.c */
gs_err gs__dispatcher_init(gs_stage *s, const gs_dispatcher *d);
void gs__dispatcher_fini(gs_stage *s);
size_t gs__dispatch(gs_stage *s, void *const *events, size_t n);
void gs__count_buffered(gs_stage *s);
bool gs__dispatch_buffer(gs_stage *s);
void gs__wake_consumers(gs_stage *s);
size_t gs__sub_room(gs_sub *sub);
size_t gs__push(gs_stage *s, gs_sub *sub, void *const *events, size_t n);
bool gs__end_if_cancelled(gs_stage *s, size_t idx, bool *changed);
/* Under the pipeline lock: takes partition `want` (GS_PARTITION(i), or 0
 * for the lowest nobody holds) for `sub`, alone or shared. */
gs_err gs__partition_claim(gs_stage *producer, gs_sub *sub, size_t want,
			   bool share);
void gs__partition_release(gs_sub *sub);

#endif
