#include "common/sampler.h"

#include <algorithm>

#include "kernels/kernels.h"

namespace ferry {

int argmax(const float* x, int n) {
    int best = 0;
    for (int i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

Sampler::Sampler(int vocab_size, SamplerParams params)
    : vocab_size_(vocab_size), params_(params), rng_state_(params.seed), candidates_(vocab_size) {}

uint32_t Sampler::random_u32() {
    rng_state_ ^= rng_state_ >> 12;
    rng_state_ ^= rng_state_ << 25;
    rng_state_ ^= rng_state_ >> 27;
    return static_cast<uint32_t>((rng_state_ * 0x2545F4914F6CDD1Dull) >> 32);
}

float Sampler::random_f32() { return (random_u32() >> 8) / 16777216.0f; }

int Sampler::sample(float* logits) {
    if (params_.temperature == 0.0f) return argmax(logits, vocab_size_);
    for (int i = 0; i < vocab_size_; ++i) logits[i] /= params_.temperature;
    kernels::softmax(logits, vocab_size_);
    const float coin = random_f32();
    if (params_.topp <= 0.0f || params_.topp >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < vocab_size_; ++i) {
            cdf += logits[i];
            if (coin < cdf) return i;
        }
        return vocab_size_ - 1;  // rounding errors
    }
    return sample_topp(logits, coin);
}

int Sampler::sample_topp(const float* probs, float coin) {
    // Tokens below this cannot be in the nucleus; dropping them first keeps the sort short.
    const float cutoff = (1.0f - params_.topp) / (vocab_size_ - 1);
    int n0 = 0;
    for (int i = 0; i < vocab_size_; ++i)
        if (probs[i] >= cutoff) candidates_[n0++] = {probs[i], i};
    // With topp below 1/vocab the cutoff can drop every token (run.c then reads
    // index -1); the nucleus is then drawn from all tokens, as the definition says.
    if (n0 == 0)
        for (int i = 0; i < vocab_size_; ++i) candidates_[n0++] = {probs[i], i};
    // glibc's qsort is a stable merge sort for arrays this size; match it.
    std::stable_sort(candidates_.begin(), candidates_.begin() + n0,
                     [](const ProbIndex& a, const ProbIndex& b) { return a.prob > b.prob; });
    float cumulative = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; ++i) {
        cumulative += candidates_[i].prob;
        if (cumulative > params_.topp) {
            last = i;
            break;
        }
    }
    const float r = coin * cumulative;
    float cdf = 0.0f;
    for (int i = 0; i <= last; ++i) {
        cdf += candidates_[i].prob;
        if (r < cdf) return candidates_[i].index;
    }
    return candidates_[last].index;
}

}  // namespace ferry
