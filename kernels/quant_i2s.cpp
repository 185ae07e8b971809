#include "kernels/quant_i2s.h"

#include <cstring>

namespace ferry::kernels {

void i2s_unpack_row(const uint8_t* codes, int64_t cols, float scale, float* out) {
    for (int64_t b = 0; b < cols / kI2sBlockValues; ++b) {
        const uint8_t* q = codes + b * 32;
        float* y = out + b * kI2sBlockValues;
        for (int j = 0; j < kI2sBlockValues; ++j) {
            const int code = (q[j % 32] >> (6 - 2 * (j / 32))) & 3;
            y[j] = static_cast<float>(code - 1) * scale;
        }
    }
}

void i2s_pack_row(const int8_t* t, int64_t cols, uint8_t* codes) {
    std::memset(codes, 0, static_cast<size_t>(cols / 4));
    for (int64_t b = 0; b < cols / kI2sBlockValues; ++b)
        for (int j = 0; j < kI2sBlockValues; ++j)
            codes[b * 32 + j % 32] |= static_cast<uint8_t>((t[b * kI2sBlockValues + j] + 1) << (6 - 2 * (j / 32)));
}

float i2s_scale(const uint8_t* tensor, int64_t n_values) {
    float s;
    std::memcpy(&s, tensor + n_values / 4, sizeof s);
    return s;
}

}  // namespace ferry::kernels
