// SIGTERM, SIGINT and SIGHUP for the worker, read as data rather than caught
// by a handler: all are blocked in every thread (the mask is set before any
// thread starts) and a signalfd delivers them to the io thread, which drains
// and stops. No code ever runs asynchronously in an interrupted thread.
//
// Why not a handler (asio::signal_set): under qemu-i386 (7.2, linux-user) the
// return from a signal handler reloads %gs from one GDT shared by all guest
// threads, so the interrupted thread went on with the thread-local storage of
// the last thread started and crashed (SIGSEGV on SIGTERM of the i686 worker;
// a 20-line C program shows it, docs/PROTOCOL.md). Native kernels keep the TLS
// entries per thread; the signalfd way is right on both.
//
// On Windows (stop_signals_windows.cpp) Ctrl+C, Ctrl+Break, closing the
// console, a shutdown and the service manager's stop take the same path.
#pragma once
#include <asio.hpp>
#include <functional>
#include <memory>

namespace ferry::worker {

class StopSignals {
public:
    // Blocks SIGTERM, SIGINT and SIGHUP in the calling thread, so in every thread it
    // starts afterwards. Throws ferry::Error if the signalfd cannot be made.
    StopSignals(asio::io_context& io);
    ~StopSignals();
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

    // on_signal("SIGTERM", "SIGINT" or "SIGHUP"; on Windows "Ctrl+C",
    // "console closed", "service stop" ...) runs on the io thread, once per wait.
    void async_wait(std::function<void(const char* name)> on_signal);
    void cancel();
    // A stop from elsewhere in the process (the Windows service manager's
    // thread): delivered like a signal to the StopSignals alive, if any.
    static void request_stop(const char* why);

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::worker
