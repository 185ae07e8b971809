// Activations on the wire: raw little-endian values inside a `bytes` field,
// f32 (exact) or f16 (half the bytes, rounded).
#pragma once
#include <cstddef>
#include <string>

#include "ferry.pb.h"

namespace ferry::net {

size_t wire_value_bytes(wire::WireType type);
const char* wire_type_name(wire::WireType type);
std::string encode_values(const float* x, size_t n, wire::WireType type);
// False if `bytes` does not hold exactly n values of `type`.
bool decode_values(const std::string& bytes, wire::WireType type, size_t n, float* out);

}  // namespace ferry::net
