// The sampler against a naive transcription of run.c: its xorshift stream,
// greedy argmax, temperature, multinomial and top-p choices.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/sampler.h"

namespace ferry {
namespace {

// run.c's random_u32 / random_f32, written out again.
uint32_t naive_u32(uint64_t* state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return static_cast<uint32_t>((*state * 0x2545F4914F6CDD1Dull) >> 32);
}
float naive_f32(uint64_t* state) { return (naive_u32(state) >> 8) / 16777216.0f; }

std::vector<float> naive_softmax(std::vector<float> x, float temperature) {
    for (float& v : x) v /= temperature;
    const float mx = *std::max_element(x.begin(), x.end());
    float sum = 0;
    for (float& v : x) {
        v = std::exp(v - mx);
        sum += v;
    }
    for (float& v : x) v /= sum;
    return x;
}

int naive_multinomial(const std::vector<float>& p, float coin) {
    float cdf = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        cdf += p[i];
        if (coin < cdf) return static_cast<int>(i);
    }
    return static_cast<int>(p.size()) - 1;
}

// Top-p from its definition: every token sorted by probability (ties keep id
// order), the shortest prefix whose mass exceeds topp, a draw inside it.
int naive_topp(const std::vector<float>& p, float topp, float coin) {
    std::vector<int> order(p.size());
    for (size_t i = 0; i < p.size(); ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    float cumulative = 0;
    size_t last = order.size() - 1;
    for (size_t i = 0; i < order.size(); ++i) {
        cumulative += p[order[i]];
        if (cumulative > topp) {
            last = i;
            break;
        }
    }
    const float r = coin * cumulative;
    float cdf = 0;
    for (size_t i = 0; i <= last; ++i) {
        cdf += p[order[i]];
        if (r < cdf) return order[i];
    }
    return order[last];
}

std::vector<float> random_logits(std::mt19937& rng, int n, float spread) {
    std::normal_distribution<float> g(0.0f, spread);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = g(rng);
    return x;
}

TEST(Sampler, XorshiftStreamIsRunCs) {
    for (uint64_t seed : {1ull, 42ull, 133742ull, 0xdeadbeefcafeull}) {
        Sampler s(4, SamplerParams{1.0f, 0.0f, seed});
        uint64_t naive = seed;
        EXPECT_EQ(s.rng_state(), naive);
        std::vector<float> logits(4);
        for (int i = 0; i < 100; ++i) {
            logits = {0.1f, 0.2f, 0.3f, 0.4f};
            const float coin = naive_f32(&naive);
            const int got = s.sample(logits.data());
            ASSERT_EQ(s.rng_state(), naive) << "seed " << seed << " draw " << i;
            EXPECT_EQ(got, naive_multinomial(naive_softmax({0.1f, 0.2f, 0.3f, 0.4f}, 1.0f), coin));
        }
    }
    // The stream is not trivially constant.
    uint64_t a = 42;
    EXPECT_NE(naive_u32(&a), naive_u32(&a));
}

TEST(Sampler, GreedyIsArgmaxAndDrawsNothing) {
    std::mt19937 rng(3);
    Sampler s(1000, SamplerParams{0.0f, 0.9f, 77});
    for (int trial = 0; trial < 50; ++trial) {
        std::vector<float> x = random_logits(rng, 1000, 3.0f);
        const int expect = static_cast<int>(std::max_element(x.begin(), x.end()) - x.begin());
        EXPECT_EQ(s.sample(x.data()), expect);
    }
    EXPECT_EQ(s.rng_state(), 77u) << "greedy must not consume random numbers";
    // Ties go to the first index, as run.c's strict > comparison does.
    std::vector<float> tie = {1.0f, 5.0f, 2.0f, 5.0f};
    EXPECT_EQ(argmax(tie.data(), 4), 1);
    EXPECT_EQ(Sampler(4, SamplerParams{0.0f, 0.9f, 1}).sample(tie.data()), 1);
}

TEST(Sampler, TemperatureScalesLogitsBeforeSoftmax) {
    std::mt19937 rng(5);
    for (float t : {0.25f, 0.7f, 1.0f, 1.8f}) {
        const std::vector<float> x = random_logits(rng, 333, 2.0f);
        std::vector<float> work = x;
        Sampler s(333, SamplerParams{t, 0.0f, 9});
        s.sample(work.data());  // leaves softmax(x / t) in place, as run.c does
        const std::vector<float> p = naive_softmax(x, t);
        for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(work[i], p[i], 1e-6f + 1e-5f * p[i]) << "T " << t;
    }
    // Lower temperature, sharper distribution.
    const std::vector<float> x = random_logits(rng, 100, 1.0f);
    const auto sharp = naive_softmax(x, 0.2f), flat = naive_softmax(x, 2.0f);
    EXPECT_GT(*std::max_element(sharp.begin(), sharp.end()), *std::max_element(flat.begin(), flat.end()));
}

TEST(Sampler, MultinomialMatchesNaive) {
    std::mt19937 rng(11);
    for (float topp : {0.0f, 1.0f}) {  // both turn top-p off in run.c
        Sampler s(500, SamplerParams{1.0f, topp, 1234});
        uint64_t naive = 1234;
        for (int trial = 0; trial < 300; ++trial) {
            std::vector<float> x = random_logits(rng, 500, 2.0f);
            const int got = s.sample(x.data());  // x now holds the probabilities the sampler used
            EXPECT_EQ(got, naive_multinomial(x, naive_f32(&naive))) << "trial " << trial;
        }
    }
}

TEST(Sampler, MultinomialFollowsTheDistribution) {
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    Sampler s(4, SamplerParams{1.0f, 0.0f, 2024});
    std::vector<int> counts(4);
    const int n = 40000;
    for (int i = 0; i < n; ++i) {
        std::vector<float> x = logits;
        ++counts[s.sample(x.data())];
    }
    const float expect[] = {0.5f, 0.3f, 0.15f, 0.05f};
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / static_cast<double>(n), expect[i], 0.01) << i;
}

TEST(Sampler, TopPMatchesNaive) {
    std::mt19937 rng(17);
    for (float topp : {0.1f, 0.5f, 0.9f, 0.99f}) {
        for (int vocab : {2, 7, 512, 32000}) {
            Sampler s(vocab, SamplerParams{0.8f, topp, 99});
            uint64_t naive = 99;
            const int trials = vocab > 1000 ? 20 : 200;
            for (int trial = 0; trial < trials; ++trial) {
                std::vector<float> x = random_logits(rng, vocab, trial % 2 ? 4.0f : 0.5f);
                const int got = s.sample(x.data());
                EXPECT_EQ(got, naive_topp(x, topp, naive_f32(&naive)))
                    << "topp " << topp << " vocab " << vocab << " trial " << trial;
            }
        }
    }
}

TEST(Sampler, TopPNeverLeavesTheNucleus) {
    // Probabilities 0.6, 0.25, 0.1, 0.05: with topp 0.8 only the first two can be drawn.
    const std::vector<float> logits = {std::log(0.6f), std::log(0.25f), std::log(0.1f), std::log(0.05f)};
    Sampler s(4, SamplerParams{1.0f, 0.8f, 5});
    std::vector<int> counts(4);
    for (int i = 0; i < 5000; ++i) {
        std::vector<float> x = logits;
        ++counts[s.sample(x.data())];
    }
    EXPECT_EQ(counts[2] + counts[3], 0);
    EXPECT_NEAR(counts[0] / 5000.0, 0.6 / 0.85, 0.03);
}

}  // namespace
}  // namespace ferry
