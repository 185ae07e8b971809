#include "common/net/values.h"

#include <cstdint>
#include <cstring>

#include "kernels/fp16.h"

namespace ferry::net {

size_t wire_value_bytes(wire::WireType type) { return type == wire::WIRE_F16 ? 2 : 4; }
const char* wire_type_name(wire::WireType type) { return type == wire::WIRE_F16 ? "f16" : "f32"; }

std::string encode_values(const float* x, size_t n, wire::WireType type) {
    std::string out(n * wire_value_bytes(type), '\0');
    if (type == wire::WIRE_F16) {
        for (size_t i = 0; i < n; ++i) {
            const uint16_t h = fp32_to_fp16(x[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        }
    } else {
        std::memcpy(out.data(), x, n * 4);
    }
    return out;
}

bool decode_values(const std::string& bytes, wire::WireType type, size_t n, float* out) {
    if (bytes.size() != n * wire_value_bytes(type)) return false;
    if (type == wire::WIRE_F16) {
        for (size_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, bytes.data() + 2 * i, 2);
            out[i] = fp16_to_fp32(h);
        }
    } else {
        std::memcpy(out, bytes.data(), n * 4);
    }
    return true;
}

}  // namespace ferry::net
