#include "common/net/shard_image.h"

#include <algorithm>
#include <iterator>
#include <cstring>
#include <optional>
#include <vector>

#include "common/error.h"
#include "common/gguf_writer.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"

namespace ferry::net {

ShardImage::ShardImage(const ModelFile& model, const ShardSpec& spec, const std::string& model_hash)
    : map_(&model.map), model_hash_(model_hash), name_(shard_file_name(spec)) {
    const ModelConfig& c = model.config;
    const bool tied = model.find("output.weight") == nullptr;
    GgufWriter w;
    // Nothing here depends on where the model file lies or what it is called:
    // the image is a function of the model's bytes and the range alone, so a
    // transfer resumes from any coordinator, and its hash (content_hash) can be
    // recorded by model hash and range.
    add_model_metadata(w, c, "ferry shard of model " + hex(model_hash).substr(0, 16));
    // A shard without the embedding table cannot count the vocabulary from it.
    w.add_u32(std::string(arch_name(c.arch)) + ".vocab_size", static_cast<uint32_t>(c.vocab_size));
    w.add_string("ferry.shard.model_hash", hex(model_hash));
    w.add_u32("ferry.shard.first_layer", static_cast<uint32_t>(spec.first_layer));
    w.add_u32("ferry.shard.last_layer", static_cast<uint32_t>(spec.last_layer));
    w.add_bool("ferry.shard.embedding", spec.embedding);
    w.add_bool("ferry.shard.head", spec.head);
    w.add_bool("ferry.shard.tied_classifier", tied);

    if (spec.has_slice()) {
        w.add_u32("ferry.shard.vocab_first", static_cast<uint32_t>(spec.vocab_first));
        w.add_u32("ferry.shard.vocab_last", static_cast<uint32_t>(spec.vocab_last));
    }

    for (const std::string& name : shard_tensor_names(c, spec, tied)) {
        const TensorInfo* found = model.find(name);
        // A vocabulary slice: its rows of the table, as output.weight.
        std::optional<TensorInfo> slice;
        if (spec.has_slice() && name == "output.weight") {
            const TensorInfo* table = tied ? model.find("token_embd.weight") : found;
            if (table && table->rows == c.vocab_size && table->type != TensorType::Q8_GROUP) {
                const uint64_t row_bytes = table->bytes / static_cast<uint64_t>(table->rows);
                slice = *table;
                slice->name = name;
                slice->rows = spec.vocab_last - spec.vocab_first;
                slice->offset += static_cast<uint64_t>(spec.vocab_first) * row_bytes;
                slice->bytes = static_cast<uint64_t>(slice->rows) * row_bytes;
            }
            found = table;
        }
        if (!found) throw Error(model.path + ": tensor " + name + " is missing");
        const TensorInfo* t = slice ? &*slice : found;
        if (t->type == TensorType::Q8_GROUP)
            throw Error(model.path + ": llama2.c int8-group tensors cannot be sent to a worker; give the worker "
                        "--model-dir with this file, or convert the model to GGUF (ferry quantize)");
        const std::vector<int64_t> ne = t->rows == 1 ? std::vector<int64_t>{t->cols} : std::vector<int64_t>{t->cols, t->rows};
        const uint8_t* data = model.data(*t);
        const uint64_t row_bytes = t->bytes / static_cast<uint64_t>(t->rows);
        // The image is read from the map by offset (read()); the row source
        // makes the writer complete (to_bytes() gives the same bytes).
        w.add_tensor(name, t->type, ne, [data, row_bytes](int64_t first, int64_t count, uint8_t* out) {
            std::memcpy(out, data + static_cast<uint64_t>(first) * row_bytes, static_cast<size_t>(count) * row_bytes);
        });
        tensors_.push_back(*t);
        weight_bytes_ += t->bytes;
    }

    header_ = w.header_bytes();
    pieces_.push_back({0, reinterpret_cast<const uint8_t*>(header_.data()), header_.size()});
    const std::vector<GgufWriter::Placement> placed = w.placements();
    for (size_t i = 0; i < placed.size(); ++i) {
        if (placed[i].bytes != tensors_[i].bytes)
            throw Error(model.path + ": tensor " + tensors_[i].name + " holds " + std::to_string(tensors_[i].bytes) +
                        " bytes, its shape needs " + std::to_string(placed[i].bytes));
        pieces_.push_back({placed[i].offset, model.data(tensors_[i]), tensors_[i].bytes});
    }
    size_ = w.file_bytes();
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

void ShardImage::drop_pages(uint64_t offset, uint64_t n) const {
    for (const Piece& p : pieces_) {
        if (p.src == reinterpret_cast<const uint8_t*>(header_.data())) continue;
        const uint64_t from = std::max(offset, p.at), to = std::min(offset + n, p.at + p.bytes);
        if (from < to) map_->drop_pages(static_cast<uint64_t>(p.src - map_->data()) + (from - p.at), to - from);
    }
}

// Bumped whenever the bytes of an image change for the same model and
// range (2: metadata under the model's own architecture; 3: a layer's extra tensors after its own), so a hash recorded
// by an older build is never taken for the new image's.
constexpr int kImageLayout = 3;

std::string ShardImage::content_hash(const std::string& cache_dir) const {
    const std::string name = hex(model_hash_) + "/" + name_;
    const std::string key = std::string("ferry ") + ferry_version() + ", image layout " + std::to_string(kImageLayout) +
                            ", " + std::to_string(size_) + " bytes";
    const std::string record = cache_dir.empty() ? "" : cache_dir + "/image-hashes/" + hex(model_hash_) + "-" + name_;
    if (!record.empty())
        if (std::optional<std::string> known = read_hash_record(record, name, key)) return *known;
    Hasher h;
    std::vector<uint8_t> buf(1u << 20);
    for (uint64_t off = 0; off < size_; off += buf.size()) {
        const uint64_t len = std::min<uint64_t>(buf.size(), size_ - off);
        read(off, len, buf.data());
        h.update(buf.data(), static_cast<size_t>(len));
        drop_pages(off, len);
    }
    const std::string digest = h.digest();
    if (!record.empty()) write_hash_record(record, name, key, digest);
    return digest;
}

uint64_t shard_image_max_bytes(const std::vector<TensorInfo>& tensors) {
    // A GGUF tensor entry: name (u64 length + bytes), n_dims (u32), up to 4
    // dims (u64), type (u32), offset (u64); then the data padded to 32 bytes.
    constexpr uint64_t kEntryBytes = 8 + 4 + 4 * 8 + 4 + 8 + 32;
    uint64_t bytes = kShardHeaderBytes;
    for (const TensorInfo& t : tensors) bytes += t.bytes + kEntryBytes + t.name.size();
    return bytes;
}

std::string shard_tensors_problem(const ModelConfig& c, const ShardSpec& spec, const std::vector<TensorInfo>& tensors,
                                  uint64_t image_bytes) {
    bool tied = true;
    for (const TensorInfo& t : tensors)
        if (t.name == "output.weight") tied = false;
    std::vector<std::string> need = shard_tensor_names(c, spec, tied), have;
    for (const TensorInfo& t : tensors) have.push_back(t.name);
    std::sort(need.begin(), need.end());
    std::sort(have.begin(), have.end());
    for (size_t i = 0; i + 1 < have.size(); ++i)
        if (have[i] == have[i + 1]) return "tensor " + have[i] + " is listed twice";
    std::vector<std::string> extra;
    std::set_difference(have.begin(), have.end(), need.begin(), need.end(), std::back_inserter(extra));
    if (!extra.empty()) return "tensor " + extra.front() + " is not part of this shard";
    // Missing names, shapes and types: what loading the shard would check.
    try {
        bind_weights(c, spec, tensors, nullptr, "its tensor list");
    } catch (const Error& e) {
        return e.what();
    }
    uint64_t weights = 0;
    for (const TensorInfo& t : tensors) {
        const int64_t bytes = tensor_bytes(t.type, t.rows, t.cols, t.group);
        if (bytes < 0 || static_cast<uint64_t>(bytes) != t.bytes)
            return "tensor " + t.name + " claims " + std::to_string(t.bytes) + " bytes; a " + std::to_string(t.rows) +
                   "x" + std::to_string(t.cols) + " " + tensor_type_name(t.type) + " tensor has " + std::to_string(bytes);
        weights += t.bytes;
    }
    if (image_bytes != 0 && (image_bytes < weights || image_bytes > shard_image_max_bytes(tensors)))
        return "a shard image of " + std::to_string(image_bytes) + " bytes cannot hold exactly its tensors' " +
               std::to_string(weights) + " bytes (at most " + std::to_string(shard_image_max_bytes(tensors)) +
               " with the header)";
    return "";
}

wire::ModelShape shape_to_wire(const ModelConfig& c) {
    wire::ModelShape s;
    s.set_dim(c.dim);
    s.set_hidden_dim(c.hidden_dim);
    s.set_n_layers(c.n_layers);
    s.set_n_heads(c.n_heads);
    s.set_n_kv_heads(c.n_kv_heads);
    s.set_vocab_size(c.vocab_size);
    s.set_seq_len(c.seq_len);
    s.set_norm_eps(c.norm_eps);
    s.set_rope_theta(c.rope_theta);
    s.set_rope_freq_factors(c.rope_freq_factors);
    s.set_arch(arch_name(c.arch));
    s.set_head_dim(c.head_dim);
    s.set_projection_scales(c.projection_scales);
    return s;
}

ModelConfig shape_from_wire(const wire::ModelShape& s) {
    ModelConfig c;
    c.dim = s.dim();
    c.hidden_dim = s.hidden_dim();
    c.n_layers = s.n_layers();
    c.n_heads = s.n_heads();
    c.n_kv_heads = s.n_kv_heads();
    c.vocab_size = s.vocab_size();
    c.seq_len = s.seq_len();
    c.norm_eps = s.norm_eps();
    c.rope_theta = s.rope_theta();
    c.rope_freq_factors = s.rope_freq_factors();
    if (!s.arch().empty() && !parse_arch(s.arch(), &c.arch))
        throw Error("the model's architecture '" + s.arch().substr(0, 40) + "' is unknown to this worker (" +
                    ferry_version() + "): update it");
    c.head_dim = s.head_dim();
    c.projection_scales = s.projection_scales();
    return c;
}

std::string shard_file_name(const ShardSpec& spec) {
    std::string name = spec.last_layer > spec.first_layer
                           ? std::to_string(spec.first_layer) + "-" + std::to_string(spec.last_layer - 1)
                           : "none";
    if (spec.embedding) name += "-embed";
    if (spec.head) name += "-head";
    if (spec.has_slice()) name += "-vocab" + std::to_string(spec.vocab_first) + "-" + std::to_string(spec.vocab_last - 1);
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
    const auto vocab_first = g.get_int("ferry.shard.vocab_first", 0, 1 << 30);
    const auto vocab_last = g.get_int("ferry.shard.vocab_last", 0, 1 << 30);
    if (vocab_first && vocab_last) {
        spec->vocab_first = static_cast<int>(*vocab_first);
        spec->vocab_last = static_cast<int>(*vocab_last);
    }
    return true;
}

}  // namespace ferry::net
