// Framing, values and the shard image, byte by byte: round trips, every way a
// stream can be cut, truncated and hostile input, and a deterministic corpus
// of mutated frames through the fuzz entry point (the same function the
// optional libFuzzer target runs).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>

#include "common/error.h"
#include "common/model_file.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"
#include "common/net/shard_cache.h"
#include "common/net/shard_image.h"
#include "common/net/values.h"
#include "common/weights.h"
#include "common/mapped_file.h"
#include "tests/test_support.h"

namespace ferry::net {
namespace {

wire::Frame sample_forward(int n) {
    wire::Frame f;
    wire::Forward* fw = f.mutable_forward();
    fw->set_request_id(7);
    fw->set_pos(3);
    fw->set_n_tokens(n);
    std::vector<float> x(static_cast<size_t>(n) * 64);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.25f - 3.0f;
    fw->set_activations(encode_values(x.data(), x.size(), wire::WIRE_F32));
    fw->add_trace()->set_stage_index(1);
    return f;
}

TEST(Frames, RoundTripWhateverTheStreamIsCutInto) {
    std::string stream;
    std::vector<wire::Frame> sent = {make_hello(wire::COORDINATOR, "c", std::string(16, 'h')), sample_forward(5),
                                     make_error("boom")};
    for (const wire::Frame& f : sent) stream += encode_frame(f);
    for (size_t piece : {1, 2, 3, 4, 5, 7, 64, 4096}) {
        FrameDecoder d(kControlFrameBytes);
        std::vector<FrameDecoder::Decoded> got;
        for (size_t i = 0; i < stream.size(); i += piece)
            ASSERT_EQ(d.feed(reinterpret_cast<const uint8_t*>(stream.data()) + i, std::min(piece, stream.size() - i), got), "");
        ASSERT_EQ(got.size(), sent.size()) << "piece " << piece;
        for (size_t i = 0; i < sent.size(); ++i) {
            EXPECT_EQ(got[i].frame.SerializeAsString(), sent[i].SerializeAsString());
            EXPECT_EQ(got[i].wire_bytes, encode_frame(sent[i]).size());
        }
        EXPECT_EQ(d.pending(), 0u);
    }
}

TEST(Frames, ATruncatedFrameStaysPendingAndNeverCompletes) {
    const std::string bytes = encode_frame(sample_forward(3));
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
        FrameDecoder d(kControlFrameBytes);
        std::vector<FrameDecoder::Decoded> got;
        EXPECT_EQ(d.feed(reinterpret_cast<const uint8_t*>(bytes.data()), cut, got), "");
        EXPECT_TRUE(got.empty());
        EXPECT_EQ(d.pending(), cut);
    }
}

TEST(Frames, LengthsOverTheLimitOrZeroAreRejectedBeforeAnyAllocation) {
    for (uint32_t n : {0u, kHandshakeFrameBytes + 1, 0xFFFFFFFFu}) {
        FrameDecoder d(kHandshakeFrameBytes);
        std::vector<FrameDecoder::Decoded> got;
        const std::string why = d.feed(reinterpret_cast<const uint8_t*>(&n), 4, got);
        EXPECT_FALSE(why.empty()) << n;
        EXPECT_LE(d.pending(), 4u);
    }
    FrameDecoder d(kMaxFrameBytes);
    d.set_limit(0xFFFFFFFFu);
    EXPECT_EQ(d.limit(), kMaxFrameBytes);
}

TEST(Frames, BodiesThatDoNotParseOrCarryNoMessageAreRejected) {
    FrameDecoder d;
    std::vector<FrameDecoder::Decoded> got;
    const std::string bad = std::string("\x05\x00\x00\x00", 4) + "\xff\xff\xff\xff\xff";
    EXPECT_NE(d.feed(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), got).find("does not parse"), std::string::npos);
    FrameDecoder d2;
    const std::string unknown = std::string("\x03\x00\x00\x00", 4) + "\xf8\x07\x01";  // field 127 varint: unknown
    EXPECT_NE(d2.feed(reinterpret_cast<const uint8_t*>(unknown.data()), unknown.size(), got).find("no message"),
              std::string::npos);
    EXPECT_TRUE(got.empty());
}

