// A keyed link: both ends prove they hold the cluster key, then every frame
// travels sealed. Pure state machine over bytes (Connection drives it), so it
// is tested and fuzzed without sockets.
//
// Handshake (fixed sizes, nothing else is read before it ends):
//   client -> server  magic(4) | client nonce(32)
//   server -> client  magic(4) | server nonce(32) | HMAC(key, "ferry server" | both nonces)
//   client -> server  HMAC(key, "ferry client" | both nonces)
// Fresh random nonces on both sides make every proof single-use (a recorded
// handshake replayed to a worker fails against its new nonce) and the
// distinct labels keep a proof from being reflected back. Each direction
// then has its own key, BLAKE2b(key, label | both nonces).
//
// Records: a u32 length, then the frame (with its own length) sealed by
// ChaCha20-Poly1305 (IETF) under the direction's key, the nonce a counter of
// records, the length as associated data. A replayed, reordered, cut or
// changed record fails to open and ends the connection. ChaCha20 because the
// old CPUs ferry serves have no AES instructions.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "common/net/cluster_key.h"

namespace ferry::net {

class SecureLink {
public:
    enum class Side { client, server };
    static constexpr size_t kNonceBytes = 32, kProofBytes = 32;
    static constexpr size_t kClientHelloBytes = 4 + kNonceBytes;
    static constexpr size_t kServerHelloBytes = 4 + kNonceBytes + kProofBytes;
    static constexpr uint32_t kTagBytes = 16;

    SecureLink(const ClusterKey& key, Side side);
    ~SecureLink();
    SecureLink(const SecureLink&) = delete;
    SecureLink& operator=(const SecureLink&) = delete;

    // What the client sends first (its hello); "" on the server side.
    std::string opening();

    // Feeds handshake bytes; takes no more than the handshake needs.
    struct Step {
        size_t used = 0;
        std::string send;         // bytes to send the peer now
        std::string error;        // the handshake failed: why ("wrong or missing cluster key: ...")
        bool plain_peer = false;  // the failure is a peer without a key (it speaks plain frames)
    };
    Step handshake(const uint8_t* data, size_t n);
    bool established() const { return state_ == State::open; }
    Side side() const { return side_; }

    // The record for one encoded frame: its length, then it sealed.
    std::string seal(std::string_view frame);
    // Opens one record's body (what followed its length) in place: "" or why not.
    std::string open(std::string& body);
    // The largest record body carrying a frame of `frame_bytes` (with its length).
    static uint32_t record_limit(uint32_t frame_bytes) { return frame_bytes + 4 + kTagBytes; }

private:
    enum class State { start, want_server_hello, want_client_hello, want_client_proof, open, failed };
    std::string proof(const char* label) const;
    void derive_keys();

    ClusterKey key_;
    Side side_;
    State state_;
    std::string got_;  // handshake bytes received so far
    uint8_t client_nonce_[kNonceBytes] = {}, server_nonce_[kNonceBytes] = {};
    uint8_t send_key_[32] = {}, recv_key_[32] = {};
    uint64_t sent_ = 0, received_ = 0;  // records each way: their nonces
};

// Drives a server-side link with the fuzzer's bytes, then opens records with
// them: the body of the fuzz target (tests/fuzz) and of the corpus test. Returns 0.
int fuzz_secure_link(const uint8_t* data, size_t size);

}  // namespace ferry::net
