// The pool's one secret: 256 random bits that every worker and coordinator
// of a pool holds (`ferry keygen -o ferry.key`). Knowing it is what lets a
// machine into the pool: links prove it both ways and encrypt with keys
// derived from it (secure_link.h), beacons are signed with it (discovery.h).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::net {

struct ClusterKey {
    std::array<uint8_t, 32> bytes{};
    ClusterKey() = default;
    ClusterKey(const ClusterKey&) = default;
    ClusterKey& operator=(const ClusterKey&) = default;
    ~ClusterKey();  // wipes the bytes (sodium_memzero: not optimised away)
};

// Starts libsodium once (thread-safe); throws ferry::Error if it cannot.
void init_crypto();

// A new random key as the key file holds it: 64 hex digits and a newline.
std::string new_key_text();
// The key in `text` (64 hex digits, surrounding whitespace allowed). Throws
// ferry::Error naming `source` and what a key file looks like.
ClusterKey parse_cluster_key(std::string_view text, const std::string& source);
// Reads a key file; warns once if others than its owner may read it.
ClusterKey read_cluster_key_file(const std::string& path);

// Where a program finds its key: `flag_path` (--key-file), else the file
// FERRY_KEY_FILE names, else ferry.key in $CREDENTIALS_DIRECTORY (systemd's
// LoadCredential=, readable by the service only). nullopt: no key anywhere.
// `source` says which one was used.
std::optional<ClusterKey> find_cluster_key(const std::string& flag_path, std::string* source = nullptr);

// HMAC-SHA-256 of `message` under the key (32 bytes), and its check in constant time.
std::array<uint8_t, 32> key_mac(const ClusterKey& key, std::string_view message);
bool key_mac_ok(const ClusterKey& key, std::string_view message, const uint8_t* mac);

}  // namespace ferry::net
