#include "coordinator/generation/chat_template.h"

#include "common/error.h"

namespace ferry {

const char* chat_template_name(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::llama2: return "llama2";
        case ChatTemplate::llama3: return "llama3";
        case ChatTemplate::zephyr: return "zephyr";
        case ChatTemplate::chatml: return "chatml";
    }
    return "unknown";
}

std::optional<ChatTemplate> parse_chat_template(const std::string& name) {
    for (ChatTemplate t : {ChatTemplate::llama2, ChatTemplate::llama3, ChatTemplate::zephyr, ChatTemplate::chatml})
        if (name == chat_template_name(t)) return t;
    return std::nullopt;
}

std::optional<ChatTemplate> detect_chat_template(const std::string& jinja) {
    auto has = [&](const char* marker) { return jinja.find(marker) != std::string::npos; };
    if (has("<|start_header_id|>")) return ChatTemplate::llama3;
    if (has("<|im_start|>")) return ChatTemplate::chatml;
    if (has("<|user|>") && has("<|assistant|>")) return ChatTemplate::zephyr;
    if (has("[INST]")) return ChatTemplate::llama2;
    return std::nullopt;
}

std::vector<TextPiece> render_user_turn(ChatTemplate t, const std::string& system, const std::string& user,
                                        bool first_turn) {
    const bool with_system = first_turn && !system.empty();
    std::vector<TextPiece> out;
    auto tmpl = [&](const std::string& s) { out.push_back({s, true}); };
    auto text = [&](const std::string& s) { out.push_back({s, false}); };
    switch (t) {
        case ChatTemplate::llama2:
            // run.c's chat format: the system prompt rides inside the first [INST].
            if (with_system) {
                tmpl("[INST] <<SYS>>\n");
                text(system);
                tmpl("\n<</SYS>>\n\n");
            } else {
                tmpl("[INST] ");
            }
            text(user);
            tmpl(" [/INST]");
            break;
        case ChatTemplate::llama3:
            // <|begin_of_text|> is the tokenizer's BOS, added when the turn is encoded.
            if (with_system) {
                tmpl("<|start_header_id|>system<|end_header_id|>\n\n");
                text(system);
                tmpl("<|eot_id|>");
            }
            tmpl("<|start_header_id|>user<|end_header_id|>\n\n");
            text(user);
            tmpl("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
            break;
        case ChatTemplate::zephyr:
        case ChatTemplate::chatml: {
            // Each message ends "<end>\n"; a later turn follows the reply's <end>.
            const bool zephyr = t == ChatTemplate::zephyr;
            const std::string end = zephyr ? "</s>\n" : "<|im_end|>\n";
            auto open = [&](const char* role) {
                return zephyr ? std::string("<|") + role + "|>\n" : std::string("<|im_start|>") + role + "\n";
            };
            std::string head = first_turn ? "" : "\n";
            if (with_system) {
                tmpl(head + open("system"));
                text(system);
                head = end;
            }
            tmpl(head + open("user"));
            text(user);
            tmpl(end + open("assistant"));
            break;
        }
    }
    return out;
}

std::string joined(const std::vector<TextPiece>& pieces) {
    std::string s;
    for (const TextPiece& p : pieces) s += p.text;
    return s;
}

bool bos_every_turn(ChatTemplate t) { return t == ChatTemplate::llama2; }

const char* end_of_turn_piece(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::llama2: return "</s>";
        case ChatTemplate::llama3: return "<|eot_id|>";
        case ChatTemplate::zephyr: return "</s>";
        case ChatTemplate::chatml: return "<|im_end|>";
    }
    return "</s>";
}

void check_chat_template(ChatTemplate t, const Tokenizer& tokenizer) {
    // Llama 2's [INST] and zephyr's <|user|> are text in their own vocabularies; these two families' markers are tokens.
    std::vector<const char*> markers;
    if (t == ChatTemplate::llama3) markers = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    if (t == ChatTemplate::chatml) markers = {"<|im_start|>", "<|im_end|>"};
    for (const char* m : markers)
        if (tokenizer.token_id(m) < 0)
            throw Error(std::string("the chat template ") + chat_template_name(t) + " needs the token " + m +
                        ", which this model's vocabulary lacks; name the model's own with --chat-template (llama2 and "
                        "zephyr need no special tokens)");
}

}  // namespace ferry
