// The llama2.c checkpoint fuzz target's entry (tests/fuzz/llama2c_fuzz.h),
// run in every ctest over a fixed corpus: the real checkpoints, small ones
// ferry writes in every format (legacy, v1, v2; tied and separate
// classifier), then thousands of deterministic mutations of them aimed at the
// header. Every input must end in success or a ferry::Error; a tensor outside
// the file, a crash or another exception fails the test.
#include <gtest/gtest.h>

#include <iostream>

#include "common/llama2c_writer.h"
#include "common/tensor_source.h"
#include "tests/fuzz/llama2c_fuzz.h"
#include "tests/fuzz/mutate.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

bool run_entry(const std::string& bytes) {
    return fuzz::fuzz_llama2c(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

struct Seed {
    std::string name;
    std::string bytes;
    uint64_t header;  // where the structure is: 28 bytes (legacy) or 256 (ak42)
    int mutants;
};

// Small checkpoints in every layout the reader knows.
std::vector<Seed> written_seeds(const test::TempDir& dir) {
    ModelConfig c;
    c.dim = 16, c.hidden_dim = 32, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.vocab_size = 64, c.seq_len = 8;
    RandomTensorSource random(5);
    std::vector<Seed> seeds;
    for (const Llama2cFormat format : {Llama2cFormat::legacy, Llama2cFormat::v1, Llama2cFormat::v2})
        for (const bool shared : {true, false}) {
            Llama2cWriteOptions o;
            o.format = format;
            o.shared_classifier = shared;
            const std::string name = std::string(llama2c_format_name(format)) + (shared ? "-tied" : "-separate");
            write_llama2c(dir.file(name + ".bin"), c, random, o);
            seeds.push_back({name, test::read_file(dir.file(name + ".bin")),
                             format == Llama2cFormat::legacy ? 28u : 256u, 2500});
        }
    return seeds;
}

TEST(Llama2cFuzzCorpus, RealAndWrittenCheckpointsOpenThroughTheEntry) {
    test::TempDir dir;
    for (const Seed& s : written_seeds(dir)) EXPECT_TRUE(run_entry(s.bytes)) << s.name;
    for (const char* name : {"stories260K.bin", "aidreams260K.bin"})
        EXPECT_TRUE(run_entry(test::read_file(test::model_path(name)))) << name;
    // Not checkpoints: rejected with a ferry::Error, not a crash.
    EXPECT_FALSE(run_entry(""));
    EXPECT_FALSE(run_entry(test::read_file(test::model_path("tok512.bin"))));
}

TEST(Llama2cFuzzCorpus, MutantsEndInSuccessOrFerryError) {
    test::TempDir dir;
    std::vector<Seed> seeds = written_seeds(dir);
    for (const char* name : {"stories260K.bin", "aidreams260K.bin"})
        seeds.push_back({name, test::read_file(test::model_path(name)), 28, 150});
    fuzz::Mutator mutate(20260525);
    int accepted = 0, rejected = 0;
    for (const Seed& s : seeds)
        for (int i = 0; i < s.mutants; ++i) (run_entry(mutate(s.bytes, s.header)) ? accepted : rejected)++;
    std::cout << "[ measured ] " << accepted + rejected << " mutants: " << accepted << " opened, " << rejected
              << " rejected with a ferry::Error\n";
    EXPECT_GT(accepted, 1500) << "the corpus must reach the code behind the reader";
    EXPECT_GT(rejected, 8000) << "and the reader's checks";
}

}  // namespace
}  // namespace ferry
