// Micro-benchmarks of the dense kernels at every level this CPU has.
// Matvec reads a matrix far larger than the caches (decode is memory-bound:
// compare its bytes_per_second with ReadBandwidth); Matmul is a prefill batch
// (compute-bound: items_per_second counts multiply-adds).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/kernels.h"

namespace ferry::kernels {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// Selects the level named by the benchmark's first argument; false (and the
// benchmark skipped) if the CPU lacks it.
bool use_level(benchmark::State& state) {
    const Level level = static_cast<Level>(state.range(0));
    if (!set_active_level(level)) {
        state.SkipWithError((std::string("CPU lacks ") + level_name(level)).c_str());
        return false;
    }
    state.SetLabel(level_name(level));
    return true;
}

void all_levels(benchmark::internal::Benchmark* b) {
    for (const Level l : compiled_levels()) b->Arg(static_cast<int>(l));
}

struct WeightMatrix {
    std::vector<float> f32;
    std::vector<uint16_t> half;
    Matrix m;
    WeightMatrix(TensorType type, int64_t rows, int64_t cols) {
        f32 = random_floats(static_cast<size_t>(rows * cols), 1);
        if (type != TensorType::F32) {
            half.resize(f32.size());
            for (size_t i = 0; i < f32.size(); ++i)
                half[i] = type == TensorType::F16 ? fp32_to_fp16(f32[i] * 0.02f) : fp32_to_bf16(f32[i] * 0.02f);
            f32 = {};
        }
        m = Matrix{type, type == TensorType::F32 ? static_cast<const void*>(f32.data()) : half.data(), rows, cols, 0};
    }
    int64_t bytes() const { return m.rows * m.cols * (m.type == TensorType::F32 ? 4 : 2); }
};

// Decode: one token through a 256 MiB (f32) matrix of TinyLlama's width.
template <TensorType type>
void BM_Matvec(benchmark::State& state) {
    if (!use_level(state)) return;
    const WeightMatrix w(type, 32768, 2048);
    const std::vector<float> x = random_floats(2048, 2);
    std::vector<float> out(32768);
    for (auto _ : state) {
        matmul(out.data(), w.m, x.data(), 1, nullptr);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(state.iterations() * w.bytes());
}
BENCHMARK(BM_Matvec<TensorType::F32>)->Apply(all_levels)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Matvec<TensorType::F16>)->Apply(all_levels)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Matvec<TensorType::BF16>)->Apply(all_levels)->Unit(benchmark::kMillisecond);

// Prefill: a batch of `tokens` through TinyLlama's 2048 x 2048 attention
// projection (second argument 2048) or its 2048 x 5632 down projection (5632).
// 64 tokens is llama-bench's -p 64, the batch of the model figures.
template <TensorType type, int tokens>
void matmul_batch(benchmark::State& state) {
    if (!use_level(state)) return;
    const int64_t rows = 2048, cols = state.range(1);
    const WeightMatrix w(type, rows, cols);
    const std::vector<float> x = random_floats(static_cast<size_t>(cols) * tokens, 2);
    std::vector<float> out(static_cast<size_t>(rows) * tokens);
    for (auto _ : state) {
        matmul(out.data(), w.m, x.data(), tokens, nullptr);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * rows * cols * tokens);
}
template <TensorType type>
void BM_Matmul32(benchmark::State& state) { matmul_batch<type, 32>(state); }
template <TensorType type>
void BM_Matmul64(benchmark::State& state) { matmul_batch<type, 64>(state); }
void prefill_shapes(benchmark::internal::Benchmark* b) {
    for (const Level l : compiled_levels())
        for (int cols : {2048, 5632}) b->Args({static_cast<int>(l), cols});
}
BENCHMARK(BM_Matmul32<TensorType::F32>)->Apply(prefill_shapes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Matmul32<TensorType::F16>)->Apply(prefill_shapes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Matmul64<TensorType::F32>)->Apply(prefill_shapes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Matmul64<TensorType::F16>)->Apply(prefill_shapes)->Unit(benchmark::kMillisecond);

void BM_ReadBandwidth(benchmark::State& state) {
    if (!use_level(state)) return;
    const std::vector<float> buf = random_floats(int64_t{1} << 27, 3);  // 512 MiB
    for (auto _ : state) benchmark::DoNotOptimize(read_bandwidth_probe(buf.data(), static_cast<int64_t>(buf.size())));
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(buf.size()) * 4);
}
BENCHMARK(BM_ReadBandwidth)->Apply(all_levels)->Unit(benchmark::kMillisecond);

// One decode step of attention for TinyLlama's heads at position 511.
void BM_Attention(benchmark::State& state) {
    if (!use_level(state)) return;
    const int n_heads = 32, n_kv_heads = 4, head_size = 64, pos = 511;
    const std::vector<float> q = random_floats(n_heads * head_size, 4);
    const std::vector<float> k = random_floats((pos + 1) * n_kv_heads * head_size, 5);
    const std::vector<float> v = random_floats((pos + 1) * n_kv_heads * head_size, 6);
    std::vector<float> att(n_heads * (pos + 1)), out(n_heads * head_size);
    for (auto _ : state) {
        attention(out.data(), att.data(), q.data(), k.data(), v.data(), pos, n_heads, n_kv_heads, head_size);
        benchmark::DoNotOptimize(out.data());
    }
}
BENCHMARK(BM_Attention)->Apply(all_levels)->Unit(benchmark::kMicrosecond);

void BM_Rmsnorm(benchmark::State& state) {
    const std::vector<float> x = random_floats(2048, 7), w = random_floats(2048, 8);
    std::vector<float> out(2048);
    for (auto _ : state) {
        rmsnorm(out.data(), x.data(), w.data(), 2048, 1e-5f);
        benchmark::DoNotOptimize(out.data());
    }
}
BENCHMARK(BM_Rmsnorm);

void BM_Softmax(benchmark::State& state) {
    const std::vector<float> x0 = random_floats(2048, 9);
    std::vector<float> x = x0;
    for (auto _ : state) {
        x = x0;
        softmax(x.data(), 2048);
        benchmark::DoNotOptimize(x.data());
    }
}
BENCHMARK(BM_Softmax);

void BM_Swiglu(benchmark::State& state) {
    const std::vector<float> h0 = random_floats(5632, 10), up = random_floats(5632, 11);
    std::vector<float> h = h0;
    for (auto _ : state) {
        h = h0;
        swiglu(h.data(), up.data(), 5632);
        benchmark::DoNotOptimize(h.data());
    }
}
BENCHMARK(BM_Swiglu);

void BM_Rope(benchmark::State& state) {
    std::vector<float> q = random_floats(2048, 12), k = random_floats(256, 13);
    for (auto _ : state) {
        rope(q.data(), k.data(), 2048, 256, 64, 100, 10000.0f);
        benchmark::DoNotOptimize(q.data());
    }
}
BENCHMARK(BM_Rope);

// What handing out work costs: n chunks of nothing over a pool of 2.
void BM_PoolDispatch(benchmark::State& state) {
    ThreadPool pool(2);
    const int64_t n = state.range(0);
    for (auto _ : state) pool.parallel_for(n, 1, [](int64_t, int64_t) {});
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PoolDispatch)->Arg(2)->Arg(64)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ferry::kernels
