#include "coordinator/generation/generate.h"

#include <algorithm>
#include <chrono>

#include "common/error.h"

namespace ferry {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

std::vector<int> encode_prompt(const Tokenizer& tokenizer, const std::string& prompt, int context) {
    std::vector<int> ids = tokenizer.encode(prompt, true, false);
    if (static_cast<int>(ids.size()) > context)
        throw Error("the prompt is " + std::to_string(ids.size()) + " tokens, longer than the context of " +
                    std::to_string(context) + "; shorten it");
    return ids;
}

GenerateResult generate(Engine& engine, const Tokenizer& tokenizer, Sampler& sampler, const GenerateOptions& opt,
                        std::FILE* out) {
    const int context = engine.context();
    int steps = opt.steps;
    if (steps <= 0 || steps > context) steps = context;
    GenerateResult r;
    const std::vector<int> prompt = encode_prompt(tokenizer, opt.prompt, context);
    r.prompt_tokens = static_cast<int>(prompt.size());
    r.ids.push_back(prompt[0]);

    int token = prompt[0];
    // Emits `next` after `token`; false when generation ends.
    auto emit = [&](int next) {
        r.ids.push_back(next);
        if (tokenizer.ends_generation(next)) return false;
        const std::string piece = tokenizer.decode(token, next);
        if (Tokenizer::printable(piece)) {
            std::fwrite(piece.data(), 1, piece.size(), out);
            std::fflush(out);
        }
        token = next;
        return true;
    };

    // Prefill: the prompt's positions as one batch. Its forced tokens print as
    // run.c prints them; the last position gives the first sample (if the
    // whole prompt fits in the steps).
    const int n_batch = std::min(static_cast<int>(prompt.size()), steps);
    const bool sample_after_prompt = n_batch == r.prompt_tokens;
    auto t0 = std::chrono::steady_clock::now();
    int first = -1;
    if (sample_after_prompt) first = engine.forward_sample(prompt.data(), n_batch, 0, sampler);
    else engine.forward(prompt.data(), n_batch, 0);
    r.prefill_ms = ms_since(t0);
    bool going = true;
    for (int pos = 0; pos < n_batch && going; ++pos) going = emit(pos + 1 < r.prompt_tokens ? prompt[pos + 1] : first);
    t0 = std::chrono::steady_clock::now();
    for (int pos = n_batch; pos < steps && going; ++pos) {
        if (opt.stop && opt.stop->load()) {
            r.interrupted = true;
            break;
        }
        going = emit(engine.forward_sample(&token, 1, pos, sampler));
        ++r.decoded_tokens;
    }
    r.decode_ms = ms_since(t0);
    std::fputs("\n", out);
    std::fflush(out);
    return r;
}

}  // namespace ferry
