// A model's tensor directory without data, for a config: what the planner
// reads (names, types and sizes) and what an assignment lists.
#pragma once
#include <string>

#include "common/model_file.h"
#include "common/weights.h"
#include "kernels/tensor_type.h"

namespace ferry::test {

// Matrices of `type`, norms f32; a separate classifier unless tied.
inline ModelFile fake_model(const ModelConfig& c, TensorType type, bool tied, const std::string& name = "fake.gguf") {
    ModelFile f;
    f.path = "/models/" + name;
    f.config = c;
    auto add = [&](const std::string& n, int64_t rows, int64_t cols, TensorType t) {
        TensorInfo info;
        info.name = n;
        info.type = t;
        info.rows = rows;
        info.cols = cols;
        info.bytes = static_cast<uint64_t>(tensor_bytes(t, rows, cols));
        f.tensors.push_back(info);
    };
    const int64_t dim = c.dim, kv = c.kv_dim(), hidden = c.hidden_dim;
    add("token_embd.weight", c.vocab_size, dim, type);
    for (int l = 0; l < c.n_layers; ++l) {
        add(layer_tensor_name(l, "attn_norm"), 1, dim, TensorType::F32);
        add(layer_tensor_name(l, "attn_q"), dim, dim, type);
        add(layer_tensor_name(l, "attn_k"), kv, dim, type);
        add(layer_tensor_name(l, "attn_v"), kv, dim, type);
        add(layer_tensor_name(l, "attn_output"), dim, dim, type);
        add(layer_tensor_name(l, "ffn_norm"), 1, dim, TensorType::F32);
        add(layer_tensor_name(l, "ffn_gate"), hidden, dim, type);
        add(layer_tensor_name(l, "ffn_down"), dim, hidden, type);
        add(layer_tensor_name(l, "ffn_up"), hidden, dim, type);
    }
    add("output_norm.weight", 1, dim, TensorType::F32);
    if (!tied) add("output.weight", c.vocab_size, dim, type);
    return f;
}

}  // namespace ferry::test
