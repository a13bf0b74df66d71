// SPDX-License-Identifier: MIT
/*
 * Flow: collection-style pipelines (map, filter, partition, reduce, windows,
 * joins) run as a graph of stages with back-pressure, as Elixir's Flow.
 *
 * A gs_flow is a lazy description: sources, then calls that append steps,
 * then one sink (gs_flow_run, gs_flow_collect, gs_flow_stream,
 * gs_flow_into_stages) that builds the stages and runs them. Builder calls
 * return a gs_err and also record the first error in the flow, so a chain
 * of calls may be checked once: every later call and the sink return that
 * error, and gs_flow_errmsg says what was wrong.
 *
 *	gs_flow *f;
 *	gs_flow_from_fn(read_lines, file, NULL, &f);
 *	gs_flow_flat_map(f, split_words, NULL);
 *	gs_flow_partition(f, &(gs_flow_partition_opts){ .key = word_key });
 *	gs_flow_reduce(f, table_new, count_word, NULL);
 *	gs_flow_acc_free(f, table_free);
 *	err = gs_flow_collect(f, &tables, &n);
 *	gs_flow_free(f);
 *
 * How it runs. Consecutive per-event operations are fused into one stage.
 * A gs_flow_from_array/gs_flow_from_fn source is one producer that applies
 * the operations that follow it before emitting. gs_flow_from_stages adds
 * a layer of producer-consumers (one per given producer unless
 * opts.stages says otherwise) fed by the given producers. Every
 * gs_flow_partition, gs_flow_shuffle, gs_flow_merge and join adds a layer
 * of `stages` producer-consumers, fed through a partition dispatcher (by
 * key) or a demand dispatcher (shuffle). A sink adds one consumer.
 * Memory stays bounded: a stage reads input only as its downstream has
 * demand for what it sends on, so what waits past the demand is about one
 * batch's worth (or a flat_map's expansion of it); and a stage that feeds
 * a partition stops reading while any partition has 10000 events queued,
 * so a slow partition slows the flow instead of piling up (GenStage's
 * partition dispatcher queues without limit).
 *
 * Events are void * (integers as uintptr_t), owned as in the engine: an
 * operation owns the event it is given (a map that returns a new event
 * frees the old one if it must). Every event the flow drops (filtered,
 * rejected, duplicate, late, discarded by a hash, left over when a stage
 * stops) goes to opts.event_free of the first source, called from any
 * stage thread. Accumulators are created by acc_new on the stage that owns
 * them and, when the flow discards them, freed by the function given to
 * gs_flow_acc_free; so are the accumulators a GS_FLOW_EMIT_STATE trigger
 * sent on, if they are dropped downstream (gs_flow_run's results, events
 * in flight at a stop). What an on_trigger function emits counts as
 * events. Nothing leaks on error or early stop.
 *
 * Where we differ from Elixir's Flow, and why:
 * - Operations right after a source run inside the source producer (no
 *   extra mapper stages as Flow adds): a generator is sequential anyway,
 *   and it saves a hop. Use gs_flow_shuffle to spread them over stages.
 * - reduce needs a layer of stages before it (gs_flow_partition,
 *   gs_flow_shuffle, gs_flow_departition, a merge; GS_EINVAL otherwise):
 *   Flow allows reducing in its mapper stages, which we do not create.
 * - Keys are uint64_t from a gs_flow_key_fn: two events are the same key
 *   (uniq_by, joins, partition routing) exactly when the keys are equal.
 *   Hash strings (or intern them) yourself.
 * - The default emit is GS_FLOW_EMIT_STATE (Flow's is :events): a C
 *   accumulator is opaque, so we cannot enumerate it. With
 *   GS_FLOW_EMIT_STATE an accumulator without acc_free (a value such as a
 *   counter in the pointer) is emitted and kept, as in Flow; one with
 *   acc_free is handed downstream and the window restarts from acc_new,
 *   since one pointer cannot have two owners. Use gs_flow_on_trigger to
 *   copy instead.
 * - Triggers are checked after each batch of events, as Flow does, but our
 *   batches are decided by demand: only data-independent expectations
 *   (ordered event times, counts) are deterministic.
 * - Custom triggers (Flow.Window.trigger/3), session windows and
 *   emit_and_reduce are not offered yet. group_by keeps events in arrival
 *   order (Flow's lists come out reversed).
 * - Flow's departition/5 is gs_flow_departition_merge. gs_flow_departition
 *   only funnels a layer into one stage, for a gs_flow_reduce (or
 *   take_sort) of everything the layer emits, windows or not.
 * - Joins emit the join of a window's events at each of its triggers (the
 *   final "done" one included), with NULL for the missing side in outer
 *   modes.
 */
