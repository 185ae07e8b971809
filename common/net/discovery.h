// Finding the pool's workers on the LAN without typing their addresses.
//
// Each keyed worker sends a Beacon (proto/ferry.proto) once a second to the
// multicast group 239.255.70.70, UDP port 7071, out of every IPv4 interface
// it listens on; a coordinator listens for a few seconds and keeps the
// beacons that open under its cluster key. A plain UDP beacon
// rather than mDNS/DNS-SD: no daemon (avahi) to install on a 128 MB box or
// Windows, one socket, the same code on every OS, and multicast stays on the
// local segment like mDNS's. The group is administratively scoped
// (239/8), so routers do not forward it.
//
// Datagram: "FRYB" | random nonce (24) | XChaCha20-Poly1305(Beacon), under
// BLAKE2b(cluster key, "ferry beacon key"): a machine without the key learns
// nothing from it (not even the port), and cannot forge one. The address to
// connect to is inside (the sending interface's), not the datagram's source,
// so a beacon resent from elsewhere still points at its worker; a resent
// `leaving` is older than the instance's last beacon and is ignored. The
// connection's own handshake is what lets anyone in.
#pragma once
#include <asio.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/net/cluster_key.h"
#include "ferry.pb.h"

namespace ferry::net {

constexpr uint16_t kDiscoveryPort = 7071;
constexpr const char* kDiscoveryGroup = "239.255.70.70";
constexpr size_t kMaxBeaconBytes = 1200;  // one datagram, under any Ethernet MTU

// The sealed datagram for a beacon. Throws ferry::Error if over kMaxBeaconBytes.
std::string seal_beacon(const wire::Beacon& beacon, const ClusterKey& key);
// The beacon in a datagram, or nullopt with why ("not a beacon ...", "sealed
// with another cluster key", "a sealed beacon that does not parse").
std::optional<wire::Beacon> open_beacon(const uint8_t* data, size_t n, const ClusterKey& key, std::string* why = nullptr);

// IPv4 addresses of the interfaces that are up and can multicast (not loopback).
std::vector<asio::ip::address_v4> multicast_interfaces();

// Sends beacons from the worker's io thread, once a second, until destroyed.
// A worker listening on every address (0.0.0.0 or ::) sends on every interface, else only on its address's.
class BeaconSender {
public:
    using Fill = std::function<void(wire::Beacon& beacon)>;
    BeaconSender(asio::io_context& io, const ClusterKey& key, const asio::ip::address& listening_on, Fill fill);
    ~BeaconSender();
    // Sends one beacon with `leaving` set and stops.
    void leave();

private:
    void send_all(bool leaving);
    void arm();
    ClusterKey key_;
    std::optional<asio::ip::address_v4> only_;  // the one interface to send on, if not all
    uint64_t instance_ = 0, sequence_ = 0;
    Fill fill_;
    asio::io_context& io_;
    asio::steady_timer timer_;
    bool stopped_ = false;
    bool warned_ = false;
};

struct DiscoveredWorker {
    std::string address;  // HOST:PORT to connect to
    wire::Beacon beacon;
};
// Listens `wait_s` seconds for beacons sealed with `key`; the workers heard
// (one per address), sorted by address (a stable chain order). Beacons of
// another key are counted in *foreign. Throws ferry::Error if the port cannot
// be bound.
std::vector<DiscoveredWorker> discover_workers(const ClusterKey& key, double wait_s, size_t* foreign = nullptr);

// A datagram through open_beacon: the body of the fuzz target and its corpus test. Returns 0.
int fuzz_beacon(const uint8_t* data, size_t size);

}  // namespace ferry::net
