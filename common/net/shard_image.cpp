#include "common/net/shard_image.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "common/net/hash.h"

namespace ferry::net {

namespace {

constexpr uint64_t kAlignment = 32;  // GGUF's default general.alignment

uint64_t padded(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

// GGUF v3 header writing: little-endian scalars, u64-length strings.
struct HeaderBytes {
    std::string out;
    uint64_t n_kv = 0;

    template <typename T>
    void scalar(T v) {
        char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        out.append(b, sizeof(T));
    }
    void string(const std::string& s) {
        scalar<uint64_t>(s.size());
        out += s;
    }
    void key(const std::string& k, GgufType type) {
        string(k);
        scalar<uint32_t>(static_cast<uint32_t>(type));
        ++n_kv;
    }
    void kv_u32(const std::string& k, uint32_t v) {
        key(k, GgufType::UINT32);
        scalar(v);
    }
    void kv_f32(const std::string& k, float v) {
        key(k, GgufType::FLOAT32);
        scalar(v);
    }
    void kv_bool(const std::string& k, bool v) {
        key(k, GgufType::BOOL);
        scalar<uint8_t>(v ? 1 : 0);
    }
    void kv_string(const std::string& k, const std::string& v) {
        key(k, GgufType::STRING);
        string(v);
    }
};

}  // namespace

ShardImage::ShardImage(const ModelFile& model, const ShardSpec& spec, const std::string& model_hash) {
    const ModelConfig& c = model.config;
    const bool tied = model.find("output.weight") == nullptr;
    std::vector<std::string> names = shard_tensor_names(c, spec, tied);
    // Tensors outside layers, embedding and head (e.g. rope_freqs.weight) belong to every shard.
    for (const TensorInfo& t : model.tensors)
        if (t.name.rfind("blk.", 0) != 0 && t.name != "token_embd.weight" && t.name != "output.weight" &&
            t.name != "output_norm.weight" && std::find(names.begin(), names.end(), t.name) == names.end())
            names.push_back(t.name);

    HeaderBytes kv;
    kv.kv_string("general.architecture", "llama");
    kv.kv_string("general.name", "ferry shard of " + model.path);
    kv.kv_u32("llama.context_length", static_cast<uint32_t>(c.seq_len));
    kv.kv_u32("llama.embedding_length", static_cast<uint32_t>(c.dim));
    kv.kv_u32("llama.block_count", static_cast<uint32_t>(c.n_layers));
    kv.kv_u32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
    kv.kv_u32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
    kv.kv_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
    kv.kv_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
    kv.kv_f32("llama.rope.freq_base", c.rope_theta);
    kv.kv_u32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
    kv.kv_string("ferry.shard.model_hash", hex(model_hash));
    kv.kv_u32("ferry.shard.first_layer", static_cast<uint32_t>(spec.first_layer));
    kv.kv_u32("ferry.shard.last_layer", static_cast<uint32_t>(spec.last_layer));
    kv.kv_bool("ferry.shard.embedding", spec.embedding);
    kv.kv_bool("ferry.shard.head", spec.head);
    kv.kv_bool("ferry.shard.tied_classifier", tied);

    HeaderBytes infos;
    uint64_t data_offset = 0;
    for (const std::string& name : names) {
        const TensorInfo* t = model.find(name);
        if (!t) throw Error(model.path + ": tensor " + name + " is missing");
        if (t->type == TensorType::Q8_GROUP)
            throw Error(model.path + ": llama2.c int8-group tensors cannot be sent to a worker; give the worker "
                        "--model-dir with this file, or convert the model to GGUF (ferry quantize)");
        infos.string(name);
        if (t->rows == 1) {
            infos.scalar<uint32_t>(1);
            infos.scalar<uint64_t>(static_cast<uint64_t>(t->cols));
        } else {
            infos.scalar<uint32_t>(2);
            infos.scalar<uint64_t>(static_cast<uint64_t>(t->cols));
            infos.scalar<uint64_t>(static_cast<uint64_t>(t->rows));
        }
        infos.scalar<uint32_t>(static_cast<uint32_t>(t->type));
        infos.scalar<uint64_t>(data_offset);
        tensors_.push_back(*t);
        data_offset += padded(t->bytes);
        weight_bytes_ += t->bytes;
    }

    HeaderBytes h;
    h.scalar<uint32_t>(0x46554747);  // "GGUF"
    h.scalar<uint32_t>(3);
    h.scalar<uint64_t>(tensors_.size());
    h.scalar<uint64_t>(kv.n_kv);
    header_ = h.out + kv.out + infos.out;
    header_.resize(padded(header_.size()), '\0');

    pieces_.push_back({0, reinterpret_cast<const uint8_t*>(header_.data()), header_.size()});
    uint64_t at = header_.size();
    for (const TensorInfo& t : tensors_) {
        pieces_.push_back({at, model.data(t), t.bytes});
        at += padded(t.bytes);
    }
    size_ = at;
}

void ShardImage::read(uint64_t offset, uint64_t n, uint8_t* out) const {
    if (offset > size_ || n > size_ - offset) throw Error("shard image read past its end");
    std::memset(out, 0, static_cast<size_t>(n));
    // First piece that ends after offset.
    auto it = std::upper_bound(pieces_.begin(), pieces_.end(), offset,
                               [](uint64_t off, const Piece& p) { return off < p.at + p.bytes; });
    for (; it != pieces_.end() && it->at < offset + n; ++it) {
        const uint64_t from = std::max(offset, it->at);
        const uint64_t to = std::min(offset + n, it->at + it->bytes);
        if (from < to) std::memcpy(out + (from - offset), it->src + (from - it->at), static_cast<size_t>(to - from));
    }
}

std::string shard_file_name(const ShardSpec& spec) {
    std::string name = spec.last_layer > spec.first_layer
                           ? std::to_string(spec.first_layer) + "-" + std::to_string(spec.last_layer - 1)
                           : "none";
    if (spec.embedding) name += "-embed";
    if (spec.head) name += "-head";
    return name + ".gguf";
}

bool read_shard_identity(const ModelFile& file, std::string* model_hash_hex, ShardSpec* spec) {
    if (!file.gguf) return false;
    const GgufFile& g = *file.gguf;
    const auto hash = g.get_string("ferry.shard.model_hash");
    const auto first = g.get_int("ferry.shard.first_layer", 0, 1 << 30);
    const auto last = g.get_int("ferry.shard.last_layer", 0, 1 << 30);
    const auto embed = g.get_bool("ferry.shard.embedding");
    const auto head = g.get_bool("ferry.shard.head");
    if (!hash || !first || !last || !embed || !head) return false;
    *model_hash_hex = std::string(*hash);
    *spec = ShardSpec{static_cast<int>(*first), static_cast<int>(*last), *embed, *head};
    return true;
}

}  // namespace ferry::net
