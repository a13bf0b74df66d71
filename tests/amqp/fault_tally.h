// SPDX-License-Identifier: MIT
/*
 * Per-id counts of what a consumer processed, in memory a test may share
 * with another process (the doomed consumer), and the handlers that keep
 * them. Only atomics: no locks across processes.
 */
#ifndef GS_FAULT_TALLY_H
#define GS_FAULT_TALLY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <genstage/broadway.h>

#ifndef GS_TEST_AMQP_FAULT_MESSAGES
#define GS_TEST_AMQP_FAULT_MESSAGES 3000
#endif

typedef struct tally_ids {
	_Atomic unsigned counts[GS_TEST_AMQP_FAULT_MESSAGES];
	_Atomic uint64_t handled;
	unsigned sleep_us; /* handle_message sleeps (blocking stages) */
	/* handle_batch blocks for ever in the batch numbered this (1-based;
	 * 0: never), after marking its messages in in_hung and setting
	 * hanging. */
	uint64_t hang_in_batch;
	_Atomic uint64_t batches;
	_Atomic bool hanging;
	_Atomic unsigned in_hung[GS_TEST_AMQP_FAULT_MESSAGES];
} tally_ids;

/* Broadway handlers; `arg` is a tally_ids. */
int tally_message(void *arg, size_t processor, gs_message *m);
int tally_batch(void *arg, gs_message **msgs, size_t n,
		const gs_batch_info *info);

#endif
