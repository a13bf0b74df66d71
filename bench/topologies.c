// SPDX-License-Identifier: MIT
/*
 * Every row gs-bench runs, in order, with what each is compared with. The
 * ceiling is gs-ring, the engine's own ring moving the same batches with
 * both threads spinning; the floor is mutex-batch, the batched mutex and
 * condvar queue a competent C programmer writes, measured on the same CPUs
 * as the row. Default counts give runs of roughly a second on a quiet
 * 2-core machine.
 */
#include "bench.h"

#define MILLION 1000000u

#define CEIL "gs-ring"
#define FLOOR "mutex-batch"
#define FLOOR1 "mutex-batch@1cpu"

const gsb_topology gsb_topologies[] = {
	/* Baselines. */
	{ .name = "gs-ring",
	  .what = "ceiling: the engine's private bulk ring (stage/ring.h) of "
		  "1024, batches of 500, both threads spinning (yielding "
		  "after long waits)",
	  .run = gsb_run_gs_ring,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 1000 * MILLION },
	{ .name = "mutex-batch",
	  .what = "floor: a mutex and condvar queue of 1024, up to 500 items "
		  "per lock, signalling only empty to non-empty and full to "
		  "not full",
	  .run = gsb_run_mutex_batch,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 300 * MILLION },
	{ .name = "mutex-queue/1",
	  .what = "one item per call: a mutex and condvar queue of 1024, one "
		  "item per lock, signalling every item",
	  .run = gsb_run_mutex_queue,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 10 * MILLION },
	{ .name = "ck-ring/1",
	  .what = "one item per call: a ck_ring of 1024, both threads "
		  "spinning (yielding after long waits)",
	  .run = gsb_run_ck_ring,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 50 * MILLION },
	{ .name = "gs-ring/1",
	  .what = "one item per call: gs-ring pushing and peeking one item "
		  "at a time, as ck_ring must (the two rings compared)",
	  .run = gsb_run_gs_ring_1,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 50 * MILLION },
	{ .name = FLOOR1,
	  .what = "mutex-batch with both threads pinned to one CPU",
	  .run = gsb_run_mutex_batch,
	  .cpus = 1,
	  .floor = FLOOR1,
	  .default_events = 100 * MILLION },
	{ .name = "mutex-queue/1@1cpu",
	  .what = "mutex-queue/1 (one item per call) pinned to one CPU",
	  .run = gsb_run_mutex_queue,
	  .cpus = 1,
	  .floor = FLOOR1,
	  .default_events = 20 * MILLION },

	/* The library on every CPU. */
	{ .name = "1-1/md1000",
	  .what = "counter producer emitting exactly the demand -> summing "
		  "consumer, max_demand 1000",
	  .run = gsb_run_chain,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .max_demand = 1000,
	  .default_events = 300 * MILLION },
	{ .name = "1-1/md10000",
	  .what = "as 1-1/md1000 with max_demand 10000",
	  .run = gsb_run_chain,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .max_demand = 10000,
	  .default_events = 1000 * MILLION },
	{ .name = "1-map-1/md1000",
	  .what = "counter -> producer-consumer adding one -> summing "
		  "consumer, max_demand 1000",
	  .run = gsb_run_chain,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .max_demand = 1000,
	  .stages = 1,
	  .default_events = 200 * MILLION },
	{ .name = "1-map-1/md10000",
	  .what = "as 1-map-1/md1000 with max_demand 10000",
	  .run = gsb_run_chain,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .max_demand = 10000,
	  .stages = 1,
	  .default_events = 400 * MILLION },
	{ .name = "1-4-demand",
	  .what = "counter -> 4 summing consumers, demand dispatcher, "
		  "max_demand 1000",
	  .run = gsb_run_1_4_demand,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .max_demand = 1000,
	  .default_events = 200 * MILLION },
	{ .name = "1-4-broadcast",
	  .what = "counter -> 4 summing consumers, broadcast dispatcher, "
		  "max_demand 1000; events are deliveries (4 per value)",
	  .run = gsb_run_1_4_broadcast,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .max_demand = 1000,
	  .deliveries = 4,
	  .default_events = 200 * MILLION },
	{ .name = "1-4-partition",
	  .what = "counter -> 4 summing consumers, partition dispatcher by "
		  "value mod 4 (each consumer checks its class), max_demand "
		  "1000",
	  .run = gsb_run_1_4_partition,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .max_demand = 1000,
	  .default_events = 100 * MILLION },
	{ .name = "push-4-1",
	  .what = "4 ordinary threads gs_push batches of 64 (blocking) into "
		  "a push producer -> summing consumer, max_demand 1000",
	  .run = gsb_run_push_4_1,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .max_demand = 1000,
	  .default_events = 50 * MILLION },
	{ .name = "oversubscribed",
	  .what = "8 copies of 1-map-1/md1000 at once on 2 CPUs, sharing the "
		  "default executor; events of all copies together",
	  .run = gsb_run_chain,
	  .cpus = 2,
	  .base = "1-map-1/md1000",
	  .max_demand = 1000,
	  .stages = 1,
	  .copies = 8,
	  .default_events = 200 * MILLION },
	{ .name = "chain-1000",
	  .what = "counter -> 1000 producer-consumers adding one -> summing "
		  "consumer, max_demand 1000; events are deliveries (1001 "
		  "hops per value)",
	  .run = gsb_run_chain,
	  .base = "1-1/md1000",
	  .max_demand = 1000,
	  .stages = 1000,
	  .deliveries = 1001,
	  .default_events = 500 * MILLION },
	{ .name = "1-1-slow",
	  .what = "1-1/md1000 with a consumer about 10x slower than the "
		  "producer (busy work per event): memory must stay bounded",
	  .run = gsb_run_1_1_slow,
	  .max_demand = 1000,
	  .default_events = 20 * MILLION },
#ifdef GSB_HAVE_ZMQ
	{ .name = "zmq-1-1",
	  .what = "peer: ZeroMQ inproc PUSH -> PULL (high-water mark 1000), "
		  "one 8-byte message per event",
	  .run = gsb_run_zmq_1_1,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 4 * MILLION },
	{ .name = "zmq-1-4-broadcast",
	  .what = "peer: ZeroMQ inproc PUB -> 4 SUB, no high-water mark (a "
		  "PUB drops at its mark: no back-pressure); deliveries",
	  .run = gsb_run_zmq_1_4_broadcast,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .deliveries = 4,
	  .default_events = 4 * MILLION },
#endif
#ifdef GSB_HAVE_TBB
	{ .name = "tbb-1-1",
	  .what = "peer: oneTBB flow graph, input_node -> serial "
		  "function_node summing",
	  .run = gsb_run_tbb_1_1,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 4 * MILLION },
	{ .name = "tbb-1-4-broadcast",
	  .what = "peer: oneTBB flow graph, input_node -> broadcast_node -> 4 "
		  "serial function_nodes; deliveries",
	  .run = gsb_run_tbb_1_4_broadcast,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .deliveries = 4,
	  .default_events = 4 * MILLION },
#endif

	/* The library on one CPU, against the floor on that CPU. */
	{ .name = "1-1/md1000@1cpu",
	  .what = "1-1/md1000 pinned to one CPU (one worker)",
	  .run = gsb_run_chain,
	  .cpus = 1,
	  .floor = FLOOR1,
	  .max_demand = 1000,
	  .default_events = 200 * MILLION },
	{ .name = "1-map-1/md1000@1cpu",
	  .what = "1-map-1/md1000 pinned to one CPU (one worker)",
	  .run = gsb_run_chain,
	  .cpus = 1,
	  .floor = FLOOR1,
	  .max_demand = 1000,
	  .stages = 1,
	  .default_events = 100 * MILLION },
	{ .name = "1-4-demand@1cpu",
	  .what = "1-4-demand pinned to one CPU (one worker)",
	  .run = gsb_run_1_4_demand,
	  .cpus = 1,
	  .floor = FLOOR1,
	  .max_demand = 1000,
	  .default_events = 100 * MILLION },

	/* Word counts, against the plain loop. */
	{ .name = "wordcount-loop",
	  .what = "baseline: examples/wordcount.c's plain single-threaded "
		  "loop over a generated 50 MiB corpus; events are its bytes",
	  .run = gsb_run_wordcount,
	  .base = "wordcount-loop",
	  .default_events = 50u << 20 },
	{ .name = "flow-wordcount/1",
	  .what = "the same count by wordcount's flow: chunks -> 1 counting "
		  "stage -> departition_merge of the tables",
	  .run = gsb_run_wordcount,
	  .base = "wordcount-loop",
	  .stages = 1,
	  .default_events = 50u << 20 },
	{ .name = "flow-wordcount/2",
	  .what = "as flow-wordcount/1 with 2 counting stages (shuffled "
		  "chunks)",
	  .run = gsb_run_wordcount,
	  .base = "wordcount-loop",
	  .stages = 2,
	  .default_events = 50u << 20 },
	{ .name = "flow-words/1",
	  .what = "wordcount by Flow's textbook shape: chunks -> 1 stage "
		  "splitting them into words (flat_map) -> partition by word "
		  "-> 1 counting stage",
	  .run = gsb_run_wordcount,
	  .base = "wordcount-loop",
	  .stages = 1,
	  .by_word = true,
	  .default_events = 50u << 20 },
	{ .name = "flow-words/2",
	  .what = "as flow-words/1 with 2 splitting and 2 counting stages",
	  .run = gsb_run_wordcount,
	  .base = "wordcount-loop",
	  .stages = 2,
	  .by_word = true,
	  .default_events = 50u << 20 },
	{ .name = "words-serial/2",
	  .what = "flow-words/2's own work on one thread, no library: the "
		  "words cut 1000 at a time, each keyed to one of 2 tables "
		  "and counted there; 2 CPUs can at best double its rate, "
		  "the ceiling of flow-words/2",
	  .run = gsb_run_wordcount,
	  .base = "wordcount-loop",
	  .stages = 2,
	  .by_word = true,
	  .serial = true,
	  .default_events = 50u << 20 },

	/* The event bus: fan-out against a hand-written publish/subscribe,
	 * and the slow-listener runs against their own ideal (own_ratio:
	 * events that sleep have no rate worth a ratio). */
	{ .name = "pubsub-mutex",
	  .what = "baseline for bus-fanout: hand-written publish/subscribe, "
		  "a thread and a mutex+condvar queue of 4096 per "
		  "subscriber, routes by topic in a hash table, one publish "
		  "per call; events are deliveries",
	  .run = gsb_run_pubsub_mutex,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 10 * MILLION },
	{ .name = "bus-fanout",
	  .what = "gs_bus: 1 publisher, batches of 64, 16 topics, 8 "
		  "subscriptions on overlapping patterns (4 per topic), "
		  "block queues of 4096; events are deliveries",
	  .run = gsb_run_bus_fanout,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .base = "pubsub-mutex",
	  .default_events = 100 * MILLION },
	{ .name = "bus-fanout/1",
	  .what = "as bus-fanout, publishing as the baseline does and as "
		  "the README's first example: gs_bus_publish, one event "
		  "per call",
	  .run = gsb_run_bus_fanout,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .base = "pubsub-mutex",
	  .batch = 1,
	  .default_events = 20 * MILLION },
	{ .name = "bus-publish-4",
	  .what = "gs_bus: 4 threads gs_bus_publish one event per call "
		  "(blocking), 4 subscriptions on '#'; publish latency in "
		  "the note",
	  .run = gsb_run_bus_publish_4,
	  .ceiling = CEIL,
	  .floor = FLOOR,
	  .default_events = 4 * MILLION },
	{ .name = "bus-slow/c1",
	  .what = "the talk's benchmark: events to 10 subscriptions whose "
		  "handler sleeps 10 ms, concurrency 1 (ideal 10 s for "
		  "1000)",
	  .run = gsb_run_bus_slow,
	  .concurrency = 1,
	  .unit = "events",
	  .default_events = 1000 },
	{ .name = "bus-slow/c10",
	  .what = "as bus-slow/c1 with concurrency 10: a pool of 10 "
		  "handler threads per subscription (ideal 1 s for 1000)",
	  .run = gsb_run_bus_slow,
	  .concurrency = 10,
	  .unit = "events",
	  .default_events = 1000 },

	/* Latency, each against a reference measured in the same process. */
	{ .name = "latency",
	  .what = "max_demand 1, one event in flight: gs_emit -> "
		  "handle_events; reference: the same hand-off through a "
		  "mutex and condvar slot",
	  .run = gsb_run_latency,
	  .kind = GSB_LATENCY,
	  .reference = "mutex+condvar",
	  .default_events = 10000 },
	{ .name = "latency@1cpu",
	  .what = "latency pinned to one CPU (one worker), the reference "
		  "too",
	  .run = gsb_run_latency,
	  .kind = GSB_LATENCY,
	  .reference = "mutex+condvar",
	  .cpus = 1,
	  .default_events = 10000 },
	{ .name = "wake-latency",
	  .what = "after 10 ms of idleness, gs_push of one event from the "
		  "measuring thread -> push producer -> handle_events; "
		  "reference: a bare futex wake of a sleeping thread, "
		  "alternating with it",
	  .run = gsb_run_wake,
	  .kind = GSB_LATENCY,
	  .reference = "futex wake",
	  .unit = "samples",
	  .default_events = 200 },

	/* Scale, on two CPUs. */
	{ .name = "chain-100k",
	  .what = "one pipeline: source -> maps -> sink, 100,000 stages in "
		  "all, max_demand 1000, 1000 events through",
	  .run = gsb_run_scale_chain,
	  .kind = GSB_SCALE,
	  .cpus = 2,
	  .unit = "stages",
	  .default_events = 100000,
	  /* Building takes seconds (gs_subscribe's cycle check walks what
	   * the new consumer reaches: nothing yet, built source first), but
	   * a shared machine can stretch it many times over. */
	  .timeout_s = 900 },
	{ .name = "pipelines-10k",
	  .what = "10,000 pipelines of source -> sink in one process, "
		  "max_demand 1000, 100 events through each",
	  .run = gsb_run_scale_pipelines,
	  .kind = GSB_SCALE,
	  .cpus = 2,
	  .unit = "pipelines",
	  .default_events = 10000 },
};

const size_t gsb_n_topologies = sizeof gsb_topologies / sizeof *gsb_topologies;
