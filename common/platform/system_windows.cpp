#include "common/platform/system.h"

#include <winsock2.h>
#include <ws2tcpip.h>
#include <iphlpapi.h>
#include <windows.h>
#include <io.h>

#include <algorithm>
#include <cstdlib>

namespace ferry {

bool is_terminal(std::FILE* stream) { return _isatty(_fileno(stream)) != 0; }

bool stderr_is_journal() { return false; }

std::string default_cache_folder() {
    if (const char* d = std::getenv("LOCALAPPDATA"); d && *d) return std::string(d) + "\\ferry";
    char temp[MAX_PATH + 1] = {};
    const DWORD n = GetTempPathA(sizeof temp, temp);  // ends with a backslash
    return (n > 0 && n < sizeof temp ? std::string(temp) : std::string("C:\\")) + "ferry-cache";
}

std::string open_file_limit() { return "unlimited"; }  // sockets are handles: no per-process table to fill

bool readable_by_others(const std::string&, unsigned*) { return false; }

std::vector<uint32_t> multicast_interface_addresses() {
    std::vector<uint32_t> out;
    ULONG bytes = 16 * 1024;
    std::vector<unsigned char> buf;
    ULONG status = ERROR_BUFFER_OVERFLOW;
    for (int tries = 0; tries < 3 && status == ERROR_BUFFER_OVERFLOW; ++tries) {
        buf.resize(bytes);
        status = GetAdaptersAddresses(AF_INET, GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_DNS_SERVER, nullptr,
                                      reinterpret_cast<IP_ADAPTER_ADDRESSES*>(buf.data()), &bytes);
    }
    if (status != NO_ERROR) return out;
    for (auto* a = reinterpret_cast<IP_ADAPTER_ADDRESSES*>(buf.data()); a; a = a->Next) {
        if (a->OperStatus != IfOperStatusUp || a->IfType == IF_TYPE_SOFTWARE_LOOPBACK || (a->Flags & IP_ADAPTER_NO_MULTICAST))
            continue;
        for (auto* u = a->FirstUnicastAddress; u; u = u->Next) {
            if (u->Address.lpSockaddr->sa_family != AF_INET) continue;
            const uint32_t addr = ntohl(reinterpret_cast<const sockaddr_in*>(u->Address.lpSockaddr)->sin_addr.s_addr);
            if (std::find(out.begin(), out.end(), addr) == out.end()) out.push_back(addr);
        }
    }
    return out;
}

}  // namespace ferry
