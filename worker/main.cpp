// ferry-worker: holds a contiguous range of a model's layers and runs them
// for a coordinator, forwarding activations to the next worker.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/logging.h"
#include "common/shard_memory.h"
#include "kernels/cpu_features.h"
#include "worker/worker.h"

#ifdef FERRY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace {

// Classic double fork, done before any thread starts (a fork keeps only the
// calling thread). Returns, in the daemon, the pipe on which it tells the
// waiting first parent "ready" (byte 1) or why it failed (text): the shell
// gets exit 0 once the daemon listens, or the error and exit 1.
int daemonize() {
    int ready[2];
    if (pipe(ready) != 0) throw ferry::Error("--daemon: pipe failed");
    const pid_t first = fork();
    if (first < 0) throw ferry::Error("--daemon: fork failed");
    if (first > 0) {
        close(ready[1]);
        char buf[512];
        const ssize_t n = read(ready[0], buf, sizeof buf);
        if (n == 1 && buf[0] == 1) _exit(0);
        if (n > 0) std::fprintf(stderr, "ferry-worker: error: %.*s\n", static_cast<int>(n), buf);
        else std::fprintf(stderr, "ferry-worker: error: the daemon exited before it was ready\n");
        _exit(1);
    }
    close(ready[0]);
    setsid();
    const pid_t second = fork();
    if (second < 0) _exit(1);
    if (second > 0) _exit(0);
    umask(022);
    if (chdir("/") != 0) _exit(1);
    const int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (devnull > 2) close(devnull);
    }
    return ready[1];
}

void report_ready(int fd, const std::string& pid_file) {
    if (!pid_file.empty()) {
        std::ofstream out(pid_file);
        out << getpid() << "\n";
        if (!out) throw ferry::Error("--pid-file " + pid_file + ": cannot write it");
    }
    const char ok = 1;
    (void)!write(fd, &ok, 1);
    close(fd);
}

void notify_ready() {
#ifdef FERRY_HAVE_SYSTEMD
    if (std::getenv("NOTIFY_SOCKET")) sd_notify(0, "READY=1\nSTATUS=serving");
#endif
}

void notify_stopping() {
#ifdef FERRY_HAVE_SYSTEMD
    if (std::getenv("NOTIFY_SOCKET")) sd_notify(0, "STOPPING=1");
#endif
}

}  // namespace

int main(int argc, char** argv) {
    using namespace ferry;
    CLI::App app{"ferry-worker: hold a range of a model's layers and run them for a ferry coordinator"};
    worker::WorkerOptions o;
    std::string memory, cache_max, log_level = "info", log_file, pid_file, kernels_name = "auto";
    bool daemon = false;
    app.add_option("--listen", o.listen, "HOST:PORT to listen on (default 0.0.0.0:7070; port 0 picks a free one)");
    app.add_option("--name", o.name, "How this worker names itself in messages (default: the listen address)");
    app.add_option("--threads", o.threads, "Compute threads (default: one per core)")->check(CLI::Range(0, 1024));
    app.add_option("--memory", memory,
                   "Memory budget, e.g. 128M or 1.5G: a hard cap on the worker's peak RSS. An assignment that does "
                   "not fit (weights, KV cache, workspace, request buffers, the process) is refused with the "
                   "numbers; the start-up speed probe stays within an eighth of it, or of the available RAM without a budget (default: unlimited)");
    app.add_option("--cache-dir", o.cache_dir,
                   "Where received shards are kept (default: $FERRY_CACHE_DIR, $XDG_CACHE_HOME/ferry or ~/.cache/ferry)");
    app.add_option("--cache-max", cache_max,
                   "Most bytes the shard cache may hold, e.g. 2G: least recently used shards are removed to stay "
                   "within it, and a shard larger than it is refused. Partial transfers untouched for an hour are "
                   "removed whatever the bound (default: unlimited)");
    app.add_option("--model-dir", o.model_dir,
                   "A directory with whole model files: a file of the model's size and content hash (XXH3-128, "
                   "cached under --cache-dir/model-hashes) is mapped and its range loaded from disk instead of "
                   "received over the network");
    app.add_option("--kernels", kernels_name,
                   "Kernel instruction set: scalar, sse2, avx2 or auto (default: the best this CPU has)")
        ->check(CLI::IsMember({"scalar", "sse2", "avx2", "auto"}));
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
    app.add_option("--log-file", log_file, "Log to this file instead of stderr");
    app.add_flag("--daemon", daemon,
                 "Run as a classic daemon: double fork, setsid, chdir /; the shell gets exit 0 once the port is "
                 "bound (or the start-up error and exit 1). Needs --log-file; use --pid-file to stop it");
    app.add_option("--pid-file", pid_file, "With --daemon: write the daemon's pid here");
    app.footer(
        "Runs in the foreground by default (for systemd: deploy/ferry-worker.service, Type=notify).\n"
        "SIGTERM or SIGINT finish the request in flight (at most 5 s), tell the coordinator, close every\n"
        "connection and exit 0. One coordinator at a time; `ferry status` may ask at any time.\n"
        "Example: ferry-worker --listen 0.0.0.0:7070 --memory 128M --cache-dir /var/cache/ferry");
    CLI11_PARSE(app, argc, argv);
    int ready_fd = -1;
    try {
        if (!memory.empty() && !parse_bytes(memory, &o.memory_budget))
            throw Error("--memory " + memory + ": expected a size such as 128M, 1.5G or 65536");
        if (!cache_max.empty() && !parse_bytes(cache_max, &o.cache_max))
            throw Error("--cache-max " + cache_max + ": expected a size such as 2G, 800M or 65536");
        if (daemon && log_file.empty()) throw Error("--daemon needs --log-file (stderr goes to /dev/null)");
        if (!pid_file.empty() && pid_file[0] != '/') pid_file = std::filesystem::absolute(pid_file).string();
        kernels::Level level;
        if (!kernels::parse_level(kernels_name, &level) || !kernels::set_active_level(level))
            throw Error("--kernels " + kernels_name + ": this CPU lacks it (it has: " + kernels::cpu_features_string() + ")");
        setup_logging(log_level, log_file);
        if (daemon) ready_fd = daemonize();
        worker::Worker w(o);  // binds the port and starts the threads
        if (ready_fd >= 0) report_ready(ready_fd, pid_file);
        ready_fd = -1;
        notify_ready();
        w.run();
        notify_stopping();
        if (daemon && !pid_file.empty()) std::remove(pid_file.c_str());
        spdlog::default_logger()->flush();
    } catch (const std::exception& e) {
        if (ready_fd >= 0) {
            (void)!write(ready_fd, e.what(), std::strlen(e.what()));
            close(ready_fd);
        }
        std::fprintf(stderr, "ferry-worker: error: %s\n", e.what());
        if (!log_file.empty()) spdlog::error("{}", e.what());  // on stderr it would say it twice
        return 1;
    }
    return 0;
}
