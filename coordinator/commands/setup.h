// Helpers the subcommands share: choosing kernels, threads, context and the
// engine (local or pipeline) from the options.
#pragma once
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <vector>
#include <string>

#include "common/kv_cache.h"
#include "common/model_file.h"
#include "common/sampler.h"
#include "coordinator/generation/engine.h"
#include "coordinator/commands/options.h"
#include "kernels/thread_pool.h"

namespace ferry {

int resolve_threads(int requested);
void select_kernels(const std::string& name);
// The positions the KV cache holds: --ctx if given (at most the model's
// seq_len), else `needed` capped at seq_len (0: the model's seq_len).
int context_for(const ModelConfig& c, int requested, int needed = 0);
KvType kv_type_for(const std::string& name);
SamplerParams sampler_params(const RunOptions& o);
// The model file of run, chat, bench and plan, with every tensor the forward
// pass reads checked (present, the config's shape, a type the kernels
// multiply) as bind_weights checks it, so plan refuses the files run
// refuses. Throws ferry::Error in one line naming the file and the tensor.
// all_layers_here: this process computes every layer (no --workers), so a
// file that fits in memory is read in first, in file order.
ModelFile open_model(const std::string& path, bool all_layers_here);
// A LocalEngine, or a pipeline over o.workers when given. A LocalEngine whose
// KV cache and scratch would not fit in --memory (default: the memory the
// machine has available) is refused in one line with the numbers and the
// fixes, before anything is allocated.
// slots: sequences with a KV cache each (`ferry serve --parallel`), counted
// in the memory check and the plan.
std::unique_ptr<Engine> make_engine(const ModelFile& file, const RunOptions& o, int context,
                                    kernels::ThreadPool* pool, int slots = 1);
// The cluster key of --key-file, else FERRY_KEY_FILE, else a systemd
// credential; nullopt without one (plain links, workers on loopback or --insecure).
std::optional<net::ClusterKey> cluster_key_from(const std::string& key_file);
// The workers announcing themselves with this key within `wait_s` seconds
// (discovery.h), in a stable order; logs what it heard.
std::vector<std::string> discover_pool(const net::ClusterKey& key, double wait_s);
// Before run, chat, serve and bench: reads the cluster key and, with a key
// and no --workers, uses the workers discovered on the LAN (none: this process).
void resolve_pool(RunOptions& o);
// Prints what the engine measured (the per-node table of a pipeline) to stderr.
void report_engine(const Engine& engine);
// What the engine measured as JSON: a pipeline's node_stats_json, or {"nodes": []} in one process.
nlohmann::json engine_stats_json(const Engine& engine);
// Writes j to path ("-": stderr); throws ferry::Error naming the file.
void write_json(const std::string& path, const nlohmann::json& j);

}  // namespace ferry
