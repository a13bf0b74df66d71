// SPDX-License-Identifier: MIT
/* The handlers that keep a tally_ids (see fault_tally.h). */
#include <stdlib.h>
#include <unistd.h>

#include "fault_tally.h"

static size_t id_of(const gs_message *m)
{
	return strtoul(m->data, NULL, 10);
}

int tally_message(void *arg, size_t processor, gs_message *m)
{
	(void)processor;
	tally_ids *t = arg;
	size_t id = id_of(m);
	if (t->sleep_us)
		usleep(t->sleep_us);
	if (id < GS_TEST_AMQP_FAULT_MESSAGES)
		atomic_fetch_add(&t->counts[id], 1);
	atomic_fetch_add(&t->handled, 1);
	return 0;
}

int tally_batch(void *arg, gs_message **msgs, size_t n,
		const gs_batch_info *info)
{
	(void)info;
	tally_ids *t = arg;
	uint64_t b = atomic_fetch_add(&t->batches, 1) + 1;
	if (b != t->hang_in_batch)
		return 0;
	for (size_t i = 0; i < n; i++) {
		size_t id = id_of(msgs[i]);
		if (id < GS_TEST_AMQP_FAULT_MESSAGES)
			atomic_store(&t->in_hung[id], 1);
	}
	atomic_store(&t->hanging, true);
	for (;;)
		pause(); /* until the kill */
}
