#include "coordinator/pipeline/pipeline_probe.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "common/error.h"
#include "common/net/handshake.h"
#include "common/shard_memory.h"
#include "coordinator/pipeline/pipeline_engine.h"

namespace ferry {

using net::Hub;

namespace {

constexpr double kHeartbeatS = 1.0;

Hub::Clock::time_point after(double seconds) {
    return Hub::Clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

[[noreturn]] void fail(const WorkerLink& w, const std::string& what) {
    throw WorkerError(w.address, "worker " + w.address + ": " + what);
}

std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g s", s);
    return buf;
}

// The per-type speeds and the architecture, where the planner takes them.
template <typename Capacity>
void add_measured_types(Capacity& c, const wire::Capabilities& caps) {
    if constexpr (requires { c.type_gbps; c.arch; }) {
        c.arch = caps.arch();
        for (const auto& [type, gbps] : caps.type_gbps()) c.type_gbps[type] = gbps;
    }
}

}  // namespace

std::string event_problem(const Hub::Event& e) {
    switch (e.kind) {
        case Hub::Event::connect_failed: return e.reason;
        case Hub::Event::closed:
            return e.reason == "closed the connection" ? e.reason + " (the worker stopped or crashed; see its log)"
                                                       : e.reason;
        case Hub::Event::received:
            // The worker's message starts with its own name.
            if (e.frame.frame.has_error()) return "reports: " + e.frame.frame.error().message();
            return "";
        case Hub::Event::connected: return "";
    }
    return "";
}

std::vector<WorkerLink> greet_workers(Hub& hub, const std::vector<std::string>& addresses, wire::Role role,
                                      const std::string& model_hash, double connect_timeout_s, double timeout_s) {
    std::vector<WorkerLink> workers;
    for (size_t i = 0; i < addresses.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (addresses[i] == addresses[j])
                throw Error("--workers: " + addresses[i] + " is listed twice; a worker holds one stage, list it once");
    for (const std::string& address : addresses) {
        net::split_address(address, "--workers");
        WorkerLink w;
        w.address = address;
        w.link = hub.connect(address, connect_timeout_s);
        workers.push_back(std::move(w));
    }
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const std::string me = std::string(role == wire::COORDINATOR ? "coordinator" : "probe") + " on " + host +
                           " (pid " + std::to_string(::getpid()) + ")";
    size_t greeted = 0;
    const double limit_s = connect_timeout_s + 5;
    const auto deadline = after(limit_s);
    while (greeted < workers.size()) {
        std::optional<Hub::Event> e = hub.wait(deadline);
        if (!e) {
            for (const WorkerLink& w : workers)
                if (w.caps.cores() == 0) fail(w, "no handshake within " + seconds_text(limit_s) + " (is it a ferry-worker?)");
            continue;
        }
        WorkerLink& w = workers[static_cast<size_t>(e->link)];
        if (e->kind == Hub::Event::connected) {
            hub.configure(e->link, net::kControlFrameBytes, timeout_s, kHeartbeatS);
            hub.send(e->link, net::make_hello(role, me, model_hash, timeout_s));
            continue;
        }
        if (const std::string problem = event_problem(*e); !problem.empty()) fail(w, problem);
        if (e->kind != Hub::Event::received) continue;
        const wire::Frame& f = e->frame.frame;
        if (!f.has_hello()) fail(w, std::string("sent a ") + net::frame_kind(f) + " frame instead of its hello");
        if (const std::string bad = net::check_protocol(f.hello(), "worker " + w.address); !bad.empty()) throw Error(bad);
        if (f.hello().role() != wire::WORKER)
            fail(w, std::string("answered as a ") + net::role_name(f.hello().role()) + ", not a worker");
        w.heartbeat_s = net::heartbeat_interval(f.hello(), kHeartbeatS);
        hub.configure(e->link, net::kControlFrameBytes, timeout_s, w.heartbeat_s);
        w.caps = f.hello().capabilities();
        if (w.caps.cores() == 0) w.caps.set_cores(1);
        w.worker_name = f.hello().name();
        ++greeted;
    }
    return workers;
}

void measure_links(Hub& hub, const std::vector<WorkerLink*>& workers, double timeout_s) {
    for (WorkerLink* w : workers) measure_link(hub, *w, workers, timeout_s);
}

void measure_link(Hub& hub, WorkerLink& w, const std::vector<WorkerLink*>& workers, double timeout_s) {
    constexpr int kPings = 5;
    const std::string small(64, 'p'), large(1u << 20, 'e');
    double best = 1e30, large_ms = 0;
    for (int i = 0; i <= kPings; ++i) {
        wire::Frame f;
        f.mutable_ping()->set_nonce(static_cast<uint64_t>(i + 1));
        f.mutable_ping()->set_payload(i < kPings ? small : large);
        const uint64_t t0 = net::now_ns();
        hub.send(w.link, f);
        for (;;) {
            std::optional<Hub::Event> e = hub.wait(after(timeout_s));
            if (!e) fail(w, "no answer to a ping within " + seconds_text(timeout_s));
            if (const std::string problem = event_problem(*e); !problem.empty()) {
                for (const WorkerLink* other : workers)
                    if (other->link == e->link) fail(*other, problem);
                fail(w, problem);
            }
            if (e->link != w.link || e->kind != Hub::Event::received || !e->frame.frame.has_pong() ||
                e->frame.frame.pong().nonce() != static_cast<uint64_t>(i + 1))
                continue;
            const double ms = (e->at_ns - t0) / 1e6;
            if (i < kPings && ms < best) {
                best = ms;
                w.clock_offset_ns = static_cast<int64_t>(e->frame.frame.pong().clock_ns()) -
                                    static_cast<int64_t>(t0 + (e->at_ns - t0) / 2);
            }
            if (i == kPings) large_ms = ms;
            break;
        }
    }
    w.rtt_ms = best;
    // 2 MB crossed the link (there and back) in the time beyond a small round trip.
    const double transfer_ms = std::max(large_ms - best, 1e-3);
    w.link_mbps = 2.0 * large.size() * 8 / (transfer_ms * 1e3);
    spdlog::info("{}: rtt {:.3f} ms, {:.0f} Mbit/s, {} cores, {} kernels, {:.2f} GB/s f32, budget {}", w.address,
                 w.rtt_ms, w.link_mbps, w.caps.cores(), w.caps.kernel_level(), w.caps.matvec_gbps(),
                 w.caps.memory_budget() ? format_bytes(w.caps.memory_budget()) : "unlimited");
}

WorkerCapacity capacity_of(const WorkerLink& w, const std::string& tensor_type) {
    WorkerCapacity c;
    c.address = w.address;
    c.memory_budget = w.caps.memory_budget();
    const auto it = w.caps.type_gbps().find(tensor_type);
    c.matvec_gbps = it != w.caps.type_gbps().end() ? it->second : w.caps.matvec_gbps();
    c.link_mbps = w.link_mbps;
    c.link_latency_ms = w.rtt_ms / 2;
    add_measured_types(c, w.caps);
    return c;
}

std::vector<WorkerCapacity> probe_workers(const std::vector<std::string>& addresses, const ProbeOptions& o) {
    if (addresses.empty()) throw Error("--workers: no workers given");
    Hub hub(o.cluster_key);
    std::vector<WorkerLink> workers =
        greet_workers(hub, addresses, wire::STATUS_CLIENT, "", o.connect_timeout_s, o.timeout_s);
    std::vector<WorkerLink*> all;
    for (WorkerLink& w : workers) all.push_back(&w);
    if (o.measure_links) measure_links(hub, all, o.timeout_s);
    std::vector<WorkerCapacity> capacities;
    for (const WorkerLink& w : workers) capacities.push_back(capacity_of(w, o.tensor_type));
    return capacities;
}

}  // namespace ferry
