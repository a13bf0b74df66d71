// SPDX-License-Identifier: MIT
/*
 * The consumer that test_amqp_faults kills mid-batch: consumes a queue
 * through a batcher, keeps its tally in a file the test maps too, and
 * blocks in its third batch until killed.
 *
 * Usage: doomed_consumer PORT QUEUE TALLY_FILE
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <genstage/amqp.h>

#include "fault_tally.h"

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int fd = open(argv[3], O_RDWR);
	tally_ids *t = fd < 0 ? MAP_FAILED
			      : mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE,
				     MAP_SHARED, fd, 0);
	if (t == MAP_FAILED)
		return 1;
	t->hang_in_batch = 3;
	static const gs_broadway_ops ops = { .handle_message = tally_message,
					     .handle_batch = tally_batch };
	gs_amqp_source_opts o = {
		.conn = { .port = atoi(argv[1]) },
		.queue = argv[2],
		.on_failure = GS_AMQP_REQUEUE,
		.prefetch = 200,
	};
	gs_broadway_batcher_opts b = { .batch_size = 50,
				       .batch_timeout = 60000,
				       .blocking = true };
	gs_broadway *bw;
	if (gs_broadway_new(&ops, t,
			    &(gs_broadway_opts){
				    .producer = gs_amqp_broadway_producer(&o, 1),
				    .processors = { .concurrency = 1 },
				    .batchers = &b,
				    .n_batchers = 1 },
			    &bw) ||
	    gs_broadway_start(bw))
		return 1;
	for (;;)
		pause();
}
