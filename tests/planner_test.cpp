// The planner against brute force over every subset of workers, every split
// and every embedding/head placement, plus the behaviours a user sees: slow
// nodes left out with a reason, budgets respected, refusals that explain and
// compute their fixes, ties broken by the stated rule, speed at 64 x 128.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <random>

#include "common/error.h"
#include "common/model_file.h"
#include "coordinator/pipeline/planner.h"
#include "coordinator/pipeline/plan_report.h"
#include "kernels/tensor_type.h"
#include "tests/fake_model.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

PlanProblem uniform_problem(int layers, uint64_t layer_bytes, uint64_t fixed = 1000, uint64_t hop = 8192) {
    PlanProblem p;
    p.layer_memory.assign(layers, layer_bytes);
    p.layer_reads.assign(layers, {{"f32", layer_bytes}});
    for (auto& a : p.stage_memory)
        for (auto& b : a)
            for (auto& c : b)
                for (uint64_t& d : c) d = fixed;
    p.activation_bytes = hop;
    return p;
}

WorkerCapacity worker(const std::string& name, uint64_t budget, double gbps, double mbps = 1000, double latency = 0.1) {
    WorkerCapacity w;
    w.address = name;
    w.memory_budget = budget;
    w.matvec_gbps = gbps;
    w.link_mbps = mbps;
    w.link_latency_ms = latency;
    return w;
}

// The complete ordering the planner promises: time, stages, stages from the
// last back (earlier worker, then later end), embedding then head on the coordinator.
struct Key {
    int64_t ns;
    std::vector<PlannedStage> stages;
};
bool key_less(const Key& a, const Key& b) {
    if (a.ns != b.ns) return a.ns < b.ns;
    if (a.stages.size() != b.stages.size()) return a.stages.size() < b.stages.size();
    for (size_t i = a.stages.size(); i-- > 0;) {
        const PlannedStage &x = a.stages[i], &y = b.stages[i];
        if (x.worker != y.worker) return x.worker < y.worker;
        if (x.last_layer != y.last_layer) return x.last_layer > y.last_layer;
    }
    const auto ea = std::make_pair(a.stages.front().embedding, a.stages.back().head);
    const auto eb = std::make_pair(b.stages.front().embedding, b.stages.back().head);
    return ea < eb;
}

// Every subset of workers (in order), every split into non-empty contiguous
// ranges, every placement of the embedding and the head. `with[j]`: the
// fastest plan that uses worker j (-1: none fits).
std::optional<Key> brute_force(const PlanProblem& p, const std::vector<WorkerCapacity>& w, const PlanRequest& r,
                               std::vector<int64_t>* with = nullptr) {
    const int L = static_cast<int>(p.layer_memory.size());
    const int N = static_cast<int>(w.size());
    std::optional<Key> best;
    std::vector<PlannedStage> stages;
    std::function<void(int, int)> go = [&](int j, int first) {
        if (first == L) {
            for (int e = 0; e < 2; ++e)
                for (int h = 0; h < 2; ++h) {
                    if (r.embedding != Placement::planned && (r.embedding == Placement::worker) != (e == 1)) continue;
                    if (r.head != Placement::planned && (r.head == Placement::worker) != (h == 1)) continue;
                    stages.front().embedding = e == 1;
                    stages.back().head = h == 1;
                    const int64_t ns = chain_ns(p, w, r.coordinator, stages);
                    if (ns >= 0 && (!best || key_less(Key{ns, stages}, *best))) best = Key{ns, stages};
                    if (ns >= 0 && with)
                        for (const PlannedStage& s : stages) {
                            int64_t& x = (*with)[static_cast<size_t>(s.worker)];
                            if (x < 0 || ns < x) x = ns;
                        }
                    stages.front().embedding = false;
                    stages.back().head = false;
                }
            return;
        }
        if (j == N) return;
        go(j + 1, first);  // worker j left out
        for (int end = first + 1; end <= L; ++end) {
            PlannedStage s;
            s.worker = j;
            s.first_layer = first;
            s.last_layer = end;
            stages.push_back(s);
            go(j + 1, end);
            stages.pop_back();
        }
    };
    go(0, 0);
    return best;
}

