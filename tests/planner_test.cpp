// The planner against brute force over every split, plus the behaviours a
// user sees: slow nodes left out, budgets respected, refusals that explain.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "common/error.h"
#include "common/model_file.h"
#include "coordinator/planner.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

PlanProblem uniform_problem(int layers, uint64_t layer_bytes, uint64_t fixed = 1000, uint64_t hop = 8192) {
    PlanProblem p;
    p.layer_memory.assign(layers, layer_bytes);
    p.layer_read_bytes.assign(layers, layer_bytes);
    p.stage_fixed_memory = fixed;
    p.hop_bytes = hop;
    return p;
}

// Every assignment of contiguous (possibly empty) ranges to the workers in order.
double brute_force_best(const PlanProblem& p, const std::vector<WorkerCapacity>& w) {
    const int L = static_cast<int>(p.layer_memory.size());
    const int N = static_cast<int>(w.size());
    double best = std::numeric_limits<double>::infinity();
    std::function<void(int, int, double, int)> go = [&](int j, int first, double cost, int last_used) {
        if (j == N) {
            if (first == L && last_used >= 0) best = std::min(best, cost + hop_ms(p, w[last_used]));
            return;
        }
        go(j + 1, first, cost, last_used);  // worker j left out
        for (int end = first + 1; end <= L; ++end) {
            const double c = stage_cost_ms(p, w[j], first, end);
            if (std::isinf(c)) break;  // longer ranges only need more memory
            go(j + 1, end, cost + c, j);
        }
    };
    go(0, 0, 0.0, -1);
    return best;
}

void expect_valid(const PipelinePlan& plan, int layers) {
    int next = 0, prev_worker = -1;
    for (const PlannedStage& s : plan.stages) {
        EXPECT_EQ(s.first_layer, next);
        EXPECT_GT(s.last_layer, s.first_layer);
        EXPECT_GT(s.worker, prev_worker) << "workers keep their chain order";
        next = s.last_layer;
        prev_worker = s.worker;
    }
    EXPECT_EQ(next, layers);
}

TEST(Planner, MatchesBruteForceOnRandomPools) {
    std::mt19937 rng(1234);
    for (int trial = 0; trial < 60; ++trial) {
        const int N = 1 + static_cast<int>(rng() % 6);
        const int L = 1 + static_cast<int>(rng() % (trial < 50 ? 12 : 32));
        PlanProblem p = uniform_problem(L, 0);
        for (int l = 0; l < L; ++l) {
            p.layer_memory[l] = 1000 + rng() % 9000;
            p.layer_read_bytes[l] = p.layer_memory[l] - rng() % 500;
        }
        p.stage_fixed_memory = rng() % 3000;
        std::vector<WorkerCapacity> w(N);
        for (int j = 0; j < N; ++j) {
            w[j].address = "w" + std::to_string(j);
            w[j].memory_budget = 3000 + rng() % 40000;
            w[j].matvec_gbps = 0.5 + (rng() % 100) / 10.0;
            w[j].link_mbps = 10 + rng() % 1000;
            w[j].link_latency_ms = (rng() % 100) / 100.0;
        }
        const double expected = brute_force_best(p, w);
        if (std::isinf(expected)) {
            EXPECT_THROW(plan_optimal(p, w), Error) << "trial " << trial;
            continue;
        }
        const PipelinePlan plan = plan_optimal(p, w);
        expect_valid(plan, L);
        EXPECT_NEAR(plan.predicted_ms_per_token, expected, 1e-9 * expected + 1e-12) << "trial " << trial;
    }
}

TEST(Planner, LeavesOutASlowWorkerWhenOthersCanHoldTheModel) {
    const PlanProblem p = uniform_problem(8, 100 << 20);
    std::vector<WorkerCapacity> w = {{"fast-a", 1ull << 30, 20, 1000, 0.1},
                                     {"slow", 1ull << 30, 0.2, 1000, 0.1},
                                     {"fast-b", 1ull << 30, 20, 1000, 0.1}};
    const PipelinePlan plan = plan_optimal(p, w);
    ASSERT_EQ(plan.left_out.size(), 2u);  // one fast worker holds it all: extra hops cost more than nothing
    for (const PlannedStage& s : plan.stages) EXPECT_NE(w[s.worker].address, "slow");
}

