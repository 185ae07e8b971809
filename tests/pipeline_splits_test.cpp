// Token-exact pipelines: `ferry run --workers` across real ferry-worker
// processes on loopback equals llama2.c's reference output byte for byte and
// token for token, for every split of stories260K's 5 layers over 1, 2 and 3
// workers, greedy and seeded, with the embedding and head on the coordinator
// or on the workers, and for the second shipped model.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <regex>

#include "common/model_file.h"
#include "common/sampler.h"
#include "coordinator/pipeline/pipeline_engine.h"
#include "kernels/thread_pool.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

struct Reference {
    std::vector<std::string> flags;
    std::string name;  // reference/<name>.txt and .ids.txt
};

const std::vector<Reference>& stories_references() {
    static const std::vector<Reference> refs = {
        {{"-t", "0", "-n", "256", "-i", "Once upon a time"}, "stories260K.greedy.n256"},
        {{"-t", "1.0", "-p", "0.9", "-s", "42", "-n", "256"}, "stories260K.t1p09.s42.n256"},
        {{"-t", "1.0", "-p", "0.9", "-s", "133742", "-n", "256"}, "stories260K.t1p09.s133742.n256"},
    };
    return refs;
}

// Every way to write n as an ordered sum of k positive parts.
void compositions(int n, int k, std::vector<int>& cur, std::vector<std::vector<int>>& out) {
    if (k == 1) {
        cur.push_back(n);
        out.push_back(cur);
        cur.pop_back();
        return;
    }
    for (int first = 1; first <= n - (k - 1); ++first) {
        cur.push_back(first);
        compositions(n - first, k - 1, cur, out);
        cur.pop_back();
    }
}

std::string join(const std::vector<int>& v) {
    std::string s;
    for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
    return s;
}

// Returns the run's stderr (the plan and the node table).
std::string expect_reference(const std::string& model, const std::string& tokenizer, const Reference& ref,
                             const std::vector<std::string>& pipeline_flags, const std::string& what) {
    test::TempDir tmp;
    std::vector<std::string> flags = ref.flags;
    flags.insert(flags.end(), pipeline_flags.begin(), pipeline_flags.end());
    flags.insert(flags.end(), {"--threads", "1", "--ids-out", tmp.file("ids")});
    const auto r = test::run_command(test::ferry_run_args(model, tokenizer, flags), 60);
    EXPECT_EQ(r.exit_code, 0) << what << "\n" << r.err;
    if (r.exit_code != 0) return r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path(ref.name + ".txt"))) << what;
    EXPECT_EQ(test::read_file(tmp.file("ids")), test::read_file(test::reference_path(ref.name + ".ids.txt"))) << what;
    return r.err;
}

// Bytes the coordinator received per token (the node table's last column of its row).
double coordinator_bytes_received(const std::string& err) {
    std::smatch m;
    if (!std::regex_search(err, m, std::regex(R"(\ncoordinator [^\n]*\s([0-9]+)\n)"))) return -1;
    return std::stod(m[1]);
}

class PipelineSplits : public ::testing::Test {
protected:
    void start_workers(int n) {
        for (int i = 0; i < n; ++i)
            workers_.push_back(std::make_unique<test::WorkerProcess>(
                std::vector<std::string>{"--threads", "1", "--cache-dir", dir_.file("cache" + std::to_string(i))},
                dir_.file("worker" + std::to_string(i) + ".log")));
    }
    std::string list(int n) const {
        std::vector<const test::WorkerProcess*> w;
        for (int i = 0; i < n; ++i) w.push_back(workers_[static_cast<size_t>(i)].get());
        return test::addresses(w);
    }
    test::TempDir dir_;
    std::vector<std::unique_ptr<test::WorkerProcess>> workers_;
};

TEST_F(PipelineSplits, EverySplitOfStories260KOnOneTwoAndThreeWorkers) {
    start_workers(3);
    int runs = 0;
    for (int k = 1; k <= 3; ++k) {
        std::vector<std::vector<int>> splits;
        std::vector<int> cur;
        compositions(5, k, cur, splits);
        for (const std::vector<int>& split : splits)
            for (const Reference& ref : stories_references()) {
                expect_reference("stories260K.bin", "tok512.bin", ref, {"--workers", list(k), "--split", join(split)},
                                 ref.name + " split " + join(split));
                ++runs;
            }
    }
    EXPECT_EQ(runs, 3 * (1 + 4 + 6));
}

TEST_F(PipelineSplits, EmbeddingAndHeadOnTheWorkers) {
    start_workers(3);
    const std::vector<std::vector<std::string>> placements = {
        {"--embedding-on-worker"}, {"--head-on-worker"}, {"--embedding-on-worker", "--head-on-worker"}};
    for (const auto& placement : placements)
        for (const std::vector<int>& split : std::vector<std::vector<int>>{{5}, {1, 4}, {2, 1, 2}})
            for (const Reference& ref : stories_references()) {
                std::vector<std::string> flags = {"--workers", list(static_cast<int>(split.size())), "--split", join(split)};
                flags.insert(flags.end(), placement.begin(), placement.end());
                const std::string what = ref.name + " split " + join(split) + " " + placement.back();
                const std::string err = expect_reference("stories260K.bin", "tok512.bin", ref, flags, what);
                // With the head on the last worker the draw is made there: a token id
                // (and the sampler state, the stages' traces) comes back, not 512 x 4 bytes of logits.
                if (placement.back() == "--head-on-worker") {
                    const double received = coordinator_bytes_received(err);
                    EXPECT_GT(received, 0) << what << "\n" << err;
                    EXPECT_LT(received, 40 + 60 * static_cast<double>(split.size())) << what << "\n" << err;
                }
            }
}

