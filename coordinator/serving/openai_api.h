// OpenAI's request and response shapes, as JSON (nlohmann-json): a request
// body becomes a CompletionRequest or an ApiError with the status and
// OpenAI's error type; replies and stream chunks are built here. No sockets:
// the HTTP server (http_server.cpp) only moves these bodies.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/tokenizer.h"
#include "coordinator/generation/chat_template.h"
#include "coordinator/serving/scheduler.h"

namespace ferry {

struct ApiError {
    int status = 400;
    std::string type = "invalid_request_error";
    std::string message;
    std::string param;  // the offending field, if one
    std::string code;   // e.g. "context_length_exceeded", "model_not_found"
    ApiError() = default;
    ApiError(int status_, std::string type_, std::string message_, std::string param_ = {}, std::string code_ = {})
        : status(status_), type(std::move(type_)), message(std::move(message_)), param(std::move(param_)),
          code(std::move(code_)) {}
};
// {"error": {"message", "type", "param", "code"}}
std::string error_body(const ApiError& e);

enum class Endpoint { chat, completions };

// What the server knows when it reads a request.
struct ApiContext {
    std::string model_id;  // what /v1/models lists and requests may name
    const Tokenizer* tokenizer = nullptr;
    std::optional<ChatTemplate> chat_template;  // none: /v1/chat/completions answers 400 saying so
    std::string no_template_reason;
    std::vector<int> end_of_turn_ids;  // besides EOS: the template's end-of-turn token(s)
    bool no_think = false;             // --no-think: the default of chat_template_kwargs.enable_thinking is false
    int context = 0;                   // positions per sequence
};

struct ParsedRequest {
    CompletionRequest completion;
    bool stream = false;
    bool include_usage = false;  // stream_options.include_usage
    bool echo = false;           // completions: the prompt's text (as `ferry run` prints it) leads the reply
    std::string echo_text;
};

// Parses and checks a body; on any problem returns the ApiError to answer.
// A seed left out is drawn at random (like OpenAI); temperature defaults to
// 1 and top_p to 1 as OpenAI's do.
std::optional<ParsedRequest> parse_request(Endpoint endpoint, const std::string& body, const ApiContext& ctx,
                                           ApiError* error);

// The prompt of a chat: the turns through the template, each earlier reply
// closed by the family's end-of-turn token, ending where the reply starts.
// Throws ApiError-worthy ferry::Error for an unusable message list.
// no_think: each reply opens with the empty thinking block (render_user_turn).
std::vector<int> chat_prompt(const nlohmann::json& messages, const ApiContext& ctx, ApiError* error, bool* ok,
                             bool no_think = false);

// Replies.
struct ReplyIds {
    std::string id;       // "chatcmpl-..." / "cmpl-..."
    int64_t created = 0;  // Unix seconds
    std::string model;
};
nlohmann::json usage_json(int prompt_tokens, int completion_tokens);
nlohmann::json full_reply(Endpoint endpoint, const ReplyIds& ids, const std::string& text,
                          const std::string& finish_reason, int prompt_tokens, int completion_tokens);
// One SSE chunk's JSON: a text delta, or (finish_reason set) the last one;
// the chat stream's first chunk carries the role.
nlohmann::json stream_chunk(Endpoint endpoint, const ReplyIds& ids, const std::string& text, bool first,
                            const std::string& finish_reason);
nlohmann::json usage_chunk(Endpoint endpoint, const ReplyIds& ids, int prompt_tokens, int completion_tokens);
// JSON text with invalid UTF-8 replaced, never throwing.
std::string dump(const nlohmann::json& j);

}  // namespace ferry
