#include "common/net/secure_link.h"

#include <sodium.h>

#include <cstring>

#include "common/error.h"
#include "common/net/frame.h"

namespace ferry::net {

namespace {
void counter_nonce(uint64_t n, uint8_t out[crypto_aead_chacha20poly1305_IETF_NPUBBYTES]) {
    std::memset(out, 0, crypto_aead_chacha20poly1305_IETF_NPUBBYTES);
    std::memcpy(out, &n, sizeof n);  // little-endian, as the whole wire format
}
const char* magic() { return reinterpret_cast<const char*>(kKeyedMagic); }
}  // namespace

SecureLink::SecureLink(const ClusterKey& key, Side side)
    : key_(key), side_(side), state_(side == Side::client ? State::start : State::want_client_hello) {
    init_crypto();
}

SecureLink::~SecureLink() {
    sodium_memzero(send_key_, sizeof send_key_);
    sodium_memzero(recv_key_, sizeof recv_key_);
}

std::string SecureLink::opening() {
    if (side_ != Side::client || state_ != State::start) return "";
    randombytes_buf(client_nonce_, kNonceBytes);
    state_ = State::want_server_hello;
    return std::string(magic(), 4) + std::string(reinterpret_cast<const char*>(client_nonce_), kNonceBytes);
}

std::string SecureLink::proof(const char* label) const {
    std::string message = label;
    message.append(reinterpret_cast<const char*>(client_nonce_), kNonceBytes);
    message.append(reinterpret_cast<const char*>(server_nonce_), kNonceBytes);
    const auto mac = key_mac(key_, message);
    return std::string(reinterpret_cast<const char*>(mac.data()), mac.size());
}

void SecureLink::derive_keys() {
    uint8_t c2s[32], s2c[32];
    for (auto [label, out] : {std::pair{"ferry c2s", c2s}, std::pair{"ferry s2c", s2c}}) {
        std::string input = label;
        input.append(reinterpret_cast<const char*>(client_nonce_), kNonceBytes);
        input.append(reinterpret_cast<const char*>(server_nonce_), kNonceBytes);
        crypto_generichash(out, 32, reinterpret_cast<const unsigned char*>(input.data()), input.size(), key_.bytes.data(),
                           key_.bytes.size());
    }
    std::memcpy(side_ == Side::client ? send_key_ : recv_key_, c2s, 32);
    std::memcpy(side_ == Side::client ? recv_key_ : send_key_, s2c, 32);
    sodium_memzero(c2s, sizeof c2s);
    sodium_memzero(s2c, sizeof s2c);
    state_ = State::open;
}

SecureLink::Step SecureLink::handshake(const uint8_t* data, size_t n) {
    Step s;
    auto fail = [&](std::string why, bool plain) {
        state_ = State::failed;
        s.error = std::move(why);
        s.plain_peer = plain;
        return s;
    };
    size_t want = 0;
    switch (state_) {
        case State::want_server_hello: want = kServerHelloBytes; break;
        case State::want_client_hello: want = kClientHelloBytes; break;
        case State::want_client_proof: want = kProofBytes; break;
        default: return fail("the key handshake is not expected now", false);
    }
    s.used = std::min(n, want - got_.size());
    got_.append(reinterpret_cast<const char*>(data), s.used);
    // A peer without a key shows itself in its first four bytes: no need to wait for more.
    if (state_ != State::want_client_proof && got_.size() >= 4 && std::memcmp(got_.data(), magic(), 4) != 0)
        return fail(side_ == Side::client
                        ? "wrong or missing cluster key: the peer has none (it answers in plain frames); give it --key-file or leave out --key-file here"
                        : "wrong or missing cluster key: the peer sent plain frames, without one",
                    true);
    if (got_.size() < want) return s;
    const uint8_t* g = reinterpret_cast<const uint8_t*>(got_.data());
    if (state_ == State::want_client_hello) {
        std::memcpy(client_nonce_, g + 4, kNonceBytes);
        randombytes_buf(server_nonce_, kNonceBytes);
        s.send = std::string(magic(), 4) + std::string(reinterpret_cast<const char*>(server_nonce_), kNonceBytes) +
                 proof("ferry server");
        state_ = State::want_client_proof;
    } else if (state_ == State::want_server_hello) {
        std::memcpy(server_nonce_, g + 4, kNonceBytes);
        // Our proof goes only to a peer that proved the key: nothing usable leaves for anyone else.
        if (sodium_memcmp(proof("ferry server").data(), g + 4 + kNonceBytes, kProofBytes) != 0)
            return fail("wrong or missing cluster key: the peer proved another key", false);
        s.send = proof("ferry client");
        derive_keys();
    } else {
        if (sodium_memcmp(proof("ferry client").data(), g, kProofBytes) != 0)
            return fail("wrong or missing cluster key: the peer proved another key (or replayed an old handshake)", false);
        derive_keys();
    }
    got_.clear();
    return s;
}

std::string SecureLink::seal(std::string_view frame) {
    if (state_ != State::open) throw Error("a frame sealed before the key handshake ended");
    const uint32_t body = static_cast<uint32_t>(frame.size() + kTagBytes);
    std::string out(4 + body, '\0');
    std::memcpy(out.data(), &body, 4);
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    counter_nonce(sent_++, nonce);
    unsigned long long written = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(reinterpret_cast<unsigned char*>(out.data() + 4), &written,
                                              reinterpret_cast<const unsigned char*>(frame.data()), frame.size(),
                                              reinterpret_cast<const unsigned char*>(out.data()), 4, nullptr, nonce, send_key_);
    return out;
}

std::string SecureLink::open(std::string& body) {
    if (state_ != State::open) return "a record before the key handshake ended";
    if (body.size() < kTagBytes) return "a sealed record of " + std::to_string(body.size()) + " bytes, shorter than its tag";
    const uint32_t length = static_cast<uint32_t>(body.size());
    uint8_t ad[4];
    std::memcpy(ad, &length, 4);
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    counter_nonce(received_, nonce);
    unsigned long long plain = 0;
    auto* p = reinterpret_cast<unsigned char*>(body.data());
    if (crypto_aead_chacha20poly1305_ietf_decrypt(p, &plain, nullptr, p, body.size(), ad, 4, nonce, recv_key_) != 0) {
        state_ = State::failed;
        return "a sealed record that does not open (changed, replayed or out of order)";
    }
    ++received_;
    body.resize(static_cast<size_t>(plain));
    return "";
}

int fuzz_secure_link(const uint8_t* data, size_t size) {
    // The first byte picks the path. Odd: a server link fed the input as a
    // client would, in pieces. Even: a real handshake, then the input read
    // as records by the server, or (bit 1) one genuine record changed where
    // the input says: a changed record that opens is a failure (trap).
    if (size == 0) return 0;
    ClusterKey key;
    key.bytes.fill(7);
    SecureLink server(key, SecureLink::Side::server);
    if (data[0] & 1) {
        for (size_t at = 1; at < size && !server.established();) {
            const SecureLink::Step s = server.handshake(data + at, std::min<size_t>(size - at, 1 + data[at] % 40));
            if (!s.error.empty() || s.used == 0) return 0;
            at += s.used;
        }
        return 0;
    }
    SecureLink client(key, SecureLink::Side::client);
    const std::string hello = client.opening();
    const SecureLink::Step s1 = server.handshake(reinterpret_cast<const uint8_t*>(hello.data()), hello.size());
    const SecureLink::Step s2 = client.handshake(reinterpret_cast<const uint8_t*>(s1.send.data()), s1.send.size());
    server.handshake(reinterpret_cast<const uint8_t*>(s2.send.data()), s2.send.size());
    if ((data[0] & 2) && size >= 3) {
        std::string record = client.seal("a frame the fuzzer changes one byte of");
        record[data[1] % record.size()] ^= static_cast<char>(data[2] | 1);
        PrefixedReader one(SecureLink::record_limit(kHandshakeFrameBytes));
        std::vector<std::string> bodies;
        if (one.feed(reinterpret_cast<const uint8_t*>(record.data()), record.size(), bodies).empty())
            for (std::string& b : bodies)
                if (server.open(b).empty()) __builtin_trap();
        return 0;  // the link failed: nothing more opens on it
    }
    PrefixedReader records(SecureLink::record_limit(kHandshakeFrameBytes));
    std::vector<std::string> bodies;
    if (!records.feed(data + 1, size - 1, bodies).empty()) return 0;
    for (std::string& b : bodies)
        if (!server.open(b).empty()) break;
    return 0;
}

}  // namespace ferry::net