void expect_valid(const PipelinePlan& plan, int layers) {
    int next = 0, prev_worker = -1;
    for (size_t i = 0; i < plan.stages.size(); ++i) {
        const PlannedStage& s = plan.stages[i];
        EXPECT_EQ(s.first_layer, next);
        EXPECT_GT(s.last_layer, s.first_layer);
        EXPECT_GT(s.worker, prev_worker) << "workers keep their chain order";
        if (i > 0) EXPECT_FALSE(s.embedding) << "only the first stage can hold the embedding";
        if (i + 1 < plan.stages.size()) EXPECT_FALSE(s.head) << "only the last stage can hold the head";
        next = s.last_layer;
        prev_worker = s.worker;
    }
    EXPECT_EQ(next, layers);
}

// A random pool and model: uneven layers, two tensor types, heterogeneous
// budgets, speeds (some per type), links and architectures, sometimes a
// coordinator with a budget of its own.
void random_case(std::mt19937& rng, int N, int L, PlanProblem* p, std::vector<WorkerCapacity>* w, PlanRequest* r) {
    *p = uniform_problem(L, 0);
    for (int l = 0; l < L; ++l) {
        p->layer_memory[l] = 1000 + rng() % 9000;
        p->layer_reads[l] = {{"f32", p->layer_memory[l] - rng() % 500}};
        if (rng() % 3 == 0) p->layer_reads[l].push_back({"q8_0", 100 + rng() % 2000});
    }
    for (int f = 0; f < 2; ++f)
        for (int l = 0; l < 2; ++l)
            for (int e = 0; e < 2; ++e)
                for (int h = 0; h < 2; ++h) p->stage_memory[f][l][e][h] = rng() % 3000 + 500 * (1 - l) + 100 * f;
    p->embedding_memory = rng() % 8000;
    p->head_memory = rng() % 8000 + 10;
    p->tied_shared = rng() % 2 ? std::min(p->embedding_memory, p->head_memory) : 0;
    p->head_reads = {{"f32", p->head_memory}};
    p->activation_bytes = 64 + rng() % 16384;
    p->coordinator_extra = rng() % 500;
    w->assign(static_cast<size_t>(N), WorkerCapacity{});
    for (int j = 0; j < N; ++j) {
        WorkerCapacity& c = (*w)[j];
        c.address = "w" + std::to_string(j);
        // Budgets net of the process overhead, so that they bind.
        c.arch = rng() % 4 == 0 ? "i686" : "x86_64";
        c.memory_budget = rng() % 5 == 0 ? 0 : worker_process_overhead(c.arch) + 3000 + rng() % (20000 + 4000 * L);
        c.matvec_gbps = rng() % 7 == 0 ? 0 : 0.5 + (rng() % 100) / 10.0;
        if (rng() % 3 == 0) c.type_gbps["q8_0"] = 0.2 + (rng() % 100) / 10.0;
        c.link_mbps = rng() % 6 == 0 ? 0 : 10 + rng() % 1000;
        c.link_latency_ms = (rng() % 100) / 100.0;
    }
    *r = PlanRequest{};
    if (rng() % 4 == 0) r->coordinator.memory_budget = rng() % 12000;
    if (rng() % 3 == 0) r->coordinator.matvec_gbps = 0.5 + (rng() % 50) / 10.0;
    if (rng() % 8 == 0) r->embedding = rng() % 2 ? Placement::worker : Placement::coordinator;
    if (rng() % 8 == 0) r->head = rng() % 2 ? Placement::worker : Placement::coordinator;
}

