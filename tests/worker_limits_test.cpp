// What a peer can make a live ferry-worker hold is bounded, and the worker
// serves a normal run afterwards: refused assignments leave no descriptor
// behind; out of descriptors, the accept loop waits instead of spinning; a
// ping flood that never reads, 2,000 idle connections and frames that never
// end stay within --memory; a coordinator that sends no assignment loses the
// session slot; an assignment whose tensors are not the shard's is refused in
// one line before anything is received. Figures go to stdout ("[ limits ]").
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "common/model_file.h"
#include "common/net/handshake.h"
#include "common/net/shard_image.h"
#include "tests/fake_model.h"
#include "tests/raw_client.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using Clock = std::chrono::steady_clock;
using test::RawClient;

constexpr uint64_t kBudget = 64ull << 20;
constexpr const char* kBudgetFlag = "64M";

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A field of /proc/PID/status in bytes ("VmRSS", "VmHWM").
uint64_t status_bytes(int pid, const std::string& field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
    ADD_FAILURE() << "no " << field << " for process " << pid;
    return 0;
}

int open_descriptors(int pid) {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
        (void)entry;
        ++n;
    }
    return n;
}

// CPU time the process has used (user + system), in seconds.
double cpu_seconds(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    std::istringstream rest(text.substr(text.rfind(')') + 2));
    std::string field;
    uint64_t utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double mb(uint64_t bytes) { return bytes / 1048576.0; }

bool wait_for_log(const test::WorkerProcess& w, const std::string& text, double seconds) {
    const auto start = Clock::now();
    while (seconds_since(start) < seconds) {
        if (w.log().find(text) != std::string::npos) return true;
        usleep(20000);
    }
    return false;
}

// Still serving: a normal run through the worker prints the reference story.
void expect_serves_reference(const test::WorkerProcess& w) {
    const auto r = test::run_command(
        test::ferry_run_args("stories260K.bin", "tok512.bin",
                             {"-t", "0", "-n", "256", "-i", "Once upon a time", "--threads", "1", "--workers", w.address()}),
        60);
    EXPECT_EQ(r.exit_code, 0) << r.err << w.log();
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.greedy.n256.txt")));
}

std::vector<std::string> worker_args(const test::TempDir& tmp, std::vector<std::string> more = {}) {
    std::vector<std::string> a = {"--threads", "1", "--cache-dir", tmp.file("cache")};
    a.insert(a.end(), more.begin(), more.end());
    return a;
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// ---- descriptors ----

// An embedding-only shard of a model with a 4M x 128k f32 table: a consistent
// assignment of 2 TB, more than this disk has, so the shard receiver refuses
// it after opening its .part file.
wire::Frame assignment_larger_than_the_disk() {
    ModelConfig c;
    c.dim = 1 << 17;
    c.hidden_dim = 1 << 17;
    c.n_layers = 1;
    c.n_heads = c.n_kv_heads = 1024;
    c.vocab_size = 1 << 22;
    c.seq_len = 16;
    const ModelFile huge = test::fake_model(c, TensorType::F32, true, "huge.bin");
    return test::assign_frame(huge, ShardSpec{0, 0, true, false}, huge.find("token_embd.weight")->bytes + 4096, 0, 2);
}

TEST(WorkerLimits, RefusedAssignmentsLeaveNoDescriptorBehind) {
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp), tmp.file("w.log"));
    const int before = open_descriptors(w.pid());
    const wire::Frame assign = assignment_larger_than_the_disk();
    for (int i = 0; i < 100; ++i) {
        RawClient c(w.port());
        c.send(net::make_hello(wire::COORDINATOR, "test"));
        c.send(assign);
        bool closed = false;
        const auto frames = c.read(10, &closed);
        ASSERT_TRUE(closed);
        ASSERT_NE(test::errors_of(frames).find("free space or give --cache-dir"), std::string::npos)
            << test::errors_of(frames);
    }
    // The last connection's descriptor goes as the worker closes it: give it a moment.
    int after = open_descriptors(w.pid());
    for (const auto start = Clock::now(); after != before && seconds_since(start) < 3;) {
        usleep(20000);
        after = open_descriptors(w.pid());
    }
    std::printf("[ limits ] 100 assignments refused for disk space: descriptors %d before, %d after\n", before, after);
    EXPECT_EQ(after, before);
    expect_serves_reference(w);
}

