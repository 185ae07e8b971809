// The wire target's entry: bytes arriving on a ferry connection. The first
// byte picks the connection's frame limit (handshake or control, as a worker
// sets them) and how the rest is cut into reads (one byte at a time up to
// all at once); the rest goes through FrameDecoder (length prefix, then the
// protobuf parse of wire::Frame). Every frame it yields then meets what its
// receiver does first: the ping answered with a pong, the Hello checked
// (protocol, model hash, heartbeat interval), activations and logits decoded,
// a connect-next address split, the frame re-encoded to pass on.
//
// Any byte string must end in parsed frames or the decoder's reason string,
// never a crash, a sanitizer report, a hang or a body over the limit; every
// ferry::Error thrown must come from a documented thrower (split_address).
// Used by wire_fuzz.cpp (libFuzzer) and tests/wire_fuzz_test.cpp (every ctest
// run). common/net/fuzz_frames_main.cc fuzzes the bare decoder.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "common/error.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"
#include "common/net/values.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {

struct WireOutcome {
    int frames = 0;
    bool malformed = false;  // the decoder named a problem
};

// The values in `bytes`: as many as fit must decode (when they fill it), one more must not.
inline void decode_all(const std::string& bytes, wire::WireType type) {
    const size_t width = net::wire_value_bytes(type), n = bytes.size() / width;
    std::vector<float> out(n + 1);
    if (net::decode_values(bytes, type, n + 1, out.data()))
        broken(std::to_string(bytes.size()) + " bytes decode as " + std::to_string(n + 1) + " values");
    if (bytes.size() % width == 0 && !net::decode_values(bytes, type, n, out.data()))
        broken(std::to_string(bytes.size()) + " bytes do not decode as " + std::to_string(n) + " values");
}

// What a receiver does with `f` before its handler's own checks.
inline void receive(const wire::Frame& f) {
    (void)net::frame_kind(f);
    switch (f.msg_case()) {
        case wire::Frame::kPing: {  // Connection answers every ping itself
            wire::Frame pong;
            pong.mutable_pong()->set_nonce(f.ping().nonce());
            pong.mutable_pong()->set_payload(f.ping().payload());
            (void)net::encode_frame(pong);
            break;
        }
        case wire::Frame::kHello: {
            const wire::Hello& h = f.hello();
            (void)net::check_protocol(h, "peer " + h.name());
            (void)net::check_model(std::string(net::kHashBytes, 'm'), h.model_hash(), "peer " + h.name());
            const double beat = net::heartbeat_interval(h, 2.0);
            if (!(beat >= 0.1 && beat <= 2.0))
                broken("heartbeat interval " + std::to_string(beat) + " s for a link timeout of " +
                       std::to_string(h.link_timeout_s()) + " s");
            break;
        }
        case wire::Frame::kForward:
            decode_all(f.forward().activations(), f.forward().wire());
            (void)net::wire_type_name(f.forward().wire());
            break;
        case wire::Frame::kResult:
            decode_all(f.result().activation(), f.result().wire());
            decode_all(f.result().logits(), wire::WIRE_F32);
            break;
        case wire::Frame::kShardChunk:
            (void)(net::checksum64(f.shard_chunk().data().data(), f.shard_chunk().data().size()) ==
                   f.shard_chunk().checksum());
            break;
        case wire::Frame::kShardEnd: (void)net::hex(f.shard_end().image_hash()); break;
        case wire::Frame::kConnectNext:
            try {
                (void)net::split_address(f.connect_next().address(), "connect-next");
            } catch (const Error&) {
            }
            break;
        default: break;
    }
}

// A frame passed on (a worker forwards Reset as received) decodes again as
// the same kind of message.
inline void reencode(const wire::Frame& f) {
    const std::string bytes = net::encode_frame(f);
    net::FrameDecoder d(net::kMaxFrameBytes);
    std::vector<net::FrameDecoder::Decoded> again;
    const std::string problem = d.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), again);
    if (!problem.empty() || again.size() != 1 || again[0].frame.msg_case() != f.msg_case() || d.pending() != 0)
        broken(std::string("a re-encoded ") + net::frame_kind(f) + " frame does not decode again: " + problem);
}

inline WireOutcome fuzz_wire(const uint8_t* data, size_t size) {
    WireOutcome out;
    if (size == 0) return out;
    // A string field with invalid UTF-8 fails the parse (a clean reason) and
    // makes protobuf log a line: thousands of them would bury the results.
    const google::protobuf::LogSilencer quiet;
    static const size_t kReads[] = {1, 2, 3, 4, 5, 7, 64, 65536};  // 65536: Connection's read buffer
    const uint32_t limit = data[0] & 1 ? net::kControlFrameBytes : net::kHandshakeFrameBytes;
    const size_t step = kReads[(data[0] >> 1) % 8];
    net::FrameDecoder d(limit);
    std::vector<net::FrameDecoder::Decoded> frames;
    for (size_t i = 1; i < size && !out.malformed; i += step) {
        const std::string problem = d.feed(data + i, std::min(step, size - i), frames);
        out.malformed = !problem.empty();
        if (d.pending() > net::kFrameHeaderBytes + limit)
            broken("the decoder holds " + std::to_string(d.pending()) + " bytes under a limit of " + std::to_string(limit));
        for (const net::FrameDecoder::Decoded& f : frames) {
            if (f.wire_bytes > net::kFrameHeaderBytes + limit || f.wire_bytes < net::kFrameHeaderBytes + 1)
                broken("a frame of " + std::to_string(f.wire_bytes) + " bytes on the wire under a limit of " +
                       std::to_string(limit));
            receive(f.frame);
            reencode(f.frame);
            ++out.frames;
        }
        frames.clear();
    }
    return out;
}

}  // namespace ferry::fuzz
