// `ferry run`: generate text from a model, in this process or across workers.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "common/error.h"
#include "common/exit_codes.h"
#include "common/logging.h"
#include "common/model_file.h"
#include "common/process_stats.h"
#include "common/shard_memory.h"
#include "common/sampler.h"
#include "common/tokenizer_loader.h"
#include "coordinator/generation/generate.h"
#include "coordinator/generation/local_engine.h"
#include "coordinator/commands/commands.h"
#include "coordinator/commands/options.h"
#include "coordinator/commands/interrupt.h"
#include "coordinator/commands/setup.h"
#include "kernels/cpu_features.h"

namespace ferry {

int resolve_threads(int requested) {
    if (requested > 0) return requested;
    const unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? static_cast<int>(n) : 1;
}

void select_kernels(const std::string& name) {
    if (std::string why; !kernels::select_level(name, &why)) throw Error(why);
}

int context_for(const ModelConfig& c, int requested, int needed) {
    if (requested > c.seq_len)
        throw Error("--ctx " + std::to_string(requested) + " is longer than the model's context of " +
                    std::to_string(c.seq_len));
    if (requested > 0) return requested;
    return needed > 0 ? std::min(needed, c.seq_len) : c.seq_len;
}

SamplerParams sampler_params(const RunOptions& o) {
    // run.c: a seed of 0 means the current time.
    const uint64_t seed = o.seed > 0 ? static_cast<uint64_t>(o.seed) : static_cast<uint64_t>(std::time(nullptr));
    return SamplerParams{o.temperature, o.topp, seed};
}

KvType kv_type_for(const std::string& name) {
    KvType t;
    if (!parse_kv_type(name, &t)) throw Error("--kv-type " + name + ": use f32, f16 or q8_0");
    return t;
}

void write_ids(const std::string& path, const std::vector<int>& ids) {
    std::ofstream out(path);
    if (!out) throw Error(path + ": cannot write the token ids");
    for (size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
    out << "\n";
}

int cmd_run(const RunOptions& o) {
    select_kernels(o.kernels);
    const ModelFile file = open_model(o.model, o.workers.empty());
    const ModelConfig& c = file.config;
    spdlog::info("{}: {} , dim {} hidden {} layers {} heads {}/{} vocab {} seq_len {}", o.model, file.format, c.dim,
                 c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len);
    const Tokenizer tokenizer = load_tokenizer(file, o.tokenizer, o.force_tokenizer);
    kernels::ThreadPool pool(resolve_threads(o.threads));
    // The KV cache holds the positions this run reaches (-n counts the
    // prompt, as in run.c), not the model's whole context: a file declaring
    // 4M positions must not cost gigabytes for a short story.
    const int prompt_tokens = static_cast<int>(tokenizer.encode(o.prompt, true, false).size());
    const int context = context_for(c, o.ctx, o.steps > 0 ? std::max(o.steps, prompt_tokens) : 0);
    encode_prompt(tokenizer, o.prompt, context);  // a prompt that cannot fit fails before shards are sent
    std::unique_ptr<Engine> engine = make_engine(file, o, context, &pool);

    Sampler sampler(c.vocab_size, sampler_params(o));
    const Interrupt interrupt;
    GenerateOptions g;
    g.prompt = o.prompt;
    g.steps = o.steps;
    g.stop = &interrupt.requested();
    const GenerateResult r = generate(*engine, tokenizer, sampler, g, stdout);
    if (!o.ids_out.empty()) write_ids(o.ids_out, r.ids);
    const int prefilled = std::min(r.prompt_tokens, o.steps > 0 ? o.steps : r.prompt_tokens);
    std::fprintf(stderr, "prefill: %d tokens, %.1f tok/s | decode: %d tokens, %.1f tok/s | %s kernels, %d threads\n",
                 prefilled, r.prefill_ms > 0 ? prefilled * 1000.0 / r.prefill_ms : 0.0, r.decoded_tokens,
                 r.decode_ms > 0 ? r.decoded_tokens * 1000.0 / r.decode_ms : 0.0,
                 kernels::level_name(kernels::active_level()), pool.size());
    const ProcessMemory mem = read_process_memory();
    std::fprintf(stderr, "memory: peak RSS %s\n", format_bytes(mem.peak_rss).c_str());
    report_engine(*engine);
    if (!o.json_out.empty()) {
        nlohmann::json j = engine_stats_json(*engine);
        j["model"] = o.model;
        j["prompt_tokens"] = r.prompt_tokens;
        j["generated_tokens"] = static_cast<int>(r.ids.size()) - r.prompt_tokens;
        j["run"] = {{"prefill_tokens", prefilled},
                    {"prefill_tok_s", r.prefill_ms > 0 ? prefilled * 1000.0 / r.prefill_ms : 0.0},
                    {"decode_tokens", r.decoded_tokens},
                    {"decode_tok_s", r.decode_ms > 0 ? r.decoded_tokens * 1000.0 / r.decode_ms : 0.0}};
        j["kernels"] = kernels::level_name(kernels::active_level());
        j["threads"] = pool.size();
        j["peak_rss"] = mem.peak_rss;
        write_json(o.json_out, j);
    }
    if (r.interrupted) {
        std::fprintf(stderr, "ferry: interrupted after %d tokens\n", r.decoded_tokens);
        return kExitInterrupted;
    }
    return 0;
}

void register_run(CLI::App& app, std::vector<Command>& commands) {
    static RunOptions o;
    CLI::App* cmd = app.add_subcommand("run", "Generate text from a model (single process or --workers)");
    add_model_options(cmd, o);
    add_sampling_options(cmd, o);
    add_pipeline_options(cmd, o);
    cmd->add_option("--json", o.json_out,
                    "Also write the statistics as JSON to this file (\"-\": stderr): prefill and decode tok/s, peak "
                    "RSS, and with --workers the per-node table (layers as in the table, inclusive)");
    cmd->add_flag("--chat", o.chat, "Treat -i as one chat turn: apply the chat template and print the reply (-n: its most tokens, 0: until the end-of-turn token)");
    commands.push_back({cmd, [] {
        resolve_pool(o);
        return o.chat ? run_chat_once(o) : cmd_run(o);
    }, &o.log_level});
}

}  // namespace ferry
