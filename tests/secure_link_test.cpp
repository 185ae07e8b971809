// The cluster key's pieces without sockets: key files, the handshake, sealed
// records and beacons (common/net/cluster_key.h, secure_link.h,
// discovery.h), and the link fuzz target's entries over mutations.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <iostream>

#include "common/error.h"
#include "common/net/discovery.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/secure_link.h"
#include "tests/fuzz/mutate.h"
#include "tests/test_support.h"

namespace ferry::net {
namespace {

ClusterKey key_of(char c) {
    ClusterKey k;
    k.bytes.fill(static_cast<uint8_t>(c));
    return k;
}

const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// Runs the handshake between two links; the client's second message is
// returned in *proof (what a replay would resend).
void shake(SecureLink& client, SecureLink& server, std::string* hello = nullptr, std::string* proof = nullptr) {
    const std::string h = client.opening();
    const SecureLink::Step s1 = server.handshake(u8(h), h.size());
    ASSERT_TRUE(s1.error.empty()) << s1.error;
    ASSERT_EQ(s1.used, h.size());
    const SecureLink::Step s2 = client.handshake(u8(s1.send), s1.send.size());
    if (hello) *hello = h;
    if (proof) *proof = s2.send;
    if (!s2.error.empty()) return;
    const SecureLink::Step s3 = server.handshake(u8(s2.send), s2.send.size());
    (void)s3;
}

// One record through a PrefixedReader, opened: "" and the plaintext in *out, or why not.
std::string receive(SecureLink& link, const std::string& record, std::string* out = nullptr) {
    PrefixedReader r(SecureLink::record_limit(kControlFrameBytes));
    std::vector<std::string> bodies;
    if (std::string e = r.feed(u8(record), record.size(), bodies); !e.empty()) return e;
    if (bodies.size() != 1) return "not one record";
    if (std::string e = link.open(bodies[0]); !e.empty()) return e;
    if (out) *out = bodies[0];
    return "";
}

TEST(ClusterKey, KeygenTextParsesBackAndIsFreshEachTime) {
    const std::string a = new_key_text(), b = new_key_text();
    EXPECT_EQ(a.size(), 65u);
    EXPECT_NE(a, b);
    EXPECT_NO_THROW(parse_cluster_key(a, "a"));
    EXPECT_NO_THROW(parse_cluster_key("  " + a.substr(0, 64) + "\r\n", "a"));
    for (const std::string bad : {std::string(""), a.substr(0, 63), a.substr(0, 64) + "0", std::string(64, 'g'),
                                  a.substr(0, 32) + " " + a.substr(33, 31)}) {
        try {
            parse_cluster_key(bad, "the cluster key file k");
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("the cluster key file k is not a cluster key"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("ferry keygen"), std::string::npos) << e.what();
        }
    }
}

TEST(ClusterKey, FoundInTheFlagTheEnvironmentOrTheSystemdCredential) {
    test::TempDir tmp;
    const std::string k1 = tmp.file("k1"), creds = tmp.file("creds");
    test::write_file(k1, new_key_text());
    ::mkdir(creds.c_str(), 0700);
    test::write_file(creds + "/ferry.key", new_key_text());
    ::unsetenv("FERRY_KEY_FILE");
    ::unsetenv("CREDENTIALS_DIRECTORY");
    EXPECT_FALSE(find_cluster_key(""));
    std::string source;
    ::setenv("CREDENTIALS_DIRECTORY", creds.c_str(), 1);
    ASSERT_TRUE(find_cluster_key("", &source));
    EXPECT_EQ(source, creds + "/ferry.key");
    ::setenv("FERRY_KEY_FILE", k1.c_str(), 1);
    ASSERT_TRUE(find_cluster_key("", &source));
    EXPECT_EQ(source, k1);
    ASSERT_TRUE(find_cluster_key(creds + "/ferry.key", &source));  // the flag wins
    EXPECT_EQ(source, creds + "/ferry.key");
    ::unsetenv("FERRY_KEY_FILE");
    ::unsetenv("CREDENTIALS_DIRECTORY");
    try {
        find_cluster_key(tmp.file("missing"));
        ADD_FAILURE() << "a missing key file was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot read the cluster key file"), std::string::npos) << e.what();
    }
}

TEST(SecureLink, BothSidesProveTheKeyAndFramesGoBothWays) {
    SecureLink c(key_of('k'), SecureLink::Side::client), s(key_of('k'), SecureLink::Side::server);
    std::string hello;
    shake(c, s, &hello);
    ASSERT_TRUE(c.established());
    ASSERT_TRUE(s.established());
    EXPECT_EQ(hello.size(), SecureLink::kClientHelloBytes);
    for (int i = 0; i < 5; ++i) {
        // A marker long enough that random ciphertext never holds it by chance
        // (a 2-byte one did, about once in 200 runs).
        const std::string marker = "plain-coordinator-name-" + std::to_string(i);
        const std::string up = encode_frame(make_hello(wire::COORDINATOR, marker));
        std::string got;
        const std::string sealed = c.seal(up);
        EXPECT_EQ(sealed.find(marker), std::string::npos) << "the frame travels in the clear";
        ASSERT_EQ(receive(s, sealed, &got), "");
        EXPECT_EQ(got, up);
        const std::string down = encode_frame(make_error("answer " + std::to_string(i)));
        ASSERT_EQ(receive(c, s.seal(down), &got), "");
        EXPECT_EQ(got, down);
    }
}

