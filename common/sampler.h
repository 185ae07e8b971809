// Next-token choice exactly as llama2.c's run.c makes it, so a seed gives the
// same tokens: greedy at temperature 0, else softmax(logits / T) and either
// multinomial or top-p (nucleus) sampling, driven by run.c's xorshift RNG.
#pragma once
#include <cstdint>
#include <vector>

namespace ferry {

struct SamplerParams {
    float temperature = 1.0f;
    float topp = 0.9f;
    uint64_t seed = 0;  // run.c: 0 means "the current time"
};

class Sampler {
public:
    Sampler(int vocab_size, SamplerParams params);
    // Modifies logits in place (scaling and softmax), as run.c does.
    int sample(float* logits);
    // Temperature and top-p as given (the seed is only the RNG's start).
    const SamplerParams& params() const { return params_; }
    int vocab_size() const { return vocab_size_; }
    uint64_t rng_state() const { return rng_state_; }
    void set_rng_state(uint64_t s) { rng_state_ = s; }

private:
    uint32_t random_u32();
    float random_f32();
    int sample_topp(const float* probs, float coin);

    int vocab_size_;
    SamplerParams params_;
    uint64_t rng_state_;
    struct ProbIndex {
        float prob;
        int index;
    };
    std::vector<ProbIndex> candidates_;
};

int argmax(const float* x, int n);

}  // namespace ferry
