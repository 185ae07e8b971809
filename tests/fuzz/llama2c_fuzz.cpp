// libFuzzer target for llama2.c checkpoints (legacy, ak42 v1 and v2) and the
// model-file reader in front of them: see llama2c_fuzz.h and CMakeLists.txt here.
#include "tests/fuzz/llama2c_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    (void)ferry::fuzz::fuzz_llama2c(data, size);
    return 0;
}
