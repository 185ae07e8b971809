// Quantized matmul speed on TinyLlama-1.1B's shapes (dim 2048, hidden 5632,
// 4 KV heads of 64, vocab 32000), with weights far larger than the caches so
// that decode streams them from memory as a real model does.
//
//   QuantDecode/<type>/threads:N  one token through every matrix of the model
//                                 (22 layers + classifier); bytes_per_second
//                                 counts the type's bytes, items_per_second is tok/s
//   QuantMatvec/<type>/<rows>x<cols>/threads:N  one matrix shape, copies rotated
//   QuantMatvecInCache/<type>/256x2048/threads:N  one matrix that stays in L2: compute speed
//   QuantLevel/<type>/256x2048/level:L  the same at level 0 (scalar), 1 (SSE2), 2 (SSSE3), 3 (AVX2), 7 (AVX-VNNI), 4 (AVX-512)
//   QuantPrefill/<type>/threads:N  64 tokens through a 2048x2048 matrix
//   QuantPrefillLevel/<type>/level:L  the same on one thread at level 1 (SSE2), 2 (SSSE3), 3 (AVX2), 7 (AVX-VNNI), 4 (AVX-512)
//   QuantBatchPath/<type>/tokens:N/lanes:P  N tokens on one thread at AVX-512 by its token tiles (P = 0) or
//                                 its token-lane kernels (P = 1)
//   ReadBandwidth/threads:N       the memory read speed of the same run
//
// e.g. ferry_microbench --benchmark_filter='QuantDecode/q4_0|ReadBandwidth' --benchmark_repetitions=5
//      --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"
#include "kernels/quantize.h"
#include "kernels/quants.h"
#include "kernels/thread_pool.h"

