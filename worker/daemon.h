// --daemon and --pid-file (POSIX only: daemon_posix.cpp).
#pragma once
#include <string>

namespace ferry::worker {

// Classic double fork, done before any thread starts (a fork keeps only the
// calling thread). Returns, in the daemon, the pipe on which it tells the
// waiting first parent "ready" (report_ready) or why it failed
// (report_failure): the shell gets exit 0 once the daemon listens, or the
// error and exit 1.
int daemonize();
void report_ready(int fd);
void report_failure(int fd, const char* why);

// The pid file, locked for the worker's life (flock), so a second worker
// given the same file is refused while the first runs, and a file left by a
// worker that died (unlocked) is taken over. Returns its descriptor (kept
// open until exit) or throws naming the running worker.
int claim_pid_file(const std::string& path);

}  // namespace ferry::worker
