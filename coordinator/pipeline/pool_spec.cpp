#include "coordinator/pipeline/pool_spec.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "common/error.h"
#include "common/shard_memory.h"

namespace ferry {

namespace {

[[noreturn]] void bad(const std::string& entry, const std::string& what) {
    throw Error("--pool entry '" + entry + "': " + what +
                " (write [COUNTx]BUDGET[@SPEED][:ARCH], e.g. 4x160M or 256M@0.5 or 512M@2G:i686 or 2x1G:aarch64)");
}

// A finite positive number filling all of `text`.
bool parse_number(const std::string& text, double* out) {
    if (text.empty() || text.size() > 32) return false;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v) || !(v > 0)) return false;
    *out = v;
    return true;
}

}  // namespace

std::vector<WorkerCapacity> parse_pool(const std::string& text, const PoolDefaults& defaults) {
    if (text.empty()) throw Error("--pool is empty: describe the workers, e.g. --pool 4x160M");
    std::vector<WorkerCapacity> workers;
    size_t start = 0;
    for (;;) {
        const size_t comma = text.find(',', start);
        const std::string entry = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (entry.empty()) bad(entry, "an empty entry");
        std::string rest = entry;
        WorkerCapacity w;
        w.arch = "x86_64";
        if (const size_t colon = rest.find(':'); colon != std::string::npos) {
            w.arch = rest.substr(colon + 1);
            if (!known_worker_arch(w.arch)) bad(entry, "the architecture must be x86_64, i686, aarch64 or armhf");
            rest = rest.substr(0, colon);
        }
        double gbps = defaults.reference_gbps;
        if (const size_t at = rest.find('@'); at != std::string::npos) {
            std::string speed = rest.substr(at + 1);
            const bool absolute = !speed.empty() && (speed.back() == 'G' || speed.back() == 'g');
            if (absolute) speed.pop_back();
            double v = 0;
            if (!parse_number(speed, &v) || v > 1e4) bad(entry, "the speed after '@' must be a positive number, e.g. @0.5 or @2G");
            gbps = absolute ? v : v * defaults.reference_gbps;
            rest = rest.substr(0, at);
        }
        int count = 1;
        if (const size_t x = rest.find('x'); x != std::string::npos) {
            const std::string n = rest.substr(0, x);
            if (n.empty() || n.size() > 5 || n.find_first_not_of("0123456789") != std::string::npos)
                bad(entry, "the count before 'x' must be a whole number");
            count = std::atoi(n.c_str());
            if (count < 1 || count > kMaxPoolWorkers) bad(entry, "the count must be 1.." + std::to_string(kMaxPoolWorkers));
            rest = rest.substr(x + 1);
        }
        uint64_t budget = 0;
        if (rest != "unlimited" && (!parse_bytes(rest, &budget) || budget == 0))
            bad(entry, "the budget must be a size such as 160M, 1.5G or 65536, or 'unlimited'");
        w.memory_budget = budget;
        w.matvec_gbps = gbps;
        w.link_mbps = defaults.link_mbps;
        w.link_latency_ms = defaults.link_latency_ms;
        if (static_cast<int>(workers.size()) + count > kMaxPoolWorkers)
            throw Error("--pool describes more than " + std::to_string(kMaxPoolWorkers) + " workers");
        for (int i = 0; i < count; ++i) {
            w.address = "pool-" + std::to_string(workers.size() + 1);
            workers.push_back(w);
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return workers;
}

}  // namespace ferry
