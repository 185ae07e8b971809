#include "common/net/connection.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <vector>

#include "common/net/handshake.h"
#include "common/shard_memory.h"

namespace ferry::net {

namespace {
constexpr auto kTick = std::chrono::milliseconds(100);
constexpr size_t kReadBytes = 64 << 10;
// What close_after_send gives a peer to take the last frames.
constexpr uint64_t kCloseAfterSendNs = 2'000'000'000ull;

// Reads land here and are decoded before the handler returns, so one buffer
// per thread serves every connection: an idle connection costs no buffer.
uint8_t* read_buffer() {
    thread_local std::vector<uint8_t> buffer(kReadBytes);
    return buffer.data();
}

// How long a peer may take for `bytes` of a frame on top of the silence timeout.
uint64_t transfer_ns(uint64_t bytes) { return bytes * 1'000'000'000ull / kMinLinkBytesPerSecond; }

// A refused handshake is one log line, at most one every 10 s (a port
// scanner or a misconfigured machine retrying must not flood the log).
void log_refused(const std::string& peer, const std::string& why) {
    static std::mutex mu;
    static uint64_t last_ns = 0, quiet = 0;
    std::lock_guard<std::mutex> lock(mu);
    const uint64_t now = now_ns();
    if (last_ns != 0 && now - last_ns < 10'000'000'000ull) {
        ++quiet;
        return;
    }
    if (quiet > 0) spdlog::warn("{}: {}; closing ({} more refused in the last 10 s)", peer, why, quiet);
    else spdlog::warn("{}: {}; closing", peer, why);
    last_ns = now;
    quiet = 0;
}

std::string seconds_text(uint64_t ns) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", ns / 1e9);
    return buf;
}

}  // namespace

void tune_socket(tcp::socket& socket) {
    asio::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    socket.set_option(asio::socket_base::keep_alive(true), ec);
}

std::string remote_address(const tcp::socket& socket) {
    asio::error_code ec;
    const tcp::endpoint ep = socket.remote_endpoint(ec);
    if (ec) return "unknown peer";
    const std::string host = ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
    return host + ":" + std::to_string(ep.port());
}

Connection::Connection(tcp::socket socket, std::string peer)
    : socket_(std::move(socket)), peer_(std::move(peer)), timer_(socket_.get_executor()) {
    last_frame_ns_ = last_write_ns_ = now_ns();
}

Connection::~Connection() {
    asio::error_code ec;
    socket_.close(ec);
}

void Connection::secure(const ClusterKey& key, SecureLink::Side side) {
    secure_ = std::make_unique<SecureLink>(key, side);
}

void Connection::start(FrameHandler on_frame, CloseHandler on_close) {
    on_frame_ = std::move(on_frame);
    on_close_ = std::move(on_close);
    if (secure_) enqueue(secure_->opening());
    // Reads are tried after the socket says it is readable; one that finds
    // nothing must return at once.
    asio::error_code ec;
    socket_.non_blocking(true, ec);
    read_more();
    arm_timer();
}

void Connection::set_silence_timeout(double seconds, std::string what) {
    silence_ns_ = static_cast<uint64_t>(seconds * 1e9);
    silence_what_ = std::move(what);
    last_frame_ns_ = now_ns();
}

void Connection::set_heartbeat(double seconds, HeartbeatFill fill) {
    heartbeat_ns_ = static_cast<uint64_t>(seconds * 1e9);
    heartbeat_fill_ = std::move(fill);
}

void Connection::read_more() {
    if (closed_ || close_when_sent_ || paused_) return;
    auto self = shared_from_this();
    socket_.async_wait(tcp::socket::wait_read, [this, self](const asio::error_code& ec) {
        if (closed_) return;
        if (ec) {
            close("connection lost: " + ec.message());
            return;
        }
        uint8_t* buf = read_buffer();
        asio::error_code rec;
        const size_t n = socket_.read_some(asio::buffer(buf, kReadBytes), rec);
        if (rec == asio::error::would_block || rec == asio::error::try_again) return read_more();
        if (rec) {
            close(rec == asio::error::eof ? "closed the connection" : "connection lost: " + rec.message());
            return;
        }
        bytes_in_ += n;
        if (take(buf, n)) read_more();
    });
}

// Decodes and handles the bytes one frame at a time, so that a read full of
// small requests queues at most one answer past the send limit. False once
// the connection closed or reading paused (the rest then waits in unread_).
bool Connection::take(const uint8_t* data, size_t n) {
    std::vector<FrameDecoder::Decoded> frames;
    while (n > 0) {
        size_t used = 0;
        frames.clear();
        const std::string problem =
            secure_ ? take_sealed(data, n, frames, &used) : decoder_.feed(data, n, frames, 1, &used);
        if (closed_ || close_when_sent_) return false;  // a failed key handshake
        if (!problem.empty()) {
            const std::string reason = decoder_.foreign_peer() ? problem : "sent " + problem;
            spdlog::warn("{}: {}; closing the connection", peer_, reason);
            send(make_error("malformed input: " + problem + "; closing the connection"));
            close_after_send(reason);
            return false;
        }
        data += used;
        n -= used;
        for (FrameDecoder::Decoded& d : frames) {
            last_frame_ns_ = now_ns();
            if (d.frame.has_ping()) {
                wire::Frame pong;
                pong.mutable_pong()->set_nonce(d.frame.ping().nonce());
                pong.mutable_pong()->set_payload(d.frame.ping().payload());
                pong.mutable_pong()->set_clock_ns(now_ns());
                send(pong);
            } else if (!d.frame.has_heartbeat()) {
                on_frame_(d);
            }
            if (closed_ || close_when_sent_) return false;
        }
        if (send_limit_ > 0 && queued_ > send_limit_) {
            paused_ = true;
            unread_.assign(reinterpret_cast<const char*>(data), n);
            return false;
        }
    }
    return true;
}

// One step of a keyed link: handshake bytes, or one sealed record opened and
// decoded as its one frame.
std::string Connection::take_sealed(const uint8_t* data, size_t n, std::vector<FrameDecoder::Decoded>& frames,
                                    size_t* used) {
    if (!secure_->established()) {
        const SecureLink::Step step = secure_->handshake(data, n);
        *used = step.used;
        if (!step.error.empty()) {
            handshake_failed(step);
            return "";
        }
        if (!step.send.empty()) enqueue(step.send);
        if (secure_->established()) {
            last_frame_ns_ = now_ns();
            for (std::string& f : held_) {
                queued_ -= f.size();
                enqueue(secure_->seal(f));
            }
            held_.clear();
        }
        return "";
    }
    record_bodies_.clear();
    if (std::string problem = records_.feed(data, n, record_bodies_, 1, used); !problem.empty()) return problem;
    for (std::string& body : record_bodies_) {
        if (std::string problem = secure_->open(body); !problem.empty()) return problem;
        size_t took = 0;
        const size_t before = frames.size();
        if (std::string problem = decoder_.feed(reinterpret_cast<const uint8_t*>(body.data()), body.size(), frames, 1, &took);
            !problem.empty())
            return problem;
        if (frames.size() != before + 1 || took != body.size()) return "a sealed record that is not one whole frame";
    }
    return "";
}

// The server answers a peer without a key in plain frames (all such a peer
// understands) and anyone else with nothing but the end of the connection.
void Connection::handshake_failed(const SecureLink::Step& step) {
    key_refused_ = true;
    const bool server = secure_->side() == SecureLink::Side::server;
    if (server) log_refused(peer_, step.error);
    if (server && step.plain_peer) {
        enqueue(encode_frame(make_error("wrong or missing cluster key: this peer needs the pool's key (give --key-file)")));
        close_after_send(step.error);
    } else {
        close(step.error);
    }
}

// The peer took enough of its queue: decode what was left, then read on.
void Connection::resume_reading() {
    if (!paused_ || closed_ || close_when_sent_ || queued_ > send_limit_) return;
    paused_ = false;
    // It could not send frames while we did not read: its silence starts now.
    last_frame_ns_ = now_ns();
    const std::string rest = std::move(unread_);
    unread_ = std::string();
    if (take(reinterpret_cast<const uint8_t*>(rest.data()), rest.size())) read_more();
}

void Connection::send(const wire::Frame& frame) { send_encoded(encode_frame(frame)); }

void Connection::send_encoded(std::string bytes) {
    if (closed_) return;
    if (secure_ && !secure_->established()) {
        queued_ += bytes.size();  // counts against the send limit like any queued frame
        held_.push_back(std::move(bytes));
        return;
    }
    enqueue(secure_ ? secure_->seal(bytes) : std::move(bytes));
}

void Connection::enqueue(std::string bytes) {
    if (closed_ || bytes.empty()) return;
    queued_ += bytes.size();
    queue_.push_back(std::move(bytes));
    if (!writing_) write_next();
}

void Connection::write_next() {
    if (closed_) return;
    if (queue_.empty()) {
        writing_ = false;
        if (close_when_sent_) close(close_reason_);
        return;
    }
    writing_ = true;
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(queue_.front()), [this, self](const asio::error_code& ec, size_t n) {
        if (closed_) return;
        if (ec) {
            close("connection lost while sending: " + ec.message());
            return;
        }
        bytes_out_ += n;
        last_write_ns_ = now_ns();
        queued_ -= queue_.front().size();
        queue_.pop_front();
        if (on_drained_) on_drained_();
        write_next();
        resume_reading();
    });
}

