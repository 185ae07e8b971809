// `ferry bench`: prefill and decode speed of a model, the weight bytes decode
// streams per second, and the memory read bandwidth of this machine measured
// by the same process with the same threads, so the two can be compared.
// Token ids are fixed (no tokenizer), so synthetic models work.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "common/error.h"
#include "common/model_file.h"
#include "common/sampler.h"
#include "coordinator/commands.h"
#include "coordinator/options.h"
#include "coordinator/setup.h"
#include "coordinator/synth.h"
#include "kernels/cpu_features.h"
#include "kernels/kernels.h"

namespace ferry {

namespace {

struct BenchArgs {
    RunOptions run;
    int prompt_tokens = 64;
    int gen_tokens = 32;
    int repeat = 3;
    double bandwidth_gib = 1.0;
    int bandwidth_passes = 5;
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

struct Bandwidth {
    std::vector<double> passes;  // bytes per second
    double best() const { return passes.empty() ? 0 : *std::max_element(passes.begin(), passes.end()); }
    double median() const { return ferry::median(passes); }
    uint64_t buffer_bytes = 0;
};

// Sums a freshly written buffer in 4 MiB chunks handed out by the pool, so
// the threads read it the way matmul reads weights.
Bandwidth measure_bandwidth(double gib, int passes, kernels::ThreadPool& pool) {
    Bandwidth bw;
    if (passes <= 0) return bw;
    const int64_t n = static_cast<int64_t>(gib * (1ull << 30)) / 4;
    constexpr int64_t kChunk = 1 << 20;  // floats
    std::vector<float> buf(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
    bw.buffer_bytes = static_cast<uint64_t>(n) * 4;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<float> sums(static_cast<size_t>(chunks));
    for (int p = 0; p < passes; ++p) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
            for (int64_t c = c0; c < c1; ++c)
                sums[c] = kernels::read_bandwidth_probe(buf.data() + c * kChunk, std::min(kChunk, n - c * kChunk));
        });
        const double s = seconds_since(t0);
        static volatile float sink;  // keeps the reads from being optimized away
        for (float x : sums) sink = sink + x;
        bw.passes.push_back(static_cast<double>(bw.buffer_bytes) / s);
    }
    return bw;
}

struct Speed {
    std::vector<double> prefill, decode;  // tok/s per repeat
};

// Prefill of prompt_tokens fixed ids as one batch, then gen_tokens one at a
// time, each fed the argmax of the previous logits (a greedy run).
Speed measure_speed(Engine& engine, int prompt_tokens, int gen_tokens, int repeat) {
    const int vocab = engine.config().vocab_size;
    std::vector<int> prompt(static_cast<size_t>(prompt_tokens));
    for (int i = 0; i < prompt_tokens; ++i) prompt[i] = i == 0 ? 1 : 3 + (i * 7919) % std::max(1, vocab - 3);
    // Warm-up: one token touches every weight page (a cold mmap reads the disk).
    engine.forward(prompt.data(), 1, 0);
    Speed s;
    for (int r = 0; r < repeat; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        const float* logits = engine.forward(prompt.data(), prompt_tokens, 0);
        s.prefill.push_back(prompt_tokens / seconds_since(t0));
        int token = argmax(logits, vocab);
        t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < gen_tokens; ++i) token = argmax(engine.forward(&token, 1, prompt_tokens + i), vocab);
        s.decode.push_back(gen_tokens / seconds_since(t0));
    }
    return s;
}

std::string json_list(const std::vector<double>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) {
        char b[32];
        std::snprintf(b, sizeof b, "%s%.6g", i ? ", " : "", v[i]);
        s += b;
    }
    return s + "]";
}

std::string json_string(const std::string& v) {
    std::string s = "\"";
    for (char c : v) {
        if (c == '"' || c == '\\') s += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            s += b;
        } else {
            s += c;
        }
    }
    return s + "\"";
}

