// ferry's output against llama2.c's run.c on the real shipped models
// (../shared/models/reference): text byte for byte, ids token for token,
// in-process for every kernel level this CPU has, and through the CLI.
#include <gtest/gtest.h>

#include <cstdio>
#include <ostream>

#include "common/model_file.h"
#include "common/tokenizer.h"
#include "coordinator/generation/generate.h"
#include "coordinator/generation/local_engine.h"
#include "kernels/cpu_features.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

struct ReferenceCase {
    const char* reference;  // basename in reference/
    const char* model;
    const char* tokenizer;
    float temperature;
    float topp;
    uint64_t seed;
    int steps;
    const char* prompt;
};

const ReferenceCase kCases[] = {
    {"stories260K.greedy", "stories260K.bin", "tok512.bin", 0.0f, 0.9f, 1, 200, "Once upon a time"},
    {"stories260K.greedy.n256", "stories260K.bin", "tok512.bin", 0.0f, 0.9f, 1, 256, "Once upon a time"},
    {"stories260K.greedy.n256.noprompt", "stories260K.bin", "tok512.bin", 0.0f, 0.9f, 1, 256, ""},
    {"stories260K.t1p09.s42.n256", "stories260K.bin", "tok512.bin", 1.0f, 0.9f, 42, 256, ""},
    {"stories260K.t1p09.s133742.n256", "stories260K.bin", "tok512.bin", 1.0f, 0.9f, 133742, 256, ""},
    {"aidreams260K.greedy", "aidreams260K.bin", "aidreams260K-tok512.bin", 0.0f, 0.9f, 1, 200, "Once upon a time"},
    {"aidreams260K.greedy.n256", "aidreams260K.bin", "aidreams260K-tok512.bin", 0.0f, 0.9f, 1, 256,
     "Once upon a time"},
    {"aidreams260K.greedy.n256.noprompt", "aidreams260K.bin", "aidreams260K-tok512.bin", 0.0f, 0.9f, 1, 256, ""},
};

// ctest lists parameterised tests by their printed parameters: print the name.
void PrintTo(const ReferenceCase& rc, std::ostream* os) { *os << rc.reference; }

std::string ids_text(const std::vector<int>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    return s + "\n";
}

struct Generated {
    std::string text;
    std::string ids;
};

Generated generate_in_process(const ReferenceCase& rc) {
    const ModelFile file = open_model_file(test::model_path(rc.model));
    const Tokenizer tok = Tokenizer::load_llama2c(test::model_path(rc.tokenizer), file.config.vocab_size);
    kernels::ThreadPool pool(2);
    LocalEngine engine(file, file.config.seq_len, &pool);
    Sampler sampler(file.config.vocab_size, SamplerParams{rc.temperature, rc.topp, rc.seed});
    std::FILE* out = std::tmpfile();
    const GenerateResult r = generate(engine, tok, sampler, GenerateOptions{rc.prompt, rc.steps}, out);
    std::rewind(out);
    Generated g;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, out)) > 0) g.text.append(buf, n);
    std::fclose(out);
    g.ids = ids_text(r.ids);
    return g;
}

class ReferenceOutputs : public ::testing::TestWithParam<std::tuple<ReferenceCase, kernels::Level>> {};

TEST_P(ReferenceOutputs, MatchesRunC) {
    const auto& [rc, level] = GetParam();
    if (!kernels::set_active_level(level)) GTEST_SKIP() << "this CPU lacks " << kernels::level_name(level);
    const Generated g = generate_in_process(rc);
    kernels::set_active_level(kernels::best_level());
    EXPECT_EQ(g.text, test::read_file(test::reference_path(std::string(rc.reference) + ".txt")));
    EXPECT_EQ(g.ids, test::read_file(test::reference_path(std::string(rc.reference) + ".ids.txt")));
}

INSTANTIATE_TEST_SUITE_P(AllCases, ReferenceOutputs,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::ValuesIn(kernels::compiled_levels())),
                         [](const auto& info) {
                             std::string name = std::string(std::get<0>(info.param).reference) + "_" +
                                                kernels::level_name(std::get<1>(info.param));
                             for (char& ch : name)
                                 if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                             return name;
                         });

// The command line a user types, stdout compared byte for byte.
TEST(ReferenceOutputsCli, SeededRunPrintsExactlyRunCText) {
    test::TempDir tmp;
    const auto r = test::run_command({test::ferry_bin(), "run", test::model_path("stories260K.bin"), "-z",
                                      test::model_path("tok512.bin"), "-t", "1.0", "-p", "0.9", "-s", "133742", "-n",
                                      "256", "--ids-out", tmp.file("ids.txt")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.t1p09.s133742.n256.txt")));
    EXPECT_EQ(test::read_file(tmp.file("ids.txt")),
              test::read_file(test::reference_path("stories260K.t1p09.s133742.n256.ids.txt")));
    EXPECT_NE(r.err.find("decode:"), std::string::npos) << "statistics belong on stderr";
}

TEST(ReferenceOutputsCli, GreedyLongFormFlags) {
    const auto r = test::run_command({test::ferry_bin(), "run", test::model_path("aidreams260K.bin"), "--tokenizer",
                                      test::model_path("aidreams260K-tok512.bin"), "--temperature", "0", "--steps",
                                      "256", "--prompt", "Once upon a time", "--threads", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("aidreams260K.greedy.n256.txt")));
}

}  // namespace
}  // namespace ferry
