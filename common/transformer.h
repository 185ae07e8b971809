// The forward pass, in three separable steps so that a pipeline stage runs
// just its part:  embed (token ids -> activations), forward_layers (a range
// of transformer blocks over a batch of positions), and logits (final norm and
// classifier). Single-process generation is these three composed.
#pragma once
#include <cstdint>
#include <vector>

#include "common/model_config.h"
#include "common/weights.h"
#include "kernels/thread_pool.h"

namespace ferry {

// Keys and values of the layers one process runs: [layer][position][kv_dim].
struct KVCache {
    int n_layers = 0;
    int seq_len = 0;
    int kv_dim = 0;
    std::vector<float> key, value;

    KVCache() = default;
    KVCache(int n_layers, int seq_len, int kv_dim);
    // What KVCache(n_layers, seq_len, kv_dim) allocates.
    static uint64_t bytes_for(int n_layers, int seq_len, int kv_dim) {
        return 2ull * sizeof(float) * static_cast<uint64_t>(n_layers) * seq_len * kv_dim;
    }
    float* key_at(int layer, int pos) { return key.data() + (static_cast<int64_t>(layer) * seq_len + pos) * kv_dim; }
    float* value_at(int layer, int pos) {
        return value.data() + (static_cast<int64_t>(layer) * seq_len + pos) * kv_dim;
    }
    uint64_t bytes() const { return (key.size() + value.size()) * sizeof(float); }
};

// Scratch buffers for up to max_batch positions at once.
struct Workspace {
    int max_batch = 0;
    std::vector<float> xb, xb2, q, hb, hb2, att;

    Workspace() = default;
    Workspace(const ModelConfig& c, int max_batch, int ctx);
    uint64_t bytes() const;
    // What a Workspace(c, max_batch, ctx) allocates, without allocating it.
    static uint64_t bytes_for(const ModelConfig& c, int max_batch, int ctx);
};

// Positions processed per forward_layers step; longer prompts go in chunks.
constexpr int kMaxBatch = 32;

// x[t * dim ..] = embedding of tokens[t]. Throws ferry::Error on an id
// outside the vocabulary.
void embed_tokens(const ModelConfig& c, const Weights& w, const int* tokens, int n_tokens, float* x);

// Runs w's layers on n_tokens activations at positions pos .. pos+n_tokens-1,
// in place in x ([n_tokens][dim]), reading and extending the KV cache.
void forward_layers(const ModelConfig& c, const Weights& w, KVCache& kv, int pos, int n_tokens, float* x,
                    Workspace& ws, kernels::ThreadPool* pool);

// logits[vocab] from the activation x[dim] of one position; x is normed in place.
void compute_logits(const ModelConfig& c, const Weights& w, float* x, float* logits, kernels::ThreadPool* pool);

}  // namespace ferry