#ifndef GENSTAGE_FLOW_H
#define GENSTAGE_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boundary.h"
#include "dispatcher.h"
#include "error.h"
#include "pipeline.h"
#include "sources.h"
#include "stage.h"
#include "subscription.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gs_flow gs_flow;

/* Where flat_map and on_trigger put the events they emit. */
typedef struct gs_flow_out gs_flow_out;

/* Appends `event` to `out`; on GS_OK `out` owns it, on GS_ENOMEM it stays
 * the caller's. Only within the callback that was given `out`. */
gs_err gs_flow_out_push(gs_flow_out *out, void *event);

/* Event callbacks, all called on a stage thread, one at a time per stage,
 * possibly on several stages at once: keep `arg` read-only or locked. */

/* Returns the event that replaces `event` (the callee owns `event`). */
typedef void *(*gs_flow_map_fn)(void *arg, void *event);
/* Whether to keep (filter) or drop (reject) `event`. */
typedef bool (*gs_flow_pred_fn)(void *arg, const void *event);
/* Pushes zero or more events for `event` (which the callee owns) into
 * `out`. Non-zero stops the flow with that reason. */
typedef int (*gs_flow_flat_map_fn)(void *arg, void *event, gs_flow_out *out);
/* Looks at `event`, which then goes on. Non-zero stops the flow. */
typedef int (*gs_flow_each_fn)(void *arg, const void *event);
/* A 64-bit key; equal keys mean the same key. */
typedef uint64_t (*gs_flow_key_fn)(void *arg, const void *event);
/* An event time in milliseconds (any epoch, consistently). */
typedef int64_t (*gs_flow_time_fn)(void *arg, const void *event);

/* Versions of flow.h's option structs and tables (see genstage/version.h). */
#define GS_FLOW_OPTS_VERSION 0
#define GS_FLOW_PARTITION_OPTS_VERSION 0
#define GS_FLOW_DEPARTITION_FNS_VERSION 0
#define GS_FLOW_JOIN_VERSION 0

typedef struct gs_flow_opts {
	uint32_t version; /* GS_FLOW_OPTS_VERSION, or 0 */
	/* Receives every event the flow drops; must be thread-safe. NULL:
	 * dropped events are forgotten (fine for integers). */
	void (*event_free)(void *event, void *arg);
	void *event_free_arg;
	/* gs_flow_from_stages: number of stages fed by the producers (0: one
	 * per producer). */
	size_t stages;
	/* gs_flow_from_stages: demand of each subscription to the producers
	 * (0: the engine's defaults). */
	size_t max_demand, min_demand;
} gs_flow_opts;

/*
 * Sources. Each makes a new flow in *out (free it with gs_flow_free) and
 * reads `opts` (may be NULL) once; on error *out is untouched.
 * from_array copies the array of pointers; the events pass to the flow
 * (gs_flow_free of a flow never run hands them to event_free).
 * from_fn calls `gen` (see gs_gen_fn) on the source's thread as demand
 * comes; `arg` stays the caller's. When a flat_map follows a source, the
 * source takes its input one raw event first, then as many as the events
 * made per raw event so far say the demand needs: what waits in its buffer
 * past the demand is about one raw event's worth, however much each
 * expands. from_stages uses existing producers of
 * pipeline `p`, which the sink then runs in; n == 0 is GS_EINVAL, and a
 * min_demand not below max_demand GS_EDEMAND.
 */
gs_err gs_flow_from_array(void *const *events, size_t n,
			  const gs_flow_opts *opts, gs_flow **out);
gs_err gs_flow_from_fn(gs_gen_fn gen, void *arg, const gs_flow_opts *opts,
		       gs_flow **out);
gs_err gs_flow_from_stages(gs_pipeline *p, gs_stage *const *producers, size_t n,
			   const gs_flow_opts *opts, gs_flow **out);

/* Frees the description and what the run left (stage states, an internal
 * pipeline of gs_flow_stream). A flow run inside a caller's pipeline must
 * be freed after that pipeline is. NULL is a no-op. */
