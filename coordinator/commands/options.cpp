#include "coordinator/commands/options.h"

#include "coordinator/generation/chat_template.h"

namespace ferry {

void add_log_level_option(CLI::App* app, std::string& level) {
    app->add_option("--log-level", level, "trace, debug, info, warn, error or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
}

void add_key_options(CLI::App* app, std::string& key_file, double& discover_wait) {
    app->add_option("--key-file", key_file,
                    "The pool's cluster key (`ferry keygen -o ferry.key`, the same file on every machine): every "
                    "worker link proves it both ways and is encrypted. Default: $FERRY_KEY_FILE");
    app->add_option("--discover-wait", discover_wait,
                    "With a cluster key and no --workers: seconds to listen for the workers announcing themselves "
                    "on the LAN (default 2; 0: do not look)")
        ->check(CLI::Range(0.0, 600.0));
}

void add_model_options(CLI::App* app, RunOptions& o) {
    app->add_option("model", o.model, "Model file: GGUF (any type ferry quantize writes) or a llama2.c checkpoint (.bin, legacy or ak42 v1/v2)")->required();
    app->add_option("-z,--tokenizer", o.tokenizer,
                    "llama2.c tokenizer.bin for a llama2.c checkpoint (default: tokenizer.bin beside the model); a GGUF model carries its own");
    app->add_flag("--force-tokenizer", o.force_tokenizer,
                  "Use a -z file that has more pieces than the model's vocabulary (another model's?) as run.c does: "
                  "its first pieces, with a warning instead of an error");
    app->add_option("--threads", o.threads, "Compute threads (default: one per core)")->check(CLI::Range(0, 1024));
    app->add_option("--kernels", o.kernels, "Kernel instruction set: scalar, sse2, ssse3, avx2, avxvnni or avx512 on x86, scalar, neon or "
                    "dotprod on ARM (dotprod: aarch64 only), or auto (default: the best this CPU has)");
    app->add_option("--ctx", o.ctx,
                    "Context length to allocate (default: the positions the run reaches, prompt and -n; chat and -n 0: "
                    "the model's; maximum: the model's)")
        ->check(CLI::Range(0, 1 << 22));
    app->add_option("--kv-type", o.kv_type, "KV cache type: f32 (exact), f16 or q8_0 (smaller; see docs/BENCHMARKS.md)")
        ->check(CLI::IsMember({"f32", "f16", "q8_0"}));
    app->add_option("--memory", o.memory,
                    "Memory a run in this process may allocate for its KV cache and scratch, e.g. 512M (default: what "
                    "the machine has available); a run that needs more is refused with the numbers. With --workers: "
                    "the coordinator's own budget, which the plan keeps its process and the weights it keeps within "
                    "(the embedding read a row at a time, the classifier in vocabulary slices on the workers when it "
                    "does not fit)");
    add_log_level_option(app, o.log_level);
}

void add_sampling_options(CLI::App* app, RunOptions& o) {
    app->add_option("-t,--temperature", o.temperature, "Sampling temperature; 0 is greedy (default 1.0)")
        ->check(CLI::Range(0.0f, 100.0f));
    app->add_option("-p,--topp", o.topp, "Top-p (nucleus) threshold in [0,1]; 0 or 1 turns it off (default 0.9)")
        ->check(CLI::Range(0.0f, 1.0f));
    app->add_option("-s,--seed", o.seed, "Random seed (default: the current time, as run.c)");
    app->add_option("-n,--steps", o.steps, "Positions to run including the prompt; 0 = the context (default 256)")
        ->check(CLI::Range(0, 1 << 22));
    app->add_option("-i,--prompt", o.prompt, "Prompt text (default: empty)");
    app->add_option("--ids-out", o.ids_out, "Also write the token ids (BOS, prompt, samples) to this file");
    app->add_option("-y,--system", o.system_prompt, "System prompt for chat");
    add_chat_template_options(app, o);
}

void add_chat_template_options(CLI::App* app, RunOptions& o) {
    app->add_option("--chat-template", o.chat_template,
                    "Chat format: llama2, llama3, zephyr, chatml (Qwen) or bitnet (BitNet b1.58 2B4T) (default: the "
                    "model's own)")
        ->check(CLI::IsMember(chat_template_choices()));
    app->add_flag("--no-think", o.no_think,
                  "Thinking models (Qwen3, ChatML): open every reply with an empty <think></think> block, as Qwen3's "
                  "template does for enable_thinking=false, so the model answers without reasoning first (default: "
                  "the model thinks, and its <think>...</think> text is part of the reply)");
}

void add_pipeline_options(CLI::App* app, RunOptions& o) {
    app->add_option("--workers", o.workers,
                    "Run the layers on these ferry-worker daemons, in chain order (HOST:PORT,...); the plan (who "
                    "holds what, memory against each budget, predicted ms per token) is printed before anything is "
                    "sent, and a per-node table at the end")
        ->delimiter(',');
    app->add_option("--split", o.split,
                    "Layers per worker, e.g. 2,3: every worker used, in order; 0 gives a worker no layers (it may "
                    "hold a vocabulary slice) (default: planned from each worker's memory budget, measured speed "
                    "and link; workers that would slow the chain are left out)")
        ->delimiter(',');
    app->add_option("--wire", o.wire, "Activation encoding between stages: f32 (exact, default) or f16 (half the bytes, rounded)")
        ->check(CLI::IsMember({"f32", "f16"}));
    app->add_option("--stats-every", o.stats_every,
                    "Print the per-node table every N decoded tokens (0: only at the end)")
        ->check(CLI::Range(0, 1 << 30));
    auto* emb_w = app->add_flag("--embedding-on-worker", o.embedding_on_worker,
                                "The first worker holds the embedding table and receives token ids (default: planned)");
    auto* emb_c = app->add_flag("--embedding-on-coordinator", o.embedding_on_coordinator,
                                "The coordinator keeps the embedding table and sends activations (default: planned)");
    emb_w->excludes(emb_c);
    auto* head_w = app->add_flag("--head-on-worker", o.head_on_worker,
                                 "The last worker holds the final norm and classifier and draws the next token, so "
                                 "only a token id comes back (default: planned)");
    auto* head_c = app->add_flag("--head-on-coordinator", o.head_on_coordinator,
                                 "The coordinator keeps the final norm and classifier; the last worker returns its "
                                 "activation (default: planned)");
    head_w->excludes(head_c);
    auto* slices = app->add_option("--head-slices", o.head_slices,
                                   "Split the final norm and classifier into N vocabulary slices on N workers (on "
                                   "stages or on workers without layers: --split 0 for one), which all answer each "
                                   "token at once: the vocabulary table of a big-vocabulary model then needs no node "
                                   "that can hold it whole, and its time is divided (default: planned; sliced when "
                                   "that is faster or the only plan that fits)")
                       ->check(CLI::Range(1, 1024));
    slices->excludes(head_w)->excludes(head_c);
    app->add_option("--prefill-chunk", o.prefill_chunk,
                    "Send the prompt in micro-batches of at most N positions so stages overlap; also the largest "
                    "request a worker must hold, so it lowers the memory each worker needs (default 0: the whole "
                    "prompt in one batch)")
        ->check(CLI::Range(0, 1 << 20));
    app->add_option("--timeout", o.net_timeout,
                    "Seconds a worker may stay silent (no frame, no heartbeat; workers send them at least every "
                    "second) before the run stops naming it (default 10)")
        ->check(CLI::Range(0.5, 86400.0));
    app->add_option("--spare", o.spares,
                    "Workers to use only when one fails (HOST:PORT,...); workers in --workers that the plan leaves out "
                    "are spares too")
        ->delimiter(',');
    app->add_option("--recover-wait", o.recover_wait,
                    "When a worker fails and the rest cannot hold the model, seconds to wait for one to return "
                    "(default 60)")
        ->check(CLI::Range(0.0, 86400.0));
    app->add_flag("--no-recover", o.no_recover,
                  "Stop at the first failed worker instead of planning again without it, replaying the text so far "
                  "and going on");
    add_key_options(app, o.key_file, o.discover_wait);
    app->add_option("--connect-timeout", o.connect_timeout,
                    "Seconds to connect to a worker; its handshake may take 5 s more (default 5)")
        ->check(CLI::Range(0.1, 3600.0));
}

}  // namespace ferry
