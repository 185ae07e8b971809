// `ferry quantize` and the GGUF model writer: the oracle files reproduced
// byte for byte, the tensor-selection rule, llama2.c -> GGUF conversion, and
// quantize -> load -> run round trips for every type with the top-1
// agreement with f32 measured over 256 greedy steps (printed, and bounded).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <random>
#include <regex>
#include <sstream>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/llama2c_writer.h"
#include "common/mapped_file.h"
#include "common/model_file.h"
#include "common/sampler.h"
#include "common/tokenizer_loader.h"
#include "coordinator/generation/local_engine.h"
#include "coordinator/model_files/quantize.h"
#include "common/gguf_writer.h"
#include "kernels/quant_i2s.h"
#include "kernels/quants.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

std::string gguf_dir() { return test::shared_dir() + "/models/gguf/"; }
std::string stories() { return test::model_path("stories260K.gguf"); }

test::CommandResult quantize_cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {test::ferry_bin(), "quantize"};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_command(argv);
}

// How often a model's argmax equals f32's over `steps` greedy positions:
// teacher-forced on f32's own greedy stream from BOS, plus how long the
// model's own free-running greedy stream stays equal to it.
struct Agreement {
    int agree = 0;
    int steps = 0;
    int free_running = 0;
};

std::vector<int> greedy_stream(LocalEngine& e, int steps) {
    std::vector<int> s = {1};
    for (int pos = 0; pos < steps; ++pos) s.push_back(argmax(e.forward(&s[pos], 1, pos), e.config().vocab_size));
    return s;
}

Agreement top1_agreement(const std::string& f32_path, const std::string& other_path, int steps = 256) {
    const ModelFile f32 = open_model_file(f32_path), other = open_model_file(other_path);
    kernels::ThreadPool pool(2);
    LocalEngine reference(f32, steps + 1, &pool), model(other, steps + 1, &pool);
    const std::vector<int> stream = greedy_stream(reference, steps);
    Agreement a;
    a.steps = steps;
    for (int pos = 0; pos < steps; ++pos)
        a.agree += argmax(model.forward(&stream[pos], 1, pos), other.config.vocab_size) == stream[pos + 1];
    LocalEngine fresh(other, steps + 1, &pool);
    const std::vector<int> own = greedy_stream(fresh, steps);
    while (a.free_running < steps && own[a.free_running + 1] == stream[a.free_running + 1]) ++a.free_running;
    return a;
}

std::string describe(const Agreement& a) {
    return std::to_string(a.agree) + "/" + std::to_string(a.steps) + " teacher-forced, free-running greedy equal for " +
           std::to_string(a.free_running);
}

std::vector<std::pair<std::string, TensorType>> tensor_types(const std::string& path) {
    const MappedFile map(path);
    const GgufFile g = parse_gguf(map.data(), map.size(), path);
    std::vector<std::pair<std::string, TensorType>> out;
    for (const GgufTensor& t : g.tensors) out.emplace_back(std::string(t.name), t.type);
    return out;
}