namespace ferry {
namespace {

constexpr int64_t kDim = 2048, kHidden = 5632, kKvDim = 256, kVocab = 32000, kLayers = 22;

const TensorType kTypes[] = {TensorType::F32,  TensorType::Q8_0, TensorType::Q4_0,   TensorType::Q4_1,
                             TensorType::Q5_0, TensorType::Q5_1, TensorType::IQ4_NL, TensorType::Q2_K,
                             TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,   TensorType::Q6_K,
                             TensorType::TQ1_0, TensorType::TQ2_0, TensorType::Q8_GROUP};
constexpr int64_t kGroup = 64;  // llama2.c export.py's default

kernels::ThreadPool* pool_of(int threads) {
    static std::unique_ptr<kernels::ThreadPool> pools[3];
    if (threads <= 1) return nullptr;
    if (!pools[threads]) pools[threads] = std::make_unique<kernels::ThreadPool>(threads);
    return pools[threads].get();
}

// `copies` matrices of one shape in `type`, filled from one random prototype
// (quantizing gigabytes would take minutes; the bytes' values do not change the speed).
struct Weights {
    std::vector<uint8_t> bytes;
    int64_t matrix_bytes = 0;
    std::vector<Matrix> matrices;
};

Weights make_weights(TensorType type, int64_t rows, int64_t cols, int copies) {
    Weights w;
    w.matrix_bytes = tensor_bytes(type, rows, cols, kGroup);
    std::vector<uint8_t> proto(static_cast<size_t>(w.matrix_bytes));
    const int64_t proto_rows = rows < 64 ? rows : 64;
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> f(static_cast<size_t>(proto_rows * cols));
    for (float& v : f) v = normal(rng);
    if (type == TensorType::Q8_GROUP) {
        // int8 values of all rows, then one f32 scale per group.
        std::vector<int8_t> q(static_cast<size_t>(proto_rows * cols));
        std::vector<float> s(static_cast<size_t>(proto_rows * cols / kGroup));
        kernels::quantize_row_q8_group(f.data(), q.data(), s.data(), proto_rows * cols, kGroup);
        for (int64_t r = 0; r < rows; ++r) std::memcpy(proto.data() + r * cols, q.data() + (r % proto_rows) * cols, cols);
        for (int64_t g = 0; g < rows * cols / kGroup; ++g)
            std::memcpy(proto.data() + rows * cols + g * 4, &s[g % s.size()], 4);
    } else {
        const int64_t row_bytes = tensor_bytes(type, 1, cols);
        std::vector<uint8_t> q(static_cast<size_t>(proto_rows * row_bytes));
        kernels::quantize_rows(type, f.data(), q.data(), proto_rows, cols);
        for (int64_t r = 0; r < rows; ++r)
            std::memcpy(proto.data() + r * row_bytes, q.data() + (r % proto_rows) * row_bytes, row_bytes);
    }
    w.bytes.resize(static_cast<size_t>(w.matrix_bytes * copies));
    for (int c = 0; c < copies; ++c) std::memcpy(w.bytes.data() + c * w.matrix_bytes, proto.data(), proto.size());
    for (int c = 0; c < copies; ++c) {
        Matrix m;
        m.type = type;
        m.rows = rows;
        m.cols = cols;
        m.group = kGroup;
        m.data = w.bytes.data() + c * w.matrix_bytes;
        w.matrices.push_back(m);
    }
    return w;
}

std::vector<float> activations(int64_t n) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(rng);
    return x;
}

void QuantDecode(benchmark::State& state, TensorType type) {
    kernels::ThreadPool* pool = pool_of(static_cast<int>(state.range(0)));
    struct Shape {
        int64_t rows, cols, per_layer;
    };
    const Shape shapes[] = {{kDim, kDim, 2}, {kKvDim, kDim, 2}, {kHidden, kDim, 2}, {kDim, kHidden, 1}};
    std::vector<Weights> weights;
    int64_t model_bytes = 0;
    for (const Shape& s : shapes) {
        weights.push_back(make_weights(type, s.rows, s.cols, static_cast<int>(s.per_layer * kLayers)));
        model_bytes += weights.back().matrix_bytes * s.per_layer * kLayers;
    }
    weights.push_back(make_weights(type, kVocab, kDim, 1));
    model_bytes += weights.back().matrix_bytes;
    const std::vector<float> x = activations(kHidden);
    std::vector<float> out(kVocab);
    for (auto _ : state) {
        for (int layer = 0; layer < kLayers; ++layer) {
            for (size_t s = 0; s < 4; ++s) {
                for (int k = 0; k < shapes[s].per_layer; ++k) {
                    const Matrix& m = weights[s].matrices[static_cast<size_t>(layer * shapes[s].per_layer + k)];
                    kernels::matmul(out.data(), m, x.data(), 1, pool);
                }
            }
        }
        kernels::matmul(out.data(), weights[4].matrices[0], x.data(), 1, pool);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(state.iterations() * model_bytes);
    state.SetItemsProcessed(state.iterations());
    state.counters["model_MB"] = static_cast<double>(model_bytes) / 1e6;
}

void QuantMatvec(benchmark::State& state, TensorType type, int64_t rows, int64_t cols, bool hot) {
    kernels::ThreadPool* pool = pool_of(static_cast<int>(state.range(0)));
    const int64_t bytes = tensor_bytes(type, rows, cols, kGroup);
    // ~256 MB, far beyond the caches, or one copy that stays in them (the kernel's compute speed).
    const int copies = hot ? 1 : static_cast<int>((int64_t{256} << 20) / bytes + 1);
    const Weights w = make_weights(type, rows, cols, copies);
    const std::vector<float> x = activations(cols);
    std::vector<float> out(static_cast<size_t>(rows));
    size_t i = 0;
    for (auto _ : state) {
        kernels::matmul(out.data(), w.matrices[i], x.data(), 1, pool);
        i = (i + 1) % w.matrices.size();
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(state.iterations() * bytes);
}

// The in-cache matvec at one dispatch level (range(0) = Level), one thread.
void QuantLevel(benchmark::State& state, TensorType type) {
    const kernels::Level saved = kernels::active_level();
    if (!kernels::set_active_level(static_cast<kernels::Level>(state.range(0)))) {
        state.SkipWithError("level not available on this CPU");
        return;
    }
    const Weights w = make_weights(type, kKvDim, kDim, 1);
    const std::vector<float> x = activations(kDim);
    std::vector<float> out(kKvDim);
    for (auto _ : state) {
        kernels::matmul(out.data(), w.matrices[0], x.data(), 1, nullptr);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(state.iterations() * w.matrix_bytes);
    kernels::set_active_level(saved);
}

// n_tokens tokens through a kDim x kDim matrix at the active level.
void prefill(benchmark::State& state, TensorType type, kernels::ThreadPool* pool, int n_tokens = 64) {
    const Weights w = make_weights(type, kDim, kDim, 1);
    const std::vector<float> x = activations(kDim * n_tokens);
    std::vector<float> out(static_cast<size_t>(kDim * n_tokens));
    for (auto _ : state) {
        kernels::matmul(out.data(), w.matrices[0], x.data(), n_tokens, pool);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * n_tokens);
    state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * n_tokens * kDim * kDim / 1e9,
                                                  benchmark::Counter::kIsRate);
}

void QuantPrefill(benchmark::State& state, TensorType type) {
    prefill(state, type, pool_of(static_cast<int>(state.range(0))));
}

// The same on one thread at one dispatch level (range(0) = Level).
void QuantPrefillLevel(benchmark::State& state, TensorType type) {
    const kernels::Level saved = kernels::active_level();
    if (!kernels::set_active_level(static_cast<kernels::Level>(state.range(0)))) {
        state.SkipWithError("level not available on this CPU");
        return;
    }
    prefill(state, type, nullptr);
    kernels::set_active_level(saved);
}

// range(0) tokens through the same matrix at the avx512 level, one thread, by
// its token-lane kernels (range(1) = 1) or its token tiles (0): where the lanes
// start to pay (kLaneMinTokens in kernels/quants.cpp).
void QuantBatchPath(benchmark::State& state, TensorType type) {
    const kernels::Level saved = kernels::active_level();
    if (!kernels::set_active_level(kernels::Level::avx512)) {
        state.SkipWithError("level not available on this CPU");
        return;
    }
    const int threshold = kernels::set_lane_min_tokens(state.range(1) ? 1 : 1 << 30);
    prefill(state, type, nullptr, static_cast<int>(state.range(0)));
    kernels::set_lane_min_tokens(threshold);
    kernels::set_active_level(saved);
}

void ReadBandwidth(benchmark::State& state) {
    kernels::ThreadPool* pool = pool_of(static_cast<int>(state.range(0)));
    const int64_t n = int64_t{256} << 20;  // 1 GiB of floats
    static std::vector<float> data(static_cast<size_t>(n), 1.0f);
    const int64_t chunk = int64_t{1} << 20;
    float sums[1024] = {};
    for (auto _ : state) {
        auto read = [&](int64_t c0, int64_t c1) {
            for (int64_t c = c0; c < c1; ++c) sums[c % 1024] += kernels::read_bandwidth_probe(data.data() + c * chunk, chunk);
        };
        if (pool) pool->parallel_for(n / chunk, 1, read);
        else read(0, n / chunk);
        benchmark::DoNotOptimize(sums);
    }
    state.SetBytesProcessed(state.iterations() * n * 4);
}

// One thread: CPU time (robust when another process takes the core for a
// while); more threads: wall time, since the helpers' time is not counted.
benchmark::internal::Benchmark* timed(benchmark::internal::Benchmark* b, int threads) {
    b->Arg(threads)->ArgName("threads");
    return threads > 1 ? b->UseRealTime() : b;
}

int register_all() {
    for (int threads : {1, 2}) {
        timed(benchmark::RegisterBenchmark("ReadBandwidth", ReadBandwidth), threads);
    }
    for (TensorType type : kTypes) {
        const std::string name = tensor_type_name(type);
        if (type != TensorType::F32 && !kernels::quant_matmul_supports(type)) continue;
        benchmark::RegisterBenchmark(("QuantLevel/" + name + "/256x2048").c_str(), QuantLevel, type)
            ->Arg(static_cast<int>(kernels::Level::scalar))
            ->Arg(static_cast<int>(kernels::Level::sse2))
            ->Arg(static_cast<int>(kernels::Level::ssse3))
            ->Arg(static_cast<int>(kernels::Level::avx2))
            ->Arg(static_cast<int>(kernels::Level::avxvnni))
            ->Arg(static_cast<int>(kernels::Level::avx512))
            ->ArgName("level")
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark(("QuantPrefillLevel/" + name).c_str(), QuantPrefillLevel, type)
            ->Arg(static_cast<int>(kernels::Level::sse2))
            ->Arg(static_cast<int>(kernels::Level::ssse3))
            ->Arg(static_cast<int>(kernels::Level::avx2))
            ->Arg(static_cast<int>(kernels::Level::avxvnni))
            ->Arg(static_cast<int>(kernels::Level::avx512))
            ->ArgName("level")
            ->Unit(benchmark::kMillisecond);
        if (type != TensorType::F32 && type != TensorType::Q8_GROUP)
            benchmark::RegisterBenchmark(("QuantBatchPath/" + name).c_str(), QuantBatchPath, type)
                ->ArgsProduct({{2, 4, 6, 8, 10, 12, 16}, {0, 1}})
                ->ArgNames({"tokens", "lanes"})
                ->Unit(benchmark::kMillisecond);
        for (int threads : {1, 2}) {
            timed(benchmark::RegisterBenchmark(("QuantDecode/" + name).c_str(), QuantDecode, type), threads)
                ->Unit(benchmark::kMillisecond);
            timed(benchmark::RegisterBenchmark(("QuantPrefill/" + name).c_str(), QuantPrefill, type), threads)
                ->Unit(benchmark::kMillisecond);
            const int64_t shapes[][2] = {{kDim, kDim}, {kKvDim, kDim}, {kHidden, kDim}, {kDim, kHidden}, {kVocab, kDim}};
            for (const auto& s : shapes) {
                const std::string shape = std::to_string(s[0]) + "x" + std::to_string(s[1]);
                timed(benchmark::RegisterBenchmark(("QuantMatvec/" + name + "/" + shape).c_str(), QuantMatvec, type, s[0],
                                                   s[1], false),
                      threads)
                    ->Unit(benchmark::kMicrosecond);
            }
            timed(benchmark::RegisterBenchmark(("QuantMatvecInCache/" + name + "/256x2048").c_str(), QuantMatvec, type,
                                               kKvDim, kDim, true),
                  threads)
                ->Unit(benchmark::kMicrosecond);
        }
    }
    return 0;
}
const int registered = register_all();

}  // namespace
}  // namespace ferry
