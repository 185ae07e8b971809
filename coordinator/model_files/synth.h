// Random-weight models of real shapes (`ferry synth`): speed can be measured
// on a 1.1B or 7B shape without shipping its weights.
#pragma once
#include <optional>
#include <cstdint>
#include <string>
#include <vector>

#include "common/llama2c_writer.h"
#include "common/model_config.h"
#include "common/progress.h"
#include "kernels/tensor_type.h"

namespace ferry {

struct SynthPreset {
    const char* name;
    ModelConfig config;
    bool shared_classifier;  // as the real model: tied embedding or a separate output matrix
    const char* note;
};

const std::vector<SynthPreset>& synth_presets();
// nullptr if unknown.
const SynthPreset* find_synth_preset(const std::string& name);

struct SynthOptions {
    ModelConfig config;
    Llama2cWriteOptions write;  // the llama2.c format, unless gguf
    bool gguf = false;          // GGUF of gguf_type, with a made-up vocabulary embedded
    TensorType gguf_type = TensorType::F32;
    std::optional<TensorType> embedding_type;  // token_embd and output, if not gguf_type (BitNet ships F16)
    int threads = 1;  // GGUF: threads encoding rows
    uint64_t seed = 1;
    float stddev = 0.02f;
    bool progress = true;  // a progress bar on stderr
};

// Writes the model, streaming (never the whole model in memory). Checks the
// disk has room first. Throws ferry::Error naming `path`.
void synth_model(const std::string& path, const SynthOptions& o);

}  // namespace ferry
