// What generation needs from the model: logits for the next token after a
// batch of tokens. The single-process engine and the pipeline of workers both
// provide it, so the generation loop is the same for both.
#pragma once
#include "common/model_config.h"

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
};

}  // namespace ferry
