// Finds the tokenizer for a model: inside the model file (GGUF) or a
// llama2.c tokenizer.bin given by path.
#pragma once
#include <string>

#include "common/model_file.h"
#include "common/tokenizer.h"

namespace ferry {

// tokenizer_path may be empty: then the model's own vocabulary, or
// tokenizer.bin beside the model. Throws ferry::Error naming what is missing.
Tokenizer load_tokenizer(const ModelFile& model, const std::string& tokenizer_path);

}  // namespace ferry
