// The client side of the protocol: a set of connections whose frames and
// failures reach the caller as events, in order, so the caller stays plain
// sequential code. The coordinator's pipeline engine, `ferry status`, the
// worker probe and the protocol tests use it.
//
// The sockets are driven by whoever waits: wait() runs the io_context on the
// calling thread until an event is there, and send() writes on the calling
// thread at once. So a request and its answer cost no thread handoff on the
// coordinator (the latency of each decoded token). Between waits (a user
// typing a chat turn, the coordinator computing logits) a keeper thread polls
// every 50 ms, so heartbeats go out and come in and a dead link is noticed
// even when nobody waits. One mutex decides who drives; handlers run only
// under it.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/net/connection.h"

namespace ferry::net {

class Hub {
public:
    struct Event {
        enum Kind { connected, connect_failed, received, closed } kind = received;
        int link = -1;
        FrameDecoder::Decoded frame;
        std::string reason;  // connect_failed, closed
        uint64_t at_ns = 0;  // when it was read from the socket
    };
    using Clock = std::chrono::steady_clock;

    // With a key every link proves it and is sealed (secure_link.h); without, plain frames.
    explicit Hub(std::optional<ClusterKey> key = std::nullopt);
    ~Hub();
    Hub(const Hub&) = delete;
    Hub& operator=(const Hub&) = delete;

    // Starts connecting; a `connected` or `connect_failed` event follows.
    int connect(const std::string& address, double timeout_s);
    const std::string& address(int link) const { return addresses_.at(static_cast<size_t>(link)); }

    // Thread-safe; frames to a closed or unconnected link are dropped. The
    // bytes go to the kernel before send returns unless earlier ones are queued.
    void send(int link, const wire::Frame& frame);
    void send_encoded(int link, std::string bytes);
    void close(int link);
    // Frame limit, silence timeout and heartbeat interval of a connected link.
    void configure(int link, uint32_t frame_limit, double silence_s, double heartbeat_s);

    size_t queued_bytes(int link) const;
    uint64_t bytes_in(int link) const;
    uint64_t bytes_out(int link) const;

    // The next event, or nullopt at the deadline (or, with wake_on_drain,
    // earlier when a link finished a write). Drives the sockets meanwhile.
    std::optional<Event> wait(Clock::time_point deadline, bool wake_on_drain = false);

private:
    std::shared_ptr<Connection> conn(int link) const;
    void push(Event e);
    void keep();

    std::optional<ClusterKey> key_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::vector<std::string> addresses_;
    // Who drives the io_context: a caller in wait() or send(), or the keeper.
    // Everything below is touched only by its holder.
    mutable std::mutex drive_mu_;
    std::vector<std::shared_ptr<Connection>> links_;
    std::deque<Event> events_;
    bool drained_ = false;
    // The keeper thread.
    std::mutex keeper_mu_;
    std::condition_variable keeper_cv_;
    bool stopping_ = false;
    std::thread keeper_;
};

}  // namespace ferry::net
