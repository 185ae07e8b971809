// Discovery on a small LAN the test builds: one namespace per machine, each
// with a veth into a bridge that lives in a namespace of its own (nothing is
// added to the host's network), multicast flooded as by a switch. Workers of
// the pool announce themselves; a coordinator with the key finds them, uses
// them, and ignores a worker of another pool; a worker that dies drops out of
// `ferry status`. Skipped with the reason where namespaces cannot be made.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace ferry {
namespace {

class Lan {
public:
    explicit Lan(int hosts) {
        const std::string id = std::to_string(getpid() % 100000);
        prefix_ = "fl" + id;
        subnet_ = "10.198." + std::to_string(getpid() % 250 + 1);
        add({"netns", "add", prefix_ + "s"});
        add({"-n", prefix_ + "s", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"});
        add({"-n", prefix_ + "s", "link", "set", "br0", "up"});
        for (int i = 0; i < hosts && problem_.empty(); ++i) {
            const std::string ns = host(i), v = prefix_ + "v" + std::to_string(i), p = prefix_ + "p" + std::to_string(i);
            add({"netns", "add", ns});
            add({"link", "add", v, "type", "veth", "peer", "name", p});
            add({"link", "set", v, "netns", ns});
            add({"link", "set", p, "netns", prefix_ + "s"});
            add({"-n", prefix_ + "s", "link", "set", p, "master", "br0", "up"});
            add({"-n", ns, "addr", "add", address(i) + "/24", "dev", v});
            add({"-n", ns, "link", "set", v, "up"});
            add({"-n", ns, "link", "set", "lo", "up"});
            ++made_;
        }
    }
    ~Lan() {
        for (int i = 0; i < made_; ++i) test::run_command({ip(), "netns", "del", host(i)}, 10);
        test::run_command({ip(), "netns", "del", prefix_ + "s"}, 10);
    }
    const std::string& problem() const { return problem_; }
    std::string host(int i) const { return prefix_ + "h" + std::to_string(i); }
    std::string address(int i) const { return subnet_ + "." + std::to_string(10 + i); }
    std::vector<std::string> in(int i) const { return {ip(), "netns", "exec", host(i)}; }

private:
    static std::string ip() { return access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip"; }
    void add(const std::vector<std::string>& args) {
        if (!problem_.empty()) return;
        std::vector<std::string> argv = {ip()};
        argv.insert(argv.end(), args.begin(), args.end());
        const auto r = test::run_command(argv, 10);
        if (r.exit_code != 0) {
            std::string cmd;
            for (const auto& a : args) cmd += " " + a;
            problem_ = "ip" + cmd + ": " + r.err;
        }
    }
    std::string prefix_, subnet_, problem_;
    int made_ = 0;
};

std::vector<std::string> in_host(const Lan& lan, int i, const std::vector<std::string>& cmd) {
    std::vector<std::string> argv = lan.in(i);
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return argv;
}

// Workers beacon every second: a window of 2.5 s holds at least two from each,
// so one late beacon (a loaded host, the worker under qemu) still counts.
constexpr const char* kDiscoverWait = "2.5";

// `ferry status --json` on host 0 with the key and no --workers: the addresses listed.
std::vector<std::string> status_addresses(const Lan& lan, const std::string& key, double* seconds = nullptr) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = test::run_command(
        in_host(lan, 0, {test::ferry_bin(), "status", "--json", "--key-file", key, "--discover-wait", kDiscoverWait}), 30);
    if (seconds) *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<std::string> out;
    if (r.exit_code != 0) {
        ADD_FAILURE() << "ferry status: " << r.err << r.out;
        return out;
    }
    for (const auto& w : nlohmann::json::parse(r.out)) out.push_back(w["address"].get<std::string>());
    std::sort(out.begin(), out.end());
    return out;
}

TEST(Discovery, ThePoolsWorkersAreFoundUsedAndForgottenWhenTheyLeave) {
    Lan lan(5);
    if (!lan.problem().empty()) GTEST_SKIP() << "cannot make network namespaces here (needs root): " << lan.problem();
    test::TempDir tmp;
    const std::string key = tmp.file("pool.key"), other = tmp.file("other.key");
    ASSERT_EQ(test::run_command({test::ferry_bin(), "keygen", "-o", key}).exit_code, 0);
    ASSERT_EQ(test::run_command({test::ferry_bin(), "keygen", "-o", other}).exit_code, 0);
    // Hosts 1-3: the pool (host 3 runs the 32-bit worker where it is built); host 4: another pool's worker.
    std::vector<std::unique_ptr<test::WorkerProcess>> workers;
    const std::string i686 = test::i686_binary("worker/ferry-worker");
    const test::I686Launch launch = test::i686_launch(i686);
    for (int i = 1; i <= 4; ++i) {
        std::vector<std::string> prefix = lan.in(i);
        std::string binary;
        if (i == 3 && launch.available) {
            prefix.insert(prefix.end(), launch.prefix.begin(), launch.prefix.end());
            binary = i686;
        }
        workers.push_back(std::make_unique<test::WorkerProcess>(
            std::vector<std::string>{"--threads", "1", "--cache-dir", tmp.file("c" + std::to_string(i)), "--key-file",
                                     i == 4 ? other : key},
            tmp.file("w" + std::to_string(i) + ".log"), prefix, lan.address(i) + ":0", binary));
    }
    if (!launch.available) std::printf("[ discovery ] host 3 runs the native worker: %s\n", launch.why.c_str());
    double seconds = 0;
    const std::vector<std::string> found = status_addresses(lan, key, &seconds);
    std::printf("[ discovery ] ferry status found %zu workers in %.2f s (--discover-wait %s)\n", found.size(), seconds,
                kDiscoverWait);
    std::vector<std::string> pool;
    for (int i = 0; i < 3; ++i) pool.push_back(workers[static_cast<size_t>(i)]->address());
    std::sort(pool.begin(), pool.end());
    EXPECT_EQ(found, pool) << "the other pool's worker (" << workers[3]->address() << ") must not be listed";
    EXPECT_LT(seconds, 4.5);  // the wait, and no more than 2 s besides

    // `ferry run` with the key and no --workers uses them, and the text is the reference's.
    const auto r = test::run_command(
        in_host(lan, 0, test::ferry_run_args("stories260K.bin", "tok512.bin",
                                             {"-t", "1.0", "-p", "0.9", "-s", "42", "-n", "256", "--threads", "1",
                                              "--key-file", key, "--discover-wait", kDiscoverWait, "--split", "2,2,1"})),
        120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.t1p09.s42.n256.txt")));
    EXPECT_NE(r.err.find("using 3 workers found on the LAN"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("ignored"), std::string::npos) << "the other pool's beacons are counted: " << r.err;

    // One dies, one stops: neither is listed any more.
    workers[1]->signal(SIGKILL);
    workers[1]->wait(10);
    workers[2]->signal(SIGTERM);
    workers[2]->wait(20);
    usleep(1200000);  // beacons already in flight have arrived
    EXPECT_EQ(status_addresses(lan, key), std::vector<std::string>{workers[0]->address()});
}

}  // namespace
}  // namespace ferry
