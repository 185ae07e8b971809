// A chat: user turns in, streamed replies out, with the KV cache (the model's
// memory of the conversation) kept between turns.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "common/model_file.h"
#include "common/sampler.h"
#include "common/tokenizer.h"
#include "coordinator/generation/chat_template.h"
#include "coordinator/generation/engine.h"

namespace ferry {

// The template for a model: `forced` (--chat-template) if given, run.c's
// Llama 2 format for llama2.c checkpoints, else the family of the model's own
// Jinja template. Throws ferry::Error naming --chat-template when none is known.
ChatTemplate choose_chat_template(const ModelFile& file, const std::string& forced);

class Conversation {
public:
    // no_think: every reply opens with Qwen3's empty thinking block (render_user_turn).
    Conversation(Engine& engine, const Tokenizer& tokenizer, Sampler& sampler, ChatTemplate tmpl, std::string system,
                 bool no_think = false);

    // Feeds the user's turn and streams the reply to out, at most max_tokens
    // of it (0: until an end-of-turn token or the end of the context). Returns
    // false, having printed nothing, when the turn does not fit the remaining
    // context.
    bool reply(const std::string& user, std::FILE* out, int max_tokens = 0);
    int position() const { return pos_; }
    // The last reply stopped because the context is full, not at an end-of-turn token.
    bool context_full() const { return context_full_; }
    // The last reply stopped at max_tokens.
    bool cut() const { return cut_; }
    int tokens_replied() const { return replied_; }

private:
    bool ends_turn(int token) const;

    Engine& engine_;
    const Tokenizer& tokenizer_;
    Sampler& sampler_;
    ChatTemplate template_;
    std::string system_;
    bool no_think_;
    std::vector<int> end_ids_;
    int pos_ = 0;
    int pending_ = -1;  // the last reply's end-of-turn token, fed with the next turn
    int replied_ = 0;
    bool context_full_ = false;
    bool cut_ = false;
};

}  // namespace ferry
