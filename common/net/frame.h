// Framing: each frame is a little-endian u32 byte count, then that many bytes
// of one serialized wire::Frame. The count is checked against a limit before
// anything is allocated; the limit depends on what the connection may carry
// (a handshake is small, a prefill batch is large), with a hard ceiling.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ferry.pb.h"

namespace ferry::net {

constexpr size_t kFrameHeaderBytes = 4;
// No frame is ever larger than this, whatever a connection allows.
constexpr uint32_t kMaxFrameBytes = 1u << 30;
// Before a connection knows its role: Hello, Error, status.
constexpr uint32_t kHandshakeFrameBytes = 64u << 10;
// Control traffic of an established connection: shard chunks (1 MB), the
// 1 MB link echo, assignments with their tensor list.
constexpr uint32_t kControlFrameBytes = 4u << 20;
// The first bytes of a keyed connection (secure_link.h). Read as a length
// they exceed kMaxFrameBytes, so no plain frame ever starts this way.
constexpr unsigned char kKeyedMagic[4] = {0xFE, 'F', 'R', 'Y'};

// The frame with its length prefix. Throws ferry::Error if it would exceed kMaxFrameBytes.
std::string encode_frame(const wire::Frame& frame);

// Cuts a byte stream into length-prefixed bodies (a u32 count, then that
// many bytes): the frames of a plain connection, the sealed records of a
// keyed one (secure_link.h). feed() never allocates more than the limit for
// one body, and reports the first problem as a reason string after which the
// stream is unusable (the connection closes).
class PrefixedReader {
public:
    explicit PrefixedReader(uint32_t limit) : limit_(limit) {}
    // At most kMaxFrameBytes plus room for a sealed record's length and tag.
    void set_limit(uint32_t limit) { limit_ = limit < kMaxFrameBytes + 64 ? limit : kMaxFrameBytes + 64; }
    uint32_t limit() const { return limit_; }
    // Appends every body completed by these bytes to `out`. With max_bodies
    // it stops after that many and *used tells how many of the n bytes it
    // took. A body grows with the bytes that arrive, so a peer that
    // announces a large one and sends little of it costs what it sent.
    std::string feed(const uint8_t* data, size_t n, std::vector<std::string>& out, size_t max_bodies = SIZE_MAX,
                     size_t* used = nullptr);
    // Bytes of an unfinished body and its header held now.
    size_t pending() const { return in_body_ ? kFrameHeaderBytes + body_.size() : header_.size(); }
    // Body bytes the unfinished one announced (0 between bodies).
    uint32_t announced() const { return in_body_ ? expected_ : 0; }
    // The problem feed() reported is that the peer speaks another protocol (foreign_protocol).
    bool foreign_peer() const { return foreign_peer_; }

private:
    uint32_t limit_;
    std::string header_;  // up to 4 bytes of the next length
    std::string body_;
    uint32_t expected_ = 0;  // body bytes being read
    bool in_body_ = false;
    bool read_any_ = false;  // a first header that is not ours may be another protocol (foreign_protocol)
    bool foreign_peer_ = false;
};

// Cuts a byte stream into frames: PrefixedReader's bodies, each one
// serialized wire::Frame.
class FrameDecoder {
public:
    explicit FrameDecoder(uint32_t limit = kHandshakeFrameBytes) : reader_(limit) {}
    void set_limit(uint32_t limit) { reader_.set_limit(limit < kMaxFrameBytes ? limit : kMaxFrameBytes); }
    uint32_t limit() const { return reader_.limit(); }

    // Appends every frame completed by these bytes to `out` together with
    // its size on the wire. Returns "" or why the stream is malformed. With
    // max_frames it stops after that many frames and *used tells how many of
    // the n bytes it took (Connection answers each frame before it decodes
    // the next).
    struct Decoded {
        wire::Frame frame;
        uint64_t wire_bytes = 0;
    };
    std::string feed(const uint8_t* data, size_t n, std::vector<Decoded>& out, size_t max_frames = SIZE_MAX,
                     size_t* used = nullptr);
    size_t pending() const { return reader_.pending(); }
    uint32_t announced() const { return reader_.announced(); }
    bool foreign_peer() const { return reader_.foreign_peer(); }

private:
    PrefixedReader reader_;
    std::vector<std::string> bodies_;
};

// "" or "is not a ferry peer: it speaks HTTP (...)" for the first four bytes of a stream.
std::string foreign_protocol(const std::string& first4);

// Name of a frame's message for logs and errors ("hello", "forward", ...).
const char* frame_kind(const wire::Frame& frame);

// Feeds `data` to a decoder in irregular pieces: the body of the fuzz target
// (fuzz_frames_main.cc) and of the corpus test. Returns 0.
int fuzz_frame_decoder(const uint8_t* data, size_t size);

}  // namespace ferry::net
