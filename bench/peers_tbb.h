// SPDX-License-Identifier: MIT
/* The C side of the oneTBB peer (peers_tbb.cpp), free of C11 atomics so
 * that C++ can include it. */
#ifndef GSB_PEERS_TBB_H
#define GSB_PEERS_TBB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gsb_tbb_result {
	uint64_t sum, count;
	double seconds;
	int major, minor;
} gsb_tbb_result;

/* Counts 1..produced through a flow graph into `sinks` serial nodes. */
void gsb_tbb_run(size_t sinks, uint64_t produced, gsb_tbb_result *out);

#ifdef __cplusplus
}
#endif

#endif
