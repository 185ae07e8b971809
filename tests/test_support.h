// Small helpers the tests share: paths to the shared models and binaries,
// running a command, temporary directories.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/gguf_writer.h"
#include "common/model_file.h"
#include "coordinator/pipeline/pipeline_engine.h"
#include "kernels/cpu_features.h"
#include "tests/level_guard.h"
#include "kernels/thread_pool.h"

namespace ferry::test {

// n normal(0, stddev) floats from a seeded generator: weights and activations for kernel tests.
std::vector<float> normal_floats(size_t n, uint32_t seed, float stddev = 1.0f);

// The kernel levels this CPU has, scalar first.
std::vector<kernels::Level> cpu_levels();

// Tests that compare a process's RSS with a prediction skip in a sanitizer
// build (FERRY_SANITIZE): the sanitizer's shadow memory and quarantine are in the RSS.
#ifdef FERRY_SANITIZED
#define FERRY_SKIP_IF_SANITIZED() GTEST_SKIP() << "measures RSS, which a sanitizer's shadow memory inflates"
#else
#define FERRY_SKIP_IF_SANITIZED() (void)0
#endif

std::string shared_dir();                      // ../shared beside the checkout
std::string model_path(const std::string& name);  // ../shared/models/<name>
std::string reference_path(const std::string& name);
std::string ferry_bin();
std::string worker_bin();
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);

struct CommandResult {
    int exit_code = -1;
    std::string out;  // stdout
    std::string err;  // stderr; "cannot execute ARGV0: <errno text>" when it could not be executed at all
};
// Runs argv (no shell), waits at most timeout_s seconds (then kills it).
CommandResult run_command(const std::vector<std::string>& argv, double timeout_s = 120);

// Starts argv[0] (a path, no PATH search) with stdin from /dev/null and
// stdout/stderr on the given descriptors. Returns the pid, or -1 with
// *exec_error = "cannot execute PATH: <strerror(errno)>" when the kernel
// refused to execute it (the child's errno is sent back through a pipe, so a
// missing binary or one the kernel cannot run is named, not an empty log).
int spawn(const std::vector<std::string>& argv, int out_fd, int err_fd, std::string* exec_error);
// Waits up to timeout_s for child `pid` to exit: its exit code (128 + signal if killed), or -1 on timeout
// (the child is then left running).
int wait_exit(int pid, double timeout_s);
// "exit status 3", "killed by signal 9 (Killed)" for a waitpid status.
std::string describe_exit(int wait_status);

// The 32-bit build (scripts/build-i686.sh): build-i686/<relative>, e.g. "worker/ferry-worker".
std::string i686_binary(const std::string& relative);
// How a test starts an i686 binary. With no `cpu`, as this host can: natively
// where the kernel executes 32-bit programs, else under qemu-i386 (kernels
// built without IA-32 emulation, or booted with ia32_emulation=0). A qemu CPU
// model ("pentium2", "coreduo") always emulates that CPU. FERRY_I686=qemu in
// the environment forces emulation, to test that path on any host.
struct I686Launch {
    bool available = false;           // the binary, and qemu-i386 if it is needed, are there
    bool native = false;              // the host kernel runs it directly (peak RSS is then its own)
    std::vector<std::string> prefix;  // argv before the binary: {} or {"/usr/bin/qemu-i386", ...}
    std::string why;                  // !available: what is missing and what to run; emulated: why
};
I686Launch i686_launch(const std::string& binary, const std::string& cpu = "");

// An ARM build (scripts/build-arm.sh) of `relative` ("worker/ferry-worker",
// "coordinator/ferry") for `target` ("aarch64" or "armhf"), run under
// qemu-user as CPU model `cpu` ("cortex-a53", "cortex-a7", ...): always
// emulated, so each level runs on a CPU that has exactly its features.
// A build run through a prefix (qemu-user, Wine).
struct PrefixedBinary {
    std::vector<std::string> prefix;
    std::string binary;
    // prefix, binary, then args.
    std::vector<std::string> argv(const std::vector<std::string>& args) const;
};
struct ArmLaunch : PrefixedBinary {
    bool available = false;  // the build and qemu are there; prefix {"/usr/bin/qemu-aarch64", "-cpu", cpu}
    std::string why;         // !available: what is missing and what to run
};
ArmLaunch arm_launch(const std::string& target, const std::string& relative, const std::string& cpu);

// A Windows build (scripts/build-windows.sh) of ferry-worker.exe for `target`
// ("x86_64" or "i686") under Wine, in a Wine prefix of its own made once
// under build-windows-<target>/wine-prefix. The 64-bit build needs Debian's
// wine64; the 32-bit one wine32:i386 and a kernel that runs 32-bit programs
// (Wine's 32-bit loader is an i386 Linux program).
struct WindowsLaunch : PrefixedBinary {  // prefix {"/usr/bin/env", "WINEPREFIX=...", ..., the Wine loader}
    bool available = false;
    std::string wine_prefix;  // the prefix directory (its drive_c is C:)
    std::string why;          // !available: what is missing and what to run
    bool broken = false;      // !available although Wine and the build are there: a failure, not a skip
};
// `prefix_name`: another prefix (a test that stops its wineserver uses its own).
WindowsLaunch windows_launch(const std::string& target, const std::string& prefix_name = "wine-prefix");

