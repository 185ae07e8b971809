// libFuzzer target for llama2.c's tokenizer.bin: see tokenizer_bin_fuzz.h and
// CMakeLists.txt here.
#include "tests/fuzz/tokenizer_bin_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    (void)ferry::fuzz::fuzz_tokenizer_bin(data, size);
    return 0;
}
