// Writer for Karpathy's llama2.c checkpoints, the exact layouts
// common/llama2c_file.cpp reads (export.py's legacy_export, version1_export
// and version2_export). Tensors are pulled from a TensorSource one row at a
// time and streamed to disk: this is how `ferry synth` makes random models of
// real shapes and how tests make broken files and format conversions.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/model_config.h"
#include "common/model_file.h"
#include "common/tensor_source.h"
#include "common/tokenizer.h"

namespace ferry {

enum class Llama2cFormat { legacy, v1, v2 };

// "legacy" | "v1" | "v2"; false if unknown.
bool parse_llama2c_format(const std::string& name, Llama2cFormat* out);
const char* llama2c_format_name(Llama2cFormat f);

struct Llama2cWriteOptions {
    Llama2cFormat format = Llama2cFormat::v1;
    bool shared_classifier = true;  // false: a separate output.weight after the other tensors
    int group_size = 0;             // v2 only; 0 = export.py's choice (see default_group_size)
};

// export.py starts at 64 and halves until the group divides dim; ferry's
// row-wise kernels (like runq.c's matmul) also need it to divide hidden_dim.
int default_group_size(const ModelConfig& c);

// Every tensor `format` stores, in the order export.py writes them (the
// legacy RoPE tables are not tensors: the writer adds them itself).
std::vector<ModelTensor> llama2c_tensor_order(const ModelConfig& c, Llama2cFormat format, bool shared_classifier);

// Exact size of the file write_llama2c produces; -1 if it overflows.
int64_t llama2c_file_bytes(const ModelConfig& c, const Llama2cWriteOptions& o);

// runq.c's quantize: per group scale = max|w| / 127, q = round(w / scale).
// An all-zero group gets scale 0 and zeros (export.py would divide by zero).
void quantize_q8_groups(const float* x, int64_t n, int64_t group, int8_t* q, float* scales);

// Called with (bytes written, total bytes) as the file grows.
using WriteProgress = std::function<void(uint64_t done, uint64_t total)>;

// Writes `path` (through path + ".partial", renamed at the end so a failed
// write leaves no file that looks complete). Throws ferry::Error naming the
// path if the config is unusable or the disk refuses.
void write_llama2c(const std::string& path, const ModelConfig& c, TensorSource& source, const Llama2cWriteOptions& o,
                   const WriteProgress& progress = {});

// A vocabulary of vocab_size pieces that makes any model of that size
// printable: <unk>, <s>, </s>, the 256 <0xNN> byte pieces, then made-up words
// (" w259", ...) scored by rank. Its text means nothing; it lets `ferry run`
// drive a synthetic model.
Vocabulary synthetic_llama2c_vocabulary(int vocab_size);
// That vocabulary as a llama2.c tokenizer.bin.
void write_synthetic_tokenizer(const std::string& path, int vocab_size);

}  // namespace ferry