// Returns whether the pool could hold the model (so that callers can check the cases were not all refusals).
bool check_against_brute_force(std::mt19937& rng, int N, int L, int trial) {
    PlanProblem p;
    std::vector<WorkerCapacity> w;
    PlanRequest r;
    random_case(rng, N, L, &p, &w, &r);
    std::vector<int64_t> with(w.size(), -1);
    const std::optional<Key> expected = brute_force(p, w, r, &with);
    if (!expected) {
        EXPECT_THROW(plan_optimal(p, w, r), PoolTooSmall) << "trial " << trial;
        return false;
    }
    const PipelinePlan plan = plan_optimal(p, w, r);
    expect_valid(plan, L);
    EXPECT_EQ(plan.stages.size(), expected->stages.size()) << "trial " << trial;
    if (plan.stages.size() != expected->stages.size()) return true;
    for (size_t i = 0; i < plan.stages.size(); ++i) {
        EXPECT_EQ(plan.stages[i].worker, expected->stages[i].worker) << "trial " << trial << " stage " << i;
        EXPECT_EQ(plan.stages[i].last_layer, expected->stages[i].last_layer) << "trial " << trial << " stage " << i;
        EXPECT_EQ(plan.stages[i].embedding, expected->stages[i].embedding) << "trial " << trial;
        EXPECT_EQ(plan.stages[i].head, expected->stages[i].head) << "trial " << trial;
    }
    EXPECT_DOUBLE_EQ(plan.predicted_ms_per_token, expected->ns / 1e6) << "trial " << trial;
    EXPECT_EQ(plan.left_out.size(), plan.left_out_reasons.size());
    for (const LeftOutWorker& l : plan.left_out_reasons) {
        const int64_t ns = with[static_cast<size_t>(l.worker)];
        EXPECT_DOUBLE_EQ(l.best_ms_with, ns < 0 ? -1.0 : ns / 1e6) << "trial " << trial << " worker " << l.worker;
        if (ns >= 0) EXPECT_GE(ns, expected->ns);
    }
    return true;
}

TEST(Planner, MatchesBruteForceOnSmallPools) {
    std::mt19937 rng(1234);
    int feasible = 0;
    for (int trial = 0; trial < 400; ++trial)
        feasible += check_against_brute_force(rng, 1 + static_cast<int>(rng() % 6), 1 + static_cast<int>(rng() % 10), trial);
    RecordProperty("feasible_cases", feasible);
    EXPECT_GE(feasible, 200) << "most random cases must be plannable, or the comparison says little";
}

TEST(Planner, MatchesBruteForceUpTo6WorkersAnd32Layers) {
    std::mt19937 rng(99);
    int feasible = 0;
    for (int trial = 0; trial < 6; ++trial)
        feasible += check_against_brute_force(rng, trial < 5 ? 4 + trial % 2 : 6, 20 + 3 * trial % 13, trial);
    const bool largest = check_against_brute_force(rng, 6, 32, 100);
    RecordProperty("feasible_cases", feasible + largest);
    EXPECT_GE(feasible, 3);
    EXPECT_TRUE(largest) << "the 6 x 32 case is a plan, not a refusal";
}

TEST(Planner, TiesGoToFewerStagesAndEarlierWorkers) {
    // Identical workers with free links: every plan of one stage costs the same.
    const PlanProblem p = uniform_problem(6, 100);
    std::vector<WorkerCapacity> w = {worker("a", 0, 1, 0, 0), worker("b", 0, 1, 0, 0), worker("c", 0, 1, 0, 0)};
    PipelinePlan plan = plan_optimal(p, w);
    ASSERT_EQ(plan.stages.size(), 1u);
    EXPECT_EQ(plan.stages[0].worker, 0);
    EXPECT_FALSE(plan.stages[0].embedding) << "ties keep the embedding on the coordinator";
    EXPECT_FALSE(plan.stages[0].head);
    // Each holds 4 layers at most: two stages on the earliest workers, the first filled first.
    for (WorkerCapacity& x : w) x.memory_budget = worker_process_overhead("") + 1000 + 400;
    plan = plan_optimal(p, w);
    ASSERT_EQ(plan.stages.size(), 2u);
    EXPECT_EQ(plan.stages[0].worker, 0);
    EXPECT_EQ(plan.stages[0].last_layer, 4);
    EXPECT_EQ(plan.stages[1].worker, 1);
    ASSERT_EQ(plan.left_out_reasons.size(), 1u);
    EXPECT_NE(plan.left_out_reasons[0].reason.find("as fast"), std::string::npos) << plan.left_out_reasons[0].reason;
}

