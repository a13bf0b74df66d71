// SPDX-License-Identifier: MIT
/* The private SPSC ring (stage/ring.h): capacity, wraparound of slots and
 * of the free-running indices, and an ordered two-thread transfer. */
#include <pthread.h>
#include <sched.h>

#include "gs_test.h"
#include "ring.h"

#ifndef GS_TEST_RING_ITEMS
#define GS_TEST_RING_ITEMS 1000000
#endif

/* The item `i` as a ring pointer; +1 so that none is NULL. */
#define ITEM(i) GS_EV((uintptr_t)(i) + 1)

Test(ring, capacity_is_the_next_power_of_two_and_at_least_two)
{
	static const size_t asked[][2] = { { 0, 2 },       { 1, 2 },
					   { 2, 2 },       { 3, 4 },
					   { 4, 4 },       { 5, 8 },
					   { 1000, 1024 }, { 1024, 1024 },
					   { 1025, 2048 } };
	for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++) {
		gs__ring r;
		cr_assert_eq(gs__ring_init(&r, asked[i][0]), 0);
		size_t cap = gs__ring_capacity(&r);
		cr_assert_eq(cap, asked[i][1], "asked %zu: capacity %zu",
			     asked[i][0], cap);
		cr_assert_eq(cap & (cap - 1), 0);
		cr_assert_eq(gs__ring_count(&r), 0);
		gs__ring_fini(&r);
	}
}

Test(ring, refuses_more_than_two_to_the_31)
{
	gs__ring r;
	cr_assert_eq(gs__ring_init(&r, ((size_t)1 << 31) + 1), -1);
}

Test(ring, holds_its_whole_capacity_and_no_more)
{
	gs__ring r;
	cr_assert_eq(gs__ring_init(&r, 8), 0);
	void *in[10];
	for (int i = 0; i < 10; i++)
		in[i] = ITEM(i);
	cr_assert_eq(gs__ring_space(&r, 8), 8);
	cr_assert_eq(gs__ring_push(&r, in, 10), 8, "a push stops when full");
	cr_assert_eq(gs__ring_count(&r), 8);
	cr_assert_eq(gs__ring_space(&r, 1), 0);
	cr_assert_eq(gs__ring_push(&r, in + 8, 2), 0);
	void **out = NULL;
	cr_assert_eq(gs__ring_peek(&r, &out, 100), 8);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(out[i], ITEM(i));
	/* Peeking does not consume. */
	cr_assert_eq(gs__ring_peek(&r, &out, 3), 3);
	cr_assert_eq(out[0], ITEM(0));
	gs__ring_release(&r, 3);
	cr_assert_eq(gs__ring_count(&r), 5);
	cr_assert_eq(gs__ring_space(&r, 3), 3);
	gs__ring_fini(&r);
}

Test(ring, an_empty_ring_peeks_nothing)
{
	gs__ring r;
	cr_assert_eq(gs__ring_init(&r, 4), 0);
	void **out = NULL;
	void *none[1] = { NULL };
	cr_assert_eq(gs__ring_peek(&r, &out, 4), 0);
	cr_assert_eq(gs__ring_push(&r, none, 0), 0);
	cr_assert_eq(gs__ring_peek(&r, &out, 4), 0);
	gs__ring_fini(&r);
}

/* Pushes and takes uneven amounts through a small ring on one thread,
 * checking order and that a peek never crosses the end of the slots. */
static void churn(gs__ring *r, size_t rounds, uint64_t seed)
{
	gs_rng rng = { seed };
	size_t cap = gs__ring_capacity(r);
	uintptr_t next_in = 0, next_out = 0;
	void *in[64];
	for (size_t k = 0; k < rounds; k++) {
		size_t want = gs_rng_range(&rng, 0,
					   cap + 2 < 64 ? cap + 2 : 64);
		for (size_t i = 0; i < want; i++)
			in[i] = ITEM(next_in + i);
		size_t room = cap - gs__ring_count(r);
		size_t put = gs__ring_push(r, in, want);
		cr_assert_eq(put, want < room ? want : room);
		next_in += put;

		size_t take = gs_rng_range(&rng, 0, cap);
		while (take) {
			void **out = NULL;
			size_t got = gs__ring_peek(r, &out, take);
			if (!got)
				break;
			cr_assert_leq(out + got, r->slots + cap,
				      "a peek runs past the slots");
			for (size_t i = 0; i < got; i++)
				cr_assert_eq(out[i], ITEM(next_out + i),
					     "round %zu item %zu", k, i);
			gs__ring_release(r, got);
			next_out += got;
			take -= got;
		}
		cr_assert_eq(gs__ring_count(r), next_in - next_out);
	}
}