void gs_flow_free(gs_flow *f);

/* The first error recorded by a builder call or a sink (GS_OK if none),
 * and a sentence saying why; never NULL. */
gs_err gs_flow_error(const gs_flow *f);
const char *gs_flow_errmsg(const gs_flow *f);

/* Per-event operations, fused with their neighbours into one stage. They
 * must come before gs_flow_reduce in a partition (GS_EINVAL after it).
 * uniq_by keeps the first event of each key, per stage (as Flow: per
 * partition), and remembers every key it saw until the stage ends. */
gs_err gs_flow_map(gs_flow *f, gs_flow_map_fn fn, void *arg);
gs_err gs_flow_filter(gs_flow *f, gs_flow_pred_fn fn, void *arg);
gs_err gs_flow_reject(gs_flow *f, gs_flow_pred_fn fn, void *arg);
gs_err gs_flow_flat_map(gs_flow *f, gs_flow_flat_map_fn fn, void *arg);
gs_err gs_flow_each(gs_flow *f, gs_flow_each_fn fn, void *arg);
gs_err gs_flow_uniq_by(gs_flow *f, gs_flow_key_fn fn, void *arg);

/* Windows: how a partition splits events before reducing them. The zero
 * value is the global window. */
typedef enum gs_flow_window_kind {
	GS_FLOW_WINDOW_GLOBAL = 0, /* one window, done at end of input */
	GS_FLOW_WINDOW_FIXED,      /* by event time, duration_ms long */
	GS_FLOW_WINDOW_PERIODIC,   /* by processing time, duration_ms */
	GS_FLOW_WINDOW_COUNT,      /* every `count` events */
} gs_flow_window_kind;

typedef struct gs_flow_window {
	gs_flow_window_kind kind;
	int64_t duration_ms;  /* fixed, periodic */
	size_t count;         /* count */
	gs_flow_time_fn time; /* fixed: the event time */
	void *time_arg;
	int64_t lateness_ms;  /* fixed: see gs_flow_window_lateness */
	size_t every;         /* trigger after every `every` events */
	unsigned periodic_ms; /* trigger every periodic_ms, per stage */
} gs_flow_window;

gs_flow_window gs_flow_window_global(void);
gs_flow_window gs_flow_window_fixed(int64_t duration_ms, gs_flow_time_fn time,
				    void *arg);
gs_flow_window gs_flow_window_periodic(int64_t duration_ms);
gs_flow_window gs_flow_window_count(size_t count);
/*
 * Fixed windows: a window whose end has passed (every input of the stage
 * has sent an event of a later window; Flow's watermark) fires a
 * GS_FLOW_TRIGGER_WATERMARK trigger, still takes late events for
 * `lateness_ms` of processing time, then fires GS_FLOW_TRIGGER_DONE.
 * Without lateness it fires DONE at once and later events for it are
 * dropped (event_free).
 */
gs_flow_window gs_flow_window_lateness(gs_flow_window w, int64_t lateness_ms);
/* A trigger after every `n` events reduced in a window. */
gs_flow_window gs_flow_window_trigger_every(gs_flow_window w, size_t n);
/* A trigger every `ms` of processing time, on every open window. */
gs_flow_window gs_flow_window_trigger_periodically(gs_flow_window w,
						   unsigned ms);

typedef struct gs_flow_partition_opts {
	uint32_t version; /* GS_FLOW_PARTITION_OPTS_VERSION, or 0 */
	/* Stages in the new layer; 0: the number of online CPUs. */
	size_t stages;
	/* Routing: `hash` (a partition in [0, stages) or GS_DISCARD) if set,
	 * else `key` (mixed, modulo stages), else the event's pointer value
	 * as key. Equal keys always land in the same stage. */
	gs_flow_key_fn key;
	void *key_arg;
	gs_hash_fn hash;
	void *hash_arg;
	gs_flow_window window;
	/* Demand of each subscription into the new layer (0: defaults). */
	size_t max_demand, min_demand;
} gs_flow_partition_opts;

/* Routes events by key into a new layer of stages (see the opts). `opts`
 * may be NULL. Zero stages mean the default, never zero. */
gs_err gs_flow_partition(gs_flow *f, const gs_flow_partition_opts *opts);
/* A new layer fed by demand (any event to any stage); only stages and
 * demand of `opts` are used, and the window. */
