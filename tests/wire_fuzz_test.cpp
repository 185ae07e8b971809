// The wire fuzz target's entry (tests/fuzz/wire_fuzz.h), run in every ctest
// over a fixed corpus: streams of the frames a session exchanges (hello,
// assign, shard transfer, forward requests in f32 and f16, results, pings,
// ...) under every limit and read size the entry's first byte picks, then
// thousands of deterministic mutations of them. Every byte string must end in
// parsed frames or the decoder's reason string; a crash, a frame over the
// limit or another exception fails the test. With FERRY_FUZZ_SEED_DIR set,
// the streams are also written there as the libFuzzer target's seeds.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>

#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"
#include "common/net/values.h"
#include "tests/fuzz/mutate.h"
#include "tests/fuzz/wire_fuzz.h"
#include "tests/test_support.h"

namespace ferry::net {
namespace {

fuzz::WireOutcome run_entry(const std::string& bytes) {
    return fuzz::fuzz_wire(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string values(size_t n, wire::WireType type) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i) * 0.5f - 7.0f;
    return encode_values(x.data(), n, type);
}

wire::Frame assign() {
    wire::Frame f;
    wire::Assign* a = f.mutable_assign();
    a->set_model_hash(std::string(kHashBytes, '\x5a'));
    a->set_model_bytes(1056540);
    a->set_model_name("stories260K.bin");
    wire::ModelShape* s = a->mutable_shape();
    s->set_dim(64), s->set_hidden_dim(172), s->set_n_layers(5), s->set_n_heads(8), s->set_n_kv_heads(4);
    s->set_vocab_size(512), s->set_seq_len(512), s->set_norm_eps(1e-5f), s->set_rope_theta(10000.0f);
    a->set_first_layer(0), a->set_last_layer(2), a->set_embedding(true), a->set_context(512), a->set_kv_type("f32");
    for (const char* name : {"token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"}) {
        wire::TensorDesc* t = a->add_tensors();
        t->set_name(name), t->set_type(0), t->set_rows(64), t->set_cols(64), t->set_bytes(64 * 64 * 4);
    }
    a->set_image_bytes(123456), a->set_session_id(99), a->set_stage_index(0), a->set_n_stages(2);
    return f;
}

wire::Frame forward(int n, wire::WireType type) {
    wire::Frame f;
    wire::Forward* fw = f.mutable_forward();
    fw->set_request_id(7), fw->set_pos(3), fw->set_n_tokens(n), fw->set_wire(type);
    fw->set_activations(values(static_cast<size_t>(n) * 64, type));
    fw->set_want(wire::WANT_TOKEN);
    fw->mutable_sampling()->set_temperature(0.8f), fw->mutable_sampling()->set_rng_state(12345);
    fw->set_result_needed(true);
    fw->add_trace()->set_stage_index(0);
    return f;
}

// The byte streams of a session, each one connection's worth.
std::vector<std::string> streams() {
    wire::Frame begin, chunk, end, result, ping, next, beat, tokens;
    begin.mutable_shard_begin()->set_offset(0);
    const std::string data(3000, '\x11');
    chunk.mutable_shard_chunk()->set_offset(0), chunk.mutable_shard_chunk()->set_data(data);
    chunk.mutable_shard_chunk()->set_checksum(checksum64(data.data(), data.size()));
    end.mutable_shard_end()->set_image_hash(hash_bytes(data.data(), data.size()));
    result.mutable_result()->set_request_id(7), result.mutable_result()->set_logits(values(512, wire::WIRE_F32));
    result.mutable_result()->set_activation(values(64, wire::WIRE_F16)), result.mutable_result()->set_wire(wire::WIRE_F16);
    ping.mutable_ping()->set_nonce(3), ping.mutable_ping()->set_payload(std::string(200, 'p'));
    next.mutable_connect_next()->set_address("127.0.0.1:7071");
    beat.mutable_heartbeat()->set_sent_ns(1);
    tokens.mutable_forward()->set_n_tokens(3);
    for (int t : {1, 400, 511}) tokens.mutable_forward()->add_tokens(t);
    const std::string hello = encode_frame(make_hello(wire::COORDINATOR, "coordinator", "", 30));
    return {
        hello + encode_frame(assign()) + encode_frame(begin) + encode_frame(chunk) + encode_frame(end),
        hello + encode_frame(forward(2, wire::WIRE_F32)) + encode_frame(forward(1, wire::WIRE_F16)) + encode_frame(beat),
        encode_frame(make_hello(wire::WORKER, "w1", std::string(kHashBytes, '\x5a'), 1e-9)) + encode_frame(result) +
            encode_frame(ping),
        encode_frame(next) + encode_frame(tokens) + encode_frame(make_error("out of memory")),
    };
}

const int kFramesPerStream[] = {5, 4, 3, 3};

TEST(WireFuzzCorpus, SessionStreamsDecodeUnderEveryLimitAndReadSize) {
    const std::vector<std::string> all = streams();
    const char* seed_dir = std::getenv("FERRY_FUZZ_SEED_DIR");
    for (size_t s = 0; s < all.size(); ++s)
        for (int first = 0; first < 16; ++first) {
            const std::string input = std::string(1, static_cast<char>(first)) + all[s];
            const fuzz::WireOutcome o = run_entry(input);
            EXPECT_FALSE(o.malformed) << "stream " << s << ", first byte " << first;
            EXPECT_EQ(o.frames, kFramesPerStream[s]) << "stream " << s << ", first byte " << first;
            if (seed_dir && first < 2)
                test::write_file(std::string(seed_dir) + "/stream" + std::to_string(s) + "-" + std::to_string(first), input);
        }
    // A length over the handshake limit, an empty frame, a body that is no frame: each a clean reason.
    for (const std::string& bad : {std::string("\x00\x00\x00\x02\x00", 5), std::string("\x00\x00\x00\x00\x00", 5),
                                  std::string("\x00\x03\x00\x00\x00\xff\xff\xff", 8)}) {
        const fuzz::WireOutcome o = run_entry(bad);
        EXPECT_TRUE(o.malformed);
        EXPECT_EQ(o.frames, 0);
    }
}

TEST(WireFuzzCorpus, MutantsEndInFramesOrTheDecodersReason) {
    const std::vector<std::string> all = streams();
    fuzz::Mutator mutate(20260527);
    int with_frames = 0, malformed = 0;
    for (int i = 0; i < 64000; ++i) {
        const std::string& seed = all[static_cast<size_t>(i) % all.size()];
        // The first byte (limit, read size) varies with i; the stream's first frames hold most structure.
        const std::string input = std::string(1, static_cast<char>(i / 4 % 16)) + mutate(seed, 256);
        const fuzz::WireOutcome o = run_entry(input);
        with_frames += o.frames > 0;
        malformed += o.malformed;
    }
    std::cout << "[ measured ] 64000 mutated streams: " << with_frames << " yielded frames, " << malformed
              << " ended in the decoder's reason\n";
    EXPECT_GT(with_frames, 40000) << "the corpus must reach the handling of parsed frames";
    EXPECT_GT(malformed, 15000) << "and the decoder's checks";
}

}  // namespace
}  // namespace ferry::net
