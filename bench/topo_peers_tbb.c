// SPDX-License-Identifier: MIT
/* oneTBB peers on the 1-1 and 1-4-broadcast work, built only when TBB is
 * present; the graph itself is in peers_tbb.cpp. */
#include <stdio.h>

#include "bench.h"
#include "peers_tbb.h"

static void run(const gsb_params *p, size_t sinks, gsb_result *r)
{
	uint64_t produced = p->events / sinks;
	gsb_tbb_result t;
	gsb_tbb_run(sinks, produced, &t);
	r->seconds = t.seconds;
	r->delivered = t.count;
	r->checksum = t.sum;
	r->expected = gsb_expected_sum(produced, 0) * sinks;
	snprintf(r->note, sizeof r->note,
		 "oneTBB %d.%d flow graph, serial function_nodes", t.major,
		 t.minor);
}

void gsb_run_tbb_1_1(const gsb_topology *t, const gsb_params *p, gsb_result *r)
{
	(void)t;
	run(p, 1, r);
}

void gsb_run_tbb_1_4_broadcast(const gsb_topology *t, const gsb_params *p,
			       gsb_result *r)
{
	(void)t;
	run(p, 4, r);
}