// With 32 descriptors the worker holds ~20 connections; 40 more wait in its
// listen backlog. It must wait for descriptors, not retry accept() at full
// speed, and serve again once the connections close.
TEST(WorkerLimits, OutOfDescriptorsTheAcceptLoopWaitsAndRecovers) {
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp), tmp.file("w.log"), {"/usr/bin/prlimit", "--nofile=32", "--"});
    const int base = open_descriptors(w.pid());
    ASSERT_LT(base, 24) << "the worker starts with too many descriptors for this test";
    std::vector<std::unique_ptr<RawClient>> held;
    for (int i = 0; i < 60; ++i) held.push_back(std::make_unique<RawClient>(w.port()));
    EXPECT_TRUE(wait_for_log(w, "accept failed: Too many open files", 5)) << w.log();
    const double cpu0 = cpu_seconds(w.pid());
    usleep(1'000'000);
    const double cpu = cpu_seconds(w.pid()) - cpu0;
    std::printf("[ limits ] out of descriptors (%d at start, limit 32): %.2f s CPU in 1 s\n", base, cpu);
    EXPECT_LT(cpu, 0.2) << "the accept loop spins";
    held.clear();
    EXPECT_TRUE(wait_for_log(w, "accepting connections again", 5)) << w.log();
    expect_serves_reference(w);
}

// ---- memory ----

// A peer that sends and never reads: its socket fills and sends stop.
struct Flooder {
    std::unique_ptr<RawClient> client;
    std::string bytes;  // frames, sent round and round
    size_t at = 0;
};

Flooder flooder(int port, wire::Role role, const wire::Frame& frame, int copies) {
    Flooder f{std::make_unique<RawClient>(port), "", 0};
    f.client->send(net::make_hello(role, "flood"));
    for (int i = 0; i < copies; ++i) f.bytes += net::encode_frame(frame);
    set_nonblocking(f.client->fd());
    return f;
}

wire::Frame ping(size_t payload) {
    wire::Frame f;
    f.mutable_ping()->set_nonce(1);
    f.mutable_ping()->set_payload(std::string(payload, 'p'));
    return f;
}

// Sends `flood` round and round for `seconds` (or until the worker passes
// 4x the budget: failed already) and reads nothing; what was sent, in bytes,
// and the most the worker's VmRSS was.
std::pair<uint64_t, uint64_t> flood_for(const test::WorkerProcess& w, std::vector<Flooder>& flood, double seconds) {
    uint64_t sent = 0, rss_most = 0;
    const auto start = Clock::now();
    while (seconds_since(start) < seconds && rss_most < 4 * kBudget) {
        bool moved = false;
        for (Flooder& f : flood) {
            const ssize_t n = ::send(f.client->fd(), f.bytes.data() + f.at, f.bytes.size() - f.at, MSG_NOSIGNAL);
            if (n <= 0) continue;
            moved = true;
            sent += static_cast<uint64_t>(n);
            f.at = (f.at + static_cast<size_t>(n)) % f.bytes.size();
        }
        if (!moved) usleep(20000);
        rss_most = std::max(rss_most, status_bytes(w.pid(), "VmRSS"));
    }
    return {sent, rss_most};
}

TEST(WorkerLimits, FloodsOfRequestsWhoseAnswersAreNeverReadStayWithinTheBudget) {
    FERRY_SKIP_IF_SANITIZED();
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp, {"--memory", kBudgetFlag}), tmp.file("w.log"));
    const uint64_t rss_before = status_bytes(w.pid(), "VmRSS");
    // A coordinator's 4 MB pings (its control frames may be 4 MiB) and a
    // status client's 1 MB pings (the link echo).
    std::vector<Flooder> pings;
    pings.push_back(flooder(w.port(), wire::COORDINATOR, ping(4'000'000), 1));
    pings.push_back(flooder(w.port(), wire::STATUS_CLIENT, ping(1'000'000), 1));
    const auto [ping_bytes, ping_rss] = flood_for(w, pings, 2);
    pings.clear();
    // Status requests of 6 bytes, each answered with a report a hundred times larger.
    wire::Frame status_request;
    status_request.mutable_status_request();
    std::vector<Flooder> requests;
    requests.push_back(flooder(w.port(), wire::STATUS_CLIENT, status_request, 10000));
    const auto [request_bytes, request_rss] = flood_for(w, requests, 1);
    const uint64_t hwm = status_bytes(w.pid(), "VmHWM");
    requests.clear();
    usleep(500000);
    const uint64_t rss_after = status_bytes(w.pid(), "VmRSS");
    std::printf("[ limits ] ping floods (%.0f MB sent in 2 s, nothing read): VmRSS %.1f MB before, at most %.1f MB; "
                "status requests (%.1f MB sent in 1 s): at most %.1f MB; VmHWM %.1f MB, %.1f MB after; budget %.0f MB\n",
                mb(ping_bytes), mb(rss_before), mb(ping_rss), mb(request_bytes), mb(request_rss), mb(hwm), mb(rss_after),
                mb(kBudget));
    EXPECT_LT(hwm, kBudget);
    expect_serves_reference(w);
}

