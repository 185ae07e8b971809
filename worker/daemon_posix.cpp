// The classic Unix daemon and its pid file (--daemon, --pid-file); on
// Windows the worker is a service instead (windows_service.cpp).
#include "worker/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <spdlog/spdlog.h>

#include "common/error.h"

namespace ferry::worker {

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

int claim_pid_file(const std::string& path) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) throw ferry::Error("--pid-file " + path + ": cannot open it: " + std::strerror(errno));
    char old[32] = {};
    (void)!pread(fd, old, sizeof old - 1, 0);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        throw ferry::Error("--pid-file " + path + ": a running ferry-worker (pid " + std::to_string(std::atoi(old)) +
                           ") holds it; stop that one or give another --pid-file");
    }
    if (std::atoi(old) > 0) spdlog::info("--pid-file {}: taking over from pid {}, which is not running", path, std::atoi(old));
    const std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
        throw ferry::Error("--pid-file " + path + ": cannot write it");
    return fd;
}

void report_ready(int fd) {
    const char ok = 1;
    (void)!write(fd, &ok, 1);
    close(fd);
}

void report_failure(int fd, const char* why) {
    (void)!write(fd, why, std::strlen(why));
    close(fd);
}

}  // namespace ferry::worker
