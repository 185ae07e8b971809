// The qwen2, qwen3 and bitnet architectures against what llama.cpp computes
// on the small random-weight models in ../shared/models/arch (its README):
// the logits of 24 positions within a small fraction of their spread, and
// llama.cpp's 64-token greedy continuation, in one process and across two
// workers split inside the model.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/gguf_writer.h"
#include "common/model_file.h"
#include "common/weights.h"
#include "coordinator/generation/local_engine.h"
#include "coordinator/pipeline/pipeline_engine.h"
#include "kernels/thread_pool.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

std::vector<int> ids_in(const std::string& path) {
    std::ifstream in(path);
    std::vector<int> ids;
    for (int id; in >> id;) ids.push_back(id);
    return ids;
}

std::vector<float> oracle_logits(const std::string& name) {
    const std::string bytes = test::read_file(test::model_path("arch/" + name + ".logits.f32"));
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
}

int argmax(const float* x, int n) { return static_cast<int>(std::max_element(x, x + n) - x); }

struct Agreement {
    double max_diff = 0, spread = 0;  // largest |ours - llama.cpp| over all positions; std of llama.cpp's logits
    double first_diff = 0;            // the same at position 0, where attention is one value (no softmax, no RoPE)
    int greedy_same = 0;              // leading tokens of the greedy continuation that agree
    std::vector<float> logits;        // ours, every position, for comparing engines bit for bit
};

// Feeds the 24 ids one position at a time (batch-invariant kernels: the same
// bits as one batch), then decodes greedily.
Agreement compare(Engine& engine, const std::string& name) {
    const std::vector<int> ids = ids_in(test::model_path("arch/ids.txt"));
    const std::vector<float> want = oracle_logits(name);
    const int vocab = engine.config().vocab_size;
    EXPECT_EQ(want.size(), ids.size() * static_cast<size_t>(vocab));
    Agreement a;
    double sum = 0, sq = 0;
    for (float x : want) sum += x, sq += static_cast<double>(x) * x;
    a.spread = std::sqrt(sq / want.size() - (sum / want.size()) * (sum / want.size()));
    const float* logits = nullptr;
    for (size_t p = 0; p < ids.size(); ++p) {
        logits = engine.forward(&ids[p], 1, static_cast<int>(p));
        a.logits.insert(a.logits.end(), logits, logits + vocab);
        for (int i = 0; i < vocab; ++i) {
            const double d = std::fabs(static_cast<double>(logits[i]) - want[p * vocab + i]);
            a.max_diff = std::max(a.max_diff, d);
            if (p == 0) a.first_diff = std::max(a.first_diff, d);
        }
    }
    const std::vector<int> greedy = ids_in(test::model_path("arch/" + name + ".greedy.ids.txt"));
    int token = argmax(logits, vocab);
    for (size_t i = 0; i < greedy.size() && token == greedy[i]; ++i) {
        ++a.greedy_same;
        logits = engine.forward(&token, 1, static_cast<int>(ids.size() + i));
        token = argmax(logits, vocab);
    }
    return a;
}

Agreement one_process(const std::string& name) {
    const ModelFile file = open_model_file(test::model_path("arch/" + name + "-tiny.gguf"));
    LocalEngine engine(file, 128, nullptr, KvType::f16);  // llama.cpp's default KV cache, as the oracles were made
    return compare(engine, name + "-tiny");
}

Agreement two_workers(const std::string& name) {
    PipelineOptions o;
    o.split = {1, 3};
    o.embedding_on_worker = true;
    o.head_on_worker = true;
    o.kv_type = KvType::f16;
    test::TwoWorkerSession s(o, "arch/" + name + "-tiny.gguf");
    return compare(*s.engine, name + "-tiny");
}

class ArchOracle : public ::testing::TestWithParam<const char*> {};

// The README: close but not bit for bit (summation order, llama.cpp's f16
// KV cache and f16 flash attention), greedy agreeing over most or all of 64
// tokens. Measured: qwen2 64, qwen3 60 (they part where the top two logits
// are within the difference).
TEST_P(ArchOracle, OneProcessAndTwoWorkersMatchLlamaCpp) {
    const std::string name = GetParam();
    const Agreement a = one_process(name);
    std::printf("[ arch ] %s: largest logit difference %.2e (%.2e of the spread %.3f); greedy %d of 64\n",
                name.c_str(), a.max_diff, a.max_diff / a.spread, a.spread, a.greedy_same);
    EXPECT_LT(a.max_diff, 0.01 * a.spread);
    EXPECT_GE(a.greedy_same, 56);
    const Agreement b = two_workers(name);
    EXPECT_EQ(b.logits, a.logits) << "two workers split inside the model must give one process's bits";
    EXPECT_EQ(b.greedy_same, a.greedy_same);
}

