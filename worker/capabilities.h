// What a worker tells a coordinator about itself on connect: the machine
// (arch, cores, CPU features, RAM), its budget, and how fast its kernels
// stream weights, measured once at start with a short probe.
#pragma once
#include <cstdint>

#include "ferry.pb.h"
#include "kernels/thread_pool.h"

namespace ferry::worker {

// Measures matrix-vector speed per weight type (f32, and q8_0 where the
// kernels support it) for about `seconds` in total with the real kernels.
// The probe matrix grows from 1 MB (x4 per step) until a pass is long enough
// to time, up to probe_limit(budget), so slow machines finish fast. Its
// memory is freed before the worker listens.
wire::Capabilities probe_capabilities(kernels::ThreadPool& pool, uint64_t memory_budget, double seconds = 0.25);
// The largest f32 probe matrix: 64 MB, or under a budget the largest step
// (1, 4, 16 MB) within an eighth of it (with its q8_0 copy, a sixth). With no
// budget, the machine's available RAM bounds it the same way (0: unknown).
int64_t probe_limit(uint64_t memory_budget, uint64_t ram_available = 0);
// The smallest shard whose served decode steps replace the probe's speed:
// twice the last-level cache, within 8..64 MB (a VM may report its host's
// whole L3; a shard that fits the cache would teach the cache's speed).
uint64_t served_speed_min_bytes();

}  // namespace ferry::worker
