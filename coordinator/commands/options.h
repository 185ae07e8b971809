// Command-line options of the coordinator's subcommands, declared once so
// `run`, `bench` and the pipeline share them.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/net/cluster_key.h"

namespace ferry {

struct RunOptions {
    std::string model;
    std::string tokenizer;
    bool force_tokenizer = false;  // a -z with more pieces than the model's vocabulary: warn, not refuse
    float temperature = 1.0f;
    float topp = 0.9f;
    int64_t seed = 0;
    int steps = 256;
    std::string prompt;
    int threads = 0;  // 0: one per core
    std::string kernels = "auto";
    int ctx = 0;  // 0: what the run needs (run, bench) or the model's seq_len (chat)
    std::string kv_type = "f32";
    std::string memory;  // --memory: what a single-process run may allocate; empty: the machine's available memory
    std::string ids_out;
    std::string json_out;          // run: the statistics as JSON to this file ("-": stderr)
    bool chat = false;             // run: treat -i as one chat turn
    std::string chat_template;     // empty: the model's own
    bool no_think = false;         // chatml: open each reply with an empty <think> block (Qwen3)
    std::string system_prompt;
    std::string log_level = "warn";
    // Pipeline (coordinator/pipeline_engine.*)
    std::vector<std::string> workers;
    std::vector<int> split;
    std::string wire = "f32";
    int stats_every = 0;
    // Where the embedding table and the head go (default: the plan decides).
    bool embedding_on_worker = false;       // the first worker looks token ids up
    bool head_on_worker = false;            // the last worker applies the final norm and classifier
    bool embedding_on_coordinator = false;  // the coordinator keeps the embedding table
    bool head_on_coordinator = false;       // the coordinator keeps the head (and samples)
    int head_slices = 0;                    // the classifier in N vocabulary slices on workers; 0: planned
    int prefill_chunk = 0;             // prefill micro-batch size (0: the whole prompt in one batch)
    double net_timeout = 10;           // seconds of silence after which a worker is dead
    std::vector<std::string> spares;   // more workers to plan over when one fails
    double recover_wait = 60;          // seconds to wait for a worker to return when too few are left
    bool no_recover = false;           // a failed worker ends the run (the behaviour before recovery)
    double connect_timeout = 5;
    std::string key_file;              // --key-file (else FERRY_KEY_FILE, else a systemd credential)
    double discover_wait = 2;          // seconds to listen for workers when --workers is not given
    std::optional<net::ClusterKey> cluster_key;  // found by resolve_pool
};

// Adds the options `ferry run` and `ferry bench` share to a subcommand.
// --log-level, checked against spdlog's level names.
void add_log_level_option(CLI::App* app, std::string& level);
void add_model_options(CLI::App* app, RunOptions& o);
void add_sampling_options(CLI::App* app, RunOptions& o);
// --chat-template and --no-think.
void add_chat_template_options(CLI::App* app, RunOptions& o);
void add_pipeline_options(CLI::App* app, RunOptions& o);
// --key-file and --discover-wait, for every subcommand that talks to workers.
void add_key_options(CLI::App* app, std::string& key_file, double& discover_wait);

int cmd_run(const RunOptions& o);
// `ferry run --chat`: one user turn (-i) through the chat template, reply printed.
int run_chat_once(const RunOptions& o);

}  // namespace ferry