// Deterministic mutations of valid frames (bit flips, truncations, length
// rewrites, splices) through the fuzz entry point: it must neither crash nor
// allocate past the limit (run under ASan/UBSan in the libFuzzer target).
TEST(Frames, FuzzEntryPointSurvivesAMutatedCorpus) {
    std::vector<std::string> seeds = {encode_frame(make_hello(wire::WORKER, "w")), encode_frame(sample_forward(2)),
                                      encode_frame(make_error("e"))};
    std::mt19937 rng(42);
    int runs = 0;
    for (int i = 0; i < 4000; ++i) {
        std::string s = std::string(1, static_cast<char>(rng() & 0xff)) + seeds[rng() % seeds.size()];
        switch (rng() % 5) {
            case 0: s[rng() % s.size()] ^= static_cast<char>(1u << (rng() % 8)); break;
            case 1: s.resize(rng() % s.size()); break;
            case 2: {
                const uint32_t n = rng();
                if (s.size() >= 5) s.replace(1, 4, reinterpret_cast<const char*>(&n), 4);
                break;
            }
            case 3: s += seeds[rng() % seeds.size()].substr(0, rng() % 16); break;
            default:
                for (int k = 0; k < 8; ++k) s[rng() % s.size()] = static_cast<char>(rng());
        }
        fuzz_frame_decoder(reinterpret_cast<const uint8_t*>(s.data()), s.size());
        ++runs;
    }
    EXPECT_EQ(runs, 4000);
}

TEST(Handshake, HeartbeatsFollowThePeersTimeoutButNeverFlood) {
    auto hello = [](double timeout) { return net::make_hello(wire::COORDINATOR, "peer", "", timeout).hello(); };
    EXPECT_DOUBLE_EQ(net::heartbeat_interval(hello(0), 1.0), 1.0);     // not given: ours
    EXPECT_DOUBLE_EQ(net::heartbeat_interval(hello(30), 1.0), 1.0);    // theirs is longer: ours
    EXPECT_DOUBLE_EQ(net::heartbeat_interval(hello(1.5), 1.0), 0.5);   // a third of theirs
    EXPECT_DOUBLE_EQ(net::heartbeat_interval(hello(1e-9), 1.0), 0.1);  // a hostile value: the floor
    EXPECT_DOUBLE_EQ(net::heartbeat_interval(hello(-5), 1.0), 1.0);
    EXPECT_DOUBLE_EQ(net::heartbeat_interval(hello(std::nan("")), 1.0), 1.0);
}

TEST(WireValues, F32IsExactAndF16RoundsOnce) {
    const std::vector<float> x = {0.0f, -1.5f, 3.14159f, 65504.0f, 1e-8f, -2.5e4f};
    std::vector<float> back(x.size());
    ASSERT_TRUE(decode_values(encode_values(x.data(), x.size(), wire::WIRE_F32), wire::WIRE_F32, x.size(), back.data()));
    EXPECT_EQ(back, x);
    ASSERT_TRUE(decode_values(encode_values(x.data(), x.size(), wire::WIRE_F16), wire::WIRE_F16, x.size(), back.data()));
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(back[i], x[i], std::abs(x[i]) / 1024 + 1e-7f);
    EXPECT_FALSE(decode_values(std::string(7, 'x'), wire::WIRE_F32, 2, back.data()));
    EXPECT_FALSE(decode_values(std::string(8, 'x'), wire::WIRE_F16, 2, back.data()));
}

TEST(Addresses, HostAndPortAreCheckedWithOneLine) {
    EXPECT_EQ(split_address("10.0.0.2:7070", "--workers").second, 7070);
    EXPECT_EQ(split_address("[::1]:80", "--workers").first, "::1");
    for (const char* bad : {"nohost", ":7070", "host:", "host:99999", "host:12x"})
        EXPECT_THROW(split_address(bad, "--workers"), Error) << bad;
}

TEST(Hashes, ContentHashIsCachedBySizeAndModificationTime) {
    test::TempDir tmp;
    test::write_file(tmp.file("m.bin"), std::string(100000, 'a'));
    const std::string h1 = file_content_hash(tmp.file("m.bin"), tmp.file("cache"));
    EXPECT_EQ(h1.size(), kHashBytes);
    EXPECT_EQ(h1, hash_bytes(std::string(100000, 'a').data(), 100000));
    EXPECT_TRUE(std::filesystem::exists(tmp.file("cache/model-hashes")));
    EXPECT_EQ(file_content_hash(tmp.file("m.bin"), tmp.file("cache")), h1);
    test::write_file(tmp.file("m.bin"), std::string(100001, 'b'));
    EXPECT_NE(file_content_hash(tmp.file("m.bin"), tmp.file("cache")), h1);
}

