// `ferry run` sizes its KV cache to the positions the run reaches and checks
// memory before allocating: a 1 MB file that declares a 4M-position context
// tells a short story in megabytes, a run that cannot fit is refused in one
// line with the numbers and a --ctx that does fit, chat keeps the model's
// whole context, the workers of a pipeline get the run's context, and
// `ferry plan` refuses the broken files `ferry run` refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/test_support.h"

namespace ferry {
namespace {

constexpr int kHugeContext = 1 << 22;

// stories260K.gguf declaring a 4M-position context (it was trained for 512).
std::string huge_context_model(const test::TempDir& dir) {
    test::GgufEdit e;
    e.add = [](GgufWriter& w) { w.set_u32("llama.context_length", kHugeContext); };
    return test::edited_gguf(test::model_path("stories260K.gguf"), dir.file("ctx4m.gguf"), e);
}

test::CommandResult ferry(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {test::ferry_bin()};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_command(argv);
}

// The peak RSS `ferry run` reports on stderr ("memory: peak RSS 8.0 MB"), in MB.
double reported_peak_mb(const std::string& err) {
    const size_t at = err.find("peak RSS ");
    if (at == std::string::npos) return -1;
    size_t unit = 0;
    const double v = std::stod(err.substr(at + 9), &unit);
    const std::string rest = err.substr(at + 9 + unit, 3);
    return rest == " KB" ? v / 1024 : rest == " MB" ? v : rest == " GB" ? v * 1024 : -1;
}

TEST(RunContext, AHugeDeclaredContextCostsOnlyThePositionsTheRunReaches) {
    test::TempDir dir;
    const std::string model = huge_context_model(dir);
    // The greedy reference: 200 positions, so 200 rows of KV cache, not 4M
    // (which took 9 GB of zeroes, or died of std::bad_alloc).
    const auto r = ferry({"run", model, "-t", "0", "-n", "200", "-i", "Once upon a time", "--memory", "64M"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.greedy.txt")));
    FERRY_SKIP_IF_SANITIZED();  // the output is checked above; the peak would be the sanitizer's
    const double peak = reported_peak_mb(r.err);
    EXPECT_GT(peak, 0) << r.err;
    EXPECT_LT(peak, 64) << r.err;
}

TEST(RunContext, ARunThatCannotFitIsRefusedWithTheNumbersAndAContextThatFits) {
    test::TempDir dir;
    const std::string model = huge_context_model(dir);
    // -n 0 runs to the end of the model's context: all 4M positions.
    const auto r = ferry({"run", model, "-t", "0", "-n", "0", "--memory", "64M"});
    EXPECT_EQ(r.exit_code, 1);
    const std::string head = "ferry: error: this machine cannot run ctx4m.gguf at --ctx 4194304 --kv-type f32: "
                             "its KV cache and scratch need ";
    ASSERT_EQ(r.err.rfind(head, 0), 0u) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    for (const char* s : {"(KV cache 5.00 GB, workspace ", "--memory gives 64.0 MB, ", " short; any of these fits: --ctx "})
        EXPECT_NE(r.err.find(s), std::string::npos) << "missing '" << s << "' in: " << r.err;

    // The --ctx it offers is the longest that fits.
    const size_t at = r.err.find("fits: --ctx ") + 12;
    const int fits = std::stoi(r.err.substr(at));
    ASSERT_GT(fits, 1000) << r.err;
    const auto ok = ferry({"run", model, "-t", "0", "-n", "8", "--ctx", std::to_string(fits), "--memory", "64M"});
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    const auto over = ferry({"run", model, "-t", "0", "-n", "8", "--ctx", std::to_string(fits + 1), "--memory", "64M"});
    EXPECT_EQ(over.exit_code, 1);
    EXPECT_NE(over.err.find("cannot run ctx4m.gguf at --ctx " + std::to_string(fits + 1)), std::string::npos)
        << over.err;
}

TEST(RunContext, ChatKeepsTheModelsWholeContext) {
    // A conversation grows turn by turn, so chat allocates the model's context
    // (and this one cannot fit in 64 MB).
    test::TempDir dir;
    const std::string model = huge_context_model(dir);
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"chat", model, "--memory", "64M", "--chat-template", "llama2"},
          std::vector<std::string>{"run", model, "--chat", "-i", "Hello", "-n", "8", "--memory", "64M",
                                   "--chat-template", "llama2"}}) {
        const auto r = ferry(args);
        EXPECT_EQ(r.exit_code, 1) << args[0];
        EXPECT_NE(r.err.find("cannot run ctx4m.gguf at --ctx 4194304 "), std::string::npos) << r.err;
    }
}

TEST(RunContext, WorkersGetTheContextTheRunNeeds) {
    test::TempDir dir;
    test::WorkerProcess a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    test::WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    const auto r = test::run_command(test::ferry_run_args(
        "stories260K.bin", "tok512.bin",
        {"-t", "0", "-n", "200", "-i", "Once upon a time", "--workers", test::addresses({&a, &b}), "--split", "2,3"}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.greedy.txt")));
    EXPECT_NE(r.err.find("plan: context 200,"), std::string::npos) << r.err;
    // With --workers, --memory is the coordinator's own budget (workers have their own): too small for the
    // coordinator itself is refused before any worker is assigned.
    auto m = test::run_command(test::ferry_run_args(
        "stories260K.bin", "tok512.bin", {"-n", "8", "--workers", test::addresses({&a, &b}), "--memory", "4M"}));
    EXPECT_EQ(m.exit_code, 1);
    EXPECT_NE(m.err.find("the coordinator's memory budget of 4.0 MB cannot hold the coordinator itself"),
              std::string::npos)
        << m.err;
    m = test::run_command(test::ferry_run_args(
        "stories260K.bin", "tok512.bin",
        {"-t", "0", "-n", "200", "-i", "Once upon a time", "--workers", test::addresses({&a, &b}), "--memory", "64M"}));
    ASSERT_EQ(m.exit_code, 0) << m.err;
    EXPECT_EQ(m.out, test::read_file(test::reference_path("stories260K.greedy.txt")));
}

// `ferry plan` goes through the checks `ferry run` makes on the tensors, so a
// file run refuses is refused by plan with the same line.
TEST(RunContext, PlanRefusesTheFilesRunRefuses) {
    test::TempDir dir;
    const std::string stories = test::model_path("stories260K.gguf");
    test::GgufEdit missing;
    missing.keep_tensor = [](std::string_view t) { return t != "blk.2.ffn_up.weight"; };
    test::GgufEdit more_layers;  // declares 6 blocks, holds 5
    more_layers.add = [](GgufWriter& w) { w.set_u32("llama.block_count", 6); };
    test::GgufEdit wrong_shape;  // a norm of 32 values where dim is 64
    wrong_shape.keep_tensor = [](std::string_view t) { return t != "blk.1.ffn_norm.weight"; };
    wrong_shape.add = [](GgufWriter& w) {
        w.add_tensor("blk.1.ffn_norm.weight", TensorType::F32, {32},
                     [](int64_t, int64_t, uint8_t* out) { std::fill(out, out + 32 * 4, uint8_t{0}); });
    };
    const struct {
        std::string path;
        const char* says;
    } cases[] = {
        {test::edited_gguf(stories, dir.file("missing.gguf"), missing), "tensor blk.2.ffn_up.weight is missing"},
        {test::edited_gguf(stories, dir.file("more-layers.gguf"), more_layers), "tensor blk.5.attn_norm.weight is missing"},
        {test::edited_gguf(stories, dir.file("wrong-shape.gguf"), wrong_shape),
         "tensor blk.1.ffn_norm.weight is 1x32, the config needs 1x64"},
    };
    for (const auto& c : cases) {
        const auto run = ferry({"run", c.path, "-n", "8"});
        const auto plan = ferry({"plan", c.path, "--pool", "2x100M"});
        EXPECT_EQ(run.exit_code, 1) << c.path;
        EXPECT_EQ(plan.exit_code, 1) << c.path << ": " << plan.out;
        EXPECT_NE(run.err.find(c.says), std::string::npos) << run.err;
        EXPECT_EQ(plan.err, run.err);
    }
}

}  // namespace
}  // namespace ferry
