// libFuzzer target for bytes arriving on a ferry connection (frame decoder,
// protobuf parse, first handling of each frame): see wire_fuzz.h and
// CMakeLists.txt here.
#include "tests/fuzz/wire_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    (void)ferry::fuzz::fuzz_wire(data, size);
    return 0;
}
