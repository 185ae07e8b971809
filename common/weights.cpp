#include "common/weights.h"

#include <cmath>
#include <cstring>
#include <unordered_map>

#include "common/error.h"
#include "kernels/kernels.h"

namespace ferry {

std::string spec_text(const ShardSpec& s) {
    std::string t = s.last_layer > s.first_layer
                        ? std::to_string(s.first_layer) + "-" + std::to_string(s.last_layer - 1)
                        : std::string("none");
    if (s.embedding) t += "+emb";
    if (s.head) t += "+head";
    if (s.has_slice()) t += "+" + vocab_text(s);
    return t;
}

std::string vocab_text(const ShardSpec& s) {
    return s.has_slice() ? "vocab " + std::to_string(s.vocab_first) + "-" + std::to_string(s.vocab_last - 1) : "";
}

std::string layer_tensor_name(int layer, const char* part, const char* suffix) {
    return "blk." + std::to_string(layer) + "." + part + "." + suffix;
}

namespace {
const char* const kLayerParts[] = {"attn_norm", "attn_q",   "attn_k",   "attn_v", "attn_output",
                                   "ffn_norm",  "ffn_gate", "ffn_down", "ffn_up"};
const char* const kProjections[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"};

}  // namespace

std::vector<std::pair<const char*, const char*>> extra_layer_tensors(const ModelConfig& c) {
    std::vector<std::pair<const char*, const char*>> extra;
    if (c.qkv_bias())
        for (const char* p : {"attn_q", "attn_k", "attn_v"}) extra.emplace_back(p, "bias");
    if (c.qk_norm())
        for (const char* p : {"attn_q_norm", "attn_k_norm"}) extra.emplace_back(p, "weight");
    if (c.sub_norms())
        for (const char* p : {"attn_sub_norm", "ffn_sub_norm"}) extra.emplace_back(p, "weight");
    if (c.projection_scales)
        for (const char* p : kProjections) extra.emplace_back(p, "scale");
    return extra;
}

int64_t extra_tensor_length(const ModelConfig& c, const char* part, const char* suffix) {
    const std::string p = part, s = suffix;
    if (s == "scale") return 1;
    if (s == "bias") return p == "attn_q" ? c.q_dim() : c.kv_dim();
    if (p == "attn_q_norm" || p == "attn_k_norm") return c.head_size();
    if (p == "attn_sub_norm") return c.q_dim();
    if (p == "ffn_sub_norm") return c.hidden_dim;
    throw Error(std::string("no length known for tensor part ") + part + "." + suffix);
}

namespace {

struct Binder {
    const std::unordered_map<std::string, const TensorInfo*>& by_name;
    const uint8_t* base;
    const std::string& where;

