// bitnet.cpp's I2_S, the format Microsoft publishes BitNet b1.58 2B4T in
// (ggml-model-i2_s.gguf, GGML type id 36 in bitnet.cpp's ggml). ferry reads it
// only to convert it, exactly, to TQ2_0 or TQ1_0 (`ferry quantize`); the
// kernels multiply those.
//
// The layout, from microsoft/BitNet src/ggml-bitnet-mad.cpp (quantize_i2_s,
// the x86 branch that wrote the published file; QK_I2_S = 128): the whole
// tensor's values in row-major order, in blocks of 128 values held by 32
// bytes; value j of a block is 2 bits of byte j % 32 at shift 6 - 2 * (j / 32),
// code 0, 1, 2 meaning -1, 0, +1; after the n / 4 bytes of codes one f32
// scale for the whole tensor (its largest magnitude), padded to 32 bytes.
// A value is (code - 1) * scale.
//
// The same type id holds other layouts that the file does not record:
// bitnet.cpp built for ARM packs blocks of 64 values in 16 bytes, and its
// newer x86 builds without ACT_PARALLEL interleave 4 rows per byte. ferry
// reads the layout above.
#pragma once
#include <cstdint>

namespace ferry::kernels {

constexpr int64_t kI2sBlockValues = 128;
constexpr int64_t kI2sTailBytes = 32;  // the f32 scale, padded

// Row `cols` values (a multiple of 128) from their cols / 4 bytes of codes.
void i2s_unpack_row(const uint8_t* codes, int64_t cols, float scale, float* out);
// The ternary values t (-1, 0, +1) of a row as codes; the reverse of unpack
// with scale 1 (tests write I2_S files with it).
void i2s_pack_row(const int8_t* t, int64_t cols, uint8_t* codes);
// The tensor's scale: the f32 after its n / 4 bytes of codes.
float i2s_scale(const uint8_t* tensor, int64_t n_values);

}  // namespace ferry::kernels
