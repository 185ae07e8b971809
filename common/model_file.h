// A model file opened for reading: its config and a directory of its tensors,
// all pointing into one read-only memory map. llama2.c checkpoints and GGUF
// files both come out as this.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/gguf_file.h"
#include "common/gguf_writer.h"
#include "common/mapped_file.h"
#include "common/model_config.h"
#include "kernels/tensor_type.h"

namespace ferry {

struct TensorInfo {
    std::string name;  // GGUF naming: "token_embd.weight", "blk.3.attn_q.weight", ...
    TensorType type = TensorType::F32;
    int64_t rows = 0;  // 1 for vectors
    int64_t cols = 0;
    int64_t group = 0;    // Q8_GROUP only
    uint64_t offset = 0;  // from the start of the file
    uint64_t bytes = 0;
};

struct ModelFile {
    std::string path;
    std::string format;  // "llama2.c legacy", "llama2.c v1", "llama2.c v2", "gguf"
    ModelConfig config;
    std::vector<TensorInfo> tensors;
    std::string chat_template;  // the model's own (GGUF tokenizer.chat_template); empty if none
    MappedFile map;
    // GGUF files: every metadata key (tokenizer, chat template, ...) and the
    // tensor infos in their ggml shapes, as views into `map`. Null for llama2.c.
    std::shared_ptr<const GgufFile> gguf;

    // nullptr if absent.
    const TensorInfo* find(const std::string& name) const;
    const uint8_t* data(const TensorInfo& t) const { return map.data() + t.offset; }
};

// The tensor type most of a model's layer weight bytes are stored in ("f32",
// "q8_0", ...): what decode streams, and whose measured GB/s plans it.
std::string dominant_tensor_type(const ModelFile& file);

// Opens any supported model file, telling the format by its first bytes.
// Throws ferry::Error with one line naming the file and the problem.
ModelFile open_model_file(const std::string& path);

// GGUF (versions 2 and 3) of architecture "llama".
ModelFile open_gguf_model_file(const std::string& path);
// The shapes a parsed GGUF file's llama.* metadata describes. Throws
// ferry::Error naming the file and the key that is missing, wrong or asks for
// something the forward pass does not do.
ModelConfig gguf_model_config(const GgufFile& g);
// The general.* and llama.* keys gguf_model_config reads back as `c`.
void add_model_metadata(GgufWriter& w, const ModelConfig& c, const std::string& name);

// llama2.c checkpoints: legacy header, "ak42" version 1 (f32) and 2 (Q8 groups).
ModelFile open_llama2c_file(const std::string& path);

}  // namespace ferry
