// Storage types of weight matrices, with GGML's numeric ids so GGUF files map 1:1.
// Kernels work on these layouts directly; nothing widens a matrix to f32.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ferry {

enum class TensorType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ4_NL = 20,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    // bitnet.cpp's I2_S (kernels/quant_i2s.h): read to be converted, never multiplied.
    I2_S = 36,
    // llama2.c "ak42" version 2: int8 values of the whole matrix, then one f32
    // scale per group of `group` values. Not a GGML type; the id is ferry's own.
    Q8_GROUP = 1000,
};

struct TensorTypeTraits {
    const char* name;
    int64_t block_values;  // values per block (1 for plain floats)
    int64_t block_bytes;   // bytes per block
};

// nullptr for an id ferry does not know.
const TensorTypeTraits* tensor_type_traits(TensorType type);
const char* tensor_type_name(TensorType type);
// Parses "f32", "q8_0", ... (case-insensitive). Returns false if unknown.
bool parse_tensor_type(const char* name, TensorType* out);

// Bytes a whole tensor stores after its rows (I2_S's scale; 0 for the rest).
int64_t tensor_tail_bytes(TensorType type);
// Bytes of a rows x cols matrix; group only matters for Q8_GROUP.
// Returns -1 if cols is not a whole number of blocks or the size overflows.
int64_t tensor_bytes(TensorType type, int64_t rows, int64_t cols, int64_t group = 0);

// A read-only view of a row-major matrix in its stored type. Row r starts at
// data + r * row_bytes for every block type; Q8_GROUP keeps its scales after
// all the int8 values (scales = data + rows*cols).
struct Matrix {
    TensorType type = TensorType::F32;
    const void* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t group = 0;  // Q8_GROUP only
};

}  // namespace ferry
