// `ferry keygen`: a new cluster key (common/net/cluster_key.h). The same file
// goes to every machine of the pool: workers (--key-file, or the systemd
// credential) and coordinators (--key-file or FERRY_KEY_FILE).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "common/net/cluster_key.h"
#include "coordinator/commands/commands.h"

namespace ferry {

namespace {

struct KeygenArgs {
    std::string out;
    bool force = false;
};

int cmd_keygen(const KeygenArgs& a) {
    const std::string key = net::new_key_text();
    if (a.out.empty()) {
        std::fwrite(key.data(), 1, key.size(), stdout);
        return std::fflush(stdout) == 0 ? 0 : 1;
    }
    if (!a.force && ::access(a.out.c_str(), F_OK) == 0)
        throw Error("cannot write the key to " + a.out + ": it exists (another pool's key? --force replaces it)");
    // A new file readable by its owner only from the first byte on, renamed
    // over the old one once complete: never a moment with a half-written or
    // world-readable key.
    const std::string tmp = a.out + ".new";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) throw Error("cannot write the key to " + tmp + ": " + std::strerror(errno));
    bool ok = ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && ::fsync(fd) == 0;
    ok = ::close(fd) == 0 && ok;
    if (!ok || ::rename(tmp.c_str(), a.out.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        throw Error("cannot write the key to " + a.out + ": " + why);
    }
    std::fprintf(stderr, "wrote a new cluster key to %s (mode 600); copy it to every machine of the pool\n", a.out.c_str());
    return 0;
}

}  // namespace

void register_keygen(CLI::App& app, std::vector<Command>& commands) {
    static KeygenArgs a;
    CLI::App* cmd = app.add_subcommand("keygen", "Make a new cluster key (256 random bits) for a pool of workers");
    cmd->add_option("-o,--out", a.out, "Write it to this file, readable by its owner only (default: standard output)");
    cmd->add_flag("--force", a.force, "With --out: replace an existing file");
    cmd->footer(
        "Give the same key to every machine: `ferry-worker --key-file ferry.key` (or the systemd unit's\n"
        "LoadCredential=ferry.key:/etc/ferry/ferry.key), and `ferry run|chat|serve|plan|status --key-file ferry.key`\n"
        "(or FERRY_KEY_FILE). Every link then proves the key both ways and is encrypted (ChaCha20-Poly1305), and\n"
        "workers announce themselves, so --workers may be left out. A machine without the key gets nothing.\n"
        "Example: ferry keygen -o /etc/ferry/ferry.key");
    commands.push_back({cmd, [] { return cmd_keygen(a); }, nullptr});
}

}  // namespace ferry
