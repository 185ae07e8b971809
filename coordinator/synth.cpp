#include "coordinator/synth.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include <unistd.h>

#include "common/error.h"

namespace ferry {

namespace {

ModelConfig shape(int dim, int hidden_dim, int n_layers, int n_heads, int n_kv_heads, int vocab_size, int seq_len) {
    ModelConfig c;
    c.dim = dim;
    c.hidden_dim = hidden_dim;
    c.n_layers = n_layers;
    c.n_heads = n_heads;
    c.n_kv_heads = n_kv_heads;
    c.vocab_size = vocab_size;
    c.seq_len = seq_len;
    return c;
}

// On a terminal, redraws one stderr line at most once per percent; into a
// log file, writes a line every 10%.
class ProgressBar {
public:
    explicit ProgressBar(std::string label)
        : label_(std::move(label)), start_(std::chrono::steady_clock::now()), tty_(isatty(fileno(stderr))) {}
    void update(uint64_t done, uint64_t total) {
        const int step = tty_ ? 1 : 10;
        const int percent = (total ? static_cast<int>(done * 100 / total) : 100) / step * step;
        if (percent == last_percent_) return;
        last_percent_ = percent;
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        constexpr int kWidth = 30;
        const int filled = percent * kWidth / 100;
        std::fprintf(stderr, "%s%s [%s%s] %3d%% %s of %s, %.0f MB/s", tty_ ? "\r" : "", label_.c_str(),
                     std::string(filled, '#').c_str(),
                     std::string(kWidth - filled, '.').c_str(), percent, format_gb(static_cast<double>(done)).c_str(),
                     format_gb(static_cast<double>(total)).c_str(), s > 0 ? done / s / 1e6 : 0.0);
        if (!tty_ || done >= total) std::fputc('\n', stderr);
        std::fflush(stderr);
    }

private:
    std::string label_;
    std::chrono::steady_clock::time_point start_;
    bool tty_;
    int last_percent_ = -1;
};

}  // namespace

const std::vector<SynthPreset>& synth_presets() {
    static const std::vector<SynthPreset> presets = {
        {"stories260k", shape(64, 172, 5, 8, 4, 512, 512), true, "the shape of stories260K.bin (tests)"},
        {"stories15m", shape(288, 768, 6, 6, 6, 32000, 256), true, "karpathy/tinyllamas stories15M"},
        {"stories110m", shape(768, 2048, 12, 12, 12, 32000, 1024), true, "karpathy/tinyllamas stories110M"},
        {"tinyllama-1.1b", shape(2048, 5632, 22, 32, 4, 32000, 2048), false, "TinyLlama 1.1B (GQA 32/4)"},
        {"llama2-7b", shape(4096, 11008, 32, 32, 32, 32000, 4096), false, "Llama 2 7B"},
        // The real model's context is 131072. A checkpoint stores nothing per
        // position (the legacy RoPE tables aside), but every engine allocates
        // its KV cache for seq_len by default: 131072 positions are 8.6 GB of
        // f32 cache, more than an old PC has. 8192 keeps it at 537 MB.
        {"llama3.2-1b", shape(2048, 8192, 16, 32, 8, 128256, 8192), true,
         "Llama 3.2 1B, seq_len capped at 8192 (see below)"},
    };
    return presets;
}

const SynthPreset* find_synth_preset(const std::string& name) {
    for (const SynthPreset& p : synth_presets())
        if (name == p.name) return &p;
    return nullptr;
}

std::string format_gb(double bytes) {
    char buf[32];
    if (bytes >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1f KB", bytes / 1e3);
    return buf;
}

void synth_model(const std::string& path, const SynthOptions& o) {
    const std::string problem = o.config.check();
    if (!problem.empty()) throw Error("synth: the shape is not usable: " + problem);
    const int64_t bytes = llama2c_file_bytes(o.config, o.write);
    if (bytes < 0) throw Error("synth: the file size of this shape overflows");
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) dir = ".";
    std::error_code ec;
    const std::filesystem::space_info space = std::filesystem::space(dir, ec);
    if (ec) throw Error(path + ": cannot write there: " + ec.message());
    if (space.available < static_cast<uint64_t>(bytes))
        throw Error(path + ": needs " + format_gb(static_cast<double>(bytes)) + ", the disk has " +
                    format_gb(static_cast<double>(space.available)) + " free");

    RandomTensorSource source(o.seed, o.stddev);
    ProgressBar bar("synth " + std::filesystem::path(path).filename().string());
    WriteProgress progress;
    if (o.progress) progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };
    write_llama2c(path, o.config, source, o.write, progress);
}

}  // namespace ferry
