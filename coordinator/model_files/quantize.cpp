#include "coordinator/model_files/quantize.h"

#include <strings.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/gguf_writer.h"
#include "common/mapped_file.h"
#include "common/model_file.h"
#include "common/progress.h"
#include "common/shard_memory.h"
#include "common/tokenizer_loader.h"
#include "kernels/kernels.h"
#include "kernels/quantize.h"
#include "kernels/thread_pool.h"

namespace ferry {

namespace {

// llama-quantize's bookkeeping for each output type: the general.file_type
// it writes (the K-quant names alone mean their _M mixes there) and the
// substitute it takes for rows that are not whole 256-blocks (F32: none).
struct OutputType {
    TensorType type;
    uint32_t file_type;
    TensorType substitute;
};

const OutputType kOutputs[] = {
    {TensorType::F32, 0, TensorType::F32},      {TensorType::F16, 1, TensorType::F32},
    {TensorType::BF16, 32, TensorType::F32},    {TensorType::Q8_0, 7, TensorType::F32},
    {TensorType::Q4_0, 2, TensorType::F32},     {TensorType::Q4_1, 3, TensorType::F32},
    {TensorType::Q5_0, 8, TensorType::F32},     {TensorType::Q5_1, 9, TensorType::F32},
    {TensorType::Q2_K, 10, TensorType::IQ4_NL}, {TensorType::Q3_K, 12, TensorType::IQ4_NL},
    {TensorType::Q4_K, 15, TensorType::Q5_0},   {TensorType::Q5_K, 17, TensorType::Q5_1},
    {TensorType::Q6_K, 18, TensorType::Q8_0},   {TensorType::IQ4_NL, 25, TensorType::F32},
    {TensorType::TQ1_0, 36, TensorType::Q4_0},  {TensorType::TQ2_0, 37, TensorType::Q4_0},
};

// GGUF stores version 2 of the block layouts (ggml's GGML_QNT_VERSION).
constexpr uint32_t kQuantizationVersion = 2;

const OutputType* output_entry(TensorType type) {
    for (const OutputType& o : kOutputs)
        if (o.type == type) return &o;
    return nullptr;
}

// ggml's spelling ("q4_K"), which llama.cpp users know.
std::string type_name(TensorType t) {
    const char* n = ggml_type_name(static_cast<uint32_t>(t));
    return n ? n : tensor_type_name(t);
}

int64_t block_values(TensorType t) { return tensor_type_traits(t)->block_values; }

// Rows of `t` encoded as `type` (or decoded when `type` is f32), pulled from
// `source` and encoded in parallel, about 1 MB of f32 at a time.
GgufWriter::RowSource encoded_rows(TensorSource& source, const ModelTensor& t, TensorType type,
                                   kernels::ThreadPool* pool) {
    return [&source, t, type, pool](int64_t first, int64_t count, uint8_t* out) {
        const int64_t row_bytes = tensor_bytes(type, 1, t.cols);
        const int64_t batch = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, t.cols));
        std::vector<float> rows(static_cast<size_t>(std::min(batch, count) * t.cols));
        for (int64_t b0 = 0; b0 < count; b0 += batch) {
            const int64_t n = std::min(batch, count - b0);
            const int64_t grain = std::max<int64_t>(1, n / (4 * pool->size()));
            pool->parallel_for(n, grain, [&](int64_t i0, int64_t i1) {
                for (int64_t i = i0; i < i1; ++i) source.row(t, first + b0 + i, rows.data() + i * t.cols);
                encode_rows(type, rows.data() + i0 * t.cols, out + (b0 + i0) * row_bytes, i1 - i0, t.cols);
            });
        }
        source.done_with(t, first, count);
    };
}

// The rows of a tensor at `offset` in `map`, in their stored bytes, unchanged.
GgufWriter::RowSource copied_rows(const MappedFile& map, uint64_t offset, uint64_t row_bytes) {
    return [&map, offset, row_bytes](int64_t first, int64_t count, uint8_t* out) {
        const uint64_t at = offset + static_cast<uint64_t>(first) * row_bytes,
                       n = static_cast<uint64_t>(count) * row_bytes;
        std::memcpy(out, map.data() + at, static_cast<size_t>(n));
        map.drop_pages(at, n);
    };
}

