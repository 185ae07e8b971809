// Deterministic mutants for the fuzz targets' companion ctests: what a
// hostile file or peer does to a real input (bytes overwritten, 32-bit fields
// set to extremes or to neighbours of their value, truncation, appended
// garbage, stretches copied over others, bytes inserted), concentrated on the
// first `header` bytes where the structure is, with a share anywhere so the
// code behind a successful parse is reached too.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

namespace ferry::fuzz {

class Mutator {
public:
    explicit Mutator(uint64_t seed) : rng_(seed) {}

    std::string operator()(const std::string& seed, uint64_t header) {
        std::string m = seed;
        if (m.empty()) return std::string(1 + pick(8), static_cast<char>(rng_()));
        const uint64_t span = rng_() % 8 == 0 ? m.size() : std::clamp<uint64_t>(header, 1, m.size());
        switch (rng_() % 7) {
            case 0:  // a few random bytes
                for (int i = 0, n = 1 + static_cast<int>(pick(4)); i < n; ++i) m[pick(span)] = static_cast<char>(rng_());
                break;
            case 1: {  // a 32-bit field set to an extreme or a near neighbour of its value
                static const uint32_t kExtremes[] = {0, 1, 2, 3, 4, 255, 256, 0x7FFFFFFF, 0x80000000u, 0xFFFFFFFFu};
                const uint64_t at = pick(span);
                if (at + 4 > m.size()) break;
                uint32_t v;
                std::memcpy(&v, &m[at], 4);
                if (rng_() % 2) v = kExtremes[pick(sizeof kExtremes / sizeof kExtremes[0])];
                else v = rng_() % 2 ? v + 1 - static_cast<uint32_t>(pick(3)) : (rng_() % 2 ? v * 2 : v / 2);
                std::memcpy(&m[at], &v, 4);
                break;
            }
            case 2:  // truncated
                m.resize(pick(m.size()));
                break;
            case 3:  // garbage appended
                m.append(1 + pick(64), static_cast<char>(rng_()));
                break;
            case 4: {  // a stretch copied over another
                const uint64_t from = pick(m.size()), to = pick(span), n = 1 + pick(64);
                if (from + n <= m.size() && to + n <= m.size()) std::memmove(&m[to], &m[from], n);
                break;
            }
            case 5:  // bytes inserted
                m.insert(pick(span), std::string(1 + pick(16), static_cast<char>(rng_())));
                break;
            default:  // a bit flipped
                m[pick(span)] ^= static_cast<char>(1u << pick(8));
                break;
        }
        return m;
    }

private:
    uint64_t pick(uint64_t n) { return n ? rng_() % n : 0; }
    std::mt19937_64 rng_;
};

}  // namespace ferry::fuzz
