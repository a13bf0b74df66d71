// SPDX-License-Identifier: MIT
/* The ready-made producers: gs_from_array and gs_from_fn. */
#include <stdlib.h>

#include "gs_test.h"

Test(sources, from_array_emits_every_item_in_order_and_finishes,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	enum { n = 10000 };
	void **items = malloc(n * sizeof *items);
	for (uintptr_t i = 0; i < n; i++)
		items[i] = GS_EV(i * 3);
	gs_stage *src;
	cr_assert_eq(gs_from_array(p, items, n, NULL, &src), GS_OK);
	free(items); /* copied */
	recorder pr = { .keep = true };
	gs_subscribe(recorder_new(p, &pr, NULL), src,
		     &(gs_sub_opts){ .max_demand = 64 }, NULL);
	gs_pipeline_start(p);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(pr.n, n);
	for (size_t k = 0; k < n; k++)
		cr_assert_eq(pr.vals[k], 3 * k);
	recorder_fini(&pr);
	gs_pipeline_free(p);
}

/* A consumer that asks for exactly the array's length gets the end: the
 * source finished only when asked once more and finding nothing. */
Test(sources, an_array_finishes_with_its_last_item, .timeout = GS_TEST_TIMEOUT)
{
	void *ev[50];
	fill_ids(ev, 50, 1);
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *src;
	GS_OK_OR_DIE(gs_from_array(p, ev, 50, NULL, &src));
	recorder r = { 0 };
	gs_stage *cons = recorder_new(p, &r, NULL);
	gs_sub *sub;
	GS_OK_OR_DIE(gs_subscribe(cons, src, &(gs_sub_opts){ .manual = true },
				  &sub));
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_ask(sub, 50));
	cr_assert_eq(gs_pipeline_wait_for(p, 10000), GS_OK);
	cr_assert_eq(atomic_load(&r.received), 50);
	gs_sub_release(sub);
	gs_pipeline_free(p);
}

Test(sources, an_empty_array_finishes_at_once, .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	gs_stage *src;
	cr_assert_eq(gs_from_array(p, NULL, 0, NULL, &src), GS_OK);
	gs_pipeline_start(p);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	gs_pipeline_free(p);
}

Test(sources, items_never_emitted_are_freed_counted_and_logged,
     .timeout = GS_TEST_TIMEOUT)
{
	log_count lc = { 0 };
	gs_pipeline *p = counted_pipeline_new(&lc);
	void *items[100] = { 0 };
	_Atomic uint64_t freed = 0;
	gs_stage *src;
	gs_from_array(p, items, 100,
		      &(gs_stage_opts){ .event_free = count_free,
					.event_free_arg = &freed },
		      &src);
	gs_pipeline_start(p); /* no consumer: nothing is asked */
	gs_pipeline_stop(p, GS_STOP_NOW);
	gs_stats st;
	gs_stage_stats(src, &st);
	cr_assert_eq(atomic_load(&freed), 100);
	cr_assert_eq(st.dropped, 100);
	cr_assert_eq(atomic_load(&lc.warn), 1, "one line says so");
	gs_pipeline_free(p);
	cr_assert_eq(atomic_load(&lc.warn), 1, "and only one");
}

/* A length whose copy's size overflows (a negative length cast, say) is
 * refused with a message; it was accepted, and read past the copy. */
Test(sources, an_array_too_large_to_copy_is_refused, .timeout = GS_TEST_TIMEOUT)
{
	log_count lc = { 0 };
	gs_pipeline *p = counted_pipeline_new(&lc);
	void *items[2] = { GS_EV(1), GS_EV(2) };
	gs_stage *src = NULL;
	cr_assert_eq(gs_from_array(p, items, SIZE_MAX / sizeof(void *) + 2,
				   NULL, &src),
		     GS_EINVAL);
	cr_assert_null(src);
	cr_assert_eq(atomic_load(&lc.error), 1);
	gs_pipeline_free(p);
}

typedef struct asking {
	size_t calls, biggest;
	uintptr_t next;
} asking;

static long bounded_gen(void *arg, void **out, size_t max)
{
	asking *a = arg;
	a->calls++;
	if (max > a->biggest)
		a->biggest = max;
	size_t k = 0;
	while (k < max && a->next < 5000)
		out[k++] = GS_EV(a->next++);
	return (long)k;
}

Test(sources, from_fn_is_asked_for_no_more_than_the_demand,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(NULL);
	asking a = { 0 };
	gs_stage *src;
	cr_assert_eq(gs_from_fn(p, bounded_gen, &a, NULL, &src), GS_OK);
	recorder pr = { .keep = true };
	gs_subscribe(recorder_new(p, &pr, NULL), src,
		     &(gs_sub_opts){ .max_demand = 30 }, NULL);
	gs_pipeline_start(p);
	cr_assert_eq(gs_pipeline_wait(p), GS_OK);
	cr_assert_eq(pr.n, 5000);
	cr_assert_leq(a.biggest, 30);
	recorder_fini(&pr);
	gs_pipeline_free(p);
}

static long failing_gen(void *arg, void **out, size_t max)
{
	(void)arg, (void)out, (void)max;
	return -(long)(GS_EUSER + 42);
}

Test(sources, a_generator_error_stops_the_pipeline_with_it,
     .timeout = GS_TEST_TIMEOUT)
{
	gs_pipeline *p = pipeline_new(&(gs_pipeline_opts){ .log = NULL });
	gs_stage *src;
	gs_from_fn(p, failing_gen, NULL, NULL, &src);
	recorder pr = { .keep = true };
	gs_subscribe(recorder_new(p, &pr, NULL), src, NULL, NULL);
	gs_pipeline_start(p);
	cr_assert_eq(gs_pipeline_wait(p), GS_EUSER + 42);
	recorder_fini(&pr);
	gs_pipeline_free(p);
	cr_assert_eq(gs_from_fn(NULL, failing_gen, NULL, NULL, &src),
		     GS_EINVAL);
	cr_assert_eq(gs_from_array(NULL, NULL, 0, NULL, &src), GS_EINVAL);
}
