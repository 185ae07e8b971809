// The whole model in this process: embed, all layers, logits. As an Engine
// it runs one sequence (slot 0); as a BatchEngine, `slots` sequences whose
// positions share each batch's matrix products.
#pragma once
#include <deque>
#include <memory>
#include <vector>

#include "common/model_file.h"
#include "common/transformer.h"
#include "common/weights.h"
#include "coordinator/generation/batch_engine.h"
#include "coordinator/generation/engine.h"
#include "kernels/thread_pool.h"

namespace ferry {

class LocalEngine : public Engine, public BatchEngine {
public:
    LocalEngine(const ModelFile& file, int context, kernels::ThreadPool* pool, KvType kv_type = KvType::f32,
                int slots = 1);
    const ModelConfig& config() const override { return config_; }
    int context() const override { return kv_.front().seq_len(); }
    float* forward(const int* tokens, int n_tokens, int pos) override;
    const Weights& weights() const { return weights_; }

    const ModelConfig& batch_config() const override { return config_; }
    int slot_context() const override { return context(); }
    int slots() const override { return static_cast<int>(kv_.size()); }
    int max_rows() const override { return kMaxBatch; }
    int depth() const override { return 1; }
    void submit(Batch batch) override;
    Batch wait() override;
    size_t in_flight() const override { return done_.size(); }
    PipelineStats batch_stats() const override;

private:
    ModelConfig config_;
    Weights weights_;
    std::vector<KVCache> kv_;  // one per slot
    Workspace ws_;
    kernels::ThreadPool* pool_;
    std::vector<float> x_, logits_;
    std::deque<Batch> done_;  // computed at submit, handed back by wait
    NodeStats stats_;         // what batches did (forward() is not counted)
};

}  // namespace ferry