TEST(SecureLink, AnotherKeyIsRefusedByTheClientAndByTheServer) {
    SecureLink c(key_of('a'), SecureLink::Side::client), s(key_of('b'), SecureLink::Side::server);
    const std::string h = c.opening();
    const SecureLink::Step s1 = s.handshake(u8(h), h.size());
    ASSERT_TRUE(s1.error.empty());
    const SecureLink::Step s2 = c.handshake(u8(s1.send), s1.send.size());
    EXPECT_EQ(s2.error, "wrong or missing cluster key: the peer proved another key");
    EXPECT_FALSE(c.established());
    EXPECT_TRUE(s2.send.empty()) << "a proof must not go to a peer that did not prove the key";
    // A client of another key that sent its proof anyway is refused by the server.
    SecureLink c2(key_of('a'), SecureLink::Side::client), s2s(key_of('b'), SecureLink::Side::server);
    const std::string h2 = c2.opening();
    const SecureLink::Step t1 = s2s.handshake(u8(h2), h2.size());
    const std::string wrong_proof(SecureLink::kProofBytes, '\x11');
    const SecureLink::Step t3 = s2s.handshake(u8(wrong_proof), wrong_proof.size());
    (void)t1;
    EXPECT_NE(t3.error.find("wrong or missing cluster key"), std::string::npos);
    EXPECT_FALSE(s2s.established());
}

TEST(SecureLink, AReplayedHandshakeFailsAgainstTheServersNewNonce) {
    std::string hello, proof;
    {
        SecureLink c(key_of('k'), SecureLink::Side::client), s(key_of('k'), SecureLink::Side::server);
        shake(c, s, &hello, &proof);
        ASSERT_TRUE(s.established());
    }
    SecureLink s2(key_of('k'), SecureLink::Side::server);
    const SecureLink::Step a = s2.handshake(u8(hello), hello.size());
    ASSERT_TRUE(a.error.empty());
    const SecureLink::Step b = s2.handshake(u8(proof), proof.size());
    EXPECT_NE(b.error.find("replayed"), std::string::npos) << b.error;
    EXPECT_FALSE(s2.established());
}

TEST(SecureLink, PlainPeersAreToldApartInTheirFirstFourBytes) {
    const std::string plain = encode_frame(make_hello(wire::COORDINATOR, "c"));
    SecureLink s(key_of('k'), SecureLink::Side::server);
    const SecureLink::Step a = s.handshake(u8(plain), 4);
    EXPECT_TRUE(a.plain_peer);
    EXPECT_EQ(a.used, 4u);
    SecureLink c(key_of('k'), SecureLink::Side::client);
    c.opening();
    const SecureLink::Step b = c.handshake(u8(plain), plain.size());
    EXPECT_TRUE(b.plain_peer);
    EXPECT_NE(b.error.find("the peer has none"), std::string::npos) << b.error;
    // And a plain peer reading our hello names the problem, not a frame size.
    const std::string ours = SecureLink(key_of('k'), SecureLink::Side::client).opening();
    EXPECT_NE(foreign_protocol(ours.substr(0, 4)).find("wrong or missing cluster key"), std::string::npos);
}

TEST(SecureLink, TheHandshakeReadsNoMoreThanItsOwnBytes) {
    SecureLink s(key_of('k'), SecureLink::Side::server);
    const std::string h = SecureLink(key_of('k'), SecureLink::Side::client).opening() + std::string(100000, 'x');
    const SecureLink::Step a = s.handshake(u8(h), h.size());
    EXPECT_EQ(a.used, SecureLink::kClientHelloBytes);
    const SecureLink::Step b = s.handshake(u8(h) + a.used, h.size() - a.used);
    EXPECT_EQ(b.used, SecureLink::kProofBytes);
    EXPECT_FALSE(b.error.empty());
}

