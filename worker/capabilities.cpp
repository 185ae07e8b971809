#include "worker/capabilities.h"

#include <asio/ip/host_name.hpp>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "common/process_stats.h"
#include "kernels/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

namespace ferry::worker {

namespace {

// GB/s of matmul over one matrix (rows x cols of `type`) for about `seconds`.
double measure(const Matrix& w, kernels::ThreadPool& pool, double seconds) {
    std::vector<float> x(static_cast<size_t>(w.cols), 0.5f), out(static_cast<size_t>(w.rows));
    const int64_t bytes = tensor_bytes(w.type, w.rows, w.cols);
    const auto t0 = std::chrono::steady_clock::now();
    int passes = 0;
    double elapsed = 0;
    do {
        kernels::matmul(out.data(), w, x.data(), 1, &pool);
        ++passes;
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (elapsed < seconds);
    return static_cast<double>(bytes) * passes / elapsed / 1e9;
}

}  // namespace

int64_t probe_limit(uint64_t memory_budget, uint64_t ram_available) {
    constexpr int64_t kMax = 64ll << 20;
    // An old PC started without --memory must not spend its RAM on a probe.
    const uint64_t room = memory_budget > 0 ? memory_budget : ram_available;
    if (room == 0) return kMax;
    // The f32 matrix and its q8_0 copy (a quarter more) stay well inside the
    // budget, and are freed before any shard is loaded.
    int64_t limit = 1ll << 20;
    while (limit * 4 <= kMax && static_cast<uint64_t>(limit * 4) <= room / 8) limit *= 4;
    return limit;
}

uint64_t served_speed_min_bytes() {
    return std::clamp<uint64_t>(2 * last_level_cache_bytes(), 8ull << 20, 64ull << 20);
}

wire::Capabilities probe_capabilities(kernels::ThreadPool& pool, uint64_t memory_budget, double seconds) {
    wire::Capabilities caps;
    caps.set_arch(machine_arch());
    caps.set_cores(std::max(1u, std::thread::hardware_concurrency()));
    caps.set_threads(static_cast<uint32_t>(pool.size()));
    caps.set_cpu_features(kernels::cpu_features_string());
    caps.set_kernel_level(kernels::level_name(kernels::active_level()));
    const MachineMemory mem = read_machine_memory();
    caps.set_ram_total(mem.total);
    caps.set_ram_available(mem.available);
    caps.set_memory_budget(memory_budget);
    asio::error_code ec;
    caps.set_hostname(asio::ip::host_name(ec));

    // Grow the probe matrix until one pass takes a noticeable time, up to a
    // size past the caches where memory allows: a Pentium II measures a small
    // matrix in a few milliseconds, a fast machine a large one (RAM speed).
    const int64_t cols = 1024;
    const int64_t max_bytes = probe_limit(memory_budget, mem.available);
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    int64_t bytes = 1ll << 20;
    std::vector<float> f32;
    for (;;) {
        const size_t filled = f32.size();
        f32.resize(static_cast<size_t>(bytes / 4));
        for (size_t i = filled; i < f32.size(); ++i) f32[i] = dist(rng);
        const int64_t rows = bytes / (cols * 4);
        std::vector<float> x(static_cast<size_t>(cols), 0.5f), out(static_cast<size_t>(rows));
        const auto t0 = std::chrono::steady_clock::now();
        kernels::matmul(out.data(), Matrix{TensorType::F32, f32.data(), rows, cols, 0}, x.data(), 1, &pool);
        const double pass = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (bytes * 4 > max_bytes || pass > seconds / 16) break;
        bytes *= 4;
    }
    const int64_t rows = bytes / (cols * 4);
    const double gbps = measure(Matrix{TensorType::F32, f32.data(), rows, cols, 0}, pool, seconds / 2);
    caps.set_matvec_gbps(gbps);
    (*caps.mutable_type_gbps())["f32"] = gbps;
    if (kernels::matmul_supports(TensorType::Q8_0)) {
        std::vector<BlockQ8_0> q(static_cast<size_t>(rows * cols / 32));
        kernels::quantize_row_q8_0(f32.data(), q.data(), rows * cols);
        (*caps.mutable_type_gbps())["q8_0"] = measure(Matrix{TensorType::Q8_0, q.data(), rows, cols, 0}, pool, seconds / 2);
    }
    return caps;
}

}  // namespace ferry::worker
