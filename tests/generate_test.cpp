// The generation loop (coordinator/generate.*) on a scripted engine, where
// every call can be checked, and on the real model where batched prefill
// must give exactly the logits of one-token steps.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "common/error.h"
#include "common/model_file.h"
#include "common/tokenizer.h"
#include "coordinator/generation/generate.h"
#include "coordinator/generation/local_engine.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

// Returns one-hot logits for a scripted next token and records every call.
class ScriptedEngine : public Engine {
public:
    ScriptedEngine(int vocab, int context, std::vector<int> script) : script_(std::move(script)), context_(context) {
        config_.vocab_size = vocab;
        config_.seq_len = context;
        logits_.resize(static_cast<size_t>(vocab));
    }
    const ModelConfig& config() const override { return config_; }
    int context() const override { return context_; }
    float* forward(const int* tokens, int n_tokens, int pos) override {
        calls.push_back({std::vector<int>(tokens, tokens + n_tokens), pos});
        std::fill(logits_.begin(), logits_.end(), 0.0f);
        logits_[script_[next_++ % script_.size()]] = 10.0f;
        return logits_.data();
    }
    struct Call {
        std::vector<int> tokens;
        int pos;
    };
    std::vector<Call> calls;

private:
    ModelConfig config_;
    std::vector<int> script_;
    size_t next_ = 0;
    int context_;
    std::vector<float> logits_;
};

const Tokenizer& tok512() {
    static const Tokenizer t = Tokenizer::load_llama2c(test::model_path("tok512.bin"), 512);
    return t;
}

struct Generated {
    GenerateResult result;
    std::string text;
};

Generated run(Engine& engine, const std::string& prompt, int steps) {
    Sampler greedy(engine.config().vocab_size, SamplerParams{0.0f, 0.9f, 1});
    std::FILE* out = std::tmpfile();
    Generated r;
    try {
        r.result = generate(engine, tok512(), greedy, GenerateOptions{prompt, steps}, out);
    } catch (...) {
        std::fclose(out);
        throw;
    }
    std::rewind(out);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, out)) > 0) r.text.append(buf, n);
    std::fclose(out);
    return r;
}

TEST(Generate, PrefillIsOneBatchThenOneTokenPerStep) {
    // tok512: 403 " Once", 407 " upon", 261 " a", 378 " time".
    ScriptedEngine engine(512, 64, {261, 378, 403});
    const Generated r = run(engine, "Once upon", 6);
    // One prefill call for positions 0-2 (BOS and the prompt), then one call per position 3-5.
    ASSERT_EQ(engine.calls.size(), 4u);
    EXPECT_EQ(engine.calls[0].tokens, (std::vector<int>{1, 403, 407}));
    EXPECT_EQ(engine.calls[0].pos, 0);
    for (size_t i = 1; i < engine.calls.size(); ++i) {
        EXPECT_EQ(engine.calls[i].tokens.size(), 1u);
        EXPECT_EQ(engine.calls[i].pos, static_cast<int>(i) + 2);
    }
    // Each step feeds the token sampled from the previous logits.
    EXPECT_EQ(engine.calls[1].tokens[0], 261);
    EXPECT_EQ(engine.calls[2].tokens[0], 378);
    EXPECT_EQ(r.result.ids, (std::vector<int>{1, 403, 407, 261, 378, 403, 261}));
    EXPECT_EQ(r.result.prompt_tokens, 3);
    EXPECT_EQ(r.result.decoded_tokens, 3);
    EXPECT_EQ(r.text, "Once upon a time Once a\n");
}

TEST(Generate, StopsWhenBosIsSampled) {
    ScriptedEngine engine(512, 64, {403, 1, 407});
    const Generated r = run(engine, "", 50);
    EXPECT_EQ(r.result.ids, (std::vector<int>{1, 403, 1}));
    EXPECT_EQ(r.text, "Once\n") << "BOS ends generation and is not printed; the leading space after BOS is not either";
}

TEST(Generate, StepsAreCappedAtTheContext) {
    for (int steps : {0, 17, 1000}) {
        ScriptedEngine engine(512, 17, {261});
        const Generated r = run(engine, "", steps);
        EXPECT_EQ(r.result.ids.size(), 18u) << "steps " << steps;
        EXPECT_EQ(engine.calls.back().pos, 16);
    }
}

