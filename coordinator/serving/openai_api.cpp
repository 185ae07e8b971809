#include "coordinator/serving/openai_api.h"

#include <random>
#include <set>

#include "coordinator/generation/generate.h"
#include "coordinator/serving/reply_text.h"

namespace ferry {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_body(const ApiError& e) {
    json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
    if (!e.param.empty()) err["param"] = e.param;
    if (!e.code.empty()) err["code"] = e.code;
    return dump(json{{"error", err}});
}

namespace {

// The fields each endpoint reads; others that OpenAI defines and that change
// nothing at their default are accepted when at it, and anything else is refused.
const std::set<std::string> kCommonFields = {"model", "stream", "stream_options", "max_tokens", "temperature",
                                              "top_p", "seed", "stop", "n", "user", "frequency_penalty",
                                              "presence_penalty", "logit_bias", "logprobs"};
const std::set<std::string> kChatFields = {"messages", "max_completion_tokens", "parallel_tool_calls", "store",
                                            "metadata", "top_logprobs", "chat_template_kwargs"};
const std::set<std::string> kCompletionFields = {"prompt", "echo", "suffix", "best_of"};

struct Reader {
    const json& body;
    ApiError* error;
    bool ok = true;

    bool fail(const std::string& param, const std::string& message, const std::string& code = {}) {
        if (ok) *error = ApiError{400, "invalid_request_error", message, param, code};
        ok = false;
        return false;
    }
    // Reads an optional number into *out within [lo, hi].
    template <class T>
    void number(const char* name, T* out, double lo, double hi) {
        auto it = body.find(name);
        if (it == body.end() || it->is_null()) return;
        if (!it->is_number()) {
            fail(name, std::string("'") + name + "' must be a number");
            return;
        }
        const double v = it->get<double>();
        if (!(v >= lo && v <= hi)) {
            fail(name, std::string("'") + name + "' must be between " + json(lo).dump() + " and " + json(hi).dump());
            return;
        }
        *out = static_cast<T>(v);
    }
    void boolean(const char* name, bool* out) {
        auto it = body.find(name);
        if (it == body.end() || it->is_null()) return;
        if (!it->is_boolean()) fail(name, std::string("'") + name + "' must be a boolean");
        else *out = it->get<bool>();
    }
};

uint64_t random_seed() {
    std::random_device rd;
    const uint64_t s = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    return s ? s : 1;
}

bool valid_utf8(const std::string& s) { return utf8_valid(s) == s; }

}  // namespace

std::vector<int> chat_prompt(const json& messages, const ApiContext& ctx, ApiError* error, bool* ok, bool no_think) {
    Reader r{messages, error};
    std::vector<int> ids;
    *ok = false;
    if (!ctx.chat_template) {
        r.fail("messages", ctx.no_template_reason + " (POST /v1/completions needs none)");
        return ids;
    }
    const ChatTemplate tmpl = *ctx.chat_template;
    if (!messages.is_array() || messages.empty()) {
        r.fail("messages", "'messages' must be a non-empty array");
        return ids;
    }
    std::string system;
    bool first = true;
    int pending = -1;  // the previous reply's end-of-turn token
    const int eot = ctx.end_of_turn_ids.empty() ? ctx.tokenizer->eos_id() : ctx.end_of_turn_ids.front();
    for (size_t i = 0; i < messages.size(); ++i) {
        const json& m = messages[i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
            r.fail(where, where + " must be an object with a string 'role'");
            return ids;
        }
        const std::string role = m["role"];
        std::string content;
        auto c = m.find("content");
        if (c != m.end() && c->is_string()) {
            content = *c;
        } else if (c != m.end() && c->is_array()) {  // [{"type":"text","text":...}]
            for (const json& part : *c) {
                if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
                    r.fail(where + ".content", where + ".content: only text parts are supported");
                    return ids;
                }
                content += part["text"].get<std::string>();
            }
        } else {
            r.fail(where + ".content", where + " needs a string 'content'");
            return ids;
        }
        if (!valid_utf8(content)) {
            r.fail(where + ".content", where + ".content is not valid UTF-8");
            return ids;
        }
        if (role == "system" || role == "developer") {
            if (!first) {
                r.fail(where, where + ": a system message must come before the first user message");
                return ids;
            }
            system += (system.empty() ? "" : "\n") + content;
        } else if (role == "user") {
            if (pending < 0 && !first) {
                r.fail(where, where + ": two user messages in a row; join them or put an assistant reply between");
                return ids;
            }
            if (pending >= 0) ids.push_back(pending);
            // Qwen3's template writes the empty thinking block only where the reply
            // is to come; earlier replies appear without one.
            const bool last = i + 1 == messages.size();
            const std::vector<int> turn = ctx.tokenizer->encode(render_user_turn(tmpl, system, content, first, no_think && last),
                                                                first || bos_every_turn(tmpl), false);
            ids.insert(ids.end(), turn.begin(), turn.end());
            first = false;
            pending = -2;  // a user turn waits for its reply
        } else if (role == "assistant") {
            if (pending != -2) {
                r.fail(where, where + ": an assistant message must follow a user message");
                return ids;
            }
            const std::vector<int> reply = ctx.tokenizer->encode(reply_text(tmpl, content), false, false);
            ids.insert(ids.end(), reply.begin(), reply.end());
            pending = eot;
        } else {
            r.fail(where + ".role", where + ".role '" + role + "': use system, user or assistant");
            return ids;
        }
    }
    if (pending != -2) {
        r.fail("messages", "the last message must be the user's");
        return ids;
    }
    *ok = true;
    return ids;
}

