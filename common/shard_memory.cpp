#include "common/shard_memory.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "common/transformer.h"

namespace ferry {

uint64_t worker_process_overhead(const std::string& arch) {
    if (arch == "i686") return kWorkerOverheadI686;
    if (arch == "aarch64") return kWorkerOverheadAarch64;
    if (arch == "armhf") return kWorkerOverheadArmhf;
    return kWorkerOverheadX86_64;
}

bool known_worker_arch(const std::string& arch) {
    return arch == "x86_64" || arch == "i686" || arch == "aarch64" || arch == "armhf";
}

uint64_t tensor_bytes_named(const std::vector<TensorInfo>& tensors, const std::vector<std::string>& names) {
    std::unordered_map<std::string, uint64_t> size_of;
    for (const TensorInfo& t : tensors) size_of.emplace(t.name, t.bytes);
    uint64_t bytes = 0;
    for (const std::string& name : names) {
        auto it = size_of.find(name);
        if (it != size_of.end()) bytes += it->second;
    }
    return bytes;
}

uint64_t slice_buffers(const ModelConfig& c, int64_t rows, int slots) {
    const uint64_t k = static_cast<uint64_t>(std::max(1, slots)), dim = static_cast<uint64_t>(c.dim);
    // The Classify frame and its parsed copy, the normed rows; logits, the Classified message and its frame.
    return k * (3 * dim * 4 + 3 * static_cast<uint64_t>(rows) * 4);
}

namespace {

// The largest request in flight on a stage of n positions (Stage::run and the
// worker's frame handling): receiving, the frame body and its parsed copy;
// computing, the parsed input, the stage's f32 activations (kept at their
// largest), the output message and its encoded frame.
uint64_t request_buffers(const ModelConfig& c, const ShardSpec& spec, const StageLoad& load) {
    // A vocabulary slice's holder without layers or embedding gets no Forward requests, only Classify.
    if (spec.has_slice() && spec.last_layer == spec.first_layer && !spec.embedding)
        return slice_buffers(c, spec.vocab_last - spec.vocab_first, load.slots);
    const uint64_t n = static_cast<uint64_t>(load.max_positions > 0 ? std::min(load.max_positions, load.context)
                                                                     : load.context);
    const uint64_t dim = static_cast<uint64_t>(c.dim), wire = static_cast<uint64_t>(load.wire_bytes);
    const uint64_t activations = n * dim * 4;
    const uint64_t in = spec.embedding ? n * 4 : n * dim * wire;
    // The last stage sends one position back per sequence in the request (or a token: counted as one position).
    const uint64_t slots = static_cast<uint64_t>(std::max(1, load.slots));
    const uint64_t out = load.last ? std::min(n, slots) * dim * wire : n * dim * wire;
    uint64_t bytes = activations + std::max(2 * in, in + 2 * out);
    // A chunked prefill arrives faster than the first stage computes it: the
    // rest of the prompt waits in its queue, parsed.
    if (load.first && !spec.embedding && n < static_cast<uint64_t>(load.context))
        bytes += (static_cast<uint64_t>(load.context) - n) * dim * wire;
    // Head: logits, the sampler's candidates (value and index), a logits result and its frame.
    if (spec.head) bytes += static_cast<uint64_t>(c.vocab_size) * (std::min(n, slots) * (4 + 4 + 4) + 8);
    if (spec.has_slice()) bytes += slice_buffers(c, spec.vocab_last - spec.vocab_first, load.slots);
    return bytes;
}

}  // namespace

ShardMemory shard_memory(const ModelConfig& c, const std::vector<TensorInfo>& tensors, const ShardSpec& spec,
                         const StageLoad& load) {
    bool tied = true;
    for (const TensorInfo& t : tensors)
        if (t.name == "output.weight") tied = false;
    ShardMemory m;
    m.weights = tensor_bytes_named(tensors, shard_tensor_names(c, spec, tied));
    if (spec.embedding) m.embedding = tensor_bytes_named(tensors, {"token_embd.weight"});
    if (spec.head)
        m.head = tensor_bytes_named(tensors, {"output_norm.weight", tied ? (spec.embedding ? "" : "token_embd.weight")
                                                                          : "output.weight"});
    if (spec.has_slice()) {
        // The slice's rows of the table (an image lists only them as output.weight).
        const TensorInfo* table = nullptr;
        for (const TensorInfo& t : tensors)
            if (t.name == "output.weight" || (!table && t.name == "token_embd.weight")) table = &t;
        const uint64_t rows = static_cast<uint64_t>(spec.vocab_last - spec.vocab_first);
        const uint64_t slice = table && table->rows > 0 ? table->bytes / static_cast<uint64_t>(table->rows) * rows : 0;
        m.head = tensor_bytes_named(tensors, {"output_norm.weight"}) + slice;
        m.weights = m.weights - tensor_bytes_named(tensors, {"output.weight"}) + slice;
    }
    const int layers = spec.last_layer - spec.first_layer;
    m.kv_cache = static_cast<uint64_t>(std::max(1, load.slots)) * KVCache::bytes_for(layers, load.context, c.kv_dim(), load.kv_type);
    m.workspace = layers > 0 ? Workspace::bytes_for(c, kMaxBatch, load.context) : 0;
    m.buffers = request_buffers(c, spec, load);
    m.overhead = worker_process_overhead(load.arch);
    return m;
}

ShardMemory shard_memory(const ModelConfig& c, const std::vector<TensorInfo>& tensors, const ShardSpec& spec,
                         int context, KvType kv_type) {
    StageLoad load;
    load.context = context;
    load.kv_type = kv_type;
#if defined(__i386__)
    load.arch = "i686";
#endif
    return shard_memory(c, tensors, spec, load);
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

double to_mb(uint64_t bytes) { return static_cast<double>(bytes) / (1ull << 20); }

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
