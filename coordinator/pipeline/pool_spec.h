// A pool described on the command line, for planning before the machines
// exist or are booted (`ferry plan MODEL --pool ...`):
//
//   POOL   := ENTRY ("," ENTRY)*
//   ENTRY  := [COUNT "x"] BUDGET ["@" SPEED] [":" ARCH]
//   BUDGET := a size as ferry-worker --memory takes it (128M, 1.5G, 65536), or "unlimited"
//   SPEED  := NUMBER     relative: that many times the reference speed (--gbps, default 1 GB/s)
//           | NUMBER "G" absolute GB/s of weight streaming (what a worker's probe measures)
//   ARCH   := x86_64 | i686 (the process overhead differs; default x86_64)
//
// "4x160M" is four 160 MB workers of the reference speed; "128M,256M@0.5,512M@2G:i686"
// is three workers: 128 MB at the reference speed, 256 MB at half of it, and a
// 32-bit one with 512 MB streaming 2 GB/s. Workers are named pool-1, pool-2, ...
#pragma once
#include <string>
#include <vector>

#include "coordinator/pipeline/planner.h"

namespace ferry {

struct PoolDefaults {
    double reference_gbps = 1.0;  // what SPEED 1 (or no SPEED) means
    double link_mbps = 100;       // every worker's link to the coordinator
    double link_latency_ms = 0.2; // one way
};

// At most this many workers in one description.
constexpr int kMaxPoolWorkers = 4096;

// Throws ferry::Error naming the entry and what is wrong with it.
std::vector<WorkerCapacity> parse_pool(const std::string& text, const PoolDefaults& defaults = {});

}  // namespace ferry