std::optional<ParsedRequest> parse_request(Endpoint endpoint, const std::string& body, const ApiContext& ctx,
                                           ApiError* error) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {
        *error = ApiError{400, "invalid_request_error", std::string("the body is not valid JSON: ") + e.what()};
        return std::nullopt;
    }
    if (!j.is_object()) {
        *error = ApiError{400, "invalid_request_error", "the body must be a JSON object"};
        return std::nullopt;
    }
    Reader r{j, error};
    for (const auto& [key, value] : j.items()) {
        const auto& own = endpoint == Endpoint::chat ? kChatFields : kCompletionFields;
        if (!kCommonFields.count(key) && !own.count(key)) {
            r.fail(key, "Unrecognized request argument supplied: " + key);
            return std::nullopt;
        }
    }
    // Fields accepted only at the value that changes nothing.
    for (const char* zero : {"frequency_penalty", "presence_penalty"}) {
        double v = 0;
        r.number(zero, &v, -2, 2);
        if (r.ok && v != 0) r.fail(zero, std::string("'") + zero + "' is not supported; leave it 0");
    }
    if (j.contains("logit_bias") && !j["logit_bias"].is_null() && !(j["logit_bias"].is_object() && j["logit_bias"].empty()))
        r.fail("logit_bias", "'logit_bias' is not supported");
    if (j.contains("logprobs") && !j["logprobs"].is_null() && j["logprobs"] != false && j["logprobs"] != 0)
        r.fail("logprobs", "'logprobs' is not supported");
    if (j.contains("model") && !j["model"].is_string()) r.fail("model", "'model' must be a string");
    if (!r.ok) return std::nullopt;
    if (j.contains("model") && j["model"] != ctx.model_id && j["model"] != "" ) {
        *error = ApiError{404, "invalid_request_error",
                          "The model '" + j["model"].get<std::string>() + "' does not exist; this server has '" +
                              ctx.model_id + "' (GET /v1/models)",
                          "model", "model_not_found"};
        return std::nullopt;
    }
    ParsedRequest p;
    CompletionRequest& c = p.completion;
    int n = 1;
    r.number("n", &n, 1, 128);
    if (r.ok && n != 1) r.fail("n", "only n=1 is supported");
    r.boolean("stream", &p.stream);
    if (auto so = j.find("stream_options"); so != j.end() && !so->is_null()) {
        if (!so->is_object()) r.fail("stream_options", "'stream_options' must be an object");
        else if (so->contains("include_usage")) {
            if (!(*so)["include_usage"].is_boolean()) r.fail("stream_options.include_usage", "'include_usage' must be a boolean");
            else p.include_usage = (*so)["include_usage"];
        }
    }
    float temperature = 1, top_p = 1;
    r.number("temperature", &temperature, 0, 2);
    r.number("top_p", &top_p, 0, 1);
    c.sampling = SamplerParams{temperature, top_p, 0};
    if (auto s = j.find("seed"); s != j.end() && !s->is_null()) {
        if (!s->is_number_integer()) r.fail("seed", "'seed' must be an integer");
        else c.sampling.seed = s->is_number_unsigned() ? s->get<uint64_t>() : static_cast<uint64_t>(s->get<int64_t>());
    }
    if (c.sampling.seed == 0) c.sampling.seed = random_seed();  // run.c's 0 would mean "now"
    const char* max_name = j.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    r.number(max_name, &c.max_tokens, 1, 1e9);
    if (auto s = j.find("stop"); s != j.end() && !s->is_null()) {
        if (s->is_string()) c.stop.push_back(*s);
        else if (s->is_array() && s->size() <= 4) {
            for (const json& x : *s) {
                if (!x.is_string()) r.fail("stop", "'stop' must be a string or an array of up to 4 strings");
                else c.stop.push_back(x);
            }
        } else r.fail("stop", "'stop' must be a string or an array of up to 4 strings");
        for (const std::string& x : c.stop)
            if (!valid_utf8(x)) r.fail("stop", "'stop' is not valid UTF-8");
    }
    if (!r.ok) return std::nullopt;

    if (endpoint == Endpoint::chat) {
        if (!j.contains("messages")) {
            r.fail("messages", "'messages' is required");
            return std::nullopt;
        }
        // chat_template_kwargs.enable_thinking, as vLLM and llama.cpp's server take it for Qwen3.
        bool no_think = ctx.no_think;
        if (auto k = j.find("chat_template_kwargs"); k != j.end()) {
            if (!k->is_object()) {
                r.fail("chat_template_kwargs", "'chat_template_kwargs' must be an object");
                return std::nullopt;
            }
            if (auto e = k->find("enable_thinking"); e != k->end()) {
                if (!e->is_boolean()) {
                    r.fail("chat_template_kwargs.enable_thinking", "'enable_thinking' must be true or false");
                    return std::nullopt;
                }
                // true asks for what a model does anyway; false needs a thinking model.
                if (!e->get<bool>() && !thinks(*ctx.chat_template, *ctx.tokenizer)) {
                    r.fail("chat_template_kwargs.enable_thinking",
                           "'enable_thinking': false: this model is no ChatML thinking model (it has no <think> token)");
                    return std::nullopt;
                }
                no_think = !e->get<bool>();
            }
        }
        bool ok = false;
        c.prompt = chat_prompt(j["messages"], ctx, error, &ok, no_think);
        if (!ok) return std::nullopt;
        c.end_ids = ctx.end_of_turn_ids;
    } else {
        auto pr = j.find("prompt");
        if (pr == j.end() || !(pr->is_string() || (pr->is_array() && pr->size() == 1 && (*pr)[0].is_string()))) {
            r.fail("prompt", "'prompt' must be a string");
            return std::nullopt;
        }
        const std::string prompt = pr->is_string() ? pr->get<std::string>() : (*pr)[0].get<std::string>();
        if (!valid_utf8(prompt)) {
            r.fail("prompt", "'prompt' is not valid UTF-8");
            return std::nullopt;
        }
        r.boolean("echo", &p.echo);
        if (!r.ok) return std::nullopt;
        c.prompt = ctx.tokenizer->encode(prompt, true, false);
        if (p.echo) {  // the prompt's pieces as run.c prints them
            for (size_t i = 1; i < c.prompt.size(); ++i) {
                const std::string piece = ctx.tokenizer->decode(c.prompt[i - 1], c.prompt[i]);
                if (Tokenizer::printable(piece)) p.echo_text += piece;
            }
        }
    }
    if (static_cast<int>(c.prompt.size()) >= ctx.context) {
        *error = ApiError{400, "invalid_request_error",
                          "This model's maximum context length is " + std::to_string(ctx.context) +
                              " tokens; the prompt is " + std::to_string(c.prompt.size()) +
                              " tokens, which leaves no room for a reply. Shorten it.",
                          endpoint == Endpoint::chat ? "messages" : "prompt", "context_length_exceeded"};
        return std::nullopt;
    }
    return p;
}