TEST(Planner, SplitsByMemoryAndGivesFastWorkersMoreLayers) {
    const PlanProblem p = uniform_problem(10, 100 << 20, 0);
    // Neither can hold all 10 layers; the fast one should hold as many as fit.
    std::vector<WorkerCapacity> w = {{"slow", 800ull << 20, 1, 1000, 0.1}, {"fast", 700ull << 20, 10, 1000, 0.1}};
    const PipelinePlan plan = plan_optimal(p, w);
    ASSERT_EQ(plan.stages.size(), 2u);
    EXPECT_EQ(plan.stages[1].last_layer - plan.stages[1].first_layer, 7);
    EXPECT_EQ(plan.stages[0].last_layer - plan.stages[0].first_layer, 3);
}

TEST(Planner, RefusesAPoolTooSmallWithTheShortfall) {
    const PlanProblem p = uniform_problem(4, 100 << 20);
    std::vector<WorkerCapacity> w = {{"a", 120ull << 20, 1, 0, 0}, {"b", 120ull << 20, 1, 0, 0}};
    try {
        plan_optimal(p, w);
        FAIL() << "expected a refusal";
    } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("cannot hold"), std::string::npos) << m;
        EXPECT_NE(m.find("more)"), std::string::npos) << m;
        EXPECT_NE(m.find("--ctx"), std::string::npos) << m;
        EXPECT_EQ(m.find('\n'), std::string::npos) << "one line";
    }
}

TEST(Planner, IsDeterministicAndFastFor64WorkersAnd128Layers) {
    PlanProblem p = uniform_problem(128, 50 << 20);
    std::vector<WorkerCapacity> w;
    for (int j = 0; j < 64; ++j)
        w.push_back({"w" + std::to_string(j), (300ull + 37 * (j % 7)) << 20, 1.0 + (j % 5), 100, 0.2});
    const auto t0 = std::chrono::steady_clock::now();
    const PipelinePlan a = plan_optimal(p, w);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const PipelinePlan b = plan_optimal(p, w);
    ASSERT_EQ(a.stages.size(), b.stages.size());
    for (size_t i = 0; i < a.stages.size(); ++i) {
        EXPECT_EQ(a.stages[i].worker, b.stages[i].worker);
        EXPECT_EQ(a.stages[i].first_layer, b.stages[i].first_layer);
    }
    expect_valid(a, 128);
    RecordProperty("plan_ms", std::to_string(ms));
}

TEST(Planner, ForcedSplitIsCheckedAndHonoured) {
    const ModelFile f = open_model_file(test::model_path("stories260K.bin"));
    std::vector<WorkerCapacity> w = {{"a", 0, 0, 0, 0}, {"b", 0, 0, 0, 0}};
    const PipelinePlan plan = plan_pipeline(f, 512, w, {2, 3});
    ASSERT_EQ(plan.stages.size(), 2u);
    EXPECT_EQ(plan.stages[0].last_layer, 2);
    EXPECT_EQ(plan.stages[1].first_layer, 2);
    EXPECT_GT(plan.stages[1].memory.weights, plan.stages[0].memory.weights);
    EXPECT_THROW(plan_pipeline(f, 512, w, {2, 2}), Error);
    EXPECT_THROW(plan_pipeline(f, 512, w, {5, 0}), Error);
    EXPECT_THROW(plan_pipeline(f, 512, w, {5}), Error);
    w[0].memory_budget = 1 << 20;  // 1 MB cannot hold 2 layers plus the process
    EXPECT_THROW(plan_pipeline(f, 512, w, {2, 3}), Error);
}

}  // namespace
}  // namespace ferry
