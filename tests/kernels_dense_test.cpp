// The dense kernels against their naive references (kernels/reference.h) on
// odd sizes at every level this CPU has, and the determinism contract of
// kernels.h: levels equal bit for bit, a batch equals its tokens one at a
// time, and no result depends on the thread count.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"
#include "tests/test_support.h"

namespace ferry::kernels {
namespace {

const int kOddSizes[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 257, 1000};

// Runs fn at every level the CPU has; fn gets the level's name for messages.
void for_each_level(const std::function<void(const char*)>& fn) {
    test::LevelGuard guard;
    for (Level l : test::cpu_levels()) {
        set_active_level(l);
        SCOPED_TRACE(level_name(l));
        fn(level_name(l));
    }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Index and values of the first difference, for a readable failure.
std::string first_difference(const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
        if (fp32_to_bits(a[i]) != fp32_to_bits(b[i]))
        {
            char buf[96];
            std::snprintf(buf, sizeof buf, "index %zu: %.9g (0x%08x) vs %.9g (0x%08x)", i, a[i], fp32_to_bits(a[i]), b[i],
                          fp32_to_bits(b[i]));
            return buf;
        }
    return "sizes " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
}

// A weight matrix in f32, f16 or bf16 with values near 0.02 * N(0, 1).
struct TestMatrix {
    std::vector<float> f32;
    std::vector<uint16_t> u16;
    Matrix m;
    TestMatrix(TensorType type, int64_t rows, int64_t cols, uint32_t seed) {
        f32 = test::normal_floats(static_cast<size_t>(rows * cols), seed, 0.02f);
        const void* data = f32.data();
        if (type != TensorType::F32) {
            u16.resize(f32.size());
            for (size_t i = 0; i < f32.size(); ++i)
                u16[i] = type == TensorType::F16 ? fp32_to_fp16(f32[i]) : fp32_to_bf16(f32[i]);
            data = u16.data();
        }
        m = Matrix{type, data, rows, cols, 0};
    }
};

std::vector<float> run_matmul(const Matrix& w, const std::vector<float>& x, int n_tokens, ThreadPool* pool) {
    std::vector<float> out(static_cast<size_t>(w.rows * n_tokens), NAN);
    matmul(out.data(), w, x.data(), n_tokens, pool);
    return out;
}

class DenseMatmul : public ::testing::TestWithParam<TensorType> {};

TEST_P(DenseMatmul, MatchesReferenceOnOddSizesAtEveryLevel) {
    const TensorType type = GetParam();
    ASSERT_TRUE(matmul_supports(type));
    for (int cols : kOddSizes) {
        for (int rows : {1, 3, 7, 33}) {
            for (int n_tokens : {1, 2, 3, 5}) {
                const TestMatrix w(type, rows, cols, static_cast<uint32_t>(cols * 131 + rows));
                const std::vector<float> x = test::normal_floats(static_cast<size_t>(cols) * n_tokens, cols + 7);
                std::vector<float> want(static_cast<size_t>(rows) * n_tokens);
                std::vector<double> magnitude(want.size());
                reference::matmul(want.data(), w.m, x.data(), n_tokens, magnitude.data());
                // Float summation error bound: (cols/8 + 4) roundings of the
                // running sums, each at most 2^-24 of the sum of |terms|.
                const double ulps = (cols / 8 + 4) * std::ldexp(1.0, -24);
                std::vector<float> first;
                for_each_level([&](const char* level) {
                    const std::vector<float> got = run_matmul(w.m, x, n_tokens, nullptr);
                    for (size_t i = 0; i < got.size(); ++i)
                        ASSERT_NEAR(got[i], want[i], 2 * ulps * magnitude[i] + 1e-30)
                            << level << " rows " << rows << " cols " << cols << " tokens " << n_tokens << " out " << i;
                    if (first.empty()) first = got;
                    ASSERT_TRUE(same_bits(got, first)) << level << " differs from scalar, rows " << rows << " cols "
                                                       << cols << " tokens " << n_tokens << ": "
                                                       << first_difference(got, first);
                });
            }
        }
    }
}

TEST_P(DenseMatmul, BatchEqualsOneTokenAtATimeBitForBit) {
    const TensorType type = GetParam();
    // Odd sizes exercise every tile remainder; 16 tokens fill whole tiles.
    for (int cols : {7, 33, 257, 1000}) {
        for (int n_tokens : {11, 16}) {
            const int rows = 37;
            const TestMatrix w(type, rows, cols, 5);
            const std::vector<float> x = test::normal_floats(static_cast<size_t>(cols) * n_tokens, 6);
            for_each_level([&](const char* level) {
                const std::vector<float> batch = run_matmul(w.m, x, n_tokens, nullptr);
                for (int t = 0; t < n_tokens; ++t) {
                    const std::vector<float> xt(x.begin() + t * cols, x.begin() + (t + 1) * cols);
                    const std::vector<float> one = run_matmul(w.m, xt, 1, nullptr);
                    const std::vector<float> from_batch(batch.begin() + t * rows, batch.begin() + (t + 1) * rows);
                    ASSERT_TRUE(same_bits(one, from_batch)) << level << " cols " << cols << " token " << t << " of "
                                                            << n_tokens << ": " << first_difference(one, from_batch);
                }
            });
        }
    }
}

TEST_P(DenseMatmul, ResultDoesNotDependOnThreadCount) {
    const TensorType type = GetParam();
    const int rows = 1031, cols = 1001;  // many chunks of a few rows each; a tail at every lane count
    const TestMatrix w(type, rows, cols, 8);
    // 11 and 16: several prefill tiles (a short last one, then whole ones), packed by several threads.
    for (int n_tokens : {1, 3, 11, 16}) {
        const std::vector<float> x = test::normal_floats(static_cast<size_t>(cols) * n_tokens, 9);
        for_each_level([&](const char* level) {
            const std::vector<float> alone = run_matmul(w.m, x, n_tokens, nullptr);
            for (int threads : {1, 2, 3, 7}) {
                ThreadPool pool(threads);
                const std::vector<float> got = run_matmul(w.m, x, n_tokens, &pool);
                ASSERT_TRUE(same_bits(got, alone))
                    << level << ", " << threads << " threads, " << n_tokens << " tokens: " << first_difference(got, alone);
            }
        });
    }
}

INSTANTIATE_TEST_SUITE_P(DenseTypes, DenseMatmul,
                         ::testing::Values(TensorType::F32, TensorType::F16, TensorType::BF16),
                         [](const auto& info) { return std::string(tensor_type_name(info.param)); });

// The documented canonical order itself, not just agreement between levels:
// 8 lanes for f32 weights, 16 for f16 and bf16.
TEST(DenseMatmulOrder, EveryLevelSumsInTheCanonicalOrder) {
    for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
        const int lanes = type == TensorType::F32 ? 8 : 16;
        for (int cols : kOddSizes) {
            // Values of mixed magnitude, so another order rounds differently.
            TestMatrix w(type, 1, cols, 11);
            std::vector<float> widened(static_cast<size_t>(cols));
            for (int i = 0; i < cols; ++i) {
                const float v = w.f32[i] * (i % 3 == 0 ? 1e4f : 1.0f);
                if (type == TensorType::F32) {
                    w.f32[i] = widened[i] = v;
                } else {
                    w.u16[i] = type == TensorType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
                    widened[i] = type == TensorType::F16 ? fp16_to_fp32(w.u16[i]) : bf16_to_fp32(w.u16[i]);
                }
            }
            // One token (decode) and a batch of 11 (prefill tiles, 2 tokens to a vector at AVX-512 for f32).
            const int n_tokens = 11;
            const std::vector<float> x = test::normal_floats(static_cast<size_t>(cols) * n_tokens, 12);
            for_each_level([&](const char* level) {
                for (int batch : {1, n_tokens}) {
                    std::vector<float> got(static_cast<size_t>(batch), NAN);
                    matmul(got.data(), w.m, x.data(), batch, nullptr);
                    for (int t = 0; t < batch; ++t)
                        EXPECT_EQ(fp32_to_bits(got[t]),
                                  fp32_to_bits(reference::canonical_dot(widened.data(), x.data() + t * cols, cols, lanes)))
                            << level << " " << tensor_type_name(type) << " cols " << cols << " token " << t << " of " << batch;
                }
            });
        }
    }
}

// Every one of the 65536 halves widens exactly, in the main loop and in the tail.
TEST(DenseMatmulOrder, EveryHalfWidensExactlyAtEveryLevel) {
    for (int cols : {1, 8}) {
        std::vector<uint16_t> w(static_cast<size_t>(65536) * cols, 0);
        for (int h = 0; h < 65536; ++h) w[static_cast<size_t>(h) * cols] = static_cast<uint16_t>(h);
        const Matrix m{TensorType::F16, w.data(), 65536, cols, 0};
        const std::vector<float> ones(static_cast<size_t>(cols), 1.0f);
        for_each_level([&](const char* level) {
            const std::vector<float> got = run_matmul(m, ones, 1, nullptr);
            for (int h = 0; h < 65536; ++h) {
                const float want = fp16_to_fp32(static_cast<uint16_t>(h));
                if (std::isnan(want)) {
                    ASSERT_TRUE(std::isnan(got[h])) << level << " half 0x" << std::hex << h;
                } else {
                    // + 0.0f: the sum starts at +0, so -0 comes out as +0.
                    ASSERT_EQ(fp32_to_bits(got[h]), fp32_to_bits(want + 0.0f)) << level << " half 0x" << std::hex << h;
                }
            }
        });
    }
}

TEST(DenseKernels, RmsnormMatchesReference) {
    for (int n : kOddSizes) {
        const std::vector<float> x = test::normal_floats(n, 20 + n), weight = test::normal_floats(n, 21);
        std::vector<float> want(n);
        reference::rmsnorm(want.data(), x.data(), weight.data(), n, 1e-5f);
        for_each_level([&](const char* level) {
            std::vector<float> got(n);
            rmsnorm(got.data(), x.data(), weight.data(), n, 1e-5f);
            for (int i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << level << " n " << n;
            std::vector<float> in_place = x;
            rmsnorm(in_place.data(), in_place.data(), weight.data(), n, 1e-5f);
            ASSERT_TRUE(same_bits(in_place, got)) << "out may alias x";
        });
    }
}

TEST(DenseKernels, SoftmaxMatchesReference) {
    for (int n : kOddSizes) {
        std::vector<float> want = test::normal_floats(n, 30 + n, 5.0f);
        std::vector<float> x = want;
        reference::softmax(want.data(), n);
        for_each_level([&](const char* level) {
            std::vector<float> got = x;
            softmax(got.data(), n);
            double sum = 0;
            for (int i = 0; i < n; ++i) {
                ASSERT_NEAR(got[i], want[i], 1e-6 + 1e-5 * want[i]) << level << " n " << n;
                sum += got[i];
            }
            EXPECT_NEAR(sum, 1.0, 1e-5);
        });
    }
}

TEST(DenseKernels, SwigluMatchesReference) {
    for (int n : kOddSizes) {
        const std::vector<float> h = test::normal_floats(n, 40 + n, 4.0f), up = test::normal_floats(n, 41);
        std::vector<float> want = h;
        reference::swiglu(want.data(), up.data(), n);
        for_each_level([&](const char* level) {
            std::vector<float> got = h;
            swiglu(got.data(), up.data(), n);
            for (int i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6 * (1 + std::fabs(want[i]))) << level;
        });
    }
}

TEST(DenseKernels, RopeMatchesReference) {
    struct Shape {
        int q_dim, kv_dim, head_size;
    };
    for (const Shape s : {Shape{2, 2, 2}, Shape{6, 6, 6}, Shape{64, 32, 8}, Shape{2048, 256, 64}, Shape{96, 96, 48}}) {
        for (int pos : {0, 1, 7, 100, 2047}) {
            for (bool factors : {false, true}) {
                const std::vector<float> q0 = test::normal_floats(s.q_dim, 50), k0 = test::normal_floats(s.kv_dim, 51);
                std::vector<float> ff(static_cast<size_t>(s.head_size / 2));
                for (size_t i = 0; i < ff.size(); ++i) ff[i] = 1.0f + static_cast<float>(i % 5);
                std::vector<float> wq = q0, wk = k0;
                reference::rope(wq.data(), wk.data(), s.q_dim, s.kv_dim, s.head_size, pos, 500000.0f,
                                factors ? ff.data() : nullptr);
                for_each_level([&](const char* level) {
                    std::vector<float> q = q0, k = k0;
                    rope(q.data(), k.data(), s.q_dim, s.kv_dim, s.head_size, pos, 500000.0f,
                         factors ? ff.data() : nullptr);
                    for (int i = 0; i < s.q_dim; ++i) ASSERT_NEAR(q[i], wq[i], 1e-5) << level << " pos " << pos;
                    for (int i = 0; i < s.kv_dim; ++i) ASSERT_NEAR(k[i], wk[i], 1e-5) << level << " pos " << pos;
                });
            }
        }
    }
}

TEST(DenseKernels, RopeNeoxMatchesReference) {
    struct Shape {
        int q_dim, kv_dim, head_size;
    };
    for (const Shape s : {Shape{2, 2, 2}, Shape{512, 128, 64}, Shape{256, 64, 32}, Shape{896, 128, 64}}) {
        for (int pos : {0, 1, 7, 100, 2047}) {
            const std::vector<float> q0 = test::normal_floats(s.q_dim, 52), k0 = test::normal_floats(s.kv_dim, 53);
            std::vector<float> wq = q0, wk = k0;
            reference::rope_neox(wq.data(), wk.data(), s.q_dim, s.kv_dim, s.head_size, pos, 1e6f);
            std::vector<float> q = q0, k = k0;
            rope_neox(q.data(), k.data(), s.q_dim, s.kv_dim, s.head_size, pos, 1e6f);
            for (int i = 0; i < s.q_dim; ++i) ASSERT_NEAR(q[i], wq[i], 2e-4) << "pos " << pos;  // float angles at pos 2047, as GGML computes them
            for (int i = 0; i < s.kv_dim; ++i) ASSERT_NEAR(k[i], wk[i], 2e-4) << "pos " << pos;
            if (pos == 0) {
                EXPECT_EQ(q, q0);  // no rotation at position 0
            }
        }
    }
}

TEST(DenseKernels, AttentionMatchesReferenceAndLevelsAgree) {
    struct Shape {
        int n_heads, n_kv_heads, head_size;
    };
    for (const Shape s : {Shape{1, 1, 1}, Shape{4, 2, 3}, Shape{6, 3, 7}, Shape{8, 1, 8}, Shape{2, 2, 9},
                          Shape{4, 4, 33}, Shape{32, 4, 64}, Shape{16, 1, 16}, Shape{12, 1, 9}}) {
        for (int pos : {0, 1, 6, 7, 8, 9, 31, 100}) {
            const int kv_dim = s.n_kv_heads * s.head_size;
            const std::vector<float> q = test::normal_floats(static_cast<size_t>(s.n_heads) * s.head_size, 60);
            const std::vector<float> k = test::normal_floats(static_cast<size_t>(pos + 1) * kv_dim, 61);
            const std::vector<float> v = test::normal_floats(static_cast<size_t>(pos + 1) * kv_dim, 62);
            std::vector<float> want(static_cast<size_t>(s.n_heads) * s.head_size);
            reference::attention(want.data(), q.data(), k.data(), v.data(), pos, s.n_heads, s.n_kv_heads, s.head_size);
            std::vector<float> first;
            for_each_level([&](const char* level) {
                std::vector<float> out(want.size(), NAN), att(static_cast<size_t>(s.n_heads) * (pos + 1));
                attention(out.data(), att.data(), q.data(), k.data(), v.data(), pos, s.n_heads, s.n_kv_heads,
                          s.head_size);
                for (size_t i = 0; i < out.size(); ++i)
                    ASSERT_NEAR(out[i], want[i], 1e-5 * (1 + std::fabs(want[i])))
                        << level << " heads " << s.n_heads << "/" << s.n_kv_heads << " size " << s.head_size << " pos "
                        << pos;
                if (first.empty()) first = out;
                ASSERT_TRUE(same_bits(out, first)) << level << " differs from scalar: " << first_difference(out, first);
            });
        }
    }
}

TEST(DenseKernels, BandwidthProbeSumsTheBuffer) {
    for (int n : kOddSizes) {
        std::vector<float> x(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) x[i] = static_cast<float>(i % 7);
        double want = 0;
        for (float f : x) want += f;
        for_each_level([&](const char* level) { EXPECT_EQ(read_bandwidth_probe(x.data(), n), want) << level; });
    }
    ThreadPool pool(2);
    const std::vector<double> rates = measure_read_bandwidth(int64_t{8} << 20, 3, &pool);
    ASSERT_EQ(rates.size(), 3u);
    for (double r : rates) EXPECT_GT(r, 0);
    EXPECT_TRUE(measure_read_bandwidth(1 << 20, 0, nullptr).empty());
}

TEST(DenseKernels, DequantizeRowWidensEveryDenseType) {
    for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
        const TestMatrix w(type, 3, 33, 70);
        std::vector<float> row(33), want(33);
        dequantize_row(w.m, 2, row.data());
        for (int c = 0; c < 33; ++c) {
            const int64_t i = 2 * 33 + c;
            want[c] = type == TensorType::F32   ? w.f32[i]
                      : type == TensorType::F16 ? fp16_to_fp32(w.u16[i])
                                                : bf16_to_fp32(w.u16[i]);
        }
        EXPECT_TRUE(same_bits(row, want)) << tensor_type_name(type);
    }
}

// The whole forward pass across machines: `ferry bench` hashes the final
// logits. The host gives one value at every level and thread count, and the
// 32-bit build (scripts/build-i686.sh) gives the same under qemu as a
// Pentium II (x87 scalar), a Core Duo (SSE2), a Core 2 Duo (SSSE3) and a Haswell (AVX2), for f32
// weights and for the same model stored as f16 and bf16.
std::string bench_checksum(const std::vector<std::string>& prefix, const std::string& binary, const std::string& model,
                           const std::vector<std::string>& extra) {
    std::vector<std::string> argv = prefix;
    for (const char* a : {"bench", "--prompt-tokens", "9", "--gen-tokens", "20", "--runs", "1", "--bandwidth-passes", "0"})
        argv.push_back(a);
    argv.insert(argv.begin() + static_cast<long>(prefix.size()), binary);
    argv.push_back(model);
    argv.insert(argv.end(), extra.begin(), extra.end());
    const test::CommandResult r = test::run_command(argv, 120);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const size_t at = r.out.find("checksum   ");
    return at == std::string::npos ? "no checksum in: " + r.out : r.out.substr(at + 11, 16);
}

// True if a file under kernels/ or common/ changed after `binary` was built
// (then its numbers may rightly differ; scripts/test.sh always rebuilds it).
bool older_than_sources(const std::string& binary) {
    namespace fs = std::filesystem;
    const fs::file_time_type built = fs::last_write_time(binary);
    for (const char* dir : {"kernels", "common"})
        for (const auto& e : fs::recursive_directory_iterator(std::string(FERRY_SOURCE_DIR) + "/" + dir))
            if (e.is_regular_file() && e.last_write_time() > built) return true;
    return false;
}

class DenseAcrossMachines : public ::testing::TestWithParam<const char*> {};

TEST_P(DenseAcrossMachines, LogitsChecksumIsTheSameEverywhere) {
    const std::string type = GetParam();
    test::TempDir tmp;
    std::string model = test::model_path("stories260K.bin");
    if (type != "f32") {
        const std::string out = tmp.file("stories260K-" + type + ".gguf");
        const test::CommandResult q = test::run_command({test::ferry_bin(), "quantize", model, out, "--type", type, "-z",
                                                         test::model_path("tok512.bin")});
        ASSERT_EQ(q.exit_code, 0) << q.err;
        model = out;
    }
    const std::string want = bench_checksum({}, test::ferry_bin(), model, {"--kernels", "scalar", "--threads", "1"});
    ASSERT_EQ(want.size(), 16u) << want;
    for (const Level l : compiled_levels()) {
        if (!level_runs_here(l)) continue;
        const char* level = level_name(l);
        for (const char* threads : {"1", "3"})
            EXPECT_EQ(bench_checksum({}, test::ferry_bin(), model, {"--kernels", level, "--threads", threads}), want)
                << level << ", " << threads << " threads";
    }
    const std::string i686 = test::i686_binary("coordinator/ferry");
    if (const test::I686Launch l = test::i686_launch(i686, "pentium2"); !l.available)
        GTEST_SKIP() << "only the host was compared: " << l.why;
    if (older_than_sources(i686)) GTEST_SKIP() << i686 << " is older than kernels/ or common/: rerun scripts/build-i686.sh";
    struct Cpu {
        const char* qemu_cpu;
        const char* level;
    };
    for (const Cpu cpu : {Cpu{"pentium2", "scalar"}, Cpu{"coreduo", "sse2"}, Cpu{"core2duo", "ssse3"}, Cpu{"Haswell", "avx2"}}) {
        const std::string got = bench_checksum(test::i686_launch(i686, cpu.qemu_cpu).prefix, i686, model,
                                               {"--kernels", cpu.level, "--threads", "2"});
        EXPECT_EQ(got, want) << "32-bit build on an emulated " << cpu.qemu_cpu << " with " << cpu.level << " kernels";
    }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, DenseAcrossMachines, ::testing::Values("f32", "f16", "bf16"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace ferry::kernels
