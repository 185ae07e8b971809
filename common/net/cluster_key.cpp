#include "common/net/cluster_key.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/platform/system.h"

namespace ferry::net {

ClusterKey::~ClusterKey() { sodium_memzero(bytes.data(), bytes.size()); }

void init_crypto() {
    static const int ok = sodium_init();
    if (ok < 0) throw Error("libsodium failed to start (no source of random bytes?)");
}

std::string new_key_text() {
    init_crypto();
    ClusterKey k;
    randombytes_buf(k.bytes.data(), k.bytes.size());
    char hex[2 * 32 + 1];
    sodium_bin2hex(hex, sizeof hex, k.bytes.data(), k.bytes.size());
    std::string text = std::string(hex) + "\n";
    sodium_memzero(hex, sizeof hex);
    return text;
}

ClusterKey parse_cluster_key(std::string_view text, const std::string& source) {
    const size_t first = text.find_first_not_of(" \t\r\n");
    const size_t last = text.find_last_not_of(" \t\r\n");
    const std::string_view hex = first == std::string_view::npos ? std::string_view() : text.substr(first, last - first + 1);
    ClusterKey k;
    size_t got = 0;
    const char* end = nullptr;
    if (hex.size() != 64 ||
        sodium_hex2bin(k.bytes.data(), k.bytes.size(), hex.data(), hex.size(), nullptr, &got, &end) != 0 || got != 32 ||
        end != hex.data() + hex.size())
        throw Error(source + " is not a cluster key: it must hold 64 hexadecimal digits (make one with `ferry keygen -o ferry.key`)");
    return k;
}

ClusterKey read_cluster_key_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot read the cluster key file " + path + ": " + std::strerror(errno) +
                         " (make one with `ferry keygen -o " + path + "`)");
    std::string text(4097, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    if (text.size() > 4096) throw Error(path + " is not a cluster key: it is larger than 4 KiB");
    if (unsigned mode = 0; readable_by_others(path, &mode))
        spdlog::warn("cluster key file {} may be read by other users (mode {:o}): chmod 600 {}", path, mode, path);
    struct Wipe {
        std::string& s;
        ~Wipe() { sodium_memzero(s.data(), s.size()); }
    } wipe{text};
    return parse_cluster_key(text, "the cluster key file " + path);
}

std::optional<ClusterKey> find_cluster_key(const std::string& flag_path, std::string* source) {
    std::string path = flag_path;
    if (path.empty())
        if (const char* env = std::getenv("FERRY_KEY_FILE"); env && *env) path = env;
    if (path.empty())
        if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY"); creds && *creds) {
            const std::string candidate = std::string(creds) + "/ferry.key";
            std::error_code ec;
            if (std::filesystem::exists(candidate, ec)) path = candidate;
        }
    if (path.empty()) return std::nullopt;
    if (source) *source = path;
    init_crypto();
    return read_cluster_key_file(path);
}

std::array<uint8_t, 32> key_mac(const ClusterKey& key, std::string_view message) {
    std::array<uint8_t, 32> mac{};
    crypto_auth_hmacsha256(mac.data(), reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                           key.bytes.data());
    return mac;
}

bool key_mac_ok(const ClusterKey& key, std::string_view message, const uint8_t* mac) {
    return crypto_auth_hmacsha256_verify(mac, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                                         key.bytes.data()) == 0;
}

}  // namespace ferry::net