    const TensorInfo& get(const std::string& name, int64_t rows, int64_t cols) const {
        auto it = by_name.find(name);
        if (it == by_name.end()) throw Error(where + ": tensor " + name + " is missing");
        const TensorInfo& t = *it->second;
        if (t.rows != rows || t.cols != cols)
            throw Error(where + ": tensor " + name + " is " + std::to_string(t.rows) + "x" + std::to_string(t.cols) +
                        ", the config needs " + std::to_string(rows) + "x" + std::to_string(cols));
        return t;
    }
    // One value of a one-value f32 tensor (bitnet's scales), read now.
    float scalar(const std::string& name) const {
        const float* v = vector(name, 1);
        if (!v) return 1;
        float x;
        std::memcpy(&x, v, sizeof x);
        return x;
    }
    const float* vector(const std::string& name, int64_t n) const {
        const TensorInfo& t = get(name, 1, n);
        if (t.type != TensorType::F32)
            throw Error(where + ": tensor " + name + " is " + tensor_type_name(t.type) +
                        ", norms and RoPE factors must be f32");
        if (!base) return nullptr;  // a tensor list alone: nothing to read
        const float* v = reinterpret_cast<const float*>(base + t.offset);
        for (int64_t i = 0; i < n; ++i) {
            float x;
            std::memcpy(&x, &v[i], sizeof x);  // the mapped bytes need not be aligned for a float
            if (!std::isfinite(x))
                throw Error(where + ": tensor " + name + " holds " + std::to_string(x) + " (value " +
                            std::to_string(i) + " of " + std::to_string(n) +
                            "): the model file is damaged; norms and RoPE factors must be finite numbers");
        }
        return v;
    }
    Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const {
        const TensorInfo& t = get(name, rows, cols);
        if (t.type == TensorType::I2_S)
            throw Error(where + ": tensor " + name + " is bitnet.cpp's I2_S; convert the model once with `ferry quantize " +
                        where + " OUT.gguf --type tq2_0` (exact; TQ2_0 runs on every CPU ferry does)");
        if (!kernels::matmul_supports(t.type))
            throw Error(where + ": tensor " + name + " has type " + tensor_type_name(t.type) +
                        ", which this build cannot multiply yet");
        return Matrix{t.type, base ? base + t.offset : nullptr, rows, cols, t.group};
    }
};
}  // namespace

std::vector<std::string> shard_tensor_names(const ModelConfig& config, const ShardSpec& spec, bool tied_classifier) {
    std::vector<std::string> names;
    if (spec.embedding || (spec.head && tied_classifier)) names.push_back("token_embd.weight");
    if (config.rope_freq_factors && spec.last_layer > spec.first_layer) names.push_back("rope_freqs.weight");
    const auto extra = extra_layer_tensors(config);
    for (int l = spec.first_layer; l < spec.last_layer; ++l) {
        for (const char* part : kLayerParts) names.push_back(layer_tensor_name(l, part));
        for (const auto& [part, suffix] : extra) names.push_back(layer_tensor_name(l, part, suffix));
    }
    if (spec.head) {
        names.push_back("output_norm.weight");
        if (!tied_classifier) names.push_back("output.weight");
    }
    if (spec.has_slice()) {
        names.push_back("output_norm.weight");
        names.push_back("output.weight");
    }
    return names;
}

Weights bind_weights(const ModelConfig& c, const ShardSpec& spec, const std::vector<TensorInfo>& tensors,
                     const uint8_t* base, const std::string& where) {
    if (spec.first_layer < 0 || spec.last_layer > c.n_layers || spec.first_layer > spec.last_layer)
        throw Error(where + ": layer range [" + std::to_string(spec.first_layer) + ", " +
                    std::to_string(spec.last_layer) + ") is outside the model's " + std::to_string(c.n_layers) +
                    " layers");
    std::unordered_map<std::string, const TensorInfo*> by_name;
    for (const TensorInfo& t : tensors) by_name.emplace(t.name, &t);
    Binder b{by_name, base, where};
    const int64_t dim = c.dim, q = c.q_dim(), kv = c.kv_dim(), hidden = c.hidden_dim;

    Weights w;
    w.spec = spec;
    w.source = where;
    if (spec.embedding) w.token_embedding = b.matrix("token_embd.weight", c.vocab_size, dim);
    if (c.rope_freq_factors && spec.last_layer > spec.first_layer) {
        w.rope_freqs_count = c.head_size() / 2;
        w.rope_freqs = b.vector("rope_freqs.weight", w.rope_freqs_count);
    }
    for (int l = spec.first_layer; l < spec.last_layer; ++l) {
        LayerWeights L;
        L.attn_norm = b.vector(layer_tensor_name(l, "attn_norm"), dim);
        L.wq = b.matrix(layer_tensor_name(l, "attn_q"), q, dim);
        L.wk = b.matrix(layer_tensor_name(l, "attn_k"), kv, dim);
        L.wv = b.matrix(layer_tensor_name(l, "attn_v"), kv, dim);
        L.wo = b.matrix(layer_tensor_name(l, "attn_output"), dim, q);
        L.ffn_norm = b.vector(layer_tensor_name(l, "ffn_norm"), dim);
        L.w1 = b.matrix(layer_tensor_name(l, "ffn_gate"), hidden, dim);
        L.w2 = b.matrix(layer_tensor_name(l, "ffn_down"), dim, hidden);
        L.w3 = b.matrix(layer_tensor_name(l, "ffn_up"), hidden, dim);
        auto extra = [&](const char* part, const char* suffix = "weight") {
            return b.vector(layer_tensor_name(l, part, suffix), extra_tensor_length(c, part, suffix));
        };
        if (c.qkv_bias()) {
            L.bq = extra("attn_q", "bias");
            L.bk = extra("attn_k", "bias");
            L.bv = extra("attn_v", "bias");
        }
        if (c.qk_norm()) {
            L.q_norm = extra("attn_q_norm");
            L.k_norm = extra("attn_k_norm");
        }
        if (c.sub_norms()) {
            L.attn_sub_norm = extra("attn_sub_norm");
            L.ffn_sub_norm = extra("ffn_sub_norm");
        }
        if (c.projection_scales) {
            float* scales[] = {&L.sq, &L.sk, &L.sv, &L.so, &L.s1, &L.s2, &L.s3};
            for (size_t i = 0; i < 7; ++i) *scales[i] = b.scalar(layer_tensor_name(l, kProjections[i], "scale"));
        }
        w.layers.push_back(L);
    }
    if (spec.head) {
        w.output_norm = b.vector("output_norm.weight", dim);
        const bool tied = by_name.find("output.weight") == by_name.end();
        w.classifier = b.matrix(tied ? "token_embd.weight" : "output.weight", c.vocab_size, dim);
    }
    if (spec.has_slice()) {
        if (spec.head || spec.vocab_first < 0 || spec.vocab_last > c.vocab_size)
            throw Error(where + ": vocabulary slice " + std::to_string(spec.vocab_first) + ".." +
                        std::to_string(spec.vocab_last) + " is not within the model's " + std::to_string(c.vocab_size) +
                        " tokens (or comes with the whole head)");
        const int64_t rows = spec.vocab_last - spec.vocab_first;
        w.output_norm = b.vector("output_norm.weight", dim);
        // A shard image holds the slice's rows as output.weight; a whole model
        // file (--model-dir) the whole table, of which the slice is a view.
        auto it = by_name.find("output.weight");
        if (it == by_name.end() || it->second->rows != rows) {
            const bool tied = it == by_name.end();
            Matrix table = b.matrix(tied ? "token_embd.weight" : "output.weight", c.vocab_size, dim);
            if (table.type == TensorType::Q8_GROUP)
                throw Error(where + ": a vocabulary slice of an int8-group table cannot be taken; convert the model "
                            "to GGUF (ferry quantize)");
            const int64_t row_bytes = tensor_bytes(table.type, 1, dim);
            if (table.data)
                table.data = static_cast<const uint8_t*>(table.data) +
                             static_cast<uint64_t>(spec.vocab_first) * static_cast<uint64_t>(row_bytes);
            table.rows = rows;
            w.classifier = table;
        } else {
            w.classifier = b.matrix("output.weight", rows, dim);
        }
    }
    return w;
}

uint64_t shard_weight_bytes(const Weights& w) {
    auto mbytes = [](const Matrix& m) {
        return m.data ? static_cast<uint64_t>(tensor_bytes(m.type, m.rows, m.cols, m.group)) : 0;
    };
    uint64_t total = mbytes(w.token_embedding);
    for (const LayerWeights& L : w.layers) {
        total += 2 * sizeof(float) * static_cast<uint64_t>(L.wq.cols);
        for (const Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3}) total += mbytes(*m);
        // The architectures' vectors (qwen3's per-head norms are a few hundred bytes and left out).
        if (L.bq) total += sizeof(float) * static_cast<uint64_t>(L.wq.rows + 2 * L.wk.rows);
        if (L.attn_sub_norm) total += sizeof(float) * static_cast<uint64_t>(L.wo.cols + L.w2.cols);
    }
    total += sizeof(float) * static_cast<uint64_t>(w.rope_freqs_count);
    if (w.output_norm) total += sizeof(float) * static_cast<uint64_t>(w.classifier.cols);
    if (w.classifier.data != w.token_embedding.data) total += mbytes(w.classifier);
    return total;
}

}  // namespace ferry
