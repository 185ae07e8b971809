#include "common/net/discovery.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/error.h"

namespace ferry::net {

namespace {
constexpr char kBeaconMagic[4] = {'F', 'R', 'Y', 'B'};
constexpr size_t kMacBytes = 32;
constexpr auto kBeaconEvery = std::chrono::seconds(1);

std::string signed_part(std::string_view length_and_body) { return "ferry beacon" + std::string(length_and_body); }
}  // namespace

std::string seal_beacon(const wire::Beacon& beacon, const ClusterKey& key) {
    const std::string body = beacon.SerializeAsString();
    const uint32_t n = static_cast<uint32_t>(body.size());
    std::string out(kBeaconMagic, 4);
    out.append(reinterpret_cast<const char*>(&n), 4);
    out += body;
    const auto mac = key_mac(key, signed_part(std::string_view(out).substr(4)));
    out.append(reinterpret_cast<const char*>(mac.data()), mac.size());
    if (out.size() > kMaxBeaconBytes) throw Error("a beacon of " + std::to_string(out.size()) + " bytes does not fit one datagram");
    return out;
}

std::optional<wire::Beacon> open_beacon(const uint8_t* data, size_t n, const ClusterKey& key, std::string* why) {
    auto no = [&](const char* reason) -> std::optional<wire::Beacon> {
        if (why) *why = reason;
        return std::nullopt;
    };
    if (n < 8 + kMacBytes || n > kMaxBeaconBytes) return no("not a beacon (size)");
    if (std::memcmp(data, kBeaconMagic, 4) != 0) return no("not a beacon (magic)");
    uint32_t body = 0;
    std::memcpy(&body, data + 4, 4);
    if (body != n - 8 - kMacBytes) return no("not a beacon (length)");
    const std::string_view signed_bytes(reinterpret_cast<const char*>(data + 4), 4 + body);
    if (!key_mac_ok(key, signed_part(signed_bytes), data + 8 + body)) return no("signed with another cluster key");
    wire::Beacon b;
    if (!b.ParseFromArray(data + 8, static_cast<int>(body)) || b.port() == 0 || b.port() > 65535)
        return no("a signed beacon that does not parse");
    return b;
}

std::vector<asio::ip::address_v4> multicast_interfaces() {
    std::vector<asio::ip::address_v4> out;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        if (!(i->ifa_flags & IFF_UP) || !(i->ifa_flags & IFF_MULTICAST) || (i->ifa_flags & IFF_LOOPBACK)) continue;
        uint32_t a = 0;
        std::memcpy(&a, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
        const asio::ip::address_v4 addr(ntohl(a));
        if (std::find(out.begin(), out.end(), addr) == out.end()) out.push_back(addr);
    }
    freeifaddrs(list);
    return out;
}

BeaconSender::BeaconSender(asio::io_context& io, const ClusterKey& key, const std::string& listen_host, Fill fill)
    : key_(key), listen_host_(listen_host), fill_(std::move(fill)), io_(io), timer_(io) {
    asio::post(io, [this] { send_all(false); });
    arm();
}

BeaconSender::~BeaconSender() {
    stopped_ = true;
    timer_.cancel();
}

void BeaconSender::leave() {
    if (stopped_) return;
    send_all(true);
    stopped_ = true;
    timer_.cancel();
}

void BeaconSender::arm() {
    if (stopped_) return;
    timer_.expires_after(kBeaconEvery);
    timer_.async_wait([this](const asio::error_code& ec) {
        if (ec || stopped_) return;
        send_all(false);
        arm();
    });
}

void BeaconSender::send_all(bool leaving) {
    if (stopped_) return;
    wire::Beacon b;
    fill_(b);
    b.set_leaving(leaving);
    std::string datagram;
    try {
        datagram = seal_beacon(b, key_);
    } catch (const Error& e) {
        if (!warned_) spdlog::warn("discovery: {}", e.what());
        warned_ = true;
        return;
    }
    const asio::ip::udp::endpoint group(asio::ip::make_address_v4(kDiscoveryGroup), kDiscoveryPort);
    asio::error_code ec;
    const auto specific = asio::ip::make_address_v4(listen_host_, ec);
    const bool any = ec || specific.is_unspecified();
    size_t sent = 0;
    std::string last_error;
    for (const asio::ip::address_v4& itf : multicast_interfaces()) {
        if (!any && itf != specific) continue;
        // A socket bound to the interface's address sends a multicast
        // datagram out of that interface (Linux picks the device that owns
        // the source address when no route and no IP_MULTICAST_IF say
        // otherwise), with the defaults we want: TTL 1, looped back to
        // listeners on this machine. No socket option is needed, which
        // qemu-user (the i686 worker's tests) does not all translate.
        asio::ip::udp::socket s(io_);
        s.open(asio::ip::udp::v4(), ec);
        if (!ec) s.bind(asio::ip::udp::endpoint(itf, 0), ec);
        if (!ec) s.send_to(asio::buffer(datagram), group, 0, ec);
        if (ec) last_error = itf.to_string() + ": " + ec.message();
        else ++sent;
    }
    if (sent == 0 && !warned_) {
        spdlog::warn("discovery: no interface to announce this worker on ({}); coordinators must name it with --workers",
                     last_error.empty() ? "none is up with multicast" : last_error);
        warned_ = true;
    } else if (sent > 0 && warned_) {
        spdlog::info("discovery: announcing this worker again");
        warned_ = false;
    }
}

std::vector<DiscoveredWorker> discover_workers(const ClusterKey& key, double wait_s, size_t* foreign) {
    asio::io_context io;
    asio::ip::udp::socket socket(io);
    asio::error_code ec;
    socket.open(asio::ip::udp::v4(), ec);
    if (!ec) socket.set_option(asio::socket_base::reuse_address(true), ec);  // several coordinators on one machine
    if (!ec) socket.bind(asio::ip::udp::endpoint(asio::ip::address_v4::any(), kDiscoveryPort), ec);
    if (ec) throw Error("discovery: cannot listen on UDP port " + std::to_string(kDiscoveryPort) + ": " + ec.message() +
                        " (name the workers with --workers)");
    const auto group = asio::ip::make_address_v4(kDiscoveryGroup);
    size_t joined = 0;
    for (const asio::ip::address_v4& itf : multicast_interfaces()) {
        socket.set_option(asio::ip::multicast::join_group(group, itf), ec);
        if (!ec) ++joined;
    }
    if (joined == 0) spdlog::warn("discovery: no interface is up with multicast; no worker can be found");
    std::map<std::string, DiscoveredWorker> by_name;
    std::array<uint8_t, kMaxBeaconBytes + 1> buf{};
    asio::ip::udp::endpoint from;
    size_t others = 0;
    std::function<void()> receive = [&] {
        socket.async_receive_from(asio::buffer(buf), from, [&](const asio::error_code& e, size_t n) {
            if (e) return;
            std::string why;
            if (const auto b = open_beacon(buf.data(), n, key, &why)) {
                const std::string address = from.address().to_string() + ":" + std::to_string(b->port());
                if (b->leaving()) by_name.erase(b->name());
                else by_name.try_emplace(b->name(), DiscoveredWorker{address, *b});
            } else if (why == "signed with another cluster key") {
                ++others;
            }
            receive();
        });
    };
    receive();
    io.run_for(std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000)));
    if (foreign) *foreign = others;
    std::vector<DiscoveredWorker> out;
    for (auto& [name, w] : by_name) out.push_back(std::move(w));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.address < b.address; });
    return out;
}

int fuzz_beacon(const uint8_t* data, size_t size) {
    // Odd first byte: the rest signed as a beacon body, so the parser behind
    // the signature is reached too; even: the rest as a datagram.
    ClusterKey key;
    key.bytes.fill(7);
    if (size == 0) return 0;
    if (!(data[0] & 1)) {
        (void)open_beacon(data + 1, size - 1, key);
        return 0;
    }
    const uint32_t n = static_cast<uint32_t>(size - 1);
    std::string d(kBeaconMagic, 4);
    d.append(reinterpret_cast<const char*>(&n), 4);
    d.append(reinterpret_cast<const char*>(data + 1), size - 1);
    const auto mac = key_mac(key, signed_part(std::string_view(d).substr(4)));
    d.append(reinterpret_cast<const char*>(mac.data()), mac.size());
    (void)open_beacon(reinterpret_cast<const uint8_t*>(d.data()), d.size(), key);
    return 0;
}

}  // namespace ferry::net
