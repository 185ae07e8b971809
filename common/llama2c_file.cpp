// Reader for Karpathy's llama2.c checkpoints (see export.py in llama2.c):
//  legacy: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//          seq_len; negative vocab_size = separate classifier), then f32 tensors
//          grouped by kind across layers, with the unused RoPE tables inside;
//  v1/v2:  uint32 magic "ak42", int32 version, the same 7 int32, uint8 shared
//          classifier, (v2: int32 group size), padded to 256 bytes; v1 is f32,
//          v2 stores the norms in f32 and each matrix as int8 values followed
//          by one f32 scale per group.
#include <limits>
#include <cstring>
#include <functional>

#include "common/error.h"
#include "common/model_file.h"

namespace ferry {

namespace {

constexpr uint32_t kMagic = 0x616b3432;  // "ak42"
constexpr uint64_t kVersionedHeaderBytes = 256;

struct Layout {
    ModelFile& file;
    uint64_t cursor;
    TensorType matrix_type;
    int64_t group;

    void add(const std::string& name, TensorType type, int64_t rows, int64_t cols) {
        const int64_t bytes = tensor_bytes(type, rows, cols, group);
        if (bytes < 0)
            throw Error(file.path + ": tensor " + name + " of " + std::to_string(rows) + "x" + std::to_string(cols) +
                        " does not fit group size " + std::to_string(group));
        file.tensors.push_back({name, type, rows, cols, type == TensorType::Q8_GROUP ? group : 0, cursor,
                                static_cast<uint64_t>(bytes)});
        cursor += static_cast<uint64_t>(bytes);
    }
    void vector(const std::string& name, int64_t n) { add(name, TensorType::F32, 1, n); }
    void matrix(const std::string& name, int64_t rows, int64_t cols) { add(name, matrix_type, rows, cols); }
    // One tensor per layer, all layers back to back (llama2.c groups by kind).
    void per_layer(const char* part, const std::function<void(const std::string&)>& add_one) {
        for (int l = 0; l < file.config.n_layers; ++l) add_one("blk." + std::to_string(l) + "." + part + ".weight");
    }
    void skip(uint64_t bytes) { cursor += bytes; }
};

void add_attention_matrices(Layout& lay, const ModelConfig& c) {
    const int64_t dim = c.dim, kv = c.kv_dim();
    lay.per_layer("attn_q", [&](const std::string& n) { lay.matrix(n, dim, dim); });
    lay.per_layer("attn_k", [&](const std::string& n) { lay.matrix(n, kv, dim); });
    lay.per_layer("attn_v", [&](const std::string& n) { lay.matrix(n, kv, dim); });
    lay.per_layer("attn_output", [&](const std::string& n) { lay.matrix(n, dim, dim); });
}

void add_ffn_matrices(Layout& lay, const ModelConfig& c) {
    const int64_t dim = c.dim, hidden = c.hidden_dim;
    lay.per_layer("ffn_gate", [&](const std::string& n) { lay.matrix(n, hidden, dim); });
    lay.per_layer("ffn_down", [&](const std::string& n) { lay.matrix(n, dim, hidden); });
    lay.per_layer("ffn_up", [&](const std::string& n) { lay.matrix(n, hidden, dim); });
}

void check_size(const Layout& lay, uint64_t size) {
    if (lay.cursor != size)
        throw Error(lay.file.path + ": sizes do not add up: the header implies " + std::to_string(lay.cursor) +
                    " bytes, the file has " + std::to_string(size) + (lay.cursor > size ? " (truncated?)" : ""));
}

int32_t read_i32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

}  // namespace

ModelFile open_llama2c_file(const std::string& path) {
    ModelFile f;
    f.path = path;
    f.map = MappedFile(path);
    const uint8_t* p = f.map.data();
    const uint64_t size = f.map.size();
    if (size < 28) throw Error(path + ": too short for a llama2.c header (" + std::to_string(size) + " bytes)");

    uint32_t magic;
    std::memcpy(&magic, p, 4);
    const bool versioned = magic == kMagic;
    int version = 0;
    bool shared = true;
    int64_t group = 0;
    ModelConfig& c = f.config;
    const uint8_t* h = p;
    if (versioned) {
        if (size < kVersionedHeaderBytes)
            throw Error(path + ": truncated header (" + std::to_string(size) + " of 256 bytes)");
        version = read_i32(p + 4);
        if (version != 1 && version != 2)
            throw Error(path + ": llama2.c format version " + std::to_string(version) +
                        " is not supported (1 = f32, 2 = int8 groups)");
        h = p + 8;
    }
    c.dim = read_i32(h);
    c.hidden_dim = read_i32(h + 4);
    c.n_layers = read_i32(h + 8);
    c.n_heads = read_i32(h + 12);
    c.n_kv_heads = read_i32(h + 16);
    c.vocab_size = read_i32(h + 20);
    c.seq_len = read_i32(h + 24);
    if (versioned) {
        shared = h[28] != 0;
        if (version == 2) group = read_i32(h + 29);
    } else {
        shared = c.vocab_size > 0;
        if (c.vocab_size == std::numeric_limits<int32_t>::min())
            throw Error(path + ": vocab_size " + std::to_string(c.vocab_size) + " is not a size; the header is corrupt");
        if (c.vocab_size < 0) c.vocab_size = -c.vocab_size;
    }
    const std::string problem = c.check();
    if (!problem.empty()) throw Error(path + ": not a usable llama2.c checkpoint: " + problem);
    if (version == 2 && (group <= 0 || c.dim % group != 0))
        throw Error(path + ": group size " + std::to_string(group) + " does not divide dim " + std::to_string(c.dim));

    const int64_t dim = c.dim, vocab = c.vocab_size;
    if (!versioned) {
        f.format = "llama2.c legacy";
        Layout lay{f, 28, TensorType::F32, 0};
        lay.matrix("token_embd.weight", vocab, dim);
        lay.per_layer("attn_norm", [&](const std::string& n) { lay.vector(n, dim); });
        // The legacy order puts ffn_norm between the attention and FFN matrices.
        add_attention_matrices(lay, c);
        lay.per_layer("ffn_norm", [&](const std::string& n) { lay.vector(n, dim); });
        add_ffn_matrices(lay, c);
        lay.vector("output_norm.weight", dim);
        lay.skip(static_cast<uint64_t>(c.seq_len) * c.head_size() * 4);  // freq_cis_real and _imag, unused
        if (!shared) lay.matrix("output.weight", vocab, dim);
        check_size(lay, size);
        return f;
    }
    f.format = version == 1 ? "llama2.c v1" : "llama2.c v2";
    Layout lay{f, kVersionedHeaderBytes, version == 1 ? TensorType::F32 : TensorType::Q8_GROUP, group};
    lay.per_layer("attn_norm", [&](const std::string& n) { lay.vector(n, dim); });
    lay.per_layer("ffn_norm", [&](const std::string& n) { lay.vector(n, dim); });
    lay.vector("output_norm.weight", dim);
    lay.matrix("token_embd.weight", vocab, dim);
    add_attention_matrices(lay, c);
    add_ffn_matrices(lay, c);
    if (!shared) lay.matrix("output.weight", vocab, dim);
    check_size(lay, size);
    return f;
}

const TensorInfo* ModelFile::find(const std::string& name) const {
    for (const TensorInfo& t : tensors)
        if (t.name == name) return &t;
    return nullptr;
}

}  // namespace ferry
