// The KV cache type reaches the workers: a pipeline run with --kv-type f16 or
// q8_0 gives exactly the tokens the single process gives with that type (the
// workers hold and use that cache), and how far each type agrees with f32
// (greedy, 256 tokens) is measured on stories260K and on a synthetic model
// whose key/value width is a multiple of 256 (seed and spread chosen so that
// greedy decoding runs 256 tokens without ending on BOS and without looping).
#include <gtest/gtest.h>

#include <sstream>

#include "tests/test_support.h"

namespace ferry {
namespace {

std::vector<int> ids_of(const std::string& path) {
    std::vector<int> ids;
    std::istringstream in(test::read_file(path));
    for (int id; in >> id;) ids.push_back(id);
    return ids;
}

int agreeing(const std::vector<int>& a, const std::vector<int>& b) {
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    return static_cast<int>(i);
}

// Greedy ids of `model` with `kv`, in one process or through `workers`.
std::vector<int> greedy(const test::TempDir& tmp, const std::string& model, const std::string& tokenizer,
                        const std::string& kv, const std::string& workers = "", const std::string& split = "") {
    const std::string out = tmp.file("ids-" + kv + (workers.empty() ? "-local" : "-pipe") + ".txt");
    std::vector<std::string> args = {test::ferry_bin(), "run",  model, "-z",   tokenizer, "-t",       "0",
                                     "-n",              "256", "-i",  "Once", "--kv-type", kv, "--ids-out", out,
                                     "--threads",       "1"};
    if (!workers.empty()) args.insert(args.end(), {"--workers", workers, "--split", split});
    const auto r = test::run_command(args, 120);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ids_of(out);
}

TEST(KvTypes, ReachTheWorkersAndAgreeWithF32AsMeasured) {
    test::TempDir tmp;
    test::WorkerProcess a({"--threads", "1", "--cache-dir", tmp.file("ca")}, tmp.file("a.log"));
    test::WorkerProcess b({"--threads", "1", "--cache-dir", tmp.file("cb")}, tmp.file("b.log"));
    const std::string workers = a.address() + "," + b.address();
    const std::string model = test::model_path("stories260K.bin"), tok = test::model_path("tok512.bin");
    const std::vector<int> f32 = greedy(tmp, model, tok, "f32");
    ASSERT_GE(f32.size(), 200u);
    for (const std::string kv : {"f16", "q8_0"}) {
        const std::vector<int> local = greedy(tmp, model, tok, kv);
        EXPECT_EQ(greedy(tmp, model, tok, kv, workers, "2,3"), local) << kv << ": the pipeline must equal one process";
        const int agree = agreeing(f32, local);
        ::testing::Test::RecordProperty("stories260K_" + kv + "_agreeing_tokens", agree);
        std::printf("stories260K --kv-type %s: the first %d of %zu greedy ids equal f32's\n", kv.c_str(), agree,
                    f32.size());
        // Measured: f16 all 257 ids, q8_0 the first 115 (tests/kv_cache_test.cpp has the same figures in-process).
        if (kv == "f16") EXPECT_EQ(agree, static_cast<int>(f32.size()));
        else EXPECT_GE(agree, 64);
    }
}

TEST(KvTypes, AgreementOnASyntheticModelWithKvWidth256) {
    test::TempDir tmp;
    const auto s = test::run_command({test::ferry_bin(), "synth", tmp.file("m.bin"), "--dim", "512", "--hidden-dim",
                                      "1024", "--layers", "4", "--heads", "8", "--kv-heads", "4", "--vocab", "512",
                                      "--seq-len", "320", "--stddev", "0.1", "--seed", "1", "--tokenizer-out", tmp.file("tok.bin"), "-q"});
    ASSERT_EQ(s.exit_code, 0) << s.err;
    const std::vector<int> f32 = greedy(tmp, tmp.file("m.bin"), tmp.file("tok.bin"), "f32");
    ASSERT_GE(f32.size(), 200u);
    for (const std::string kv : {"f16", "q8_0"}) {
        const int agree = agreeing(f32, greedy(tmp, tmp.file("m.bin"), tmp.file("tok.bin"), kv));
        ::testing::Test::RecordProperty("synthetic_kv256_" + kv + "_agreeing_tokens", agree);
        std::printf("synthetic (kv_dim 256) --kv-type %s: the first %d of %zu greedy ids equal f32's\n", kv.c_str(),
                    agree, f32.size());
        EXPECT_GE(agree, 2) << "the prompt and the first sample at least";
    }
}

}  // namespace
}  // namespace ferry
