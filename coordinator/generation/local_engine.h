// The whole model in this process: embed, all layers, logits.
#pragma once
#include <memory>
#include <vector>

#include "common/model_file.h"
#include "common/transformer.h"
#include "common/weights.h"
#include "coordinator/generation/engine.h"
#include "kernels/thread_pool.h"

namespace ferry {

class LocalEngine : public Engine {
public:
    LocalEngine(const ModelFile& file, int context, kernels::ThreadPool* pool, KvType kv_type = KvType::f32);
    const ModelConfig& config() const override { return config_; }
    int context() const override { return kv_.seq_len(); }
    float* forward(const int* tokens, int n_tokens, int pos) override;
    const Weights& weights() const { return weights_; }

private:
    ModelConfig config_;
    Weights weights_;
    KVCache kv_;
    Workspace ws_;
    kernels::ThreadPool* pool_;
    std::vector<float> x_, logits_;
};

}  // namespace ferry
