#include "common/shard_memory.h"

#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "common/transformer.h"

namespace ferry {

ShardMemory shard_memory(const ModelConfig& c, const std::vector<TensorInfo>& tensors, const ShardSpec& spec,
                         int context, KvType kv_type) {
    std::unordered_map<std::string, uint64_t> size_of;
    for (const TensorInfo& t : tensors) size_of.emplace(t.name, t.bytes);
    const bool tied = size_of.find("output.weight") == size_of.end();
    ShardMemory m;
    for (const std::string& name : shard_tensor_names(c, spec, tied)) {
        auto it = size_of.find(name);
        if (it != size_of.end()) m.weights += it->second;
    }
    const int layers = spec.last_layer - spec.first_layer;
    m.kv_cache = KVCache::bytes_for(layers, context, c.kv_dim(), kv_type);
    m.workspace = layers > 0 ? Workspace::bytes_for(c, kMaxBatch, context, kv_type) : 0;
    // One batch of activations received and one being sent, plus logits on the head.
    m.buffers = 2ull * kMaxBatch * c.dim * sizeof(float) + (spec.head ? 4ull * c.vocab_size : 0);
    m.overhead = kWorkerProcessOverhead;
    return m;
}

std::string format_bytes(uint64_t bytes) {
    char buf[32];
    const double b = static_cast<double>(bytes);
    if (bytes >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GB", b / (1ull << 30));
    else if (bytes >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MB", b / (1ull << 20));
    else if (bytes >= (1ull << 10)) std::snprintf(buf, sizeof buf, "%.1f KB", b / (1ull << 10));
    else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    return buf;
}

bool parse_bytes(const std::string& text, uint64_t* out) {
    if (text.empty()) return false;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || !(v >= 0)) return false;
    double mult = 1;
    const std::string unit(end);
    if (unit.empty() || unit == "B") mult = 1;
    else if (unit == "K" || unit == "KB" || unit == "k") mult = 1ull << 10;
    else if (unit == "M" || unit == "MB" || unit == "m") mult = 1ull << 20;
    else if (unit == "G" || unit == "GB" || unit == "g") mult = 1ull << 30;
    else return false;
    const double bytes = v * mult;
    if (bytes > 1.8e19) return false;
    *out = static_cast<uint64_t>(bytes);
    return true;
}

}  // namespace ferry
