// Windows has no signals: Ctrl+C, Ctrl+Break, closing the console window,
// a system shutdown and the service manager's stop arrive on a thread that
// Windows (or the service dispatcher) starts for them. They are handed to the
// io thread as the POSIX signals are, so the worker drains the same way.
#include "worker/stop_signals.h"

#include <windows.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

namespace ferry::worker {

namespace {
// Never destroyed: a console-close handler may still wait on them while the
// process exits.
std::mutex& g_mu = *new std::mutex;
std::condition_variable& g_gone = *new std::condition_variable;
StopSignals::Impl* g_active = nullptr;  // the one StopSignals alive, if any
void deliver(const char* name);

BOOL WINAPI on_console_event(DWORD type) {
    switch (type) {
        case CTRL_C_EVENT: deliver("Ctrl+C"); return TRUE;
        case CTRL_BREAK_EVENT: deliver("Ctrl+Break"); return TRUE;
        case CTRL_CLOSE_EVENT:
        case CTRL_SHUTDOWN_EVENT: {
            deliver(type == CTRL_CLOSE_EVENT ? "console closed" : "system shutdown");
            // Windows ends the process when this returns (or after about 5 s):
            // hold it while the worker drains, so that main() returns first.
            std::unique_lock<std::mutex> lock(g_mu);
            g_gone.wait_for(lock, std::chrono::milliseconds(4500), [] { return g_active == nullptr; });
            lock.unlock();
            Sleep(500);  // main's last lines (the log's flush) after the drain
            return TRUE;
        }
        default: return FALSE;  // a logoff does not concern a worker or a service
    }
}
}  // namespace

struct StopSignals::Impl {
    asio::io_context& io;
    std::function<void(const char*)> waiting;
    std::deque<const char*> pending;  // arrived while nobody waited
    explicit Impl(asio::io_context& i) : io(i) {}
};

namespace {
void deliver(const char* name) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_active) return;
    if (!g_active->waiting) {
        g_active->pending.push_back(name);
        return;
    }
    asio::post(g_active->io, [cb = std::move(g_active->waiting), name] { cb(name); });
    g_active->waiting = nullptr;
}
}  // namespace

StopSignals::StopSignals(asio::io_context& io) : impl_(std::make_unique<Impl>(io)) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_active = impl_.get();
    SetConsoleCtrlHandler(on_console_event, TRUE);
}

StopSignals::~StopSignals() {
    {
        std::lock_guard<std::mutex> lock(g_mu);
        if (g_active == impl_.get()) g_active = nullptr;
    }
    g_gone.notify_all();
    // Ctrl+C has its default meaning again (a close event being handled goes on).
    SetConsoleCtrlHandler(on_console_event, FALSE);
}

void StopSignals::async_wait(std::function<void(const char* name)> on_signal) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!impl_->pending.empty()) {
        const char* name = impl_->pending.front();
        impl_->pending.pop_front();
        asio::post(impl_->io, [cb = std::move(on_signal), name] { cb(name); });
        return;
    }
    impl_->waiting = std::move(on_signal);
}

void StopSignals::cancel() {
    std::lock_guard<std::mutex> lock(g_mu);
    impl_->waiting = nullptr;
}

void StopSignals::request_stop(const char* why) { deliver(why); }

}  // namespace ferry::worker
