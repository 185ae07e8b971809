#include "common/net/frame.h"

#include <cstring>

#include "common/error.h"

namespace ferry::net {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is little-endian; add byte swapping");

std::string encode_frame(const wire::Frame& frame) {
    const size_t body = frame.ByteSizeLong();
    if (body > kMaxFrameBytes)
        throw Error("a " + std::string(frame_kind(frame)) + " frame of " + std::to_string(body) +
                    " bytes exceeds the protocol's maximum of " + std::to_string(kMaxFrameBytes));
    std::string out(kFrameHeaderBytes + body, '\0');
    const uint32_t n = static_cast<uint32_t>(body);
    std::memcpy(out.data(), &n, 4);
    frame.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data() + kFrameHeaderBytes));
    return out;
}

// A first length prefix too large to be ours that reads as another
// protocol's greeting: "is not a ferry peer: it speaks HTTP (\"HTTP/1.1\")",
// so the user learns the port is wrong, not that a frame was too big.
std::string foreign_protocol(const std::string& first4) {
    const auto* b = reinterpret_cast<const unsigned char*>(first4.data());
    if (first4.size() < 4) return "";
    if (std::memcmp(b, kKeyedMagic, 4) == 0)
        return "wrong or missing cluster key: the peer has one and this end has none (give it --key-file)";
    if (b[0] == 0x16 && b[1] == 0x03) return "is not a ferry peer: it speaks TLS";
    for (size_t i = 0; i < 4; ++i)
        if (b[i] < 0x20 || b[i] > 0x7e) return "";
    std::string what = "text";
    if (first4 == "HTTP" || first4 == "GET " || first4 == "POST" || first4 == "PUT " || first4 == "HEAD") what = "HTTP";
    else if (first4 == "SSH-") what = "SSH";
    else if (first4 == "220 " || first4 == "220-") what = "FTP or SMTP";
    return "is not a ferry peer: it speaks " + what + " (its first bytes: \"" + first4 + "\")";
}

std::string PrefixedReader::feed(const uint8_t* data, size_t n, std::vector<std::string>& out, size_t max_bodies,
                                 size_t* used) {
    const size_t given = n;
    size_t bodies = 0;
    while (n > 0 && bodies < max_bodies) {
        if (!in_body_) {
            const size_t take = std::min(n, kFrameHeaderBytes - header_.size());
            header_.append(reinterpret_cast<const char*>(data), take);
            data += take;
            n -= take;
            if (header_.size() < kFrameHeaderBytes) break;
            std::memcpy(&expected_, header_.data(), 4);
            const std::string header_bytes = header_;
            header_.clear();
            if (expected_ == 0) return "an empty frame (length 0)";
            if (expected_ > limit_ && !read_any_) {
                const std::string foreign = foreign_protocol(header_bytes);
                foreign_peer_ = !foreign.empty();
                if (foreign_peer_) return foreign;
            }
            if (expected_ > limit_)
                return "a frame of " + std::to_string(expected_) + " bytes, over the limit of " +
                       std::to_string(limit_) + " for this connection";
            body_.clear();
            in_body_ = true;
        }
        const size_t take = std::min<size_t>(n, expected_ - body_.size());
        // Grow by doubling, never past the announced size.
        if (body_.size() + take > body_.capacity())
            body_.reserve(std::min<size_t>(expected_, std::max(2 * body_.capacity(), body_.size() + take)));
        body_.append(reinterpret_cast<const char*>(data), take);
        data += take;
        n -= take;
        if (body_.size() < expected_) break;
        out.push_back(std::move(body_));
        body_ = std::string();
        read_any_ = true;
        ++bodies;
        in_body_ = false;
    }
    if (used) *used = given - n;
    return "";
}

std::string FrameDecoder::feed(const uint8_t* data, size_t n, std::vector<Decoded>& out, size_t max_frames,
                               size_t* used) {
    bodies_.clear();
    const std::string problem = reader_.feed(data, n, bodies_, max_frames, used);
    for (const std::string& body : bodies_) {
        Decoded d;
        if (!d.frame.ParseFromString(body)) return "a frame of " + std::to_string(body.size()) + " bytes that does not parse";
        if (d.frame.msg_case() == wire::Frame::MSG_NOT_SET)
            return "a frame with no message (unknown message type from a newer peer?)";
        d.wire_bytes = kFrameHeaderBytes + body.size();
        out.push_back(std::move(d));
    }
    bodies_.clear();
    return problem;
}

const char* frame_kind(const wire::Frame& f) {
    switch (f.msg_case()) {
        case wire::Frame::kHello: return "hello";
        case wire::Frame::kError: return "error";
        case wire::Frame::kAssign: return "assign";
        case wire::Frame::kAssignReply: return "assign-reply";
        case wire::Frame::kShardBegin: return "shard-begin";
        case wire::Frame::kShardChunk: return "shard-chunk";
        case wire::Frame::kShardEnd: return "shard-end";
        case wire::Frame::kShardLoaded: return "shard-loaded";
        case wire::Frame::kConnectNext: return "connect-next";
        case wire::Frame::kConnected: return "connected";
        case wire::Frame::kForward: return "forward";
        case wire::Frame::kResult: return "result";
        case wire::Frame::kReset: return "reset";
        case wire::Frame::kHeartbeat: return "heartbeat";
        case wire::Frame::kPing: return "ping";
        case wire::Frame::kPong: return "pong";
        case wire::Frame::kStatusRequest: return "status-request";
        case wire::Frame::kStatusReport: return "status-report";
        case wire::Frame::kShardAck: return "shard-ack";
        case wire::Frame::kClassify: return "classify";
        case wire::Frame::kClassified: return "classified";
        case wire::Frame::MSG_NOT_SET: break;
    }
    return "empty";
}

int fuzz_frame_decoder(const uint8_t* data, size_t size) {
    // The first byte picks the limit and how the rest is cut, so the fuzzer
    // explores both small and large limits and every split of a header.
    if (size == 0) return 0;
    FrameDecoder d(data[0] & 1 ? kControlFrameBytes : kHandshakeFrameBytes);
    const size_t step = 1 + (data[0] >> 1) % 7;
    std::vector<FrameDecoder::Decoded> frames;
    for (size_t i = 1; i < size; i += step) {
        if (!d.feed(data + i, std::min(step, size - i), frames).empty()) break;
        for (const auto& f : frames) (void)frame_kind(f.frame);
        frames.clear();
    }
    return 0;
}

}  // namespace ferry::net
