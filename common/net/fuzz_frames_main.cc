// libFuzzer entry point over the frame decoder (built with -DFERRY_FUZZ=ON).
// The same function runs over a deterministic corpus in tests/protocol_frame_test.cpp.
#include <cstddef>
#include <cstdint>

#include "common/net/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return ferry::net::fuzz_frame_decoder(data, size);
}
