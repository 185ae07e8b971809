#include "coordinator/commands/interrupt.h"

#include <signal.h>

namespace ferry {

namespace {

std::atomic<bool> g_requested{false};
struct sigaction g_previous_int, g_previous_term;

void on_signal(int sig) {
    if (g_requested.exchange(true)) {  // the second one: the default action
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

}  // namespace

Interrupt::Interrupt() {
    g_requested = false;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;  // a write of the text in progress finishes rather than failing with EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &g_previous_int);
    sigaction(SIGTERM, &sa, &g_previous_term);
}

Interrupt::~Interrupt() {
    sigaction(SIGINT, &g_previous_int, nullptr);
    sigaction(SIGTERM, &g_previous_term, nullptr);
}

const std::atomic<bool>& Interrupt::requested() const { return g_requested; }

}  // namespace ferry