gs_err gs_flow_shuffle(gs_flow *f, const gs_flow_partition_opts *opts);
/*
 * A new flow in *out whose first layer is fed by all of `flows`,
 * partitioned as `opts` says. The given flows are used up: their steps
 * move into the new flow, running them is GS_ESTATE, and each still needs
 * gs_flow_free. All must run in the same pipeline. A refused merge (or
 * join) makes no flow and records why in each of the given flows.
 */
gs_err gs_flow_merge(gs_flow *const *flows, size_t n,
		     const gs_flow_partition_opts *opts, gs_flow **out);
/* A new layer of one stage that receives what every stage of the current
 * layer emits (Flow's departition with the merge left to a reduce that
 * follows). */
gs_err gs_flow_departition(gs_flow *f, const gs_flow_partition_opts *opts);

/* Reducing. */
typedef void *(*gs_flow_acc_new_fn)(void *arg);
/* Folds `event` (now the callee's) into *acc. Non-zero stops the flow. */
typedef int (*gs_flow_reduce_fn)(void *arg, void **acc, void *event);
typedef void (*gs_flow_acc_free_fn)(void *arg, void *acc);

typedef enum gs_flow_trigger_kind {
	GS_FLOW_TRIGGER_DONE = 0,  /* the window is over (or input ended) */
	GS_FLOW_TRIGGER_WATERMARK, /* fixed window passed, lateness open */
	GS_FLOW_TRIGGER_EVERY,     /* gs_flow_window_trigger_every */
	GS_FLOW_TRIGGER_PERIODIC,  /* gs_flow_window_trigger_periodically */
} gs_flow_trigger_kind;

typedef struct gs_flow_trigger {
	gs_flow_window_kind window;
	/* 0 for global; the window's start time for fixed (as Flow); the
	 * window's number from 0 for count and periodic. */
	int64_t window_id;
	gs_flow_trigger_kind kind;
	size_t partition, partitions; /* this stage's index, and the count */
} gs_flow_trigger;

/*
 * Decides what a trigger emits: pushes events into `out` and leaves in
 * *acc the accumulator to keep (it may replace it, freeing the old one, or
 * push the accumulator itself and replace it). After a DONE trigger the
 * library frees a non-NULL *acc with acc_free. Non-zero stops the flow.
 */
typedef int (*gs_flow_trigger_fn)(void *arg, void **acc,
				  const gs_flow_trigger *t, gs_flow_out *out);

typedef enum gs_flow_emit_mode {
	GS_FLOW_EMIT_STATE = 0, /* the accumulator (see the differences) */
	GS_FLOW_EMIT_NOTHING,
	GS_FLOW_EMIT_EVENTS, /* the accumulator is a gs_flow_events list */
} gs_flow_emit_mode;

/*
 * Reduces each window of each stage of the current partition layer: the
 * window's accumulator starts as acc_new(arg) (NULL acc_new: NULL, i.e.
 * 0) and takes every event through `reducer`. Needs a layer of stages
 * before it (a partition, shuffle, departition or merge) and at most one
 * reduce per layer (GS_EINVAL).
 */
gs_err gs_flow_reduce(gs_flow *f, gs_flow_acc_new_fn acc_new,
		      gs_flow_reduce_fn reducer, void *arg);
/* How the library frees accumulators it discards (called with the
 * reduce's arg, never with NULL). After gs_flow_reduce. */
gs_err gs_flow_acc_free(gs_flow *f, gs_flow_acc_free_fn fn);
/* What triggers emit: a function, or one of the modes; at most one of the
 * two, after gs_flow_reduce. */
gs_err gs_flow_on_trigger(gs_flow *f, gs_flow_trigger_fn fn, void *arg);
gs_err gs_flow_emit(gs_flow *f, gs_flow_emit_mode mode);

/*
 * Flow's departition/5: merges, window by window, what every stage of the
 * current layer (which must reduce, group or join) emits at its triggers,
 * in a new layer of one stage. Per window of that layer, the merge's
 * accumulator starts as acc_new(arg) (NULL acc_new: NULL) and takes, from
 * any stage and at any trigger, each emitted item through merge (which
 * owns it; non-zero stops the flow). Once every stage has fired the
 * window's DONE trigger, done(arg, acc, window_id) gives the one event the
 * window emits (done owns acc; NULL done: acc itself is emitted). Windows
 * some stage never closed (a fixed window it had no event in) are given
 * at the end of input, oldest first. acc_free frees the accumulators the
 * flow discards (an error, a stop). window_id is the trigger's (see
 * gs_flow_trigger). Per-event operations added after it apply to what it
 * gives. Only the demand of `opts` is used (may be NULL; a window other
 * than global is GS_EINVAL). Each emitted item travels in a small
 * envelope: one allocation per item the layer before emits.
 */
