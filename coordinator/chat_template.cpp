#include "coordinator/chat_template.h"

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

std::string render_user_turn(ChatTemplate t, const std::string& system, const std::string& user, bool first_turn) {
    const bool with_system = first_turn && !system.empty();
    switch (t) {
        case ChatTemplate::llama2:
            // run.c's chat format: the system prompt rides inside the first [INST].
            if (with_system) return "[INST] <<SYS>>\n" + system + "\n<</SYS>>\n\n" + user + " [/INST]";
            return "[INST] " + user + " [/INST]";
        case ChatTemplate::llama3: {
            // <|begin_of_text|> is the tokenizer's BOS, added when the turn is encoded.
            std::string s;
            if (with_system) s += "<|start_header_id|>system<|end_header_id|>\n\n" + system + "<|eot_id|>";
            return s + "<|start_header_id|>user<|end_header_id|>\n\n" + user +
                   "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        }
        case ChatTemplate::zephyr: {
            std::string s = with_system ? "<|system|>\n" + system + "</s>\n" : "";
            return s + "<|user|>\n" + user + "</s>\n<|assistant|>\n";
        }
        case ChatTemplate::chatml: {
            std::string s = with_system ? "<|im_start|>system\n" + system + "<|im_end|>\n" : "";
            return s + "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n";
        }
    }
    return user;
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

}  // namespace ferry
