// The few facts about the machine and the process that each operating
// system tells its own way (system_posix.cpp, system_windows.cpp).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ferry {

bool is_terminal(std::FILE* stream);
// True if stderr is read by systemd's journal (JOURNAL_STREAM names it), so
// log lines carry <priority> prefixes instead of times; false on Windows.
bool stderr_is_journal();
// ferry's cache folder when none is given: $XDG_CACHE_HOME/ferry, else
// ~/.cache/ferry, else /tmp/ferry-cache on POSIX; %LOCALAPPDATA%\ferry,
// else ferry-cache in the temporary folder, on Windows.
std::string default_cache_folder();
// How many files and sockets this process may hold open: "1024", or
// "unlimited" (Windows has no such table).
std::string open_file_limit();
// True if users other than the owner may read `path` (POSIX mode bits; on
// Windows access is by ACL, inherited from the folder: not judged here).
// *mode gets the bits when there are some.
bool readable_by_others(const std::string& path, unsigned* mode);
// IPv4 addresses (host byte order) of the interfaces that are up, not
// loopback and able to multicast: where LAN beacons go.
std::vector<uint32_t> multicast_interface_addresses();

}  // namespace ferry