json usage_json(int prompt_tokens, int completion_tokens) {
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {
json envelope(Endpoint endpoint, const ReplyIds& ids, bool chunk) {
    const char* object = endpoint == Endpoint::chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                    : "text_completion";
    return {{"id", ids.id}, {"object", object}, {"created", ids.created}, {"model", ids.model},
            {"system_fingerprint", "ferry"}};
}
json finish_value(const std::string& reason) { return reason.empty() ? json(nullptr) : json(reason); }
}  // namespace

json full_reply(Endpoint endpoint, const ReplyIds& ids, const std::string& text, const std::string& finish_reason,
                int prompt_tokens, int completion_tokens) {
    json j = envelope(endpoint, ids, false);
    json choice = {{"index", 0}, {"finish_reason", finish_value(finish_reason)}, {"logprobs", nullptr}};
    if (endpoint == Endpoint::chat) choice["message"] = {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
    else choice["text"] = text;
    j["choices"] = json::array({choice});
    j["usage"] = usage_json(prompt_tokens, completion_tokens);
    return j;
}

json stream_chunk(Endpoint endpoint, const ReplyIds& ids, const std::string& text, bool first,
                  const std::string& finish_reason) {
    json j = envelope(endpoint, ids, true);
    json choice = {{"index", 0}, {"finish_reason", finish_value(finish_reason)}, {"logprobs", nullptr}};
    if (endpoint == Endpoint::chat) {
        json delta = json::object();
        if (first) delta["role"] = "assistant";
        if (!text.empty() || (first && finish_reason.empty())) delta["content"] = text;
        choice["delta"] = delta;
    } else {
        choice["text"] = text;
    }
    j["choices"] = json::array({choice});
    return j;
}

json usage_chunk(Endpoint endpoint, const ReplyIds& ids, int prompt_tokens, int completion_tokens) {
    json j = envelope(endpoint, ids, true);
    j["choices"] = json::array();
    j["usage"] = usage_json(prompt_tokens, completion_tokens);
    return j;
}

}  // namespace ferry
