#include "common/net/handshake.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "common/error.h"
#include "common/net/hash.h"

namespace ferry::net {

const char* role_name(wire::Role role) {
    switch (role) {
        case wire::COORDINATOR: return "coordinator";
        case wire::UPSTREAM_STAGE: return "upstream stage";
        case wire::STATUS_CLIENT: return "status client";
        case wire::WORKER: return "worker";
        default: return "unknown role";
    }
}

wire::Frame make_hello(wire::Role role, const std::string& name, const std::string& model_hash,
                       double link_timeout_s) {
    wire::Frame f;
    wire::Hello* h = f.mutable_hello();
    h->set_protocol_version(kProtocolVersion);
    h->set_role(role);
    h->set_software_version(ferry_version());
    h->set_name(name);
    h->set_model_hash(model_hash);
    h->set_link_timeout_s(link_timeout_s);
    return f;
}

double heartbeat_interval(const wire::Hello& peer, double ours) {
    // A peer cannot make us flood it: heartbeats at most every 0.1 s.
    constexpr double kShortest = 0.1;
    if (!(peer.link_timeout_s() > 0)) return ours;  // not given
    const double theirs = std::max(peer.link_timeout_s() / 3, kShortest);
    return theirs < ours ? theirs : ours;
}

wire::Frame make_error(const std::string& message, bool fatal) {
    wire::Frame f;
    f.mutable_error()->set_message(message);
    f.mutable_error()->set_fatal(fatal);
    return f;
}

std::string check_protocol(const wire::Hello& hello, const std::string& peer) {
    if (hello.protocol_version() == kProtocolVersion) return "";
    return peer + " speaks ferry protocol " + std::to_string(hello.protocol_version()) + " (ferry " +
           hello.software_version() + "); this ferry " + ferry_version() + " speaks protocol " +
           std::to_string(kProtocolVersion) + ": run the same ferry version on every node";
}

std::string check_model(const std::string& ours, const std::string& theirs, const std::string& peer) {
    if (ours == theirs) return "";
    return peer + " serves model " + (theirs.empty() ? "(none)" : hex(theirs).substr(0, 16)) + ", this node has " +
           (ours.empty() ? "(none)" : hex(ours).substr(0, 16)) + ": both must run the same model file";
}

std::pair<std::string, uint16_t> split_address(const std::string& address, const std::string& what) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
        throw Error(what + " '" + address + "': expected HOST:PORT, e.g. 192.168.1.20:7070");
    std::string host = address.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const std::string port_text = address.substr(colon + 1);
    char* end = nullptr;
    const long port = std::strtol(port_text.c_str(), &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        throw Error(what + " '" + address + "': port '" + port_text + "' is not a number from 0 to 65535");
    return {host, static_cast<uint16_t>(port)};
}

uint64_t now_ns() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
}

}  // namespace ferry::net
