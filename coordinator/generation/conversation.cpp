#include "coordinator/generation/conversation.h"

#include <algorithm>

#include "common/error.h"

namespace ferry {

ChatTemplate choose_chat_template(const ModelFile& file, const std::string& forced) {
    if (!forced.empty()) {
        if (auto t = parse_chat_template(forced)) return *t;
        throw Error("--chat-template " + forced + ": unknown; use one of " + chat_template_names());
    }
    if (file.format.rfind("llama2.c", 0) == 0) return ChatTemplate::llama2;  // run.c's chat format
    if (!file.chat_template.empty()) {
        if (auto t = detect_chat_template(file.chat_template)) return *t;
        throw Error(file.path +
                    ": its chat template is not one ferry knows; name one with --chat-template " +
                    chat_template_names());
    }
    throw Error(file.path +
                ": the model names no chat template; name one with --chat-template " + chat_template_names());
}

Conversation::Conversation(Engine& engine, const Tokenizer& tokenizer, Sampler& sampler, ChatTemplate tmpl,
                           std::string system, bool no_think)
    : engine_(engine),
      tokenizer_(tokenizer),
      sampler_(sampler),
      template_(tmpl),
      system_(std::move(system)),
      no_think_(no_think),
      end_ids_(end_of_turn_ids(tokenizer, tmpl)) {
    end_ids_.push_back(tokenizer.eos_id());
}

bool Conversation::ends_turn(int token) const {
    return tokenizer_.ends_generation(token) || std::find(end_ids_.begin(), end_ids_.end(), token) != end_ids_.end();
}

bool Conversation::reply(const std::string& user, std::FILE* out, int max_tokens) {
    const bool first = pos_ == 0;
    std::vector<int> input;
    if (pending_ >= 0) input.push_back(pending_);
    const std::vector<int> turn =
        tokenizer_.encode(render_user_turn(template_, system_, user, first, no_think_), first || bos_every_turn(template_), false);
    context_full_ = false;
    cut_ = false;
    input.insert(input.end(), turn.begin(), turn.end());
    const int context = engine_.context();
    if (pos_ + static_cast<int>(input.size()) >= context) return false;
    pending_ = -1;
    int next = engine_.forward_sample(input.data(), static_cast<int>(input.size()), pos_, sampler_);
    pos_ += static_cast<int>(input.size());
    int prev = input.back();
    int this_turn = 0;
    for (;;) {
        if (ends_turn(next)) {
            pending_ = next;
            break;
        }
        const std::string piece = tokenizer_.decode(prev, next);
        if (Tokenizer::printable(piece)) {
            std::fwrite(piece.data(), 1, piece.size(), out);
            std::fflush(out);
        }
        ++replied_;
        prev = next;
        if (max_tokens > 0 && ++this_turn >= max_tokens) {
            // Cut: the last token is not in the cache yet; the next turn feeds it first.
            pending_ = prev;
            cut_ = true;
            break;
        }
        if (pos_ + 1 >= context) {  // the context is full; the reply stops here
            context_full_ = true;
            break;
        }
        next = engine_.forward_sample(&prev, 1, pos_, sampler_);
        ++pos_;
    }
    return true;
}

}  // namespace ferry
