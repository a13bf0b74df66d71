// SPDX-License-Identifier: MIT
/*
 * Versions: the headers' version against the library's, and the struct
 * version rule (genstage/version.h): zero and the current GS_<NAME>_VERSION
 * are accepted by every call that reads a versioned struct, and a version
 * above it is refused with GS_EVERSION, a message, and nothing made.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gs_test.h"

Test(version, the_library_reports_the_version_of_its_headers)
{
	cr_assert_eq(gs_version(), GS_VERSION_NUMBER);
	cr_assert_str_eq(gs_version_string(), GS_VERSION_STRING);
	char s[64];
	snprintf(s, sizeof s, "%d.%d.%d", GS_VERSION_MAJOR, GS_VERSION_MINOR,
		 GS_VERSION_PATCH);
	cr_assert_str_eq(s, GS_VERSION_STRING);
}

Test(version, version_numbers_compare_as_versions_do)
{
	cr_assert_lt(GS_VERSION_ENCODE(0, 9, 999), GS_VERSION_ENCODE(1, 0, 0));
	cr_assert_lt(GS_VERSION_ENCODE(1, 2, 3), GS_VERSION_ENCODE(1, 3, 0));
	cr_assert_lt(GS_VERSION_ENCODE(1, 2, 3), GS_VERSION_ENCODE(1, 2, 4));
#if GS_VERSION_NUMBER < GS_VERSION_ENCODE(0, 1, 0)
	cr_assert_fail("usable in #if, and at least 0.1.0");
#endif
}

/* A log hook that keeps the last message and whether its stage was NULL;
 * refusals log on the caller's thread, so no lock is needed. */
typedef struct last_log {
	int calls;
	int null_stage;
	gs_log_level level;
	char msg[256];
} last_log;

static void keep_log(void *arg, gs_log_level level, const gs_stage *stage,
		     const char *msg)
{
	last_log *l = arg;
	l->calls++;
	l->null_stage += !stage;
	l->level = level;
	snprintf(l->msg, sizeof l->msg, "%s", msg);
}

/* The refusal was logged once, as an error naming `macro`. */
static void assert_refusal_logged(const last_log *l, const char *macro)
{
	cr_assert_eq(l->calls, 1, "%d messages", l->calls);
	cr_assert_eq(l->null_stage, 1);
	cr_assert_eq(l->level, GS_LOG_ERROR);
	cr_assert_not_null(strstr(l->msg, macro), "message: %s", l->msg);
}

Test(version, a_too_new_pipeline_opts_is_refused_with_a_message)
{
	last_log log = { 0 };
	gs_pipeline_opts o = { .version = GS_PIPELINE_OPTS_VERSION + 1,
			       .log = keep_log,
			       .log_arg = &log };
	gs_pipeline *p = (gs_pipeline *)&p;
	cr_assert_eq(gs_pipeline_new(&o, &p), GS_EVERSION);
	cr_assert_eq(p, (gs_pipeline *)&p, "out-param touched on error");
	assert_refusal_logged(&log, "GS_PIPELINE_OPTS_VERSION");
}

Test(version, a_too_new_executor_opts_is_refused_and_zero_works)
{
	gs_executor *ex = (gs_executor *)&ex;
	cr_assert_eq(gs_executor_new(
			     &(gs_executor_opts){
				     .version = GS_EXECUTOR_OPTS_VERSION + 1,
				     .workers = 1 },
			     &ex),
		     GS_EVERSION);
	cr_assert_eq(ex, (gs_executor *)&ex, "out-param touched on error");
	GS_OK_OR_DIE(gs_executor_new(
		&(gs_executor_opts){ .version = GS_EXECUTOR_OPTS_VERSION,
				     .workers = 1 },
		&ex));
	cr_assert_eq(gs_executor_workers(ex), 1);
	gs_executor_free(ex);
}

/* A pipeline whose log is `log`. */
static gs_pipeline *logged_pipeline(last_log *log)
{
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(
		&(gs_pipeline_opts){ .log = keep_log, .log_arg = log }, &p));
	return p;
}

