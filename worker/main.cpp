// ferry-worker: holds a contiguous range of a model's layers and runs them
// for a coordinator, forwarding activations to the next worker.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/exit_codes.h"
#include "common/net/hash.h"
#include "common/net/shard_cache.h"
#include "common/process_stats.h"
#include "common/logging.h"
#include "common/shard_memory.h"
#include "common/version.h"
#include "kernels/cpu_features.h"
#include "worker/worker.h"
#ifdef _WIN32
#include "worker/windows_service.h"
#else
#include "worker/daemon.h"
#endif

#ifdef FERRY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace {

void notify(std::string what) {
#ifdef FERRY_HAVE_SYSTEMD
    // One assignment per message: a newline in text a peer chose (a model or coordinator name) must not add one.
    for (char& c : what)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    if (std::getenv("NOTIFY_SOCKET")) sd_notify(0, what.c_str());
#else
    (void)what;
#endif
}

// systemd's hooks: STATUS= with what the worker holds, WATCHDOG=1 at half
// the unit's WatchdogSec (from the network thread: a hung thread is restarted).
void add_service_hooks(ferry::worker::WorkerOptions& o) {
#ifdef FERRY_HAVE_SYSTEMD
    if (!std::getenv("NOTIFY_SOCKET")) return;
    o.on_state = [](const std::string& state) { notify("STATUS=" + state); };
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        o.on_alive = [] { notify("WATCHDOG=1"); };
        o.alive_every_s = usec / 2e6;
    }
#else
    (void)o;
#endif
}

// --cache-list: one line per file of the shard cache, most recently used first.
int list_cache(const std::string& dir) {
    std::vector<ferry::net::CacheFile> files = ferry::net::list_cache(dir);
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.age_s < b.age_s; });
    uint64_t total = 0;
    for (const auto& f : files) {
        std::printf("%10s  used %-10s %s%s\n", ferry::format_bytes(f.bytes).c_str(),
                    (std::to_string(static_cast<long long>(f.age_s / 3600)) + " h ago").c_str(), f.path.c_str(),
                    f.partial ? "  (partial transfer)" : "");
        total += f.bytes;
    }
    std::printf("%zu file%s, %s in %s\n", files.size(), files.size() == 1 ? "" : "s", ferry::format_bytes(total).c_str(),
                dir.c_str());
    return 0;
}

