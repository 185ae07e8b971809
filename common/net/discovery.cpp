#include "common/net/discovery.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/error.h"
#include "common/platform/system.h"

namespace ferry::net {

namespace {
constexpr char kBeaconMagic[4] = {'F', 'R', 'Y', 'B'};
constexpr size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, kTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr auto kBeaconEvery = std::chrono::seconds(1);

// Beacons have their own key, so that no beacon can ever be taken for a link's record.
std::array<uint8_t, 32> beacon_key(const ClusterKey& key) {
    std::array<uint8_t, 32> k{};
    static const char label[] = "ferry beacon key";
    crypto_generichash(k.data(), k.size(), reinterpret_cast<const unsigned char*>(label), sizeof label - 1,
                       key.bytes.data(), key.bytes.size());
    return k;
}

std::string seal_bytes(const std::string& body, const ClusterKey& key) {
    init_crypto();
    std::string out(4 + kNonce + body.size() + kTag, '\0');
    std::memcpy(out.data(), kBeaconMagic, 4);
    auto* nonce = reinterpret_cast<unsigned char*>(out.data() + 4);
    randombytes_buf(nonce, kNonce);
    std::array<uint8_t, 32> k = beacon_key(key);
    unsigned long long written = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + kNonce, &written, reinterpret_cast<const unsigned char*>(body.data()),
                                               body.size(), reinterpret_cast<const unsigned char*>(kBeaconMagic), 4,
                                               nullptr, nonce, k.data());
    sodium_memzero(k.data(), k.size());
    return out;
}
}  // namespace

std::string seal_beacon(const wire::Beacon& beacon, const ClusterKey& key) {
    std::string out = seal_bytes(beacon.SerializeAsString(), key);
    if (out.size() > kMaxBeaconBytes) throw Error("a beacon of " + std::to_string(out.size()) + " bytes does not fit one datagram");
    return out;
}

std::optional<wire::Beacon> open_beacon(const uint8_t* data, size_t n, const ClusterKey& key, std::string* why) {
    auto no = [&](const char* reason) -> std::optional<wire::Beacon> {
        if (why) *why = reason;
        return std::nullopt;
    };
    if (n < 4 + kNonce + kTag || n > kMaxBeaconBytes) return no("not a beacon (size)");
    if (std::memcmp(data, kBeaconMagic, 4) != 0) return no("not a beacon (magic)");
    init_crypto();
    std::array<uint8_t, kMaxBeaconBytes> plain;
    unsigned long long length = 0;
    std::array<uint8_t, 32> k = beacon_key(key);
    const int bad = crypto_aead_xchacha20poly1305_ietf_decrypt(plain.data(), &length, nullptr, data + 4 + kNonce,
                                                               n - 4 - kNonce, data, 4, data + 4, k.data());
    sodium_memzero(k.data(), k.size());
    if (bad) return no("sealed with another cluster key");
    wire::Beacon b;
    asio::error_code ec;
    if (!b.ParseFromArray(plain.data(), static_cast<int>(length)) || b.port() == 0 || b.port() > 65535 ||
        (asio::ip::make_address_v4(b.host(), ec), ec))
        return no("a sealed beacon that does not parse");
    return b;
}

std::vector<asio::ip::address_v4> multicast_interfaces() {
    std::vector<asio::ip::address_v4> out;
    for (uint32_t a : multicast_interface_addresses()) out.emplace_back(a);
    return out;
}

BeaconSender::BeaconSender(asio::io_context& io, const ClusterKey& key, const asio::ip::address& listening_on, Fill fill)
    : key_(key), fill_(std::move(fill)), io_(io), timer_(io) {
    if (listening_on.is_v4() && !listening_on.is_unspecified()) only_ = listening_on.to_v4();
    init_crypto();
    randombytes_buf(&instance_, sizeof instance_);
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
    b.set_instance(instance_);
    b.set_sequence(++sequence_);
    const asio::ip::udp::endpoint group(asio::ip::make_address_v4(kDiscoveryGroup), kDiscoveryPort);
    asio::error_code ec;
    size_t sent = 0;
    std::string last_error;
    for (const asio::ip::address_v4& itf : multicast_interfaces()) {
        if (only_ && itf != *only_) continue;
        // A socket bound to the interface's address sends a multicast
        // datagram out of that interface (Linux picks the device that owns
        // the source address when no route and no IP_MULTICAST_IF say
        // otherwise), with the defaults we want: TTL 1, looped back to
        // listeners on this machine. No socket option is needed, which
        // qemu-user (the i686 worker's tests) does not all translate.
        b.set_host(itf.to_string());
        std::string datagram;
        try {
            datagram = seal_beacon(b, key_);
        } catch (const Error& e) {
            last_error = e.what();
            continue;
        }
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
    std::map<std::string, DiscoveredWorker> by_address;
    std::array<uint8_t, kMaxBeaconBytes + 1> buf{};
    asio::ip::udp::endpoint from;
    size_t others = 0;
    std::function<void()> receive = [&] {
        socket.async_receive_from(asio::buffer(buf), from, [&](const asio::error_code& e, size_t n) {
            if (e) return;
            std::string why;
            if (const auto b = open_beacon(buf.data(), n, key, &why)) {
                const std::string address = b->host() + ":" + std::to_string(b->port());
                auto it = by_address.find(address);
                const bool newer = it == by_address.end() || b->instance() != it->second.beacon.instance() ||
                                   b->sequence() > it->second.beacon.sequence();
                if (b->leaving()) {
                    // Only the instance we heard, and only after what we heard: a resent old `leaving` changes nothing.
                    if (it != by_address.end() && b->instance() == it->second.beacon.instance() && newer)
                        by_address.erase(it);
                } else if (newer) {
                    by_address[address] = DiscoveredWorker{address, *b};
                }
            } else if (why == "sealed with another cluster key") {
                ++others;
            }
            receive();
        });
    };
    receive();
    io.run_for(std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000)));
    if (foreign) *foreign = others;
    std::vector<DiscoveredWorker> out;
    for (auto& [address, w] : by_address) out.push_back(std::move(w));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.address < b.address; });
    return out;
}

int fuzz_beacon(const uint8_t* data, size_t size) {
    // Odd first byte: the rest sealed as a beacon's body, so the parser
    // behind the seal is reached too; even: the rest as a datagram.
    ClusterKey key;
    key.bytes.fill(7);
    if (size == 0) return 0;
    if (!(data[0] & 1)) {
        (void)open_beacon(data + 1, size - 1, key);
        return 0;
    }
    const std::string d = seal_bytes(std::string(reinterpret_cast<const char*>(data + 1), size - 1), key);
    (void)open_beacon(reinterpret_cast<const uint8_t*>(d.data()), d.size(), key);
    return 0;
}

}  // namespace ferry::net
