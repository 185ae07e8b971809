// The client side of the protocol: a set of connections driven by one
// background io thread, whose frames and failures reach the calling thread as
// events, in order. The coordinator's pipeline engine, `ferry status` and the
// protocol tests use it; the caller stays plain sequential code.
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
        uint64_t at_ns = 0;  // when the io thread saw it
    };
    using Clock = std::chrono::steady_clock;

    Hub();
    ~Hub();
    Hub(const Hub&) = delete;
    Hub& operator=(const Hub&) = delete;

    // Starts connecting; a `connected` or `connect_failed` event follows.
    int connect(const std::string& address, double timeout_s);
    const std::string& address(int link) const { return addresses_.at(static_cast<size_t>(link)); }

    // Thread-safe; frames to a closed or unconnected link are dropped.
    void send(int link, const wire::Frame& frame);
    void send_encoded(int link, std::string bytes);
    void close(int link);
    // Frame limit, silence timeout and heartbeat interval of a connected link.
    void configure(int link, uint32_t frame_limit, double silence_s, double heartbeat_s);

    size_t queued_bytes(int link) const;
    uint64_t bytes_in(int link) const;
    uint64_t bytes_out(int link) const;

    // The next event, or nullopt at the deadline (or, with wake_on_drain,
    // earlier when a link finished a write).
    std::optional<Event> wait(Clock::time_point deadline, bool wake_on_drain = false);

private:
    std::shared_ptr<Connection> conn(int link) const;
    void push(Event e);

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::thread thread_;
    std::vector<std::string> addresses_;
    mutable std::mutex links_mu_;
    std::vector<std::shared_ptr<Connection>> links_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> events_;
    bool drained_ = false;
};

}  // namespace ferry::net
