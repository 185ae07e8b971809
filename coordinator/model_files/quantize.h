// Writing models as GGUF in any storage type: `ferry quantize` (from GGUF or
// a llama2.c checkpoint) and `ferry synth --format gguf` (random weights).
// Rows are decoded to f32, re-encoded by the kernels' reference quantizers
// and streamed to disk a few MB at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/model_config.h"
#include "common/tensor_source.h"
#include "common/tokenizer.h"
#include "kernels/tensor_type.h"

namespace ferry {

// The types a model can be written in: F32, F16, BF16, Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1, Q2_K .. Q6_K, IQ4_NL, TQ1_0, TQ2_0.
const std::vector<TensorType>& output_types();
// "q4_0", "Q4_K", ... (case-insensitive); false if not an output type.
bool parse_output_type(const std::string& name, TensorType* out);
// "f32, f16, bf16, q8_0, ..." for help texts and messages.
std::string output_type_list();

// llama.cpp's general.file_type (LLAMA_FTYPE_MOSTLY_*) of a model written as `type`.
uint32_t llama_file_type(TensorType type);

// Whether rows of n values can be stored as `type` (f32 always can).
bool rows_fit(TensorType type, int64_t n);

// The type a tensor gets when a model is written as `wanted`, by
// llama-quantize --pure's rule: every tensor named "*.weight" with two or
// more dimensions gets `wanted`; other tensors keep `current`. Where the
// rows (row_length values) are not whole blocks of `wanted`, K-quants and
// ternary types take llama-quantize's substitute (Q4_K -> Q5_0, Q6_K ->
// Q8_0, TQ2_0 -> Q4_0, ...) if that fits, and otherwise the tensor stays F32;
// *why then says so in one line.
TensorType choose_tensor_type(std::string_view name, int n_dims, int64_t row_length, TensorType current,
                              TensorType wanted, std::string* why);

// Encodes rows of f32 as `type` (rows_fit(type, n_per_row) must hold).
void encode_rows(TensorType type, const float* src, uint8_t* dst, int64_t n_rows, int64_t n_per_row);
// Decodes rows of `type` to f32.
void decode_rows(TensorType type, const uint8_t* src, float* dst, int64_t n_rows, int64_t n_per_row);

struct GgufOutput {
    TensorType type = TensorType::F32;
    int threads = 1;       // rows are encoded in parallel
    bool progress = true;  // a progress bar on stderr
    // Gets one line per tensor that cannot be `type` (default: stderr).
    std::function<void(const std::string&)> note;
    // TQ1_0/TQ2_0 only where exact: a matrix they would change keeps its type
    // (said in a note), and a model with no ternary matrix is refused.
    // `ferry quantize` sets it unless --round-to-ternary; `ferry synth` (random
    // weights for speed) does not.
    bool ternary_exact = false;
    // The vocabulary tables in their own types instead of `type`, as
    // llama-quantize's --token-embedding-type and --output-tensor-type: the
    // table a tied classifier shares is token_embd. (BitNet's published files
    // keep it F16 beside ternary layers; a pool of small machines wants it small.)
    std::optional<TensorType> token_embedding_type;
    std::optional<TensorType> output_type;
};

// Throws ferry::Error naming `path` unless its disk has `bytes` free.
void ensure_disk_space(const std::string& path, uint64_t bytes);

// Tensors of a model in the order llama.cpp's llama2.c converter writes
// them: token_embd, output_norm, output (unless tied), then per layer
// attn_q, attn_k, attn_v, attn_output, attn_norm, ffn_gate, ffn_down, ffn_up,
// ffn_norm and the architecture's vectors (extra_layer_tensors).
std::vector<ModelTensor> model_gguf_tensors(const ModelConfig& c, bool tied_classifier);

// Writes a model of any architecture as GGUF: general.* and <arch>.* keys for `c`, the
// vocabulary embedded (so the file runs on its own), the tensors of
// model_gguf_tensors from `source`. Through path + ".partial". Throws
// ferry::Error naming the path.
void write_model_gguf(const std::string& path, const ModelConfig& c, bool tied_classifier, TensorSource& source,
                      const Vocabulary& vocab, const std::string& name, const GgufOutput& o);

// `ferry quantize`: `in` (GGUF, or a llama2.c checkpoint with its tokenizer
// at `tokenizer`, default tokenizer.bin beside it) written to `out` as GGUF
// of o.type. A GGUF input keeps its metadata (in order) and tensor order,
// with general.quantization_version and general.file_type set as
// llama-quantize sets them.
void quantize_model(const std::string& in, const std::string& out, const std::string& tokenizer, const GgufOutput& o);

}  // namespace ferry