void Connection::close(const std::string& reason) {
    if (closed_) return;
    closed_ = true;
    // A peer that leaves or stalls mid-handshake (another key, a port scanner): one rate-limited line.
    if (secure_ && !secure_->established() && !key_refused_ && secure_->side() == SecureLink::Side::server) {
        key_refused_ = true;
        log_refused(peer_, "left during the cluster-key handshake (" + reason + "): wrong or missing cluster key, or not a ferry peer");
    }
    held_.clear();
    asio::error_code ec;
    timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    queue_.clear();
    queued_ = 0;
    unread_ = std::string();
    if (on_close_) {
        auto self = shared_from_this();  // the handler may drop the last owner
        CloseHandler handler = std::move(on_close_);
        handler(reason);
    }
    on_frame_ = nullptr;
    on_drained_ = nullptr;
    heartbeat_fill_ = nullptr;
}

void Connection::close_after_send(const std::string& reason) {
    if (closed_) return;
    close_when_sent_ = true;
    close_reason_ = reason;
    // A peer that does not read must not keep us: the queue gets two seconds.
    close_by_ns_ = now_ns() + kCloseAfterSendNs;
    if (!writing_) write_next();
}

void Connection::arm_timer() {
    if (closed_) return;
    auto self = shared_from_this();
    timer_.expires_after(kTick);
    timer_.async_wait([this, self](const asio::error_code& ec) {
        if (ec || closed_) return;
        tick();
        arm_timer();
    });
}

