// The one owner of a model's shapes. Every loader fills this struct and
// every other piece of code asks it.
#pragma once
#include <cstdint>
#include <string>

namespace ferry {

struct ModelConfig {
    int dim = 0;         // width of the residual stream
    int hidden_dim = 0;  // width of the feed-forward layer
    int n_layers = 0;
    int n_heads = 0;
    int n_kv_heads = 0;  // < n_heads means grouped-query attention
    int vocab_size = 0;
    int seq_len = 0;     // longest context the model was trained for
    float norm_eps = 1e-5f;
    float rope_theta = 10000.0f;
    // Llama 3.1+: the tensor rope_freqs.weight (head_size / 2 floats) divides
    // each pair's RoPE frequency; every shard that runs layers needs it.
    bool rope_freq_factors = false;

    int head_size() const { return dim / n_heads; }
    int kv_dim() const { return head_size() * n_kv_heads; }

    // Empty if the shapes make sense, else what is wrong ("n_heads 0 ...").
    std::string check() const;
};

}  // namespace ferry
