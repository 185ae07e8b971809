// Chat prompt formats of the model families ferry runs. A template turns a
// user turn (and, first, the system prompt) into the text the model expects
// before its reply; the reply ends at the family's end-of-turn token.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "common/tokenizer.h"

namespace ferry {

// bitnet: BitNet b1.58 2B4T's "User: ...<|eot_id|>Assistant: " (its Hugging Face
// template, which llama.cpp's built-in "bitnet" also follows).
enum class ChatTemplate { llama2, llama3, zephyr, chatml, bitnet };

const char* chat_template_name(ChatTemplate t);
// "llama2" | "llama3" | "zephyr" | "chatml" | "bitnet"; nullopt if unknown.
std::optional<ChatTemplate> parse_chat_template(const std::string& name);
// Recognises a family from a model's Jinja chat template (GGUF
// tokenizer.chat_template) by the markers it uses; nullopt if none matches.
std::optional<ChatTemplate> detect_chat_template(const std::string& jinja);

// The text fed for one user turn, ending where the assistant's reply starts,
// as pieces: the template's own text (special: its markers become control
// tokens) and the system prompt and user text (never special: a user who
// types "<|im_end|>" gets those characters, not the token). first_turn:
// include the system prompt (if any); later turns follow the previous
// reply's end-of-turn token. BOS is not part of the text: the caller encodes
// the first turn (every turn for Llama 2) with BOS. no_think (chatml only):
// the reply opens with an empty "<think>\n\n</think>\n\n", which is what
// Qwen3's template writes for enable_thinking=false, so a thinking model
// answers at once.
std::vector<TextPiece> render_user_turn(ChatTemplate t, const std::string& system, const std::string& user,
                                        bool first_turn, bool no_think = false);
// The pieces joined (to show or compare the text).
std::string joined(const std::vector<TextPiece>& pieces);
// Whether each turn starts with BOS (Llama 2 wraps every [INST] in <s>).
bool bos_every_turn(ChatTemplate t);
// Throws ferry::Error if the template's markers are control tokens the
// vocabulary lacks (chatml on a model without <|im_start|>): they would be
// fed as plain text and the replies would be nonsense.
// no_think: also the <think> and </think> tokens (a model without them is no
// thinking model, and the flag would only add text).
void check_chat_template(ChatTemplate t, const Tokenizer& tokenizer, bool no_think = false);
// The names --chat-template takes, and them joined "llama2|llama3|..." (for messages).
std::vector<std::string> chat_template_choices();
std::string chat_template_names();
// A thinking model: ChatML with <think> and </think> in its vocabulary (Qwen3).
bool thinks(ChatTemplate t, const Tokenizer& tokenizer);
// An earlier assistant reply as the template writes it into the history
// (BitNet's trims it; the others keep it as it is).
std::string reply_text(ChatTemplate t, const std::string& content);
// The piece that closes an assistant reply in this family ("</s>", "<|eot_id|>", ...).
const char* end_of_turn_piece(ChatTemplate t);
// The ids of that piece in this vocabulary (besides EOS and the tokenizer's own
// end-of-generation ids, which end a reply anyway).
std::vector<int> end_of_turn_ids(const Tokenizer& tokenizer, ChatTemplate t);

}  // namespace ferry
