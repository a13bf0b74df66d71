// SPDX-License-Identifier: MIT
/*
 * The consumer's side of the demand protocol as pure arithmetic, so the
 * batch rule lives in one place and is tested on its own (see the rule in
 * include/genstage/subscription.h).
 */
#ifndef GS_DEMAND_H
#define GS_DEMAND_H

#include <stddef.h>

typedef struct gs__demand {
	size_t max;         /* max_demand */
	size_t min;         /* min_demand, < max */
	size_t outstanding; /* asked for and not yet received */
} gs__demand;

/* The first ask of an automatic subscription. */
static inline size_t gs__demand_start(gs__demand *d)
{
	d->outstanding = d->max;
	return d->max;
}

/* The largest chunk handed to handle_events at once. */
static inline size_t gs__demand_chunk(const gs__demand *d)
{
	return d->max - d->min;
}

/* A chunk of n events (n <= outstanding) has been handled: returns how many
 * to ask for now, 0 for none. */
static inline size_t gs__demand_taken(gs__demand *d, size_t n)
{
	d->outstanding -= n;
	if (d->outstanding > d->min)
		return 0;
	size_t ask = d->max - d->outstanding;
	d->outstanding = d->max;
	return ask;
}

#endif
