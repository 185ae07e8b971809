#include "worker/worker.h"

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>


#include <asio.hpp>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/error.h"
#include "common/logging.h"
#include "common/version.h"
#include "common/mapped_file.h"
#include "common/net/connection.h"
#include "common/net/discovery.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"
#include "common/net/shard_cache.h"
#include "common/net/shard_image.h"
#include "common/net/values.h"
#include "common/platform/system.h"
#include "common/process_stats.h"
#include "common/shard_memory.h"
#include "worker/capabilities.h"
#include "worker/stage.h"
#include "worker/stop_signals.h"

namespace ferry::worker {

using net::Connection;
using net::tcp;

namespace {

std::string layers_text(const ShardSpec& s) {
    std::string t = s.last_layer > s.first_layer
                        ? "layers " + std::to_string(s.first_layer) + "-" + std::to_string(s.last_layer - 1)
                        : std::string("no layers");
    if (s.embedding) t += " + embedding";
    if (s.head) t += " + head";
    if (s.has_slice())
        t += " + vocabulary " + std::to_string(s.vocab_first) + "-" + std::to_string(s.vocab_last - 1);
    return t;
}

std::string clock_text(std::time_t t) {
    return fmt::format("{:%H:%M:%S}", fmt::localtime(t));  // fmt's localtime is the thread-safe one on every OS
}

// Requests of up to this many positions (decode steps, batched decode of a
// few sequences) may run on the io thread.
constexpr int kInlinePositions = 4;

// What peers can make a worker hold is bounded (docs/PROTOCOL.md, "Limits"):
// connections that have not said hello yet, beyond this many the oldest is
// dropped, so a flood of idle connections costs a fixed amount and a real
// peer (which says hello at once) still gets in;
constexpr size_t kMaxPendingHandshakes = 32;
// status clients at once, beyond this many the oldest is dropped;
constexpr size_t kMaxStatusClients = 2;
// a status client's largest frame: the 1 MB link echo and its framing;
constexpr uint32_t kStatusFrameBytes = (1u << 20) + (64u << 10);
// bytes queued for a peer before nothing more is read from it.
constexpr size_t kSendLimitBytes = 1u << 20;
// Accepting fails when the process is out of descriptors: the first retry
// is after this long, then twice as long each time, at most 1 s.
constexpr auto kAcceptRetryFirst = std::chrono::milliseconds(100);
constexpr auto kAcceptRetryMost = std::chrono::milliseconds(1000);

// Most sequences one assignment may hold (`ferry serve --parallel`).
constexpr int kMaxSlots = 256;

// Positions in the largest Forward the coordinator said it will send.
int max_positions(const wire::Assign& a) {
    return a.max_positions() > 0 ? std::min(a.max_positions(), a.context()) : a.context();
}

// Largest Forward a stage accepts: its largest request of activations (or
// token ids), as the memory check counted it; a larger one is refused.
uint32_t data_frame_limit(const ModelConfig& c, const wire::Assign& a) {
    const uint64_t bytes = (64ull << 10) + static_cast<uint64_t>(max_positions(a)) * c.dim * 4;
    return static_cast<uint32_t>(std::min<uint64_t>(std::max<uint64_t>(bytes, net::kControlFrameBytes), net::kMaxFrameBytes));
}

// How the stage of an (already checked) assignment runs.
StageSetup stage_setup(const wire::Assign& a, const ShardSpec& spec) {
    KvType kv = KvType::f32;
    parse_kv_type(a.kv_type(), &kv);
    return StageSetup{spec, a.context(), kv, a.wire(), a.stage_index() == a.n_stages() - 1, a.stage_index(),
                      max_positions(a), std::max(1, a.slots())};
}

}  // namespace

struct Worker::Impl {
    WorkerOptions opt;
    asio::io_context io;
    tcp::acceptor acceptor{io};
    // Before the pool: its threads start with SIGTERM and SIGINT blocked.
    std::unique_ptr<StopSignals> stop_signals = opt.handle_signals ? std::make_unique<StopSignals>(io) : nullptr;
    kernels::ThreadPool pool;
    wire::Capabilities caps;
    uint64_t start_ns = net::now_ns();
    std::string name;
    uint16_t bound_port = 0;
    std::set<std::shared_ptr<Connection>> conns;
    bool draining = false;
    // Accept errors in a row (an episode: logged when it starts and ends).
    asio::steady_timer accept_retry{io};
    std::chrono::milliseconds accept_delay = kAcceptRetryFirst;
    uint64_t accept_failures = 0, accept_failing_since_ns = 0;

    // The compute thread: jobs run in order, results are posted back to io.
    std::thread compute_thread;
    std::mutex cmu;
    std::condition_variable ccv;
    std::deque<std::function<void()>> jobs;
    bool compute_stop = false;
    std::atomic<bool> busy{false};
    int compute_queued = 0;  // requests posted to the compute thread and not yet delivered (io thread)
    std::atomic<uint64_t> busy_request{0};
    std::atomic<int> progress{0};

    struct Peer {
        std::shared_ptr<Connection> conn;
        wire::Role role = wire::ROLE_UNKNOWN;
        std::string name;  // what the peer calls itself
        bool evicted = false;  // dropped to make room (logged once per episode, not per peer)
    };

    // Peers of one kind in arrival order, at most `cap`: admitting one more
    // drops the oldest. An episode of drops is logged when it starts and,
    // with its count, when the last of the kind has gone.
    struct CappedPeers {
        size_t cap;
        const char* what;
        std::deque<std::shared_ptr<Peer>> peers;
        uint64_t dropped = 0;

        CappedPeers(size_t cap, const char* what) : cap(cap), what(what) {}

        void admit(Impl& w, std::shared_ptr<Peer> p) {
            peers.push_back(std::move(p));
            if (peers.size() <= cap) return;
            std::shared_ptr<Peer> oldest = peers.front();
            peers.pop_front();
            if (dropped++ == 0)
                spdlog::warn("{}: more than {} {} at once: dropping the oldest to make room (a flood?)", w.name, cap, what);
            oldest->evicted = true;
            oldest->conn->close(std::string("dropped: more than ") + std::to_string(cap) + " " + what + " at once");
        }
        void remove(Impl& w, const Peer* p) {
            for (auto it = peers.begin(); it != peers.end(); ++it)
                if (it->get() == p) {
                    peers.erase(it);
                    break;
                }
            if (peers.empty() && dropped > 0) {
                spdlog::info("{}: dropped {} {} while more than {} were open", w.name, dropped, what, cap);
                dropped = 0;
            }
        }
    };
    CappedPeers waiting_hello{kMaxPendingHandshakes, "connections waiting for their hello"};
    CappedPeers status_clients{kMaxStatusClients, "status clients"};