void Connection::tick() {
    const uint64_t now = now_ns();
    if (close_when_sent_) {
        if (now > close_by_ns_) close(close_reason_ + " (then it did not read)");
        return;
    }
    if (silence_ns_ > 0 && paused_) {
        // We are not reading, so only its reading proves it alive: the frame at the head of the queue must go.
        const uint64_t allowed = silence_ns_ + transfer_ns(queue_.empty() ? 0 : queue_.front().size());
        if (now - last_write_ns_ > allowed) {
            close("stopped reading: " + format_bytes(queued_) + " queued for it, none taken for " +
                  seconds_text(now - last_write_ns_));
            return;
        }
    } else if (silence_ns_ > 0 && now - last_frame_ns_ > silence_ns_ + transfer_ns(announced())) {
        std::string why = silence_what_ + " for " + seconds_text(now - last_frame_ns_);
        if (announced() > 0)
            why += " (a frame of " + std::to_string(announced()) + " bytes begun, " +
                   std::to_string(pending() - kFrameHeaderBytes) + " of them arrived)";
        close(why);
        return;
    }
    if (heartbeat_ns_ > 0 && now - last_write_ns_ > heartbeat_ns_ && queue_.empty() && (!secure_ || secure_->established())) {
        wire::Frame f;
        f.mutable_heartbeat()->set_sent_ns(now);
        if (heartbeat_fill_) heartbeat_fill_(*f.mutable_heartbeat());
        send(f);
        last_write_ns_ = now;
    }
}

void async_connect(asio::io_context& io, const std::string& address, double timeout_s,
                   std::function<void(const std::string& error, tcp::socket socket)> done) {
    std::pair<std::string, uint16_t> hp;
    try {
        hp = split_address(address, "address");
    } catch (const std::exception& e) {
        asio::post(io, [&io, done, msg = std::string(e.what())] { done(msg, tcp::socket(io)); });
        return;
    }
    struct State {
        tcp::resolver resolver;
        tcp::socket socket;
        asio::steady_timer timer;
        bool finished = false;
        std::function<void(const std::string&, tcp::socket)> done;
        State(asio::io_context& io) : resolver(io), socket(io), timer(io) {}
        void finish(const std::string& error) {
            if (finished) return;
            finished = true;
            timer.cancel();
            resolver.cancel();
            if (!error.empty()) {
                asio::error_code ec;
                socket.close(ec);
            } else {
                tune_socket(socket);
            }
            done(error, std::move(socket));
        }
    };
    auto st = std::make_shared<State>(io);
    st->done = std::move(done);
    st->timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    st->timer.async_wait([st, timeout_s](const asio::error_code& ec) {
        if (ec) return;
        char buf[64];
        std::snprintf(buf, sizeof buf, "no answer within %.1f s (connect timeout)", timeout_s);
        st->finish(buf);
    });
    st->resolver.async_resolve(hp.first, std::to_string(hp.second),
                               [st](const asio::error_code& ec, tcp::resolver::results_type results) {
                                   if (st->finished) return;
                                   if (ec) {
                                       st->finish("cannot resolve the host: " + ec.message());
                                       return;
                                   }
                                   asio::async_connect(st->socket, results,
                                                       [st](const asio::error_code& ec2, const tcp::endpoint&) {
                                                           if (st->finished) return;
                                                           st->finish(ec2 ? "cannot connect: " + ec2.message() : "");
                                                       });
                               });
}

}  // namespace ferry::net
