// Numerically hostile model files, made from stories260K.gguf: NaN/Inf in a
// norm (refused at load, by run and plan alike) or in a big matrix (caught
// after the layer whose output it spoils, or in the logits, locally and on a
// worker), a RoPE base that is not a finite positive number, tensors of
// layers past block_count, a vocabulary of another size than the model's,
// an unknown-token id past the vocabulary (a warning; the run goes on) and a
// tokenizer that has no token for a byte. Each is one line naming the file
// and what is wrong, and an exit status of 1: never a crash, never silent
// garbage.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/mapped_file.h"
#include "common/tokenizer.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::string stories() { return test::model_path("stories260K.gguf"); }

// stories260K.gguf with value `index` of an f32 tensor replaced.
test::GgufEdit with_value(const std::string& tensor, size_t index, float value) {
    test::GgufEdit e;
    e.change_tensor = [=](std::string_view name, std::vector<uint8_t>& bytes) {
        if (name == tensor) std::memcpy(bytes.data() + index * sizeof(float), &value, sizeof value);
    };
    return e;
}

test::CommandResult ferry(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {test::ferry_bin()};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_command(argv);
}

test::CommandResult greedy_run(const std::string& model, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"run", model, "-t", "0", "-n", "200", "-i", "Once upon a time"};
    args.insert(args.end(), extra.begin(), extra.end());
    return ferry(args);
}

// A refusal: exit status 1 and one line, "ferry: error: <file>: ...", saying `says`.
void expect_refusal(const test::CommandResult& r, const std::string& file, const std::string& says) {
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.err.rfind("ferry: error: " + file + ": ", 0), 0u) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << "missing '" << says << "' in: " << r.err;
}

TEST(HostileModel, NaNOrInfInANormIsRefusedAtLoadByRunAndPlan) {
    test::TempDir dir;
    const struct {
        const char* tensor;
        float value;
        const char* says;
    } cases[] = {
        {"blk.1.attn_norm.weight", kNaN, "tensor blk.1.attn_norm.weight holds nan (value 3 of 64)"},
        {"output_norm.weight", -kInf, "tensor output_norm.weight holds -inf (value 3 of 64)"},
    };
    for (const auto& c : cases) {
        const std::string path = test::edited_gguf(stories(), dir.file("norm.gguf"), with_value(c.tensor, 3, c.value));
        const auto run = greedy_run(path);
        expect_refusal(run, path, c.says);
        EXPECT_EQ(run.out, "");
        EXPECT_EQ(ferry({"plan", path, "--pool", "2x100M"}).err, run.err);
    }
}

TEST(HostileModel, NaNOrInfInAMatrixStopsTheRunAtTheLayerOrTheLogits) {
    test::TempDir dir;
    // Row 5 of ffn_down spoils value 5 of the residual stream at layer 2, at the first position.
    const std::string layer = test::edited_gguf(stories(), dir.file("layer.gguf"),
                                                with_value("blk.2.ffn_down.weight", 5 * 172 + 9, kNaN));
    expect_refusal(greedy_run(layer), layer,
                   "non-finite activations after layer 2 at position 0: does the model file hold NaN/Inf weights?");
    // The classifier: the logits of the prompt's last position (4) are the first computed.
    const std::string logits =
        test::edited_gguf(stories(), dir.file("logits.gguf"), with_value("output.weight", 7 * 64 + 3, kInf));
    expect_refusal(greedy_run(logits), logits, "non-finite logits at position 4");
}

