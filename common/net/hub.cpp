#include "common/net/hub.h"

#include "common/net/handshake.h"

namespace ferry::net {

Hub::Hub() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}

Hub::~Hub() {
    asio::post(io_, [this] {
        std::lock_guard<std::mutex> lock(links_mu_);
        for (auto& c : links_)
            if (c) c->close("coordinator finished");
    });
    work_.reset();
    io_.stop();
    thread_.join();
    std::lock_guard<std::mutex> lock(links_mu_);
    links_.clear();
}

void Hub::push(Event e) {
    e.at_ns = e.at_ns ? e.at_ns : now_ns();
    {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(std::move(e));
    }
    cv_.notify_all();
}

int Hub::connect(const std::string& address, double timeout_s) {
    const int link = static_cast<int>(addresses_.size());
    addresses_.push_back(address);
    {
        std::lock_guard<std::mutex> lock(links_mu_);
        links_.emplace_back();
    }
    asio::post(io_, [this, link, address, timeout_s] {
        async_connect(io_, address, timeout_s, [this, link, address](const std::string& error, tcp::socket socket) {
            if (!error.empty()) {
                Event e;
                e.kind = Event::connect_failed;
                e.link = link;
                e.reason = error;
                push(std::move(e));
                return;
            }
            auto c = std::make_shared<Connection>(std::move(socket), address);
            {
                std::lock_guard<std::mutex> lock(links_mu_);
                links_[static_cast<size_t>(link)] = c;
            }
            c->set_on_drained([this] {
                {
                    std::lock_guard<std::mutex> lock(mu_);
                    drained_ = true;
                }
                cv_.notify_all();
            });
            c->start(
                [this, link](FrameDecoder::Decoded& d) {
                    Event e;
                    e.kind = Event::received;
                    e.link = link;
                    e.frame = std::move(d);
                    push(std::move(e));
                },
                [this, link](const std::string& reason) {
                    Event e;
                    e.kind = Event::closed;
                    e.link = link;
                    e.reason = reason;
                    push(std::move(e));
                });
            Event e;
            e.kind = Event::connected;
            e.link = link;
            push(std::move(e));
        });
    });
    return link;
}

std::shared_ptr<Connection> Hub::conn(int link) const {
    std::lock_guard<std::mutex> lock(links_mu_);
    if (link < 0 || static_cast<size_t>(link) >= links_.size()) return nullptr;
    return links_[static_cast<size_t>(link)];
}

void Hub::send(int link, const wire::Frame& frame) { send_encoded(link, encode_frame(frame)); }

void Hub::send_encoded(int link, std::string bytes) {
    auto c = conn(link);
    if (!c) return;
    asio::post(io_, [c, b = std::move(bytes)]() mutable { c->send_encoded(std::move(b)); });
}

void Hub::close(int link) {
    auto c = conn(link);
    if (!c) return;
    asio::post(io_, [c] { c->close("closed by this node"); });
}

void Hub::configure(int link, uint32_t frame_limit, double silence_s, double heartbeat_s) {
    auto c = conn(link);
    if (!c) return;
    asio::post(io_, [c, frame_limit, silence_s, heartbeat_s] {
        c->set_frame_limit(frame_limit);
        c->set_silence_timeout(silence_s, "silent (no frame, no heartbeat)");
        c->set_heartbeat(heartbeat_s);
    });
}

size_t Hub::queued_bytes(int link) const {
    auto c = conn(link);
    return c ? c->queued_bytes() : 0;
}
uint64_t Hub::bytes_in(int link) const {
    auto c = conn(link);
    return c ? c->bytes_in() : 0;
}
uint64_t Hub::bytes_out(int link) const {
    auto c = conn(link);
    return c ? c->bytes_out() : 0;
}

std::optional<Hub::Event> Hub::wait(Clock::time_point deadline, bool wake_on_drain) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, deadline, [&] { return !events_.empty() || (wake_on_drain && drained_); });
    drained_ = false;
    if (events_.empty()) return std::nullopt;
    Event e = std::move(events_.front());
    events_.pop_front();
    return e;
}

}  // namespace ferry::net