// --cache-prune: partial transfers untouched for an hour, and with --cache-max
// the least recently used shards over it (--cache-max 0: every shard).
int prune_cache(const std::string& dir, const std::string& cache_max, uint64_t max_bytes) {
    if (cache_max.empty())
        throw ferry::Error("--cache-prune needs --cache-max SIZE: how much the cache may keep (0 empties it)");
    uint64_t removed = 0;
    const auto files = ferry::net::prune_cache(dir, max_bytes == 0 ? 1 : max_bytes);
    for (const auto& f : files) {
        std::printf("removed %s (%s)\n", f.path.c_str(), ferry::format_bytes(f.bytes).c_str());
        removed += f.bytes;
    }
    std::printf("removed %zu file%s, %s\n", files.size(), files.size() == 1 ? "" : "s", ferry::format_bytes(removed).c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace ferry;
    CLI::App app{"ferry-worker: hold a range of a model's layers and run them for a ferry coordinator"};
#if defined(_WIN32)
    const char* systemd = "\nWindows service: --install-service";
#elif defined(FERRY_HAVE_SYSTEMD)
    const char* systemd = "\nsystemd notify: yes (READY, STATUS, WATCHDOG)";
#else
    const char* systemd = "\nsystemd notify: no (use Type=simple in the unit)";
#endif
    app.set_version_flag("--version", version_text("ferry-worker") + systemd,
                         "Version, git commit, build type, kernel levels and systemd support");
    worker::WorkerOptions o;
    std::string memory, cache_max, log_level = "info", log_file, pid_file, kernels_name = "auto";
    [[maybe_unused]] bool daemon = false;
    app.add_option("--listen", o.listen, "HOST:PORT to listen on (default 0.0.0.0:7070; port 0 picks a free one)");
    std::string key_file;
    app.add_option("--key-file", key_file,
                   "The pool's cluster key (from `ferry keygen`): only peers holding it get in, and every link is "
                   "encrypted. Default: $FERRY_KEY_FILE, else ferry.key in $CREDENTIALS_DIRECTORY (systemd LoadCredential=)");
    app.add_flag("--insecure", o.insecure,
                 "Listen on a non-loopback address without a cluster key: anyone who reaches the port may use this "
                 "worker (a trusted LAN only)");
    app.add_option("--name", o.name, "How this worker names itself in messages (default: the listen address)");
    app.add_option("--threads", o.threads, "Compute threads (default: one per core)")->check(CLI::Range(0, 1024));
    app.add_option("--memory", memory,
                   "Memory budget, e.g. 128M or 1.5G: a hard cap on the worker's peak RSS. An assignment that does "
                   "not fit (weights, KV cache, workspace, request buffers, the process) is refused with the "
                   "numbers; the start-up speed probe stays within an eighth of it, or of the available RAM without a budget (default: unlimited)");
    app.add_option("--cache-dir", o.cache_dir,
                   "Where received shards are kept (default: $FERRY_CACHE_DIR, $XDG_CACHE_HOME/ferry or ~/.cache/ferry; "
                   "on Windows %LOCALAPPDATA%\\ferry)");
    app.add_option("--cache-max", cache_max,
                   "Most bytes the shard cache may hold, e.g. 2G: least recently used shards are removed to stay "
                   "within it, and a shard larger than it is refused. Partial transfers untouched for an hour are "
                   "removed whatever the bound (default: unlimited)");
    app.add_option("--model-dir", o.model_dir,
                   "A directory with whole model files: a file of the model's size and content hash (XXH3-128, "
                   "cached under --cache-dir/model-hashes) is mapped and its range loaded from disk instead of "
                   "received over the network");
    app.add_option("--kernels", kernels_name,
                   "Kernel instruction set: scalar, sse2, ssse3, avx2, avxvnni or avx512 on x86, scalar, neon or dotprod on "
                   "ARM (dotprod: aarch64 only), or auto (default: the best this CPU has)");
    app.add_option("--handshake-timeout", o.handshake_timeout_s,
                   "Seconds a new connection has to send its hello, and a coordinator its assignment after it; a "
                   "peer that says nothing or dribbles bytes is dropped after it (default 5)")
        ->check(CLI::Range(0.1, 3600.0));
    app.add_option("--timeout", o.link_timeout_s,
                   "Seconds without a whole frame after which a link (coordinator, previous or next stage) is dead "
                   "and the session ends; a frame being received gets its size at 1 Mbit/s on top; peers send "
                   "heartbeats every second, or a third of this if shorter (default 10)")
        ->check(CLI::Range(0.5, 86400.0));
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off (default info)")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
#ifdef _WIN32
    app.add_option("--log-file", log_file, "Log to this file instead of stderr");
#else
    app.add_option("--log-file", log_file, "Log to this file instead of stderr; SIGHUP reopens it (for logrotate)");
#endif
#ifdef _WIN32
    bool install_service = false, uninstall_service = false, as_service = false;
    app.add_flag("--install-service", install_service,
                 "Register this worker, with the other options given, as the Windows service ferry-worker (starts "
                 "at boot, restarts 5 s after a failure) and start it; paths are made absolute, and without "
                 "--log-file / --cache-dir it logs to and caches under %ProgramData%\\ferry. Needs an administrator");
    app.add_flag("--uninstall-service", uninstall_service, "Stop and remove the Windows service ferry-worker");
    app.add_flag("--service", as_service, "Run under the service control manager (the installed service's command line)")
        ->group("");
#else
    app.add_flag("--daemon", daemon,
                 "Run as a classic daemon: double fork, setsid, chdir / (relative paths are resolved first); the "
                 "shell gets exit 0 once the port is bound (or the start-up error and exit 1). Needs --log-file; use "
                 "--pid-file to stop it");
    app.add_option("--pid-file", pid_file,
                   "Write the worker's pid here (with --daemon: the daemon's), locked while it runs: a second worker "
                   "given the same file is refused, a file left by a dead one is taken over; removed at exit");
#endif
    bool cache_list = false, cache_prune = false;
    app.add_flag("--cache-list", cache_list, "List the shard cache (--cache-dir) and exit");
    app.add_flag("--cache-prune", cache_prune,
                 "Remove partial transfers untouched for an hour and the least recently used shards over "
                 "--cache-max (0: all of them), then exit");
#ifdef _WIN32
    app.footer(
        "Runs in the console by default; --install-service makes it a Windows service. Ctrl+C, Ctrl+Break, closing\n"
        "the console window, a shutdown or `sc stop ferry-worker` finish the request in flight (at most 5 s), tell\n"
        "the coordinator, close every connection and exit 0. One coordinator at a time; `ferry status` may ask at\n"
        "any time. With a cluster key (--key-file) every peer proves it before anything else, links are encrypted,\n"
        "and the worker announces itself on the LAN (UDP multicast 239.255.70.70:7071) so coordinators with the key\n"
        "find it; without one it listens on loopback only, unless --insecure. Allow the port in Windows Firewall.\n"
        "Exit codes: 0 stopped, 1 cannot start (the message says why), 2 usage.\n"
        "Example: ferry-worker.exe --listen 0.0.0.0:7070 --key-file ferry.key --memory 128M --install-service");
#else
    app.footer(
        "Runs in the foreground by default (for systemd: deploy/ferry-worker.service, Type=notify, with STATUS=\n"
        "and the watchdog). SIGTERM or SIGINT finish the request in flight (at most 5 s), tell the coordinator,\n"
        "close every connection and exit 0; SIGHUP reopens --log-file. One coordinator at a time; `ferry status`\n"
        "may ask at any time. With a cluster key (--key-file) every peer proves it before anything else, links are\n"
        "encrypted, and the worker announces itself on the LAN (UDP multicast 239.255.70.70:7071) so coordinators\n"
        "with the key find it; without one it listens on loopback only, unless --insecure.\n"
        "Exit codes: 0 stopped, 1 cannot start (the message says why), 2 usage.\n"
        "Example: ferry-worker --listen 0.0.0.0:7070 --key-file ferry.key --memory 128M --cache-dir /var/cache/ferry");
#endif
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? kExitOk : kExitUsage;
    }
    [[maybe_unused]] int ready_fd = -1;
    int pid_fd = -1;
    // The worker's life once its options are checked: under the Windows
    // service manager, the service's body.
    auto serve = [&]() -> int {
        try {
            setup_logging(log_level, log_file);
            std::string key_source;
            o.key = net::find_cluster_key(key_file, &key_source);
            if (o.key) spdlog::info("cluster key from {}: peers must prove it; links are encrypted", key_source);
#ifndef _WIN32
            if (daemon) ready_fd = worker::daemonize();
            if (!pid_file.empty()) pid_fd = worker::claim_pid_file(pid_file);
#endif
            add_service_hooks(o);
            worker::Worker w(o);  // binds the port and starts the threads
            // A budget below what the idle process already holds can never fit a shard: say so now, not at the first assignment.
            const uint64_t idle = read_process_memory().rss;
            if (o.memory_budget > 0 && o.memory_budget <= idle)
                spdlog::warn("--memory {} is below this worker's own footprint ({} resident, idle): it can never accept a "
                             "shard; give it more",
                             format_bytes(o.memory_budget), format_bytes(idle));
            if (const uint64_t cap = cgroup_memory_limit(); o.memory_budget > 0 && cap > 0 && cap < o.memory_budget)
#ifdef _WIN32
                spdlog::warn("--memory {} is above the memory limit of {} of this process's job object: Windows would "
                             "refuse it memory before it reached its budget; raise the limit or lower --memory",
                             format_bytes(o.memory_budget), format_bytes(cap));
#else
                spdlog::warn("--memory {} is above this process's cgroup limit of {} (systemd's MemoryMax=): the kernel "
                             "would kill the worker before it reached its budget; raise MemoryMax or lower --memory",
                             format_bytes(o.memory_budget), format_bytes(cap));
#endif
#ifdef _WIN32
            worker::service_running();
#else
            if (ready_fd >= 0) worker::report_ready(ready_fd);
            ready_fd = -1;
#endif
            notify("READY=1");
            w.run();
            notify("STOPPING=1");
            if (pid_fd >= 0) std::remove(pid_file.c_str());
            spdlog::default_logger()->flush();
        } catch (const std::exception& e) {
#ifndef _WIN32
            if (ready_fd >= 0) worker::report_failure(ready_fd, e.what());
#endif
            if (pid_fd >= 0) std::remove(pid_file.c_str());  // claimed, but the worker never ran
            std::fprintf(stderr, "ferry-worker: error: %s\n", e.what());
            if (!log_file.empty()) spdlog::error("{}", e.what());  // on stderr it would say it twice
            return kExitError;
        }
        return kExitOk;
    };
    // Checks the options and does what ends at once (--cache-list, installing the
    // service ...): an exit code, or nothing when the worker is to run.
    auto prepare = [&]() -> std::optional<int> {
#ifdef _WIN32
        // A service's working directory is the system's and it has no console: its own log and cache.
        if (as_service || install_service) {
            if (log_file.empty()) log_file = worker::service_data_dir() + "\\ferry-worker.log";
            if (o.cache_dir.empty()) o.cache_dir = worker::service_data_dir() + "\\cache";
        }
#endif
        try {
            if (!memory.empty() && !parse_bytes(memory, &o.memory_budget))
                throw Error("--memory " + memory + ": expected a size such as 128M, 1.5G or 65536");
            if (!cache_max.empty() && !parse_bytes(cache_max, &o.cache_max))
                throw Error("--cache-max " + cache_max + ": expected a size such as 2G, 800M or 65536");
#ifdef _WIN32
            if (uninstall_service) {
                std::printf("%s\n", worker::uninstall_service().c_str());
                return kExitOk;
            }
#endif
            if (o.cache_dir.empty()) o.cache_dir = net::default_cache_dir();
            if (cache_list) return list_cache(o.cache_dir);
            if (cache_prune) return prune_cache(o.cache_dir, cache_max, o.cache_max);
#ifndef _WIN32
            if (daemon && log_file.empty()) throw Error("--daemon needs --log-file (stderr goes to /dev/null)");
#endif
            // --daemon changes directory to / and a service starts in the system's: every path the worker keeps is
            // made absolute before.
            for (std::string* path : {&pid_file, &log_file, &o.cache_dir, &o.model_dir, &key_file})
                if (!path->empty() && !std::filesystem::path(*path).is_absolute())
                    *path = std::filesystem::absolute(*path).string();
            if (std::string why; !kernels::select_level(kernels_name, &why)) throw Error(why);
#ifdef _WIN32
            if (install_service) {
                std::string key_source;
                const bool keyed = net::find_cluster_key(key_file, &key_source).has_value();  // refused now, not at every restart
                std::vector<std::string> args;
                for (const CLI::Option* opt : app.get_options()) {
                    const std::string name = opt->get_name();
                    if (opt->count() == 0 || name == "--install-service" || name == "--help" || name == "--version") continue;
                    if (opt->get_type_size() == 0) {
                        args.push_back(name);
                        continue;
                    }
                    const std::string* path = name == "--log-file"    ? &log_file
                                              : name == "--cache-dir" ? &o.cache_dir
                                              : name == "--model-dir" ? &o.model_dir
                                              : name == "--key-file"  ? &key_file
                                                                      : nullptr;
                    for (const std::string& value : opt->results()) args.insert(args.end(), {name, path ? *path : value});
                }
                for (const auto& [flag, value] : {std::pair{"--log-file", &log_file}, std::pair{"--cache-dir", &o.cache_dir}})
                    if (app.get_option(flag)->count() == 0) args.insert(args.end(), {flag, *value});
                // A key found through FERRY_KEY_FILE: the service does not see this prompt's environment.
                if (keyed && key_file.empty())
                    args.insert(args.end(), {"--key-file", std::filesystem::absolute(key_source).string()});
                std::error_code ec;
                std::filesystem::create_directories(std::filesystem::path(log_file).parent_path(), ec);
                std::filesystem::create_directories(o.cache_dir, ec);
                worker::install_service(args);
                std::printf("installed and started the service %s (starts at boot, restarts 5 s after a failure); log: "
                            "%s, cache: %s\n",
                            worker::kServiceName, log_file.c_str(), o.cache_dir.c_str());
                return kExitOk;
            }
#endif
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ferry-worker: error: %s\n", e.what());
#ifdef _WIN32
            if (as_service) {  // nobody reads stderr: the service's log says why it did not start
                try {
                    setup_logging(log_level, log_file);
                    spdlog::error("{}", e.what());
                } catch (const std::exception&) {
                }
            }
#endif
            return kExitError;
        }
        return std::nullopt;
    };
#ifdef _WIN32
    if (as_service) {
        try {
            return worker::run_as_service([&] {
                const std::optional<int> code = prepare();
                return code ? *code : serve();
            });
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ferry-worker: error: %s\n", e.what());
            return kExitError;
        }
    }
#endif
    if (const std::optional<int> code = prepare()) return *code;
    return serve();
}