INSTANTIATE_TEST_SUITE_P(Models, ArchOracle, ::testing::Values("qwen2", "qwen3"));

// bitnet-tiny is far more sensitive than the others: its sub-norms rescale
// small attention outputs, so the f16 rounding inside llama.cpp's CPU flash
// attention (queries converted to f16, values accumulated in f16) moves its
// logits by up to 15% of their spread by position 24 and the greedy texts
// part after a few tokens. Where attention is one value (position 0: no
// softmax, no rotation) every other part (ternary projections with their
// scales, both sub-norms, the tied classifier) matches to float rounding.
// With llama.cpp's f16 attention emulated (an experiment, not kept) the
// difference halves and the greedy continuation agrees 64 of 64.
TEST(ArchOracle, BitnetMatchesLlamaCppUpToItsF16Attention) {
    const Agreement a = one_process("bitnet");
    std::printf("[ arch ] bitnet: position 0 difference %.2e (%.2e of the spread %.3f); all positions %.2e (%.2e); "
                "greedy %d of 64\n",
                a.first_diff, a.first_diff / a.spread, a.spread, a.max_diff, a.max_diff / a.spread, a.greedy_same);
    EXPECT_LT(a.first_diff, 0.002 * a.spread);
    EXPECT_LT(a.max_diff, 0.2 * a.spread);
    EXPECT_GE(a.greedy_same, 3);
    const Agreement b = two_workers("bitnet");
    EXPECT_EQ(b.logits, a.logits) << "two workers split inside the model must give one process's bits";
}

// Files of these architectures with a part missing or a shape that cannot
// be: one line naming the problem, never a run.
TEST(ArchOracle, BrokenFilesAreRefusedInOneLine) {
    test::TempDir tmp;
    struct Case {
        const char* model;
        test::GgufEdit edit;
        const char* expect;
    };
    std::vector<Case> cases;
    {
        test::GgufEdit e;
        e.keep_tensor = [](std::string_view t) { return t != "blk.2.attn_k.bias"; };
        cases.push_back({"qwen2", e, "tensor blk.2.attn_k.bias is missing"});
    }
    {
        test::GgufEdit e;
        e.keep_tensor = [](std::string_view t) { return t != "blk.1.attn_q_norm.weight"; };
        cases.push_back({"qwen3", e, "tensor blk.1.attn_q_norm.weight is missing"});
    }
    {
        test::GgufEdit e;
        e.add = [](GgufWriter& w) { w.add_u32("qwen3.attention.value_length", 32); };
        cases.push_back({"qwen3", e, "qwen3.attention.key_length 64 differs from qwen3.attention.value_length 32"});
    }
    {
        test::GgufEdit e;
        e.add = [](GgufWriter& w) { w.add_u32("qwen2.attention.key_length", 48); };
        cases.push_back({"qwen2", e, "supports that for qwen3 only"});
    }
    {
        test::GgufEdit e;
        e.keep_tensor = [](std::string_view t) { return t != "blk.1.ffn_sub_norm.weight"; };
        cases.push_back({"bitnet", e, "tensor blk.1.ffn_sub_norm.weight is missing"});
    }
    {
        test::GgufEdit e;
        e.keep_tensor = [](std::string_view t) { return t != "blk.2.ffn_up.scale"; };
        cases.push_back({"bitnet", e, "tensor blk.2.ffn_up.scale is missing"});
    }
    for (size_t i = 0; i < cases.size(); ++i) {
        const std::string path = test::edited_gguf(test::model_path(std::string("arch/") + cases[i].model + "-tiny.gguf"),
                                                   tmp.file("m" + std::to_string(i) + ".gguf"), cases[i].edit);
        try {
            const ModelFile f = open_model_file(path);
            bind_weights(f.config, ShardSpec{0, f.config.n_layers, true, true}, f.tensors, f.map.data(), f.path);
            ADD_FAILURE() << "case " << i << " was accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(cases[i].expect), std::string::npos) << e.what();
            EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
        }
    }
}

}  // namespace
}  // namespace ferry
