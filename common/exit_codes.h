// The exit codes of ferry and ferry-worker, stable so that scripts and
// service managers can tell what went wrong (README, "Exit codes").
#pragma once

namespace ferry {

enum ExitCode : int {
    kExitOk = 0,
    kExitError = 1,          // bad input: a model or tokenizer file, a value, a pool too small, ...
    kExitUsage = 2,          // the command line: an unknown option, a missing argument
    kExitPeer = 3,           // a worker failed or could not be reached (and could not be recovered from)
    kExitInterrupted = 130,  // SIGINT or SIGTERM stopped a run; what was generated so far was printed
};

}  // namespace ferry
