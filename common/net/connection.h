// One TCP connection speaking frames, driven by an asio io_context on one
// thread: reads are decoded as they arrive (FrameDecoder), writes are queued
// and sent in order, pings are answered and heartbeats swallowed here. A
// timer closes a link that has been silent too long and sends a heartbeat on
// one that has been quiet, so a dead or stalled peer is noticed within the
// timeout and an idle healthy link is never mistaken for one.
//
// What a peer can make a connection hold is bounded: no read buffer of its
// own (reads land in one buffer per thread and are decoded at once), a frame
// body only as large as the bytes that arrived, and with a send limit no more
// than that limit plus one answer queued for a peer that does not read.
// Silence is measured in whole frames: a byte now and then of a frame that
// never ends does not keep a link alive.
//
// Every method runs on the io thread (post to it from elsewhere).
#pragma once
#include <asio.hpp>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/net/frame.h"
#include "common/net/secure_link.h"

namespace ferry::net {

using asio::ip::tcp;

// The slowest a frame may arrive at (1 Mbit/s, a tenth of the slowest
// Ethernet) before its connection counts as silent.
constexpr uint64_t kMinLinkBytesPerSecond = 125'000;

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
    // Before start(): the link proves the cluster key both ways, then seals
    // every frame (secure_link.h). Frames sent before the handshake ends wait
    // for it; none is received before it.
    void secure(const ClusterKey& key, SecureLink::Side side);
    void start(FrameHandler on_frame, CloseHandler on_close);
    void send(const wire::Frame& frame);
    void send_encoded(std::string bytes);
    // Closes now; on_close gets `reason`.
    void close(const std::string& reason);
    // Sends what is queued (an Error, usually), then closes.
    void close_after_send(const std::string& reason);
    bool closed() const { return closed_; }
    // The peer failed the cluster-key handshake (already logged, rate-limited).
    bool key_refused() const { return key_refused_; }

    void set_frame_limit(uint32_t limit) {
        decoder_.set_limit(limit);
        records_.set_limit(SecureLink::record_limit(decoder_.limit()));
    }
    // Closes with "<what> for N s" after that long without a whole frame
    // (heartbeats count); 0 = never. A frame being received gets its size
    // at kMinLinkBytesPerSecond on top, so a big frame on a slow link is not
    // cut, and a frame that never ends is.
    void set_silence_timeout(double seconds, std::string what = "silent");
    // Backpressure: while more than `bytes` are queued for the peer, nothing
    // more is read from it (its frames wait in the kernel, then in its own
    // send buffer), so a peer that sends requests and does not read the
    // answers cannot grow our queue. Such a peer is closed once its queue has
    // not moved for the silence timeout. 0 = no limit.
    void set_send_limit(size_t bytes) { send_limit_ = bytes; }
    // After `seconds` without sending, sends a Heartbeat (filled by `fill`).
    void set_heartbeat(double seconds, HeartbeatFill fill = {});
    // Called after each completed write (flow control of shard streaming).
    void set_on_drained(std::function<void()> fn) { on_drained_ = std::move(fn); }

    uint64_t bytes_in() const { return bytes_in_; }
    uint64_t bytes_out() const { return bytes_out_; }
    size_t queued_bytes() const { return queued_; }

private:
    void read_more();
    bool take(const uint8_t* data, size_t n);
    std::string take_sealed(const uint8_t* data, size_t n, std::vector<FrameDecoder::Decoded>& frames, size_t* used);
    void handshake_failed(const SecureLink::Step& step);
    void enqueue(std::string bytes);
    uint32_t announced() const { return secure_ ? records_.announced() : decoder_.announced(); }
    size_t pending() const { return secure_ ? records_.pending() : decoder_.pending(); }
    void resume_reading();
    void write_next();
    void tick();
    void arm_timer();

    tcp::socket socket_;
    std::string peer_;
    FrameDecoder decoder_;
    std::unique_ptr<SecureLink> secure_;
    PrefixedReader records_{SecureLink::record_limit(kHandshakeFrameBytes)};
    std::vector<std::string> record_bodies_;
    std::vector<std::string> held_;  // frames sent before the key handshake ended
    FrameHandler on_frame_;
    CloseHandler on_close_;
    HeartbeatFill heartbeat_fill_;
    std::function<void()> on_drained_;
    std::string unread_;  // bytes read but not decoded while reading is paused
    std::deque<std::string> queue_;
    bool writing_ = false;
    bool closed_ = false;
    bool close_when_sent_ = false;
    bool key_refused_ = false;
    bool paused_ = false;  // over the send limit: not reading
    size_t send_limit_ = 0;
    std::string close_reason_;
    std::atomic<size_t> queued_{0};
    std::atomic<uint64_t> bytes_in_{0}, bytes_out_{0};
    asio::steady_timer timer_;
    uint64_t last_frame_ns_ = 0, last_write_ns_ = 0, close_by_ns_ = 0;
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