Test(ring, wraps_around_its_slots_in_order)
{
	static const size_t caps[] = { 2, 4, 8, 16, 64 };
	for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
		gs__ring r;
		cr_assert_eq(gs__ring_init(&r, caps[i]), 0);
		churn(&r, 20000, i + 1);
		gs__ring_fini(&r);
	}
}

Test(ring, a_peek_stops_at_the_end_of_the_slots)
{
	gs__ring r;
	cr_assert_eq(gs__ring_init(&r, 8), 0);
	void *in[8];
	for (int i = 0; i < 8; i++)
		in[i] = ITEM(i);
	cr_assert_eq(gs__ring_push(&r, in, 6), 6);
	void **out = NULL;
	cr_assert_eq(gs__ring_peek(&r, &out, 6), 6);
	gs__ring_release(&r, 6);
	/* 6 more: slots 6, 7, then 0..3. */
	cr_assert_eq(gs__ring_push(&r, in, 6), 6);
	cr_assert_eq(gs__ring_peek(&r, &out, 6), 2);
	cr_assert_eq(out[0], ITEM(0));
	cr_assert_eq(out[1], ITEM(1));
	gs__ring_release(&r, 2);
	cr_assert_eq(gs__ring_peek(&r, &out, 6), 4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(out[i], ITEM(2 + i));
	gs__ring_release(&r, 4);
	cr_assert_eq(gs__ring_count(&r), 0);
	gs__ring_fini(&r);
}

Test(ring, indices_wrap_at_two_to_the_32)
{
	gs__ring r;
	cr_assert_eq(gs__ring_init(&r, 16), 0);
	/* Both sides a few items short of the wrap, as after 2^32 items. */
	uint32_t near = UINT32_MAX - 20;
	atomic_store(&r.tail, near);
	atomic_store(&r.head, near);
	r.head_seen = near;
	r.tail_seen = near;
	cr_assert_eq(gs__ring_count(&r), 0);
	cr_assert_eq(gs__ring_space(&r, 16), 16);
	churn(&r, 5000, 99);
	cr_assert_lt(atomic_load(&r.tail), near, "the tail wrapped");
	gs__ring_fini(&r);
}

/* --- two threads -------------------------------------------------------- */

typedef struct transfer {
	gs__ring r;
	size_t items;
	_Atomic uint64_t out_of_order;
	_Atomic uint64_t taken;
} transfer;

static void *produce(void *arg)
{
	transfer *t = arg;
	gs_rng rng = { 7 };
	void *in[100];
	size_t next = 0;
	while (next < t->items) {
		size_t want = gs_rng_range(&rng, 1, 100);
		if (want > t->items - next)
			want = t->items - next;
		for (size_t i = 0; i < want; i++)
			in[i] = ITEM(next + i);
		size_t done = 0;
		while (done < want) {
			size_t put = gs__ring_push(&t->r, in + done,
						   want - done);
			if (!put)
				sched_yield();
			done += put;
		}
		next += want;
	}
	return NULL;
}

static void *consume(void *arg)
{
	transfer *t = arg;
	gs_rng rng = { 8 };
	size_t next = 0;
	uint64_t bad = 0;
	while (next < t->items) {
		void **out = NULL;
		size_t got = gs__ring_peek(&t->r, &out,
					   gs_rng_range(&rng, 1, 100));
		if (!got) {
			sched_yield();
			continue;
		}
		for (size_t i = 0; i < got; i++)
			if (out[i] != ITEM(next + i))
				bad++;
		gs__ring_release(&t->r, got);
		next += got;
	}
	atomic_store(&t->out_of_order, bad);
	atomic_store(&t->taken, next);
	return NULL;
}

static void two_threads(size_t capacity, size_t items)
{
	transfer t = { .items = items };
	cr_assert_eq(gs__ring_init(&t.r, capacity), 0);
	pthread_t a, b;
	cr_assert_eq(pthread_create(&b, NULL, consume, &t), 0);
	cr_assert_eq(pthread_create(&a, NULL, produce, &t), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	cr_assert_eq(atomic_load(&t.taken), t.items);
	cr_assert_eq(atomic_load(&t.out_of_order), 0, "%llu items out of order",
		     (unsigned long long)atomic_load(&t.out_of_order));
	cr_assert_eq(gs__ring_count(&t.r), 0);
	gs__ring_fini(&t.r);
}

Test(ring, two_threads_move_every_item_in_order_through_a_large_ring,
     .timeout = GS_TEST_TIMEOUT)
{
	two_threads(1024, GS_TEST_RING_ITEMS);
}

Test(ring, two_threads_move_every_item_in_order_through_a_tiny_ring,
     .timeout = GS_TEST_TIMEOUT)
{
	/* Nearly every push and peek meets a full or empty ring. */
	two_threads(2, GS_TEST_RING_ITEMS / 10);
}
