// Ctrl+C (SIGINT) or SIGTERM during `ferry run`: the generation loop stops at
// the next token, the text so far is already printed, the node table and
// --ids-out are written, and ferry exits 130 (kExitInterrupted). A second
// signal ends the process at once, as without the handler.
#pragma once
#include <atomic>

namespace ferry {

class Interrupt {
public:
    Interrupt();   // installs the handlers
    ~Interrupt();  // restores the previous ones
    Interrupt(const Interrupt&) = delete;
    Interrupt& operator=(const Interrupt&) = delete;
    const std::atomic<bool>& requested() const;
};

}  // namespace ferry