// The tensors of a parsed GGUF file, decoded to f32 row by row.
class GgufTensorSource : public TensorSource {
public:
    // map: the image g was parsed from.
    GgufTensorSource(const GgufFile& g, const MappedFile& map) : g_(g), map_(map) {}
    void row(const ModelTensor& t, int64_t r, float* out) override {
        const GgufTensor& x = tensor(t);
        decode_rows(x.type, map_.data() + x.offset + static_cast<uint64_t>(r) * row_bytes(x), out, 1, x.cols());
    }
    void done_with(const ModelTensor& t, int64_t first, int64_t count) override {
        const GgufTensor& x = tensor(t);
        map_.drop_pages(x.offset + static_cast<uint64_t>(first) * row_bytes(x),
                        static_cast<uint64_t>(count) * row_bytes(x));
    }

private:
    const GgufTensor& tensor(const ModelTensor& t) const {
        const GgufTensor* x = g_.find_tensor(t.name);
        if (!x) g_.fail("tensor " + t.name + " is missing");
        return *x;
    }
    static uint64_t row_bytes(const GgufTensor& x) { return static_cast<uint64_t>(tensor_bytes(x.type, 1, x.cols())); }

    const GgufFile& g_;
    const MappedFile& map_;
};

void write_with_progress(const GgufWriter& w, const std::string& path, const GgufOutput& o) {
    ensure_disk_space(path, w.file_bytes());
    Progress bar("write " + std::filesystem::path(path).filename().string());
    GgufWriter::Progress progress;
    if (o.progress) progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };
    w.write(path, progress);
}

void report(const GgufOutput& o, const std::string& line) {
    if (o.note) o.note(line);
    else std::fprintf(stderr, "%s\n", line.c_str());
}

void quantize_gguf(const std::string& in, const std::string& out, const GgufOutput& o) {
    const MappedFile map(in);
    const GgufFile g = parse_gguf(map.data(), map.size(), in);
    if (g.tensors.empty()) g.fail("has no tensors to quantize (a vocabulary-only file?)");
    GgufWriter w;
    for (const GgufKV& kv : g.metadata) w.add_value(std::string(kv.key), kv.value);
    w.add_u32("general.quantization_version", kQuantizationVersion);
    w.add_u32("general.file_type", llama_file_type(o.type));

    GgufTensorSource source(g, map);
    kernels::ThreadPool pool(o.threads);
    for (const GgufTensor& t : g.tensors) {
        const std::string name(t.name);
        const int n_dims = static_cast<int>(std::max<uint32_t>(t.n_dims, 1));
        std::string why;
        const TensorType type = choose_tensor_type(name, n_dims, t.cols(), t.type, o.type, &why);
        if (!why.empty()) report(o, name + ": " + why);
        const std::vector<int64_t> ne(t.ne, t.ne + n_dims);
        if (type == t.type) {
            const uint64_t row_bytes = static_cast<uint64_t>(tensor_bytes(type, 1, t.cols()));
            w.add_tensor(name, type, ne, copied_rows(map, t.offset, row_bytes));
        } else {
            const ModelTensor x{name, t.rows(), t.cols(), true};
            w.add_tensor(name, type, ne, encoded_rows(source, x, type, &pool));
        }
    }
    write_with_progress(w, out, o);
}

}  // namespace

const std::vector<TensorType>& output_types() {
    static const std::vector<TensorType> types = [] {
        std::vector<TensorType> v;
        for (const OutputType& o : kOutputs) v.push_back(o.type);
        return v;
    }();
    return types;
}

bool parse_output_type(const std::string& name, TensorType* out) {
    TensorType t;
    if (!parse_tensor_type(name.c_str(), &t) || !output_entry(t)) return false;
    *out = t;
    return true;
}

std::string output_type_list() {
    std::string s;
    for (const OutputType& o : kOutputs) s += (s.empty() ? "" : ", ") + type_name(o.type);
    return s;
}

uint32_t llama_file_type(TensorType type) {
    const OutputType* o = output_entry(type);
    if (!o)
        throw Error(std::string("type ") + tensor_type_name(type) + " cannot be written; use one of " +
                    output_type_list());
    return o->file_type;
}

bool rows_fit(TensorType type, int64_t n) { return type == TensorType::F32 || kernels::can_quantize(type, n); }

TensorType choose_tensor_type(std::string_view name, int n_dims, int64_t row_length, TensorType current,
                              TensorType wanted, std::string* why) {
    why->clear();
    const std::string_view suffix = ".weight";
    const bool weight = name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
    if (!weight || n_dims < 2) return current;
    if (rows_fit(wanted, row_length)) return wanted;
    const std::string rows = "rows of " + std::to_string(row_length) + " values are not whole " + type_name(wanted) +
                             " blocks of " + std::to_string(block_values(wanted));
    const OutputType* o = output_entry(wanted);
    if (o && o->substitute != TensorType::F32 && rows_fit(o->substitute, row_length)) {
        *why = rows + "; written as " + type_name(o->substitute) + " (llama-quantize's substitute)";
        return o->substitute;
    }
    *why = rows + "; kept as f32";
    return TensorType::F32;
}