    struct Session {
        uint64_t gen = 0;
        std::shared_ptr<Connection> control;
        std::string coordinator;
        uint64_t since_ns = 0;
        std::time_t since_wall = 0;
        bool assigned = false;
        wire::Assign assign;
        ModelConfig config;
        ShardSpec spec;
        std::unique_ptr<net::ShardReceiver> receiver;
        uint64_t receive_start_ns = 0;
        uint64_t acked_to = 0, acked_ns = 0;  // the last ShardAck
        uint64_t peak_rss = 0;                // highest RSS at a request in this session
        uint64_t last_request_ns = 0;
        std::shared_ptr<Stage> stage;
        int inline_positions = 0;  // requests of at most this many positions run on the io thread
        std::shared_ptr<Connection> upstream, downstream;
        std::string upstream_name, next_address;
        bool link_loss_reported = false;  // one delayed report per session
    };
    std::unique_ptr<Session> session;
    uint64_t generation = 0;

    // Counters for status and the node table (io thread).
    uint64_t tokens = 0, requests = 0, compute_ns = 0, data_in = 0, data_out = 0, shard_received = 0;
    // Decode steps served per weight type, for learn_speed.
    struct ServedSpeed {
        uint64_t bytes = 0, ns = 0, steps = 0;
    };
    std::map<std::string, ServedSpeed> served;
    static constexpr uint64_t kLearnSteps = 32;
    const uint64_t learn_min_bytes = served_speed_min_bytes();
    struct Loaded {
        bool valid = false;
        std::string hash, model_name;
        ShardSpec spec;
        uint64_t weight_bytes = 0;
    } loaded;
    std::unique_ptr<net::BeaconSender> beacon;
    std::atomic<uint64_t> rss_at_ns{0};
    ProcessMemory rss;
    std::mutex rss_mu;

