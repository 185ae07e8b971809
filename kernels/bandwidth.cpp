// The memory read bandwidth probe: what decode, which reads every weight once
// per token, can at best stream. The same number `ferry bench` divides by and
// a worker reports about itself.
#include <chrono>
#include <memory>

#include "kernels/dense_levels.h"
#include "kernels/kernels.h"

namespace ferry::kernels {

float read_bandwidth_probe(const float* data, int64_t n) {
    return dense_kernels(active_level()).read_bandwidth_probe(data, n);
}

std::vector<double> measure_read_bandwidth(int64_t bytes, int passes, ThreadPool* pool) {
    std::vector<double> rates;
    const int64_t n = bytes / 4;
    if (passes <= 0 || n <= 0) return rates;
    // Chunks of 1 MiB, as a thread claims rows of a big matrix.
    constexpr int64_t kChunk = int64_t{1} << 18;
    const std::unique_ptr<float[]> buf(new float[static_cast<size_t>(n)]);
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);  // touch every page before timing
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<float> sums(static_cast<size_t>(chunks));
    auto read = [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t len = n - c * kChunk < kChunk ? n - c * kChunk : kChunk;
            sums[c] = read_bandwidth_probe(buf.get() + c * kChunk, len);
        }
    };
    volatile float sink = 0;  // keeps the reads from being optimized away
    for (int p = 0; p < passes; ++p) {
        const auto t0 = std::chrono::steady_clock::now();
        if (pool) pool->parallel_for(chunks, 1, read);
        else read(0, chunks);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (float s : sums) sink = sink + s;
        rates.push_back(static_cast<double>(n) * 4 / seconds);
    }
    return rates;
}

}  // namespace ferry::kernels
