// SPDX-License-Identifier: MIT
/*
 * Scale: a chain of 100,000 stages starts, passes events from end to end,
 * stops and frees everything (ASan checks that nothing leaks). Alone in its
 * executable: it runs for a while, and Criterion's runner leaks a small
 * block of its own when a long test overlaps others under ASan.
 */
#include <stdlib.h>

#include "gs_test.h"

#ifndef GS_TEST_STAGES
#define GS_TEST_STAGES 100000
#endif

Test(scale, a_chain_of_100000_stages_starts_runs_and_frees, .timeout = 300)
{
	size_t n = GS_TEST_STAGES;
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	/* A few events: what is measured here is that the stages start, pass
	 * them on and stop, not throughput (bench/ has chain-1000). */
	seq_producer sp = { .total = 20 };
	recorder r = { .check_order = true };
	gs_stage *prev, *s;
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL,
				  &prev));
	mapper *maps = calloc(n, sizeof *maps);
	cr_assert_not_null(maps);
	for (size_t i = 0; i < n; i++) {
		GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER_CONSUMER, &mapper_ops,
					  &maps[i], NULL, &s));
		GS_OK_OR_DIE(gs_subscribe(
			s, prev, &(gs_sub_opts){ .max_demand = 4 }, NULL));
		prev = s;
	}
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &s));
	recorder_subscribe(&r, s, prev, &(gs_sub_opts){ .max_demand = 4 });
	GS_OK_OR_DIE(gs_pipeline_start(p));
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(atomic_load(&r.received), 20);
	cr_assert_eq(atomic_load(&r.order_errors), 0);
	cr_assert_eq(atomic_load(&r.sum), 19 * 20 / 2);
	GS_OK_OR_DIE(gs_pipeline_free(p));
	free(maps);
}
