#include "coordinator/commands/setup.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/net/discovery.h"
#include "common/process_stats.h"
#include "common/shard_memory.h"
#include "common/weights.h"
#include "coordinator/generation/local_engine.h"
#include "coordinator/pipeline/pipeline_engine.h"
#include "coordinator/pipeline/planner.h"
#include "coordinator/pipeline/recovering_engine.h"

namespace ferry {

std::optional<net::ClusterKey> cluster_key_from(const std::string& key_file) {
    std::string source;
    std::optional<net::ClusterKey> key = net::find_cluster_key(key_file, &source);
    if (key) spdlog::info("cluster key from {}", source);
    return key;
}

std::vector<std::string> discover_pool(const net::ClusterKey& key, double wait_s) {
    if (wait_s <= 0) return {};
    size_t foreign = 0;
    spdlog::info("looking for workers on the LAN for {:.1f} s (--discover-wait)", wait_s);
    const std::vector<net::DiscoveredWorker> found = net::discover_workers(key, wait_s, &foreign);
    if (foreign > 0)
        spdlog::warn("ignored {} beacon{} sealed with another cluster key (workers of another pool, or of this one "
                     "with a different --key-file)",
                     foreign, foreign == 1 ? "" : "s");
    std::vector<std::string> addresses;
    for (const net::DiscoveredWorker& w : found) {
        spdlog::info("found worker {} at {}{}", w.beacon.name(), w.address,
                     w.beacon.holds().empty() ? "" : " (holds " + w.beacon.holds() + ")");
        addresses.push_back(w.address);
    }
    return addresses;
}

void resolve_pool(RunOptions& o) {
    o.cluster_key = cluster_key_from(o.key_file);
    if (!o.workers.empty() || !o.cluster_key || o.discover_wait <= 0) return;
    try {
        o.workers = discover_pool(*o.cluster_key, o.discover_wait);
    } catch (const Error& e) {
        spdlog::warn("{}", e.what());
    }
    if (o.workers.empty())
        spdlog::warn("no worker with this cluster key answered within {:.1f} s; running in this process", o.discover_wait);
    else {
        std::string all;
        for (const auto& a : o.workers) all += (all.empty() ? "" : ",") + a;
        std::fprintf(stderr, "using %zu worker%s found on the LAN: %s\n", o.workers.size(),
                     o.workers.size() == 1 ? "" : "s", all.c_str());
    }
}

PipelineOptions pipeline_options(const RunOptions& o) {
    PipelineOptions p;
    p.workers = o.workers;
    p.split = o.split;
    p.wire = o.wire;
    p.kv_type = kv_type_for(o.kv_type);
    p.embedding_on_worker = o.embedding_on_worker;
    p.head_on_worker = o.head_on_worker;
    p.embedding_on_coordinator = o.embedding_on_coordinator;
    p.head_on_coordinator = o.head_on_coordinator;
    p.head_slices = o.head_slices;
    p.sampled = o.temperature != 0.0f;
    p.prefill_chunk = o.prefill_chunk;
    p.timeout_s = o.net_timeout;
    p.connect_timeout_s = o.connect_timeout;
    p.stats_every = o.stats_every;
    p.cluster_key = o.cluster_key;
    return p;
}

ModelFile open_model(const std::string& path, bool all_layers_here) {
    ModelFile file = open_model_file(path);
    // A process that keeps the whole file resident brings it in in file
    // order before anything reads a weight (bind_weights below checks every
    // norm): a cold model then lands in large pages, where faults in the
    // forward pass's order would leave it in 4 KB ones (read_in_order). One
    // that does not fit pages through the map, and is left to do so.
    const auto fits = [&] {
        const uint64_t limit = cgroup_memory_limit(), available = read_machine_memory().available;
        return file.map.size() <= (limit > 0 ? std::min(available, limit) : available);
    };
    if (all_layers_here && fits()) {
        const auto t0 = std::chrono::steady_clock::now();
        file.map.read_in_order();
        spdlog::debug("{}: parts not yet cached read in file order in {:.0f} ms", path,
                      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    const ModelConfig& c = file.config;
    bind_weights(c, ShardSpec{0, c.n_layers, true, true}, file.tensors, file.map.data(), file.path);
    return file;
}

namespace {

// What a single-process run allocates: a stage holding the whole model, with
// the whole context in one request, as shard_memory counts it for a worker.
// The weights are mapped from the file, not allocated, so they are not part
// of what must fit.
ShardMemory local_memory(const ModelFile& file, const PlanRequest& r) {
    StageLoad load;
    load.context = r.context > 0 ? std::min(r.context, file.config.seq_len) : file.config.seq_len;
    load.kv_type = r.kv_type;
    load.slots = r.slots;
    load.first = load.last = true;
    ShardMemory m = shard_memory(file.config, file.tensors, ShardSpec{0, file.config.n_layers, true, true}, load);
    m.weights = m.embedding = m.head = 0;
    return m;
}

// Refuses a run whose allocations would not fit in `budget` bytes, worded as
// `ferry plan` words a pool too small, with the fixes that would fit.
void check_local_memory(const ModelFile& file, int context, KvType kv_type, int slots, uint64_t budget,
                        bool budget_given) {
    PlanRequest r;
    r.context = context;
    r.kv_type = kv_type;
    r.slots = slots;
    const ShardMemory m = local_memory(file, r);
    if (budget == 0 || m.total() <= budget) return;
    const FitsTest fits = [&](const ModelFile& f, const PlanRequest& q) { return local_memory(f, q).total() <= budget; };
    const std::string name = file.path.substr(file.path.find_last_of('/') + 1);
    throw Error("this machine cannot run " + name + " at --ctx " + std::to_string(context) + " --kv-type " +
 kv_type_name(kv_type) +
                (slots > 1 ? " --parallel " + std::to_string(slots) : std::string()) + ": its KV cache and scratch need " + format_bytes(m.total()) + " (KV cache " +
                format_bytes(m.kv_cache) + ", workspace " + format_bytes(m.workspace) + ", buffers and the process " +
                format_bytes(m.buffers + m.overhead) + "), and " +
                (budget_given ? "--memory gives " : "the machine has ") + format_bytes(budget) +
                (budget_given ? "" : " available") + ", " + format_bytes(m.total() - budget) + " short" +
                any_of_these_fits({shorter_context_fix(file, r, fits), smaller_kv_type_fix(file, r, fits)}));
}

}  // namespace

std::unique_ptr<Engine> make_engine(const ModelFile& file, const RunOptions& o, int context,
                                    kernels::ThreadPool* pool, int slots) {
    if (!o.workers.empty()) {
        PipelineOptions p = pipeline_options(o);
        if (!o.memory.empty() && !parse_bytes(o.memory, &p.coordinator_memory))
            throw Error("--memory " + o.memory + ": expected a size such as 128M or 1.5G");
        p.slots = slots;
        if (o.no_recover) return std::make_unique<PipelineEngine>(file, p, context, pool);
        if (o.spares.size() > 0 && o.workers.empty()) throw Error("--spare needs --workers");
        RecoveryOptions r;
        r.spares = o.spares;
        r.wait_s = o.recover_wait;
        return std::make_unique<RecoveringEngine>(file, p, r, context, pool);
    }
    if (!o.split.empty()) throw Error("--split needs --workers");
    uint64_t budget = read_machine_memory().available;
    if (!o.memory.empty() && !parse_bytes(o.memory, &budget))
        throw Error("--memory " + o.memory + ": expected a size such as 512M or 1.5G");
    const KvType kv_type = kv_type_for(o.kv_type);
    check_local_memory(file, context, kv_type, slots, budget, !o.memory.empty());
    try {
        return std::make_unique<LocalEngine>(file, context, pool, kv_type, slots);
    } catch (const std::bad_alloc&) {  // the memory was there when counted, but not when asked for
        throw Error("cannot allocate the KV cache and scratch of --ctx " + std::to_string(context) + " --kv-type " +
                    o.kv_type + " (" + format_bytes(local_memory(file, [&] {
                        PlanRequest r;
                        r.context = context;
                        r.kv_type = kv_type;
                        r.slots = slots;
                        return r;
                    }()).total()) +
                    "); give a shorter --ctx or a smaller --kv-type");
    }
}

namespace {
// The chain's figures (with its recoveries), or nothing for one process.
std::optional<PipelineStats> pipeline_stats(const Engine& engine) {
    if (const auto* r = dynamic_cast<const RecoveringEngine*>(&engine)) return r->batch_stats();
    if (const auto* p = dynamic_cast<const PipelineEngine*>(&engine)) return p->stats();
    return std::nullopt;
}
}  // namespace

void report_engine(const Engine& engine) {
    const std::optional<PipelineStats> s = pipeline_stats(engine);
    if (!s) return;
    if (!s->nodes.empty()) std::fprintf(stderr, "%s", format_node_table(*s).c_str());
    else if (s->recovery.count > 0) std::fprintf(stderr, "%s\n", format_recovery(s->recovery).c_str());
}

nlohmann::json engine_stats_json(const Engine& engine) {
    if (const std::optional<PipelineStats> s = pipeline_stats(engine)) return node_stats_json(*s);
    return nlohmann::json{{"nodes", nlohmann::json::array()}, {"recoveries", 0}};
}

void write_json(const std::string& path, const nlohmann::json& j) {
    const std::string text = j.dump(2) + "\n";
    if (path == "-") {
        std::fputs(text.c_str(), stderr);
        return;
    }
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f || std::fputs(text.c_str(), f) < 0 || std::fclose(f) != 0)
        throw Error(path + ": cannot write the JSON statistics there (" + std::strerror(errno) + ")");
}

}  // namespace ferry
