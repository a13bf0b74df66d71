// SPDX-License-Identifier: MIT
/*
 * Private to pipelines/flow*.c: the description (layers of stages and
 * their fused operations), the per-stage runtime state, and small
 * containers (a growable pointer vector, a uint64 hash table).
 */
#ifndef GS_FLOW_INTERNAL_H
#define GS_FLOW_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <genstage/flow.h>

#define GS_FLOW_API __attribute__((visibility("default")))

/* A growable array of pointers; gs_flow_out and gs_flow_events are it. */
typedef struct gs__flow_vec {
	void **v;
	size_t n, cap;
} gs__flow_vec;

struct gs_flow_out {
	gs__flow_vec vec;
};
struct gs_flow_events {
	gs__flow_vec vec;
};

gs_err gs__flow_vec_push(gs__flow_vec *v, void *p);
gs_err gs__flow_vec_reserve(gs__flow_vec *v, size_t more);
void gs__flow_vec_free(gs__flow_vec *v);

/* Open addressing, uint64 keys to pointer values. */
typedef struct gs__flow_table {
	uint64_t *keys;
	void **vals;
	unsigned char *used;
	size_t n, cap;
} gs__flow_table;

/* Finds `key`; with `add`, inserts it (value NULL) if missing and sets
 * *added. Returns the value slot, or NULL if missing (or no memory). */
void **gs__flow_table_get(gs__flow_table *t, uint64_t key, bool add,
			  bool *added);
bool gs__flow_table_del(gs__flow_table *t, uint64_t key, void **val);
void gs__flow_table_free(gs__flow_table *t);
/* splitmix64's finalizer: spreads nearby keys over all bits. Inline: the
 * partition runs it once per event. */
static inline uint64_t gs__flow_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

typedef enum op_kind {
	GS__OP_MAP,
	GS__OP_FILTER,
	GS__OP_REJECT,
	GS__OP_FLAT_MAP,
	GS__OP_EACH,
	GS__OP_UNIQ,
	GS__OP_BATCH,
} gs__op_kind;

typedef struct gs__flow_op {
	gs__op_kind kind;
	union {
		gs_flow_map_fn map;
		gs_flow_pred_fn pred;
		gs_flow_flat_map_fn flat_map;
		gs_flow_each_fn each;
		gs_flow_key_fn key;
		gs_flow_batch_fn batch;
	} fn;
	void *arg;
} gs__flow_op;

typedef enum gs__layer_kind {
	GS__L_SOURCE, /* our producers, one per array or generator */
	GS__L_USER,   /* the caller's producers (or producer-consumers) */
	GS__L_STAGES, /* our producer-consumers */
} gs__layer_kind;

/* One array or generator of a source layer. */
typedef struct gs__flow_src {
	void **events; /* owned copy of the array */
	size_t nevents;
	gs_gen_fn gen;
	void *gen_arg;
} gs__flow_src;

typedef enum gs__in_mode {
	GS__IN_PARTITION,
	GS__IN_SHUFFLE,
} gs__in_mode;

typedef struct gs__flow_stage gs__flow_stage;
typedef struct gs__flow_layer gs__flow_layer;

struct gs__flow_layer {
	gs__layer_kind kind;
	size_t nstages;
	/* How this layer is fed (GS__L_STAGES). */
	gs__flow_layer **inputs; /* also a user layer's (through_stages) */
	size_t ninputs;
	gs__in_mode in_mode;
	size_t max_demand, min_demand;
	gs_flow_window window;
	/* How the layer that takes this one as input wants it routed. */
	gs__flow_layer *out;
	gs_flow_key_fn out_key;
	void *out_key_arg;
	gs_hash_fn out_hash;
	void *out_hash_arg;
	int side; /* join: 0 left, 1 right */
	/* Fused operations. */
	gs__flow_op *ops;
	size_t nops;
	/* Reduce (after the join, on a join layer). */
	bool has_reduce, has_emit;
	gs_flow_acc_new_fn acc_new;
	gs_flow_reduce_fn reducer;
	gs_flow_emit_reduce_fn emit_reducer; /* emit_and_reduce */
	void *reduce_arg;
	gs_flow_acc_free_fn acc_free;
	gs_flow_trigger_fn on_trigger;
	void *trigger_arg;
	gs_flow_emit_mode emit;
	/* take_sort's last layer emits gs_flow_events lists. */
	bool emits_lists;
	/* group_by and take_sort: the reduce's arg points here. */
	struct gs__flow_builtin {
		gs_flow_key_fn key;
		gs_flow_map_fn value;
		gs_flow_cmp_fn cmp;
		void *arg;
		size_t n;
		void (*event_free)(void *event, void *arg);
		void *event_free_arg;
	} builtin;
	/* Join (a reduce of its own kind). */
	bool is_join;
	gs_flow_join join;
	/* Departition merge (flow_departition.c). */
	bool is_departition;
	gs_flow_departition_fns dep;
	/* Sources. */
	gs__flow_src *srcs;
	gs_stage **user;
	/* A layer of ours with nothing to do right after our sources: the
	 * build connects the sources straight to what it feeds. */
	bool elided;
	/* Fed by our sources and expanding: asks them by hand. */
	bool paced;
	/* Built: the flow that runs it, the stages, and their states
	 * (owned here). */
	gs_flow *flow;
	gs_stage **stages;
	gs__flow_stage **states;
	size_t nbuilt;
};