TEST_F(PipelineSplits, Aidreams260KWithItsTokenizerOnEverySplit) {
    start_workers(3);
    const Reference greedy{{"-t", "0", "-n", "256", "-i", "Once upon a time"}, "aidreams260K.greedy.n256"};
    const Reference noprompt{{"-t", "0", "-n", "256"}, "aidreams260K.greedy.n256.noprompt"};
    for (int k = 1; k <= 3; ++k) {
        std::vector<std::vector<int>> splits;
        std::vector<int> cur;
        compositions(4, k, cur, splits);
        for (const std::vector<int>& split : splits)
            for (const Reference& ref : {greedy, noprompt}) {
                expect_reference("aidreams260K.bin", "aidreams260K-tok512.bin", ref,
                                 {"--workers", list(k), "--split", join(split)}, ref.name + " split " + join(split));
                expect_reference("aidreams260K.bin", "aidreams260K-tok512.bin", ref,
                                 {"--workers", list(k), "--split", join(split), "--embedding-on-worker", "--head-on-worker"},
                                 ref.name + " split " + join(split) + ", embedding and head on the workers");
            }
    }
    // No --split: the planner decides (and may leave workers out).
    expect_reference("aidreams260K.bin", "aidreams260K-tok512.bin", greedy, {"--workers", list(3)}, "planned");
}

// The draw made on the last worker (the sampler's RNG state travels with the
// request) gives run.c's seeded tokens, as the coordinator's own draw does.
// A GGUF model's shards (its own tokenizer stays on the coordinator), and a
// prompt sent in micro-batches so the stages overlap.
TEST_F(PipelineSplits, GgufModelAndPrefillMicroBatches) {
    start_workers(2);
    test::TempDir tmp;
    const auto r = test::run_command({test::ferry_bin(), "run", test::model_path("stories260K.gguf"), "-t", "0", "-n",
                                      "256", "--threads", "1", "--workers", list(2), "--split", "3,2"},
                                     60);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.greedy.n256.noprompt.txt")));
    for (const char* chunk : {"1", "2", "3"})
        expect_reference("stories260K.bin", "tok512.bin", stories_references()[0],
                         {"--workers", list(2), "--split", "2,3", "--prefill-chunk", chunk},
                         std::string("--prefill-chunk ") + chunk);
}

// Llama 3.1's RoPE frequency factors (rope_freqs.weight) travel with every
// shard that has layers: a model with factors that change the rotation gives,
// through 2 and 3 workers, the single process's tokens.
TEST_F(PipelineSplits, RopeFrequencyFactorsTravelWithTheShards) {
    start_workers(3);
    const std::string model = test::gguf_with_f32_tensor(test::model_path("stories260K.gguf"), dir_.file("rope.gguf"),
                                                         "rope_freqs.weight", {1, 1, 8, 8});
    auto run = [&](const std::vector<std::string>& more, const std::string& what) {
        std::vector<std::string> argv = {test::ferry_bin(), "run", model, "-t", "1.0", "-s", "42", "-n", "128",
                                         "--threads", "1", "--ids-out", dir_.file("ids")};
        argv.insert(argv.end(), more.begin(), more.end());
        const auto r = test::run_command(argv, 60);
        EXPECT_EQ(r.exit_code, 0) << what << "\n" << r.err;
        return std::make_pair(r.out, test::read_file(dir_.file("ids")));
    };
    const auto single = run({}, "single process");
    ASSERT_GT(single.second.size(), 100u);
    // The factors matter (else this test could not fail).
    const auto unscaled = [&] {
        std::vector<std::string> argv = {test::ferry_bin(), "run", test::model_path("stories260K.gguf"), "-t", "1.0",
                                         "-s", "42", "-n", "128", "--threads", "1"};
        return test::run_command(argv, 60).out;
    }();
    EXPECT_NE(single.first, unscaled);
    for (const auto& flags : std::vector<std::vector<std::string>>{{"--workers", list(2), "--split", "2,3"},
                                                                    {"--workers", list(3), "--split", "1,1,3",
                                                                     "--embedding-on-worker", "--head-on-worker"}}) {
        const auto piped = run(flags, flags[3]);
        EXPECT_EQ(piped.first, single.first) << flags[3];
        EXPECT_EQ(piped.second, single.second) << flags[3];
    }
    for (const auto& w : workers_) EXPECT_EQ(w->log().find("differ"), std::string::npos) << w->log();
}

TEST(PipelineSampling, OnTheLastWorkerEqualsTheCoordinatorsSampler) {
    PipelineOptions o;
    o.split = {3, 2};
    o.embedding_on_worker = true;
    o.head_on_worker = true;
    test::TwoWorkerSession s(o);
    PipelineEngine& engine = *s.engine;
    const ModelFile& file = s.file;
    for (const char* name : {"stories260K.t1p09.s42.n256", "stories260K.t1p09.s133742.n256"}) {
        const std::vector<int> expected = test::reference_ids(name);
        const SamplerParams params{1.0f, 0.9f, std::string(name).find("s42.") != std::string::npos ? 42u : 133742u};
        Sampler sampler(file.config.vocab_size, params);
        int token = expected[0];
        for (int pos = 0; pos + 1 < static_cast<int>(expected.size()); ++pos) {
            token = engine.forward_sample(&token, 1, pos, sampler);
            ASSERT_EQ(token, expected[static_cast<size_t>(pos) + 1]) << name << " at position " << pos;
        }
    }
}

}  // namespace
}  // namespace ferry
