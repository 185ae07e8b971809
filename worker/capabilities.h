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
// The probe matrix grows from 1 MB until a pass is long enough to time, up
// to 64 MB (32/8 MB under a budget of 1 GB/256 MB), so slow machines finish fast.
wire::Capabilities probe_capabilities(kernels::ThreadPool& pool, uint64_t memory_budget, double seconds = 0.25);

}  // namespace ferry::worker
