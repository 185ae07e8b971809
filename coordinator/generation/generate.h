// The generation loop of llama2.c's run.c, with the prompt run as one batch.
#pragma once
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "common/sampler.h"
#include "common/tokenizer.h"
#include "coordinator/generation/engine.h"

namespace ferry {

struct GenerateOptions {
    std::string prompt;
    int steps = 256;  // positions to run, including the prompt; clamped to the context
    const std::atomic<bool>* stop = nullptr;  // set (by a signal): end after the current token
};

struct GenerateResult {
    std::vector<int> ids;  // BOS, prompt, then sampled tokens: run.c's token stream
    int prompt_tokens = 0;
    int decoded_tokens = 0;  // tokens produced one at a time after the prompt
    double prefill_ms = 0;
    double decode_ms = 0;
    bool interrupted = false;  // ended by GenerateOptions::stop
};

// BOS and the prompt's tokens; throws ferry::Error if they do not fit the
// context (checked before any worker is contacted, and again by generate()).
std::vector<int> encode_prompt(const Tokenizer& tokenizer, const std::string& prompt, int context);

// Streams text to `out` as run.c prints it (flushed per token), ending with "\n".
// Throws ferry::Error if the prompt does not fit the context.
GenerateResult generate(Engine& engine, const Tokenizer& tokenizer, Sampler& sampler, const GenerateOptions& opt,
                        std::FILE* out);

}  // namespace ferry
