#include "tests/test_support.h"

#include <gtest/gtest.h>

#include "common/sampler.h"
#include "common/gguf_file.h"
#include "common/gguf_writer.h"
#include "common/mapped_file.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

namespace ferry::test {

std::vector<float> normal_floats(size_t n, uint32_t seed, float stddev) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

std::vector<kernels::Level> cpu_levels() {
    LevelGuard guard;
    std::vector<kernels::Level> levels;
    for (kernels::Level l : kernels::compiled_levels())
        if (kernels::set_active_level(l)) levels.push_back(l);
    return levels;
}

std::string shared_dir() {
    const char* env = std::getenv("FERRY_SHARED_DIR");
    return env ? env : FERRY_SHARED_DIR;
}
std::string model_path(const std::string& name) { return shared_dir() + "/models/" + name; }
std::string reference_path(const std::string& name) { return shared_dir() + "/models/reference/" + name; }
std::string ferry_bin() { return FERRY_BIN; }
std::string worker_bin() { return FERRY_WORKER_BIN; }

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path);
}

int spawn(const std::vector<std::string>& argv, int out_fd, int err_fd, std::string* exec_error) {
    int status_pipe[2];
    if (pipe2(status_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        const int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        std::vector<char*> args;
        for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execv(args[0], args.data());
        const int e = errno;
        (void)!write(status_pipe[1], &e, sizeof e);
        _exit(127);
    }
    close(status_pipe[1]);
    // The pipe closes at a successful exec (O_CLOEXEC): no bytes. A failed one sends errno.
    int e = 0;
    ssize_t n;
    while ((n = read(status_pipe[0], &e, sizeof e)) < 0 && errno == EINTR) {
    }
    close(status_pipe[0]);
    if (n == static_cast<ssize_t>(sizeof e)) {
        waitpid(pid, nullptr, 0);
        *exec_error = "cannot execute " + argv[0] + ": " + std::strerror(e);
        return -1;
    }
    return pid;
}

std::string describe_exit(int wait_status) {
    if (WIFEXITED(wait_status)) return "exit status " + std::to_string(WEXITSTATUS(wait_status));
    if (WIFSIGNALED(wait_status))
        return "killed by signal " + std::to_string(WTERMSIG(wait_status)) + " (" + strsignal(WTERMSIG(wait_status)) + ")";
    return "wait status " + std::to_string(wait_status);
}

CommandResult run_command(const std::vector<std::string>& argv, double timeout_s) {
    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    std::string exec_error;
    const pid_t pid = spawn(argv, out_pipe[1], err_pipe[1], &exec_error);
    if (pid < 0) {
        for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
        CommandResult r;
        r.exit_code = 127;
        r.err = exec_error;
        return r;
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    CommandResult r;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    int open_fds = 2;
    bool killed = false;
    while (open_fds > 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        if (poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
            char buf[65536];
            const ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                --open_fds;
            } else {
                (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
            }
        }
    }
    for (pollfd& f : fds)
        if (f.fd >= 0) close(f.fd);
    int status = 0;
    waitpid(pid, &status, 0);
    r.exit_code = killed ? -9 : (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return r;
}

WorkerProcess::WorkerProcess(const std::vector<std::string>& args, const std::string& log_path,
                             const std::vector<std::string>& prefix, const std::string& listen,
                             const std::string& binary)
    : log_path_(log_path) {
    host_ = listen.substr(0, listen.rfind(':'));
    std::vector<std::string> argv = prefix;
    argv.push_back(binary.empty() ? worker_bin() : binary);
    argv.push_back("--listen");
    argv.push_back(listen);
    argv.insert(argv.end(), args.begin(), args.end());
    const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw std::runtime_error("cannot open " + log_path + ": " + std::strerror(errno));
    std::string exec_error;
    pid_ = spawn(argv, log_fd, log_fd, &exec_error);
    close(log_fd);
    if (pid_ < 0) {
        reaped_ = true;
        throw std::runtime_error("the worker did not start: " + exec_error);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
        const std::string text = log();
        const size_t at = text.rfind("listening on port ");
        if (at != std::string::npos) {
            port_ = std::atoi(text.c_str() + at + 18);
            return;
        }
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            reaped_ = true;
            throw std::runtime_error("the worker exited at start (" + describe_exit(status) + "): " + text);
        }
        usleep(20000);
    }
    // A constructor that throws runs no destructor: do not leave the process behind.
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    reaped_ = true;
    throw std::runtime_error("the worker did not start listening within 30 s: " + log());
}

WorkerProcess::~WorkerProcess() {
    if (pid_ > 0 && !reaped_) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
}

void WorkerProcess::signal(int sig) const { kill(pid_, sig); }

int wait_exit(int pid, double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    return -1;
}

int WorkerProcess::wait(double timeout_s) {
    const int code = wait_exit(pid_, timeout_s);
    reaped_ = code >= 0;
    return code;
}

std::string WorkerProcess::log() const {
    try {
        return read_file(log_path_);
    } catch (...) {
        return "";
    }
}

std::string addresses(const std::vector<const WorkerProcess*>& workers) {
    std::string s;
    for (const WorkerProcess* w : workers) s += (s.empty() ? "" : ",") + w->address();
    return s;
}

std::vector<std::string> ferry_run_args(const std::string& model, const std::string& tokenizer,
                                        const std::vector<std::string>& extra) {
    std::vector<std::string> a = {ferry_bin(), "run", model_path(model), "-z", model_path(tokenizer)};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

std::string edited_gguf(const std::string& src, const std::string& dst, const GgufEdit& e) {
    const MappedFile map(src);
    const GgufFile g = parse_gguf(map.data(), map.size(), src);
    GgufWriter w;
    for (const GgufKV& kv : g.metadata)
        if (e.keep_key(kv.key)) w.add_value(std::string(kv.key), kv.value);
    for (const GgufTensor& t : g.tensors) {
        if (!e.keep_tensor(t.name)) continue;
        const uint8_t* at = map.data() + t.offset;
        auto bytes = std::make_shared<std::vector<uint8_t>>(at, at + t.bytes);
        if (e.change_tensor) e.change_tensor(t.name, *bytes);
        const uint64_t row_bytes = t.bytes / static_cast<uint64_t>(t.rows());
        w.add_tensor(std::string(t.name), t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims),
                     [bytes, row_bytes](int64_t first, int64_t count, uint8_t* out) {
                         std::memcpy(out, bytes->data() + first * row_bytes, count * row_bytes);
                     });
    }
    if (e.add) e.add(w);
    w.write(dst);
    if (e.version != 3) {  // versions 2 and 3 share the layout; only the field differs
        std::string file = read_file(dst);
        std::memcpy(&file[4], &e.version, 4);
        write_file(dst, file);
    }
    return dst;
}

std::string gguf_with_f32_tensor(const std::string& src, const std::string& dst, const std::string& name,
                                 const std::vector<float>& values) {
    GgufEdit e;
    e.add = [&](GgufWriter& w) {
        w.add_tensor(name, TensorType::F32, {static_cast<int64_t>(values.size())},
                     [values](int64_t, int64_t, uint8_t* out) { std::memcpy(out, values.data(), values.size() * 4); });
    };
    return edited_gguf(src, dst, e);
}

std::vector<int> reference_ids(const std::string& name) {
    std::vector<int> ids;
    std::istringstream in(read_file(reference_path(name + ".ids.txt")));
    for (int id; in >> id;) ids.push_back(id);
    return ids;
}

bool follow_greedy_reference(Engine& engine, const std::string& name, int steps,
                             const std::function<void(int pos)>& after_step) {
    const std::vector<int> expected = reference_ids(name);
    const int n = static_cast<int>(expected.size()) - 1;
    int token = expected[0];
    for (int pos = 0; pos < (steps > 0 ? std::min(steps, n) : n); ++pos) {
        token = argmax(engine.forward(&token, 1, pos), engine.config().vocab_size);
        EXPECT_EQ(token, expected[static_cast<size_t>(pos) + 1]) << name << " at position " << pos;
        if (token != expected[static_cast<size_t>(pos) + 1]) return false;
        if (after_step) after_step(pos);
    }
    return true;
}

SynthModel synth_64mb_model(const TempDir& dir, int seq_len) {
    SynthModel m{dir.file("synth-64mb.bin"), dir.file("synth-64mb-tok.bin")};
    const CommandResult r = run_command({ferry_bin(), "synth", m.model, "--dim", "512", "--hidden-dim", "1536", "--layers",
                                         "5", "--heads", "8", "--kv-heads", "4", "--vocab", "512", "--seq-len",
                                         std::to_string(seq_len), "--tokenizer-out", m.tokenizer, "-q"});
    if (r.exit_code != 0) throw std::runtime_error("ferry synth: " + r.err);
    return m;
}

TwoWorkerSession::TwoWorkerSession(const PipelineOptions& base, const std::string& model)
    : a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log")),
      b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log")),
      file(open_model_file(model.rfind('/', 0) == 0 ? model : model_path(model))) {
    PipelineOptions o = base;
    o.workers = {a.address(), b.address()};
    if (o.split.empty()) o.split = {2, 3};
    o.progress = false;
    engine = std::make_unique<PipelineEngine>(file, o, file.config.seq_len, &pool);
}

std::string i686_binary(const std::string& relative) {
    return std::string(FERRY_SOURCE_DIR) + "/build-i686/" + relative;
}

namespace {

constexpr const char* kQemuI386 = "/usr/bin/qemu-i386";

// Why this host does not run `binary` natively ("" when it does), asked once
// per binary by running it: the answer is the kernel's (ENOEXEC where IA-32
// emulation is off), not a guess from its configuration.
std::string native_refusal(const std::string& binary) {
    static std::map<std::string, std::string> known;
    if (const char* force = std::getenv("FERRY_I686"); force && std::string(force) == "qemu") return "FERRY_I686=qemu";
    auto it = known.find(binary);
    if (it == known.end()) {
        const CommandResult r = run_command({binary, "--help"}, 30);
        std::string refusal;
        if (r.exit_code != 0) refusal = r.err.rfind("cannot execute", 0) == 0 ? r.err : binary + " --help: " + r.err;
        // qemu-user-binfmt makes the kernel hand i386 programs to qemu: they run, but emulated.
        std::ifstream binfmt("/proc/sys/fs/binfmt_misc/qemu-i386");
        std::string state;
        if (refusal.empty() && binfmt >> state && state == "enabled")
            refusal = "binfmt_misc hands i386 programs to qemu (/proc/sys/fs/binfmt_misc/qemu-i386)";
        it = known.emplace(binary, refusal).first;
    }
    return it->second;
}

}  // namespace

I686Launch i686_launch(const std::string& binary, const std::string& cpu) {
    I686Launch l;
    if (!std::filesystem::exists(binary)) {
        l.why = "no i686 build at " + binary + ": run scripts/build-i686.sh (scripts/test.sh does)";
        return l;
    }
    const bool have_qemu = std::filesystem::exists(kQemuI386);
    if (!cpu.empty()) {
        if (!have_qemu) {
            l.why = std::string("emulating a ") + cpu + " needs " + kQemuI386 + ": apt-get install qemu-user";
            return l;
        }
        l.available = true;
        l.prefix = {kQemuI386, "-cpu", cpu};
        l.why = "emulating a " + cpu;
        return l;
    }
    const std::string refusal = native_refusal(binary);
    if (refusal.empty()) {
        l.available = l.native = true;
        return l;
    }
    if (!have_qemu) {
        l.why = "this host cannot run 32-bit programs (" + refusal + ") and " + kQemuI386 +
                " is missing: apt-get install qemu-user";
        return l;
    }
    l.available = true;
    l.prefix = {kQemuI386};
    l.why = "this host cannot run 32-bit programs (" + refusal + "): under qemu-i386";
    return l;
}

ArmLaunch arm_launch(const std::string& target, const std::string& relative, const std::string& cpu) {
    ArmLaunch l;
    l.binary = std::string(FERRY_SOURCE_DIR) + "/build-" + target + "/" + relative;
    const std::string qemu = std::string("/usr/bin/qemu-") + (target == "armhf" ? "arm" : target);
    if (!std::filesystem::exists(l.binary)) {
        l.why = "no " + target + " build at " + l.binary + ": run scripts/build-arm.sh (scripts/test.sh does)";
        return l;
    }
    if (!std::filesystem::exists(qemu)) {
        l.why = "running the " + target + " build needs " + qemu + ": apt-get install qemu-user";
        return l;
    }
    l.available = true;
    l.prefix = {qemu, "-cpu", cpu};
    return l;
}

std::vector<std::string> PrefixedBinary::argv(const std::vector<std::string>& args) const {
    std::vector<std::string> v = prefix;
    v.push_back(binary);
    v.insert(v.end(), args.begin(), args.end());
    return v;
}

void expect_reference_ids(const std::string& ids_file, const std::string& reference, int at_least) {
    std::istringstream got(read_file(ids_file)), want(read_file(reference_path(reference)));
    int count = 0;
    for (int a, b; got >> a && want >> b; ++count) ASSERT_EQ(a, b) << reference << " token " << count;
    EXPECT_GE(count, at_least) << reference;
}

void expect_chain_gives_one_machines_tokens(const std::string& workers, const std::string& split,
                                            const std::function<std::string()>& logs) {
    TempDir tmp;
    for (const auto& [sampling, reference] :
         {std::pair{std::vector<std::string>{"-t", "0", "-i", "Once upon a time"}, "stories260K.greedy.n256.ids.txt"},
          std::pair{std::vector<std::string>{"-t", "1.0", "-p", "0.9", "-s", "42"}, "stories260K.t1p09.s42.n256.ids.txt"}}) {
        std::vector<std::string> flags = sampling;
        flags.insert(flags.end(), {"-n", "96", "--threads", "1", "--ids-out", tmp.file("ids"), "--workers", workers,
                                   "--split", split});
        const auto r = run_command(ferry_run_args("stories260K.bin", "tok512.bin", flags), 300);
        ASSERT_EQ(r.exit_code, 0) << r.err << logs();
        expect_reference_ids(tmp.file("ids"), reference, 90);
    }
    const std::string q4 = shared_dir() + "/models/gguf/stories260K-q4_0.gguf";
    for (const std::vector<std::string>& sampling :
         {std::vector<std::string>{"-t", "0", "-i", "Once upon a time"}, std::vector<std::string>{"-t", "1.0", "-s", "1234"}}) {
        std::vector<std::string> one = {ferry_bin(), "run", q4, "-n", "96", "--threads", "1"};
        one.insert(one.end(), sampling.begin(), sampling.end());
        const auto want = run_command(one);
        ASSERT_EQ(want.exit_code, 0) << want.err;
        std::vector<std::string> chain = one;
        chain.insert(chain.end(), {"--workers", workers, "--split", split});
        const auto got = run_command(chain, 300);
        ASSERT_EQ(got.exit_code, 0) << got.err << logs();
        EXPECT_GT(want.out.size(), 100u);
        EXPECT_EQ(got.out, want.out) << sampling[1];
    }
}

WindowsLaunch windows_launch(const std::string& target, const std::string& prefix_name) {
    WindowsLaunch l;
    const std::string dir = std::string(FERRY_SOURCE_DIR) + "/build-windows-" + target;
    l.binary = dir + "/worker/ferry-worker.exe";
    const bool win32 = target == "i686";
    const std::string loader = win32 ? "/usr/lib/wine/wine" : "/usr/lib/wine/wine64";
    if (!std::filesystem::exists(l.binary)) {
        l.why = "no Windows " + target + " build at " + l.binary + ": run scripts/build-windows.sh (scripts/test.sh does)";
        return l;
    }
    if (win32) {  // first: on such a kernel installing wine32 would not help
        if (const std::string refusal = native_refusal(i686_binary("worker/ferry-worker")); !refusal.empty()) {
            l.why = "Wine's 32-bit loader is an i386 Linux program and this kernel runs none (" + refusal + ")";
            return l;
        }
    }
    if (!std::filesystem::exists(loader)) {
        l.why = win32 ? "running the 32-bit .exe needs wine32:i386 (dpkg --add-architecture i386; apt-get install wine32:i386)"
                      : "running the 64-bit .exe needs Wine: apt-get install wine64";
        return l;
    }
    l.wine_prefix = dir + "/" + prefix_name;
    l.prefix = {"/usr/bin/env", "WINEPREFIX=" + l.wine_prefix, "WINEARCH=" + std::string(win32 ? "win32" : "win64"),
                "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=", loader};
    // Made once (wineboot takes 10-20 s), under a lock: ctest runs tests side by side.
    const int lock = open((l.wine_prefix + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock >= 0) flock(lock, LOCK_EX);
    if (!std::filesystem::exists(l.wine_prefix + "/.ferry-ready")) {
        std::vector<std::string> boot = l.prefix;
        boot.insert(boot.end(), {"wineboot", "--init"});
        const CommandResult r = run_command(boot, 300);
        if (r.exit_code == 0 && std::filesystem::exists(l.wine_prefix + "/drive_c")) {
            write_file(l.wine_prefix + "/.ferry-ready", "");
        } else {
            l.why = "wineboot could not make the prefix " + l.wine_prefix + ": " + r.err;
            l.broken = true;
            if (lock >= 0) close(lock);
            return l;
        }
    }
    if (lock >= 0) close(lock);
    l.available = true;
    return l;
}

TempDir::TempDir() {
    char tmpl[] = "/tmp/ferry-test-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

}  // namespace ferry::test
