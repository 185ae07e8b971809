// The 32-bit build (scripts/build-i686.sh) on an emulated Pentium II: no SSE
// at all, x87 floating point. It must pick the scalar kernels by itself and
// still print exactly what llama2.c prints.
#include <gtest/gtest.h>


#include "tests/test_support.h"

namespace ferry {
namespace {

// The 32-bit ferry on an emulated Pentium II, then `args`.
std::vector<std::string> on_pentium2(const test::I686Launch& l, const std::vector<std::string>& args) {
    std::vector<std::string> argv = l.prefix;
    argv.push_back(test::i686_binary("coordinator/ferry"));
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

// Pentium II: the machine of the EXO Labs llama2.c demo; MMX but no SSE, so
// any stray SSE/SSE2 instruction in the portable path traps here.
TEST(I686, PentiumIIRunsTheReferenceWithScalarKernels) {
    const test::I686Launch l = test::i686_launch(test::i686_binary("coordinator/ferry"), "pentium2");
    if (!l.available) GTEST_SKIP() << l.why;
    test::TempDir tmp;
    const auto r = test::run_command(on_pentium2(l, {"run", test::model_path("stories260K.bin"), "-z",
                                                     test::model_path("tok512.bin"), "-t", "1.0", "-p", "0.9", "-s",
                                                     "42", "-n", "256", "--ids-out", tmp.file("ids")}),
                                     300);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.t1p09.s42.n256.txt")));
    EXPECT_EQ(test::read_file(tmp.file("ids")), test::read_file(test::reference_path("stories260K.t1p09.s42.n256.ids.txt")));
    EXPECT_NE(r.err.find("scalar kernels"), std::string::npos) << r.err;
}

TEST(I686, ForcingAMissingInstructionSetIsAClearError) {
    const test::I686Launch l = test::i686_launch(test::i686_binary("coordinator/ferry"), "pentium2");
    if (!l.available) GTEST_SKIP() << l.why;
    const auto r = test::run_command(on_pentium2(l, {"run", test::model_path("stories260K.bin"), "-z",
                                                     test::model_path("tok512.bin"), "--kernels", "sse2", "-n", "4"}));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("--kernels sse2"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty());
}

}  // namespace
}  // namespace ferry
