// Views of the weights one process holds: all layers in single-process mode,
// a contiguous range of layers (plus, optionally, the embedding table and the
// final norm and classifier) on a pipeline stage. Views point into a mapped
// file (the model itself or a worker's shard cache); nothing is copied.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/model_config.h"
#include "common/model_file.h"
#include "kernels/tensor_type.h"

namespace ferry {

struct LayerWeights {
    const float* attn_norm = nullptr;
    Matrix wq, wk, wv, wo;
    const float* ffn_norm = nullptr;
    Matrix w1, w2, w3;  // gate, down, up
    // Per architecture (ModelConfig's qkv_bias, qk_norm, sub_norms, projection_scales); null/1 when absent.
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // qwen2
    const float *q_norm = nullptr, *k_norm = nullptr;         // qwen3: head_size values each
    const float *attn_sub_norm = nullptr, *ffn_sub_norm = nullptr;  // bitnet: q_dim and hidden_dim values
    float sq = 1, sk = 1, sv = 1, so = 1, s1 = 1, s2 = 1, s3 = 1;  // bitnet: each projection's output scale
};

// Which parts of the model a process holds. Layers are [first_layer, last_layer).
struct ShardSpec {
    int first_layer = 0;
    int last_layer = 0;
    bool embedding = false;  // token_embd: turns token ids into activations
    bool head = false;       // output_norm and classifier: turns activations into logits
    // A vocabulary slice instead of the whole head: output_norm and the
    // classifier's rows [vocab_first, vocab_last), answering Classify requests
    // (the classifier split across nodes). vocab_last == 0: none.
    int vocab_first = 0;
    int vocab_last = 0;
    bool has_slice() const { return vocab_last > vocab_first; }
    bool has_classifier() const { return head || has_slice(); }
};

// "0-2+emb", "3-4+head", "none+head", "4-5+vocab 0-64127": inclusive ranges, as every text shows them.
std::string spec_text(const ShardSpec& s);
// "vocab 0-64127": a vocabulary slice's rows, inclusive ("" without one).
std::string vocab_text(const ShardSpec& s);

struct Weights {
    ShardSpec spec;
    std::string source;                  // the file the views point into, for errors
    Matrix token_embedding;              // if spec.embedding
    std::vector<LayerWeights> layers;    // layers[i] is model layer spec.first_layer + i
    const float* rope_freqs = nullptr;   // RoPE frequency divisors, if config.rope_freq_factors
    int64_t rope_freqs_count = 0;        // head_size / 2 when bound
    const float* output_norm = nullptr;  // if spec.has_classifier()
    Matrix classifier;                   // if spec.head (the embedding table when tied), or the slice's rows
};

// GGUF-style tensor names, the one place they are spelled: "blk.3.attn_q.weight",
// or with another suffix ("bias", "scale").
std::string layer_tensor_name(int layer, const char* part, const char* suffix = "weight");
// A layer's vectors beyond llama's, per architecture ({part, suffix}: qwen2's
// q/k/v biases, qwen3's q/k norms, bitnet's sub-norms and projection scales),
// and each one's length.
std::vector<std::pair<const char*, const char*>> extra_layer_tensors(const ModelConfig& c);
int64_t extra_tensor_length(const ModelConfig& c, const char* part, const char* suffix);
// Every tensor a shard needs, in a stable order. A tied classifier is the
// embedding table: "token_embd.weight" appears once. A vocabulary slice is
// "output.weight" of its rows alone in a shard image, tied or not; bound
// from a whole model file, it is a view of the table's rows.
std::vector<std::string> shard_tensor_names(const ModelConfig& config, const ShardSpec& spec, bool tied_classifier);

// Binds views for `spec` from tensors whose offsets are relative to `base`.
// Checks every tensor exists with the shape the config demands and a type the
// kernels support, and that the vectors (norms, RoPE factors: small, so read
// now) hold no NaN or Inf; throws ferry::Error naming `where` and the tensor.
// A null `base` checks a tensor list alone (names, shapes, types; an Assign's):
// nothing is read and the views are null.
Weights bind_weights(const ModelConfig& config, const ShardSpec& spec, const std::vector<TensorInfo>& tensors,
                     const uint8_t* base, const std::string& where);

// Bytes of the weights `spec` holds.
uint64_t shard_weight_bytes(const Weights& w);

}  // namespace ferry