TEST(HostileModel, NaNInAMatrixStopsAPipelineNamingTheWorker) {
    test::TempDir dir;
    test::WorkerProcess a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    test::WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    const std::string workers = test::addresses({&a, &b});
    const std::string layer = test::edited_gguf(stories(), dir.file("layer.gguf"),
                                                with_value("blk.3.ffn_down.weight", 5 * 172 + 9, kNaN));
    auto r = greedy_run(layer, {"--workers", workers, "--split", "2,3"});
    EXPECT_EQ(r.exit_code, 3);  // a worker reported the failure
    EXPECT_NE(r.err.find("(stage 2 of 2, layers 2-4"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("non-finite activations after layer 3 at position 0"), std::string::npos) << r.err;
    // The head on the last worker.
    const std::string logits =
        test::edited_gguf(stories(), dir.file("logits.gguf"), with_value("output.weight", 7 * 64 + 3, kInf));
    r = greedy_run(logits, {"--workers", workers, "--split", "2,3", "--head-on-worker"});
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_NE(r.err.find("non-finite logits at position 4"), std::string::npos) << r.err;
}

TEST(HostileModel, ARopeBaseThatIsNotAFinitePositiveNumberIsRefused) {
    test::TempDir dir;
    for (float base : {kInf, kNaN, 0.0f, -10000.0f}) {
        test::GgufEdit e;
        e.add = [base](GgufWriter& w) { w.add_f32("llama.rope.freq_base", base); };
        const std::string path = test::edited_gguf(stories(), dir.file("rope.gguf"), e);
        expect_refusal(greedy_run(path), path,
                       "not a usable llama model: rope_theta (GGUF rope.freq_base) " + std::to_string(base) +
                           " is not a finite positive number");
    }
}

TEST(HostileModel, LayersPastBlockCountAreRefused) {
    // The file holds blocks 0-4; a count of 4 would leave block 4 out silently.
    test::TempDir dir;
    test::GgufEdit e;
    e.add = [](GgufWriter& w) { w.set_u32("llama.block_count", 4); };
    const std::string path = test::edited_gguf(stories(), dir.file("blocks.gguf"), e);
    expect_refusal(greedy_run(path), path, "belongs to layer 4 but llama.block_count is 4; the count is wrong");
    expect_refusal(ferry({"plan", path, "--pool", "2x100M"}), path, "llama.block_count is 4");
}

TEST(HostileModel, AVocabularyOfAnotherSizeThanTheModelsIsRefused) {
    test::TempDir dir;
    std::vector<std::string> first_500;
    {
        const MappedFile map(stories());
        const GgufFile g = parse_gguf(map.data(), map.size(), stories());
        for (const GgufValue& t : g.find("tokenizer.ggml.tokens")->elements())
            if (first_500.size() < 500) first_500.emplace_back(t.str);
    }
    test::GgufEdit shorter;
    shorter.add = [&](GgufWriter& w) { w.add_string_array("tokenizer.ggml.tokens", first_500); };
    const std::string path = test::edited_gguf(stories(), dir.file("vocab.gguf"), shorter);
    expect_refusal(greedy_run(path), path,
                   "the vocabulary's size differs: tokenizer.ggml.tokens 500, token_embd.weight rows 512; ");
    // The key and the embedding table disagreeing, too.
    test::GgufEdit key;
    key.add = [](GgufWriter& w) { w.add_u32("llama.vocab_size", 600); };
    const std::string keyed = test::edited_gguf(stories(), dir.file("key.gguf"), key);
    expect_refusal(greedy_run(keyed), keyed,
                   "the vocabulary's size differs: llama.vocab_size 600, tokenizer.ggml.tokens 512, "
                   "token_embd.weight rows 512; ");
}

TEST(HostileModel, AnUnknownTokenIdPastTheVocabularyIsNamedInAWarning) {
    test::TempDir dir;
    test::GgufEdit e;
    e.add = [](GgufWriter& w) { w.set_u32("tokenizer.ggml.unknown_token_id", 9999); };
    const std::string path = test::edited_gguf(stories(), dir.file("unk.gguf"), e);
    const auto r = greedy_run(path);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.greedy.txt")));
    const std::string warning = path + ": metadata tokenizer.ggml.unknown_token_id = 9999 is outside the vocabulary "
                                       "of 512 tokens; ferry runs without that token";
    EXPECT_NE(r.err.find(warning), std::string::npos) << r.err;
    // The "none" markers converters write are not warned about.
    EXPECT_EQ(r.err.find("seperator_token_id"), std::string::npos) << r.err;
}

TEST(HostileModel, ABytePieceMissingWithNoUnknownTokenIsAnErrorNotIdMinusOne) {
    Vocabulary v;
    v.kind = TokenizerKind::spm;
    v.pieces = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a"};
    v.bos = 1;
    v.eos = 2;
    v.unk = -1;  // as a file whose unknown_token_id is past its vocabulary leaves it
    v.add_bos = true;
    const Tokenizer tok(v);
    EXPECT_EQ(tok.encode("a", true, false), (std::vector<int>{1, 3, 4}));
    try {
        const std::vector<int> ids = tok.encode("ab", true, false);
        ADD_FAILURE() << "encoded to " << ::testing::PrintToString(ids);
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("the text needs byte <0x62>, and this vocabulary has neither"),
                  std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace ferry