TEST(WorkerLimits, TwoThousandIdleConnectionsStayWithinTheBudgetAndTheMemoryReturns) {
    FERRY_SKIP_IF_SANITIZED();
    // This process holds the client ends; the worker (started after) inherits the limit.
    rlimit files {};
    getrlimit(RLIMIT_NOFILE, &files);
    if (files.rlim_cur < 4096 && files.rlim_max >= 4096) {
        files.rlim_cur = 4096;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    ASSERT_GE(files.rlim_cur, 4096u) << "needs 4096 descriptors (ulimit -n)";
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp, {"--memory", kBudgetFlag}), tmp.file("w.log"));
    const uint64_t rss_before = status_bytes(w.pid(), "VmRSS");
    const int fds_before = open_descriptors(w.pid());
    std::vector<std::unique_ptr<RawClient>> idle;
    for (int i = 0; i < 2000; ++i) idle.push_back(std::make_unique<RawClient>(w.port()));
    usleep(1'000'000);  // the worker accepts them all meanwhile
    const uint64_t rss_held = status_bytes(w.pid(), "VmRSS"), hwm = status_bytes(w.pid(), "VmHWM");
    const int fds_held = open_descriptors(w.pid());
    idle.clear();
    usleep(1'000'000);
    const uint64_t rss_after = status_bytes(w.pid(), "VmRSS");
    std::printf("[ limits ] 2000 idle connections: VmRSS %.1f MB before, %.1f MB held, %.1f MB after they closed, "
                "VmHWM %.1f MB; descriptors %d before, %d held\n",
                mb(rss_before), mb(rss_held), mb(rss_after), mb(hwm), fds_before, fds_held);
    EXPECT_LT(hwm, kBudget);
    EXPECT_LE(fds_held, fds_before + 32 + 4) << "more connections kept than wait for a hello at once";
    EXPECT_LT(rss_held, rss_before + (1ull << 20)) << "the 32 connections waiting for their hello hold buffers";
    EXPECT_LT(rss_after, rss_before + (8ull << 20)) << "the memory did not return";
    EXPECT_TRUE(wait_for_log(w, "dropping the oldest", 1)) << w.log();
    expect_serves_reference(w);
}

// A coordinator and a status client each begin a 1000-byte frame and send
// one byte of it every half second: each byte used to count as traffic, so
// the coordinator kept the session slot forever.
TEST(WorkerLimits, FramesThatNeverEndAreDroppedWithinTheTimeout) {
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp, {"--memory", kBudgetFlag, "--timeout", "2", "--handshake-timeout", "30"}),
                          tmp.file("w.log"));
    std::vector<std::unique_ptr<RawClient>> dribblers;
    for (wire::Role role : {wire::COORDINATOR, wire::STATUS_CLIENT}) {
        dribblers.push_back(std::make_unique<RawClient>(w.port()));
        dribblers.back()->send(net::make_hello(role, "dribbler"));
        dribblers.back()->send(test::u32(1000));
        set_nonblocking(dribblers.back()->fd());
    }
    const auto start = Clock::now();
    std::vector<double> closed_after(dribblers.size(), 0);
    size_t open = dribblers.size();
    while (open > 0 && seconds_since(start) < 8) {
        for (size_t i = 0; i < dribblers.size(); ++i) {
            if (closed_after[i] > 0) continue;
            const int fd = dribblers[i]->fd();
            char buf[4096];
            ssize_t n;
            while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
            }
            if (n == 0 || (n < 0 && errno != EAGAIN)) {
                closed_after[i] = seconds_since(start);
                --open;
                continue;
            }
            (void)::send(fd, "x", 1, MSG_NOSIGNAL);
        }
        usleep(500000);
    }
    std::printf("[ limits ] dribbled frames (--timeout 2): coordinator dropped after %.1f s, status client after %.1f s; "
                "VmHWM %.1f MB\n",
                closed_after[0], closed_after[1], mb(status_bytes(w.pid(), "VmHWM")));
    for (double s : closed_after) {
        EXPECT_GT(s, 0) << "still connected after 8 s";
        EXPECT_LT(s, 4.5);
    }
    EXPECT_NE(w.log().find("a frame of 1000 bytes begun"), std::string::npos) << w.log();
    EXPECT_LT(status_bytes(w.pid(), "VmHWM"), kBudget);
    expect_serves_reference(w);
}

