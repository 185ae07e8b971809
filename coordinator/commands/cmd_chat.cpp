// `ferry chat`: an interactive conversation that keeps the KV cache between
// turns, like run.c's chat mode (User:/Assistant: on stdout).
#include <iostream>
#include <memory>

#include "common/error.h"
#include "common/model_file.h"
#include "common/tokenizer_loader.h"
#include "coordinator/commands/commands.h"
#include "coordinator/generation/conversation.h"
#include "coordinator/commands/options.h"
#include "coordinator/commands/setup.h"

namespace ferry {

namespace {

ChatTemplate checked_template(const ModelFile& file, const RunOptions& o, const Tokenizer& tokenizer) {
    const ChatTemplate t = choose_chat_template(file, o.chat_template);
    check_chat_template(t, tokenizer, o.no_think);
    return t;
}

struct ChatSession {
    ModelFile file;
    Tokenizer tokenizer;
    ChatTemplate tmpl;  // before the engine: a template the model cannot use fails before shards are sent
    kernels::ThreadPool pool;
    std::unique_ptr<Engine> engine;
    Sampler sampler;

    explicit ChatSession(const RunOptions& o)
        : file(open_model(o.model, o.workers.empty())),
          tokenizer(load_tokenizer(file, o.tokenizer, o.force_tokenizer)),
          tmpl(checked_template(file, o, tokenizer)),
          pool(resolve_threads(o.threads)),
          // The whole context: a conversation grows turn by turn.
          engine(make_engine(file, o, context_for(file.config, o.ctx), &pool)),
          sampler(file.config.vocab_size, sampler_params(o)) {}
};

int cmd_chat(const RunOptions& o) {
    select_kernels(o.kernels);
    ChatSession s(o);
    Conversation chat(*s.engine, s.tokenizer, s.sampler, s.tmpl, o.system_prompt, o.no_think);
    // One turn; false when the context is full and the chat must end.
    auto turn = [&](const std::string& line) {
        std::fputs("Assistant: ", stdout);
        const bool fits = chat.reply(line, stdout, o.steps);
        std::fputs("\n", stdout);
        std::fflush(stdout);
        if (chat.cut()) std::fprintf(stderr, "ferry chat: the reply was cut at -n %d tokens\n", o.steps);
        if (!fits || chat.context_full()) {
            std::fprintf(stderr, "ferry chat: %s the context of %d tokens (%d used); start a new chat%s\n",
                         fits ? "the reply filled" : "that turn does not fit", s.engine->context(), chat.position(),
                         s.engine->context() < s.file.config.seq_len ? " or give a larger --ctx" : "");
            return false;
        }
        return true;
    };
    bool going = true;
    if (!o.prompt.empty()) {  // -i: the first user message, as if typed
        std::printf("User: %s\n", o.prompt.c_str());
        going = turn(o.prompt);
    }
    std::string line;
    while (going) {
        std::fputs("User: ", stdout);
        std::fflush(stdout);
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        going = turn(line);
    }
    std::fputs("\n", stdout);
    report_engine(*s.engine);
    return 0;
}

}  // namespace

int run_chat_once(const RunOptions& o) {
    ChatSession s(o);
    Conversation chat(*s.engine, s.tokenizer, s.sampler, s.tmpl, o.system_prompt, o.no_think);
    if (!chat.reply(o.prompt, stdout, o.steps))
        throw Error("the prompt does not fit the context of " + std::to_string(s.engine->context()) + " tokens");
    std::fputs("\n", stdout);
    if (chat.context_full())
        std::fprintf(stderr, "ferry: the reply stopped at the end of the context (%d tokens)\n", s.engine->context());
    if (chat.cut()) std::fprintf(stderr, "ferry: the reply was cut at -n %d tokens\n", o.steps);
    report_engine(*s.engine);
    return 0;
}

void register_chat(CLI::App& app, std::vector<Command>& commands) {
    static RunOptions o;
    CLI::App* cmd = app.add_subcommand("chat", "Chat with a model interactively (stdin), keeping the context");
    add_model_options(cmd, o);
    add_sampling_options(cmd, o);
    add_pipeline_options(cmd, o);
    cmd->get_option("--steps")->description("Most tokens in each reply; 0: until the end-of-turn token (default 256)");
    cmd->get_option("--prompt")->description("The first user message (then the chat goes on from stdin)");
    commands.push_back({cmd, [] {
        resolve_pool(o);
        return cmd_chat(o);
    }, &o.log_level});
}

}  // namespace ferry