// The record's key is "size mtime" with the time in nanoseconds since 1970, as
// stat gives it: records written before the platform layer stay valid.
TEST(Hashes, RecordKeyIsSizeAndUnixNanoseconds) {
    test::TempDir tmp;
    test::write_file(tmp.file("m.bin"), std::string(1000, 'a'));
    file_content_hash(tmp.file("m.bin"), tmp.file("cache"));
    struct stat st {};
    ASSERT_EQ(::stat(tmp.file("m.bin").c_str(), &st), 0);
    const std::string key = "1000 " + std::to_string(static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec);
    size_t records = 0;
    for (const auto& f : std::filesystem::directory_iterator(tmp.file("cache/model-hashes"))) {
        std::istringstream in(test::read_file(f.path().string()));
        std::string name, line_key;
        std::getline(in, name);
        std::getline(in, line_key);
        EXPECT_EQ(line_key, key);
        ++records;
    }
    EXPECT_EQ(records, 1u);
}

// The image a worker receives opens as a model and binds exactly the shard's
// tensors, byte for byte the model's own.
TEST(ShardImages, OpenAndBindLikeTheModelThemselves) {
    for (const char* name : {"stories260K.bin", "stories260K.gguf"}) {
        const ModelFile model = open_model_file(test::model_path(name));
        for (const ShardSpec spec : {ShardSpec{0, 2, true, false}, ShardSpec{2, 5, false, true}, ShardSpec{1, 4, false, false}}) {
            const ShardImage image(model, spec, std::string(16, 'm'));
            std::string bytes(static_cast<size_t>(image.size()), '\0');
            image.read(0, image.size(), reinterpret_cast<uint8_t*>(bytes.data()));
            // Reads at any offset agree with the whole.
            std::string piece(1000, '\0');
            image.read(777, 1000, reinterpret_cast<uint8_t*>(piece.data()));
            EXPECT_EQ(piece, bytes.substr(777, 1000));
            test::TempDir tmp;
            test::write_file(tmp.file("s.gguf"), bytes);
            const ModelFile shard = open_model_file(tmp.file("s.gguf"));
            EXPECT_EQ(shard.config.dim, model.config.dim);
            EXPECT_EQ(shard.config.n_layers, model.config.n_layers);
            EXPECT_EQ(shard.config.vocab_size, model.config.vocab_size);
            std::string hash_hex;
            ShardSpec read_spec;
            ASSERT_TRUE(read_shard_identity(shard, &hash_hex, &read_spec));
            EXPECT_EQ(hash_hex, hex(std::string(16, 'm')));
            EXPECT_EQ(read_spec.first_layer, spec.first_layer);
            EXPECT_EQ(read_spec.head, spec.head);
            const Weights w = bind_weights(shard.config, spec, shard.tensors, shard.map.data(), "shard");
            EXPECT_EQ(w.layers.size(), static_cast<size_t>(spec.last_layer - spec.first_layer));
            for (const std::string& t : shard_tensor_names(model.config, spec, model.find("output.weight") == nullptr)) {
                const TensorInfo* a = model.find(t);
                const TensorInfo* b = shard.find(t);
                ASSERT_TRUE(a && b) << t;
                EXPECT_EQ(a->type, b->type) << t;
                EXPECT_EQ(0, std::memcmp(model.data(*a), shard.data(*b), static_cast<size_t>(a->bytes))) << t;
            }
            EXPECT_THROW(bind_weights(shard.config, ShardSpec{0, 5, true, true}, shard.tensors, shard.map.data(), "s"), Error);
        }
    }
}

// Resume depends on the image being a pure function of (model, shard): two
// images built apart are the same bytes. A model with RoPE frequency factors
// gives them to every shard with layers, and a shard without layers (head
// only) still opens as the model's config.
TEST(ShardImages, AreDeterministicAndCarryRopeFactorsToEveryStageWithLayers) {
    test::TempDir tmp;
    const std::string path = test::gguf_with_f32_tensor(test::model_path("stories260K.gguf"), tmp.file("rope.gguf"),
                                                        "rope_freqs.weight", {1, 1, 8, 8});
    const ModelFile model = open_model_file(path);
    ASSERT_TRUE(model.config.rope_freq_factors);
    auto bytes_of = [](const ShardImage& image) {
        std::string b(static_cast<size_t>(image.size()), '\0');
        image.read(0, image.size(), reinterpret_cast<uint8_t*>(b.data()));
        return b;
    };
    for (const ShardSpec spec : {ShardSpec{0, 2, true, false}, ShardSpec{4, 5, false, true}, ShardSpec{5, 5, false, true}}) {
        const std::string a = bytes_of(ShardImage(model, spec, std::string(16, 'm')));
        const ModelFile copy = open_model_file(path);
        EXPECT_EQ(bytes_of(ShardImage(copy, spec, std::string(16, 'm'))), a);
        // The same bytes under another name make the same image (its hash is recorded by model hash and range).
        std::filesystem::copy_file(path, tmp.file("renamed.gguf"), std::filesystem::copy_options::overwrite_existing);
        const ModelFile renamed = open_model_file(tmp.file("renamed.gguf"));
        const ShardImage image(renamed, spec, std::string(16, 'm'));
        EXPECT_EQ(bytes_of(image), a);
        EXPECT_EQ(image.content_hash(""), hash_bytes(a.data(), a.size()));
        test::write_file(tmp.file("s.gguf"), a);
        const ModelFile shard = open_model_file(tmp.file("s.gguf"));
        const bool layers = spec.last_layer > spec.first_layer;
        EXPECT_EQ(shard.config.rope_freq_factors, layers) << spec.first_layer;
        EXPECT_EQ(shard.config.vocab_size, model.config.vocab_size);
        if (layers) {
            const TensorInfo* r = shard.find("rope_freqs.weight");
            ASSERT_NE(r, nullptr);
            EXPECT_EQ(0, std::memcmp(shard.data(*r), model.data(*model.find("rope_freqs.weight")), 16));
        }
    }
}