int cmd_bench(BenchArgs a) {
    select_kernels(a.run.kernels);
    const ModelFile file = open_model_file(a.run.model);
    const ModelConfig& c = file.config;
    const int needed = a.prompt_tokens + a.gen_tokens;
    if (needed > c.seq_len)
        throw Error("--prompt-tokens + --gen-tokens = " + std::to_string(needed) + " is longer than the model's context of " +
                    std::to_string(c.seq_len));
    // The KV cache only needs the positions the benchmark runs.
    if (a.run.ctx == 0) a.run.ctx = needed;
    const int context = context_for(c, a.run.ctx);
    if (context < needed)
        throw Error("--ctx " + std::to_string(context) + " is shorter than --prompt-tokens + --gen-tokens = " +
                    std::to_string(needed));
    kernels::ThreadPool pool(resolve_threads(a.run.threads));
    std::unique_ptr<Engine> engine = make_engine(file, a.run, context, &pool);

    const Speed speed = measure_speed(*engine, a.prompt_tokens, a.gen_tokens, a.repeat);
    const Bandwidth bw = measure_bandwidth(a.bandwidth_gib, a.bandwidth_passes, pool);
    const double prefill = median(speed.prefill), decode = median(speed.decode);
    const uint64_t per_token = weight_bytes_per_token(file);
    const double streamed = decode * static_cast<double>(per_token);
    const double share = bw.best() > 0 ? streamed / bw.best() : 0;
    const char* level = kernels::level_name(kernels::active_level());
    const bool pipeline = !a.run.workers.empty();

    if (a.json) {
        std::printf(
            "{\"model\": %s, \"format\": %s, \"dim\": %d, \"hidden_dim\": %d, \"n_layers\": %d, \"n_heads\": %d, "
            "\"n_kv_heads\": %d, \"vocab_size\": %d, \"kernels\": \"%s\", \"threads\": %d, \"workers\": %zu, "
            "\"prompt_tokens\": %d, \"gen_tokens\": %d, \"repeat\": %d, \"prefill_tok_s\": %.6g, "
            "\"prefill_tok_s_runs\": %s, \"decode_tok_s\": %.6g, \"decode_tok_s_runs\": %s, "
            "\"weight_bytes_per_token\": %llu, \"weight_bytes_per_s\": %.6g, \"bandwidth_bytes_per_s_best\": %.6g, "
            "\"bandwidth_bytes_per_s_median\": %.6g, \"bandwidth_passes\": %s, \"bandwidth_buffer_bytes\": %llu, "
            "\"decode_share_of_bandwidth\": %.4f}\n",
            json_string(a.run.model).c_str(), json_string(file.format).c_str(), c.dim, c.hidden_dim, c.n_layers,
            c.n_heads, c.n_kv_heads, c.vocab_size, level, pool.size(), a.run.workers.size(), a.prompt_tokens,
            a.gen_tokens, a.repeat, prefill, json_list(speed.prefill).c_str(), decode,
            json_list(speed.decode).c_str(), static_cast<unsigned long long>(per_token), streamed, bw.best(),
            bw.median(), json_list(bw.passes).c_str(), static_cast<unsigned long long>(bw.buffer_bytes), share);
    } else {
        std::printf("model      %s (%s): dim %d, hidden %d, %d layers, %d/%d heads, vocab %d\n", a.run.model.c_str(),
                    file.format.c_str(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size);
        std::printf("compute    %s kernels, %d thread%s%s\n", level, pool.size(), pool.size() == 1 ? "" : "s",
                    pipeline ? (", layers on " + std::to_string(a.run.workers.size()) + " workers").c_str() : "");
        std::printf("prefill    %d tokens: %.1f tok/s (median of %d)\n", a.prompt_tokens, prefill, a.repeat);
        std::printf("decode     %d tokens: %.2f tok/s (median of %d)\n", a.gen_tokens, decode, a.repeat);
        std::printf("weights    %s read per decoded token: %s/s streamed\n",
                    format_gb(static_cast<double>(per_token)).c_str(), format_gb(streamed).c_str());
        if (bw.passes.empty()) {
            std::printf("bandwidth  not measured (--bandwidth-passes 0)\n");
        } else {
            std::printf("bandwidth  %s/s best, %s/s median of %zu passes over %s, %d thread%s\n",
                        format_gb(bw.best()).c_str(), format_gb(bw.median()).c_str(), bw.passes.size(),
                        format_gb(static_cast<double>(bw.buffer_bytes)).c_str(), pool.size(),
                        pool.size() == 1 ? "" : "s");
            std::printf("ratio      decode streams weights at %.0f%% of the best measured bandwidth%s\n", share * 100,
                        pipeline ? " (of this machine; the weights are on the workers)" : "");
        }
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
        "Runs --prompt-tokens fixed token ids as one batch (prefill), then --gen-tokens one at a time (decode),\n"
        "--repeat times after a one-token warm-up, and reports the medians. No tokenizer is needed, so models\n"
        "from `ferry synth` work. Decode reads every weight once per token, so decode tok/s x the bytes of all\n"
        "layer tensors and the classifier is the weight bandwidth it achieves; the same process then sums a\n"
        "--bandwidth-gib buffer with the same threads (kernels::read_bandwidth_probe) --bandwidth-passes times\n"
        "and reports the best and median pass. The ratio uses the best pass. GB are 10^9 bytes.\n"
        "Example: ferry bench /work/bench-models/tinyllama-f32.bin --threads 1 --json");
    add_model_options(cmd, a.run);
    cmd->remove_option(cmd->get_option("--tokenizer"));  // bench feeds token ids, never text
    add_pipeline_options(cmd, a.run);
    cmd->add_option("--prompt-tokens", a.prompt_tokens, "Tokens in the prefill batch (default 64)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--gen-tokens", a.gen_tokens, "Tokens decoded one at a time (default 32)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--repeat", a.repeat, "Runs to take the median of (default 3)")->check(CLI::Range(1, 1000));
    cmd->add_option("--bandwidth-gib", a.bandwidth_gib, "Size of the bandwidth probe's buffer in GiB (default 1)")
        ->check(CLI::Range(0.01, 64.0));
    cmd->add_option("--bandwidth-passes", a.bandwidth_passes, "Passes over the buffer; 0 skips the probe (default 5)")
        ->check(CLI::Range(0, 1000));
    cmd->add_flag("--json", a.json, "Print one JSON object instead of the table");
    commands.push_back({cmd, [] { return cmd_bench(a); }, &a.run.log_level});
}

}  // namespace ferry
