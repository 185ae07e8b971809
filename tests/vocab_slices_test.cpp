// The classifier split by vocabulary slices (issue 22): workers hold row
// ranges of the output matrix (tied or separate) and answer each token at
// once; greedy takes each slice's best value and index, sampling the slices'
// logits. The output equals one process's token for token, for 1, 2 and 3
// slices, on stages and on workers that hold nothing else, and every node
// stays within a --memory that could not hold the table whole.
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/test_support.h"

namespace ferry {
namespace {

struct Case {
    std::string split;
    int slices;
};

class VocabSlices : public ::testing::Test {
protected:
    void start_workers(int n, const std::vector<std::string>& extra = {}) {
        for (int i = 0; i < n; ++i) {
            std::vector<std::string> args = {"--threads", "1", "--cache-dir", dir_.file("cache" + std::to_string(i))};
            args.insert(args.end(), extra.begin(), extra.end());
            workers_.push_back(std::make_unique<test::WorkerProcess>(args, dir_.file("w" + std::to_string(i) + ".log")));
        }
    }
    std::string list(int n) const {
        std::vector<const test::WorkerProcess*> w;
        for (int i = 0; i < n; ++i) w.push_back(workers_[static_cast<size_t>(i)].get());
        return test::addresses(w);
    }
    int count(const std::string& split) const { return static_cast<int>(std::count(split.begin(), split.end(), ',')) + 1; }
    // `ferry run` of model/tokenizer with flags; returns {exit code, text, ids, stderr}.
    struct Run {
        int exit_code;
        std::string out, ids, err;
    };
    Run run(const std::string& model, const std::string& tokenizer, std::vector<std::string> flags) {
        const std::string ids = dir_.file("ids" + std::to_string(runs_++));
        flags.insert(flags.end(), {"--threads", "1", "--ids-out", ids});
        std::vector<std::string> argv = {test::ferry_bin(), "run", model, "-z", tokenizer};
        argv.insert(argv.end(), flags.begin(), flags.end());
        const auto r = test::run_command(argv, 120);
        return {r.exit_code, r.out, r.exit_code == 0 ? test::read_file(ids) : "", r.err};
    }
    test::TempDir dir_;
    std::vector<std::unique_ptr<test::WorkerProcess>> workers_;
    int runs_ = 0;
};

const std::vector<Case>& cases() {
    // One slice alone, slices on workers without layers, on stages, and both.
    static const std::vector<Case> c = {{"5,0,0", 1}, {"5,0,0", 2}, {"2,3", 2}, {"1,2,2", 3}, {"2,3,0", 3}};
    return c;
}

TEST_F(VocabSlices, StoriesEqualsTheReferenceForOneTwoAndThreeSlices) {
    start_workers(3);
    const std::string model = test::model_path("stories260K.bin"), tok = test::model_path("tok512.bin");
    const std::vector<std::pair<std::vector<std::string>, std::string>> refs = {
        {{"-t", "0", "-n", "256", "-i", "Once upon a time"}, "stories260K.greedy.n256"},
        {{"-t", "1.0", "-p", "0.9", "-s", "42", "-n", "256"}, "stories260K.t1p09.s42.n256"},
    };
    for (const Case& c : cases())
        for (const auto& [flags, name] : refs) {
            std::vector<std::string> f = flags;
            f.insert(f.end(), {"--workers", list(count(c.split)), "--split", c.split, "--head-slices",
                               std::to_string(c.slices)});
            const Run r = run(model, tok, f);
            const std::string what = name + " split " + c.split + " slices " + std::to_string(c.slices);
            ASSERT_EQ(r.exit_code, 0) << what << "\n" << r.err;
            EXPECT_EQ(r.out, test::read_file(test::reference_path(name + ".txt"))) << what;
            EXPECT_EQ(r.ids, test::read_file(test::reference_path(name + ".ids.txt"))) << what;
            EXPECT_NE(r.err.find("classifier in " + std::to_string(c.slices) + " vocabulary slice"), std::string::npos)
                << what << "\n" << r.err;
            EXPECT_NE(r.err.find("+vocab "), std::string::npos) << what << "\n" << r.err;  // the node table
        }
}

// A vocabulary of 32000, tied and separate: the pipeline with its classifier
// in slices gives this process's tokens, greedy and seeded top-p.
TEST_F(VocabSlices, A32000TokenVocabularyTiedAndSeparate) {
    start_workers(3);
    for (const std::string classifier : {"tied", "separate"}) {
        const std::string model = dir_.file("v32-" + classifier + ".gguf"), tok = dir_.file("v32-" + classifier + ".tok");
        const auto w = test::run_command({test::ferry_bin(), "synth", model, "--dim", "128", "--hidden-dim", "256",
                                          "--layers", "3", "--heads", "4", "--vocab", "32000", "--seq-len", "256",
                                          "--classifier", classifier, "--format", "gguf", "--type", "q8_0",
                                          "--tokenizer-out", tok, "-q"});
        ASSERT_EQ(w.exit_code, 0) << w.err;
        for (const std::vector<std::string> sampling :
             {std::vector<std::string>{"-t", "0", "-n", "96"}, {"-t", "0.8", "-p", "0.9", "-s", "7", "-n", "96"}}) {
            const Run one = run(model, tok, sampling);
            ASSERT_EQ(one.exit_code, 0) << one.err;
            for (const Case& c : {Case{"3,0,0", 2}, Case{"1,1,1", 3}, Case{"2,1", 1}}) {
                std::vector<std::string> f = sampling;
                f.insert(f.end(), {"--workers", list(count(c.split)), "--split", c.split, "--head-slices",
                                   std::to_string(c.slices)});
                const Run r = run(model, tok, f);
                const std::string what = classifier + " " + sampling[1] + " split " + c.split;
                ASSERT_EQ(r.exit_code, 0) << what << "\n" << r.err;
                EXPECT_EQ(r.ids, one.ids) << what;
                EXPECT_EQ(r.out, one.out) << what;
            }
        }
    }
}

// Every node within a --memory that could not hold the 32000 x 256 f32 table
// (31.3 MB) whole: the coordinator at 40 MB (its own process is counted at
// 32.3 MB with this vocabulary), workers at 40 MB. The planner
// slices the classifier over the three workers; each process's peak RSS stays
// under its budget.
TEST_F(VocabSlices, EveryNodeStaysWithinABudgetTheWholeTableWouldBreak) {
    const std::string model = dir_.file("big.bin"), tok = dir_.file("big.tok");
    const auto w = test::run_command({test::ferry_bin(), "synth", model, "--dim", "256", "--hidden-dim", "512",
                                      "--layers", "3", "--heads", "4", "--vocab", "32000", "--seq-len", "256",
                                      "--tokenizer-out", tok, "-q"});
    ASSERT_EQ(w.exit_code, 0) << w.err;
    start_workers(3, {"--memory", "40M"});
    const std::vector<std::string> sampling = {"-t", "0.8", "-p", "0.9", "-s", "3", "-n", "200"};
    const Run one = run(model, tok, sampling);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    // The whole head fits no node: the coordinator refuses it when slices are not allowed.
    std::vector<std::string> f = sampling;
    f.insert(f.end(), {"--workers", list(3), "--memory", "40M", "--head-on-coordinator"});
    Run r = run(model, tok, f);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("cannot hold"), std::string::npos) << r.err;
    f = sampling;
    f.insert(f.end(), {"--workers", list(3), "--memory", "40M", "--json", dir_.file("stats.json")});
    r = run(model, tok, f);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.ids, one.ids);
    EXPECT_NE(r.err.find("vocabulary slices"), std::string::npos) << r.err;
    const nlohmann::json j = nlohmann::json::parse(test::read_file(dir_.file("stats.json")));
    int nodes = 0;
    for (const auto& n : j["nodes"]) {
        const uint64_t peak = n["peak_rss"].get<uint64_t>();
        const uint64_t budget = 40ull << 20;
        EXPECT_LE(peak, budget) << n.dump();
        EXPECT_GT(peak, 0u) << n.dump();
        ++nodes;
    }
    EXPECT_EQ(nodes, 4);
}

// A worker holding only a slice that stops answering is named like any
// stage (recovery: tests/recovery_test.cpp).
TEST_F(VocabSlices, ASilentSliceHolderIsNamed) {
    start_workers(3);
    const std::string model = test::model_path("stories260K.bin"), tok = test::model_path("tok512.bin");
    workers_[2]->signal(SIGSTOP);
    const Run r = run(model, tok, {"-t", "0", "-n", "64", "--workers", list(3), "--split", "5,0,0", "--head-slices", "3",
                                   "--no-recover", "--timeout", "2", "--connect-timeout", "2"});
    workers_[2]->signal(SIGCONT);
    EXPECT_EQ(r.exit_code, 3) << r.err;  // a worker failed
    EXPECT_NE(r.err.find("worker " + workers_[2]->address()), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ferry
