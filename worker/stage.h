// A worker's part of the model, ready to run: the shard file mapped (from the
// cache or --model-dir), its weights bound, its KV cache and workspace
// allocated. run() turns one Forward into what goes next: a Forward for the
// next stage, or a Result for the coordinator.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/model_file.h"
#include "common/transformer.h"
#include "common/weights.h"
#include "ferry.pb.h"
#include "kernels/thread_pool.h"

namespace ferry::worker {

struct StageSetup {
    ShardSpec spec;
    int context = 0;
    KvType kv_type = KvType::f32;
    wire::WireType wire = wire::WIRE_F32;
    bool last = false;  // returns results to the coordinator
    int stage_index = 0;
    int max_positions = 0;  // most positions in one request (what the memory check counted); 0: the context
    int slots = 1;          // sequences with a KV cache each (Assign.slots)
};

class Stage {
public:
    // Opens `path` (a shard image or the whole model), checks its config
    // equals `expected`, binds the range. Throws ferry::Error naming the file.
    Stage(const std::string& path, const ModelConfig& expected, const StageSetup& setup);

    const StageSetup& setup() const { return setup_; }
    const std::string& path() const { return file_.path; }
    const ModelFile& file() const { return file_; }
    uint64_t weight_bytes() const { return weight_bytes_; }
    // What a Forward streams: the weights but a vocabulary slice's rows (read only by classify()).
    uint64_t forward_bytes() const { return weight_bytes_ - slice_bytes_; }
    // The type most of the shard's layer weights are stored in (dominant_tensor_type).
    const std::string& weight_type() const { return weight_type_; }
    bool has_layers() const { return setup_.spec.last_layer > setup_.spec.first_layer; }

    // Runs `in` (validated here: positions, sizes) and fills `out` with the
    // Forward for the next stage or the Result (for a prefill micro-batch that
    // needs none, a Result with only the trace). Returns whether `out` is to
    // be sent. `done` counts finished positions for heartbeats. Throws
    // ferry::Error on bad input.
    bool run(const wire::Forward& in, wire::Frame& out, kernels::ThreadPool* pool, std::atomic<int>& done);
    // The stage's vocabulary slice applied to final hidden states (Classify):
    // each row's best logit and its index, or the slice's logits. Throws
    // ferry::Error on bad input or when it holds no slice.
    void classify(const wire::Classify& in, wire::Classified& out, kernels::ThreadPool* pool);

private:
    ModelFile file_;
    StageSetup setup_;
    Weights weights_;
    std::vector<KVCache> kv_;  // one per sequence slot
    Workspace ws_;
    uint64_t weight_bytes_ = 0, slice_bytes_ = 0;
    std::string weight_type_;
    std::vector<float> x_, logits_;
    std::vector<RowRef> rows_;
    std::vector<int> last_rows_;  // per span with result_needed: its last row
};

}  // namespace ferry::worker
