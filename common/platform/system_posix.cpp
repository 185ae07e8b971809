#include "common/platform/system.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace ferry {

bool is_terminal(std::FILE* stream) { return isatty(fileno(stream)) != 0; }

bool stderr_is_journal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (!stream) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    return fstat(2, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

std::string default_cache_folder() {
    if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/ferry";
    if (const char* d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/ferry";
    return "/tmp/ferry-cache";
}

std::string open_file_limit() {
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) return "unlimited";
    return std::to_string(static_cast<unsigned long long>(files.rlim_cur));
}

bool readable_by_others(const std::string& path, unsigned* mode) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return false;
    *mode = st.st_mode & 0777;
    return (st.st_mode & 077) != 0;
}

std::vector<uint32_t> multicast_interface_addresses() {
    std::vector<uint32_t> out;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        if (!(i->ifa_flags & IFF_UP) || !(i->ifa_flags & IFF_MULTICAST) || (i->ifa_flags & IFF_LOOPBACK)) continue;
        uint32_t a = 0;
        std::memcpy(&a, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
        a = ntohl(a);
        if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    }
    freeifaddrs(list);
    return out;
}

}  // namespace ferry