TEST(Planner, LeavesOutASlowWorkerAndSaysWhy) {
    const PlanProblem p = uniform_problem(8, 100 << 20);
    std::vector<WorkerCapacity> w = {worker("fast-a", 1ull << 30, 20), worker("slow", 1ull << 30, 0.2),
                                     worker("fast-b", 1ull << 30, 20)};
    const PipelinePlan plan = plan_optimal(p, w);
    ASSERT_EQ(plan.left_out.size(), 2u);  // one fast worker holds it all: extra hops cost more than nothing
    for (const PlannedStage& s : plan.stages) EXPECT_NE(w[s.worker].address, "slow");
    ASSERT_EQ(plan.left_out_reasons.size(), 2u);
    EXPECT_EQ(plan.left_out_reasons[0].worker, 1);
    const std::string why = plan.left_out_reasons[0].reason;
    EXPECT_NE(why.find("more"), std::string::npos) << why;
    EXPECT_NE(why.find("0.2 GB/s"), std::string::npos) << why;
    const std::string text = format_plan(plan, w);
    EXPECT_NE(text.find("left out: slow: "), std::string::npos) << text;
}

TEST(Planner, LeavesOutAWorkerThatCannotHoldALayer) {
    const PlanProblem p = uniform_problem(4, 10 << 20);
    std::vector<WorkerCapacity> w = {worker("tiny", 12ull << 20, 50), worker("big", 1ull << 30, 1)};
    const PipelinePlan plan = plan_optimal(p, w);
    ASSERT_EQ(plan.left_out_reasons.size(), 1u);
    EXPECT_NE(plan.left_out_reasons[0].reason.find("cannot hold one layer"), std::string::npos)
        << plan.left_out_reasons[0].reason;
}

TEST(Planner, SplitsByMemoryAndGivesFastWorkersMoreLayers) {
    const PlanProblem p = uniform_problem(10, 100 << 20, 0);
    const uint64_t o = worker_process_overhead("");
    // Neither can hold all 10 layers; the fast one should hold as many as fit.
    std::vector<WorkerCapacity> w = {worker("slow", o + (800ull << 20), 1), worker("fast", o + (700ull << 20), 10)};
    const PipelinePlan plan = plan_optimal(p, w);
    ASSERT_EQ(plan.stages.size(), 2u);
    EXPECT_EQ(plan.stages[1].last_layer - plan.stages[1].first_layer, 7);
    EXPECT_EQ(plan.stages[0].last_layer - plan.stages[0].first_layer, 3);
}

TEST(Planner, PlacesTheEmbeddingAndTheHeadWhereTheyPay) {
    PlanProblem p = uniform_problem(4, 10 << 20, 0, 8192);
    p.embedding_memory = p.head_memory = p.tied_shared = 50 << 20;
    p.tied = true;
    p.head_reads = {{"f32", 50 << 20}};
    std::vector<WorkerCapacity> w = {worker("a", 0, 10, 100, 0.1), worker("b", 0, 10, 100, 0.1)};
    // Slow links and no budgets: token ids travel instead of activations, both ends on the worker.
    PipelinePlan plan = plan_optimal(p, w);
    ASSERT_EQ(plan.stages.size(), 1u);
    EXPECT_TRUE(plan.stages[0].embedding);
    EXPECT_TRUE(plan.stages[0].head);
    // A worker with room for the layers only: both stay on the coordinator.
    for (WorkerCapacity& x : w) x.memory_budget = worker_process_overhead("") + (45ull << 20);
    plan = plan_optimal(p, w);
    EXPECT_FALSE(plan.stages.front().embedding);
    EXPECT_FALSE(plan.stages.back().head);
    EXPECT_EQ(plan.coordinator_weights, 50u << 20) << "a tied table is one tensor on the coordinator";
    // A coordinator that holds only the tokenizer: the units must go to workers with room.
    PlanRequest r;
    r.coordinator.memory_budget = 1 << 20;
    w = {worker("a", worker_process_overhead("") + (95ull << 20), 10), worker("b", 0, 10)};
    plan = plan_optimal(p, w, r);
    EXPECT_TRUE(plan.stages.front().embedding);
    EXPECT_TRUE(plan.stages.back().head);
    EXPECT_EQ(plan.coordinator_weights, 0u);
    // Forced placements are honoured.
    r = PlanRequest{};
    r.embedding = Placement::coordinator;
    r.head = Placement::worker;
    w = {worker("a", 0, 10, 100, 0.1)};
    plan = plan_optimal(p, w, r);
    EXPECT_FALSE(plan.stages.front().embedding);
    EXPECT_TRUE(plan.stages.back().head);
}

