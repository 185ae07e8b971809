// The forward pass, in three separable steps so that a pipeline stage runs
// just its part:  embed (token ids -> activations), forward_layers (a range
// of transformer blocks over a batch of positions), and logits (final norm and
// classifier). Single-process generation is these three composed.
#pragma once
#include <cstdint>
#include <vector>

#include "common/kv_cache.h"
#include "common/model_config.h"
#include "common/weights.h"
#include "kernels/thread_pool.h"

namespace ferry {

// Scratch buffers for up to max_batch positions at once.
struct Workspace {
    int max_batch = 0;
    int context = 0;  // positions attention can see (the att buffer's row length)
    std::vector<float> xb, xb2, q, k, v, hb, hb2, att;

    Workspace() = default;
    Workspace(const ModelConfig& c, int max_batch, int ctx);
    uint64_t bytes() const;
    // What a Workspace(c, max_batch, ctx) allocates. The KV type changes
    // nothing: attention reads the cache's rows as stored.
    static uint64_t bytes_for(const ModelConfig& c, int max_batch, int ctx);
};

// Positions processed per forward_layers step; longer prompts go in chunks.
constexpr int kMaxBatch = 32;

// Throws ferry::Error on an id outside the vocabulary.
void check_token_id(const ModelConfig& c, int token);
// x[t * dim ..] = embedding of tokens[t] (check_token_id first).
void embed_tokens(const ModelConfig& c, const Weights& w, const int* tokens, int n_tokens, float* x);

// Where one row of a batch belongs: its sequence's KV cache and its position
// there. Rows of several sequences go through the matrix products together
// (each weight read once for all of them); only attention is per row.
struct RowRef {
    KVCache* kv;
    int pos;
};

// Runs w's layers on n rows x ([n][dim], in place), row t at rows[t]. A
// sequence's rows come in position order. Kernels give a row the same bits
// whatever else is in the batch, so a sequence's output does not depend on
// what it was batched with. Throws like forward_layers.
void forward_rows(const ModelConfig& c, const Weights& w, const RowRef* rows, int n, float* x, Workspace& ws,
                  kernels::ThreadPool* pool);

// Runs w's layers on n_tokens activations at positions pos .. pos+n_tokens-1,
// in place in x ([n_tokens][dim]), reading and extending the KV cache.
// Throws ferry::Error naming w.source, the layer and the position if a
// layer's output is not finite (NaN/Inf weights in the file): one pass over
// the activations per layer, next to the layer's matrix products.
void forward_layers(const ModelConfig& c, const Weights& w, KVCache& kv, int pos, int n_tokens, float* x,
                    Workspace& ws, kernels::ThreadPool* pool);

// logits[vocab] from the activation x[dim] of position pos; x is normed in
// place. Throws ferry::Error naming w.source and pos if a logit is not finite.
void compute_logits(const ModelConfig& c, const Weights& w, float* x, float* logits, int pos,
                    kernels::ThreadPool* pool);
// The same for n rows x[n][dim] at once (one pass over the classifier):
// logits[n][rows], rows being the vocabulary or a slice's (w.classifier.rows);
// pos[t] names row t in an error.
void compute_logits_rows(const ModelConfig& c, const Weights& w, float* x, int n, float* logits, const int* pos,
                         kernels::ThreadPool* pool);

}  // namespace ferry
