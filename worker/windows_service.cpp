#include "worker/windows_service.h"

#include <windows.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "common/error.h"
#include "common/platform/file.h"
#include "worker/stop_signals.h"

namespace ferry::worker {

namespace {

struct ServiceHandle {
    SC_HANDLE h = nullptr;
    explicit ServiceHandle(SC_HANDLE handle) : h(handle) {}
    ~ServiceHandle() {
        if (h) CloseServiceHandle(h);
    }
    ServiceHandle(const ServiceHandle&) = delete;
    ServiceHandle& operator=(const ServiceHandle&) = delete;
};

SC_HANDLE open_manager() {
    SC_HANDLE m = OpenSCManagerA(nullptr, nullptr, SC_MANAGER_ALL_ACCESS);
    if (!m)
        throw Error("cannot open the service control manager: " + last_system_error() +
                    " (run the command from an administrator's prompt)");
    return m;
}

// One argument as CommandLineToArgvW reads it back: quoted when it has a
// space or quote, inner quotes and the backslashes before them escaped.
std::string quote(const std::string& arg) {
    if (!arg.empty() && arg.find_first_of(" \t\"") == std::string::npos) return arg;
    std::string out = "\"";
    size_t slashes = 0;
    for (char c : arg) {
        if (c == '\\') {
            ++slashes;
            continue;
        }
        out.append(c == '"' ? 2 * slashes + 1 : slashes, '\\');
        slashes = 0;
        out += c;
    }
    out.append(2 * slashes, '\\');
    return out + "\"";
}

std::string this_executable() {
    char path[MAX_PATH * 2] = {};
    const DWORD n = GetModuleFileNameA(nullptr, path, sizeof path);
    if (n == 0 || n >= sizeof path) throw Error("cannot find this executable's path: " + last_system_error());
    return path;
}

SERVICE_STATUS_HANDLE g_status_handle = nullptr;
SERVICE_STATUS g_status{};
const std::function<int()>* g_serve = nullptr;
int g_exit_code = 0;

void set_state(DWORD state, DWORD exit_code = 0) {
    g_status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
    g_status.dwCurrentState = state;
    g_status.dwControlsAccepted = state == SERVICE_RUNNING ? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN : 0;
    // A non-zero exit is a failure the manager's recovery actions answer (a restart).
    g_status.dwWin32ExitCode = exit_code == 0 ? NO_ERROR : ERROR_SERVICE_SPECIFIC_ERROR;
    g_status.dwServiceSpecificExitCode = exit_code;
    g_status.dwWaitHint = state == SERVICE_START_PENDING ? 60000 : state == SERVICE_STOP_PENDING ? 10000 : 0;
    if (g_status_handle) SetServiceStatus(g_status_handle, &g_status);
}

DWORD WINAPI on_control(DWORD control, DWORD, void*, void*) {
    if (control == SERVICE_CONTROL_STOP || control == SERVICE_CONTROL_SHUTDOWN) {
        set_state(SERVICE_STOP_PENDING);
        StopSignals::request_stop(control == SERVICE_CONTROL_STOP ? "service stop" : "system shutdown");
        return NO_ERROR;
    }
    return control == SERVICE_CONTROL_INTERROGATE ? NO_ERROR : ERROR_CALL_NOT_IMPLEMENTED;
}

void WINAPI service_main(DWORD, char**) {
    g_status_handle = RegisterServiceCtrlHandlerExA(kServiceName, on_control, nullptr);
    if (!g_status_handle) return;
    set_state(SERVICE_START_PENDING);
    g_exit_code = (*g_serve)();
    set_state(SERVICE_STOPPED, static_cast<DWORD>(g_exit_code));
}

}  // namespace

std::string service_data_dir() {
    const char* data = std::getenv("ProgramData");
    return std::string(data && *data ? data : "C:\\ProgramData") + "\\ferry";
}

void install_service(const std::vector<std::string>& args) {
    std::string command = quote(this_executable()) + " --service";
    for (const std::string& a : args) command += " " + quote(a);
    const ServiceHandle manager(open_manager());
    const ServiceHandle service(CreateServiceA(manager.h, kServiceName, "ferry worker", SERVICE_ALL_ACCESS,
                                               SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START, SERVICE_ERROR_NORMAL,
                                               command.c_str(), nullptr, nullptr, nullptr, nullptr, nullptr));
    if (!service.h) {
        if (GetLastError() == ERROR_SERVICE_EXISTS)
            throw Error(std::string("the service ") + kServiceName +
                        " is already installed: remove it first with --uninstall-service");
        throw Error(std::string("cannot create the service ") + kServiceName + ": " + last_system_error());
    }
    char description[] = "Holds a range of a language model's layers and runs them for a ferry coordinator";
    SERVICE_DESCRIPTIONA d{description};
    ChangeServiceConfig2A(service.h, SERVICE_CONFIG_DESCRIPTION, &d);
    // Restart 5 s after every failure; the count of failures resets after a day.
    SC_ACTION restart[3] = {{SC_ACTION_RESTART, 5000}, {SC_ACTION_RESTART, 5000}, {SC_ACTION_RESTART, 5000}};
    SERVICE_FAILURE_ACTIONSA actions{};
    actions.dwResetPeriod = 24 * 3600;
    actions.cActions = 3;
    actions.lpsaActions = restart;
    if (!ChangeServiceConfig2A(service.h, SERVICE_CONFIG_FAILURE_ACTIONS, &actions)) {
        const std::string why = last_system_error();
        DeleteService(service.h);  // not half installed
        throw Error("cannot set the service's restart on failure: " + why + "; nothing was installed");
    }
    // Also when the worker exits with an error, not only when it crashes.
    SERVICE_FAILURE_ACTIONS_FLAG on_error{TRUE};
    ChangeServiceConfig2A(service.h, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, &on_error);
    if (!StartServiceA(service.h, 0, nullptr))
        throw Error(std::string("installed the service ") + kServiceName + " but cannot start it: " + last_system_error() +
                    " (see its log, then `sc start " + kServiceName + "`)");
}

std::string uninstall_service() {
    const ServiceHandle manager(open_manager());
    const ServiceHandle service(OpenServiceA(manager.h, kServiceName, SERVICE_ALL_ACCESS));
    if (!service.h) throw Error(std::string("no service ") + kServiceName + " to remove: " + last_system_error());
    SERVICE_STATUS status{};
    if (ControlService(service.h, SERVICE_CONTROL_STOP, &status) || GetLastError() == ERROR_SERVICE_NOT_ACTIVE) {
        // The worker drains its request in flight (at most 5 s) before it stops.
        for (int i = 0; i < 150 && QueryServiceStatus(service.h, &status) && status.dwCurrentState != SERVICE_STOPPED; ++i)
            Sleep(100);
    }
    const bool stopped = QueryServiceStatus(service.h, &status) && status.dwCurrentState == SERVICE_STOPPED;
    if (!DeleteService(service.h))
        throw Error(std::string("cannot remove the service ") + kServiceName + ": " + last_system_error());
    if (!stopped)
        return std::string("removed the service ") + kServiceName +
               ", which has not stopped yet: Windows deletes it once it does (`sc query " + kServiceName + "`)";
    return std::string("stopped and removed the service ") + kServiceName;
}

int run_as_service(const std::function<int()>& serve) {
    g_serve = &serve;
    char name[64];
    std::snprintf(name, sizeof name, "%s", kServiceName);
    SERVICE_TABLE_ENTRYA table[] = {{name, service_main}, {nullptr, nullptr}};
    if (!StartServiceCtrlDispatcherA(table))
        throw Error("--service is for the service control manager (install with --install-service): " +
                    last_system_error());
    return g_exit_code;
}

void service_running() {
    if (g_status_handle) set_state(SERVICE_RUNNING);
}

}  // namespace ferry::worker
