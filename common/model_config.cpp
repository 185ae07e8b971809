#include "common/model_config.h"

#include <cmath>
#include <cstdint>

#include "kernels/kernels.h"

namespace ferry {

const char* arch_name(Arch a) {
    switch (a) {
        case Arch::llama: return "llama";
        case Arch::qwen2: return "qwen2";
        case Arch::qwen3: return "qwen3";
        case Arch::bitnet: return "bitnet";
    }
    return "llama";
}

bool parse_arch(const std::string& name, Arch* out) {
    for (Arch a : {Arch::llama, Arch::qwen2, Arch::qwen3, Arch::bitnet})
        if (name == arch_name(a)) {
            *out = a;
            return true;
        }
    return false;
}

std::string ModelConfig::check() const {
    // Limits are far above any Llama-family model and keep every product of
    // two shapes inside int64.
    constexpr int kMaxDim = 1 << 17, kMaxLayers = 1024, kMaxVocab = 1 << 22, kMaxSeq = 1 << 22;
    auto bad = [](const char* what, int v) { return std::string(what) + " " + std::to_string(v) + " is out of range"; };
    if (dim <= 0 || dim > kMaxDim) return bad("dim", dim);
    if (hidden_dim <= 0 || hidden_dim > 8 * kMaxDim) return bad("hidden_dim", hidden_dim);
    if (n_layers <= 0 || n_layers > kMaxLayers) return bad("n_layers", n_layers);
    if (n_heads <= 0 || n_heads > dim) return bad("n_heads", n_heads);
    if (n_kv_heads <= 0 || n_kv_heads > n_heads) return bad("n_kv_heads", n_kv_heads);
    if (vocab_size <= 0 || vocab_size > kMaxVocab) return bad("vocab_size", vocab_size);
    if (seq_len <= 0 || seq_len > kMaxSeq) return bad("seq_len", seq_len);
    if (head_dim < 0 || head_dim > kMaxDim) return bad("head_dim", head_dim);
    // Queries as wide as a few embeddings at most (qwen3: 2x), so every product stays in range.
    if (static_cast<int64_t>(head_size()) * n_heads > 4 * static_cast<int64_t>(kMaxDim))
        return "the queries' width (head length x n_heads) is out of range";
    if (head_dim == 0 && dim % n_heads != 0)
        return "dim " + std::to_string(dim) + " is not a multiple of n_heads " + std::to_string(n_heads);
    if (n_heads % n_kv_heads != 0)
        return "n_heads " + std::to_string(n_heads) + " is not a multiple of n_kv_heads " + std::to_string(n_kv_heads);
    if (head_size() % 2 != 0) return "head size " + std::to_string(head_size()) + " is odd; rotary embedding needs pairs";
    if (head_size() > kernels::kMaxAttentionHeadSize)
        return "head size " + std::to_string(head_size()) + " is over the " +
               std::to_string(kernels::kMaxAttentionHeadSize) + " attention supports";
    if (!(norm_eps > 0.0f && norm_eps < 1.0f)) return "norm_eps " + std::to_string(norm_eps) + " is out of range";
    // +Inf passes "> 0" but makes every rotation angle 0 or NaN.
    if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta))
        return "rope_theta (GGUF rope.freq_base) " + std::to_string(rope_theta) + " is not a finite positive number";
    return "";
}

}  // namespace ferry