TEST(Planner, RefusesAPoolTooSmall) {
    const PlanProblem p = uniform_problem(4, 100 << 20);
    std::vector<WorkerCapacity> w = {worker("a", 120ull << 20, 1), worker("b", 120ull << 20, 1)};
    EXPECT_THROW(plan_optimal(p, w), PoolTooSmall);
}

TEST(Planner, IsDeterministicAndFastFor64WorkersAnd128Layers) {
    PlanProblem p = uniform_problem(128, 50 << 20);
    p.embedding_memory = p.head_memory = 100 << 20;
    p.head_reads = {{"f32", 100 << 20}};
    std::vector<WorkerCapacity> w;
    for (int j = 0; j < 64; ++j)
        w.push_back(worker("w" + std::to_string(j), (300ull + 37 * (j % 7)) << 20, 1.0 + (j % 5), 100, 0.2));
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
    EXPECT_EQ(a.left_out.size() + a.stages.size(), 64u);
    EXPECT_EQ(a.left_out_reasons.size(), a.left_out.size());
    RecordProperty("plan_ms", std::to_string(ms));
    EXPECT_LT(ms, 5000) << "generous: the planner takes milliseconds";
}

// ---- against a model's tensor directory ----

using test::fake_model;

ModelConfig stories110m() {
    ModelConfig c;
    c.dim = 768;
    c.hidden_dim = 2048;
    c.n_layers = 12;
    c.n_heads = c.n_kv_heads = 12;
    c.vocab_size = 32000;
    c.seq_len = 1024;
    return c;
}

TEST(Planner, StageMemoryIsShardMemory) {
    const ModelFile f = fake_model(stories110m(), TensorType::F32, true);
    std::vector<WorkerCapacity> w = {worker("a", 300ull << 20, 2), worker("b", 300ull << 20, 2), worker("c", 0, 2)};
    w[1].arch = "i686";
    PlanRequest r;
    r.kv_type = KvType::q8_0;
    r.max_positions = 64;
    const PipelinePlan plan = plan_pipeline(f, w, r);
    const PlanProblem p = make_plan_problem(f, r);
    for (size_t i = 0; i < plan.stages.size(); ++i) {
        const PlannedStage& s = plan.stages[i];
        const StageShape shape{s.first_layer, s.last_layer, i == 0, i + 1 == plan.stages.size(), s.embedding, s.head};
        // A vocabulary slice beside the layers adds what the planner counted for it.
        uint64_t slice = 0;
        for (const PlannedSlice& sl : plan.slices)
            if (sl.worker == s.worker) slice = sl.memory;
        EXPECT_EQ(stage_memory(p, w[s.worker], shape) + slice, s.memory.total()) << "stage " << i;
        if (w[s.worker].memory_budget) EXPECT_LE(s.memory.total(), w[s.worker].memory_budget);
    }
    for (const PlannedSlice& sl : plan.slices)
        if (sl.slice_only) EXPECT_EQ(worker_process_overhead(w[sl.worker].arch) + sl.memory, sl.shard.total());
    EXPECT_EQ(plan.context, 1024);
}

TEST(Planner, SmallerRequestsWhenAWholeContextDoesNotFit) {
    ModelConfig c = stories110m();
    c.seq_len = 2048;
    const ModelFile f = fake_model(c, TensorType::Q4_0, true);
    // A whole-context request costs each stage 4 x 2048 x 768 x 4 bytes = 24 MB of buffers.
    std::vector<WorkerCapacity> w(3, worker("w", 100ull << 20, 2));
    PlanRequest r;
    PipelinePlan plan = plan_pipeline(f, w, r);
    EXPECT_GT(plan.max_positions, 0) << "planned smaller requests";
    EXPECT_LT(plan.max_positions, 2048);
    for (const PlannedStage& s : plan.stages) EXPECT_LE(s.memory.total(), 100ull << 20);
    // The same pool with room for a whole context keeps one request per prompt.
    for (WorkerCapacity& x : w) x.memory_budget = 200ull << 20;
    plan = plan_pipeline(f, w, r);
    EXPECT_EQ(plan.max_positions, 0);
    // Asked for whole-context requests where they cannot fit: refused, with smaller requests as a fix.
    for (WorkerCapacity& x : w) x.memory_budget = 100ull << 20;
    r.max_positions = 2048;
    try {
        plan_pipeline(f, w, r);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--prefill-chunk 32"), std::string::npos) << e.what();
    }
}