    explicit Impl(const WorkerOptions& o) : opt(o), pool(o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency())) {
        if (opt.cache_dir.empty()) opt.cache_dir = net::default_cache_dir();
        const auto [host, port] = net::split_address(opt.listen, "--listen");
        asio::error_code ec;
        const asio::ip::address addr = asio::ip::make_address(host, ec);
        if (ec) throw Error("--listen " + opt.listen + ": '" + host + "' is not an IP address (use 0.0.0.0 for every interface)");
        if (!opt.key && !opt.insecure && !addr.is_loopback())
            throw Error("--listen " + opt.listen + ": without a cluster key anyone on the network could use this worker; "
                        "give --key-file F (make it with `ferry keygen -o F`, the same file on every machine), or "
                        "--insecure on a network you trust");
        tcp::endpoint ep(addr, port);
        acceptor.open(ep.protocol(), ec);
        if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
        if (!ec) acceptor.bind(ep, ec);
        if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) throw Error("--listen " + opt.listen + ": cannot listen: " + ec.message());
        bound_port = acceptor.local_endpoint().port();
        caps = probe_capabilities(pool, opt.memory_budget, opt.probe_s);
        const bool any = host == "0.0.0.0" || host == "::";
        name = !opt.name.empty() ? opt.name : (any ? caps.hostname() : host) + ":" + std::to_string(bound_port);
        prune_cache("");
        compute_thread = std::thread([this] { compute_loop(); });
    }

    // Keeps the shard cache within --cache-max, and free of abandoned partial transfers.
    void prune_cache(const std::string& keep) {
        for (const net::CacheFile& f : net::prune_cache(opt.cache_dir, opt.cache_max, keep))
            spdlog::info("{}: removed {} from the shard cache ({})", name, f.path,
                         f.partial ? "a partial transfer untouched for an hour or more"
                                   : "least recently used, over --cache-max " + format_bytes(opt.cache_max));
    }

    ~Impl() {
        {
            std::lock_guard<std::mutex> lock(cmu);
            compute_stop = true;
        }
        ccv.notify_all();
        if (compute_thread.joinable()) compute_thread.join();
    }

    void compute_loop() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock<std::mutex> lock(cmu);
                ccv.wait(lock, [&] { return compute_stop || !jobs.empty(); });
                if (compute_stop) return;
                job = std::move(jobs.front());
                jobs.pop_front();
            }
            job();
        }
    }

    void post_compute(std::function<void()> job) {
        {
            std::lock_guard<std::mutex> lock(cmu);
            jobs.push_back(std::move(job));
        }
        ccv.notify_one();
    }

    ProcessMemory memory() {
        std::lock_guard<std::mutex> lock(rss_mu);
        const uint64_t now = net::now_ns();
        if (now - rss_at_ns > 100'000'000ull) {
            rss = read_process_memory();
            rss_at_ns = now;
        }
        return rss;
    }

    // ---- accepting and the handshake ----

    void start() {
        if (stop_signals) wait_for_signal();
        accept_loop();
        if (opt.key) announce();
        if (opt.on_state || opt.on_alive) tell_service_manager(std::make_shared<asio::steady_timer>(io));
        spdlog::info("{}: listening on port {} ({} threads, {} kernels, {:.3g} GB/s f32, budget {}, cache {})", name,
                     bound_port, pool.size(), caps.kernel_level(), caps.matvec_gbps(),
                     opt.memory_budget ? format_bytes(opt.memory_budget) : "unlimited", opt.cache_dir);
    }

    // Keyed workers announce themselves on the LAN (discovery.h), so a
    // coordinator with the same key finds them without --workers. A worker
    // on loopback is for this machine only and stays quiet.
    void announce() {
        asio::error_code ec;
        const asio::ip::address addr = acceptor.local_endpoint(ec).address();
        if (ec || addr.is_loopback()) return;
        if (addr.is_v6() && !addr.is_unspecified()) {  // beacons go out of IPv4 interfaces only
            spdlog::info("{}: listening on an IPv6 address: not announced (coordinators name it with --workers)", name);
            return;
        }
        beacon = std::make_unique<net::BeaconSender>(io, *opt.key, addr, [this](wire::Beacon& b) {
            b.set_port(bound_port);
            b.set_name(name);
            b.set_protocol(net::kProtocolVersion);
            b.set_software_version(ferry_version());
            if (loaded.valid) b.set_holds("layers " + spec_text(loaded.spec) + " of " + loaded.model_name);
            b.set_memory_budget(opt.memory_budget);
            b.set_busy(session != nullptr);
        });
        spdlog::info("{}: announcing itself to coordinators with the same key ({} port {})", name, net::kDiscoveryGroup,
                     net::kDiscoveryPort);
    }

    // SIGHUP reopens the log file (logrotate); SIGTERM and SIGINT drain and stop.
    void wait_for_signal() {
        stop_signals->async_wait([this](const char* sig) {
            if (std::string(sig) == "SIGHUP") {
                if (reopen_log_file()) spdlog::info("{}: SIGHUP: log file reopened", name);
                else spdlog::warn("{}: SIGHUP: cannot reopen the log file; still writing to the old one", name);
                return wait_for_signal();
            }
            spdlog::info("{}: signal {}: draining", name, sig);
            begin_stop(sig);
        });
    }

    // What the worker holds and serves, in one line (systemd's STATUS=).
    std::string state_line() const {
        std::string line = loaded.valid ? "holds layers " + spec_text(loaded.spec) + " of " + loaded.model_name + " (" +
                                              format_bytes(loaded.weight_bytes) + ")"
                                        : "no shard loaded";
        line += session ? "; serving " + session->coordinator : "; waiting for a coordinator";
        return line;
    }

    // A second's tick: the state when it changed, and the watchdog when due.
    void tell_service_manager(std::shared_ptr<asio::steady_timer> timer, std::string said = "", uint64_t alive_ns = 0) {
        if (draining) return;
        const std::string state = state_line();
        if (opt.on_state && state != said) opt.on_state(state);
        const uint64_t now = net::now_ns();
        if (opt.on_alive && opt.alive_every_s > 0 && now - alive_ns >= opt.alive_every_s * 1e9) {
            opt.on_alive();
            alive_ns = now;
        }
        timer->expires_after(std::chrono::milliseconds(
            opt.alive_every_s > 0 ? std::min<int64_t>(1000, static_cast<int64_t>(opt.alive_every_s * 1000)) : 1000));
        timer->async_wait([this, timer, state, alive_ns](const asio::error_code& ec) {
            if (!ec) tell_service_manager(timer, state, alive_ns);
        });
    }

    void accept_loop() {
        acceptor.async_accept([this](const asio::error_code& ec, tcp::socket socket) {
            if (draining || !acceptor.is_open()) return;
            if (ec) return accept_failed(ec);
            if (accept_failures > 0) {
                spdlog::info("{}: accepting connections again after {} failed attempts in {:.1f} s", name,
                             accept_failures, (net::now_ns() - accept_failing_since_ns) / 1e9);
                accept_failures = 0;
                accept_delay = kAcceptRetryFirst;
            }
            net::tune_socket(socket);
            const std::string peer_addr = net::remote_address(socket);
            auto peer = std::make_shared<Peer>();
            peer->conn = std::make_shared<Connection>(std::move(socket), peer_addr);
            if (opt.key) peer->conn->secure(*opt.key, net::SecureLink::Side::server);
            conns.insert(peer->conn);
            waiting_hello.admit(*this, peer);
            peer->conn->set_send_limit(kSendLimitBytes);
            // The first whole frame must be the hello, so this bounds the handshake (plus the time a 64 KiB
            // hello needs at 1 Mbit/s): a peer dribbling bytes of it is dropped as one saying nothing.
            peer->conn->set_silence_timeout(opt.handshake_timeout_s, "said nothing (handshake timeout)");
            peer->conn->start([this, peer](net::FrameDecoder::Decoded& d) { on_frame(peer, d); },
                              [this, peer](const std::string& reason) { on_close(*peer, reason); });
            accept_loop();
        });
    }

    // Out of descriptors (EMFILE), or the kernel out of socket memory: the
    // listening socket stays readable, so accepting again at once would spin
    // at 100% CPU. Wait instead, longer each time; the connections wait in
    // the listen backlog meanwhile and are served once descriptors free up.
    void accept_failed(const asio::error_code& ec) {
        if (ec == asio::error::connection_aborted) return accept_loop();  // that peer gave up; the next is fine
        if (accept_failures++ == 0) {
            accept_failing_since_ns = net::now_ns();
            spdlog::warn("{}: accept failed: {}; retrying in {} ms and more rarely until it works ({} connections "
                         "open, descriptor limit {}: raise it with ulimit -n or LimitNOFILE= if this worker is busy, "
                         "else something leaks)",
                         name, ec.message(), accept_delay.count(), conns.size(), open_file_limit());
        }
        accept_retry.expires_after(accept_delay);
        accept_delay = std::min(accept_delay * 2, kAcceptRetryMost);
        accept_retry.async_wait([this](const asio::error_code& e) {
            if (!e && !draining && acceptor.is_open()) accept_loop();
        });
    }

    void refuse(Peer& p, const std::string& why) {
        spdlog::warn("{}: refused {}: {}", name, p.conn->peer(), why);
        wire::Frame hello = net::make_hello(wire::WORKER, name, "", opt.link_timeout_s);
        *hello.mutable_hello()->mutable_capabilities() = caps;
        p.conn->send(hello);
        p.conn->send(net::make_error(name + ": " + why));
        p.conn->close_after_send("refused: " + why);
    }

    void reply_hello(Peer& p, const std::string& model_hash) {
        wire::Frame hello = net::make_hello(wire::WORKER, name, model_hash, opt.link_timeout_s);
        *hello.mutable_hello()->mutable_capabilities() = caps;
        hello.mutable_hello()->mutable_capabilities()->set_ram_available(read_machine_memory().available);
        p.conn->send(hello);
    }

    void on_frame(const std::shared_ptr<Peer>& peer, net::FrameDecoder::Decoded& d) {
        Peer& p = *peer;
        if (p.role == wire::ROLE_UNKNOWN) {
            if (!d.frame.has_hello()) {
                refuse(p, std::string("sent a ") + net::frame_kind(d.frame) + " frame before the handshake");
                return;
            }
            on_hello(peer, d.frame.hello());
            // A refused peer stays among those waiting until it is closed (two seconds at most).
            if (p.role != wire::ROLE_UNKNOWN) waiting_hello.remove(*this, &p);
            return;
        }
        switch (p.role) {
            case wire::COORDINATOR: on_coordinator_frame(p, d); break;
            case wire::UPSTREAM_STAGE: on_upstream_frame(p, d); break;
            case wire::STATUS_CLIENT:
                if (d.frame.has_status_request()) p.conn->send(status_report());
                else refuse(p, std::string("a status client sent a ") + net::frame_kind(d.frame) + " frame");
                break;
            default: break;
        }
    }

    void on_hello(const std::shared_ptr<Peer>& peer, const wire::Hello& h) {
        Peer& p = *peer;
        const std::string who = h.name().empty() ? p.conn->peer() : h.name() + " (" + p.conn->peer() + ")";
        if (const std::string bad = net::check_protocol(h, who); !bad.empty()) return refuse(p, bad);
        p.name = h.name();
        switch (h.role()) {
            case wire::COORDINATOR: {
                if (draining) return refuse(p, "shutting down");
                if (session)
                    return refuse(p, "busy: serving coordinator " + session->coordinator + " since " +
                                         clock_text(session->since_wall) + "; one coordinator at a time");
                session = std::make_unique<Session>();
                session->gen = ++generation;
                session->control = p.conn;
                session->coordinator = who;
                session->since_ns = net::now_ns();
                session->since_wall = std::time(nullptr);
                p.role = wire::COORDINATOR;
                p.conn->set_frame_limit(net::kControlFrameBytes);
                p.conn->set_silence_timeout(opt.link_timeout_s, "coordinator silent (no frame, no heartbeat)");
                p.conn->set_heartbeat(net::heartbeat_interval(h, opt.heartbeat_s), [this](wire::Heartbeat& b) {
                    b.set_busy(busy);
                    b.set_request_id(busy_request);
                    b.set_positions_done(progress);
                });
                reply_hello(p, loaded.valid ? loaded.hash : "");
                spdlog::info("{}: coordinator {} connected", name, who);
                expect_assignment();
                return;
            }
            case wire::UPSTREAM_STAGE: {
                if (!session || !session->stage)
                    return refuse(p, "a data connection from " + who + " but no shard is assigned here");
                if (const std::string bad = net::check_model(session->assign.model_hash(), h.model_hash(), who); !bad.empty())
                    return refuse(p, bad);
                if (h.session_id() != session->assign.session_id())
                    return refuse(p, "a data connection from " + who + " of another coordinator session");
                if (h.stage_index() != session->assign.stage_index() - 1)
                    return refuse(p, "a data connection from stage " + std::to_string(h.stage_index()) + " (" + who +
                                         "), but this is stage " + std::to_string(session->assign.stage_index()));
                if (session->upstream) return refuse(p, "already has a data connection from the previous stage");
                p.role = wire::UPSTREAM_STAGE;
                session->upstream = p.conn;
                session->upstream_name = who;
                p.conn->set_frame_limit(data_frame_limit(session->config, session->assign));
                p.conn->set_silence_timeout(opt.link_timeout_s, "previous stage silent");
                p.conn->set_heartbeat(net::heartbeat_interval(h, opt.heartbeat_s));
                reply_hello(p, session->assign.model_hash());
                spdlog::info("{}: data connection from stage {} ({})", name, h.stage_index(), who);
                return;
            }
            case wire::STATUS_CLIENT:
                p.role = wire::STATUS_CLIENT;
                status_clients.admit(*this, peer);
                // A probe (`ferry plan --workers`) measures the link with a 1 MB echo.
                p.conn->set_frame_limit(kStatusFrameBytes);
                p.conn->set_silence_timeout(opt.link_timeout_s, "status client silent");
                reply_hello(p, loaded.valid ? loaded.hash : "");
                return;
            default: return refuse(p, "unknown role " + std::to_string(h.role()));
        }
    }

    void on_close(Peer& p, const std::string& reason) {
        conns.erase(p.conn);
        if (p.role == wire::ROLE_UNKNOWN) {
            waiting_hello.remove(*this, &p);
            // A refused key handshake was logged by the connection, rate-limited.
            if (!p.evicted && !p.conn->key_refused())
                spdlog::warn("{}: {} dropped before its handshake: {}", name, p.conn->peer(), reason);
        }
        if (p.role == wire::STATUS_CLIENT) status_clients.remove(*this, &p);
        if (!session) return;
        if (p.conn == session->control) {
            spdlog::info("{}: coordinator {}: {}; session ended", name, session->coordinator, reason);
            end_session();
        } else if (p.conn == session->upstream) {
            // Also the normal end of a session (the previous stage closes first): a real loss is
            // reported as an error by report_link_loss if the session is still alive then.
            spdlog::info("{}: data connection from {}: {}", name, session->upstream_name, reason);
            session->upstream.reset();
            report_link_loss("the data connection from the previous stage " + session->upstream_name + " ended: " + reason);
        }
    }

    // A lost data link is reported to the coordinator after a moment, so that
    // a node that died is named by its own dropped control connection first.
    void report_link_loss(const std::string& what) {
        if (!session || session->link_loss_reported) return;
        session->link_loss_reported = true;
        auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(500));
        const uint64_t gen = session ? session->gen : 0;
        timer->async_wait([this, timer, gen, what](const asio::error_code&) {
            if (session && session->gen == gen) fail_session(what);
        });
    }

    void end_session() {
        if (!session) return;
        for (auto* c : {&session->upstream, &session->downstream})
            if (*c) (*c)->close("session ended");
        auto control = session->control;
        session.reset();
        ++generation;
        if (control) control->close("session ended");
        if (draining) finish_stop();
    }

    void fail_session(const std::string& why) {
        spdlog::error("{}: {}", name, why);
        if (!session) return;
        auto control = session->control;
        control->send(net::make_error(name + ": " + why));
        control->close_after_send(why);
        for (auto* c : {&session->upstream, &session->downstream})
            if (*c) (*c)->close("session failed");
    }

    // ---- the coordinator's session ----

    // The session slot is one: a coordinator that says hello and then
    // nothing but heartbeats would hold it forever. Its Assign must come
    // within six link timeouts (60 s by default), or the handshake timeout if
    // longer: before its first Assign of a model a real coordinator measures
    // the links and reads each shard once to hash its image, which on an old
    // PC with the model on a slow disk takes tens of seconds.
    double assignment_deadline_s() const { return std::max(opt.handshake_timeout_s, 6 * opt.link_timeout_s); }

    void expect_assignment() {
        auto timer = std::make_shared<asio::steady_timer>(
            io, std::chrono::milliseconds(static_cast<int64_t>(assignment_deadline_s() * 1000)));
        const uint64_t gen = session->gen;
        timer->async_wait([this, timer, gen](const asio::error_code& ec) {
            if (ec || !session || session->gen != gen || session->assigned) return;
            char why[128];
            std::snprintf(why, sizeof why, "sent no assignment within %.1f s of its hello",
                          assignment_deadline_s());
            fail_session("coordinator " + session->coordinator + " " + why);
        });
    }

    // Tells the coordinator how far the image is written, every 4 MB or 200 ms.
    void ack_shard(uint64_t received_to) {
        const uint64_t now = net::now_ns();
        if (received_to - session->acked_to < (4u << 20) && now - session->acked_ns < 200'000'000) return;
        session->acked_to = received_to;
        session->acked_ns = now;
        wire::Frame f;
        f.mutable_shard_ack()->set_received_to(received_to);
        session->control->send(f);
    }

    void on_coordinator_frame(Peer& p, net::FrameDecoder::Decoded& d) {
        if (!session || p.conn != session->control) return;
        wire::Frame& f = d.frame;
        try {
            switch (f.msg_case()) {
                case wire::Frame::kAssign: return on_assign(f.assign());
                case wire::Frame::kShardBegin:
                    if (!session->receiver) throw Error("shard-begin without a pending transfer");
                    session->receiver->begin(f.shard_begin().offset());
                    session->receive_start_ns = net::now_ns();
                    return;
                case wire::Frame::kShardChunk: {
                    if (!session->receiver) throw Error("shard chunk without a pending transfer");
                    const wire::ShardChunk& c = f.shard_chunk();
                    session->receiver->write(c.offset(), c.data(), c.checksum());
                    shard_received += c.data().size();
                    ack_shard(c.offset() + c.data().size());
                    return;
                }
                case wire::Frame::kShardEnd: return on_shard_end(f.shard_end().image_hash());
                case wire::Frame::kConnectNext: return connect_next(f.connect_next().address());
                case wire::Frame::kForward:
                    if (session->assign.stage_index() != 0) throw Error("the coordinator sent a request to stage " +
                                                                         std::to_string(session->assign.stage_index()));
                    return submit_forward(d);
                case wire::Frame::kReset:
                    if (session->downstream) session->downstream->send(f);
                    return;
                case wire::Frame::kClassify: return submit_classify(d);
                case wire::Frame::kStatusRequest: p.conn->send(status_report()); return;
                case wire::Frame::kError:
                    spdlog::warn("{}: the coordinator reports: {}", name, f.error().message());
                    p.conn->close("coordinator error: " + f.error().message());
                    return;
                default:
                    throw Error(std::string("unexpected ") + net::frame_kind(f) + " frame from the coordinator");
            }
        } catch (const std::exception& e) {
            fail_session(e.what());
        }
    }

    void on_assign(const wire::Assign& a) {
        if (session->assigned) throw Error("a second assignment in one session");
        const ModelConfig c = net::shape_from_wire(a.shape());
        if (const std::string bad = c.check(); !bad.empty()) throw Error("the assignment's model shape is unusable: " + bad);
        const ShardSpec spec{a.first_layer(), a.last_layer(), a.embedding(), a.head(), a.vocab_first(), a.vocab_last()};
        if (spec.first_layer < 0 || spec.last_layer > c.n_layers || spec.first_layer > spec.last_layer)
            throw Error("assigned layers [" + std::to_string(spec.first_layer) + ", " + std::to_string(spec.last_layer) +
                        ") outside the model's " + std::to_string(c.n_layers));
        if ((spec.vocab_first != 0 || spec.vocab_last != 0) &&
            (!spec.has_slice() || spec.vocab_first < 0 || spec.vocab_last > c.vocab_size || spec.head))
            throw Error("assigned vocabulary slice [" + std::to_string(spec.vocab_first) + ", " +
                        std::to_string(spec.vocab_last) + ") is not a part of the model's " +
                        std::to_string(c.vocab_size) + " tokens, or comes with the whole head");
        // A worker holding only a vocabulary slice is no stage of the chain (index -1).
        const bool slice_only = spec.has_slice() && spec.last_layer == spec.first_layer && !spec.embedding;
        if (a.n_stages() < 1 || a.stage_index() < (slice_only ? -1 : 0) || a.stage_index() >= a.n_stages() ||
            (slice_only && a.stage_index() != -1))
            throw Error("stage " + std::to_string(a.stage_index()) + " of " + std::to_string(a.n_stages()) +
                        (slice_only ? " for a vocabulary slice alone (it is no stage: -1)" : ""));
        if (spec.embedding && a.stage_index() != 0) throw Error("only the first stage can hold the embedding");
        if (spec.head && a.stage_index() != a.n_stages() - 1) throw Error("only the last stage can hold the head");
        if (a.context() < 1 || a.context() > c.seq_len)
            throw Error("context " + std::to_string(a.context()) + " outside 1.." + std::to_string(c.seq_len));
        KvType kv;
        if (!parse_kv_type(a.kv_type(), &kv)) throw Error("unknown KV cache type '" + a.kv_type() + "'");
        if (a.slots() < 0 || a.slots() > kMaxSlots)
            throw Error(std::to_string(a.slots()) + " sequence slots, outside 1.." + std::to_string(kMaxSlots));
        if (a.model_hash().size() != net::kHashBytes) throw Error("the assignment has no model hash");
        std::vector<TensorInfo> tensors;
        for (const wire::TensorDesc& t : a.tensors())
            tensors.push_back({t.name(), static_cast<TensorType>(t.type()), t.rows(), t.cols(), t.group(), 0, t.bytes()});
        // The memory check counts these tensors, so they must be the shard's, and the image their bytes.
        if (const std::string bad = net::shard_tensors_problem(c, spec, tensors, a.image_bytes()); !bad.empty())
            throw Error("refused the assignment of " + layers_text(spec) + " of " + a.model_name() + ": " + bad +
                        " (run the same ferry version on every node)");
        StageLoad load;
        load.context = a.context();
        load.kv_type = kv;
        load.max_positions = a.max_positions();
        load.wire_bytes = static_cast<int>(net::wire_value_bytes(a.wire()));
        load.first = a.stage_index() == 0;
        load.last = a.stage_index() == a.n_stages() - 1;
        load.arch = caps.arch();
        load.slots = std::max(1, a.slots());
        const ShardMemory m = shard_memory(c, tensors, spec, load);
        if (opt.memory_budget > 0 && m.total() > opt.memory_budget)
            throw Error(layers_text(spec) + " of " + a.model_name() + " need " + format_bytes(m.total()) + " (weights " +
                        format_bytes(m.weights) + ", KV cache " + format_bytes(m.kv_cache) +
                        (load.slots > 1 ? " for " + std::to_string(load.slots) + " sequences" : std::string()) + ", workspace " +
                        format_bytes(m.workspace) + ", buffers " + format_bytes(m.buffers) + ", process " +
                        format_bytes(m.overhead) + ") but --memory is " + format_bytes(opt.memory_budget) +
                        "; give this worker fewer layers (--split), a shorter --ctx or a smaller --kv-type");
        session->assigned = true;
        session->assign = a;
        session->config = c;
        session->spec = spec;
        session->control->set_frame_limit(data_frame_limit(c, a));
        spdlog::info("{}: assigned {} of {} (stage {} of {}), context {}", name, layers_text(spec), a.model_name(),
                     a.stage_index(), a.n_stages(), a.context());

        const StageSetup setup = stage_setup(a, spec);
        const uint64_t gen = session->gen;
        post_compute([this, gen, a, c, setup] {
            std::shared_ptr<Stage> stage;
            std::unique_ptr<net::ShardReceiver> receiver;
            std::string source, error;
            try {
                const net::ShardPaths paths =
                    net::shard_paths(opt.cache_dir, a.model_hash(), setup.spec, a.image_hash());
                if (!a.image_hash().empty() && std::filesystem::exists(paths.final_path) &&
                    cached_image_sound(paths.final_path, a.image_hash())) {
                    stage = load_shard(paths.final_path, a, c, setup);
                    source = "cache " + paths.final_path;
                    net::touch_cache_file(paths.final_path);
                }
                if (!stage) {
                    if (const std::string model = find_model(a); !model.empty()) {
                        stage = std::make_shared<Stage>(model, c, setup);
                        source = "model-dir " + model;
                    }
                }
                if (!stage && a.image_hash().size() != net::kHashBytes)
                    throw Error("the coordinator cannot send this shard (no image hash in the assignment) and no "
                                "model in --model-dir matches; give this worker --model-dir with the model file");
                if (!stage && opt.cache_max > 0 && a.image_bytes() > opt.cache_max)
                    throw Error(layers_text(setup.spec) + " of " + a.model_name() + " is a " +
                                format_bytes(a.image_bytes()) + " shard, over --cache-max " +
                                format_bytes(opt.cache_max) + "; raise --cache-max or give this worker fewer layers");
                if (!stage) {
                    net::remove_other_parts(paths);
                    receiver = std::make_unique<net::ShardReceiver>(paths, a.image_bytes());
                }
            } catch (const std::exception& e) {
                error = e.what();
            }
            auto st = std::make_shared<decltype(stage)>(std::move(stage));
            auto rc = std::make_shared<decltype(receiver)>(std::move(receiver));
            asio::post(io, [this, gen, st, rc, source, error] {
                if (!session || session->gen != gen) return;
                if (!error.empty()) return fail_session(error);
                wire::Frame f;
                wire::AssignReply* r = f.mutable_assign_reply();
                if (*st) {
                    install_stage(*st);
                    r->set_state(wire::AssignReply::READY);
                    r->set_source(source);
                    r->set_weight_bytes((*st)->weight_bytes());
                    spdlog::info("{}: shard loaded from {}", name, source);
                } else {
                    session->receiver = std::move(*rc);
                    r->set_state(wire::AssignReply::NEED_SHARD);
                    r->set_have_bytes(session->receiver->have());
                    r->set_have_hash(session->receiver->have_hash());
                    spdlog::info("{}: shard not cached; {} bytes of {} already here", name, session->receiver->have(),
                                 session->assign.image_bytes());
                }
                session->control->send(f);
            });
        });
    }

    // Whether the cached image at `path` still hashes to the name it is
    // stored under. One that does not (bit rot, a torn write) is removed, so
    // the shard is received again; a sound one is never removed here.
    bool cached_image_sound(const std::string& path, const std::string& image_hash) {
        const uint64_t t0 = net::now_ns();
        const MappedFile map(path);
        const std::string got = net::mapped_content_hash(map, false);
        if (got == image_hash) {
            spdlog::debug("{}: {} verified ({} in {:.0f} ms)", name, path, format_bytes(map.size()),
                          (net::now_ns() - t0) / 1e6);
            return true;
        }
        spdlog::warn("{}: cached shard {} is corrupted (its bytes hash to {}, not {}); removed it, receiving it again",
                     name, path, net::hex(got), net::hex(image_hash));
        std::error_code ec;
        std::filesystem::remove(path, ec);
        return false;
    }

    // A verified shard image as this assignment's stage. Its bytes are what
    // the coordinator stated, so a disagreement (another model's shard under
    // this name, other shapes) is the assignment's fault: refused, the file kept.
    std::shared_ptr<Stage> load_shard(const std::string& path, const wire::Assign& a, const ModelConfig& c,
                                      const StageSetup& setup) {
        auto stage = std::make_shared<Stage>(path, c, setup);
        std::string hash_hex;
        ShardSpec spec;
        if (!net::read_shard_identity(stage->file(), &hash_hex, &spec) || hash_hex != net::hex(a.model_hash()) ||
            spec.first_layer != setup.spec.first_layer || spec.last_layer != setup.spec.last_layer ||
            spec.embedding != setup.spec.embedding || spec.head != setup.spec.head ||
            spec.vocab_first != setup.spec.vocab_first || spec.vocab_last != setup.spec.vocab_last)
            throw Error(path + " holds another shard than the assignment's " + layers_text(setup.spec) + " of " +
                        a.model_name() + "; the coordinator's image hash is wrong");
        return stage;
    }

    // Decode steps run on the io thread when one is predicted to take at most
    // a quarter second (weights over the slowest measured GB/s), so the io
    // thread never stops answering for long; else every request goes to the
    // compute thread.
    int inline_positions(const Stage& stage) const {
        double gbps = caps.matvec_gbps();
        for (const auto& [type, g] : caps.type_gbps()) gbps = std::min(gbps, g);
        if (!(gbps > 0)) return 0;
        const double seconds = static_cast<double>(stage.forward_bytes()) / (gbps * 1e9);
        return seconds <= 0.25 ? kInlinePositions : 0;
    }

    // A whole model file in --model-dir with the assignment's size and content hash.
    std::string find_model(const wire::Assign& a) {
        if (opt.model_dir.empty()) return "";
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(opt.model_dir, ec)) {
            if (!entry.is_regular_file(ec) || entry.file_size(ec) != a.model_bytes()) continue;
            try {
                if (net::file_content_hash(entry.path().string(), opt.cache_dir) == a.model_hash())
                    return entry.path().string();
            } catch (const std::exception& e) {
                spdlog::warn("{}: {}", name, e.what());
            }
        }
        return "";
    }

    void install_stage(std::shared_ptr<Stage> stage) {
        session->stage = std::move(stage);
        session->inline_positions = inline_positions(*session->stage);
        loaded = {true, session->assign.model_hash(), session->assign.model_name(), session->spec,
                  session->stage->weight_bytes()};
    }

    void on_shard_end(const std::string& image_hash) {
        if (!session->receiver) throw Error("shard-end without a transfer");
        const uint64_t gen = session->gen;
        auto receiver = std::shared_ptr<net::ShardReceiver>(std::move(session->receiver));
        const wire::Assign a = session->assign;
        const ModelConfig c = session->config;
        const StageSetup setup = stage_setup(a, session->spec);
        const uint64_t started = session->receive_start_ns;
        post_compute([this, gen, receiver, image_hash, a, c, setup, started] {
            std::shared_ptr<Stage> stage;
            std::string error;
            try {
                if (image_hash != a.image_hash())
                    throw Error("the shard's end states image hash " + net::hex(image_hash) + ", the assignment " +
                                net::hex(a.image_hash()));
                receiver->finish(image_hash);
                const std::string path = net::shard_paths(opt.cache_dir, a.model_hash(), setup.spec, image_hash).final_path;
                // Read back from disk (finish() dropped the written pages): what the next load will find.
                if (!cached_image_sound(path, image_hash))
                    throw Error(path + " reads back differently from what was received and verified; the disk of --cache-dir is failing");
                try {
                    stage = load_shard(path, a, c, setup);
                } catch (const std::exception&) {
                    std::error_code ec;
                    std::filesystem::remove(path, ec);  // never loaded, never to be: do not keep it
                    throw;
                }
                prune_cache(path);
            } catch (const std::exception& e) {
                error = e.what();
            }
            asio::post(io, [this, gen, stage, error, receiver, started] {
                if (!session || session->gen != gen) return;
                if (!error.empty()) return fail_session(error);
                install_stage(stage);
                wire::Frame f;
                f.mutable_shard_loaded()->set_weight_bytes(stage->weight_bytes());
                f.mutable_shard_loaded()->set_received_bytes(receiver->received());
                f.mutable_shard_loaded()->set_load_ms((net::now_ns() - started) / 1e6);
                session->control->send(f);
                spdlog::info("{}: shard received ({} bytes) and loaded", name, receiver->received());
            });
        });
    }

    void connect_next(const std::string& address) {
        if (!session->stage) throw Error("connect-next before the shard is loaded");
        if (session->downstream) throw Error("connect-next twice");
        session->next_address = address;
        const uint64_t gen = session->gen;
        net::async_connect(io, address, opt.handshake_timeout_s, [this, gen, address](const std::string& error, tcp::socket socket) {
            if (!session || session->gen != gen) return;
            if (!error.empty()) return fail_session("the next stage " + address + ": " + error);
            auto c = std::make_shared<Connection>(std::move(socket), address);
            if (opt.key) c->secure(*opt.key, net::SecureLink::Side::client);
            session->downstream = c;
            conns.insert(c);
            c->set_send_limit(kSendLimitBytes);
            auto greeted = std::make_shared<bool>(false);
            c->set_silence_timeout(opt.link_timeout_s, "next stage silent");
            c->set_heartbeat(opt.heartbeat_s);
            c->start(
                [this, gen, c, greeted, address](net::FrameDecoder::Decoded& d) {
                    if (!session || session->gen != gen) return;
                    if (d.frame.has_error())
                        return fail_session("the next stage " + address + " refused: " + d.frame.error().message());
                    if (!*greeted && d.frame.has_hello()) {
                        *greeted = true;
                        c->set_heartbeat(net::heartbeat_interval(d.frame.hello(), opt.heartbeat_s));
                        if (const std::string bad = net::check_protocol(d.frame.hello(), address); !bad.empty())
                            return fail_session(bad);
                        if (const std::string bad = net::check_model(session->assign.model_hash(),
                                                                     d.frame.hello().model_hash(), address);
                            !bad.empty())
                            return fail_session(bad);
                        wire::Frame ok;
                        ok.mutable_connected();
                        session->control->send(ok);
                        spdlog::info("{}: data connection to the next stage {} is up", name, address);
                        return;
                    }
                    fail_session(std::string("the next stage ") + address + " sent an unexpected " +
                                 net::frame_kind(d.frame) + " frame");
                },
                [this, gen, c, address](const std::string& reason) {
                    conns.erase(c);
                    if (session && session->gen == gen && session->downstream == c) {
                        session->downstream.reset();
                        report_link_loss("the data connection to the next stage " + address + " ended: " + reason);
                    }
                });
            wire::Frame hello =
                net::make_hello(wire::UPSTREAM_STAGE, name, session->assign.model_hash(), opt.link_timeout_s);
            hello.mutable_hello()->set_session_id(session->assign.session_id());
            hello.mutable_hello()->set_stage_index(session->assign.stage_index());
            c->send(hello);
        });
    }

    // ---- requests ----

    void on_upstream_frame(Peer& p, net::FrameDecoder::Decoded& d) {
        if (!session || p.conn != session->upstream) return;
        if (d.frame.has_forward()) return submit_forward(d);
        if (d.frame.has_reset()) {
            if (session->downstream) session->downstream->send(d.frame);
            return;
        }
        fail_session(std::string("the previous stage sent an unexpected ") + net::frame_kind(d.frame) + " frame");
    }

    // What running one request produced, to be sent on the io thread.
    struct Outcome {
        std::string encoded;  // the frame for the next stage or the coordinator; empty: nothing to send
        std::string error;
        int positions = 0;
        uint64_t compute_ns = 0;
        bool last = false;
        uint64_t rss = 0;           // after it ran
        uint64_t weight_bytes = 0;  // what a one-position request streamed: the stage's weights
        std::string weight_type;    // empty: a stage without layers (nothing to learn from)
    };

    // Runs on the io thread when the request is decode-sized and nothing is
    // queued before it: the answer is written before the next read, with no
    // thread handoff (the latency of each token). Larger requests (prefill)
    // go to the compute thread, so heartbeats and status stay answered; a
    // status request waits at most one decode step.
    void submit_forward(net::FrameDecoder::Decoded& d) {
        if (!session->stage) throw Error("a request before the shard is loaded");
        const uint64_t gen = session->gen;
        const uint64_t recv_ns = net::now_ns();
        const uint64_t bytes_in = d.wire_bytes;
        data_in += bytes_in;
        ++requests;
        std::shared_ptr<Stage> stage = session->stage;
        if (compute_queued == 0 && d.frame.forward().n_tokens() <= session->inline_positions) {
            Outcome o = run_request(*stage, d.frame.forward(), recv_ns, bytes_in);
            return deliver(gen, std::move(o));
        }
        auto in = std::make_shared<wire::Frame>(std::move(d.frame));
        ++compute_queued;
        post_compute([this, gen, in, stage, recv_ns, bytes_in] {
            busy_request = in->forward().request_id();
            busy = true;
            auto o = std::make_shared<Outcome>(run_request(*stage, in->forward(), recv_ns, bytes_in));
            busy = false;
            asio::post(io, [this, gen, o] {
                --compute_queued;
                deliver(gen, std::move(*o));
            });
        });
    }

    // A vocabulary slice's part of a token, in order with the stage's
    // requests (the same compute thread): answered on the control connection.
    void submit_classify(net::FrameDecoder::Decoded& d) {
        if (!session->stage) throw Error("a classify request before the shard is loaded");
        const uint64_t gen = session->gen;
        data_in += d.wire_bytes;
        ++requests;
        std::shared_ptr<Stage> stage = session->stage;
        auto in = std::make_shared<wire::Frame>(std::move(d.frame));
        ++compute_queued;
        post_compute([this, gen, in, stage] {
            busy_request = in->classify().request_id();
            busy = true;
            auto o = std::make_shared<Outcome>();
            o->last = true;
            o->positions = in->classify().rows();  // what `ferry status` counts as tokens
            const uint64_t t0 = net::now_ns();
            try {
                wire::Frame out;
                wire::Classified* r = out.mutable_classified();
                stage->classify(in->classify(), *r, &pool);
                o->compute_ns = net::now_ns() - t0;
                const ProcessMemory mem = memory();
                o->rss = mem.rss;
                r->set_compute_ns(o->compute_ns);
                r->set_rss(mem.rss);
                r->set_peak_rss(mem.peak_rss);
                o->encoded = net::encode_frame(out);
            } catch (const std::exception& e) {
                o->error = e.what();
            }
            busy = false;
            asio::post(io, [this, gen, o] {
                --compute_queued;
                deliver(gen, std::move(*o));
            });
        });
    }

    Outcome run_request(Stage& stage, const wire::Forward& fwd, uint64_t recv_ns, uint64_t bytes_in) {
        Outcome o;
        o.positions = fwd.n_tokens();
        o.last = stage.setup().last;
        wire::Frame out;
        bool send = false;
        const uint64_t t0 = net::now_ns();
        try {
            send = stage.run(fwd, out, &pool, progress);
        } catch (const std::exception& e) {
            o.error = e.what();
        }
        o.compute_ns = net::now_ns() - t0;
        o.weight_bytes = stage.forward_bytes();
        if (stage.has_layers()) o.weight_type = stage.weight_type();
        if (send) {
            const ProcessMemory mem = memory();
            o.rss = mem.rss;
            wire::StageTrace* t = out.has_forward() ? out.mutable_forward()->add_trace() : out.mutable_result()->add_trace();
            t->set_stage_index(stage.setup().stage_index);
            t->set_recv_ns(recv_ns);
            t->set_compute_ns(o.compute_ns);
            t->set_bytes_in(bytes_in);
            t->set_rss(mem.rss);
            t->set_peak_rss(mem.peak_rss);
            t->set_send_ns(net::now_ns());
            o.encoded = net::encode_frame(out);
        }
        return o;
    }

    // The start-up probe reads a matrix that may sit in a cache larger than
    // it (a modern L3 holds a 16 MB probe), which makes plans optimistic.
    // Decode steps actually served stream the shard from memory, so once
    // there are enough of them their rate replaces the probe's figure for
    // that weight type: what `ferry plan --workers` and the next run use.
    // Only shards of served_speed_min_bytes() or more count.
    void learn_speed(const Outcome& o) {
        if (o.positions != 1 || !o.error.empty() || o.weight_type.empty() || o.weight_bytes < learn_min_bytes) return;
        ServedSpeed& s = served[o.weight_type];
        s.bytes += o.weight_bytes;
        s.ns += o.compute_ns;
        if (++s.steps < kLearnSteps || s.ns == 0) return;
        const double gbps = static_cast<double>(s.bytes) / static_cast<double>(s.ns);  // bytes per ns = GB/s
        auto& types = *caps.mutable_type_gbps();
        if (s.steps == kLearnSteps)
            spdlog::info("{}: {} decode steps streamed {} weights at {:.2f} GB/s (start-up probe: {:.2f}); plans use the served rate from now on",
                         name, s.steps, o.weight_type, gbps, types.count(o.weight_type) ? types[o.weight_type] : 0.0);
        types[o.weight_type] = gbps;
        if (o.weight_type == "f32") caps.set_matvec_gbps(gbps);
    }

    void deliver(uint64_t gen, Outcome o) {
        tokens += static_cast<uint64_t>(o.positions);
        compute_ns += o.compute_ns;
        learn_speed(o);
        if (!session || session->gen != gen) return;
        session->peak_rss = std::max(session->peak_rss, o.rss);
        session->last_request_ns = net::now_ns();
        if (!o.error.empty()) return fail_session(o.error);
        if (o.encoded.empty()) return;
        data_out += o.encoded.size();
        if (o.last) session->control->send_encoded(std::move(o.encoded));
        else if (session->downstream) session->downstream->send_encoded(std::move(o.encoded));
        else  // the next stage's link just ended: its own dropped control connection should name it first
            report_link_loss("a request to forward but no data connection to the next stage " + session->next_address);
    }

    wire::Frame status_report() {
        wire::Frame f;
        wire::StatusReport* s = f.mutable_status_report();
        s->set_address(name);
        s->set_software_version(ferry_version());
        s->set_uptime_s((net::now_ns() - start_ns) / 1e9);
        *s->mutable_capabilities() = caps;
        s->mutable_capabilities()->set_ram_available(read_machine_memory().available);
        s->set_shard_loaded(loaded.valid);
        if (loaded.valid) {
            s->set_model_hash(loaded.hash);
            s->set_model_name(loaded.model_name);
            s->set_first_layer(loaded.spec.first_layer);
            s->set_last_layer(loaded.spec.last_layer);
            s->set_embedding(loaded.spec.embedding);
            s->set_head(loaded.spec.head);
            s->set_vocab_first(loaded.spec.vocab_first);
            s->set_vocab_last(loaded.spec.vocab_last);
            s->set_weight_bytes(loaded.weight_bytes);
        }
        s->set_coordinator_connected(session != nullptr);
        if (session) {
            s->set_coordinator(session->coordinator);
            s->set_coordinator_since_s((net::now_ns() - session->since_ns) / 1e9);
            s->set_next_stage(session->next_address);
            s->set_recoveries(session->assign.recovery());
        }
        const ProcessMemory mem = read_process_memory();
        s->set_rss(mem.rss);
        s->set_peak_rss(mem.peak_rss);
        s->set_tokens(tokens);
        s->set_requests(requests);
        s->set_compute_ms(compute_ns / 1e6);
        s->set_bytes_in(data_in);
        s->set_bytes_out(data_out);
        s->set_shard_bytes_received(shard_received);
        // Busy while it generates: computing now, or a request within the last two seconds.
        s->set_busy(busy || (session && net::now_ns() - session->last_request_ns < 2'000'000'000ull &&
                             session->last_request_ns > 0));
        if (session) s->set_session_peak_rss(std::max(session->peak_rss, mem.rss));
        return f;
    }

    // ---- stopping ----

    void begin_stop(const std::string& why) {
        if (draining) return;
        draining = true;
        if (beacon) beacon->leave();
        asio::error_code ec;
        acceptor.close(ec);
        accept_retry.cancel();
        if (stop_signals) stop_signals->cancel();
        // Let a request in flight finish (bounded), then close everything.
        auto timer = std::make_shared<asio::steady_timer>(io);
        auto deadline = net::now_ns() + 5'000'000'000ull;
        auto check = std::make_shared<std::function<void()>>();
        *check = [this, timer, deadline, check, why] {
            if (!busy || net::now_ns() > deadline) {
                if (session && session->control) {
                    session->control->send(net::make_error(name + " is shutting down (" + why + ")"));
                    session->control->close_after_send("shutting down");
                }
                finish_stop();
                *check = nullptr;
                return;
            }
            timer->expires_after(std::chrono::milliseconds(20));
            timer->async_wait([check](const asio::error_code&) {
                if (*check) (*check)();
            });
        };
        (*check)();
    }

    void finish_stop() {
        auto all = conns;
        for (const auto& c : all)
            if (session && c == session->control) continue;
            else c->close("worker shutting down");
        // Give queued frames (the Error to the coordinator) a moment, then stop.
        auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(200));
        timer->async_wait([this, timer](const asio::error_code&) { io.stop(); });
    }
};

Worker::Worker(const WorkerOptions& options) : impl_(std::make_unique<Impl>(options)) {}
Worker::~Worker() = default;

uint16_t Worker::port() const { return impl_->bound_port; }

void Worker::run() {
    impl_->start();
    impl_->io.run();
    spdlog::info("{}: stopped", impl_->name);
}

void Worker::stop() {
    asio::post(impl_->io, [this] { impl_->begin_stop("stop requested"); });
}

}  // namespace ferry::worker
