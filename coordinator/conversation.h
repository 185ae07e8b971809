// A chat: user turns in, streamed replies out, with the KV cache (the model's
// memory of the conversation) kept between turns.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "common/sampler.h"
#include "common/tokenizer.h"
#include "coordinator/chat_template.h"
#include "coordinator/engine.h"

namespace ferry {

class Conversation {
public:
    Conversation(Engine& engine, const Tokenizer& tokenizer, Sampler& sampler, ChatTemplate tmpl, std::string system);

    // Feeds the user's turn and streams the reply to out. Returns false, having
    // printed nothing, when the turn does not fit the remaining context.
    bool reply(const std::string& user, std::FILE* out);
    int position() const { return pos_; }
    int tokens_replied() const { return replied_; }

private:
    bool ends_turn(int token) const;

    Engine& engine_;
    const Tokenizer& tokenizer_;
    Sampler& sampler_;
    ChatTemplate template_;
    std::string system_;
    int pos_ = 0;
    int pending_ = -1;  // the last reply's end-of-turn token, fed with the next turn
    int replied_ = 0;
    std::vector<int> end_ids_;
};

}  // namespace ferry
