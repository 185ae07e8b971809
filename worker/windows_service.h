// ferry-worker as a Windows service (windows_service.cpp): installed with
// its options, started at boot by the service control manager, restarted
// when it fails, stopped like Ctrl+C stops it in a console.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace ferry::worker {

constexpr const char* kServiceName = "ferry-worker";

// Registers this executable as the service kServiceName, started at boot,
// restarted 5 s after a failure (a crash or a non-zero exit), run with
// `--service` and `args`, and starts it. Throws ferry::Error with the
// reason (not an administrator, already installed).
void install_service(const std::vector<std::string>& args);
// Stops the service if it runs and removes it; says what it did.
std::string uninstall_service();
// Runs `serve` as the service's body under the service control manager and
// returns its exit code: `serve` calls service_running() once it listens;
// a stop from the manager reaches the worker as StopSignals does.
int run_as_service(const std::function<int()>& serve);
void service_running();
// Where an installed service keeps its log and shard cache when not told:
// %ProgramData%\ferry (one per machine, not the installing user's profile).
std::string service_data_dir();

}  // namespace ferry::worker
