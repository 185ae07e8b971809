// How many bytes a process needs to run a shard: the one function the
// planner, `ferry plan` and a worker checking its --memory budget all use.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/model_config.h"
#include "common/model_file.h"
#include "common/weights.h"

namespace ferry {

struct ShardMemory {
    uint64_t weights = 0;    // tensors in their stored type (mapped from the model or the shard cache)
    uint64_t kv_cache = 0;   // keys and values for the context
    uint64_t workspace = 0;  // activations and scratch for the largest batch
    uint64_t buffers = 0;    // activation frames in flight (receive, send)
    uint64_t overhead = 0;   // the process itself: code, libraries, heap, thread stacks (measured)
    uint64_t total() const { return weights + kv_cache + workspace + buffers + overhead; }
};

// Resident bytes of an idle ferry-worker before it loads a shard, measured
// with /proc/self/status VmRSS on x86-64 Debian 12 (see docs/BENCHMARKS.md).
constexpr uint64_t kWorkerProcessOverhead = 8ull << 20;

// tensors: the model's directory (for stored sizes). tied: no output.weight.
ShardMemory shard_memory(const ModelConfig& c, const std::vector<TensorInfo>& tensors, const ShardSpec& spec,
                         int context, KvType kv_type = KvType::f32);

// "12.3 MB" style, for plans and refusals.
std::string format_bytes(uint64_t bytes);
// Parses "128M", "1.5G", "65536" (bytes), "512K"; false if malformed.
bool parse_bytes(const std::string& text, uint64_t* out);

}  // namespace ferry
