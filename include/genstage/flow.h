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
 * error, and gs_flow_errmsg says what was wrong. A gs_flow is not
 * thread-safe: describe, run and free it from one thread at a time.
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
 * How it runs. As in Flow, a source (gs_flow_from_array, gs_flow_from_fn,
 * gs_flow_from_sources: one producer per array or generator) only hands
 * out raw items as the demand asks; the operations that follow it run,
 * fused, in a layer of opts.stages producer-consumers (Flow's mapper
 * stages) fed by the sources by demand. When nothing follows a source
 * before a partition or a sink, no such layer is made and the source
 * feeds what follows. gs_flow_from_stages adds the same layer (one stage
 * per given producer unless opts.stages says otherwise) behind existing
 * producers, and gs_flow_through_stages one behind the caller's
 * producer-consumers. Every gs_flow_partition, gs_flow_shuffle,
 * gs_flow_merge and join adds a layer of `stages` producer-consumers, fed
 * through a partition dispatcher (by key) or a demand dispatcher
 * (shuffle). Consecutive per-event operations are fused into one stage.
 * A sink adds one consumer.
 * Memory stays bounded: a stage reads input only as its downstream has
 * demand for what it sends on, so what waits past the demand is about one
 * batch's worth; a stage right after the sources whose operations expand
 * an item into many (flat_map, map_batch) asks them for one item first,
 * then for as many as the events made per item so far say will make
 * about one demand's worth, so a block of text split into words waits as
 * one block, not as the words of a whole batch of blocks; and a stage
 * that feeds a partition stops reading while any partition has 10000
 * events queued, so a slow partition slows the flow instead of piling up
 * (GenStage's partition dispatcher queues without limit).
 *
 * Events are void * (integers as uintptr_t), owned as in the engine: an
 * operation owns the event it is given (a map that returns a new event
 * frees the old one if it must). Every event the flow drops (filtered,
 * rejected, duplicate, late, discarded by a hash, left over when a stage
 * stops) goes to opts.event_free of the first source, called from any
 * stage thread. It receives events of every layer (a source's items, a
 * map's or flat_map's outputs, a trigger's results), so where those are
 * different types, let the events say which they are (a tag first). Accumulators are created by acc_new on the stage that owns
 * them and, when the flow discards them, freed by the function given to
 * gs_flow_acc_free; so are the accumulators a GS_FLOW_EMIT_STATE trigger
 * sent on, if they are dropped downstream (gs_flow_run's results, events
 * in flight at a stop). What an on_trigger function emits counts as
 * events. Nothing leaks on error or early stop.
 *
 * Where we differ from Elixir's Flow, and why:
 * - Keys are uint64_t from a gs_flow_key_fn: two events are the same key
 *   (uniq_by, joins, partition routing) exactly when the keys are equal.
 *   gs_flow_hash_str and gs_flow_hash_bytes make keys of strings and
 *   bytes; interning is the way when a 2^-64 collision is too many.
 * - The default emit is GS_FLOW_EMIT_STATE (Flow's is :events): a C
 *   accumulator is opaque, so we cannot enumerate it. With
 *   GS_FLOW_EMIT_STATE an accumulator without acc_free (a value such as a
 *   counter in the pointer) is emitted and kept, as in Flow; one with
 *   acc_free is handed downstream and the window restarts from acc_new,
 *   since one pointer cannot have two owners. Use gs_flow_on_trigger to
 *   copy instead. gs_flow_emit_and_reduce emits nothing at its triggers
 *   unless told (GS_FLOW_EMIT_EVENTS, on_trigger): its stream holds
 *   events, and an accumulator is not one.
 * - Triggers are checked after each batch of events, as Flow does, but our
 *   batches are decided by demand: only data-independent expectations
 *   (ordered event times, counts) are deterministic. A custom trigger
 *   (gs_flow_window_trigger) decides per event, before or after it, with
 *   a 64-bit state per window, where Flow's trigger/3 splits each batch
 *   with an accumulator of any type: the same decisions, with no
 *   allocation to manage.
 * - map_batch may stand anywhere among a layer's per-event operations
 *   (Flow wants it first): ours run a batch at a time anyway.
 * - A window is refused (at the sink, GS_EINVAL) on any layer that
 *   reduces nothing, where Flow refuses it only on a layer with no
 *   operation at all: on a layer that only maps, it would do nothing.
 * - Session windows are not offered yet. group_by keeps events in arrival
 *   order (Flow's lists come out reversed).
 * - Flow's departition/5 is gs_flow_departition_merge. gs_flow_departition
 *   only funnels a layer into one stage, for a gs_flow_reduce (or
 *   take_sort) of everything the layer emits, windows or not.
 * - Joins pair a window's events at its triggers rather than as they
 *   arrive: each pair once, at the first trigger after both its events
 *   came, and the unmatched events of the outer modes (with NULL for the
 *   missing side) at the final "done" one. Operations and a reduce after a
 *   join take the pairs, as in Flow.
 * - through_stages takes producer-consumers the caller made in a pipeline
 *   (Flow's through_specs, which starts them, has no counterpart).
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
/* Takes a whole batch events[0..n) (the callee owns every event, and may
 * overwrite the array, which is lent for the call) and pushes the events
 * that replace it into `out`. Non-zero stops the flow. */
typedef int (*gs_flow_batch_fn)(void *arg, void **events, size_t n,
				gs_flow_out *out);

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
	/* The stages fed by the sources, where the operations that follow
	 * run (0: the number of online CPUs; for gs_flow_from_stages, one per
	 * producer). One stage after one source keeps the source's order. */
	size_t stages;
	/* Demand of each subscription of those stages to the sources (0: the
	 * engine's defaults). */
	size_t max_demand, min_demand;
	/* The flow's callbacks may block (I/O in a map, a slow handler):
	 * every stage it makes gets a thread of its own instead of sharing
	 * the pipeline's workers (see gs_stage_opts.blocking). Without it a
	 * generator's source still gets one: a generator is where a flow
	 * reads the outside world. A merge or join blocks if any input
	 * does. */
	bool blocking;
} gs_flow_opts;

/*
 * Sources. Each makes a new flow in *out (free it with gs_flow_free) and
 * reads `opts` (may be NULL) once; on error *out is untouched; a
 * min_demand not below max_demand (GS_DEFAULT_MAX_DEMAND when 0) is
 * GS_EDEMAND, a max_demand above GS_MAX_DEMAND GS_EINVAL, a too-new
 * version GS_EVERSION, each said on stderr (no flow holds a message yet). from_array
 * copies the array of pointers (an n whose copy's size would overflow is
 * GS_EINVAL); the events pass to the flow (gs_flow_free
 * of a flow never run hands them to event_free). from_fn calls `gen` (see
 * gs_gen_fn) on the source's thread as demand comes; `arg` stays the
 * caller's. What follows runs in opts.stages stages (see "How it runs").
 * from_stages uses existing producers of pipeline `p`, which the sink
 * then runs in; n == 0 or a NULL producer is GS_EINVAL, a producer of
 * another pipeline GS_EPIPELINE.
 */
gs_err gs_flow_from_array(void *const *events, size_t n,
			  const gs_flow_opts *opts, gs_flow **out);
gs_err gs_flow_from_fn(gs_gen_fn gen, void *arg, const gs_flow_opts *opts,
		       gs_flow **out);
gs_err gs_flow_from_stages(gs_pipeline *p, gs_stage *const *producers, size_t n,
			   const gs_flow_opts *opts, gs_flow **out);

/*
 * Flow's from_enumerables: a flow from several arrays or generators, each
 * one producer, all feeding the one layer of `opts->stages` stages where
 * the operations that follow run. A source is a generator when `gen` is
 * set (then events must be NULL and n 0), else the array events[0..n)
 * (copied, as by gs_flow_from_array; events may be NULL when n is 0).
 * n == 0, a NULL sources, a source that is both or an array whose copy's
 * size would overflow is GS_EINVAL; a version
 * above GS_FLOW_SOURCE_VERSION is GS_EVERSION. On error *out is untouched
 * and no event is taken.
 */
#define GS_FLOW_SOURCE_VERSION 0
typedef struct gs_flow_source {
	uint32_t version; /* GS_FLOW_SOURCE_VERSION or lower */
	void *const *events;
	size_t n;
	gs_gen_fn gen;
	void *arg;
} gs_flow_source;
gs_err gs_flow_from_sources(const gs_flow_source *sources, size_t n,
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
 * must come before gs_flow_reduce in a partition (GS_EINVAL after it);
 * after a join they take its pairs. uniq_by keeps the first event of each
 * key, per stage (as Flow: per partition), and remembers every key it saw
 * until the stage ends. */
gs_err gs_flow_map(gs_flow *f, gs_flow_map_fn fn, void *arg);
gs_err gs_flow_filter(gs_flow *f, gs_flow_pred_fn fn, void *arg);
gs_err gs_flow_reject(gs_flow *f, gs_flow_pred_fn fn, void *arg);
gs_err gs_flow_flat_map(gs_flow *f, gs_flow_flat_map_fn fn, void *arg);
gs_err gs_flow_each(gs_flow *f, gs_flow_each_fn fn, void *arg);
gs_err gs_flow_uniq_by(gs_flow *f, gs_flow_key_fn fn, void *arg);
/* Flow's map_batch: `fn` takes each batch the stage receives (as demand
 * cut it) at its place among the operations; never an empty one (when
 * the operations before it let nothing of a batch through). */
gs_err gs_flow_map_batch(gs_flow *f, gs_flow_batch_fn fn, void *arg);

/*
 * Keys from bytes, for the gs_flow_key_fn of string or struct keys: a
 * 64-bit hash of p[0..n) (of the string up to its NUL for _str), the same
 * for the same bytes in every run and on every platform. Distinct inputs
 * collide with a chance of about 2^-64 per pair: two colliding strings
 * would count as one key (uniq_by, joins, group_by). p may be NULL when n
 * is 0; a NULL string hashes as "". Thread-safe.
 */
uint64_t gs_flow_hash_bytes(const void *p, size_t n);
uint64_t gs_flow_hash_str(const char *s);

/* Windows: how a partition splits events before reducing them. The zero
 * value is the global window. */
typedef enum gs_flow_window_kind {
	GS_FLOW_WINDOW_GLOBAL = 0, /* one window, done at end of input */
	GS_FLOW_WINDOW_FIXED,      /* by event time, duration_ms long */
	GS_FLOW_WINDOW_PERIODIC,   /* by processing time, duration_ms */
	GS_FLOW_WINDOW_COUNT,      /* every `count` events */
} gs_flow_window_kind;

/* What a custom trigger decides for an event of a window. */
typedef enum gs_flow_fire {
	GS_FLOW_FIRE_NO = 0, /* reduce it, no trigger */
	GS_FLOW_FIRE_BEFORE, /* trigger, then reduce it */
	GS_FLOW_FIRE_AFTER,  /* reduce it, then trigger */
} gs_flow_fire;

/* A custom trigger (Flow.Window.trigger/3): looks at each event of a
 * window before it is reduced, with the window's trigger state (0 when the
 * window opens; the function may change it), and decides. */
typedef gs_flow_fire (*gs_flow_punctuate_fn)(void *arg, uint64_t *state,
					     const void *event);

typedef struct gs_flow_window {
	gs_flow_window_kind kind;
	int64_t duration_ms;  /* fixed, periodic */
	size_t count;         /* count */
	gs_flow_time_fn time; /* fixed: the event time */
	void *time_arg;
	int64_t lateness_ms;  /* fixed: see gs_flow_window_lateness */
	size_t every;         /* trigger after every `every` events */
	unsigned periodic_ms; /* trigger every periodic_ms, per stage */
	gs_flow_punctuate_fn punctuate; /* see gs_flow_window_trigger */
	void *punctuate_arg;
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
/* A trigger after every `n` events reduced in a window, counted by each
 * reducing stage for its own share of the window's events. */
gs_flow_window gs_flow_window_trigger_every(gs_flow_window w, size_t n);
/* A trigger every `ms` of processing time, on every open window. */
gs_flow_window gs_flow_window_trigger_periodically(gs_flow_window w,
						   unsigned ms);
/* A custom trigger: `fn` decides per event (see gs_flow_punctuate_fn);
 * its triggers are GS_FLOW_TRIGGER_CUSTOM, with the state after the call
 * in gs_flow_trigger.state. `fn` runs on the stage threads, one call at a
 * time per stage, possibly on several stages at once. */
gs_flow_window gs_flow_window_trigger(gs_flow_window w, gs_flow_punctuate_fn fn,
				      void *arg);

typedef struct gs_flow_partition_opts {
	uint32_t version; /* GS_FLOW_PARTITION_OPTS_VERSION, or 0 */
	/* Stages in the new layer; 0: the number of online CPUs. */
	size_t stages;
	/* Routing: `hash` (a partition in [0, stages) or GS_DISCARD) if set,
	 * else `key` (mixed and scaled to the stages), else the event's
	 * pointer value as key. Equal keys always land in the same stage. */
	gs_flow_key_fn key;
	void *key_arg;
	gs_hash_fn hash;
	void *hash_arg;
	gs_flow_window window;
	/* Demand of each subscription into the new layer (0: defaults). */
	size_t max_demand, min_demand;
} gs_flow_partition_opts;

/* Routes events by key into a new layer of stages (see the opts). `opts`
 * may be NULL. Zero stages mean the default, never zero. Demand values
 * gs_subscribe would refuse are refused here (GS_EINVAL, GS_EDEMAND). */
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
/* emit_and_reduce: folds `event` (now the callee's) into *acc and may
 * push events into `out`, which go on at once. Non-zero stops the flow. */
typedef int (*gs_flow_emit_reduce_fn)(void *arg, void **acc, void *event,
				      gs_flow_out *out);

typedef enum gs_flow_trigger_kind {
	GS_FLOW_TRIGGER_DONE = 0,  /* the window is over (or input ended) */
	GS_FLOW_TRIGGER_WATERMARK, /* fixed window passed, lateness open */
	GS_FLOW_TRIGGER_EVERY,     /* gs_flow_window_trigger_every */
	GS_FLOW_TRIGGER_PERIODIC,  /* gs_flow_window_trigger_periodically */
	GS_FLOW_TRIGGER_CUSTOM,    /* gs_flow_window_trigger */
} gs_flow_trigger_kind;

typedef struct gs_flow_trigger {
	gs_flow_window_kind window;
	/* 0 for global; the window's start time for fixed (as Flow); the
	 * window's number from 0 for count and periodic. */
	int64_t window_id;
	gs_flow_trigger_kind kind;
	size_t partition, partitions; /* this stage's index, and the count */
	uint64_t state; /* GS_FLOW_TRIGGER_CUSTOM: the trigger's state */
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
 * Reduces each window of each stage of the current layer (the stages after
 * the sources, a partition, shuffle, merge, departition or join): the
 * window's accumulator starts as acc_new(arg) (NULL acc_new: NULL, i.e.
 * 0) and takes every event through `reducer`. At most one reduce per
 * layer (GS_EINVAL); after a join it reduces the pairs.
 */
gs_err gs_flow_reduce(gs_flow *f, gs_flow_acc_new_fn acc_new,
		      gs_flow_reduce_fn reducer, void *arg);
/* Flow's emit_and_reduce: gs_flow_reduce whose reducer also emits events
 * as it goes (a sliding window, say); triggers then work as for
 * gs_flow_reduce. gs_flow_departition_merge after it is GS_EINVAL (what it
 * emits belongs to no trigger). */
gs_err gs_flow_emit_and_reduce(gs_flow *f, gs_flow_acc_new_fn acc_new,
			       gs_flow_emit_reduce_fn reducer, void *arg);
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
 * NULL for an unmatched event in the outer modes. A trigger gives the
 * pairs not given before; the unmatched events come at the window's DONE
 * trigger. join borrows both events; the library frees them (event_free)
 * when their window is done. Per-event operations added after the join
 * take its pairs, and so does a gs_flow_reduce (or group_by) added after
 * it, with the join's windows and triggers. The given flows are used up,
 * as by gs_flow_merge.
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
/* Joins per window of opts->window, the pairs given at its triggers. */
gs_err gs_flow_window_join(gs_flow *left, gs_flow *right,
			   const gs_flow_join *join,
			   const gs_flow_partition_opts *opts, gs_flow **out);

/*
 * Flow's through_stages: passes what the current layer emits through the
 * caller's producer-consumers `stages` (of pipeline p, which the flow then
 * runs in), each subscribed to every stage of the layer, and starts a new
 * layer fed by them (by demand), where the operations that follow run.
 * The given stages get the flow's events as they are (their owner frees
 * what they drop) and finish when the flow before them has ended (their
 * subscriptions are transient, so a stage of theirs that fails stops the
 * flow). n == 0, a NULL stage or another pipeline than the flow's sources'
 * is refused (GS_EINVAL, GS_EPIPELINE); so are demand values gs_subscribe
 * would refuse (GS_EINVAL, GS_EDEMAND); a version above
 * GS_FLOW_THROUGH_OPTS_VERSION is GS_EVERSION; a stage that is not of p
 * is GS_EPIPELINE, with a message in gs_flow_errmsg. `opts` may be NULL.
 * The
 * stages stay their pipeline's; free the flow after p, as with
 * gs_flow_from_stages.
 */
#define GS_FLOW_THROUGH_OPTS_VERSION 0
typedef struct gs_flow_through_opts {
	uint32_t version; /* GS_FLOW_THROUGH_OPTS_VERSION or lower */
	/* Demand of each given stage's subscriptions (0: defaults). */
	size_t in_max_demand, in_min_demand;
	/* The new layer: stages (0: one per given stage), window and the
	 * demand of its subscriptions to the given stages (0: defaults). */
	size_t stages;
	gs_flow_window window;
	size_t max_demand, min_demand;
} gs_flow_through_opts;
gs_err gs_flow_through_stages(gs_flow *f, gs_pipeline *p,
			      gs_stage *const *stages, size_t n,
			      const gs_flow_through_opts *opts);

/*
 * The log and trace hooks (see gs_pipeline_opts) of the pipeline that
 * gs_flow_run, gs_flow_collect or gs_flow_stream (with p NULL) makes for
 * the flow: where its drops and abnormal stops are told. Read once; the
 * arguments must outlive the run. A flow that runs in a pipeline of the
 * caller's (from_stages, through_stages, gs_flow_stream with a pipeline,
 * gs_flow_into_stages) uses that pipeline's hooks: setting them then is
 * refused at the sink (GS_EINVAL). A merge or join keeps the first given
 * flow's hooks that are set. NULL opts: the defaults again.
 */
gs_err gs_flow_pipeline_opts(gs_flow *f, const gs_pipeline_opts *opts);

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
 * caller starts, waits for and frees p, then frees the flow. Refused
 * before anything is built in p: a NULL consumer (GS_EINVAL), one of
 * another pipeline (GS_EPIPELINE), `sub` demand gs_subscribe would refuse
 * (GS_EINVAL, GS_EDEMAND). A failure after the build (no memory, a
 * consumer that stopped) stops the stages built in p with that error, so
 * that p finishes. */
gs_err gs_flow_into_stages(gs_flow *f, gs_pipeline *p,
			   gs_stage *const *consumers, size_t n,
			   const gs_sub_opts *sub);

#ifdef __cplusplus
}
#endif

#endif
