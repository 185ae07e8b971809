// What each node of a pipeline did, and how it is shown: the table at the end
// of `ferry run --workers` (and every --stats-every tokens), and the rows of
// `ferry status`.
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace ferry {

struct NodeStats {
    std::string address;   // "coordinator" for the local row
    std::string layers;    // "0-2", "embed+head", ...
    uint64_t weight_bytes = 0;
    uint64_t rss = 0, peak_rss = 0;
    uint64_t positions = 0;    // token positions processed
    uint64_t requests = 0;
    double compute_ms = 0;     // total
    double net_ms = 0;         // total time the activation spent travelling into this node
    uint64_t decode_requests = 0;  // one-token requests (decode steps)
    double decode_compute_ms = 0;  // compute_ms of those alone
    double decode_net_ms = 0;      // net_ms of those alone
    uint64_t bytes_sent = 0, bytes_received = 0;  // data path (requests and results)
    // The plan's predictions per decoded token (0: none), shown beside the measured ones.
    double predicted_compute_ms = 0, predicted_net_ms = 0;
    // What the node is (for the dashboard and /metrics).
    std::string arch;          // "x86_64", "i686"
    std::string kernel_level;  // scalar | sse2 | avx2
    uint64_t memory_budget = 0;   // its --memory; 0: not limited
    uint64_t memory_needed = 0;   // what the plan counted for its shard
    double link_rtt_ms = 0;       // measured round trip to it (0: this process)
    int kv_slots = 0;             // sequences it keeps a KV cache for
};

// The recoveries from failed workers (RecoveringEngine): how many, and what
// the last one cost phase by phase.
struct RecoveryStats {
    int count = 0;
    std::string failure;       // the last failure, as logged
    double detect_ms = 0;      // from the last answer (or the call) to the failure
    double plan_ms = 0;        // connect, measure, plan and assign over the survivors
    double shards_ms = 0;      // shards sent to the new chain (0: all from caches)
    uint64_t shard_bytes = 0;
    double replay_ms = 0;      // KV caches rebuilt by replaying tokens
    uint64_t replayed_positions = 0;
    double total_ms = 0;       // failure to going on (plus detect_ms)
};

struct PipelineStats {
    std::vector<NodeStats> nodes;  // coordinator first, then the stages in chain order
    uint64_t decode_tokens = 0;
    double decode_ms = 0;          // wall time of one-token requests, end to end
    double decode_compute_ms = 0;  // of which nodes computed
    uint64_t prefill_tokens = 0;
    double prefill_ms = 0;
    uint64_t shard_bytes_sent = 0;
    double shard_seconds = 0;
    RecoveryStats recovery;
};

// The per-node table and the end-to-end line, for stderr.
std::string format_node_table(const PipelineStats& s);
// The same figures as JSON (`ferry run --json`): {"nodes": [...], "decode": ..., "prefill": ..., "shards": ...}.
// "layers" is the text of the table ("0-2+emb": inclusive ranges, as everywhere in text).
nlohmann::json node_stats_json(const PipelineStats& s);
// "recoveries: 2; the last in 1830 ms after detection in 3 ms: re-plan ..., cause: ..." (one line, no newline).
std::string format_recovery(const RecoveryStats& r);
// The same as JSON ({"count", "failure", "detect_ms", ...}).
nlohmann::json recovery_json(const RecoveryStats& r);
// What a node is and holds (address, layers, arch, kernels, weights, memory), the fields every JSON view of a node shares.
nlohmann::json node_identity_json(const NodeStats& n);

}  // namespace ferry
