#include "common/model_file.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>

#include "common/error.h"

namespace ferry {

ModelFile open_model_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open the model file");
    char magic[4] = {};
    in.read(magic, 4);
    if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return open_gguf_model_file(path);
    return open_llama2c_file(path);
}

std::string dominant_tensor_type(const ModelFile& f) {
    std::map<std::string, uint64_t> bytes;
    for (const TensorInfo& t : f.tensors)
        if (t.name.rfind("blk.", 0) == 0) bytes[tensor_type_name(t.type)] += t.bytes;
    std::string best = "f32";
    uint64_t most = 0;
    for (const auto& [name, b] : bytes)
        if (b > most) {
            most = b;
            best = name;
        }
    return best;
}

namespace {

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

// attention.head_count_kv may be an array with one entry per layer; ferry
// runs models where every layer has the same count.
std::optional<int64_t> kv_head_count(const GgufFile& g, const std::string& key) {
    const GgufValue* v = g.find(key);
    if (!v || !v->is_array()) return g.get_int(key, 1, kIntMax);
    std::optional<int64_t> first;
    for (uint64_t i = 0; i < v->count; ++i) {
        const std::optional<int64_t> n = v->int_at(i);
        if (!n) g.fail(key + " should hold integers, it is " + v->describe());
        if (first && *n != *first) g.fail(key + " differs per layer; ferry runs models with one KV head count");
        first = n;
    }
    if (!first || *first < 1 || *first > kIntMax) g.fail(key + " is " + v->describe() + ", not a usable head count");
    return first;
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& g) {
    const std::optional<std::string_view> arch_name = g.get_string("general.architecture");
    if (!arch_name) g.fail("missing required metadata general.architecture");
    const std::string arch(*arch_name);
    Arch arch_kind;
    if (!parse_arch(arch, &arch_kind))
        g.fail("architecture '" + arch + "' is not supported (ferry runs llama, qwen2, qwen3 and bitnet models)");
    auto key = [&](const char* suffix) { return arch + "." + suffix; };
    auto required = [&](const char* suffix, int64_t min) {
        const std::optional<int64_t> v = g.get_int(key(suffix), min, kIntMax);
        if (!v) g.fail("missing required metadata " + key(suffix));
        return static_cast<int>(*v);
    };
    ModelConfig c;
    c.arch = arch_kind;
    c.seq_len = required("context_length", 1);
    c.dim = required("embedding_length", 1);
    c.n_layers = required("block_count", 1);
    c.hidden_dim = required("feed_forward_length", 1);
    c.n_heads = required("attention.head_count", 1);
    c.n_kv_heads = static_cast<int>(kv_head_count(g, key("attention.head_count_kv")).value_or(c.n_heads));
    const std::optional<double> eps = g.get_float(key("attention.layer_norm_rms_epsilon"));
    if (!eps) g.fail("missing required metadata " + key("attention.layer_norm_rms_epsilon"));
    c.norm_eps = static_cast<float>(*eps);
    c.rope_theta = static_cast<float>(g.get_float(key("rope.freq_base")).value_or(10000.0));

    // The vocabulary's size, told up to three ways (a shard may have only the
    // key): they must agree, else ids past the shorter count would print
    // nothing or have no embedding, without a word.
    std::vector<std::pair<std::string, uint64_t>> vocab;
    if (const std::optional<int64_t> n = g.get_int(key("vocab_size"), 1, kIntMax))
        vocab.emplace_back(key("vocab_size"), static_cast<uint64_t>(*n));
    if (const GgufValue* tokens = g.find("tokenizer.ggml.tokens"); tokens && tokens->is_array())
        vocab.emplace_back("tokenizer.ggml.tokens", tokens->count);
    if (const GgufTensor* emb = g.find_tensor("token_embd.weight"))
        vocab.emplace_back("token_embd.weight rows", static_cast<uint64_t>(emb->rows()));
    for (const auto& [what, n] : vocab) {
        if (n == vocab[0].second) continue;
        std::string sizes;
        for (const auto& [w, k] : vocab) sizes += (sizes.empty() ? "" : ", ") + w + " " + std::to_string(k);
        g.fail("the vocabulary's size differs: " + sizes +
               "; the vocabulary and the model must be the same size (is one of them another model's?)");
    }
    if (!vocab.empty()) c.vocab_size = static_cast<int>(std::min<uint64_t>(vocab[0].second, kIntMax));
    // Llama 3.1+ scale each RoPE frequency by a stored factor.
    c.rope_freq_factors = g.find_tensor("rope_freqs.weight") != nullptr;
    // Scales are all there or none: any one makes bind_weights ask for every one (a partial set is refused,
    // never run without them); a shard may lack layer 0, so any layer's tells.
    if (c.arch == Arch::bitnet)
        for (const GgufTensor& t : g.tensors)
            if (t.name.substr(0, 4) == "blk." && t.name.size() > 6 && t.name.substr(t.name.size() - 6) == ".scale")
                c.projection_scales = true;
    // A head length of its own (qwen3: q wider than the embedding); keys and values must agree.
    const std::optional<int64_t> key_length = g.get_int(key("attention.key_length"), 1, kIntMax);
    const std::optional<int64_t> value_length = g.get_int(key("attention.value_length"), 1, kIntMax);
    if (key_length && value_length && *key_length != *value_length)
        g.fail(key("attention.key_length") + " " + std::to_string(*key_length) + " differs from " +
               key("attention.value_length") + " " + std::to_string(*value_length) + "; ferry needs them equal");
    const int usual = c.n_heads > 0 && c.dim % c.n_heads == 0 ? c.dim / c.n_heads : 0;
    if (const std::optional<int64_t> length = key_length ? key_length : value_length; length && *length != usual)
        c.head_dim = static_cast<int>(*length);

    const std::string problem = c.check();
    if (!problem.empty()) g.fail("not a usable " + arch + " model: " + problem);
    // Layers past block_count would be left out without a word (a file cut
    // from a bigger model, or a wrong count).
    for (const GgufTensor& t : g.tensors) {
        if (t.name.substr(0, 4) != "blk.") continue;
        int64_t layer = 0;
        size_t at = 4;
        for (; at < t.name.size() && at < 14 && t.name[at] >= '0' && t.name[at] <= '9'; ++at)
            layer = layer * 10 + (t.name[at] - '0');
        if (at > 4 && layer >= c.n_layers)
            g.fail("tensor " + std::string(t.name) + " belongs to layer " + std::to_string(layer) + " but " +
                   key("block_count") + " is " + std::to_string(c.n_layers) + "; the count is wrong");
    }

    // Features the forward pass does not have: refuse rather than compute
    // something else.
    if (const std::optional<int64_t> n = g.get_int(key("rope.dimension_count"), 0, kIntMax); n && *n != c.head_size())
        g.fail(key("rope.dimension_count") + " = " + std::to_string(*n) + " rotates part of each head (head size " +
               std::to_string(c.head_size()) + "); ferry supports only full rotation");
    if (c.head_dim > 0 && c.arch != Arch::qwen3)
        g.fail(key("attention.key_length") + "/value_length = " + std::to_string(c.head_dim) +
               " differs from embedding_length / head_count; ferry supports that for qwen3 only");
    if (const std::optional<int64_t> n = g.get_int(key("expert_count"), 0, kIntMax); n && *n > 0)
        g.fail("a mixture-of-experts model (" + std::to_string(*n) + " experts); ferry runs dense models");
    if (const std::optional<std::string_view> s = g.get_string(key("rope.scaling.type")); s && *s != "none") {
        const double factor = g.get_float(key("rope.scaling.factor")).value_or(1.0);
        if (factor != 1.0)
            g.fail(key("rope.scaling.type") + " '" + std::string(*s) + "' (factor " + std::to_string(factor) +
                   ") is not supported");
    }
    return c;
}

void add_model_metadata(GgufWriter& w, const ModelConfig& c, const std::string& name) {
    const std::string a = arch_name(c.arch);
    w.add_string("general.architecture", a);
    w.add_string("general.name", name);
    w.add_u32(a + ".context_length", static_cast<uint32_t>(c.seq_len));
    w.add_u32(a + ".embedding_length", static_cast<uint32_t>(c.dim));
    w.add_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
    w.add_u32(a + ".block_count", static_cast<uint32_t>(c.n_layers));
    w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(c.n_heads));
    w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
    w.add_u32(a + ".rope.dimension_count", static_cast<uint32_t>(c.head_size()));
    if (c.head_dim > 0) {
        w.add_u32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
        w.add_u32(a + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
    }
    w.add_f32(a + ".attention.layer_norm_rms_epsilon", c.norm_eps);
    w.add_f32(a + ".rope.freq_base", c.rope_theta);
}

ModelFile open_gguf_model_file(const std::string& path) {
    ModelFile f;
    f.path = path;
    f.map = MappedFile(path);
    auto g = std::make_shared<GgufFile>(parse_gguf(f.map.data(), f.map.size(), path));
    f.format = "gguf v" + std::to_string(g->version);
    if (g->tensors.empty()) g->fail("has no tensors (a vocabulary-only file?)");
    f.config = gguf_model_config(*g);
    f.chat_template = std::string(g->get_string("tokenizer.chat_template").value_or(""));
    for (const GgufTensor& t : g->tensors)
        f.tensors.push_back({std::string(t.name), t.type, t.rows(), t.cols(), 0, t.offset, t.bytes});
    f.gguf = std::move(g);
    return f;
}

}  // namespace ferry
