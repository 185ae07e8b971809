#include "common/llama2c_writer.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "common/error.h"
#include "common/mapped_file.h"
#include "common/weights.h"
#include "kernels/kernels.h"

namespace ferry {

namespace {

constexpr uint32_t kMagic = 0x616b3432;  // "ak42"
constexpr int64_t kVersionedHeaderBytes = 256;
constexpr int64_t kLegacyHeaderBytes = 28;

// A FILE* that turns every failure into one ferry::Error naming the path.
class OutFile {
public:
    OutFile(const std::string& path, uint64_t total, const WriteProgress& progress)
        : path_(path), total_(total), progress_(progress) {
        f_ = std::fopen(path.c_str(), "wb");
        if (!f_) throw Error(path + ": cannot create: " + std::strerror(errno));
        std::setvbuf(f_, nullptr, _IOFBF, 1 << 22);
    }
    ~OutFile() {
        if (f_) std::fclose(f_);
    }
    void write(const void* p, size_t n) {
        if (std::fwrite(p, 1, n, f_) != n) throw Error(path_ + ": write failed: " + std::strerror(errno));
        done_ += n;
        if (progress_) progress_(done_, total_);
    }
    void i32(int32_t v) { write(&v, 4); }
    void zeros(size_t n) {
        const std::vector<char> z(n, 0);
        write(z.data(), n);
    }
    uint64_t written() const { return done_; }
    void close() {
        // Large files only (see sync_and_drop_pages): a model is worth it, a test's small file is not.
        const bool ok = std::fflush(f_) == 0 && (done_ < (16u << 20) || sync_and_drop_pages(f_));
        const int e = errno;
        const bool closed = std::fclose(f_) == 0;
        f_ = nullptr;
        if (!ok || !closed) throw Error(path_ + ": write failed: " + std::strerror(e));
    }

private:
    std::string path_;
    std::FILE* f_ = nullptr;
    uint64_t done_ = 0;
    uint64_t total_;
    WriteProgress progress_;
};

void write_header(OutFile& out, const ModelConfig& c, const Llama2cWriteOptions& o, int group) {
    const int32_t vocab = o.format == Llama2cFormat::legacy && !o.shared_classifier ? -c.vocab_size : c.vocab_size;
    if (o.format != Llama2cFormat::legacy) {
        const uint32_t magic = kMagic;
        out.write(&magic, 4);
        out.i32(o.format == Llama2cFormat::v1 ? 1 : 2);
    }
    for (int32_t v : {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, vocab, c.seq_len}) out.i32(v);
    if (o.format == Llama2cFormat::legacy) return;
    const uint8_t shared = o.shared_classifier ? 1 : 0;
    out.write(&shared, 1);
    if (o.format == Llama2cFormat::v2) out.i32(group);
    out.zeros(static_cast<size_t>(kVersionedHeaderBytes) - out.written());
}

// export.py's precompute_freqs_cis: all cos rows, then all sin rows. run.c
// skips them, but a legacy file is only faithful with them in place.
void write_rope_tables(OutFile& out, const ModelConfig& c) {
    const int half = c.head_size() / 2;
    std::vector<float> row(static_cast<size_t>(half));
    for (int part = 0; part < 2; ++part) {
        for (int pos = 0; pos < c.seq_len; ++pos) {
            for (int i = 0; i < half; ++i) {
                const float freq = 1.0f / std::pow(c.rope_theta, static_cast<float>(2 * i) / c.head_size());
                const float angle = static_cast<float>(pos) * freq;
                row[i] = part == 0 ? std::cos(angle) : std::sin(angle);
            }
            out.write(row.data(), row.size() * sizeof(float));
        }
    }
}

void write_tensor(OutFile& out, const ModelTensor& t, TensorSource& source, bool quantize, int group) {
    std::vector<float> row(static_cast<size_t>(t.cols));
    if (!quantize) {
        for (int64_t r = 0; r < t.rows; ++r) {
            source.row(t, r, row.data());
            out.write(row.data(), row.size() * sizeof(float));
        }
        return;
    }
    // export.py: all int8 values of the matrix, then all its scales.
    std::vector<int8_t> q(row.size());
    std::vector<float> scales(static_cast<size_t>(t.rows * (t.cols / group)));
    for (int64_t r = 0; r < t.rows; ++r) {
        source.row(t, r, row.data());
        quantize_q8_groups(row.data(), t.cols, group, q.data(), scales.data() + r * (t.cols / group));
        out.write(q.data(), q.size());
    }
    out.write(scales.data(), scales.size() * sizeof(float));
}

std::string check_writable(const ModelConfig& c, const Llama2cWriteOptions& o, int group) {
    const std::string problem = c.check();
    if (!problem.empty()) return problem;
    if (o.format == Llama2cFormat::v2 && (group <= 0 || c.dim % group != 0 || c.hidden_dim % group != 0))
        return "group size " + std::to_string(group) + " must divide dim " + std::to_string(c.dim) +
               " and hidden_dim " + std::to_string(c.hidden_dim);
    if (llama2c_file_bytes(c, o) < 0) return "the file size overflows";
    return "";
}

int group_for(const ModelConfig& c, const Llama2cWriteOptions& o) {
    return o.group_size > 0 ? o.group_size : default_group_size(c);
}

}  // namespace

bool parse_llama2c_format(const std::string& name, Llama2cFormat* out) {
    for (Llama2cFormat f : {Llama2cFormat::legacy, Llama2cFormat::v1, Llama2cFormat::v2}) {
        if (name == llama2c_format_name(f)) {
            *out = f;
            return true;
        }
    }
    return false;
}

const char* llama2c_format_name(Llama2cFormat f) {
    switch (f) {
        case Llama2cFormat::legacy: return "legacy";
        case Llama2cFormat::v1: return "v1";
        case Llama2cFormat::v2: return "v2";
    }
    return "?";
}

int default_group_size(const ModelConfig& c) {
    int group = 64;
    while (group > 1 && (c.dim % group != 0 || c.hidden_dim % group != 0)) group /= 2;
    return group;
}

std::vector<ModelTensor> llama2c_tensor_order(const ModelConfig& c, Llama2cFormat format, bool shared_classifier) {
    std::vector<ModelTensor> order;
    const int64_t dim = c.dim, hidden = c.hidden_dim, kv = c.kv_dim(), vocab = c.vocab_size;
    auto per_layer = [&](const char* part, int64_t rows, int64_t cols, bool matrix) {
        for (int l = 0; l < c.n_layers; ++l) order.push_back({layer_tensor_name(l, part), rows, cols, matrix});
    };
    auto norms = [&](const char* part) { per_layer(part, 1, dim, false); };
    auto attention = [&] {
        per_layer("attn_q", dim, dim, true);
        per_layer("attn_k", kv, dim, true);
        per_layer("attn_v", kv, dim, true);
        per_layer("attn_output", dim, dim, true);
    };
    auto ffn = [&] {
        per_layer("ffn_gate", hidden, dim, true);
        per_layer("ffn_down", dim, hidden, true);
        per_layer("ffn_up", hidden, dim, true);
    };
    const ModelTensor embedding{"token_embd.weight", vocab, dim, true};
    const ModelTensor output_norm{"output_norm.weight", 1, dim, false};
    if (format == Llama2cFormat::legacy) {
        order.push_back(embedding);
        norms("attn_norm");
        attention();
        norms("ffn_norm");
        ffn();
        order.push_back(output_norm);
    } else {
        norms("attn_norm");
        norms("ffn_norm");
        order.push_back(output_norm);
        order.push_back(embedding);
        attention();
        ffn();
    }
    if (!shared_classifier) order.push_back({"output.weight", vocab, dim, true});
    return order;
}

int64_t llama2c_file_bytes(const ModelConfig& c, const Llama2cWriteOptions& o) {
    const int group = group_for(c, o);
    const bool legacy = o.format == Llama2cFormat::legacy;
    int64_t total = legacy ? kLegacyHeaderBytes : kVersionedHeaderBytes;
    const int64_t max = std::numeric_limits<int64_t>::max();
    auto add = [&](int64_t bytes) {
        if (bytes < 0 || total < 0 || total > max - bytes) total = -1;
        else total += bytes;
    };
    for (const ModelTensor& t : llama2c_tensor_order(c, o.format, o.shared_classifier)) {
        const bool q = t.matrix && o.format == Llama2cFormat::v2;
        add(tensor_bytes(q ? TensorType::Q8_GROUP : TensorType::F32, t.rows, t.cols, group));
    }
    if (legacy) add(tensor_bytes(TensorType::F32, c.seq_len, c.head_size()));
    return total;
}

void quantize_q8_groups(const float* x, int64_t n, int64_t group, int8_t* q, float* scales) {
    for (int64_t g = 0; g < n / group; ++g) {
        const float* xg = x + g * group;
        float wmax = 0.0f;
        for (int64_t i = 0; i < group; ++i) wmax = std::max(wmax, std::fabs(xg[i]));
        const float scale = wmax / 127.0f;
        scales[g] = scale;
        for (int64_t i = 0; i < group; ++i)
            q[g * group + i] = scale == 0.0f ? 0 : static_cast<int8_t>(std::round(xg[i] / scale));
    }
}

void write_llama2c(const std::string& path, const ModelConfig& c, TensorSource& source, const Llama2cWriteOptions& o,
                   const WriteProgress& progress) {
    const int group = group_for(c, o);
    const std::string problem = check_writable(c, o, group);
    if (!problem.empty()) throw Error(path + ": cannot write this model: " + problem);
    const std::string partial = path + ".partial";
    try {
        OutFile out(partial, static_cast<uint64_t>(llama2c_file_bytes(c, o)), progress);
        write_header(out, c, o, group);
        const bool quantize = o.format == Llama2cFormat::v2;
        for (const ModelTensor& t : llama2c_tensor_order(c, o.format, o.shared_classifier)) {
            write_tensor(out, t, source, quantize && t.matrix, group);
            // The legacy RoPE tables sit between the final norm and the classifier.
            if (o.format == Llama2cFormat::legacy && t.name == "output_norm.weight") write_rope_tables(out, c);
        }
        out.close();
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove(partial, ec);
        throw;
    }
    std::error_code ec;
    std::filesystem::rename(partial, path, ec);
    if (ec) throw Error(path + ": cannot rename " + partial + " to it: " + ec.message());
}

Vocabulary synthetic_llama2c_vocabulary(int vocab_size) {
    Vocabulary v;
    v.kind = TokenizerKind::llama2c;
    for (const char* special : {"<unk>", "\n<s>\n", "\n</s>\n"}) v.pieces.emplace_back(special);
    for (int b = 0; b < 256; ++b) {
        char piece[8];
        std::snprintf(piece, sizeof piece, "<0x%02X>", b);
        v.pieces.emplace_back(piece);
    }
    v.pieces.resize(std::min<size_t>(v.pieces.size(), static_cast<size_t>(vocab_size)));
    while (static_cast<int>(v.pieces.size()) < vocab_size) v.pieces.push_back(" w" + std::to_string(v.pieces.size()));
    // Made-up words score by rank, like SentencePiece's; specials and bytes score 0.
    for (size_t i = 0; i < v.pieces.size(); ++i) v.scores.push_back(i < 259 ? 0.0f : -static_cast<float>(i));
    v.bos = vocab_size > 1 ? 1 : -1;
    v.eos = vocab_size > 2 ? 2 : -1;
    v.add_bos = true;
    return v;
}

void write_synthetic_tokenizer(const std::string& path, int vocab_size) {
    const Vocabulary v = synthetic_llama2c_vocabulary(vocab_size);
    size_t longest = 0;
    for (const std::string& p : v.pieces) longest = std::max(longest, p.size());
    OutFile out(path, 0, {});
    out.i32(static_cast<int32_t>(longest));
    for (size_t i = 0; i < v.pieces.size(); ++i) {
        out.write(&v.scores[i], 4);
        out.i32(static_cast<int32_t>(v.pieces[i].size()));
        out.write(v.pieces[i].data(), v.pieces[i].size());
    }
    out.close();
}

}  // namespace ferry