// ---- the session ----

TEST(WorkerLimits, ACoordinatorThatSendsNoAssignmentLosesTheSessionSlot) {
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp, {"--handshake-timeout", "1", "--timeout", "0.5"}), tmp.file("w.log"));
    RawClient c(w.port());
    c.send(net::make_hello(wire::COORDINATOR, "idle coordinator"));
    wire::Frame beat;
    beat.mutable_heartbeat();
    std::vector<wire::Frame> frames;
    bool closed = false;
    const auto start = Clock::now();
    while (!closed && seconds_since(start) < 6) {
        c.send(beat);  // alive, but never an assignment
        for (wire::Frame& f : c.read(0.2, &closed)) frames.push_back(std::move(f));
    }
    const double seconds = seconds_since(start);
    std::printf("[ limits ] a coordinator with heartbeats and no assignment (--timeout 0.5): dropped after %.1f s\n",
                seconds);
    EXPECT_TRUE(closed);
    EXPECT_LT(seconds, 5.0);
    const std::string e = test::errors_of(frames);
    EXPECT_NE(e.find("idle coordinator"), std::string::npos) << e;
    EXPECT_NE(e.find("sent no assignment within 3.0 s of its hello"), std::string::npos) << e;
    expect_serves_reference(w);
}

// What a worker would be told to receive is checked against what the spec
// needs before its memory check counts it: an empty tensor list (the check
// counted nothing, then a 600 MB image arrived) or an image larger than its
// tensors is refused in one line; the real assignment is taken.
TEST(WorkerLimits, AnAssignmentWhoseTensorsAreNotTheShardsIsRefusedInOneLine) {
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp, {"--memory", kBudgetFlag}), tmp.file("w.log"));
    const ModelFile model = open_model_file(test::model_path("stories260K.bin"));
    const ShardSpec whole{0, model.config.n_layers, true, true};
    const net::ShardImage image(model, whole, std::string(16, 'h'));
    auto refusal = [&](const wire::Frame& assign) {
        RawClient c(w.port());
        c.send(net::make_hello(wire::COORDINATOR, "test"));
        c.send(assign);
        bool closed = false;
        const auto frames = c.read(5, &closed);
        EXPECT_TRUE(closed);
        const std::string e = test::errors_of(frames);
        EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
        return e;
    };
    wire::Frame no_tensors = test::assign_frame(model, whole, image.size());
    no_tensors.mutable_assign()->clear_tensors();
    const std::string e1 = refusal(no_tensors);
    EXPECT_NE(e1.find("refused the assignment of layers 0-4 + embedding + head of stories260K.bin"), std::string::npos)
        << e1;
    EXPECT_NE(e1.find("tensor token_embd.weight is missing"), std::string::npos) << e1;
    const std::string e2 = refusal(test::assign_frame(model, whole, 1ull << 50));  // 1 PB
    EXPECT_NE(e2.find("cannot hold exactly its tensors"), std::string::npos) << e2;
    std::printf("[ limits ] refused: %s[ limits ] refused: %s", e1.c_str(), e2.c_str());

    RawClient c(w.port());
    c.send(net::make_hello(wire::COORDINATOR, "test"));
    c.send(test::assign_frame(model, whole, image.size()));
    bool closed = false, asked = false;
    for (const auto start = Clock::now(); !asked && !closed && seconds_since(start) < 5;)
        for (const wire::Frame& f : c.read(0.2, &closed))
            asked = asked || (f.has_assign_reply() && f.assign_reply().state() == wire::AssignReply::NEED_SHARD);
    EXPECT_TRUE(asked) << w.log();
}

// Every shard image a coordinator builds passes the worker's check.
TEST(WorkerLimits, EveryRealShardImagePassesTheAssignmentCheck) {
    for (const char* name : {"stories260K.bin", "stories260K.gguf"}) {
        const ModelFile model = open_model_file(test::model_path(name));
        const int layers = model.config.n_layers;
        for (int first = 0; first <= layers; ++first)
            for (int last = first; last <= layers; ++last)
                for (int ends = 0; ends < 4; ++ends) {
                    const ShardSpec spec{first, last, (ends & 1) != 0, (ends & 2) != 0};
                    const net::ShardImage image(model, spec, std::string(16, 'h'));
                    EXPECT_LE(image.size(), net::shard_image_max_bytes(image.tensors()));
                    EXPECT_EQ(net::shard_tensors_problem(model.config, spec, image.tensors(), image.size()), "")
                        << name << " " << net::shard_file_name(spec);
                }
    }
}

}  // namespace
}  // namespace ferry