TEST(Planner, RefusalGivesTheShortfallAndComputedFixes) {
    const ModelFile f = fake_model(stories110m(), TensorType::F32, true, "stories110m.gguf");
    // Four 100 MB workers: f32 weights alone are 340 MB, the KV cache 72 MB.
    std::vector<WorkerCapacity> w;
    for (int j = 0; j < 4; ++j) w.push_back(worker("10.0.0." + std::to_string(j + 1) + ":7070", 100ull << 20, 2));
    PlanRequest r;
    try {
        plan_pipeline(f, w, r);
        FAIL() << "expected a refusal";
    } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
        EXPECT_NE(m.find("cannot hold stories110m.gguf"), std::string::npos) << m;
        EXPECT_NE(m.find("short"), std::string::npos) << m;
        EXPECT_NE(m.find("fits: --ctx "), std::string::npos) << m;
        EXPECT_NE(m.find("q8_0 model"), std::string::npos) << m;
        EXPECT_NE(m.find("more on 10.0.0."), std::string::npos) << m;
        // The fixes are real: the context it names fits, one more does not.
        const size_t at = m.find("fits: --ctx ");
        const int ctx = std::atoi(m.c_str() + at + 12);
        ASSERT_GT(ctx, 0);
        PlanRequest q = r;
        q.context = ctx;
        EXPECT_NO_THROW(plan_pipeline(f, w, q));
        q.context = ctx + 1;
        EXPECT_THROW(plan_pipeline(f, w, q), Error);
    }
    // More memory: the amount named is enough, on the worker named.
    w.resize(3);
    try {
        plan_pipeline(f, w, r);
        FAIL();
    } catch (const Error& e) {
        const std::string m = e.what();
        const size_t at = m.find(" more on ");
        ASSERT_NE(at, std::string::npos) << m;
        const std::string before = m.substr(0, at);  // "... 37.0 MB"
        const std::string unit = before.substr(before.size() - 2);
        const size_t number = before.rfind(' ', before.size() - 4) + 1;
        const double amount = std::atof(before.c_str() + number);
        // The text rounds to 0.1 of its unit.
        const uint64_t extra = static_cast<uint64_t>((amount + 0.1) * (unit == "GB" ? 1 << 30 : unit == "MB" ? 1 << 20 : 1 << 10));
        const std::string who = m.substr(at + 9, m.find(' ', at + 9) - at - 9);
        for (WorkerCapacity& x : w)
            if (x.address == who) x.memory_budget += extra;
        EXPECT_NO_THROW(plan_pipeline(f, w, r)) << m;
    }
}

TEST(Planner, ForcedSplitIsCheckedAndHonoured) {
    const ModelFile f = open_model_file(test::model_path("stories260K.bin"));
    std::vector<WorkerCapacity> w = {worker("a", 0, 0, 0, 0), worker("b", 0, 0, 0, 0)};
    const PipelinePlan plan = plan_pipeline(f, 512, w, {2, 3});
    ASSERT_EQ(plan.stages.size(), 2u);
    EXPECT_TRUE(plan.forced_split);
    EXPECT_EQ(plan.stages[0].last_layer, 2);
    EXPECT_EQ(plan.stages[1].first_layer, 2);
    EXPECT_GT(plan.stages[1].memory.weights, plan.stages[0].memory.weights);
    EXPECT_THROW(plan_pipeline(f, 512, w, {2, 2}), Error);
    EXPECT_THROW(plan_pipeline(f, 512, w, {6, -1}), Error);
    // 0: a worker without layers (left out here, or a vocabulary slice's holder).
    EXPECT_EQ(plan_pipeline(f, 512, w, {5, 0}).stages.size(), 1u);
    EXPECT_THROW(plan_pipeline(f, 512, w, {5}), Error);
    w[0].memory_budget = 1 << 20;  // 1 MB cannot hold 2 layers plus the process
    try {
        plan_pipeline(f, 512, w, {2, 3});
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("a: layers 0-1 need"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace ferry
