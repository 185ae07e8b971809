#include "common/tensor_source.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "kernels/kernels.h"

namespace ferry {

namespace {

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

}  // namespace

void RandomTensorSource::row(const ModelTensor& t, int64_t r, float* out) {
    if (!t.matrix) {
        std::fill(out, out + t.cols, 1.0f);
        return;
    }
    uint64_t state = seed_ ^ fnv1a(t.name);
    state = splitmix64(state) ^ static_cast<uint64_t>(r);
    splitmix64(state);
    // Box-Muller on 24-bit uniforms: one 64-bit draw gives two normals.
    constexpr float kTwoPi = 6.28318530717958647692f, kUnit = 1.0f / 16777216.0f;
    for (int64_t i = 0; i < t.cols; i += 2) {
        const uint64_t bits = splitmix64(state);
        const float u1 = (static_cast<float>(bits >> 40) + 1.0f) * kUnit;  // (0, 1]: log stays finite
        const float u2 = static_cast<float>(bits & 0xFFFFFF) * kUnit;
        const float radius = stddev_ * std::sqrt(-2.0f * std::log(u1));
        out[i] = radius * std::cos(kTwoPi * u2);
        if (i + 1 < t.cols) out[i + 1] = radius * std::sin(kTwoPi * u2);
    }
}

ModelFileTensorSource::ModelFileTensorSource(const ModelFile& file) : file_(file) {
    for (const TensorInfo& t : file.tensors) by_name_.emplace(t.name, &t);
}

const TensorInfo& ModelFileTensorSource::info(const ModelTensor& t) const {
    const auto it = by_name_.find(t.name);
    if (it == by_name_.end()) throw Error(file_.path + ": tensor " + t.name + " is missing");
    const TensorInfo& info = *it->second;
    if (info.rows != t.rows || info.cols != t.cols)
        throw Error(file_.path + ": tensor " + t.name + " is " + std::to_string(info.rows) + "x" +
                    std::to_string(info.cols) + ", expected " + std::to_string(t.rows) + "x" + std::to_string(t.cols));
    return info;
}

void ModelFileTensorSource::row(const ModelTensor& t, int64_t r, float* out) {
    const TensorInfo& i = info(t);
    const Matrix m{i.type, file_.data(i), i.rows, i.cols, i.group};
    kernels::dequantize_row(m, r, out);
}

void ModelFileTensorSource::done_with(const ModelTensor& t, int64_t first, int64_t count) {
    const TensorInfo& i = info(t);
    if (i.type == TensorType::Q8_GROUP) return;  // its scales sit after all the rows
    const uint64_t row_bytes = i.bytes / static_cast<uint64_t>(i.rows);
    file_.map.drop_pages(i.offset + static_cast<uint64_t>(first) * row_bytes, static_cast<uint64_t>(count) * row_bytes);
}

}  // namespace ferry