void encode_rows(TensorType type, const float* src, uint8_t* dst, int64_t n_rows, int64_t n_per_row) {
    if (type == TensorType::F32) {
        std::memcpy(dst, src, static_cast<size_t>(n_rows * n_per_row) * sizeof(float));
        return;
    }
    if (kernels::quantize_rows(type, src, dst, n_rows, n_per_row) == 0)
        throw Error("rows of " + std::to_string(n_per_row) + " values cannot be stored as " + type_name(type));
}

void decode_rows(TensorType type, const uint8_t* src, float* dst, int64_t n_rows, int64_t n_per_row) {
    if (type == TensorType::F32) {
        std::memcpy(dst, src, static_cast<size_t>(n_rows * n_per_row) * sizeof(float));
        return;
    }
    kernels::dequantize_values(type, src, dst, n_rows * n_per_row);
}

void ensure_disk_space(const std::string& path, uint64_t bytes) {
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) dir = ".";
    std::error_code ec;
    const std::filesystem::space_info space = std::filesystem::space(dir, ec);
    if (ec) throw Error(path + ": cannot write there: " + ec.message());
    if (space.available < bytes)
        throw Error(path + ": needs " + format_bytes(bytes) + ", the disk has " +
                    format_bytes(space.available) + " free");
}

std::vector<ModelTensor> llama_gguf_tensors(const ModelConfig& c, bool tied_classifier) {
    const int64_t dim = c.dim, hidden = c.hidden_dim, kv = c.kv_dim(), vocab = c.vocab_size;
    std::vector<ModelTensor> t = {{"token_embd.weight", vocab, dim, true}, {"output_norm.weight", 1, dim, false}};
    if (!tied_classifier) t.push_back({"output.weight", vocab, dim, true});
    for (int l = 0; l < c.n_layers; ++l) {
        auto name = [l](const char* part) { return "blk." + std::to_string(l) + "." + part + ".weight"; };
        t.push_back({name("attn_q"), dim, dim, true});
        t.push_back({name("attn_k"), kv, dim, true});
        t.push_back({name("attn_v"), kv, dim, true});
        t.push_back({name("attn_output"), dim, dim, true});
        t.push_back({name("attn_norm"), 1, dim, false});
        t.push_back({name("ffn_gate"), hidden, dim, true});
        t.push_back({name("ffn_down"), dim, hidden, true});
        t.push_back({name("ffn_up"), hidden, dim, true});
        t.push_back({name("ffn_norm"), 1, dim, false});
    }
    return t;
}

void write_llama_gguf(const std::string& path, const ModelConfig& c, bool tied_classifier, TensorSource& source,
                      const Vocabulary& vocab, const std::string& name, const GgufOutput& o) {
    const std::string problem = c.check();
    if (!problem.empty()) throw Error(path + ": cannot write this model: " + problem);
    // Its tensor list is llama's (llama_gguf_tensors); other architectures go through quantize_gguf, which copies every tensor.
    if (c.arch != Arch::llama || c.head_dim != 0)
        throw Error(path + ": writes llama models only, not " + arch_name(c.arch));
    if (static_cast<int>(vocab.pieces.size()) != c.vocab_size)
        throw Error(path + ": the vocabulary has " + std::to_string(vocab.pieces.size()) + " tokens, the model " +
                    std::to_string(c.vocab_size));
    GgufWriter w;
    add_model_metadata(w, c, name);
    w.add_u32("general.quantization_version", kQuantizationVersion);
    w.add_u32("general.file_type", llama_file_type(o.type));
    add_vocabulary_to_gguf(w, vocab);
    kernels::ThreadPool pool(o.threads);
    for (const ModelTensor& t : llama_gguf_tensors(c, tied_classifier)) {
        std::string why;
        const TensorType type = choose_tensor_type(t.name, t.matrix ? 2 : 1, t.cols, TensorType::F32, o.type, &why);
        if (!why.empty()) report(o, t.name + ": " + why);
        const std::vector<int64_t> ne = t.matrix ? std::vector<int64_t>{t.cols, t.rows} : std::vector<int64_t>{t.cols};
        w.add_tensor(t.name, type, ne, encoded_rows(source, t, type, &pool));
    }
    write_with_progress(w, path, o);
}

void quantize_model(const std::string& in, const std::string& out, const std::string& tokenizer, const GgufOutput& o) {
    const MappedFile probe(in);
    if (is_gguf(probe.data(), probe.size())) return quantize_gguf(in, out, o);
    const ModelFile model = open_llama2c_file(in);
    const Tokenizer tok = load_tokenizer(model, tokenizer);
    ModelFileTensorSource source(model);
    write_llama_gguf(out, model.config, model.find("output.weight") == nullptr, source,
                     spm_vocabulary_from_llama2c(tok.vocabulary()), std::filesystem::path(in).stem().string(), o);
}

}  // namespace ferry
