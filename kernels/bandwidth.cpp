// The memory read bandwidth probe: what decode, which reads every weight once
// per token, can at best stream. The same number `ferry bench` divides by and
// a worker reports about itself.
#include <chrono>

#include "kernels/dense_levels.h"
#include "kernels/kernels.h"

namespace ferry::kernels {

namespace {
constexpr int64_t kChunkFloats = int64_t{1} << 18;  // 1 MiB, as a thread claims rows of a big matrix
}

float read_bandwidth_probe(const float* data, int64_t n) {
    return dense_kernels(active_level()).read_bandwidth_probe(data, n);
}

ReadBandwidthProbe::ReadBandwidthProbe(int64_t bytes)
    : buffer_(static_cast<size_t>(bytes > 0 ? bytes / 4 : 0)),
      sums_(static_cast<size_t>((buffer_.size() + kChunkFloats - 1) / kChunkFloats)) {
    for (size_t i = 0; i < buffer_.size(); ++i) buffer_[i] = static_cast<float>(i & 1023);  // every page mapped
}

double ReadBandwidthProbe::pass(ThreadPool* pool) {
    const int64_t n = static_cast<int64_t>(buffer_.size());
    if (n == 0) return 0;
    const Level level = active_level();
    auto loop = dense_kernels(level).read_bandwidth_probe;
    if (level == Level::avx512 && passes_ % 2 == 1) loop = dense_kernels(Level::avx2).read_bandwidth_probe;
    ++passes_;
    auto read = [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t len = n - c * kChunkFloats < kChunkFloats ? n - c * kChunkFloats : kChunkFloats;
            sums_[c] = loop(buffer_.data() + c * kChunkFloats, len);
        }
    };
    const auto t0 = std::chrono::steady_clock::now();
    if (pool) pool->parallel_for(static_cast<int64_t>(sums_.size()), 1, read);
    else read(0, static_cast<int64_t>(sums_.size()));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile float sink = 0;  // the sums are used, so the reads cannot be dropped
    for (float s : sums_) sink = sink + s;
    return static_cast<double>(n) * 4 / seconds;
}

std::vector<double> measure_read_bandwidth(int64_t bytes, int passes, ThreadPool* pool) {
    std::vector<double> rates;
    if (passes <= 0 || bytes < 4) return rates;
    ReadBandwidthProbe probe(bytes);
    for (int p = 0; p < passes; ++p) rates.push_back(probe.pass(pool));
    return rates;
}

}  // namespace ferry::kernels