struct gs_flow {
	gs__flow_layer **layers; /* creation (so topological) order */
	size_t nlayers;
	gs__flow_layer *last;
	gs_pipeline *bound; /* from_stages' pipeline */
	gs_pipeline *own;   /* gs_flow_stream's pipeline when p was NULL */
	void (*event_free)(void *event, void *arg);
	void *event_free_arg;
	bool blocking; /* gs_flow_opts.blocking */
	gs_err err;
	char msg[192];
	/* gs_flow_pipeline_opts: for the pipeline a sink makes. */
	bool has_popts;
	gs_pipeline_opts popts;
	bool used;
	bool built;
	/* Sink state. */
	gs__flow_vec collected;
	gs_stage *sink;
	/* Held while the stages are built and the sink attached, and by
	 * gs__flow_abort: in a pipeline already running, a stage that fails
	 * at once must not read the layers or the sink half-made. */
	pthread_mutex_t lock;
};

/* Records the first error of `f` (formatted message) and returns `code`. */
gs_err gs__flow_fail(gs_flow *f, gs_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void gs__flow_drop(const gs_flow *f, void *event);
/* The checks gs_subscribe makes of a max/min demand pair, made when the
 * flow is built: fails f with GS_EINVAL (max above GS_MAX_DEMAND) or
 * GS_EDEMAND, naming `what` and its `fields` (flow.c). */
gs_err gs__flow_check_demand(gs_flow *f, const char *what, const char *fields,
			     size_t max, size_t min);
/* Frees an item that built layer `l` emitted and that is dropped on its
 * way: an accumulator (GS_FLOW_EMIT_STATE, or a departition's without a
 * done function) through its acc_free, take_sort's list with its events,
 * anything else through the flow's event_free. */
void gs__flow_drop_item(void *item, const gs__flow_layer *l);
/* The same for what layer `arg` sends (an envelope, if a departition
 * merge follows): the event_free of every stage the layer feeds. */
void gs__flow_drop_output(void *item, void *arg);
/* Records "what: why" as the error of each non-NULL flow of flows[0..n)
 * that has none yet, and returns `code`: a call that combines flows makes
 * no flow to hold its error (flow.c). */
gs_err gs__flow_fail_each(gs_flow *const *flows, size_t n, gs_err code,
			  const char *what, const char *why);
/*
 * Moves the layers of `flows` into a new flow whose last layer is fed by
 * all of them. Used by merge and joins (flow.c).
 */
gs_err gs__flow_combine(gs_flow *const *flows, size_t n, const char *what,
			const gs_flow_partition_opts *o, gs_flow **out);
/* Common checks for a step added to `f` (flow.c). */
gs_err gs__flow_usable(gs_flow *f, const char *what);
/* Adds a layer of stages fed from the current last one (flow.c). */
gs_err gs__flow_add_layer(gs_flow *f, const char *what, gs__in_mode mode,
			  const gs_flow_partition_opts *opts);

/* Runtime of one window (an accumulator and its trigger counters). */
typedef struct gs__flow_win {
	int64_t id;
	void *acc;
	size_t since_trigger; /* events since the last every-trigger */
	size_t count;         /* events in the window (count windows) */
	bool watermarked;
	uint64_t punct;              /* a custom trigger's state */
	struct gs__flow_side *sides; /* join only: [0] left, [1] right */
} gs__flow_win;

struct gs__flow_side {
	void **ev;
	uint64_t *key;
	size_t n, cap;
	size_t sent; /* events already joined at an earlier trigger */
};

typedef struct gs__flow_input {
	gs_sub *sub;
	uint64_t asked, received; /* paced inputs (see flow_stage.c) */
	int64_t recent;           /* fixed windows: the latest window seen */
	bool has_recent, live;
	int side;
} gs__flow_input;

struct gs__flow_stage {
	gs_flow *flow;
	gs__flow_layer *layer;
	gs_stage *stage;
	size_t index;
	/* Operations: per-op state (uniq sets) and ping-pong buffers. */
	gs__flow_table *uniq;
	gs_flow_out a, b;
	/* Sources. */
	gs__flow_src *src;
	size_t pos;
	bool exhausted;
	gs__flow_vec raw;
	/* Stages right after sources whose operations may expand an event
	 * into many: they ask their inputs by hand (flow_stage.c). */
	bool paced;
	uint64_t pulled, made; /* raw events taken, events they gave */
	/* Inputs (producer-consumers). */
	gs__flow_input *inputs;
	size_t ninputs, nexpected, nended;
	bool ended;
	/* Windows: global/count/periodic use one; fixed several, by id. */
	gs__flow_win *wins;
	size_t nwins, capwins;
	int64_t next_fixed; /* fixed: lowest window not yet past */
	bool fixed_started;
	int64_t next_id;    /* count/periodic: the next window's number */
	gs_flow_out tout;   /* what a trigger (or emit_and_reduce) emits */
	gs_flow_out jout;   /* what a join trigger pairs */
	gs__flow_table dep; /* departition merge: window id -> its merge */
};

/* Operations (flow_ops.c): runs the fused chain over in[0..n), whose
 * events it owns, and points *out at the n_out results (in itself, or a
 * buffer of the stage valid until the next call). On error every event
 * is freed. */
int gs__flow_ops_run(gs__flow_stage *st, void **in, size_t n, void ***out,
		     size_t *n_out);
gs_err gs__flow_ops_init(gs__flow_stage *st);
void gs__flow_ops_fini(gs__flow_stage *st);

/* Windows and reduce (flow_window.c). */
gs_err gs__flow_window_init(gs__flow_stage *st);
int gs__flow_window_events(gs__flow_stage *st, gs__flow_input *in, void **ev,
			   size_t n);
int gs__flow_window_input_ended(gs__flow_stage *st);
int gs__flow_window_end(gs__flow_stage *st);
int gs__flow_window_info(gs__flow_stage *st, void *msg);
void gs__flow_window_fini(gs__flow_stage *st);
int gs__flow_emit_out(gs__flow_stage *st, gs_flow_out *out);
/* Sends ev[0..n) downstream (ownership passes; on error they are freed). */
int gs__flow_send(gs__flow_stage *st, void **ev, size_t n);

/* Departition merge (flow_departition.c). Whether `l` feeds one; wraps
 * what a trigger of window `window` put in `out` for it (a no-op when `l`
 * does not feed one); takes the envelope out of *item (freeing it) and
 * says whether it held an item. */
bool gs__flow_departing(const gs__flow_layer *l);
int gs__flow_departition_wrap(gs__flow_stage *st, gs_flow_out *out,
			      int64_t window, bool done);
bool gs__flow_unwrap(void **item);
int gs__flow_departition_events(gs__flow_stage *st, void **ev, size_t n);
int gs__flow_departition_end(gs__flow_stage *st);
void gs__flow_departition_fini(gs__flow_stage *st);

/* Joins (flow_join.c): folding events into a window, and the trigger. */
int gs__flow_join_add(gs__flow_stage *st, gs__flow_win *w, int side,
		      void *event);
int gs__flow_join_trigger(gs__flow_stage *st, gs__flow_win *w, bool done,
			  gs_flow_out *out);
void gs__flow_join_free(gs__flow_stage *st, gs__flow_win *w);

/* Stages (flow_stage.c, flow_source.c). */
extern const gs_stage_ops gs__flow_source_ops;
/* Drops what a source stage never handed out. */
void gs__flow_source_fini(gs__flow_stage *st);
extern const gs_stage_ops gs__flow_stage_ops;

/* Stops every stage of the flow with `reason` (a stage failed: as in
 * Flow, the whole flow goes down rather than leave partitions waiting). */
void gs__flow_abort(gs_flow *f, int reason);

/* Building (flow_run.c). */
gs_err gs__flow_build(gs_flow *f, gs_pipeline *p);
void gs__flow_unbuild(gs_flow *f);

#endif
