// One TCP connection speaking frames, driven by an asio io_context on one
// thread: reads are decoded as they arrive (FrameDecoder), writes are queued
// and sent in order, pings are answered and heartbeats swallowed here. A
// timer closes a link that has been silent too long and sends a heartbeat on
// one that has been quiet, so a dead or stalled peer is noticed within the
// timeout and an idle healthy link is never mistaken for one.
//
// Every method runs on the io thread (post to it from elsewhere).
#pragma once
#include <asio.hpp>
#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/net/frame.h"

namespace ferry::net {

using asio::ip::tcp;

class Connection : public std::enable_shared_from_this<Connection> {
public:
    using FrameHandler = std::function<void(FrameDecoder::Decoded& frame)>;
    // Called once, with why the connection ended ("closed the connection", ...).
    using CloseHandler = std::function<void(const std::string& reason)>;
    using HeartbeatFill = std::function<void(wire::Heartbeat& beat)>;

    Connection(tcp::socket socket, std::string peer);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    const std::string& peer() const { return peer_; }
    void start(FrameHandler on_frame, CloseHandler on_close);
    void send(const wire::Frame& frame);
    void send_encoded(std::string bytes);
    // Closes now; on_close gets `reason`.
    void close(const std::string& reason);
    // Sends what is queued (an Error, usually), then closes.
    void close_after_send(const std::string& reason);
    bool closed() const { return closed_; }

    void set_frame_limit(uint32_t limit) { decoder_.set_limit(limit); }
    // Closes with "<what> for N s" after that long without a byte; 0 = never.
    void set_silence_timeout(double seconds, std::string what = "silent");
    // After `seconds` without sending, sends a Heartbeat (filled by `fill`).
    void set_heartbeat(double seconds, HeartbeatFill fill = {});
    // Called after each completed write (flow control of shard streaming).
    void set_on_drained(std::function<void()> fn) { on_drained_ = std::move(fn); }

    uint64_t bytes_in() const { return bytes_in_; }
    uint64_t bytes_out() const { return bytes_out_; }
    size_t queued_bytes() const { return queued_; }

private:
    void read_more();
    void write_next();
    void tick();
    void arm_timer();

    tcp::socket socket_;
    std::string peer_;
    FrameDecoder decoder_;
    FrameHandler on_frame_;
    CloseHandler on_close_;
    HeartbeatFill heartbeat_fill_;
    std::function<void()> on_drained_;
    std::array<uint8_t, 65536> read_buf_{};
    std::deque<std::string> queue_;
    bool writing_ = false;
    bool closed_ = false;
    bool close_when_sent_ = false;
    std::string close_reason_;
    std::atomic<size_t> queued_{0};
    std::atomic<uint64_t> bytes_in_{0}, bytes_out_{0};
    asio::steady_timer timer_;
    uint64_t last_read_ns_ = 0, last_write_ns_ = 0;
    uint64_t silence_ns_ = 0, heartbeat_ns_ = 0;
    std::string silence_what_;
    bool timer_armed_ = false;
};

// Resolves and connects "HOST:PORT" within timeout_s; done(error, socket) runs
// on the io thread with error "" on success (TCP_NODELAY set).
void async_connect(asio::io_context& io, const std::string& address, double timeout_s,
                   std::function<void(const std::string& error, tcp::socket socket)> done);

// TCP_NODELAY and keepalive on an accepted or connected socket.
void tune_socket(tcp::socket& socket);
// "127.0.0.1:40312" of the remote end, or "unknown peer".
std::string remote_address(const tcp::socket& socket);

}  // namespace ferry::net
