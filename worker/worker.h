// The ferry-worker daemon: one asio io thread for every socket and timer, one
// compute thread running the shard on the kernels' thread pool. Heavy work
// (probing, hashing, loading, forward passes) is posted to the compute
// thread and its results posted back, so heartbeats and status requests are
// answered while a long prefill runs.
//
// One coordinator session at a time; status clients at any time; the data
// connection from the previous stage is accepted only for the current
// session and model.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <string>

#include "common/net/cluster_key.h"

namespace ferry::worker {

struct WorkerOptions {
    std::string listen = "0.0.0.0:7070";
    std::string name;          // how this worker names itself; default: the listen address
    int threads = 0;           // 0: one per core
    uint64_t memory_budget = 0;  // 0: not limited
    std::string cache_dir;     // shard cache; default net::default_cache_dir()
    uint64_t cache_max = 0;    // most bytes the cache holds; 0: not limited
    std::string model_dir;     // optional: whole model files, found by content hash
    double handshake_timeout_s = 5;
    double link_timeout_s = 10;  // a link silent this long is dead
    double heartbeat_s = 1;
    double probe_s = 0.25;       // speed probe at start
    // The pool's key: every connection proves it and is sealed. Without one a
    // worker listens on loopback only, unless `insecure` (a trusted LAN).
    std::optional<net::ClusterKey> key;
    bool insecure = false;
    bool handle_signals = true;  // SIGTERM/SIGINT drain and stop
    // Hooks for a service manager (systemd's sd_notify, from main.cpp), called
    // on the network thread: `on_state` with one line saying what the worker
    // holds and serves, whenever that changes; `on_alive` every
    // `alive_every_s` seconds while the network thread turns (a watchdog).
    std::function<void(const std::string& state)> on_state;
    std::function<void()> on_alive;
    double alive_every_s = 0;
};

class Worker {
public:
    // Probes the machine and binds the listening socket; throws ferry::Error
    // if the address cannot be used.
    explicit Worker(const WorkerOptions& options);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    uint16_t port() const;
    // Serves until stop() or a signal; returns after draining.
    void run();
    // Thread-safe: finish or abort the current request, close every
    // connection, return from run().
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::worker
