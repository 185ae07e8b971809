// `ferry quantize IN OUT --type T`: write a model as GGUF in another storage
// type (see coordinator/quantize.h for the rules).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/mapped_file.h"
#include "common/process_stats.h"
#include "common/progress.h"
#include "common/shard_memory.h"
#include "coordinator/commands/commands.h"
#include "coordinator/model_files/quantize.h"
#include "coordinator/commands/setup.h"

namespace ferry {

namespace {

struct QuantizeArgs {
    std::string in;
    std::string out;
    std::string type;
    std::string tokenizer;
    int threads = 0;
    bool force = false;
    bool quiet = false;
    bool round_to_ternary = false;
    std::string token_embedding_type, output_type;
};

// "48 tensors: 32 q8_0, 16 f32".
std::string type_census(const GgufFile& g) {
    std::vector<std::pair<TensorType, int>> counts;
    for (const GgufTensor& t : g.tensors) {
        auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == t.type; });
        if (it == counts.end()) counts.emplace_back(t.type, 1);
        else ++it->second;
    }
    std::string s = std::to_string(g.tensors.size()) + " tensors:";
    for (size_t i = 0; i < counts.size(); ++i)
        s += (i ? ", " : " ") + std::to_string(counts[i].second) + " " +
             ggml_type_name(static_cast<uint32_t>(counts[i].first));
    return s;
}

// A vocabulary table's type option: none if not given.
std::optional<TensorType> table_type(const char* flag, const std::string& name) {
    if (name.empty()) return std::nullopt;
    TensorType t;
    if (!parse_output_type(name, &t)) throw Error(std::string(flag) + " " + name + ": unknown; use one of " + output_type_list());
    return t;
}

int cmd_quantize(const QuantizeArgs& a) {
    GgufOutput o;
    if (!parse_output_type(a.type, &o.type))
        throw Error("--type " + a.type + ": unknown; use one of " + output_type_list());
    if (std::filesystem::exists(a.out) && !a.force)
        throw Error(a.out + ": already exists; pass --force to overwrite it");
    if (std::filesystem::exists(a.out) && std::filesystem::equivalent(a.in, a.out))
        throw Error(a.out + ": is the input; write to another file");
    o.threads = resolve_threads(a.threads);
    o.progress = !a.quiet;
    o.ternary_exact = !a.round_to_ternary;
    o.token_embedding_type = table_type("--token-embedding-type", a.token_embedding_type);
    o.output_type = table_type("--output-type", a.output_type);
    const auto t0 = std::chrono::steady_clock::now();
    quantize_model(a.in, a.out, a.tokenizer, o);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const MappedFile written(a.out);
    const GgufFile g = parse_gguf(written.data(), written.size(), a.out);
    std::fprintf(stderr, "wrote %s: %s, %s (from %s), %s, %.1f s, peak RSS %s\n", a.out.c_str(), a.type.c_str(),
                 format_bytes(written.size()).c_str(),
                 format_bytes(std::filesystem::file_size(a.in)).c_str(), type_census(g).c_str(), s,
                 format_bytes(read_process_memory().peak_rss).c_str());
    return 0;
}

}  // namespace

void register_quantize(CLI::App& app, std::vector<Command>& commands) {
    static QuantizeArgs a;
    CLI::App* cmd = app.add_subcommand("quantize", "Write a model as GGUF in another storage type (Q4_0, Q8_0, ...)");
    cmd->footer(
        "Reads GGUF or a llama2.c checkpoint; writes GGUF version 3.\n"
        "Which tensors change type (llama-quantize --pure's rule): every tensor named *.weight with two or\n"
        "more dimensions. Norms and other vectors keep their type. A matrix whose rows are not whole blocks\n"
        "of the type (32 values; 256 for the K-quants and TQ1_0/TQ2_0) falls back, and the tool says so per\n"
        "tensor: K-quants and ternary types to llama-quantize's substitute (Q2_K/Q3_K -> IQ4_NL, Q4_K -> Q5_0,\n"
        "Q5_K -> Q5_1, Q6_K -> Q8_0, TQ1_0/TQ2_0 -> Q4_0) where that fits, anything else to F32.\n"
        "A GGUF input keeps its metadata in order; general.quantization_version and general.file_type are\n"
        "set as llama-quantize sets them. A llama2.c input gets llama.* keys and its tokenizer (-z) embedded,\n"
        "so the output runs on its own. The file is streamed (never whole in memory), through OUT.partial.\n"
        "TQ1_0 and TQ2_0 store ternary matrices (BitNet b1.58's: -s, 0, +s) exactly and nothing else well:\n"
        "each matrix is encoded, decoded and compared first; one they would change keeps its type (said per\n"
        "tensor, with the largest change), and a model with no ternary matrix is refused unless\n"
        "--round-to-ternary.\n"
        "Types: " +
        output_type_list() +
        "\nExamples:\n"
        "  ferry quantize stories260K.gguf stories260K-q8_0.gguf --type q8_0\n"
        "  ferry quantize stories260K.bin stories260K.gguf --type f32 -z tok512.bin\n"
        "  ferry quantize bitnet-tq2_0.gguf bitnet-tq1_0.gguf --type tq1_0\n"
        "  ferry quantize llama-3.2-1b-f16.gguf l1b.gguf --type q4_K --token-embedding-type q4_0");
    cmd->add_option("in", a.in, "Model to read: GGUF or a llama2.c checkpoint")->required()->check(CLI::ExistingFile);
    cmd->add_option("out", a.out, "GGUF file to write")->required();
    cmd->add_option("--type", a.type, "Storage type of the weight matrices (list below)")->required();
    cmd->add_option("-z,--tokenizer", a.tokenizer,
                    "llama2.c input only: its tokenizer.bin (default: tokenizer.bin beside it)");
    cmd->add_option("--threads", a.threads, "Threads encoding rows (default: one per core)")
        ->check(CLI::Range(0, 1024));
    cmd->add_flag("--force", a.force, "Overwrite OUT if it exists");
    cmd->add_flag("-q,--quiet", a.quiet, "No progress bar");
    cmd->add_option("--token-embedding-type", a.token_embedding_type,
                    "Storage type of token_embd.weight, the vocabulary table (and the classifier when it is tied), "
                    "instead of --type; a small one lets a pool of small machines hold it (as llama-quantize's "
                    "--token-embedding-type)");
    cmd->add_option("--output-type", a.output_type,
                    "Storage type of output.weight, an untied classifier, instead of --type (llama-quantize's "
                    "--output-tensor-type)");
    cmd->add_flag("--round-to-ternary", a.round_to_ternary,
                  "TQ1_0/TQ2_0: round every matrix to ternary even where that changes it (for speed tests; a model "
                  "not trained ternary loses its meaning)");
    commands.push_back({cmd, [] { return cmd_quantize(a); }, nullptr});
}

}  // namespace ferry
