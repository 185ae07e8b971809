// `ferry chat`: an interactive conversation that keeps the KV cache between
// turns, like run.c's chat mode (User:/Assistant: on stdout).
#include <iostream>
#include <memory>

#include "common/error.h"
#include "common/model_file.h"
#include "common/tokenizer_loader.h"
#include "coordinator/commands.h"
#include "coordinator/conversation.h"
#include "coordinator/options.h"
#include "coordinator/setup.h"

namespace ferry {

ChatTemplate choose_chat_template(const ModelFile& file, const std::string& forced) {
    if (!forced.empty()) {
        if (auto t = parse_chat_template(forced)) return *t;
        throw Error("--chat-template " + forced + ": unknown; use llama2, llama3, zephyr or chatml");
    }
    if (file.format.rfind("llama2.c", 0) == 0) return ChatTemplate::llama2;  // run.c's chat format
    if (!file.chat_template.empty()) {
        if (auto t = detect_chat_template(file.chat_template)) return *t;
        throw Error(file.path + ": its chat template is not one ferry knows; name one with --chat-template "
                                "llama2|llama3|zephyr|chatml");
    }
    throw Error(file.path + ": the model names no chat template; name one with --chat-template "
                            "llama2|llama3|zephyr|chatml");
}

namespace {

struct ChatSession {
    ModelFile file;
    Tokenizer tokenizer;
    kernels::ThreadPool pool;
    std::unique_ptr<Engine> engine;
    Sampler sampler;
    ChatTemplate tmpl;

    explicit ChatSession(const RunOptions& o)
        : file(open_model_file(o.model)),
          tokenizer(load_tokenizer(file, o.tokenizer)),
          pool(resolve_threads(o.threads)),
          engine(make_engine(file, o, context_for(file.config, o.ctx), &pool)),
          sampler(file.config.vocab_size, sampler_params(o)),
          tmpl(choose_chat_template(file, o.chat_template)) {}
};

int cmd_chat(const RunOptions& o) {
    select_kernels(o.kernels);
    ChatSession s(o);
    Conversation chat(*s.engine, s.tokenizer, s.sampler, s.tmpl, o.system_prompt);
    std::string line;
    for (;;) {
        std::fputs("User: ", stdout);
        std::fflush(stdout);
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        std::fputs("Assistant: ", stdout);
        if (!chat.reply(line, stdout)) {
            std::fputs("\n", stdout);
            throw Error("the conversation has filled the context of " + std::to_string(s.engine->context()) +
                        " tokens; start a new chat (or a larger --ctx)");
        }
        std::fputs("\n", stdout);
    }
    std::fputs("\n", stdout);
    report_engine(*s.engine);
    return 0;
}

}  // namespace

int run_chat_once(const RunOptions& o) {
    ChatSession s(o);
    Conversation chat(*s.engine, s.tokenizer, s.sampler, s.tmpl, o.system_prompt);
    if (!chat.reply(o.prompt, stdout))
        throw Error("the prompt does not fit the context of " + std::to_string(s.engine->context()) + " tokens");
    std::fputs("\n", stdout);
    report_engine(*s.engine);
    return 0;
}

void register_chat(CLI::App& app, std::vector<Command>& commands) {
    static RunOptions o;
    CLI::App* cmd = app.add_subcommand("chat", "Chat with a model interactively (stdin), keeping the context");
    add_model_options(cmd, o);
    add_sampling_options(cmd, o);
    add_pipeline_options(cmd, o);
    commands.push_back({cmd, [] { return cmd_chat(o); }, &o.log_level});
}

}  // namespace ferry
