#include "common/net/hub.h"

#include "common/net/handshake.h"

namespace ferry::net {

namespace {
constexpr auto kKeeperPeriod = std::chrono::milliseconds(50);
}

Hub::Hub(std::optional<ClusterKey> key) : key_(std::move(key)), work_(asio::make_work_guard(io_)), keeper_([this] { keep(); }) {}

Hub::~Hub() {
    {
        std::lock_guard<std::mutex> lock(keeper_mu_);
        stopping_ = true;
    }
    keeper_cv_.notify_all();
    keeper_.join();
    std::lock_guard<std::mutex> lock(drive_mu_);
    for (auto& c : links_)
        if (c) c->close("coordinator finished");
    io_.poll();  // the close handlers
    work_.reset();
    io_.stop();
    links_.clear();
}

void Hub::keep() {
    std::unique_lock<std::mutex> lock(keeper_mu_);
    while (!stopping_) {
        keeper_cv_.wait_for(lock, kKeeperPeriod, [this] { return stopping_; });
        if (stopping_) return;
        // Someone waiting drives the sockets already.
        std::unique_lock<std::mutex> drive(drive_mu_, std::try_to_lock);
        if (drive.owns_lock()) io_.poll();
    }
}

void Hub::push(Event e) {
    e.at_ns = e.at_ns ? e.at_ns : now_ns();
    events_.push_back(std::move(e));
}

int Hub::connect(const std::string& address, double timeout_s) {
    std::lock_guard<std::mutex> lock(drive_mu_);
    const int link = static_cast<int>(addresses_.size());
    addresses_.push_back(address);
    links_.emplace_back();
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
        links_[static_cast<size_t>(link)] = c;
        if (key_) c->secure(*key_, SecureLink::Side::client);
        c->set_on_drained([this] { drained_ = true; });
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
    return link;
}

std::shared_ptr<Connection> Hub::conn(int link) const {
    if (link < 0 || static_cast<size_t>(link) >= links_.size()) return nullptr;
    return links_[static_cast<size_t>(link)];
}

void Hub::send(int link, const wire::Frame& frame) { send_encoded(link, encode_frame(frame)); }

void Hub::send_encoded(int link, std::string bytes) {
    std::lock_guard<std::mutex> lock(drive_mu_);
    if (auto c = conn(link)) c->send_encoded(std::move(bytes));
}

void Hub::close(int link) {
    std::lock_guard<std::mutex> lock(drive_mu_);
    if (auto c = conn(link)) c->close("closed by this node");
}

void Hub::configure(int link, uint32_t frame_limit, double silence_s, double heartbeat_s) {
    std::lock_guard<std::mutex> lock(drive_mu_);
    auto c = conn(link);
    if (!c) return;
    c->set_frame_limit(frame_limit);
    c->set_silence_timeout(silence_s, "silent (no frame, no heartbeat)");
    c->set_heartbeat(heartbeat_s);
}

size_t Hub::queued_bytes(int link) const {
    std::lock_guard<std::mutex> lock(drive_mu_);
    auto c = conn(link);
    return c ? c->queued_bytes() : 0;
}
uint64_t Hub::bytes_in(int link) const {
    std::lock_guard<std::mutex> lock(drive_mu_);
    auto c = conn(link);
    return c ? c->bytes_in() : 0;
}
uint64_t Hub::bytes_out(int link) const {
    std::lock_guard<std::mutex> lock(drive_mu_);
    auto c = conn(link);
    return c ? c->bytes_out() : 0;
}

std::optional<Hub::Event> Hub::wait(Clock::time_point deadline, bool wake_on_drain) {
    std::lock_guard<std::mutex> lock(drive_mu_);
    for (;;) {
        if (!events_.empty()) {
            Event e = std::move(events_.front());
            events_.pop_front();
            return e;
        }
        if (wake_on_drain && drained_) {
            drained_ = false;
            return std::nullopt;
        }
        if (Clock::now() >= deadline) return std::nullopt;
        // One handler (a read, a write completion, a timer), then look again.
        io_.run_one_until(deadline);
    }
}

}  // namespace ferry::net
