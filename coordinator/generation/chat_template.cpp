#include "coordinator/generation/chat_template.h"

#include <cctype>

#include "common/error.h"

namespace ferry {

namespace {

constexpr ChatTemplate kAll[] = {ChatTemplate::llama2, ChatTemplate::llama3, ChatTemplate::zephyr,
                                 ChatTemplate::chatml, ChatTemplate::bitnet};

// Jinja's |trim, which BitNet's template applies to every message.
std::string trimmed(const std::string& s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

}  // namespace

const char* chat_template_name(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::llama2: return "llama2";
        case ChatTemplate::llama3: return "llama3";
        case ChatTemplate::zephyr: return "zephyr";
        case ChatTemplate::chatml: return "chatml";
        case ChatTemplate::bitnet: return "bitnet";
    }
    return "unknown";
}

std::optional<ChatTemplate> parse_chat_template(const std::string& name) {
    for (ChatTemplate t : kAll)
        if (name == chat_template_name(t)) return t;
    return std::nullopt;
}

std::vector<std::string> chat_template_choices() {
    std::vector<std::string> names;
    for (ChatTemplate t : kAll) names.push_back(chat_template_name(t));
    return names;
}

std::string chat_template_names() {
    std::string s;
    for (const std::string& name : chat_template_choices()) s += (s.empty() ? "" : "|") + name;
    return s;
}

bool thinks(ChatTemplate t, const Tokenizer& tokenizer) {
    return t == ChatTemplate::chatml && tokenizer.token_id("<think>") >= 0 && tokenizer.token_id("</think>") >= 0;
}

std::optional<ChatTemplate> detect_chat_template(const std::string& jinja) {
    auto has = [&](const char* marker) { return jinja.find(marker) != std::string::npos; };
    if (has("<|start_header_id|>")) return ChatTemplate::llama3;
    if (has("<|im_start|>")) return ChatTemplate::chatml;
    if (has("<|user|>") && has("<|assistant|>")) return ChatTemplate::zephyr;
    if (has("[INST]")) return ChatTemplate::llama2;
    // BitNet 2B4T: role|capitalize + ': ' + content|trim + '<|eot_id|>', then 'Assistant: '.
    if (has("<|eot_id|>") && has("Assistant: ")) return ChatTemplate::bitnet;
    return std::nullopt;
}

std::string reply_text(ChatTemplate t, const std::string& content) {
    return t == ChatTemplate::bitnet ? trimmed(content) : content;
}

std::vector<TextPiece> render_user_turn(ChatTemplate t, const std::string& system, const std::string& user,
                                        bool first_turn, bool no_think) {
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
            tmpl(end + open("assistant") + (no_think && !zephyr ? "<think>\n\n</think>\n\n" : ""));
            break;
        }
        case ChatTemplate::bitnet:
            // BOS is added by the caller; a later turn follows the reply's <|eot_id|>.
            if (with_system) {
                tmpl("System: ");
                text(trimmed(system));
                tmpl("<|eot_id|>");
            }
            tmpl("User: ");
            text(trimmed(user));
            tmpl("<|eot_id|>Assistant: ");
            break;
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
        case ChatTemplate::bitnet: return "<|eot_id|>";
    }
    return "</s>";
}

std::vector<int> end_of_turn_ids(const Tokenizer& tokenizer, ChatTemplate t) {
    std::vector<int> ids;
    const std::string eot = end_of_turn_piece(t);
    for (int id = 0; id < tokenizer.vocab_size(); ++id)
        if (tokenizer.piece(id) == eot) ids.push_back(id);
    return ids;
}

void check_chat_template(ChatTemplate t, const Tokenizer& tokenizer, bool no_think) {
    // Llama 2's [INST] and zephyr's <|user|> are text in their own vocabularies; these two families' markers are tokens.
    std::vector<const char*> markers;
    if (t == ChatTemplate::llama3) markers = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    if (t == ChatTemplate::chatml) markers = {"<|im_start|>", "<|im_end|>"};
    if (t == ChatTemplate::bitnet) markers = {"<|eot_id|>"};
    if (no_think && t != ChatTemplate::chatml)
        throw Error(std::string("--no-think is for ChatML thinking models (Qwen3); the chat template here is ") +
                    chat_template_name(t));
    if (no_think && !thinks(t, tokenizer))
        throw Error("--no-think: this model's vocabulary has no <think> token, so it does not think before answering; "
                    "leave the flag out");
    for (const char* m : markers)
        if (tokenizer.token_id(m) < 0)
            throw Error(std::string("the chat template ") + chat_template_name(t) + " needs the token " + m +
                        ", which this model's vocabulary lacks; name the model's own with --chat-template (llama2 and "
                        "zephyr need no special tokens)");
}

}  // namespace ferry
