// Llama models from GGUF: stories260K.gguf gives byte for byte what run.c
// gives for stories260K.bin (every reference, through `ferry run`), and the
// GGUF-only model features: tied embeddings, Llama 3.1 RoPE frequency
// factors, per-layer KV head arrays, version 2 files, the model's chat template.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/gguf_writer.h"
#include "common/mapped_file.h"
#include "common/model_file.h"
#include "common/tokenizer_loader.h"
#include "common/weights.h"
#include "coordinator/generation/generate.h"
#include "coordinator/generation/local_engine.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

struct Reference {
    const char* name;
    std::vector<std::string> flags;
};

// Every stories260K reference run.c made, with its flags.
const Reference kReferences[] = {
    {"stories260K.greedy", {"-t", "0", "-n", "200", "-i", "Once upon a time"}},
    {"stories260K.greedy.n256", {"-t", "0", "-n", "256", "-i", "Once upon a time"}},
    {"stories260K.greedy.n256.noprompt", {"-t", "0", "-n", "256"}},
    {"stories260K.t1p09.s42.n256", {"-t", "1.0", "-p", "0.9", "-s", "42", "-n", "256"}},
    {"stories260K.t1p09.s133742.n256", {"-t", "1.0", "-p", "0.9", "-s", "133742", "-n", "256"}},
};

class GgufReferences : public ::testing::TestWithParam<Reference> {};

TEST_P(GgufReferences, FerryRunOnTheGgufEqualsRunCOnTheBin) {
    const Reference& ref = GetParam();
    test::TempDir tmp;
    std::vector<std::string> argv = {test::ferry_bin(), "run", test::model_path("stories260K.gguf"), "--ids-out",
                                     tmp.file("ids.txt")};
    argv.insert(argv.end(), ref.flags.begin(), ref.flags.end());
    const auto r = test::run_command(argv);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path(std::string(ref.name) + ".txt")));
    EXPECT_EQ(test::read_file(tmp.file("ids.txt")),
              test::read_file(test::reference_path(std::string(ref.name) + ".ids.txt")));
}

