// The tokenizer.bin fuzz target's entry (tests/fuzz/tokenizer_bin_fuzz.h),
// run in every ctest over a fixed corpus: the real llama2.c tokenizers, one
// ferry writes, then thousands of deterministic mutations of them. Every
// input must end in a tokenizer that encodes and decodes or a ferry::Error;
// a crash, an id outside the vocabulary or another exception fails the test.
#include <gtest/gtest.h>

#include <iostream>

#include "common/llama2c_writer.h"
#include "tests/fuzz/mutate.h"
#include "tests/fuzz/tokenizer_bin_fuzz.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

int run_entry(const std::string& bytes) {
    return fuzz::fuzz_tokenizer_bin(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string read_model(const std::string& name) { return test::read_file(test::model_path(name)); }

TEST(TokenizerBinFuzzCorpus, RealTokenizersLoadThroughTheEntry) {
    // 512-token files load at 512 (and at a tiny size when their last byte picks one); tokenizer.bin at 32000 too.
    EXPECT_GE(run_entry(read_model("tok512.bin")), 1);
    EXPECT_GE(run_entry(read_model("aidreams260K-tok512.bin")), 1);
    EXPECT_GE(run_entry(read_model("tokenizer.bin")), 2);
    EXPECT_EQ(run_entry(""), 0);
    EXPECT_EQ(run_entry("\x01\x02"), 0);
}

TEST(TokenizerBinFuzzCorpus, MutantsEndInSuccessOrFerryError) {
    test::TempDir dir;
    write_synthetic_tokenizer(dir.file("synthetic.bin"), 512);
    const std::vector<std::pair<std::string, int>> seeds = {
        {test::read_file(dir.file("synthetic.bin")), 2500},
        {read_model("tok512.bin"), 2500},
        {read_model("aidreams260K-tok512.bin"), 2500},
        {read_model("tokenizer.bin"), 40},
    };
    fuzz::Mutator mutate(20260526);
    int loaded = 0, refused = 0;
    for (const auto& [seed, count] : seeds)
        for (int i = 0; i < count; ++i) {
            // Each token is a score, a length and its bytes: the structure runs through the
            // whole file, so mutations go anywhere in the first 512 tokens' worth of it.
            const int n = run_entry(mutate(seed, 8192));
            loaded += n;
            refused += 3 - n;
        }
    std::cout << "[ measured ] " << loaded + refused << " loads of mutants: " << loaded << " loaded, " << refused
              << " refused with a ferry::Error\n";
    EXPECT_GT(loaded, 3000) << "the corpus must reach encode and decode";
    EXPECT_GT(refused, 5000) << "and the loader's checks";
}

}  // namespace
}  // namespace ferry
