// Finds the tokenizer for a model: inside the model file (GGUF) or a
// llama2.c tokenizer.bin given by path.
#pragma once
#include <string>

#include "common/gguf_file.h"
#include "common/model_file.h"
#include "common/tokenizer.h"

namespace ferry {

// tokenizer_path may be empty: then the model's own vocabulary (GGUF), or
// tokenizer.bin beside the model. Throws ferry::Error naming what is missing.
Tokenizer load_tokenizer(const ModelFile& model, const std::string& tokenizer_path);

// The tokenizer.ggml.* keys of a GGUF file (model "llama" or "gpt2").
// Throws ferry::Error naming the file and the key that is missing or wrong.
Tokenizer tokenizer_from_gguf(const GgufFile& g);

}  // namespace ferry
