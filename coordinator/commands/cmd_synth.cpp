// `ferry synth`: write a random-weight model (llama2.c checkpoint or GGUF in
// any storage type) of a real model's shape, for measuring speed on shapes
// too big to ship.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "common/error.h"
#include "common/shard_memory.h"
#include "coordinator/commands/commands.h"
#include "coordinator/model_files/quantize.h"
#include "coordinator/commands/setup.h"
#include "coordinator/model_files/synth.h"

namespace ferry {

namespace {

struct SynthArgs {
    std::string out;
    std::string preset;
    std::string format = "v1";
    std::string type;  // GGUF storage type; default f32
    std::string embedding_type;  // token_embd/output; default: type
    int threads = 0;
    int64_t seed = 1;
    float stddev = 0.02f;
    int group_size = 0;
    std::string classifier;  // "", "tied" or "separate"
    std::optional<int> dim, hidden_dim, layers, heads, kv_heads, vocab, seq_len;
    std::string tokenizer_out;
    bool force = false;
    bool quiet = false;
};

std::string preset_list() {
    std::string s;
    for (const SynthPreset& p : synth_presets()) {
        const ModelConfig& c = p.config;
        char line[256];
        std::snprintf(line, sizeof line,
                      "\n  %-15s dim %d, hidden %d, %d layers, %d/%d heads, vocab %d, seq %d, %s; %s", p.name, c.dim,
                      c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
                      p.shared_classifier ? "tied classifier" : "separate classifier", p.note);
        s += line;
    }
    return s;
}

int cmd_synth(const SynthArgs& a) {
    SynthOptions o;
    bool shared = true;
    if (!a.preset.empty()) {
        const SynthPreset* p = find_synth_preset(a.preset);
        if (!p) throw Error("--preset " + a.preset + ": unknown; see ferry synth --help");
        o.config = p->config;
        shared = p->shared_classifier;
    } else {
        const char* missing = !a.dim          ? "--dim"
                              : !a.hidden_dim ? "--hidden-dim"
                              : !a.layers     ? "--layers"
                              : !a.heads      ? "--heads"
                              : !a.vocab      ? "--vocab"
                              : !a.seq_len    ? "--seq-len"
                                              : nullptr;
        if (missing) throw Error(std::string("synth: give --preset or every dimension (") + missing + " is missing)");
    }
    ModelConfig& c = o.config;
    if (a.dim) c.dim = *a.dim;
    if (a.hidden_dim) c.hidden_dim = *a.hidden_dim;
    if (a.layers) c.n_layers = *a.layers;
    if (a.heads) c.n_heads = *a.heads;
    if (a.kv_heads) c.n_kv_heads = *a.kv_heads;
    else if (a.preset.empty()) c.n_kv_heads = c.n_heads;
    if (a.vocab) c.vocab_size = *a.vocab;
    if (a.seq_len) c.seq_len = *a.seq_len;
    if (!a.classifier.empty()) shared = a.classifier == "tied";

    o.gguf = a.format == "gguf";
    if (!o.gguf && !parse_llama2c_format(a.format, &o.write.format))
        throw Error("--format " + a.format + ": use legacy, v1, v2 or gguf");
    if (!o.gguf && c.arch != Arch::llama)
        throw Error("--preset " + a.preset + ": the " + arch_name(c.arch) +
                    " architecture is GGUF only (llama2.c files hold llama); add --format gguf");
    if (!a.type.empty() && !o.gguf)
        throw Error("--type " + a.type + ": only GGUF has storage types; add --format gguf");
    if (!a.type.empty() && !parse_output_type(a.type, &o.gguf_type))
        throw Error("--type " + a.type + ": unknown; use one of " + output_type_list());
    if (!a.embedding_type.empty()) {
        TensorType t;
        if (!o.gguf || !parse_output_type(a.embedding_type, &t))
            throw Error("--embedding-type " + a.embedding_type + ": give --format gguf and one of " + output_type_list());
        o.embedding_type = t;
    }
    if (o.gguf && a.group_size) throw Error("--group-size is for --format v2; GGUF types have fixed blocks");
    o.threads = resolve_threads(a.threads);
    o.write.shared_classifier = shared;
    o.write.group_size = a.group_size;
    o.seed = static_cast<uint64_t>(a.seed);
    o.stddev = a.stddev;
    o.progress = !a.quiet;
    if (std::filesystem::exists(a.out) && !a.force)
        throw Error(a.out + ": already exists; pass --force to overwrite it");

    const auto t0 = std::chrono::steady_clock::now();
    synth_model(a.out, o);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string format = o.gguf ? std::string("GGUF ") + tensor_type_name(o.gguf_type)
                                      : std::string("llama2.c ") + llama2c_format_name(o.write.format);
    std::fprintf(stderr,
                 "wrote %s: %s %s, %s, dim %d hidden %d layers %d heads %d/%d vocab %d seq_len %d, %s "
                 "classifier, seed %lld, %.1f s\n",
                 a.out.c_str(), arch_name(c.arch), format.c_str(),
                 format_bytes(std::filesystem::file_size(a.out)).c_str(), c.dim, c.hidden_dim,
                 c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len, shared ? "tied" : "separate",
                 static_cast<long long>(a.seed), s);
    if (!a.tokenizer_out.empty()) {
        write_synthetic_tokenizer(a.tokenizer_out, c.vocab_size);
        std::fprintf(stderr, "wrote %s: synthetic tokenizer of %d pieces\n", a.tokenizer_out.c_str(), c.vocab_size);
    }
    return 0;
}

}  // namespace

void register_synth(CLI::App& app, std::vector<Command>& commands) {
    static SynthArgs a;
    CLI::App* cmd = app.add_subcommand("synth", "Write a random-weight model of a real shape (for ferry bench)");
    cmd->footer(
        "Weights are normal(0, --stddev) from a seeded generator, norms 1.0: the same seed gives the same\n"
        "numbers in every format. The file is streamed to disk (never held in memory) with a progress bar\n"
        "on stderr. RoPE theta 10000 and norm epsilon 1e-5 apply (llama2.c files cannot say otherwise).\n"
        "--format gguf writes GGUF v3 with <arch>.* metadata (llama, or the qwen2, qwen3 and bitnet presets\n"
        "with their own RoPE base, epsilon and tensors) and a made-up vocabulary of --vocab pieces\n"
        "embedded, so `ferry run` needs no tokenizer; --type picks the matrices' storage type, under the\n"
        "same per-tensor rule and fallbacks as `ferry quantize` (see its --help). Types:\n  " +
        output_type_list() +
        "\n"
        "Presets:" +
        preset_list() +
        "\nllama3.2-1b's real context is 131072; its preset stops at 8192 because engines allocate the KV\n"
        "cache for seq_len by default (131072 positions = 8.6 GB of f32 cache). --seq-len overrides it.\n"
        "Examples:\n"
        "  ferry synth /work/bench-models/tinyllama-f32.bin --preset tinyllama-1.1b\n"
        "  ferry synth /work/bench-models/tinyllama-q4_0.gguf --preset tinyllama-1.1b --format gguf --type q4_0\n"
        "  ferry synth bitnet-2b.gguf --preset bitnet-b1.58-2b --format gguf --type tq2_0 --embedding-type f16\n"
        "  ferry synth tiny.bin --dim 64 --hidden-dim 172 --layers 2 --heads 8 --kv-heads 4 --vocab 512 "
        "--seq-len 128 --format v2");
    cmd->add_option("out", a.out, "Model file to write")->required();
    cmd->add_option("--preset", a.preset, "Shape to copy (list below); explicit dimensions override its values");
    cmd->add_option("--format", a.format,
                    "legacy, v1 (llama2.c f32, default), v2 (llama2.c int8 groups) or gguf (any --type)")
        ->check(CLI::IsMember({"legacy", "v1", "v2", "gguf"}));
    cmd->add_option("--type", a.type, "GGUF only: storage type of the weight matrices (default f32; list below)");
    cmd->add_option("--embedding-type", a.embedding_type,
                    "GGUF only: storage type of the vocabulary tables (token_embd, output) instead of --type, e.g. f16 "
                    "as BitNet b1.58 2B4T's published files keep it (default: --type)");
    cmd->add_option("--threads", a.threads, "GGUF only: threads encoding rows (default: one per core)")
        ->check(CLI::Range(0, 1024));
    cmd->add_option("--seed", a.seed, "Random seed (default 1)");
    cmd->add_option("--stddev", a.stddev, "Standard deviation of the weights (default 0.02)")
        ->check(CLI::Range(0.0f, 10.0f));
    cmd->add_option("--group-size", a.group_size,
                    "v2 quantization group (default: 64, halved until it divides dim and hidden_dim)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--classifier", a.classifier,
                    "tied (the embedding table classifies) or separate (an output matrix); default: the preset's, "
                    "else tied")
        ->check(CLI::IsMember({"tied", "separate"}));
    cmd->add_option("--dim", a.dim, "Width of the residual stream")->check(CLI::PositiveNumber);
    cmd->add_option("--hidden-dim", a.hidden_dim, "Width of the feed-forward layer")->check(CLI::PositiveNumber);
    cmd->add_option("--layers", a.layers, "Number of layers")->check(CLI::PositiveNumber);
    cmd->add_option("--heads", a.heads, "Query heads")->check(CLI::PositiveNumber);
    cmd->add_option("--kv-heads", a.kv_heads, "Key/value heads (default: --heads; fewer means grouped-query attention)")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--vocab", a.vocab, "Vocabulary size")->check(CLI::PositiveNumber);
    cmd->add_option("--seq-len", a.seq_len, "Context length")->check(CLI::PositiveNumber);
    cmd->add_option("--tokenizer-out", a.tokenizer_out,
                    "Also write a llama2.c tokenizer.bin of --vocab made-up pieces, so ferry run can drive a "
                    "llama2.c model (GGUF carries its own)");
    cmd->add_flag("--force", a.force, "Overwrite OUT if it exists");
    cmd->add_flag("-q,--quiet", a.quiet, "No progress bar");
    commands.push_back({cmd, [] { return cmd_synth(a); }, nullptr});
}

}  // namespace ferry
