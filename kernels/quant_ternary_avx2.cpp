#if defined(__i386__) || defined(__x86_64__)
#include "kernels/quant_dot.h"

namespace ferry::kernels::avx2 {

QuantRowsFn ternary_rows(TensorType) { return nullptr; }

}  // namespace ferry::kernels::avx2
#endif
