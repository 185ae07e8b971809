#include "coordinator/model_files/quantize.h"

#include <strings.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <regex>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/gguf_writer.h"
#include "common/mapped_file.h"
#include "common/model_file.h"
#include "common/progress.h"
#include "common/shard_memory.h"
#include "common/tokenizer_loader.h"
#include "common/weights.h"
#include "kernels/kernels.h"
#include "kernels/quant_i2s.h"
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

bool ternary(TensorType t) { return t == TensorType::TQ1_0 || t == TensorType::TQ2_0; }

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

// The rows of a tensor at `offset` in `map`, in their stored bytes, unchanged
// (and its tail, asked for with count 0).
GgufWriter::RowSource copied_rows(const MappedFile& map, uint64_t offset, uint64_t row_bytes, uint64_t tail) {
    return [&map, offset, row_bytes, tail](int64_t first, int64_t count, uint8_t* out) {
        const uint64_t at = offset + static_cast<uint64_t>(first) * row_bytes,
                       n = count > 0 ? static_cast<uint64_t>(count) * row_bytes : tail;
        std::memcpy(out, map.data() + at, static_cast<size_t>(n));
        map.drop_pages(at, n);
    };
}

// The tensors of a parsed GGUF file, decoded to f32 row by row.
class GgufTensorSource : public TensorSource {
public:
    // map: the image g was parsed from. unit_i2s: I2_S rows come as their
    // ternary codes (-1, 0, +1), their scale left to a .scale tensor.
    GgufTensorSource(const GgufFile& g, const MappedFile& map, bool unit_i2s = false)
        : g_(g), map_(map), unit_i2s_(unit_i2s) {}
    void row(const ModelTensor& t, int64_t r, float* out) override {
        const GgufTensor& x = tensor(t);
        const uint8_t* at = map_.data() + x.offset + static_cast<uint64_t>(r) * row_bytes(x);
        if (x.type == TensorType::I2_S) {
            const float scale = unit_i2s_ ? 1.0f : kernels::i2s_scale(map_.data() + x.offset, x.rows() * x.cols());
            kernels::i2s_unpack_row(at, x.cols(), scale, out);
            return;
        }
        decode_rows(x.type, at, out, 1, x.cols());
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
    bool unit_i2s_;
};

// bitnet.cpp's I2_S matrices become TQ1_0/TQ2_0 exactly by storing their
// codes (block scale 1) and moving the tensor's scale into the .scale tensor
// the bitnet architecture multiplies a projection's output by (multiplied
// into one the file already has). The scales, by .scale tensor name.
// "blk.3.attn_q.weight" -> "blk.3.attn_q.scale".
std::string scale_tensor_name(const std::string& weight) {
    return weight.substr(0, weight.size() - std::string_view(".weight").size()) + ".scale";
}

std::map<std::string, float> i2s_scales(const GgufFile& g, const MappedFile& map, TensorType to) {
    std::map<std::string, float> scales;
    for (const GgufTensor& t : g.tensors) {
        if (t.type != TensorType::I2_S) continue;
        const std::string name(t.name);
        static const std::regex projection(R"(blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight)");
        if (!std::regex_match(name, projection))
            g.fail("tensor " + name + " is I2_S, which bitnet.cpp uses for the layers' projections only");
        if (t.cols() % kernels::kI2sBlockValues != 0)
            g.fail("tensor " + name + " is I2_S with rows of " + std::to_string(t.cols()) +
                   " values, not whole blocks of 128");
        const float scale = kernels::i2s_scale(map.data() + t.offset, t.rows() * t.cols());
        if (!std::isfinite(scale)) g.fail("tensor " + name + " is I2_S with a scale that is not a number");
        scales[scale_tensor_name(name)] = scale;
    }
    if (scales.empty() || !ternary(to)) return scales;
    const std::optional<std::string_view> arch = g.get_string("general.architecture");
    if (arch != std::string_view("bitnet"))
        g.fail("holds I2_S matrices but is a " + std::string(arch.value_or("?")) +
               " model; ferry converts I2_S to TQ for the bitnet architecture, whose .scale tensors carry the "
               "scale (bitnet-b1.58, what Microsoft publishes 2B4T as, is not one ferry runs yet)");
    return scales;
}

// A one-value f32 tensor.
GgufWriter::RowSource scalar_row(float v) {
    return [v](int64_t, int64_t count, uint8_t* out) {
        if (count > 0) std::memcpy(out, &v, sizeof v);
    };
}

void report(const GgufOutput& o, const std::string& line) {
    if (o.note) o.note(line);
    else std::fprintf(stderr, "%s\n", line.c_str());
}

// With o.ternary_exact, a ternary output type must have stored some matrix:
// a model with none is not a ternary model, and TQ would hold nothing of it.
// The notes of the matrices kept are said only when the model is written.
void check_some_ternary(const GgufOutput& o, int ternary_count, const std::vector<std::string>& kept,
                        const std::string& in) {
    if (!o.ternary_exact || !ternary(o.type)) return;
    if (ternary_count == 0)
        throw Error(in + ": no matrix is ternary, so " + type_name(o.type) +
                    " would change every one; it stores models trained ternary (BitNet b1.58) exactly. Use q4_0, "
                    "q4_K or q8_0 for this model, or --round-to-ternary to round it anyway");
    for (const std::string& line : kept) report(o, line);
    report(o, std::to_string(ternary_count) + " ternary matrices stored as " + type_name(o.type) +
                  " exactly (every value decodes to what it was)");
}

// The largest change storing `t` as `type` makes, as a share of the tensor's
// largest magnitude (0: stored exactly), by encoding and decoding every row
// with the kernels' own quantizer.
double storage_error(TensorSource& source, const ModelTensor& t, TensorType type, kernels::ThreadPool* pool) {
    std::mutex mu;
    double worst = 0, largest = 0;
    pool->parallel_for(t.rows, std::max<int64_t>(1, t.rows / (4 * pool->size())), [&](int64_t r0, int64_t r1) {
        std::vector<float> x(static_cast<size_t>(t.cols)), y(x.size());
        std::vector<uint8_t> q(static_cast<size_t>(tensor_bytes(type, 1, t.cols)));
        double w = 0, l = 0;
        for (int64_t r = r0; r < r1; ++r) {
            source.row(t, r, x.data());
            encode_rows(type, x.data(), q.data(), 1, t.cols);
            decode_rows(type, q.data(), y.data(), 1, t.cols);
            for (size_t i = 0; i < x.size(); ++i) {
                const double d = std::fabs(static_cast<double>(x[i]) - y[i]);
                w = std::isnan(d) ? HUGE_VAL : std::max(w, d);  // a NaN is never stored "exactly"
                l = std::max(l, static_cast<double>(std::fabs(x[i])));
            }
        }
        std::lock_guard<std::mutex> lock(mu);
        worst = std::max(worst, w);
        largest = std::max(largest, l);
    });
    source.done_with(t, 0, t.rows);
    return worst == 0 ? 0 : worst / std::max(largest, 1e-30);
}

// What a tensor is written as: choose_tensor_type's rule, and with
// o.ternary_exact a matrix that TQ1_0/TQ2_0 would change keeps its type.
// *ternary_count counts the matrices stored ternary exactly, *kept gets a
// note for each one that is not.
TensorType output_type_of(TensorSource& source, const ModelTensor& t, int n_dims, TensorType current,
                          const GgufOutput& o, kernels::ThreadPool* pool, int* ternary_count,
                          std::vector<std::string>* kept) {
    std::string why;
    TensorType wanted = o.type;
    if (t.name == "token_embd.weight" && o.token_embedding_type) wanted = *o.token_embedding_type;
    if (t.name == "output.weight" && o.output_type) wanted = *o.output_type;
    TensorType type = choose_tensor_type(t.name, n_dims, t.cols, current, wanted, &why);
    if (!o.ternary_exact || !ternary(wanted)) {
        if (!why.empty()) report(o, t.name + ": " + why);
        return type;
    }
    if (type != wanted && type != current) {
        // Rows that are not whole 256-blocks: llama-quantize's Q4_0 substitute
        // would round them. I2_S codes (already ternary, scale 1) are exact in F16.
        const TensorType keep = current == TensorType::I2_S ? TensorType::F16 : current;
        kept->push_back(t.name + ": rows of " + std::to_string(t.cols) + " values are not whole " + type_name(wanted) +
                        " blocks of 256; kept exact as " + type_name(keep));
        return keep;
    }
    if (!why.empty()) report(o, t.name + ": " + why);
    if (!ternary(type)) return type;
    if (type == current) {  // already ternary: copied as it is
        ++*ternary_count;
        return type;
    }
    const double error = storage_error(source, t, type, pool);
    if (error == 0) {
        ++*ternary_count;
        return type;
    }
    char share[32];
    std::snprintf(share, sizeof share, "%.3g%%", 100 * error);
    kept->push_back(t.name + ": not ternary (" + type_name(type) + " would change values by up to " + share +
                    " of its largest); kept as " + type_name(current));
    return current;
}

void write_with_progress(const GgufWriter& w, const std::string& path, const GgufOutput& o) {
    ensure_disk_space(path, w.file_bytes());
    Progress bar("write " + std::filesystem::path(path).filename().string());
    GgufWriter::Progress progress;
    if (o.progress) progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };
    w.write(path, progress);
}

