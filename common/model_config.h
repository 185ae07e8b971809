// The one owner of a model's shapes. Every loader fills this struct and
// every other piece of code asks it.
#pragma once
#include <cstdint>
#include <string>

namespace ferry {

// The GGUF architectures the forward pass runs: one block with a few
// branches (common/transformer.cpp), as llama.cpp's src/models/<arch>.cpp define them.
//   llama   the base: RMSNorm, interleaved RoPE, SwiGLU
//   qwen2   + biases on the q, k and v projections; RoPE on head halves (NeoX)
//   qwen3   + RMSNorm of each head of q and k before RoPE; head length may differ from dim / n_heads
//   bitnet  + RMSNorm before the attention output and before the down projection
//           (attn_sub_norm, ffn_sub_norm), optional scalar `.scale` per projection
enum class Arch { llama, qwen2, qwen3, bitnet };
const char* arch_name(Arch a);
// false if `name` is no architecture ferry runs.
bool parse_arch(const std::string& name, Arch* out);

struct ModelConfig {
    Arch arch = Arch::llama;
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
    // The length of each head when it is not dim / n_heads (GGUF attention.key_length; qwen3): 0 otherwise.
    int head_dim = 0;
    // bitnet: every projection has a one-value `.scale` tensor multiplying its output.
    bool projection_scales = false;

    int head_size() const { return head_dim > 0 ? head_dim : dim / n_heads; }
    int q_dim() const { return head_size() * n_heads; }  // the queries' width (dim unless head_dim says otherwise)
    int kv_dim() const { return head_size() * n_kv_heads; }
    bool qkv_bias() const { return arch == Arch::qwen2; }
    bool qk_norm() const { return arch == Arch::qwen3; }
    bool sub_norms() const { return arch == Arch::bitnet; }
    bool neox_rope() const { return arch != Arch::llama; }

    // Empty if the shapes make sense, else what is wrong ("n_heads 0 ...").
    std::string check() const;
};

}  // namespace ferry