typedef void *(*gs_flow_done_fn)(void *arg, void *acc, int64_t window_id);
typedef struct gs_flow_departition_fns {
	uint32_t version; /* GS_FLOW_DEPARTITION_FNS_VERSION, or 0 */
	gs_flow_acc_new_fn acc_new;
	gs_flow_reduce_fn merge;
	gs_flow_done_fn done;
	gs_flow_acc_free_fn acc_free;
	void *arg;
} gs_flow_departition_fns;
gs_err gs_flow_departition_merge(gs_flow *f, const gs_flow_departition_fns *fns,
				 const gs_flow_partition_opts *opts);

/*
 * A growable list of events, for accumulators whose triggers emit the
 * events they gathered (GS_FLOW_EMIT_EVENTS). The list owns its
 * events. Not thread-safe: it lives in one stage.
 */
typedef struct gs_flow_events gs_flow_events;
gs_flow_events *gs_flow_events_new(void);
gs_err gs_flow_events_push(gs_flow_events *l, void *event);
size_t gs_flow_events_len(const gs_flow_events *l);
void *gs_flow_events_at(const gs_flow_events *l, size_t i);
/* Frees the list, handing each event still in it to `event_free` (may be
 * NULL). NULL is a no-op. */
void gs_flow_events_free(gs_flow_events *l,
			 void (*event_free)(void *event, void *arg), void *arg);

/*
 * Groups of events by key: the accumulator of gs_flow_group_by. Each group
 * is a gs_flow_events list, in arrival order, owned by the groups. Not
 * thread-safe: it lives in one stage, then with whoever it is emitted to.
 */
typedef struct gs_flow_groups gs_flow_groups;
/* The number of groups (distinct keys); 0 for NULL. */
size_t gs_flow_groups_len(const gs_flow_groups *g);
/* The key and the events of group i (in [0, len)), in the order the keys
 * first arrived; 0 and NULL out of range. The list stays the groups'. */
uint64_t gs_flow_groups_key(const gs_flow_groups *g, size_t i);
gs_flow_events *gs_flow_groups_at(const gs_flow_groups *g, size_t i);
/* The events of `key`, or NULL if no event had it. */
gs_flow_events *gs_flow_groups_find(const gs_flow_groups *g, uint64_t key);
/* Frees the groups, handing every event still in them to `event_free`
 * (may be NULL). NULL is a no-op. */
void gs_flow_groups_free(gs_flow_groups *g,
			 void (*event_free)(void *event, void *arg), void *arg);

/*
 * Flow's group_by and group_by_key: a gs_flow_reduce whose accumulator is
 * a gs_flow_groups (freed with the flow's event_free when the flow discards
 * it), so each stage of the partition emits one gs_flow_groups per window
 * (or per trigger) that the receiver frees with gs_flow_groups_free.
 * group_by keeps the events themselves; group_by_key keeps value(arg,
 * event) (value owns the event; Flow's {key, value} pairs). Partition by
 * the same key first so that each key lives in one stage. The rules of
 * gs_flow_reduce apply; gs_flow_emit(GS_FLOW_EMIT_EVENTS) and
 * gs_flow_acc_free (the groups free themselves) are refused.
 * A gs_flow_groups (or take_sort's list) that the flow drops later
 * (gs_flow_run's results, a stop) is freed with its events.
 */
gs_err gs_flow_group_by(gs_flow *f, gs_flow_key_fn key, void *arg);
gs_err gs_flow_group_by_key(gs_flow *f, gs_flow_key_fn key,
			    gs_flow_map_fn value, void *arg);

/* Orders two events: negative if `a` comes first, positive if `b` does. */
typedef int (*gs_flow_cmp_fn)(void *arg, const void *a, const void *b);

