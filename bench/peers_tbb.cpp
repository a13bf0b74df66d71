// SPDX-License-Identifier: MIT
// oneTBB flow graph for the peer topologies (see topo_peers_tbb.c): an
// input_node counting 1..n into `sinks` serial function_nodes that sum,
// through a broadcast_node. Serial nodes queue what they cannot take yet.
#include <tbb/flow_graph.h>
#include <tbb/version.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "peers_tbb.h"

extern "C" void gsb_tbb_run(size_t sinks, uint64_t produced,
			    gsb_tbb_result *out)
{
	using namespace tbb::flow;
	graph g;
	uint64_t next = 1;
	input_node<uint64_t> src(g, [&](tbb::flow_control &fc) -> uint64_t {
		if (next > produced) {
			fc.stop();
			return 0;
		}
		return next++;
	});
	broadcast_node<uint64_t> fan(g);
	std::vector<uint64_t> sum(sinks), count(sinks);
	std::vector<function_node<uint64_t> *> nodes;
	for (size_t i = 0; i < sinks; i++)
		nodes.push_back(new function_node<uint64_t>(
			g, serial, [&sum, &count, i](uint64_t v) {
				sum[i] += v;
				count[i]++;
				return continue_msg();
			}));
	make_edge(src, fan);
	for (auto *n : nodes)
		make_edge(fan, *n);
	auto t0 = std::chrono::steady_clock::now();
	src.activate();
	g.wait_for_all();
	out->seconds = std::chrono::duration<double>(
			       std::chrono::steady_clock::now() - t0)
			       .count();
	out->sum = out->count = 0;
	for (size_t i = 0; i < sinks; i++) {
		out->sum += sum[i];
		out->count += count[i];
		delete nodes[i];
	}
	out->major = TBB_VERSION_MAJOR;
	out->minor = TBB_VERSION_MINOR;
}
