// SPDX-License-Identifier: MIT
/*
 * Partition groups (GenStage #320): several consumers share one partition
 * of a partition dispatcher and its events are demand-dispatched among
 * them, each exactly once, in order per consumer.
 */
#include "gs_test.h"

#define EVENTS 20000
#define SHARERS 3

static size_t by_parity(void *arg, const void *event)
{
	(void)arg;
	return GS_VAL(event) % 2;
}

/* A producer of sp's sequence into two partitions: even and odd. */
static gs_stage *parity_producer(gs_pipeline *p, seq_producer *sp)
{
	gs_stage *prod;
	GS_OK_OR_DIE(gs_stage_new(
		p, GS_PRODUCER, &seq_producer_ops, sp,
		&(gs_stage_opts){ .dispatcher = gs_dispatcher_partition(
					  2, by_parity, NULL) },
		&prod));
	return prod;
}

Test(partition, a_shared_partition_spreads_its_events_over_the_group,
     .timeout = GS_TEST_TIMEOUT)
{
	tally t;
	tally_init(&t, EVENTS);
	gs_pipeline *p;
	gs_stage *prod, *cons[SHARERS + 1];
	seq_producer sp = { .total = EVENTS };
	recorder r[SHARERS + 1];
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	prod = parity_producer(p, &sp);
	for (size_t i = 0; i <= SHARERS; i++) {
		r[i] = (recorder){ .tally = &t, .check_order = true };
		GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r[i],
					  NULL, &cons[i]));
	}
	/* Even events: a group of three; odd ones: one consumer alone. */
	for (size_t i = 0; i < SHARERS; i++)
		recorder_subscribe(&r[i], cons[i], prod,
				   &(gs_sub_opts){ .partition = GS_PARTITION(0),
						   .share_partition = true,
						   .max_demand = 10 });
	recorder_subscribe(&r[SHARERS], cons[SHARERS], prod,
			   &(gs_sub_opts){ .partition = GS_PARTITION(1) });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	tally_check(&t, EVENTS, true);
	cr_assert_eq(atomic_load(&t.freed_count), 0);
	uint64_t even = 0;
	for (size_t i = 0; i < SHARERS; i++) {
		cr_assert_gt(atomic_load(&r[i].received), 0,
			     "sharer %zu got nothing", i);
		cr_assert_eq(atomic_load(&r[i].order_errors), 0);
		even += atomic_load(&r[i].received);
	}
	cr_assert_eq(even, EVENTS / 2);
	cr_assert_eq(atomic_load(&r[SHARERS].received), EVENTS / 2);
	gs_pipeline_free(p);
	tally_fini(&t);
}

Test(partition, a_partition_is_shared_or_held_alone_never_both)
{
	gs_pipeline *p;
	gs_stage *prod, *a, *b, *c;
	seq_producer sp = { .total = 0 };
	recorder r = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	prod = parity_producer(p, &sp);
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &a));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &b));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &c));
	GS_OK_OR_DIE(gs_subscribe(
		a, prod, &(gs_sub_opts){ .partition = GS_PARTITION(0) }, NULL));
	cr_assert_eq(gs_subscribe(b, prod,
				  &(gs_sub_opts){ .partition = GS_PARTITION(0),
						  .share_partition = true },
				  NULL),
		     GS_EBUSY, "held alone");
	GS_OK_OR_DIE(gs_subscribe(b, prod,
				  &(gs_sub_opts){ .partition = GS_PARTITION(1),
						  .share_partition = true },
				  NULL));
	cr_assert_eq(
		gs_subscribe(c, prod,
			     &(gs_sub_opts){ .partition = GS_PARTITION(1) },
			     NULL),
		GS_EBUSY, "shared: nobody takes it alone");
	GS_OK_OR_DIE(gs_subscribe(c, prod,
				  &(gs_sub_opts){ .partition = GS_PARTITION(1),
						  .share_partition = true },
				  NULL));
	/* Sharing needs a partition dispatcher. */
	gs_stage *plain;
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &plain));
	cr_assert_eq(gs_subscribe(a, plain,
				  &(gs_sub_opts){ .share_partition = true },
				  NULL),
		     GS_EINVAL);
	gs_pipeline_free(p);
}