void quantize_gguf(const std::string& in, const std::string& out, const GgufOutput& o) {
    const MappedFile map(in);
    const GgufFile g = parse_gguf(map.data(), map.size(), in);
    if (g.tensors.empty()) g.fail("has no tensors to quantize (a vocabulary-only file?)");
    GgufWriter w;
    for (const GgufKV& kv : g.metadata) w.add_value(std::string(kv.key), kv.value);
    w.add_u32("general.quantization_version", kQuantizationVersion);
    w.add_u32("general.file_type", llama_file_type(o.type));

    const std::map<std::string, float> scales = i2s_scales(g, map, o.type);
    const bool unit_i2s = ternary(o.type) && !scales.empty();
    GgufTensorSource source(g, map, unit_i2s);
    kernels::ThreadPool pool(o.threads);
    int ternary_count = 0;
    std::vector<std::string> kept;
    for (const GgufTensor& t : g.tensors) {
        const std::string name(t.name);
        const int n_dims = static_cast<int>(std::max<uint32_t>(t.n_dims, 1));
        const ModelTensor x{name, t.rows(), t.cols(), true};
        const std::vector<int64_t> ne(t.ne, t.ne + n_dims);
        if (unit_i2s && scales.count(name)) {  // a .scale the I2_S scale joins
            if (t.type != TensorType::F32 || t.rows() * t.cols() != 1) g.fail("tensor " + name + " is not one f32 value");
            float v;
            std::memcpy(&v, map.data() + t.offset, sizeof v);
            w.add_tensor(name, TensorType::F32, ne, scalar_row(v * scales.at(name)));
            continue;
        }
        const TensorType type = output_type_of(source, x, n_dims, t.type, o, &pool, &ternary_count, &kept);
        if (type == TensorType::I2_S)  // ferry writes no I2_S: a code 3 (no ternary value) left it unconverted
            g.fail("tensor " + name + " is I2_S with codes outside -1, 0, +1; it cannot be stored as " +
                   type_name(o.type));
        if (type == t.type) {
            const uint64_t row_bytes = static_cast<uint64_t>(tensor_bytes(type, 1, t.cols()));
            w.add_tensor(name, type, ne,
                         copied_rows(map, t.offset, row_bytes, static_cast<uint64_t>(tensor_tail_bytes(type))));
        } else {
            w.add_tensor(name, type, ne, encoded_rows(source, x, type, &pool));
        }
        if (t.type == TensorType::I2_S && unit_i2s) {
            const std::string scale_name = scale_tensor_name(name);
            if (!g.find_tensor(scale_name)) w.add_tensor(scale_name, TensorType::F32, {1}, scalar_row(scales.at(scale_name)));
        }
    }
    check_some_ternary(o, ternary_count, kept, in);
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

std::vector<ModelTensor> model_gguf_tensors(const ModelConfig& c, bool tied_classifier) {
    const int64_t dim = c.dim, hidden = c.hidden_dim, q = c.q_dim(), kv = c.kv_dim(), vocab = c.vocab_size;
    std::vector<ModelTensor> t = {{"token_embd.weight", vocab, dim, true}, {"output_norm.weight", 1, dim, false}};
    if (!tied_classifier) t.push_back({"output.weight", vocab, dim, true});
    for (int l = 0; l < c.n_layers; ++l) {
        auto name = [l](const char* part) { return layer_tensor_name(l, part); };
        t.push_back({name("attn_q"), q, dim, true});
        t.push_back({name("attn_k"), kv, dim, true});
        t.push_back({name("attn_v"), kv, dim, true});
        t.push_back({name("attn_output"), dim, q, true});
        t.push_back({name("attn_norm"), 1, dim, false});
        t.push_back({name("ffn_gate"), hidden, dim, true});
        t.push_back({name("ffn_down"), dim, hidden, true});
        t.push_back({name("ffn_up"), hidden, dim, true});
        t.push_back({name("ffn_norm"), 1, dim, false});
        for (const auto& [part, suffix] : extra_layer_tensors(c))
            t.push_back({layer_tensor_name(l, part, suffix), 1, extra_tensor_length(c, part, suffix), false});
    }
    return t;
}

void write_model_gguf(const std::string& path, const ModelConfig& c, bool tied_classifier, TensorSource& source,
                      const Vocabulary& vocab, const std::string& name, const GgufOutput& o) {
    const std::string problem = c.check();
    if (!problem.empty()) throw Error(path + ": cannot write this model: " + problem);
    if (static_cast<int>(vocab.pieces.size()) != c.vocab_size)
        throw Error(path + ": the vocabulary has " + std::to_string(vocab.pieces.size()) + " tokens, the model " +
                    std::to_string(c.vocab_size));
    GgufWriter w;
    add_model_metadata(w, c, name);
    w.add_u32("general.quantization_version", kQuantizationVersion);
    w.add_u32("general.file_type", llama_file_type(o.type));
    add_vocabulary_to_gguf(w, vocab);
    kernels::ThreadPool pool(o.threads);
    int ternary_count = 0;
    std::vector<std::string> kept;
    for (const ModelTensor& t : model_gguf_tensors(c, tied_classifier)) {
        const TensorType type = output_type_of(source, t, t.matrix ? 2 : 1, TensorType::F32, o, &pool, &ternary_count, &kept);
        const std::vector<int64_t> ne = t.matrix ? std::vector<int64_t>{t.cols, t.rows} : std::vector<int64_t>{t.cols};
        w.add_tensor(t.name, type, ne, encoded_rows(source, t, type, &pool));
    }
    check_some_ternary(o, ternary_count, kept, path);
    write_with_progress(w, path, o);
}

void quantize_model(const std::string& in, const std::string& out, const std::string& tokenizer, const GgufOutput& o) {
    const MappedFile probe(in);
    if (is_gguf(probe.data(), probe.size())) return quantize_gguf(in, out, o);
    const ModelFile model = open_llama2c_file(in);
    const Tokenizer tok = load_tokenizer(model, tokenizer);
    ModelFileTensorSource source(model);
    write_model_gguf(out, model.config, model.find("output.weight") == nullptr, source,
                     spm_vocabulary_from_llama2c(tok.vocabulary()), std::filesystem::path(in).stem().string(), o);
}

}  // namespace ferry