TEST(Generate, FewerStepsThanPromptTokensPrintsOnlyThatMuchPrompt) {
    // run.c: positions 0..steps-1 force the prompt's next tokens; nothing is sampled.
    ScriptedEngine engine(512, 64, {261});
    const Generated r = run(engine, "Once upon a time", 2);
    EXPECT_EQ(r.result.ids, (std::vector<int>{1, 403, 407}));
    EXPECT_EQ(r.text, "Once upon\n");
    EXPECT_EQ(r.result.decoded_tokens, 0);
    ASSERT_EQ(engine.calls.size(), 1u);
    EXPECT_EQ(engine.calls[0].tokens, (std::vector<int>{1, 403}));
}

TEST(Generate, PromptLongerThanTheContextIsAClearError) {
    ScriptedEngine engine(512, 8, {261});
    try {
        run(engine, "Once upon a time there was a little girl who liked to play", 8);
        FAIL() << "accepted a prompt longer than the context";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("longer than the context of 8"), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos);
    }
    EXPECT_TRUE(engine.calls.empty()) << "nothing runs before the prompt is checked";
    // Exactly the context is fine.
    ScriptedEngine fits(512, 5, {261});
    EXPECT_EQ(run(fits, "Once upon a time", 0).result.ids, (std::vector<int>{1, 403, 407, 261, 378, 261}));
}

// The prompt is checked before any worker is contacted: nothing listens on
// port 1, so reaching the network would give a connection error instead.
TEST(Generate, APromptTooLongFailsBeforeTheWorkersAreContacted) {
    const std::string model = test::shared_dir() + "/models/stories260K.bin", tok = test::shared_dir() + "/models/tok512.bin";
    const auto r = test::run_command({test::ferry_bin(), "run", model, "-z", tok, "--ctx", "8", "-i",
                                      "Once upon a time there was a little girl who liked to play", "--workers",
                                      "127.0.0.1:1"},
                                     30);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("longer than the context of 8"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("127.0.0.1:1"), std::string::npos) << r.err;
}

// An engine that draws the token where its head is (the pipeline's last
// worker): generate() asks it for tokens, never for logits, and hands it the
// very sampler whose state the draws advance.
class SelfSamplingEngine : public ScriptedEngine {
public:
    using ScriptedEngine::ScriptedEngine;
    float* forward(const int*, int, int) override {
        ADD_FAILURE() << "forward() called: the logits crossed the network";
        return nullptr;
    }
    int forward_sample(const int* tokens, int n_tokens, int pos, Sampler& sampler) override {
        samplers.push_back(&sampler);
        return sampler.sample(ScriptedEngine::forward(tokens, n_tokens, pos));
    }
    std::vector<const Sampler*> samplers;
};

TEST(Generate, AnEngineThatSamplesItselfIsAskedForTokens) {
    SelfSamplingEngine engine(512, 64, {261, 378, 403});
    const Generated r = run(engine, "Once upon", 6);
    EXPECT_EQ(r.result.ids, (std::vector<int>{1, 403, 407, 261, 378, 403, 261}));
    EXPECT_EQ(r.text, "Once upon a time Once a\n");
    ASSERT_EQ(engine.samplers.size(), 4u);
    for (const Sampler* s : engine.samplers) EXPECT_EQ(s, engine.samplers[0]);
    // A prompt longer than the steps samples nothing: the prefill is a plain forward.
    SelfSamplingEngine prompt_only(512, 64, {261});
    EXPECT_NONFATAL_FAILURE(run(prompt_only, "Once upon a time", 2), "forward() called");
}

// Kernels contract: a batch gives bit-for-bit the logits of one-token steps,
// also across the kMaxBatch chunk boundary.
TEST(Generate, BatchedPrefillEqualsOneTokenSteps) {
    const ModelFile file = open_model_file(test::model_path("stories260K.bin"));
    kernels::ThreadPool pool(2);
    LocalEngine batched(file, 128, &pool), stepped(file, 128, &pool);
    std::vector<int> tokens;
    for (int i = 0; i < kMaxBatch + 9; ++i) tokens.push_back(i == 0 ? 1 : 3 + (i * 37) % 500);
    const int n = static_cast<int>(tokens.size());
    const float* logits = batched.forward(tokens.data(), n, 0);
    const std::vector<float> a(logits, logits + 512);
    const float* b = nullptr;
    for (int pos = 0; pos < n; ++pos) b = stepped.forward(&tokens[pos], 1, pos);
    for (int i = 0; i < 512; ++i) ASSERT_EQ(a[i], b[i]) << "logit " << i;
    // And the next step agrees as well, so the KV caches hold the same rows.
    const int next = 42;
    logits = batched.forward(&next, 1, n);
    const std::vector<float> a2(logits, logits + 512);
    const float* b2 = stepped.forward(&next, 1, n);
    for (int i = 0; i < 512; ++i) ASSERT_EQ(a2[i], b2[i]) << "logit " << i;
}

}  // namespace
}  // namespace ferry
