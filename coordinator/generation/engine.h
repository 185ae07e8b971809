// What generation needs from the model: logits for the next token after a
// batch of tokens, or the next token itself. The single-process engine and
// the pipeline of workers both provide it, so the generation loop is the
// same for both.
#pragma once
#include "common/model_config.h"
#include "common/sampler.h"

namespace ferry {

class Engine {
public:
    virtual ~Engine() = default;
    virtual const ModelConfig& config() const = 0;
    // The context this engine's KV cache holds (<= config().seq_len).
    virtual int context() const = 0;
    // Runs tokens[0..n) at positions pos..pos+n-1 and returns the logits of the
    // last one (vocab_size floats, valid until the next call; the caller may modify them).
    virtual float* forward(const int* tokens, int n_tokens, int pos) = 0;
    // Runs the tokens as forward() does and draws the next token from the last
    // position's logits with `sampler`, advancing its state exactly as
    // sampler.sample() would. An engine whose head is elsewhere draws there
    // (the pipeline's last worker, from the sampler's state), so only a token
    // id comes back instead of the logits.
    virtual int forward_sample(const int* tokens, int n_tokens, int pos, Sampler& sampler) {
        return sampler.sample(forward(tokens, n_tokens, pos));
    }
};

}  // namespace ferry
