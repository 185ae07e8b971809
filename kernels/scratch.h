// A calling thread's scratch bytes for one product's activations (quantized
// or packed), reused from call to call (a forward pass makes hundreds) and
// aligned to a cache line, so that 512-bit loads at multiples of 64 bytes
// from it never split across two lines.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ferry::kernels {

struct Scratch {
    std::vector<uint8_t> bytes;
    uint8_t* take(size_t n) {
        if (bytes.size() < n + 64) bytes.resize(n + 64);
        uintptr_t p = reinterpret_cast<uintptr_t>(bytes.data());
        return reinterpret_cast<uint8_t*>((p + 63) & ~static_cast<uintptr_t>(63));
    }
};

}  // namespace ferry::kernels
