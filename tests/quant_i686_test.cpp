// Quantized models give the same tokens on every machine of a pipeline: the
// host's kernels at every level, and the 32-bit build on an emulated
// Pentium II (x87 floating point, no SSE), Core Duo (SSE2 with 8 xmm
// registers) and Core 2 Duo (SSSE3), for the reference Q8_0 and Q4_0 files of stories260K with
// seeded sampling (any difference in a logit bit would show in the sampled
// tokens soon), and for K-quant and ternary models by their logits checksum.
#include <gtest/gtest.h>

#include <string>

#include "tests/test_support.h"

namespace ferry {
namespace {

std::string quantized_model(const std::string& name) { return test::shared_dir() + "/models/gguf/" + name; }

std::string i686_ferry() { return test::i686_binary("coordinator/ferry"); }

// The 32-bit ferry on an emulated `cpu`, then `args`; empty if it cannot run here (*why says so).
std::vector<std::string> i686_ferry_on(const std::string& cpu, const std::vector<std::string>& args, std::string* why) {
    const test::I686Launch l = test::i686_launch(i686_ferry(), cpu);
    *why = l.why;
    if (!l.available) return {};
    std::vector<std::string> argv = l.prefix;
    argv.push_back(i686_ferry());
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

test::CommandResult run_host(const std::string& model, const std::string& kernels) {
    return test::run_command({test::ferry_bin(), "run", model, "-n", "96", "-t", "1.0", "-s", "1234", "--threads", "2",
                              "--kernels", kernels});
}

class QuantAcrossMachines : public ::testing::TestWithParam<const char*> {};

TEST_P(QuantAcrossMachines, EveryKernelLevelSamplesTheSameStory) {
    const std::string model = quantized_model(GetParam());
    const test::CommandResult want = run_host(model, "scalar");
    ASSERT_EQ(want.exit_code, 0) << want.err;
    ASSERT_FALSE(want.out.empty());
    for (const char* level : {"sse2", "ssse3", "avx2", "avxvnni", "avx512"}) {
        const test::CommandResult got = run_host(model, level);
        if (got.exit_code != 0 && got.err.find("--kernels") != std::string::npos) continue;  // CPU without it
        ASSERT_EQ(got.exit_code, 0) << got.err;
        EXPECT_EQ(got.out, want.out) << level;
    }
}

bool have_i686(std::string* why) { return !i686_ferry_on("pentium2", {}, why).empty(); }

// The story of run_host from the 32-bit build on an emulated `cpu` with
// --kernels `kernels`, which must run at `level`.
void expect_i686_story(const std::string& model, const char* cpu, const char* kernels, const char* level) {
    const test::CommandResult want = run_host(model, "auto");
    ASSERT_EQ(want.exit_code, 0) << want.err;
    std::string why;
    const test::CommandResult got = test::run_command(
        i686_ferry_on(cpu, {"run", model, "-n", "96", "-t", "1.0", "-s", "1234", "--threads", "2", "--kernels", kernels},
                      &why),
        300);
    ASSERT_EQ(got.exit_code, 0) << got.err;
    EXPECT_NE(got.err.find(std::string(level) + " kernels"), std::string::npos) << got.err;
    EXPECT_EQ(got.out, want.out) << cpu;
}

TEST_P(QuantAcrossMachines, PentiumIISamplesTheSameStory) {
    if (std::string why; !have_i686(&why)) GTEST_SKIP() << why;
    // auto: the worker must find out by itself that this CPU has no SSE2.
    expect_i686_story(quantized_model(GetParam()), "pentium2", "auto", "scalar");
}

// The 32-bit build's SSE2 kernels (8 xmm registers, not x86-64's 16) on an
// emulated Core Duo: a Pentium 4-class worker.
TEST_P(QuantAcrossMachines, A32BitSse2WorkerSamplesTheSameStory) {
    if (std::string why; !have_i686(&why)) GTEST_SKIP() << why;
    expect_i686_story(quantized_model(GetParam()), "coreduo", "sse2", "sse2");
}

// The SSSE3 level (byte multiply-adds) on an emulated Core 2 Duo, the most
// common CPU of old pools without AVX2.
TEST_P(QuantAcrossMachines, A32BitSsse3WorkerSamplesTheSameStory) {
    if (std::string why; !have_i686(&why)) GTEST_SKIP() << why;
    expect_i686_story(quantized_model(GetParam()), "core2duo", "ssse3", "ssse3");
}

// Row widths of 256 so that the K-quants and ternary types are used as such
// (stories260K's 64-wide rows fall back): the logits checksum of the 32-bit
// build at SSSE3, SSE2 and scalar equals the host's.
TEST(QuantAcrossMachines, KQuantsAndTernaryOn32BitLevels) {
    if (std::string why; !have_i686(&why)) GTEST_SKIP() << why;
    test::TempDir tmp;
    for (const char* type : {"q4_K", "q6_K", "tq2_0", "tq1_0"}) {
        const std::string model = tmp.file(std::string(type) + ".gguf");
        const auto synth = test::run_command({test::ferry_bin(), "synth", model, "--dim", "256", "--hidden-dim", "512",
                                              "--layers", "1", "--heads", "4", "--vocab", "256", "--seq-len", "32",
                                              "--format", "gguf", "--type", type, "-q"});
        ASSERT_EQ(synth.exit_code, 0) << synth.err;
        const std::vector<std::string> bench = {"bench", model, "--threads", "1", "--runs", "1", "--prompt-tokens", "4",
                                                "--gen-tokens", "3", "--bandwidth-passes", "0", "--json"};
        std::vector<std::string> host = {test::ferry_bin()};
        host.insert(host.end(), bench.begin(), bench.end());
        const auto want = test::run_command(host);
        ASSERT_EQ(want.exit_code, 0) << want.err;
        const std::string checksum = want.out.substr(want.out.find("\"logits_checksum\""), 40);
        for (const auto& [cpu, level] :
             {std::pair{"core2duo", "ssse3"}, std::pair{"coreduo", "sse2"}, std::pair{"pentium2", "scalar"}}) {
            std::vector<std::string> args = bench;
            args.insert(args.end(), {"--kernels", level});
            std::string why;
            const std::vector<std::string> argv = i686_ferry_on(cpu, args, &why);
            const auto got = test::run_command(argv, 300);
            ASSERT_EQ(got.exit_code, 0) << got.err;
            EXPECT_NE(got.out.find(checksum), std::string::npos) << type << " on " << cpu << ": " << got.out;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Stories260K, QuantAcrossMachines,
                         ::testing::Values("stories260K-q8_0.gguf", "stories260K-q4_0.gguf"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                             return std::string(info.param).find("q8_0") != std::string::npos ? "Q8_0" : "Q4_0";
                         });

}  // namespace
}  // namespace ferry