INSTANTIATE_TEST_SUITE_P(Stories260K, GgufReferences, ::testing::ValuesIn(kReferences), [](const auto& info) {
    std::string n = info.param.name;
    for (char& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
    return n;
});

using test::GgufEdit;

std::string text_of(std::FILE* f) {
    std::rewind(f);
    std::string s;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
    std::fclose(f);
    return s;
}

struct Generation {
    std::vector<int> ids;
    std::string text;
};

Generation greedy(const std::string& path, int steps = 256) {
    const ModelFile file = open_model_file(path);
    const Tokenizer tok = load_tokenizer(file, "");
    LocalEngine engine(file, file.config.seq_len, nullptr);
    Sampler sampler(file.config.vocab_size, SamplerParams{0.0f, 0.9f, 1});
    std::FILE* out = std::tmpfile();
    const GenerateResult r = generate(engine, tok, sampler, GenerateOptions{"", steps}, out);
    return {r.ids, text_of(out)};
}

std::string stories() { return test::model_path("stories260K.gguf"); }

TEST(GgufModel, TiedEmbeddingClassifiesWhenOutputWeightIsAbsent) {
    // stories260K.gguf's output.weight is a copy of token_embd.weight.
    test::TempDir dir;
    GgufEdit e;
    e.keep_tensor = [](std::string_view t) { return t != "output.weight"; };
    const std::string tied = test::edited_gguf(stories(), dir.file("tied.gguf"), e);
    const ModelFile f = open_model_file(tied);
    EXPECT_EQ(f.find("output.weight"), nullptr);
    EXPECT_EQ(shard_tensor_names(f.config, ShardSpec{0, 5, false, true}, true).back(), "output_norm.weight");
    const Generation run = greedy(tied);
    EXPECT_EQ(run.text, test::read_file(test::reference_path("stories260K.greedy.n256.noprompt.txt")));
}

TEST(GgufModel, VersionTwoFilesRunTheSame) {
    test::TempDir dir;
    GgufEdit e;
    e.version = 2;
    const std::string v2 = test::edited_gguf(stories(), dir.file("v2.gguf"), e);
    EXPECT_EQ(open_model_file(v2).format, "gguf v2");
    EXPECT_EQ(greedy(v2, 64).ids, greedy(stories(), 64).ids);
}

GgufEdit with_rope_freqs(std::vector<float> factors) {
    GgufEdit e;
    e.add = [factors](GgufWriter& w) {
        w.add_tensor("rope_freqs.weight", TensorType::F32, {static_cast<int64_t>(factors.size())},
                     [factors](int64_t, int64_t, uint8_t* out) {
                         std::memcpy(out, factors.data(), factors.size() * sizeof(float));
                     });
    };
    return e;
}

// Llama 3.1/3.2 store rope_freqs.weight (head_size / 2 divisors of the RoPE
// frequencies). Factors of 1 change nothing; others change the rotation.
TEST(GgufModel, RopeFrequencyFactorsAreBoundAndApplied) {
    test::TempDir dir;
    const std::string ones = test::edited_gguf(stories(), dir.file("ones.gguf"), with_rope_freqs({1, 1, 1, 1}));
    const ModelFile f = open_model_file(ones);
    ASSERT_TRUE(f.config.rope_freq_factors);
    const Weights w = bind_weights(f.config, ShardSpec{0, 5, true, true}, f.tensors, f.map.data(), f.path);
    ASSERT_NE(w.rope_freqs, nullptr);
    EXPECT_EQ(w.rope_freqs_count, 4);
    // A pipeline stage with layers needs the factors; one without does not.
    const auto stage = shard_tensor_names(f.config, ShardSpec{1, 3, false, false}, false);
    EXPECT_NE(std::find(stage.begin(), stage.end(), "rope_freqs.weight"), stage.end());
    const auto head_only = shard_tensor_names(f.config, ShardSpec{5, 5, false, true}, false);
    EXPECT_EQ(std::find(head_only.begin(), head_only.end(), "rope_freqs.weight"), head_only.end());

    const Generation plain = greedy(stories(), 128);
    EXPECT_EQ(greedy(ones, 128).ids, plain.ids) << "dividing by 1 is exact";
    // Slowing the two slowest pairs of each head (as Llama 3.1 does for long
    // wavelengths) changes the numbers; the model still runs.
    const std::string scaled = test::edited_gguf(stories(), dir.file("scaled.gguf"), with_rope_freqs({1, 1, 8, 8}));
    const Generation s = greedy(scaled, 128);
    EXPECT_NE(s.ids, plain.ids);
    EXPECT_EQ(s.ids.size(), plain.ids.size());

    // Wrong length or type: a clear error naming the tensor.
    const std::string wrong = test::edited_gguf(stories(), dir.file("wrong.gguf"), with_rope_freqs({1, 1, 1}));
    const ModelFile wf = open_model_file(wrong);
    try {
        bind_weights(wf.config, ShardSpec{0, 5, true, true}, wf.tensors, wf.map.data(), wf.path);
        FAIL() << "bound a rope_freqs.weight of 3 values";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("rope_freqs.weight is 1x3, the config needs 1x4"), std::string::npos)
            << e.what();
    }
}

TEST(GgufModel, PerLayerKvHeadArrays) {
    test::TempDir dir;
    auto with_kv_array = [&](std::vector<int32_t> heads, const std::string& name) {
        GgufEdit e;
        e.keep_key = [](std::string_view k) { return k != "llama.attention.head_count_kv"; };
        e.add = [heads](GgufWriter& w) { w.add_i32_array("llama.attention.head_count_kv", heads); };
        return test::edited_gguf(stories(), dir.file(name), e);
    };
    EXPECT_EQ(open_model_file(with_kv_array({4, 4, 4, 4, 4}, "same.gguf")).config.n_kv_heads, 4);
    try {
        open_model_file(with_kv_array({4, 4, 8, 4, 4}, "differ.gguf"));
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("differs per layer"), std::string::npos) << e.what();
    }
}

