// The SSE2 level's Q8_0 row widening for attention (kernels/attention_widen.h,
// vectorized by the compiler for SSE2; compiled with its flags, chosen at run time).
#if defined(__i386__) || defined(__x86_64__)
#include "kernels/attention_widen.h"
#include "kernels/dense_levels.h"

namespace ferry::kernels::sse2 {

void widen_q8_0(float* out, const BlockQ8_0* blocks, int begin, int n) { widen_q8_0_values(out, blocks, begin, n); }

}  // namespace ferry::kernels::sse2
#endif
