// Finds the tokenizer for a model: inside the model file (GGUF) or a
// llama2.c tokenizer.bin given by path.
#pragma once
#include <string>

#include "common/gguf_file.h"
#include "common/gguf_writer.h"
#include "common/model_file.h"
#include "common/tokenizer.h"

namespace ferry {

// tokenizer_path may be empty: then the model's own vocabulary (GGUF), or
// tokenizer.bin beside the model. Throws ferry::Error naming what is missing
// or does not match the model's vocabulary (force: only a warning for a file
// with more pieces than the model has, read as run.c reads it).
Tokenizer load_tokenizer(const ModelFile& model, const std::string& tokenizer_path, bool force = false);

// The tokenizer.ggml.* keys of a GGUF file (model "llama" or "gpt2").
// Throws ferry::Error naming the file and the key that is missing or wrong.
Tokenizer tokenizer_from_gguf(const GgufFile& g);

// The tokenizer.ggml.* keys that describe `v`, as tokenizer_from_gguf and
// llama.cpp read them (a "llama2c" vocabulary must be converted first).
void add_vocabulary_to_gguf(GgufWriter& w, const Vocabulary& v);

// A llama2.c tokenizer.bin vocabulary as the GGUF "llama" (SentencePiece)
// vocabulary llama.cpp's llama2.c converter makes of it: ids 0/1/2 become
// <unk>/<s>/</s> (unknown/control), <0xNN> pieces byte tokens, spaces U+2581.
Vocabulary spm_vocabulary_from_llama2c(const Vocabulary& v);

}  // namespace ferry
