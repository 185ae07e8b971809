#include "coordinator/model_files/synth.h"

#include <cstdio>
#include <filesystem>

#include "common/error.h"
#include "common/tokenizer_loader.h"
#include "coordinator/model_files/quantize.h"

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

// The architectures' own fields on top of a shape.
ModelConfig with_arch(ModelConfig c, Arch arch, float rope_theta, float norm_eps, int head_dim = 0) {
    c.arch = arch;
    c.rope_theta = rope_theta;
    c.norm_eps = norm_eps;
    c.head_dim = head_dim;
    return c;
}

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
        // Qwen/Qwen2.5-0.5B's config.json (context 32768, capped as above).
        {"qwen2.5-0.5b", with_arch(shape(896, 4864, 24, 14, 2, 151936, 8192), Arch::qwen2, 1000000.0f, 1e-6f), true,
         "Qwen2.5 0.5B (q/k/v biases, GQA 14/2), seq_len capped at 8192"},
        // Qwen/Qwen3-0.6B: head length 128, so q (2048) is wider than the embedding (1024).
        {"qwen3-0.6b", with_arch(shape(1024, 3072, 28, 16, 8, 151936, 8192), Arch::qwen3, 1000000.0f, 1e-6f, 128),
         true, "Qwen3 0.6B (q/k norms, head 128), seq_len capped at 8192"},
        // microsoft/bitnet-b1.58-2B-4T's config.json; its context is 4096.
        {"bitnet-b1.58-2b", with_arch(shape(2560, 6912, 30, 20, 5, 128256, 4096), Arch::bitnet, 500000.0f, 1e-5f),
         true, "BitNet b1.58 2B4T (sub-norms, ternary projections: write it as tq2_0 or tq1_0)"},
    };
    return presets;
}

const SynthPreset* find_synth_preset(const std::string& name) {
    for (const SynthPreset& p : synth_presets())
        if (name == p.name) return &p;
    return nullptr;
}

void synth_model(const std::string& path, const SynthOptions& o) {
    const std::string problem = o.config.check();
    if (!problem.empty()) throw Error("synth: the shape is not usable: " + problem);
    RandomTensorSource source(o.seed, o.stddev);
    if (o.gguf) {
        GgufOutput out;
        out.type = o.gguf_type;
        out.token_embedding_type = out.output_type = o.embedding_type;
        out.threads = o.threads;
        out.progress = o.progress;
        const Vocabulary vocab = spm_vocabulary_from_llama2c(synthetic_llama2c_vocabulary(o.config.vocab_size));
        write_model_gguf(path, o.config, o.write.shared_classifier, source, vocab, "ferry synth", out);
        return;
    }
    const int64_t bytes = llama2c_file_bytes(o.config, o.write);
    if (bytes < 0) throw Error("synth: the file size of this shape overflows");
    ensure_disk_space(path, static_cast<uint64_t>(bytes));
    Progress bar("synth " + std::filesystem::path(path).filename().string());
    WriteProgress progress;
    if (o.progress) progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };
    write_llama2c(path, o.config, source, o.write, progress);
}

}  // namespace ferry
