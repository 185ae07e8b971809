#include "kernels/tensor_type.h"

#include <strings.h>

#include <limits>

#include "kernels/quant_i2s.h"

namespace ferry {

namespace {
struct Entry {
    TensorType type;
    TensorTypeTraits traits;
};
// Block sizes as in GGML's type traits.
const Entry kTypes[] = {
    {TensorType::F32, {"f32", 1, 4}},
    {TensorType::F16, {"f16", 1, 2}},
    {TensorType::BF16, {"bf16", 1, 2}},
    {TensorType::Q4_0, {"q4_0", 32, 18}},
    {TensorType::Q4_1, {"q4_1", 32, 20}},
    {TensorType::Q5_0, {"q5_0", 32, 22}},
    {TensorType::Q5_1, {"q5_1", 32, 24}},
    {TensorType::Q8_0, {"q8_0", 32, 34}},
    {TensorType::Q2_K, {"q2_k", 256, 84}},
    {TensorType::Q3_K, {"q3_k", 256, 110}},
    {TensorType::Q4_K, {"q4_k", 256, 144}},
    {TensorType::Q5_K, {"q5_k", 256, 176}},
    {TensorType::Q6_K, {"q6_k", 256, 210}},
    {TensorType::Q8_K, {"q8_k", 256, 292}},
    {TensorType::IQ4_NL, {"iq4_nl", 32, 18}},
    {TensorType::TQ1_0, {"tq1_0", 256, 54}},
    {TensorType::TQ2_0, {"tq2_0", 256, 66}},
    {TensorType::I2_S, {"i2_s", 128, 32}},
    {TensorType::Q8_GROUP, {"q8_group", 1, 1}},
};
}  // namespace

const TensorTypeTraits* tensor_type_traits(TensorType type) {
    for (const Entry& e : kTypes)
        if (e.type == type) return &e.traits;
    return nullptr;
}

const char* tensor_type_name(TensorType type) {
    const TensorTypeTraits* t = tensor_type_traits(type);
    return t ? t->name : "unknown";
}

bool parse_tensor_type(const char* name, TensorType* out) {
    for (const Entry& e : kTypes) {
        if (strcasecmp(name, e.traits.name) == 0) {
            *out = e.type;
            return true;
        }
    }
    return false;
}

int64_t tensor_tail_bytes(TensorType type) { return type == TensorType::I2_S ? kernels::kI2sTailBytes : 0; }

int64_t tensor_bytes(TensorType type, int64_t rows, int64_t cols, int64_t group) {
    const TensorTypeTraits* t = tensor_type_traits(type);
    if (!t || rows < 0 || cols < 0) return -1;
    const int64_t max = std::numeric_limits<int64_t>::max();
    if (cols != 0 && rows > max / cols) return -1;
    const int64_t values = rows * cols;
    if (type == TensorType::Q8_GROUP) {
        if (group <= 0 || cols % group != 0) return -1;
        const int64_t scales = values / group;
        if (scales > (max - values) / 4) return -1;
        return values + scales * 4;
    }
    if (cols % t->block_values != 0) return -1;
    const int64_t blocks = values / t->block_values;
    if (blocks != 0 && t->block_bytes > max / blocks) return -1;
    return blocks * t->block_bytes;
}

}  // namespace ferry