TEST(Quantize, Stories260KGivesTheOracleFilesByteForByte) {
    test::TempDir dir;
    for (const char* type : {"q8_0", "q4_0"}) {
        const std::string out = dir.file(std::string("s-") + type + ".gguf");
        const auto r = quantize_cli({stories(), out, "--type", type});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(test::read_file(out), test::read_file(gguf_dir() + "stories260K-" + type + ".gguf"))
            << type << ": not byte-identical to the oracle";
        // Each ffn_down (rows of 172) is named as it stays f32; the progress bar ran.
        for (int l = 0; l < 5; ++l)
            EXPECT_NE(r.err.find("blk." + std::to_string(l) + ".ffn_down.weight: rows of 172 values are not whole " +
                                 type + " blocks of 32; kept as f32"),
                      std::string::npos)
                << r.err;
        EXPECT_NE(r.err.find("100%"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("32 " + std::string(type) + ", 16 f32"), std::string::npos) << r.err;
    }
}

TEST(Quantize, TensorSelectionFollowsLlamaQuantizePure) {
    std::string why;
    // Matrices named *.weight get the type where their rows fit it.
    EXPECT_EQ(choose_tensor_type("blk.0.attn_q.weight", 2, 64, TensorType::F32, TensorType::Q8_0, &why),
              TensorType::Q8_0);
    EXPECT_EQ(why, "");
    // Vectors, and tensors not named *.weight, keep their type.
    EXPECT_EQ(choose_tensor_type("blk.0.attn_norm.weight", 1, 64, TensorType::F32, TensorType::Q4_0, &why),
              TensorType::F32);
    EXPECT_EQ(choose_tensor_type("rope_freqs.weight", 1, 64, TensorType::F32, TensorType::Q4_0, &why), TensorType::F32);
    EXPECT_EQ(choose_tensor_type("blk.0.attn_q.bias", 2, 64, TensorType::F16, TensorType::Q4_0, &why), TensorType::F16);
    // Rows that are not whole blocks: f32, said so.
    EXPECT_EQ(choose_tensor_type("blk.0.ffn_down.weight", 2, 172, TensorType::F32, TensorType::Q4_0, &why),
              TensorType::F32);
    EXPECT_EQ(why, "rows of 172 values are not whole q4_0 blocks of 32; kept as f32");
    EXPECT_EQ(choose_tensor_type("blk.0.ffn_down.weight", 2, 172, TensorType::F32, TensorType::F16, &why),
              TensorType::F16);
    // K-quants and ternary rows of 64: llama-quantize's substitutes.
    const std::pair<TensorType, TensorType> substitutes[] = {
        {TensorType::Q2_K, TensorType::IQ4_NL}, {TensorType::Q3_K, TensorType::IQ4_NL},
        {TensorType::Q4_K, TensorType::Q5_0},   {TensorType::Q5_K, TensorType::Q5_1},
        {TensorType::Q6_K, TensorType::Q8_0},   {TensorType::TQ1_0, TensorType::Q4_0},
        {TensorType::TQ2_0, TensorType::Q4_0}};
    for (const auto& [wanted, sub] : substitutes) {
        EXPECT_EQ(choose_tensor_type("output.weight", 2, 64, TensorType::F32, wanted, &why), sub);
        EXPECT_NE(why.find("blocks of 256; written as"), std::string::npos) << why;
        EXPECT_EQ(choose_tensor_type("output.weight", 2, 512, TensorType::F32, wanted, &why), wanted);
        EXPECT_EQ(choose_tensor_type("output.weight", 2, 172, TensorType::F32, wanted, &why), TensorType::F32);
    }
    // llama.cpp's general.file_type values.
    EXPECT_EQ(llama_file_type(TensorType::Q8_0), 7u);
    EXPECT_EQ(llama_file_type(TensorType::Q4_0), 2u);
    EXPECT_EQ(llama_file_type(TensorType::Q4_K), 15u);
    EXPECT_EQ(llama_file_type(TensorType::BF16), 32u);
    EXPECT_EQ(llama_file_type(TensorType::TQ2_0), 37u);
    EXPECT_EQ(output_types().size(), 16u);
}

// stories260K.bin (llama2.c) becomes a self-contained GGUF: the tensors of
// stories260K.gguf bit for bit, the vocabulary llama.cpp's converter makes
// of tok512.bin, and run.c's output without -z.
TEST(Quantize, Llama2cCheckpointBecomesASelfContainedGguf) {
    test::TempDir dir;
    const std::string out = dir.file("from-bin.gguf");
    const auto r =
        quantize_cli({test::model_path("stories260K.bin"), out, "--type", "f32", "-z", test::model_path("tok512.bin")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const ModelFile converted = open_model_file(out), reference = open_model_file(stories());
    EXPECT_EQ(converted.config.seq_len, 512) << "the checkpoint's own context";
    EXPECT_EQ(converted.find("output.weight"), nullptr) << "the shared classifier stays tied";
    for (const TensorInfo& t : converted.tensors) {
        const TensorInfo* ref = reference.find(t.name);
        ASSERT_NE(ref, nullptr) << t.name;
        ASSERT_EQ(t.bytes, ref->bytes) << t.name;
        EXPECT_EQ(std::memcmp(converted.data(t), reference.data(*ref), t.bytes), 0) << t.name;
    }
    const Vocabulary a = load_tokenizer(converted, "").vocabulary(), b = load_tokenizer(reference, "").vocabulary();
    EXPECT_EQ(a.pieces, b.pieces);
    EXPECT_EQ(a.scores, b.scores);
    EXPECT_EQ(a.types, b.types);
    EXPECT_EQ(a.bos, b.bos);
    EXPECT_EQ(a.eos, b.eos);
    const auto run =
        test::run_command({test::ferry_bin(), "run", out, "-t", "1.0", "-p", "0.9", "-s", "42", "-n", "256"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(run.out, test::read_file(test::reference_path("stories260K.t1p09.s42.n256.txt")));
}

// A model streams through: ferry quantize's peak memory stays a fraction of
// the model it reads (the input's pages are let go as rows are written).
TEST(Quantize, StreamsInsteadOfHoldingTheModel) {
    test::TempDir dir;
    ModelConfig c;
    c.dim = 512, c.hidden_dim = 1536, c.n_layers = 6, c.n_heads = 8, c.n_kv_heads = 8, c.vocab_size = 8000;
    c.seq_len = 256;
    RandomTensorSource random(1);
    GgufOutput o;
    o.progress = false;
    const std::string in = dir.file("big-f32.gguf");
    write_model_gguf(in, c, true, random, spm_vocabulary_from_llama2c(synthetic_llama2c_vocabulary(c.vocab_size)),
                     "big", o);
    const double in_mb = static_cast<double>(std::filesystem::file_size(in)) / 1e6;
    ASSERT_GT(in_mb, 90.0);
    const auto r = quantize_cli({in, dir.file("big-q8_0.gguf"), "--type", "q8_0", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.err, m, std::regex("peak RSS ([0-9.]+) MB"))) << r.err;
    const double peak_mb = std::stod(m[1]);
    std::cout << "[ measured ] ferry quantize of a " << in_mb << " MB f32 model to q8_0: peak RSS " << peak_mb << " MB\n";
    EXPECT_LT(peak_mb, in_mb / 2);
}

TEST(Quantize, RefusesBadRequestsWithOneLine) {
    test::TempDir dir;
    auto r = quantize_cli({stories(), dir.file("x.gguf"), "--type", "q3_k_m"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("--type q3_k_m: unknown; use one of f32, f16, bf16, q8_0"), std::string::npos) << r.err;
    test::write_file(dir.file("exists.gguf"), "x");
    r = quantize_cli({stories(), dir.file("exists.gguf"), "--type", "q8_0"});
    EXPECT_NE(r.err.find("already exists; pass --force"), std::string::npos) << r.err;
    r = quantize_cli({gguf_dir() + "vocab/ggml-vocab-gpt-2.gguf", dir.file("v.gguf"), "--type", "q8_0"});
    EXPECT_NE(r.err.find("has no tensors to quantize"), std::string::npos) << r.err;
    r = quantize_cli({test::model_path("stories260K.bin"), dir.file("n.gguf"), "--type", "q8_0", "-z",
                      dir.file("missing-tokenizer.bin")});
    EXPECT_NE(r.err.find("missing-tokenizer.bin: cannot open"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("n.gguf")));
    EXPECT_FALSE(std::filesystem::exists(dir.file("n.gguf.partial")));
}

// Every type, written from stories260K.gguf, loads and runs. Its top-1
// agreement with f32 is printed; the bounds sit below the measured values
// (see the report) and far above chance (1/512).
struct RoundTrip {
    const char* type;
    int min_agree;  // of 256
};

const RoundTrip kStoriesTrips[] = {
    {"f32", 256},  {"f16", 250},    {"bf16", 230},  {"q8_0", 245},  {"q4_0", 200}, {"q4_1", 200},
    {"q5_0", 215}, {"q5_1", 215},   {"q2_k", 200},  {"q3_k", 200},  {"q4_k", 215}, {"q5_k", 215},
    {"q6_k", 245}, {"iq4_nl", 200}, {"tq1_0", 200}, {"tq2_0", 200},
};

TEST(QuantizeRoundTrip, EveryTypeOnStories260K) {
    test::TempDir dir;
    for (const RoundTrip& rt : kStoriesTrips) {
        TensorType type;
        ASSERT_TRUE(parse_output_type(rt.type, &type));
        const std::string out = dir.file(std::string(rt.type) + ".gguf");
        GgufOutput o;
        o.type = type;
        o.progress = false;
        o.note = [](const std::string&) {};
        quantize_model(stories(), out, "", o);
        std::ostringstream census;
        for (const auto& [name, t] : tensor_types(out))
            if (name.find("attn_q") != std::string::npos && name.find("blk.0") != std::string::npos)
                census << tensor_type_name(t);
        const Agreement a = top1_agreement(stories(), out);
        std::cout << "[ measured ] stories260K " << std::setw(6) << rt.type << " (matrices stored as " << census.str()
                  << "): top-1 agreement with f32 " << describe(a) << "\n";
        EXPECT_GE(a.agree, rt.min_agree) << rt.type;
    }
}

TEST(QuantizeRoundTrip, TheOracleFilesRun) {
    for (const char* type : {"q8_0", "q4_0"}) {
        const Agreement a = top1_agreement(stories(), gguf_dir() + "stories260K-" + type + ".gguf");
        std::cout << "[ measured ] stories260K-" << type << ".gguf (the oracle file): top-1 agreement with f32 "
                  << describe(a) << "\n";
        EXPECT_GE(a.agree, type[1] == '8' ? 245 : 200);
    }
}

// stories260K widened to rows of 256 by zero padding: dim 64 -> 256 (8 real
// heads of 8 among 32), kv_dim 32 -> 128, hidden 172 -> 256. The padding
// stays zero through every layer, and halving the norm weights with a
// quarter of the epsilon makes each RMSNorm what it was over 64 values, so
// this is the real model in a shape the K-quants take whole.
class WidenedStories : public TensorSource {
public:
    explicit WidenedStories(const ModelFile& f) : file_(f), source_(f) {}
    static ModelConfig config(const ModelConfig& c) {
        ModelConfig w = c;
        w.dim = 256, w.hidden_dim = 256, w.n_heads = 32, w.n_kv_heads = 16, w.seq_len = 512;
        w.norm_eps = c.norm_eps / 4;
        return w;
    }
    void row(const ModelTensor& t, int64_t r, float* out) override {
        std::fill(out, out + t.cols, 0.0f);
        const TensorInfo* real = file_.find(t.name);
        if (!real || r >= real->rows) return;
        source_.row(ModelTensor{t.name, real->rows, real->cols, t.matrix}, r, out);
        if (!t.matrix)
            for (int64_t i = 0; i < real->cols; ++i) out[i] *= 0.5f;
    }

private:
    const ModelFile& file_;
    ModelFileTensorSource source_;
};

// Ternary weights ({-1, 0, 1} times a power of two, as BitNet b1.58 trains
// them): what TQ1_0 and TQ2_0 are made for, and store exactly. (The model
// still differs a little from f32: its matmuls round the activations to
// 8 bits, as ggml's do.)
class TernaryWeights : public TensorSource {
public:
    void row(const ModelTensor& t, int64_t r, float* out) override {
        random_.row(t, r, out);
        if (!t.matrix) return;
        for (int64_t i = 0; i < t.cols; ++i) out[i] = out[i] > 0.02f ? 0.0625f : out[i] < -0.02f ? -0.0625f : 0.0f;
    }

private:
    RandomTensorSource random_{7, 0.04f};
};

TEST(QuantizeRoundTrip, KQuantsOnStories260KWidenedTo256) {
    test::TempDir dir;
    const ModelFile real = open_model_file(stories());
    WidenedStories widened(real);
    GgufOutput o;
    o.progress = false;
    const std::string f32 = dir.file("wide-f32.gguf");
    write_model_gguf(f32, WidenedStories::config(real.config), false, widened, load_tokenizer(real, "").vocabulary(),
                     "stories260K widened", o);
    const Agreement same = top1_agreement(stories(), f32);
    std::cout << "[ measured ] stories260K widened to 256 (f32) vs stories260K: " << describe(same) << "\n";
    EXPECT_GE(same.agree, 250) << "the widened model is the same model";

    const RoundTrip trips[] = {{"q2_k", 50}, {"q3_k", 160}, {"q4_k", 215}, {"q5_k", 235}, {"q6_k", 240}};
    for (const RoundTrip& rt : trips) {
        ASSERT_TRUE(parse_output_type(rt.type, &o.type));
        std::vector<std::string> notes;
        o.note = [&](const std::string& n) { notes.push_back(n); };
        const std::string out = dir.file(std::string("wide-") + rt.type + ".gguf");
        quantize_model(f32, out, "", o);
        EXPECT_TRUE(notes.empty()) << rt.type << ": " << (notes.empty() ? "" : notes[0]);
        for (const auto& [name, t] : tensor_types(out))
            EXPECT_EQ(t, name.find("norm") != std::string::npos ? TensorType::F32 : o.type) << name;
        const Agreement a = top1_agreement(f32, out);
        std::cout << "[ measured ] stories260K widened " << std::setw(5) << rt.type << ": top-1 agreement with f32 "
                  << describe(a) << "\n";
        EXPECT_GE(a.agree, rt.min_agree) << rt.type;
    }
}

TEST(QuantizeRoundTrip, TernaryTypesStoreTernaryWeightsExactly) {
    test::TempDir dir;
    ModelConfig c;
    c.dim = 256, c.hidden_dim = 512, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.vocab_size = 512,
    c.seq_len = 257;
    TernaryWeights ternary;
    GgufOutput o;
    o.progress = false;
    const std::string f32 = dir.file("ternary-f32.gguf");
    write_model_gguf(f32, c, false, ternary, spm_vocabulary_from_llama2c(synthetic_llama2c_vocabulary(c.vocab_size)),
                     "ternary", o);
    for (const char* type : {"tq1_0", "tq2_0"}) {
        ASSERT_TRUE(parse_output_type(type, &o.type));
        const std::string out = dir.file(std::string("ternary-") + type + ".gguf");
        quantize_model(f32, out, "", o);
        const ModelFile a = open_model_file(f32), b = open_model_file(out);
        for (const TensorInfo& t : b.tensors) {
            if (t.rows == 1) continue;
            EXPECT_EQ(t.type, o.type) << t.name;
            std::vector<float> x(static_cast<size_t>(t.cols)), y(x.size());
            ModelFileTensorSource sa(a), sb(b);
            const ModelTensor mt{t.name, t.rows, t.cols, true};
            for (int64_t r = 0; r < t.rows; r += 37) {
                sa.row(mt, r, x.data());
                sb.row(mt, r, y.data());
                ASSERT_EQ(x, y) << type << " " << t.name << " row " << r;
            }
        }
        const Agreement agree = top1_agreement(f32, out);
        std::cout << "[ measured ] ternary-weight model " << type << ": top-1 agreement with f32 " << describe(agree)
                  << "\n";
        EXPECT_GE(agree.agree, 220) << type;
    }
    // The two encodings hold the same numbers: the same model, token for token.
    const Agreement same = top1_agreement(dir.file("ternary-tq1_0.gguf"), dir.file("ternary-tq2_0.gguf"));
    EXPECT_EQ(same.agree, 256);
    EXPECT_EQ(same.free_running, 256);
}

// BitNet's projections are ternary times a per-tensor scale (kept in its own
// .scale tensor): TQ1_0 holds them exactly, the F16 embedding (tied
// classifier) is not ternary and keeps its type, and the model computes the
// same tokens as the TQ2_0 file llama.cpp's tools wrote. Back to TQ2_0 gives
// that file's bytes again. A model with no ternary matrix is refused.
TEST(QuantizeRoundTrip, BitnetIsStoredTernaryExactlyAndOthersAreRefused) {
    test::TempDir dir;
    const std::string original = test::model_path("arch/bitnet-tiny.gguf");
    const std::string tq1 = dir.file("bitnet-tq1_0.gguf"), tq2 = dir.file("bitnet-tq2_0.gguf");
    auto r = quantize_cli({original, tq1, "--type", "tq1_0"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("token_embd.weight: not ternary"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("kept as f16"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("28 ternary matrices stored as tq1_0 exactly"), std::string::npos) << r.err;
    int projections = 0;
    for (const auto& [name, type] : tensor_types(tq1)) {
        if (name.find(".weight") == std::string::npos || name.find("norm") != std::string::npos) continue;
        if (name == "token_embd.weight") {
            EXPECT_EQ(type, TensorType::F16);
            continue;
        }
        EXPECT_EQ(type, TensorType::TQ1_0) << name;
        ++projections;
    }
    EXPECT_EQ(projections, 28);
    r = quantize_cli({tq1, tq2, "--type", "tq2_0"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // A file already in the type is copied, its matrices counted as the ternary ones they are.
    r = quantize_cli({original, dir.file("again.gguf"), "--type", "tq2_0"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("28 ternary matrices stored as tq2_0 exactly"), std::string::npos) << r.err;
    const MappedFile a(original), b(tq2);
    const GgufFile ga = parse_gguf(a.data(), a.size(), original), gb = parse_gguf(b.data(), b.size(), tq2);
    for (const GgufTensor& t : ga.tensors) {
        const GgufTensor* u = gb.find_tensor(t.name);
        ASSERT_NE(u, nullptr) << t.name;
        ASSERT_EQ(u->type, t.type) << t.name;
        EXPECT_EQ(std::memcmp(a.data() + t.offset, b.data() + u->offset, t.bytes), 0)
            << t.name << ": TQ2_0 -> TQ1_0 -> TQ2_0 changed its bytes";
    }
    // Same numbers, same model: greedy streams equal over the context's worth of steps.
    const Agreement same = top1_agreement(original, tq1, 128);
    EXPECT_EQ(same.agree, 128);
    EXPECT_EQ(same.free_running, 128);

    r = quantize_cli({test::model_path("arch/qwen2-tiny.gguf"), dir.file("q.gguf"), "--type", "tq2_0"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("no matrix is ternary"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("Use q4_0"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("q.gguf")));
}

// bitnet.cpp's I2_S layout (kernels/quant_i2s.h): value j of a 128-block in
// byte j % 32 at shift 6 - 2 * (j / 32), codes 0/1/2 for -1/0/+1.
TEST(I2sLayout, PacksAsBitnetCppWritesAndReadsBack) {
    std::vector<int8_t> t(256, 0);
    t[0] = 1;     // code 2 in byte 0, bits 7-6
    t[32] = -1;   // code 0 in byte 0, bits 5-4
    t[97] = 1;    // code 2 in byte 1, bits 1-0
    t[128] = -1;  // second block: byte 32, bits 7-6
    std::vector<uint8_t> codes(64);
    kernels::i2s_pack_row(t.data(), 256, codes.data());
    // Zeros are code 1 (01 in every other field).
    EXPECT_EQ(codes[0], 0x80 | 0x00 | 0x04 | 0x01);
    EXPECT_EQ(codes[1], 0x40 | 0x10 | 0x04 | 0x02);
    EXPECT_EQ(codes[2], 0x55);
    EXPECT_EQ(codes[32], 0x00 | 0x10 | 0x04 | 0x01);
    std::vector<float> back(256);
    kernels::i2s_unpack_row(codes.data(), 256, 0.5f, back.data());
    for (int i = 0; i < 256; ++i) EXPECT_EQ(back[i], 0.5f * t[i]) << i;
    std::mt19937 rng(7);
    for (int8_t& x : t) x = static_cast<int8_t>(static_cast<int>(rng() % 3) - 1);
    kernels::i2s_pack_row(t.data(), 256, codes.data());
    kernels::i2s_unpack_row(codes.data(), 256, 1.0f, back.data());
    for (int i = 0; i < 256; ++i) ASSERT_EQ(back[i], t[i]) << i;
}

// bitnet-tiny.gguf written as bitnet.cpp would hold it: every projection I2_S.
// keep_scales: the file's .scale tensors stay and the I2_S scale is 1; else
// they go and their value is the I2_S scale (as a converter folding them in).
std::string write_i2s_bitnet(const std::string& path, bool keep_scales) {
    const std::string original = test::model_path("arch/bitnet-tiny.gguf");
    const MappedFile map(original);
    const GgufFile g = parse_gguf(map.data(), map.size(), original);
    GgufWriter w;
    for (const GgufKV& kv : g.metadata) w.add_value(std::string(kv.key), kv.value);
    auto scale_of = [&](const std::string& weight) {
        const GgufTensor* s = g.find_tensor(weight.substr(0, weight.size() - 7) + ".scale");
        float v = 1;
        if (s) std::memcpy(&v, map.data() + s->offset, sizeof v);
        return v;
    };
    for (const GgufTensor& t : g.tensors) {
        const std::string name(t.name);
        const std::vector<int64_t> ne(t.ne, t.ne + std::max<uint32_t>(t.n_dims, 1));
        if (!keep_scales && name.size() > 6 && name.compare(name.size() - 6, 6, ".scale") == 0) continue;
        if (t.type != TensorType::TQ2_0) {
            const uint64_t row = static_cast<uint64_t>(tensor_bytes(t.type, 1, t.cols()));
            w.add_tensor(name, t.type, ne, [&map, &t, row](int64_t first, int64_t count, uint8_t* out) {
                std::memcpy(out, map.data() + t.offset + first * row, count * row);
            });
            continue;
        }
        const float scale = keep_scales ? 1.0f : scale_of(name);
        w.add_tensor(name, TensorType::I2_S, ne, [&map, &t, scale](int64_t first, int64_t count, uint8_t* out) {
            if (count == 0) {  // the tail: the tensor's scale
                std::memcpy(out, &scale, sizeof scale);
                return;
            }
            const uint64_t row = static_cast<uint64_t>(tensor_bytes(TensorType::TQ2_0, 1, t.cols()));
            std::vector<float> v(static_cast<size_t>(t.cols()));
            std::vector<int8_t> trits(v.size());
            for (int64_t r = 0; r < count; ++r) {
                decode_rows(TensorType::TQ2_0, map.data() + t.offset + (first + r) * row, v.data(), 1, t.cols());
                for (size_t i = 0; i < v.size(); ++i) {
                    ASSERT_TRUE(v[i] == 0 || v[i] == 1 || v[i] == -1) << "bitnet-tiny's blocks are unit ternary";
                    trits[i] = static_cast<int8_t>(v[i]);
                }
                kernels::i2s_pack_row(trits.data(), t.cols(), out + r * t.cols() / 4);
            }
        });
    }
    w.write(path);
    return original;
}

// I2_S -> TQ2_0 is exact: the converted file holds bitnet-tiny's own tensors,
// byte for byte, whether its scales were in .scale tensors or in the I2_S
// tails. Run directly, an I2_S file says how to convert it.
TEST(I2sConversion, BecomesTheTq2FileExactly) {
    test::TempDir dir;
    for (bool keep_scales : {true, false}) {
        const std::string i2s = dir.file(keep_scales ? "a-i2s.gguf" : "b-i2s.gguf");
        const std::string original = write_i2s_bitnet(i2s, keep_scales);
        const std::string out = dir.file(keep_scales ? "a-tq2.gguf" : "b-tq2.gguf");
        auto r = quantize_cli({i2s, out, "--type", "tq2_0"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const MappedFile a(original), b(out);
        const GgufFile ga = parse_gguf(a.data(), a.size(), original), gb = parse_gguf(b.data(), b.size(), out);
        EXPECT_EQ(gb.tensors.size(), ga.tensors.size());
        for (const GgufTensor& t : ga.tensors) {
            const GgufTensor* u = gb.find_tensor(t.name);
            ASSERT_NE(u, nullptr) << t.name;
            ASSERT_EQ(u->type, t.type) << t.name;
            EXPECT_EQ(std::memcmp(a.data() + t.offset, b.data() + u->offset, t.bytes), 0) << t.name;
        }
        // To a type that is not ternary the values are decoded with their scale.
        r = quantize_cli({i2s, dir.file("f32.gguf"), "--type", "f32", "--force"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        if (!keep_scales) {
            const Agreement same = top1_agreement(original, dir.file("f32.gguf"), 64);
            EXPECT_GE(same.agree, 48) << "f32 of the I2_S values is bitnet-tiny up to TQ2_0's activation rounding (measured 58/64)";
        }
        if (keep_scales) {  // a hostile scale: refused in one line, nothing written
            std::string bytes = test::read_file(i2s);
            const GgufFile gi = parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), i2s);
            const GgufTensor* t = gi.find_tensor("blk.1.ffn_up.weight");
            ASSERT_EQ(t->type, TensorType::I2_S);
            const float nan = std::nanf("");
            std::memcpy(&bytes[t->offset + t->bytes - 32], &nan, sizeof nan);
            test::write_file(dir.file("nan.gguf"), bytes);
            const auto bad = quantize_cli({dir.file("nan.gguf"), dir.file("nan-tq2.gguf"), "--type", "tq2_0"});
            EXPECT_EQ(bad.exit_code, 1);
            EXPECT_NE(bad.err.find("blk.1.ffn_up.weight is I2_S with a scale that is not a number"), std::string::npos)
                << bad.err;
            EXPECT_FALSE(std::filesystem::exists(dir.file("nan-tq2.gguf")));
        }
        r = test::run_command({test::ferry_bin(), "run", i2s, "-n", "4"});
        EXPECT_EQ(r.exit_code, 1);
        EXPECT_NE(r.err.find("is bitnet.cpp's I2_S; convert the model once with `ferry quantize"), std::string::npos)
            << r.err;
    }
}

}  // namespace
}  // namespace ferry