// A ferry-worker process (or any command that ends in one, e.g. under qemu or
// `ip netns exec`), killed when the object dies. It is started with
// --listen HOST:0 unless `listen` gives a port; the port it bound is read
// from its log ("listening on port N").
class WorkerProcess {
public:
    WorkerProcess(const std::vector<std::string>& args, const std::string& log_path,
                  const std::vector<std::string>& prefix = {}, const std::string& listen = "127.0.0.1:0",
                  const std::string& binary = "");
    ~WorkerProcess();
    WorkerProcess(const WorkerProcess&) = delete;
    WorkerProcess& operator=(const WorkerProcess&) = delete;

    int port() const { return port_; }
    std::string address() const { return host_ + ":" + std::to_string(port_); }
    int pid() const { return pid_; }
    void signal(int sig) const;
    // Waits for the process to exit: its exit code (128 + signal if killed), or -1 on timeout.
    int wait(double timeout_s);
    std::string log() const;

private:
    int pid_ = -1;
    int port_ = 0;
    std::string host_, log_path_;
    bool reaped_ = false;
};

// "127.0.0.1:1,127.0.0.1:2" from processes.
std::string addresses(const std::vector<const WorkerProcess*>& workers);
// `ferry run` of stories260K with the sampling flags of a reference; extra appended.
std::vector<std::string> ferry_run_args(const std::string& model, const std::string& tokenizer,
                                        const std::vector<std::string>& extra);

// What to change in a copy of a GGUF file: keys and tensors left out, a
// tensor's bytes changed, keys and tensors added (GgufWriter's add_* and
// set_u32 replace a copied key in place), the version field.
struct GgufEdit {
    std::function<bool(std::string_view key)> keep_key = [](std::string_view) { return true; };
    std::function<bool(std::string_view tensor)> keep_tensor = [](std::string_view) { return true; };
    // A kept tensor's bytes (its stored type, rows back to back) before they are written.
    std::function<void(std::string_view tensor, std::vector<uint8_t>& bytes)> change_tensor;
    std::function<void(GgufWriter&)> add;  // after the copied keys and tensors
    uint32_t version = 3;
};
// A copy of the GGUF file `src` at `dst`, edited. Returns dst.
std::string edited_gguf(const std::string& src, const std::string& dst, const GgufEdit& edit);
// A copy of the GGUF file `src` at `dst` with one more f32 vector tensor
// (e.g. Llama 3.1's rope_freqs.weight). Returns dst.
std::string gguf_with_f32_tensor(const std::string& src, const std::string& dst, const std::string& name,
                                 const std::vector<float>& values);

// Token ids of a reference's .ids.txt file.
std::vector<int> reference_ids(const std::string& name);
// The ids `ids_file` (--ids-out) holds equal llama2.c's in reference/<reference>, at least `at_least` of them.
void expect_reference_ids(const std::string& ids_file, const std::string& reference, int at_least);
// `ferry run --workers workers --split split` gives one machine's tokens: llama2.c's greedy and seeded
// ids for stories260K (f32), and one local process's greedy and seeded text for its Q4_0 GGUF.
// `logs` is printed with a failure (the workers' logs).
void expect_chain_gives_one_machines_tokens(const std::string& workers, const std::string& split,
                                            const std::function<std::string()>& logs);

// Decodes the greedy reference `name` one token at a time through `engine`
// (argmax of its logits), for `steps` positions (0: all), checking every
// token; calls after_step(pos) after each. False, with the failure recorded,
// at the first token that differs.
bool follow_greedy_reference(Engine& engine, const std::string& name, int steps = 0,
                             const std::function<void(int pos)>& after_step = {});

// A fresh directory under /tmp, removed when the object dies.
class TempDir {
public:
    TempDir();
    ~TempDir();
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// A random-weight llama2.c model of about 64 MB f32 (dim 512, hidden 1536, 5
// layers, 8/4 heads, vocab 512) and its tokenizer, made by `ferry synth` in
// `dir`: for tests where stories260K is too small to measure. Throws if synth fails.
struct SynthModel {
    std::string model, tokenizer;
};
SynthModel synth_64mb_model(const TempDir& dir, int seq_len = 256);

// Two loopback workers (1 thread each) and an in-process coordinator holding
// them: stories260K split 2,3 (the session stays open while the object lives).
struct TwoWorkerSession {
    TempDir dir;
    WorkerProcess a, b;
    ModelFile file;
    kernels::ThreadPool pool{1};
    std::unique_ptr<PipelineEngine> engine;
    // `model`: a file under ../shared/models, or an absolute path (default
    // stories260K.bin, split 2,3 unless base.split says).
    explicit TwoWorkerSession(const PipelineOptions& base = {}, const std::string& model = "stories260K.bin");
};

}  // namespace ferry::test
