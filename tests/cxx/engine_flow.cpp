// SPDX-License-Identifier: MIT
/*
 * A C++17 program on the public API: a pipeline of stages (a ready-made
 * source and a consumer whose callbacks are lambdas) and a flow (map,
 * partition, reduce, collect), each checked against a plain loop, and the
 * headers' version against the library's. Exits non-zero on any mismatch.
 */
#include <genstage/genstage.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace
{

constexpr std::uintptr_t N = 10000;

void *ev(std::uintptr_t v)
{
	return reinterpret_cast<void *>(v);
}

std::uintptr_t val(const void *e)
{
	return reinterpret_cast<std::uintptr_t>(e);
}

std::vector<void *> numbers()
{
	std::vector<void *> v;
	for (std::uintptr_t i = 1; i <= N; i++)
		v.push_back(ev(i));
	return v;
}

bool fail(const char *what, gs_err err)
{
	std::fprintf(stderr, "cxx: %s: %s\n", what, gs_strerror(err));
	return false;
}

/* 1..N from an array through a consumer that adds them up. */
bool engine()
{
	std::vector<void *> in = numbers();
	std::uint64_t sum = 0;
	gs_pipeline *p = nullptr;
	gs_stage *src = nullptr, *sink = nullptr;
	gs_stage_ops ops{};
	ops.version = GS_STAGE_OPS_VERSION;
	ops.handle_events = [](void *state, gs_stage *, gs_sub *, void **events,
			       std::size_t n) -> int {
		for (std::size_t i = 0; i < n; i++)
			*static_cast<std::uint64_t *>(state) += val(events[i]);
		return GS_OK;
	};
	gs_err err = gs_pipeline_new(nullptr, &p);
	if (err)
		return fail("gs_pipeline_new", err);
	if ((err = gs_from_array(p, in.data(), in.size(), nullptr, &src)) ||
	    (err = gs_stage_new(p, GS_CONSUMER, &ops, &sum, nullptr, &sink)) ||
	    (err = gs_subscribe(sink, src, nullptr, nullptr)) ||
	    (err = gs_pipeline_start(p)) || (err = gs_pipeline_wait(p))) {
		gs_pipeline_free(p);
		return fail("pipeline", err);
	}
	gs_pipeline_free(p);
	if (sum != N * (N + 1) / 2) {
		std::fprintf(stderr, "cxx: pipeline sum %llu\n",
			     static_cast<unsigned long long>(sum));
		return false;
	}
	return true;
}

/* The sum of the squares of 1..N over two partitions, one accumulator
 * (a counter in the pointer) per partition. */
bool flow()
{
	std::vector<void *> in = numbers();
	gs_flow *f = nullptr;
	gs_err err = gs_flow_from_array(in.data(), in.size(), nullptr, &f);
	if (err)
		return fail("gs_flow_from_array", err);
	gs_flow_partition_opts po{};
	po.version = GS_FLOW_PARTITION_OPTS_VERSION;
	po.stages = 2;
	void **out = nullptr;
	std::size_t n = 0;
	gs_flow_map(
		f, [](void *, void *e) { return ev(val(e) * val(e)); },
		nullptr);
	gs_flow_partition(f, &po);
	gs_flow_reduce(
		f, nullptr,
		[](void *, void **acc, void *e) {
			*acc = ev(val(*acc) + val(e));
			return 0;
		},
		nullptr);
	if ((err = gs_flow_collect(f, &out, &n))) {
		std::fprintf(stderr, "cxx: flow: %s\n", gs_flow_errmsg(f));
		gs_flow_free(f);
		return false;
	}
	gs_flow_free(f);
	std::uint64_t sum = 0, want = 0;
	for (std::size_t i = 0; i < n; i++)
		sum += val(out[i]);
	std::free(out);
	for (std::uintptr_t i = 1; i <= N; i++)
		want += i * i;
	if (n != 2 || sum != want) {
		std::fprintf(stderr, "cxx: flow gave %zu results, sum %llu\n",
			     n, static_cast<unsigned long long>(sum));
		return false;
	}
	return true;
}

bool version()
{
	if (gs_version() != GS_VERSION_NUMBER) {
		std::fprintf(stderr, "cxx: library %s, headers %s\n",
			     gs_version_string(), GS_VERSION_STRING);
		return false;
	}
	return true;
}

} // namespace

int main()
{
	bool ok = version() && engine() && flow();
	std::printf("cxx: %s (genstage-c %s)\n", ok ? "ok" : "FAILED",
		    gs_version_string());
	return ok ? 0 : 1;
}
