// `ferry bench`: prefill and decode speed of a model, the weight bytes decode
// streams per second, and the memory read bandwidth of this machine measured
// by the same process with the same threads, so the two can be compared.
// Each run measures prefill, decode and a bandwidth pass back to back, so the
// ratio compares numbers taken under the same load of a shared machine.
// Token ids are fixed (no tokenizer), so synthetic models work.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <new>
#include <optional>
#include <nlohmann/json.hpp>
#include <unistd.h>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/model_file.h"
#include "common/net/hash.h"
#include "common/process_stats.h"
#include "common/progress.h"
#include "common/shard_memory.h"
#include "common/sampler.h"
#include "coordinator/commands/commands.h"
#include "coordinator/commands/options.h"
#include "coordinator/commands/setup.h"
#include "kernels/cpu_features.h"
#include "kernels/kernels.h"

namespace ferry {

namespace {

struct BenchArgs {
    RunOptions run;
    int prompt_tokens = 64;
    int gen_tokens = 32;
    int runs = 3;
    double bandwidth_gib = 1.0;
    int bandwidth_passes = 2;
    bool json = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Bytes one decode step reads: every tensor but the embedding table (of which
// it reads one row), plus the embedding table again when it is the classifier.
uint64_t weight_bytes_per_token(const ModelFile& f) {
    uint64_t bytes = 0;
    const bool tied = f.find("output.weight") == nullptr;
    for (const TensorInfo& t : f.tensors)
        if (t.name != "token_embd.weight" || tied) bytes += t.bytes;
    return bytes;
}

// The model's matrix types for which `level` has no kernel of its own (they
// run on the scalar kernels), e.g. the dense types on 32-bit ARM.
std::vector<std::string> scalar_fallbacks(const ModelFile& f, kernels::Level level) {
    std::vector<std::string> types;
    const bool tied = f.find("output.weight") == nullptr;
    for (const TensorInfo& t : f.tensors) {
        if (t.rows <= 1 || (t.name == "token_embd.weight" && !tied)) continue;  // vectors; a lookup table
        const std::string name = tensor_type_name(t.type);
        if (kernels::matmul_falls_back(t.type, level) && std::find(types.begin(), types.end(), name) == types.end())
            types.push_back(name);
    }
    return types;
}

// One run: a prefill, a decode, then the bandwidth probe, back to back.
struct Run {
    double prefill_tok_s = 0;
    double decode_tok_s = 0;
    double bandwidth = 0;  // bytes/s, best of the run's passes; 0 if not measured
    uint64_t checksum = 0;  // of the last decode step's logits
};

// Fixed prompt ids that any vocabulary holds: BOS, then a spread of ids.
std::vector<int> bench_prompt(int prompt_tokens, int vocab) {
    std::vector<int> prompt(static_cast<size_t>(prompt_tokens));
    for (int i = 0; i < prompt_tokens; ++i) prompt[i] = i == 0 ? 1 : 3 + (i * 7919) % std::max(1, vocab - 3);
    return prompt;
}

// Prefill of the prompt as one batch, then gen_tokens one at a time, each fed
// the argmax of the previous logits (a greedy run), then the probe.
Run measure_run(Engine& engine, const std::vector<int>& prompt, int gen_tokens, kernels::ReadBandwidthProbe* probe,
                int passes, kernels::ThreadPool* pool) {
    const int vocab = engine.config().vocab_size;
    const int n = static_cast<int>(prompt.size());
    Run r;
    auto t0 = std::chrono::steady_clock::now();
    const float* logits = engine.forward(prompt.data(), n, 0);
    r.prefill_tok_s = n / seconds_since(t0);
    int token = argmax(logits, vocab);
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < gen_tokens; ++i) {
        logits = engine.forward(&token, 1, n + i);
        token = argmax(logits, vocab);
    }
    r.decode_tok_s = gen_tokens / seconds_since(t0);
    r.checksum = net::checksum64(logits, sizeof(float) * static_cast<size_t>(vocab));
    for (int p = 0; probe && p < passes; ++p) r.bandwidth = std::max(r.bandwidth, probe->pass(pool));
    return r;
}

struct Summary {
    std::vector<double> prefill, decode, bandwidth, share;
};

Summary summarize(const std::vector<Run>& runs, uint64_t bytes_per_token) {
    Summary s;
    for (const Run& r : runs) {
        s.prefill.push_back(r.prefill_tok_s);
        s.decode.push_back(r.decode_tok_s);
        if (r.bandwidth > 0) {
            s.bandwidth.push_back(r.bandwidth);
            s.share.push_back(r.decode_tok_s * static_cast<double>(bytes_per_token) / r.bandwidth);
        }
    }
    return s;
}

// The probe's buffer, refused clearly when it would not fit in memory.
std::unique_ptr<kernels::ReadBandwidthProbe> make_probe(double gib) {
    const double bytes = gib * (1ull << 30);
    const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
    const std::string what = "--bandwidth-gib " + std::to_string(gib).substr(0, std::to_string(gib).find('.') + 3);
    if (physical > 0 && bytes > physical / 2)
        throw Error(what + ": the probe's buffer would take more than half of this machine's " + format_bytes(static_cast<uint64_t>(physical)) +
                    " of memory; a buffer a few times larger than the caches is enough (default 1)");
    try {
        return std::make_unique<kernels::ReadBandwidthProbe>(static_cast<int64_t>(bytes));
    } catch (const std::bad_alloc&) {
        throw Error(what + ": cannot allocate the probe's buffer; use a smaller one (default 1)");
    }
}

std::string hex64(uint64_t v) {
    char b[17];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
    return b;
}

int cmd_bench(BenchArgs a) {
    select_kernels(a.run.kernels);
    const ModelFile file = open_model(a.run.model, a.run.workers.empty());
    const ModelConfig& c = file.config;
    const int needed = a.prompt_tokens + a.gen_tokens;
    if (needed > c.seq_len)
        throw Error("--prompt-tokens + --gen-tokens = " + std::to_string(needed) +
                    " is longer than the model's context of " + std::to_string(c.seq_len));
    // The KV cache only needs the positions the benchmark runs.
    const int context = context_for(c, a.run.ctx, needed);
    if (context < needed)
        throw Error("--ctx " + std::to_string(context) + " is shorter than --prompt-tokens + --gen-tokens = " +
                    std::to_string(needed));
    kernels::ThreadPool pool(resolve_threads(a.run.threads));
    std::unique_ptr<Engine> engine = make_engine(file, a.run, context, &pool);

    std::unique_ptr<kernels::ReadBandwidthProbe> probe;
    if (a.bandwidth_passes > 0) probe = make_probe(a.bandwidth_gib);
    const std::vector<int> prompt = bench_prompt(a.prompt_tokens, c.vocab_size);
    engine->forward(prompt.data(), 1, 0);  // warm-up: touches every weight page (a cold mmap reads the disk)
    std::vector<Run> runs;
    for (int i = 0; i < a.runs; ++i)
        runs.push_back(measure_run(*engine, prompt, a.gen_tokens, probe.get(), a.bandwidth_passes, &pool));
    for (const Run& r : runs)
        if (r.checksum != runs[0].checksum)
            throw Error("the logits differ between runs of the same tokens (" + hex64(runs[0].checksum) + " vs " +
                        hex64(r.checksum) + "): the computation is not deterministic; please report this");

    const uint64_t per_token = weight_bytes_per_token(file);
    const Summary s = summarize(runs, per_token);
    const double prefill = median(s.prefill), decode = median(s.decode);
    const double streamed = decode * static_cast<double>(per_token);
    const double bandwidth = median(s.bandwidth), share = median(s.share);
    const char* level = kernels::level_name(kernels::active_level());
    const bool pipeline = !a.run.workers.empty();
    // How much of the file the kernel maps in 2 MB pages (Linux): decode and
    // prefill read every weight on every pass, so 4 KB pages cost them up to
    // a third (docs/BENCHMARKS.md, "Weights in large pages").
    const std::optional<uint64_t> told = pipeline ? std::nullopt : file_bytes_in_large_pages(file.path);
    const uint64_t large_pages = told.value_or(0);
    const std::string checksum = hex64(runs[0].checksum);
    const std::vector<std::string> fallbacks = scalar_fallbacks(file, kernels::active_level());
    std::string fallback_note;
    for (const std::string& t : fallbacks) fallback_note += (fallback_note.empty() ? "" : ", ") + t;
    if (!fallback_note.empty())
        fallback_note = "; " + fallback_note + " on the scalar kernels (" + level + " has none for " +
                        (fallbacks.size() == 1 ? "it" : "them") + ")";

    if (a.json) {
        nlohmann::json j = {
            {"model", a.run.model},
            {"format", file.format},
            {"dim", c.dim},
            {"hidden_dim", c.hidden_dim},
            {"n_layers", c.n_layers},
            {"n_heads", c.n_heads},
            {"n_kv_heads", c.n_kv_heads},
            {"vocab_size", c.vocab_size},
            {"kernels", level},
            {"scalar_fallback_types", fallbacks},
            {"cpu_features", kernels::cpu_features_string()},
            {"threads", pool.size()},
            {"workers", a.run.workers.size()},
            {"prompt_tokens", a.prompt_tokens},
            {"gen_tokens", a.gen_tokens},
            {"runs", a.runs},
            {"prefill_tok_s", prefill},
            {"prefill_tok_s_runs", s.prefill},
            {"decode_tok_s", decode},
            {"decode_tok_s_runs", s.decode},
            {"weight_bytes_per_token", per_token},
            {"weight_bytes_per_s", streamed},
            {"bandwidth_bytes_per_s", bandwidth},
            {"bandwidth_bytes_per_s_runs", s.bandwidth},
            {"bandwidth_buffer_bytes", probe ? probe->bytes() : 0},
            {"decode_share_of_bandwidth", share},
            {"decode_share_of_bandwidth_runs", s.share},
            {"logits_checksum", checksum},
            {"weights_file_bytes_in_large_pages", told ? nlohmann::json(large_pages) : nlohmann::json()},
        };
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("model      %s (%s): dim %d, hidden %d, %d layers, %d/%d heads, vocab %d\n", a.run.model.c_str(),
                    file.format.c_str(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size);
        std::printf("compute    %s kernels, %d thread%s%s%s\n", level, pool.size(), pool.size() == 1 ? "" : "s",
                    pipeline ? (", layers on " + std::to_string(a.run.workers.size()) + " workers").c_str() : "",
                    fallback_note.c_str());
        std::printf("prefill    %d tokens: %.1f tok/s (median of %d runs)\n", a.prompt_tokens, prefill, a.runs);
        std::printf("decode     %d tokens: %.2f tok/s (median of %d runs)\n", a.gen_tokens, decode, a.runs);
        std::printf("weights    %s read per decoded token: %s/s streamed\n",
                    format_bytes(per_token).c_str(), format_bytes(static_cast<uint64_t>(streamed)).c_str());
        if (told) {
            const uint64_t size = file.map.size();
            // Under half of a big file: most likely cached in 4 KB pages before
            // this run (as a download or a copy writes it), which stays so
            // until it leaves the page cache; or a filesystem without large
            // folios, where nothing helps.
            const bool small = size >= (64u << 20) && large_pages < size / 2;
            const std::string hint = "; a file cached in 4 KB pages before a run keeps them: where the filesystem has "
                                     "large folios, `dd if='" + file.path + "' iflag=nocache count=0` drops it from the "
                                     "cache and the next run reads it in 2 MB pages";
            std::printf("pages      %s of the %s file mapped in 2 MB pages%s\n", format_bytes(large_pages).c_str(),
                        format_bytes(size).c_str(), small ? hint.c_str() : "");
        }
        if (!probe) {
            std::printf("bandwidth  not measured (--bandwidth-passes 0)\n");
        } else {
            std::printf("bandwidth  %s/s (median of %d runs, each the best of %d passes over %s), %d thread%s\n",
                        format_bytes(static_cast<uint64_t>(bandwidth)).c_str(), a.runs, a.bandwidth_passes,
                        format_bytes(probe->bytes()).c_str(), pool.size(),
                        pool.size() == 1 ? "" : "s");
            std::printf("ratio      decode streams weights at %.0f%% of the read bandwidth (median of per-run ratios)%s%s\n",
                        share * 100,
                        share <= 1 || pipeline                   ? ""
                        : per_token <= last_level_cache_bytes() ? "; the weights fit in the caches"
                                                                 : "; over 100%: decode reads as fast as the probe, within the host's noise",
                        pipeline ? "; the weights are on the workers" : "");
        }
        std::printf("checksum   %s (the final logits; equal on every machine, kernel level and thread count)\n",
                    checksum.c_str());
    }
    std::fflush(stdout);
    report_engine(*engine);
    return 0;
}

}  // namespace

void register_bench(CLI::App& app, std::vector<Command>& commands) {
    static BenchArgs a;
    CLI::App* cmd = app.add_subcommand("bench", "Measure prefill and decode speed against this machine's bandwidth");
    cmd->footer(
        "After a one-token warm-up, each of --runs runs prefills --prompt-tokens fixed token ids as one batch,\n"
        "decodes --gen-tokens one at a time (greedy), then reads a --bandwidth-gib buffer with the same threads\n"
        "(best of --bandwidth-passes passes of kernels::read_bandwidth_probe). It reports the medians over the\n"
        "runs. Decode reads every weight once per token, so decode tok/s x the bytes of all layer tensors and\n"
        "the classifier is the weight bandwidth it achieves; the ratio is the median of each run's streamed\n"
        "bytes/s over that run's bandwidth, both measured back to back under the same load. GB are 10^9 bytes.\n"
        "The checksum hashes the final logits: ferry's kernels are bit-identical on every instruction set and\n"
        "thread count, so the same model and token counts give the same checksum on every machine.\n"
        "On Linux it also says how much of the model file the kernel maps in 2 MB pages (one process only):\n"
        "a model that fits in memory is read in in file order first, so a cold file lands in them; one cached\n"
        "in 4 KB pages before (as a download or a copy writes it) keeps them, and decode can be a third slower.\n"
        "No tokenizer is needed, so models from `ferry synth` work.\n"
        "Example: ferry bench tinyllama-f32.bin --threads 1 --json");
    add_model_options(cmd, a.run);
    cmd->remove_option(cmd->get_option("--tokenizer"));  // bench feeds token ids, never text
    add_pipeline_options(cmd, a.run);
    cmd->add_option("--prompt-tokens", a.prompt_tokens, "Tokens in the prefill batch (default 64)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--gen-tokens", a.gen_tokens, "Tokens decoded one at a time (default 32)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--runs,--repeat", a.runs, "Runs to take the median of (default 3)")->check(CLI::Range(1, 1000));
    cmd->add_option("--bandwidth-gib", a.bandwidth_gib, "Size of the bandwidth probe's buffer in GiB (default 1)")
        ->check(CLI::Range(0.01, 64.0));
    cmd->add_option("--bandwidth-passes", a.bandwidth_passes,
                    "Bandwidth passes per run, the best counts; 0 skips the probe (default 2)")
        ->check(CLI::Range(0, 1000));
    cmd->add_flag("--json", a.json, "Print one JSON object instead of the table");
    commands.push_back({cmd, [] {
        resolve_pool(a.run);
        return cmd_bench(a);
    }, &a.run.log_level});
}

}  // namespace ferry
