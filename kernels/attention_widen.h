// Widening Q8_0 key/value rows for attention, written once and compiled into
// the portable, SSE2 and AVX2 files (ops.cpp, attention_sse2.cpp,
// attention_avx2.cpp), each vectorized by the compiler for its instruction
// set. static: no level's copy may stand in for another's at link time.
#pragma once
#include <algorithm>

#include "kernels/fp16.h"
#include "kernels/quant_blocks.h"

namespace ferry::kernels {

// Values [begin, begin + n) of the Q8_0 row `blocks` as f32: d * q, which is
// what dequantize_row gives (GGML's (d * 1) * q - 0 * 0, bit for bit). One
// multiply per value, so every level rounds alike.
static inline void widen_q8_0_values(float* out, const BlockQ8_0* blocks, int begin, int n) {
    for (int j = begin; j < begin + n;) {
        const BlockQ8_0& b = blocks[j / kQK8_0];
        const float d = fp16_to_fp32(b.d);
        const int8_t* q = b.qs + j % kQK8_0;
        const int m = std::min(begin + n - j, kQK8_0 - j % kQK8_0);  // values taken from this block
        if (m == kQK8_0) {
            for (int i = 0; i < kQK8_0; ++i) out[i] = d * static_cast<float>(q[i]);  // (a fixed count vectorizes)
        } else {
            for (int i = 0; i < m; ++i) out[i] = d * static_cast<float>(q[i]);
        }
        out += m;
        j += m;
    }
}

}  // namespace ferry::kernels