Test(version, too_new_stage_ops_or_opts_are_refused_and_nothing_is_made)
{
	last_log log = { 0 };
	gs_pipeline *p = logged_pipeline(&log);
	seq_producer sp = { .total = 1 };
	gs_stage_ops ops = seq_producer_ops;
	ops.version = GS_STAGE_OPS_VERSION + 1;
	gs_stage *s = (gs_stage *)&s;
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER, &ops, &sp, NULL, &s),
		     GS_EVERSION);
	cr_assert_eq(s, (gs_stage *)&s, "out-param touched on error");
	assert_refusal_logged(&log, "GS_STAGE_OPS_VERSION");

	log = (last_log){ 0 };
	gs_stage_opts o = { .version = GS_STAGE_OPTS_VERSION + 1 };
	cr_assert_eq(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, &o,
				  &s),
		     GS_EVERSION);
	assert_refusal_logged(&log, "GS_STAGE_OPTS_VERSION");

	/* The stages the library builds read the same options. */
	void *ev = GS_EV(1);
	cr_assert_eq(gs_from_array(p, &ev, 1, &o, &s), GS_EVERSION);
	cr_assert_eq(gs_push_producer(p, &o, &s), GS_EVERSION);
	cr_assert_eq(gs_stream(p, &o, &s), GS_EVERSION);
	/* The version before any other field: GS_BUFFER_NONE may be fine
	 * in a newer struct. */
	o.buffer_size = GS_BUFFER_NONE;
	cr_assert_eq(gs_push_producer(p, &o, &s), GS_EVERSION);
	cr_assert_eq(gs_stream(p, &o, &s), GS_EVERSION);
	cr_assert_eq(s, (gs_stage *)&s, "out-param touched on error");
	cr_assert_eq(log.calls, 6);

	/* Nothing was made: the pipeline runs empty and no callback ran. */
	GS_OK_OR_DIE(gs_pipeline_start(p));
	GS_OK_OR_DIE(gs_pipeline_wait(p));
	gs_pipeline_free(p);
	cr_assert_eq(atomic_load(&sp.calls), 0);
	cr_assert_eq(atomic_load(&sp.terminated), 0);
}

Test(version, too_new_sub_opts_are_refused_and_nothing_is_subscribed,
     .timeout = GS_TEST_TIMEOUT)
{
	last_log log = { 0 };
	gs_pipeline *p = logged_pipeline(&log);
	seq_producer sp = { .total = 100 };
	recorder r = { 0 };
	gs_stage *a, *b;
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_PRODUCER, &seq_producer_ops, &sp, NULL, &a));
	GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &recorder_ops, &r, NULL, &b));
	gs_sub *sub = (gs_sub *)&sub;
	cr_assert_eq(gs_subscribe(b, a,
				  &(gs_sub_opts){
					  .version = GS_SUB_OPTS_VERSION + 1 },
				  &sub),
		     GS_EVERSION);
	cr_assert_eq(sub, (gs_sub *)&sub, "out-param touched on error");
	assert_refusal_logged(&log, "GS_SUB_OPTS_VERSION");
	/* Before anything else is judged by the struct: not GS_ESELF. */
	cr_assert_eq(gs_subscribe(a, a,
				  &(gs_sub_opts){
					  .version = GS_SUB_OPTS_VERSION + 1 },
				  NULL),
		     GS_EVERSION);
	cr_assert_eq(atomic_load(&r.subscribes), 0);
	gs_pipeline_free(p);
}

/* Zero and the current version of every struct, through one run. */
Test(version, zero_and_current_versions_are_accepted,
     .timeout = GS_TEST_TIMEOUT)
{
	for (uint32_t v = 0; v < 2; v++) {
		/* v == 0: every field zero; v == 1: every field the macro. */
		gs_pipeline *p;
		GS_OK_OR_DIE(gs_pipeline_new(
			&(gs_pipeline_opts){
				.version = v ? GS_PIPELINE_OPTS_VERSION : 0 },
			&p));
		seq_producer sp = { .total = 1000 };
		recorder r = { 0 };
		gs_stage_ops pops = seq_producer_ops, cops = recorder_ops;
		pops.version = cops.version = v ? GS_STAGE_OPS_VERSION : 0;
		gs_stage_opts o = { .version = v ? GS_STAGE_OPTS_VERSION : 0 };
		gs_stage *a, *b;
		GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &pops, &sp, &o, &a));
		GS_OK_OR_DIE(gs_stage_new(p, GS_CONSUMER, &cops, &r, &o, &b));
		GS_OK_OR_DIE(gs_subscribe(
			b, a,
			&(gs_sub_opts){ .version = v ? GS_SUB_OPTS_VERSION
						     : 0 },
			NULL));
		GS_OK_OR_DIE(gs_pipeline_start(p));
		GS_OK_OR_DIE(gs_pipeline_wait(p));
		gs_pipeline_free(p);
		cr_assert_eq(atomic_load(&r.received), 1000);
	}
}

