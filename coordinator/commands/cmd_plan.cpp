// `ferry plan`: what `ferry run --workers` would do, without sending a byte of
// weights: which worker holds which layers (and the embedding and the head),
// how much memory each needs against its budget, and the predicted speed.
// Live workers are asked as a status client (probe_workers: their budget,
// measured speed and link), or a pool is described offline (--pool).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/model_file.h"
#include "common/shard_memory.h"
#include "coordinator/commands/commands.h"
#include "coordinator/commands/options.h"
#include "coordinator/pipeline/pipeline_engine.h"
#include "coordinator/pipeline/plan_report.h"
#include "coordinator/pipeline/planner.h"
#include "coordinator/pipeline/pool_spec.h"
#include "coordinator/commands/setup.h"

namespace ferry {

namespace {

struct PlanArgs {
    std::string model;
    std::vector<std::string> workers;
    std::string pool;
    PoolDefaults pool_defaults;
    int ctx = 0;
    std::string kv_type = "f32";
    std::string wire = "f32";
    std::vector<int> split;
    int prefill_chunk = 0;
    int parallel = 1;
    std::string embedding = "auto", head = "auto";
    int head_slices = 0;
    bool sampled = false;
    std::string coordinator_memory;
    double coordinator_gbps = 0;
    bool json = false;
    double connect_timeout = 5, timeout = 10;
    std::string log_level = "warn";
    std::string key_file;
    double discover_wait = 2;
};

Placement placement_of(const std::string& s) {
    return s == "worker" ? Placement::worker : s == "coordinator" ? Placement::coordinator : Placement::planned;
}

std::string model_summary(const ModelFile& f, const std::string& type) {
    const ModelConfig& c = f.config;
    uint64_t bytes = 0;
    for (const TensorInfo& t : f.tensors) bytes += t.bytes;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%d layers, dim %d, vocab %d, context %d, %s weights %s",
                  c.n_layers, c.dim, c.vocab_size, c.seq_len, type.c_str(), format_bytes(bytes).c_str());
    return buf;
}

int cmd_plan(PlanArgs& a) {
    const std::optional<net::ClusterKey> key = cluster_key_from(a.key_file);
    if (a.workers.empty() && a.pool.empty() && key) a.workers = discover_pool(*key, a.discover_wait);
    if (a.workers.empty() == a.pool.empty())
        throw Error("ferry plan: give either --workers HOST:PORT,... (live workers; or none and the cluster key, "
                    "--key-file, to find them on the LAN) or --pool (a description, e.g. 4x160M)");
    const ModelFile file = open_model(a.model, false);
    PlanRequest r;
    r.context = a.ctx;
    if (a.ctx > file.config.seq_len)
        throw Error("--ctx " + std::to_string(a.ctx) + " is longer than the model's context of " +
                    std::to_string(file.config.seq_len));
    if (!parse_kv_type(a.kv_type, &r.kv_type)) throw Error("--kv-type " + a.kv_type + ": use f32, f16 or q8_0");
    if (r.kv_type == KvType::q8_0 && file.config.kv_dim() % 32 != 0)
        throw Error("--kv-type q8_0 needs a key/value width that is a multiple of 32; this model's is " +
                    std::to_string(file.config.kv_dim()) + " (use f16)");
    r.wire_bytes = a.wire == "f16" ? 2 : 4;
    r.split = a.split;
    r.max_positions = a.prefill_chunk;
    r.slots = a.parallel;
    r.embedding = placement_of(a.embedding);
    r.head = placement_of(a.head);
    r.head_slices = a.head_slices;
    r.sampled = a.sampled;
    if (!a.coordinator_memory.empty() && !parse_bytes(a.coordinator_memory, &r.coordinator.memory_budget))
        throw Error("--coordinator-memory " + a.coordinator_memory + ": expected a size such as 64M or 1.5G");
    r.coordinator.matvec_gbps = a.coordinator_gbps;

    const std::string type = dominant_tensor_type(file);
    std::vector<WorkerCapacity> workers;
    if (!a.pool.empty()) {
        workers = parse_pool(a.pool, a.pool_defaults);
    } else {
        ProbeOptions o;
        o.connect_timeout_s = a.connect_timeout;
        o.timeout_s = a.timeout;
        o.tensor_type = type;
        o.cluster_key = key;
        workers = probe_workers(a.workers, o);
    }

    const std::string name = file.path.substr(file.path.find_last_of('/') + 1);
    PipelinePlan plan;
    try {
        plan = plan_pipeline(file, workers, r);
    } catch (const Error& e) {
        if (a.json) {
            nlohmann::json j = {{"model", name}, {"fits", false}, {"error", e.what()}};
            std::printf("%s\n", j.dump(2).c_str());
        }
        throw;
    }
    if (a.json) {
        nlohmann::json j = nlohmann::json::parse(plan_json(plan, workers));
        j["model"] = name;
        j["model_type"] = type;
        j["fits"] = true;
        j["source"] = a.pool.empty() ? "workers" : "pool";
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("ferry plan: %s (%s) on %zu %s worker%s\n", name.c_str(), model_summary(file, type).c_str(),
                workers.size(), a.pool.empty() ? "live" : "described", workers.size() == 1 ? "" : "s");
    std::printf("%s", format_plan(plan, workers).c_str());
    return 0;
}

}  // namespace

void register_plan(CLI::App& app, std::vector<Command>& commands) {
    static PlanArgs a;
    CLI::App* cmd = app.add_subcommand("plan", "Show how a model would be split across workers, without sending weights");
    cmd->add_option("model", a.model, "Model file (llama2.c .bin or GGUF)")->required();
    cmd->add_option("--workers", a.workers, "Live ferry-worker daemons to plan for, in chain order (HOST:PORT,...)")
        ->delimiter(',');
    add_key_options(cmd, a.key_file, a.discover_wait);
    cmd->add_option("--pool", a.pool, "A pool described instead of asked, e.g. 4x160M or 128M,256M@0.5,512M@2G:i686 (below)");
    cmd->add_option("--gbps", a.pool_defaults.reference_gbps,
                    "--pool: GB/s of a worker with no @SPEED, and what a relative SPEED multiplies (default 1)")
        ->check(CLI::Range(1e-3, 1e4));
    cmd->add_option("--link-mbps", a.pool_defaults.link_mbps,
                    "--pool: each worker's link to the coordinator, Mbit/s (default 100)")
        ->check(CLI::Range(1e-3, 1e7));
    cmd->add_option("--latency-ms", a.pool_defaults.link_latency_ms, "--pool: one-way latency of each link (default 0.2)")
        ->check(CLI::Range(0.0, 1e4));
    cmd->add_option("--ctx", a.ctx, "Context length to plan for (default: the model's)")->check(CLI::Range(0, 1 << 22));
    cmd->add_option("--kv-type", a.kv_type, "KV cache type: f32, f16 or q8_0 (default f32)")
        ->check(CLI::IsMember({"f32", "f16", "q8_0"}));
    cmd->add_option("--wire", a.wire, "Activation encoding between stages: f32 or f16 (default f32)")
        ->check(CLI::IsMember({"f32", "f16"}));
    cmd->add_option("--parallel", a.parallel,
                    "Sequences in flight at once, as `ferry serve --parallel N` keeps them: each stage holds a KV "
                    "cache per sequence (default 1)")
        ->check(CLI::Range(1, 256));
    cmd->add_option("--split", a.split, "Force layers per worker, e.g. 2,3 (checked against the budgets)")->delimiter(',');
    cmd->add_option("--prefill-chunk", a.prefill_chunk,
                    "Plan for prompts sent in micro-batches of N positions (smaller request buffers; default: a whole "
                    "context in one request)")
        ->check(CLI::Range(0, 1 << 22));
    cmd->add_option("--embedding", a.embedding, "Where the embedding table goes: auto (planned), coordinator or worker")
        ->check(CLI::IsMember({"auto", "coordinator", "worker"}));
    cmd->add_option("--head", a.head, "Where the final norm and classifier go: auto (planned), coordinator or worker")
        ->check(CLI::IsMember({"auto", "coordinator", "worker"}));
    cmd->add_option("--head-slices", a.head_slices,
                    "The final norm and classifier in N vocabulary slices on N workers, all answering each token at "
                    "once (default: planned; sliced when that is faster or the only plan that fits)")
        ->check(CLI::Range(1, 1024));
    cmd->add_flag("--sampled", a.sampled,
                  "Predict for sampling at a temperature: vocabulary slices then return their logits (4 bytes a "
                  "token each) instead of a best value and index (default: greedy)");
    cmd->add_option("--coordinator-memory", a.coordinator_memory,
                    "The coordinator's memory, e.g. 128M, as `ferry run --workers ... --memory` gives it: its "
                    "process (code, tokenizer, logits) and the weights it keeps (default: unlimited)");
    cmd->add_option("--coordinator-gbps", a.coordinator_gbps,
                    "The coordinator's GB/s, for the head it keeps (default: as fast as the fastest worker)")
        ->check(CLI::Range(0.0, 1e4));
    cmd->add_flag("--json", a.json, "Print the plan as JSON (on a refusal: {\"fits\": false, \"error\": ...} and exit 1)");
    cmd->add_option("--connect-timeout", a.connect_timeout, "--workers: seconds to connect to each (default 5)")
        ->check(CLI::Range(0.1, 3600.0));
    cmd->add_option("--timeout", a.timeout, "--workers: seconds to wait for each answer (default 10)")
        ->check(CLI::Range(0.1, 3600.0));
    add_log_level_option(cmd, a.log_level);
    cmd->footer(
        "Per stage: the node, what it holds (layers, embedding table, head, a vocabulary slice), weights, KV cache,\n"
        "other (workspace, request buffers, the process) and total MB against its budget, and the predicted ms per\n"
        "token; then the vocabulary slices, what the coordinator keeps, the predicted tok/s split into compute and\n"
        "network, and every worker left out with the reason. If the pool cannot hold the model: one line with the shortfall and the fixes that would fit\n"
        "(a shorter --ctx, a smaller --kv-type, a quantized model, more memory on one worker), exit status 1.\n"
        "\n"
        "--workers asks live daemons as a status client (budget, measured GB/s, link latency and Mbit/s); it never\n"
        "disturbs a run in progress. --pool plans for machines that are not there (yet):\n"
        "  POOL   := ENTRY[,ENTRY...]      ENTRY := [COUNTx]BUDGET[@SPEED][:ARCH]\n"
        "  BUDGET := 128M, 1.5G, 65536 (bytes) or unlimited\n"
        "  SPEED  := N (N times --gbps, relative) or NG (N GB/s, absolute: what a worker's probe measures)\n"
        "  ARCH   := x86_64 (default), i686, aarch64 or armhf (the process overhead: 32-bit ones are smaller)\n"
        "Offline workers are named pool-1, pool-2, ... and linked at --link-mbps with --latency-ms.\n"
        "Examples:\n"
        "  ferry plan tinyllama-q4_0.gguf --pool 4x160M --link-mbps 100\n"
        "  ferry plan stories110m.bin --pool 128M,256M@0.5,512M@2G:i686 --ctx 512 --kv-type q8_0 --json\n"
        "  ferry plan stories110m.bin --workers 10.0.0.2:7070,10.0.0.3:7070 --coordinator-memory 32M");
    commands.push_back({cmd, [] { return cmd_plan(a); }, &a.log_level});
}

}  // namespace ferry