TEST(ShardCache, ChunksAreCheckedAndTheFinishedFileRenamed) {
    test::TempDir tmp;
    const std::string data = std::string(5000, 'q') + std::string(3000, 'r');
    const ShardPaths paths =
        shard_paths(tmp.path(), std::string(16, 'k'), ShardSpec{0, 3, false, true}, hash_bytes(data.data(), data.size()));
    EXPECT_NE(paths.final_path.find("/0-2-head." + hex(hash_bytes(data.data(), data.size())) + ".gguf"), std::string::npos);
    {
        ShardReceiver r(paths, data.size());
        EXPECT_EQ(r.have(), 0u);
        r.begin(0);
        r.write(0, data.substr(0, 5000), checksum64(data.data(), 5000));
        EXPECT_THROW(r.write(4000, data.substr(4000, 10), checksum64(data.data() + 4000, 10)), Error);  // wrong offset
        EXPECT_THROW(r.write(5000, data.substr(5000), 12345), Error);                                  // bad checksum
    }
    ShardReceiver resumed(paths, data.size());
    EXPECT_EQ(resumed.have(), 5000u);
    EXPECT_EQ(resumed.have_hash(), hash_bytes(data.data(), 5000));
    resumed.begin(5000);
    resumed.write(5000, data.substr(5000), checksum64(data.data() + 5000, 3000));
    EXPECT_THROW(resumed.finish(std::string(16, 'z')), Error);  // wrong image hash: deleted
    EXPECT_FALSE(std::filesystem::exists(paths.part_path));
    ShardReceiver again(paths, data.size());
    again.write(0, data, checksum64(data.data(), data.size()));
    again.finish(hash_bytes(data.data(), data.size()));
    EXPECT_EQ(test::read_file(paths.final_path), data);
}

// Pages in the page cache of this many bytes of `path`.
uint64_t resident_bytes(const std::string& path) {
    const MappedFile map(path);
    const long page = sysconf(_SC_PAGESIZE);
    std::vector<unsigned char> in((map.size() + page - 1) / page);
    if (mincore(const_cast<uint8_t*>(map.data()), map.size(), in.data()) != 0) return ~0ull;
    uint64_t n = 0;
    for (unsigned char b : in) n += b & 1;
    return n * static_cast<uint64_t>(page);
}

// A received shard does not stay in the page cache as the receiver wrote it
// (many small folios, slow to stream on CPUs that coalesce TLB entries): its
// written pages are dropped, and the mapping that serves it reads it back by
// readahead (docs/DESIGN.md, "Where the weights lie").
TEST(ShardCache, TheFinishedShardLeavesThePageCache) {
    test::TempDir tmp;
    std::string data(8u << 20, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 2654435761u >> 24);
    const std::string hash = hash_bytes(data.data(), data.size());
    const ShardPaths paths = shard_paths(tmp.path(), std::string(16, 'k'), ShardSpec{0, 1, false, false}, hash);
    ShardReceiver r(paths, data.size());
    for (size_t off = 0; off < data.size(); off += 1u << 20)
        r.write(off, data.substr(off, 1u << 20), checksum64(data.data() + off, 1u << 20));
    EXPECT_GT(resident_bytes(paths.part_path), data.size() / 2);  // written pages are cached until finish
    r.finish(hash);
    EXPECT_EQ(resident_bytes(paths.final_path), 0u);
}

}  // namespace
}  // namespace ferry::net