/* A version-0 gs_stage_opts as an older header laid it out: its fields end
 * where keeps_events begins, and keeps_events now lies in what was its tail
 * padding, which holds whatever the older program left there (here 1s).
 * It sits at the end of a page followed by one nobody may read. Copying it
 * by the current size read that padding as keeps_events; a later version
 * that outgrows the padding would read past the page. */
static gs_stage_opts *old_opts_at_page_end(void **map, size_t *len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	*len = 2 * page;
	char *m = mmap(NULL, *len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(mprotect(m + page, page, PROT_NONE), 0);
	*map = m;
	size_t v0 = offsetof(gs_stage_opts, keeps_events);
	gs_stage_opts *o = (gs_stage_opts *)(m + page - sizeof *o);
	memset(o, 0, v0);
	memset((char *)o + v0, 1, sizeof *o - v0);
	o->name = "old";
	o->buffer_size = 7;
	return o;
}

Test(version, an_older_stage_opts_is_read_only_as_far_as_it_goes,
     .timeout = GS_TEST_TIMEOUT)
{
	void *map;
	size_t len;
	const gs_stage_opts *old = old_opts_at_page_end(&map, &len);
	gs_stage_opts c = gs_stage_opts_copy(old);
	cr_expect_str_eq(c.name, "old");
	cr_expect_eq(c.buffer_size, 7);
	cr_expect_eq(c.keeps_events, false);
	cr_expect_eq(c.version, GS_STAGE_OPTS_VERSION);
	gs_stage_opts none = gs_stage_opts_copy(NULL);
	cr_expect_eq(none.buffer_size, 0);
	cr_expect_null(none.name);
	gs_stage_opts newer = gs_stage_opts_copy(
		&(gs_stage_opts){ .version = GS_STAGE_OPTS_VERSION + 1 });
	cr_expect_eq(newer.version, GS_STAGE_OPTS_VERSION + 1,
		     "kept, so that gs_stage_new refuses it");
	/* Through the library's own wrappers too. */
	gs_pipeline *p;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	gs_stage *s;
	GS_OK_OR_DIE(gs_stage_new(p, GS_PRODUCER, &seq_producer_ops,
				  &(seq_producer){ .total = 1 }, old, &s));
	gs_flow *f;
	GS_OK_OR_DIE(gs_flow_from_array((void *[]){ GS_EV(1) }, 1, NULL, &f));
	GS_OK_OR_DIE(gs_flow_stream(f, p, old, &s));
	gs_pipeline_free(p);
	gs_flow_free(f);
	munmap(map, len);
}

/* --- flow.h ------------------------------------------------------------ */

static gs_flow *numbers(size_t n)
{
	void *ev[16];
	cr_assert_leq(n, 16);
	for (size_t i = 0; i < n; i++)
		ev[i] = GS_EV(i + 1);
	gs_flow *f;
	GS_OK_OR_DIE(gs_flow_from_array(ev, n, NULL, &f));
	return f;
}

static void assert_flow_refused(const gs_flow *f, const char *call)
{
	cr_assert_eq(gs_flow_error(f), GS_EVERSION);
	cr_assert_not_null(strstr(gs_flow_errmsg(f), call), "message: %s",
			   gs_flow_errmsg(f));
}

static int add(void *arg, void **acc, void *ev)
{
	(void)arg;
	*acc = GS_EV(GS_VAL(*acc) + GS_VAL(ev));
	return 0;
}

static uint64_t ident(void *arg, const void *ev)
{
	(void)arg;
	return GS_VAL(ev);
}

static void *join_pair(void *arg, void *left, void *right)
{
	(void)arg;
	(void)right;
	return left;
}

static long none(void *arg, void **out, size_t max)
{
	(void)arg;
	(void)out;
	(void)max;
	return 0;
}

Test(version, a_too_new_flow_opts_is_refused_and_no_flow_is_made)
{
	void *ev = GS_EV(1);
	gs_flow_opts o = { .version = GS_FLOW_OPTS_VERSION + 1 };
	gs_flow *f = (gs_flow *)&f;
	/* No flow holds the message: it goes to stderr. */
	char said[512];
	stderr_capture c;
	stderr_capture_begin(&c);
	gs_err e = gs_flow_from_array(&ev, 1, &o, &f);
	gs_err es = gs_flow_from_sources(
		&(gs_flow_source){ .version = GS_FLOW_SOURCE_VERSION + 1 }, 1,
		NULL, &f);
	stderr_capture_end(&c, said, sizeof said);
	cr_assert_eq(e, GS_EVERSION);
	cr_assert_eq(es, GS_EVERSION);
	cr_assert(strstr(said, "gs_flow_opts version"), "said: %s", said);
	cr_assert(strstr(said, "gs_flow_source version"), "said: %s", said);
	cr_assert_eq(gs_flow_from_fn(none, NULL, &o, &f), GS_EVERSION);
	gs_pipeline *p;
	gs_stage *s;
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(gs_from_array(p, &ev, 1, NULL, &s));
	cr_assert_eq(gs_flow_from_stages(p, &s, 1, &o, &f), GS_EVERSION);
	cr_assert_eq(f, (gs_flow *)&f, "out-param touched on error");
	gs_pipeline_free(p);
}

Test(version, too_new_flow_structs_are_refused_with_a_message)
{
	gs_flow_partition_opts po = {
		.version = GS_FLOW_PARTITION_OPTS_VERSION + 1
	};
	gs_flow *f = numbers(4);
	cr_assert_eq(gs_flow_partition(f, &po), GS_EVERSION);
	assert_flow_refused(f, "gs_flow_partition");
	gs_flow_free(f);

	f = numbers(4);
	cr_assert_eq(
		gs_flow_departition_merge(
			f,
			&(gs_flow_departition_fns){
				.version = GS_FLOW_DEPARTITION_FNS_VERSION + 1,
				.merge = add },
			NULL),
		GS_EVERSION);
	assert_flow_refused(f, "gs_flow_departition_merge");
	gs_flow_free(f);

	gs_flow *l = numbers(4), *r = numbers(4), *j = NULL;
	gs_flow_join jn = { .version = GS_FLOW_JOIN_VERSION + 1,
			    .left_key = ident,
			    .right_key = ident,
			    .join = join_pair };
	cr_assert_eq(gs_flow_bounded_join(l, r, &jn, NULL, &j), GS_EVERSION);
	cr_assert_null(j);
	assert_flow_refused(l, "gs_flow_bounded_join");
	assert_flow_refused(r, "gs_flow_bounded_join");
	gs_flow_free(l);
	gs_flow_free(r);

	gs_stage *s = (gs_stage *)&s;
	f = numbers(4);
	cr_assert_eq(
		gs_flow_stream(f, NULL,
			       &(gs_stage_opts){
				       .version = GS_STAGE_OPTS_VERSION + 1 },
			       &s),
		GS_EVERSION);
	cr_assert_eq(s, (gs_stage *)&s, "out-param touched on error");
	assert_flow_refused(f, "gs_flow_stream");
	gs_flow_free(f);

	gs_pipeline *p;
	recorder rec = { 0 };
	GS_OK_OR_DIE(gs_pipeline_new(NULL, &p));
	GS_OK_OR_DIE(
		gs_stage_new(p, GS_CONSUMER, &recorder_ops, &rec, NULL, &s));
	f = numbers(4);
	cr_assert_eq(
		gs_flow_into_stages(
			f, p, &s, 1,
			&(gs_sub_opts){ .version = GS_SUB_OPTS_VERSION + 1 }),
		GS_EVERSION);
	assert_flow_refused(f, "gs_flow_into_stages");
	gs_pipeline_free(p);
	gs_flow_free(f);
}

Test(version, a_flow_with_zero_and_current_versions_runs,
     .timeout = GS_TEST_TIMEOUT)
{
	for (uint32_t v = 0; v < 2; v++) {
		void *ev[100];
		for (size_t i = 0; i < 100; i++)
			ev[i] = GS_EV(i + 1);
		gs_flow *f;
		GS_OK_OR_DIE(gs_flow_from_array(
			ev, 100,
			&(gs_flow_opts){ .version = v ? GS_FLOW_OPTS_VERSION
						      : 0 },
			&f));
		GS_OK_OR_DIE(gs_flow_partition(
			f, &(gs_flow_partition_opts){
				   .version = v ? GS_FLOW_PARTITION_OPTS_VERSION
						: 0,
				   .stages = 2 }));
		GS_OK_OR_DIE(gs_flow_reduce(f, NULL, add, NULL));
		void **out;
		size_t n;
		GS_OK_OR_DIE(gs_flow_collect(f, &out, &n));
		gs_flow_free(f);
		uintptr_t sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += GS_VAL(out[i]);
		free(out);
		cr_assert_eq(n, 2);
		cr_assert_eq(sum, 5050);
	}
}