/*
 * Flow's take_sort: the `n` first events of the whole flow in the order of
 * `cmp`. The flow ends in one stage that emits, once its input ends, a
 * single gs_flow_events list of at most n events, sorted (the receiver
 * frees it with gs_flow_events_free; ties in any order). The events not
 * kept go to event_free as they lose their place. If the current layer is
 * one of stages without a reduce and with a plain global window, it does
 * the work: with one stage it is that stage, with several each first
 * keeps its own n best, so only n per stage travel on to a departition.
 * Otherwise a departition is added. Each event costs O(log n) compares.
 * n == 0 or a NULL cmp is GS_EINVAL, and so is changing what it set up
 * (gs_flow_acc_free, gs_flow_on_trigger, gs_flow_emit) afterwards.
 */
gs_err gs_flow_take_sort(gs_flow *f, size_t n, gs_flow_cmp_fn cmp, void *arg);

/*
 * Joins. Both flows are partitioned by their key into a new layer
 * (opts->stages etc.; opts->key/hash are ignored) and, per stage and
 * window, every left event is paired with every right event of an equal
 * key: join(arg, left, right) makes the joined event; left or right is
 * NULL for an unmatched event in the outer modes. join borrows both
 * events; the library frees them (event_free) when their window is done.
 * The given flows are used up, as by gs_flow_merge.
 */
typedef enum gs_flow_join_mode {
	GS_FLOW_JOIN_INNER = 0,
	GS_FLOW_JOIN_LEFT_OUTER,
	GS_FLOW_JOIN_RIGHT_OUTER,
	GS_FLOW_JOIN_FULL_OUTER,
} gs_flow_join_mode;

typedef void *(*gs_flow_join_fn)(void *arg, void *left, void *right);

typedef struct gs_flow_join {
	uint32_t version; /* GS_FLOW_JOIN_VERSION, or 0 */
	gs_flow_join_mode mode;
	gs_flow_key_fn left_key, right_key;
	gs_flow_join_fn join;
	void *arg;
} gs_flow_join;

/* Joins all of both flows: the join is emitted when input ends.
 * opts->window must be global (GS_EINVAL). */
gs_err gs_flow_bounded_join(gs_flow *left, gs_flow *right,
			    const gs_flow_join *join,
			    const gs_flow_partition_opts *opts, gs_flow **out);
/* Joins per window of opts->window, emitted at each trigger. */
gs_err gs_flow_window_join(gs_flow *left, gs_flow *right,
			   const gs_flow_join *join,
			   const gs_flow_partition_opts *opts, gs_flow **out);

/*
 * Sinks. Each runs a flow once: a second sink is GS_ESTATE, even after a
 * failed run. A callback's error stops the flow and the events and
 * accumulators in flight are freed. gs_flow_run and gs_flow_collect return
 * that error and record it (gs_flow_error, gs_flow_errmsg); a stream's
 * gs_stream_next returns it instead of GS_ECLOSED once the results before
 * it are pulled; with gs_flow_into_stages, gs_pipeline_wait returns it.
 *
 * gs_flow_run runs to completion, dropping the results (to event_free),
 * and returns the first error. A flow from gs_flow_from_stages runs in its
 * pipeline: started if it was not, and waited for as a whole.
 *
 * gs_flow_collect runs to completion and, on GS_OK, sets *events to a
 * malloc'ed array of the n results (the caller frees the array and owns
 * the events); on error nothing is set and the results are freed.
 */
gs_err gs_flow_run(gs_flow *f);
gs_err gs_flow_collect(gs_flow *f, void ***events, size_t *n);

/*
 * Builds the flow with a gs_stream consumer at its end and sets *out to
 * it; pull with gs_stream_next until GS_ECLOSED. With p NULL the flow
 * runs in a pipeline of its own, started here and stopped by
 * gs_flow_free; otherwise in p (which must be the pipeline of its
 * from_stages sources, if any), which the caller starts, waits for and
 * frees. `opts` as for gs_stream (may be NULL).
 */
gs_err gs_flow_stream(gs_flow *f, gs_pipeline *p, const gs_stage_opts *opts,
		      gs_stage **out);

/* Builds the flow in p and subscribes each of `consumers` (stages of p)
 * to every stage of its last layer, with `sub` (may be NULL; the cancel
 * mode is forced to transient so a consumer waits for all of them). The
 * caller starts, waits for and frees p. */
gs_err gs_flow_into_stages(gs_flow *f, gs_pipeline *p,
			   gs_stage *const *consumers, size_t n,
			   const gs_sub_opts *sub);

#ifdef __cplusplus
}
#endif

#endif