TEST(GgufModel, ReadsTheChatTemplateAndTheTokenizerFromTheFile) {
    test::TempDir dir;
    GgufEdit e;
    e.add = [](GgufWriter& w) { w.add_string("tokenizer.chat_template", "{{ '<|im_start|>' + m }}"); };
    const ModelFile f = open_model_file(test::edited_gguf(stories(), dir.file("chat.gguf"), e));
    EXPECT_EQ(f.chat_template, "{{ '<|im_start|>' + m }}");
    EXPECT_TRUE(open_model_file(stories()).chat_template.empty());
    const Tokenizer tok = load_tokenizer(f, "");
    EXPECT_EQ(tok.kind(), TokenizerKind::spm);
    EXPECT_EQ(tok.vocab_size(), 512);
    EXPECT_EQ(tok.bos_id(), 1);
    EXPECT_EQ(tok.eos_id(), 2);
}

// `ferry synth --format gguf --type T`: a random model of a preset's shape,
// self-contained (its vocabulary inside), in the asked type where rows fit.
TEST(SynthGguf, WritesARunnableModelOfAPresetInAType) {
    test::TempDir dir;
    const std::string out = dir.file("s-q4_0.gguf");
    auto synth = [&](const std::string& path, std::vector<std::string> extra) {
        std::vector<std::string> argv = {test::ferry_bin(), "synth",    path,  "--preset",
                                         "stories260k",     "--format", "gguf"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        return test::run_command(argv);
    };
    auto r = synth(out, {"--type", "q4_0", "--seed", "5"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("100%"), std::string::npos) << "a progress bar: " << r.err;
    EXPECT_NE(r.err.find("ffn_down.weight: rows of 172 values are not whole q4_0 blocks of 32; kept as f32"),
              std::string::npos)
        << r.err;
    const ModelFile f = open_model_file(out);
    EXPECT_EQ(f.config.dim, 64);
    EXPECT_EQ(f.config.n_kv_heads, 4);
    EXPECT_EQ(f.config.seq_len, 512);
    EXPECT_EQ(f.find("blk.2.attn_q.weight")->type, TensorType::Q4_0);
    EXPECT_EQ(f.find("blk.2.ffn_down.weight")->type, TensorType::F32);
    EXPECT_EQ(f.gguf->get_int("general.file_type", 0, 100), 2);
    const auto run = test::run_command({test::ferry_bin(), "run", out, "-n", "24", "-s", "3"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_NE(run.err.find("decode:"), std::string::npos);
    // The seed decides the numbers: the same seed, the same file.
    r = synth(dir.file("again.gguf"), {"--type", "q4_0", "--seed", "5", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(test::read_file(dir.file("again.gguf")), test::read_file(out));
    EXPECT_EQ(r.err.find("%"), std::string::npos) << "-q: no progress bar";
    // Wrong combinations are refused naming the option.
    r = test::run_command({test::ferry_bin(), "synth", dir.file("x.bin"), "--preset", "stories260k", "--type", "q4_0"});
    EXPECT_NE(r.err.find("--type q4_0: only GGUF has storage types; add --format gguf"), std::string::npos) << r.err;
    r = synth(dir.file("y.gguf"), {"--type", "q9_9"});
    EXPECT_NE(r.err.find("--type q9_9: unknown"), std::string::npos) << r.err;
    const auto help = test::run_command({test::ferry_bin(), "synth", "--help"});
    for (const char* s : {"--format", "gguf", "--type", "q4_K", "tq2_0", "--threads", "tinyllama-1.1b"})
        EXPECT_NE(help.out.find(s), std::string::npos) << s;
}

}  // namespace
}  // namespace ferry
