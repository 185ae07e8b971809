// The first frame each way on every connection: who is speaking, which
// protocol, which model. A mismatch is refused with one line at both ends
// that names the other side and what differs.
#pragma once
#include <cstdint>
#include <string>
#include <utility>

#include "common/version.h"
#include "ferry.pb.h"

namespace ferry::net {

using ferry::kProtocolVersion;  // common/version.h
const char* role_name(wire::Role role);

// link_timeout_s: how long this side waits on a silent link (0: not said).
wire::Frame make_hello(wire::Role role, const std::string& name, const std::string& model_hash = "",
                       double link_timeout_s = 0);
// Seconds between heartbeats to a peer whose Hello said its link timeout:
// `ours`, or a third of the peer's timeout if that is shorter, but never under
// 0.1 s (a peer declaring a tiny timeout cannot make us flood it).
double heartbeat_interval(const wire::Hello& peer, double ours);
wire::Frame make_error(const std::string& message, bool fatal = true);

// "" if a Hello from `peer` is acceptable on our side, else the reason
// ("127.0.0.1:7070 speaks ferry protocol 2 (ferry 0.3.0); this ferry 0.1.0 speaks 1: ...").
std::string check_protocol(const wire::Hello& hello, const std::string& peer);
// "" if both model hashes are equal, else the line naming both.
std::string check_model(const std::string& ours, const std::string& theirs, const std::string& peer);

// Splits "HOST:PORT" ("[::1]:7070" too). Throws ferry::Error naming `what`.
std::pair<std::string, uint16_t> split_address(const std::string& address, const std::string& what);

// Monotonic nanoseconds: the clock of every timestamp on the wire.
uint64_t now_ns();

}  // namespace ferry::net