TEST(SecureLink, ChangedReplayedReorderedOrCutRecordsDoNotOpen) {
    auto pair = [] {
        auto c = std::make_unique<SecureLink>(key_of('k'), SecureLink::Side::client);
        auto s = std::make_unique<SecureLink>(key_of('k'), SecureLink::Side::server);
        shake(*c, *s);
        return std::make_pair(std::move(c), std::move(s));
    };
    const std::string frame = encode_frame(make_hello(wire::COORDINATOR, "coordinator"));
    {  // every single changed byte, the length included
        auto [c, s] = pair();
        const std::string r = c->seal(frame);
        for (size_t i = 0; i < r.size(); ++i) {
            auto [c2, s2] = pair();
            std::string m = c2->seal(frame);
            m[i] ^= 0x01;
            EXPECT_NE(receive(*s2, m), "") << "byte " << i;
        }
    }
    {  // replayed
        auto [c, s] = pair();
        const std::string r = c->seal(frame);
        EXPECT_EQ(receive(*s, r), "");
        EXPECT_NE(receive(*s, r), "");
    }
    {  // reordered
        auto [c, s] = pair();
        const std::string r1 = c->seal(frame), r2 = c->seal(frame);
        EXPECT_NE(receive(*s, r2), "");
    }
    {  // cut: shorter than its tag, or a body one byte short of what the length says
        auto [c, s] = pair();
        std::string r = c->seal(frame);
        std::string body = r.substr(4, 10);
        EXPECT_NE(s->open(body), "");
        auto [c2, s2] = pair();
        std::string whole = c2->seal(frame).substr(4);
        whole.pop_back();
        EXPECT_NE(s2->open(whole), "");
    }
    {  // a direction's record sent back the other way (reflection)
        auto [c, s] = pair();
        const std::string r = c->seal(frame);
        EXPECT_NE(receive(*c, r), "");
    }
}

TEST(Beacon, SignedWithTheKeyOpensAndAnotherKeyDoesNot) {
    wire::Beacon b;
    b.set_port(7070);
    b.set_name("pentium:7070");
    b.set_holds("layers 0-3 of stories15M.bin");
    b.set_memory_budget(128u << 20);
    b.set_host("10.0.0.7");
    const std::string d = seal_beacon(b, key_of('k'));
    EXPECT_EQ(d.find("pentium"), std::string::npos) << "a machine without the key reads the beacon";
    EXPECT_NE(d, seal_beacon(b, key_of('k'))) << "each datagram has its own nonce";
    EXPECT_LE(d.size(), kMaxBeaconBytes);
    std::string why;
    const auto got = open_beacon(u8(d), d.size(), key_of('k'), &why);
    ASSERT_TRUE(got) << why;
    EXPECT_EQ(got->name(), "pentium:7070");
    EXPECT_EQ(got->holds(), "layers 0-3 of stories15M.bin");
    EXPECT_FALSE(open_beacon(u8(d), d.size(), key_of('x'), &why));
    EXPECT_EQ(why, "sealed with another cluster key");
    wire::Beacon nowhere = b;
    nowhere.set_host("not an address");
    const std::string n = seal_beacon(nowhere, key_of('k'));
    EXPECT_FALSE(open_beacon(u8(n), n.size(), key_of('k'), &why));
    EXPECT_EQ(why, "a sealed beacon that does not parse");
    for (size_t i = 0; i < d.size(); ++i) {
        std::string m = d;
        m[i] ^= 0x20;
        EXPECT_FALSE(open_beacon(u8(m), m.size(), key_of('k'))) << "byte " << i;
    }
    EXPECT_FALSE(open_beacon(u8(d), d.size() - 1, key_of('k')));
    wire::Beacon huge = b;
    huge.set_holds(std::string(2000, 'h'));
    EXPECT_THROW(seal_beacon(huge, key_of('k')), Error);
}

// The link fuzz target's entries (tests/fuzz/link_fuzz.cpp) over mutations
// of real handshakes, records and beacons. A changed record that opens traps.
TEST(LinkFuzzCorpus, MutantsOfHandshakesRecordsAndBeaconsNeverCrash) {
    std::vector<std::string> seeds;
    {
        SecureLink c(key_of(7), SecureLink::Side::client), s(key_of(7), SecureLink::Side::server);
        std::string hello, proof;
        shake(c, s, &hello, &proof);
        seeds.push_back("\x01" + hello + proof);
        seeds.push_back(std::string("\x00", 1) + c.seal(encode_frame(make_hello(wire::COORDINATOR, "c"))));
        seeds.push_back(std::string("\x02\x05\x11", 3));
    }
    wire::Beacon b;
    b.set_port(7070);
    b.set_name("w:7070");
    b.set_host("10.0.0.7");
    const std::string beacon = seal_beacon(b, key_of(7));
    seeds.push_back(std::string("\x00", 1) + beacon);
    seeds.push_back("\x01" + b.SerializeAsString());
    fuzz::Mutator mutate(20261206);
    for (int i = 0; i < 20000; ++i) {
        const std::string& seed = seeds[static_cast<size_t>(i) % seeds.size()];
        const std::string m = mutate(seed, 96);
        if (i % seeds.size() >= 3) fuzz_beacon(u8(m), m.size());
        else fuzz_secure_link(u8(m), m.size());
    }
    SUCCEED();
}

}  // namespace
}  // namespace ferry::net
