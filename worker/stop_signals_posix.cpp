#include "worker/stop_signals.h"

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace ferry::worker {

struct StopSignals::Impl {
    sigset_t set{};
    sigset_t previous{};
    asio::posix::stream_descriptor fd;
    signalfd_siginfo info{};
    explicit Impl(asio::io_context& io) : fd(io) {}
};

StopSignals::StopSignals(asio::io_context& io) : impl_(std::make_unique<Impl>(io)) {
    sigemptyset(&impl_->set);
    sigaddset(&impl_->set, SIGTERM);
    sigaddset(&impl_->set, SIGINT);
    sigaddset(&impl_->set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &impl_->set, &impl_->previous);
    const int fd = signalfd(-1, &impl_->set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        pthread_sigmask(SIG_SETMASK, &impl_->previous, nullptr);
        throw Error(std::string("cannot receive SIGTERM/SIGINT/SIGHUP (signalfd): ") + std::strerror(errno));
    }
    impl_->fd.assign(fd);
}

StopSignals::~StopSignals() {
    asio::error_code ec;
    impl_->fd.close(ec);
    // A signal that came during the drain (a SIGHUP from logrotate) is still
    // pending: take it now, or unblocking would deliver it with its default
    // action and the worker would die by it instead of exiting 0.
    const timespec now{0, 0};
    while (sigtimedwait(&impl_->set, nullptr, &now) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &impl_->previous, nullptr);
}

void StopSignals::async_wait(std::function<void(const char* name)> on_signal) {
    Impl* impl = impl_.get();
    asio::async_read(impl->fd, asio::buffer(&impl->info, sizeof impl->info),
                     [impl, on_signal = std::move(on_signal)](const asio::error_code& ec, size_t n) {
                         if (ec || n != sizeof impl->info) return;
                         const uint32_t sig = impl->info.ssi_signo;
                         on_signal(sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM");
                     });
}

void StopSignals::cancel() {
    asio::error_code ec;
    impl_->fd.cancel(ec);
}

void StopSignals::request_stop(const char*) { ::kill(::getpid(), SIGTERM); }

}  // namespace ferry::worker
