// Quantized models give the same tokens on every machine of a pipeline: the
// host's scalar, SSE2 and AVX2 kernels, and the 32-bit build on an emulated
// Pentium II (x87 floating point, no SSE), for the reference Q8_0 and Q4_0
// files of stories260K with seeded sampling (any difference in a logit bit
// would show in the sampled tokens soon).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/test_support.h"

namespace ferry {
namespace {

std::string quantized_model(const std::string& name) { return test::shared_dir() + "/models/gguf/" + name; }

std::string i686_ferry() { return std::string(FERRY_SOURCE_DIR) + "/build-i686/coordinator/ferry"; }

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
    for (const char* level : {"sse2", "avx2"}) {
        const test::CommandResult got = run_host(model, level);
        if (got.exit_code != 0 && got.err.find("--kernels") != std::string::npos) continue;  // CPU without it
        ASSERT_EQ(got.exit_code, 0) << got.err;
        EXPECT_EQ(got.out, want.out) << level;
    }
}

TEST_P(QuantAcrossMachines, PentiumIISamplesTheSameStory) {
    if (!std::filesystem::exists("/usr/bin/qemu-i386") || !std::filesystem::exists(i686_ferry()))
        GTEST_SKIP() << "no i686 build or qemu-i386: run scripts/build-i686.sh (scripts/test.sh does)";
    const std::string model = quantized_model(GetParam());
    const test::CommandResult want = run_host(model, "auto");
    ASSERT_EQ(want.exit_code, 0) << want.err;
    const test::CommandResult got =
        test::run_command({"/usr/bin/qemu-i386", "-cpu", "pentium2", i686_ferry(), "run", model, "-n", "96", "-t",
                           "1.0", "-s", "1234", "--threads", "2"},
                          300);
    ASSERT_EQ(got.exit_code, 0) << got.err;
    EXPECT_NE(got.err.find("scalar kernels"), std::string::npos) << got.err;
    EXPECT_EQ(got.out, want.out);
}

INSTANTIATE_TEST_SUITE_P(Stories260K, QuantAcrossMachines,
                         ::testing::Values("stories260K-q8_0.gguf", "stories260K-q4_0.gguf"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                             return std::string(info.param).find("q8_0") != std::string::npos ? "Q8_0" : "Q4_0";
                         });

}  // namespace
}  // namespace ferry
