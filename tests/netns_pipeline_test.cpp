// The pipeline across real network interfaces: two workers, each in its own
// network namespace, joined by a veth pair the test makes (and always removes).
// Every process holds the pool's cluster key through FERRY_KEY_FILE (a worker
// refuses a non-loopback address without one), so these links are encrypted.
// The coordinator runs in the first namespace, so the activations go worker 1
// -> veth -> worker 2 -> veth -> coordinator. Skipped with the reason where
// the machine forbids namespaces (no root, no CAP_SYS_ADMIN).
#include <gtest/gtest.h>
#include <unistd.h>

#include <future>
#include <memory>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace ferry {
namespace {

class VethPair {
public:
    VethPair() {
        const std::string id = std::to_string(getpid() % 100000);
        ns_a_ = "ferry" + id + "a";
        ns_b_ = "ferry" + id + "b";
        subnet_ = "10.199." + std::to_string(getpid() % 250 + 1);
        const std::string va = "fv" + id + "a", vb = "fv" + id + "b";
        const std::vector<std::vector<std::string>> steps = {
            {"netns", "add", ns_a_},
            {"netns", "add", ns_b_},
            {"link", "add", va, "type", "veth", "peer", "name", vb},
            {"link", "set", va, "netns", ns_a_},
            {"link", "set", vb, "netns", ns_b_},
            {"-n", ns_a_, "addr", "add", address_a() + "/24", "dev", va},
            {"-n", ns_b_, "addr", "add", address_b() + "/24", "dev", vb},
            {"-n", ns_a_, "link", "set", va, "up"},
            {"-n", ns_b_, "link", "set", vb, "up"},
            {"-n", ns_a_, "link", "set", "lo", "up"},
            {"-n", ns_b_, "link", "set", "lo", "up"},
        };
        key_file_ = "/tmp/ferry" + id + ".key";
        if (test::run_command({test::ferry_bin(), "keygen", "--force", "-o", key_file_}, 10).exit_code != 0) {
            problem_ = "ferry keygen failed";
            return;
        }
        ::setenv("FERRY_KEY_FILE", key_file_.c_str(), 1);
        for (const auto& s : steps) {
            std::vector<std::string> argv = {ip()};
            argv.insert(argv.end(), s.begin(), s.end());
            const auto r = test::run_command(argv, 10);
            if (r.exit_code != 0) {
                problem_ = "ip " + s[0] + " " + s[1] + " " + s[2] + ": " + r.err;
                return;
            }
        }
    }
    ~VethPair() {
        ::unsetenv("FERRY_KEY_FILE");
        std::remove(key_file_.c_str());
        test::run_command({ip(), "netns", "del", ns_a_}, 10);  // takes the veth pair with it
        test::run_command({ip(), "netns", "del", ns_b_}, 10);
    }
    static std::string ip() { return access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip"; }
    const std::string& problem() const { return problem_; }
    std::vector<std::string> in_a() const { return {ip(), "netns", "exec", ns_a_}; }
    std::vector<std::string> in_b() const { return {ip(), "netns", "exec", ns_b_}; }
    std::string address_a() const { return subnet_ + ".1"; }
    std::string veth_b() const { return "fv" + std::to_string(getpid() % 100000) + "b"; }
    // `ip` in the second namespace: {"link", "set", veth_b(), "down"} pulls its cable.
    bool in_b_ip(const std::vector<std::string>& args) const {
        std::vector<std::string> argv = {ip(), "-n", ns_b_};
        argv.insert(argv.end(), args.begin(), args.end());
        return test::run_command(argv, 10).exit_code == 0;
    }
    std::string address_b() const { return subnet_ + ".2"; }

private:
    std::string ns_a_, ns_b_, subnet_, problem_, key_file_;
};

TEST(NetnsPipeline, TwoWorkersInTheirOwnNamespacesAcrossAVethPair) {
    VethPair net;
    if (!net.problem().empty()) GTEST_SKIP() << "cannot make network namespaces here (needs root): " << net.problem();
    test::TempDir tmp;
    test::WorkerProcess a({"--threads", "1", "--cache-dir", tmp.file("ca")}, tmp.file("a.log"), net.in_a(),
                          net.address_a() + ":0");
    test::WorkerProcess b({"--threads", "1", "--cache-dir", tmp.file("cb")}, tmp.file("b.log"), net.in_b(),
                          net.address_b() + ":0");
    for (const std::vector<std::string>& placement :
         std::vector<std::vector<std::string>>{{}, {"--embedding-on-worker", "--head-on-worker"}}) {
        std::vector<std::string> argv = net.in_a();
        const std::vector<std::string> run = test::ferry_run_args(
            "stories260K.bin", "tok512.bin",
            {"-t", "1.0", "-p", "0.9", "-s", "42", "-n", "256", "--threads", "1", "--ids-out", tmp.file("ids"),
             "--workers", test::addresses({&a, &b}), "--split", "2,3"});
        argv.insert(argv.end(), run.begin(), run.end());
        argv.insert(argv.end(), placement.begin(), placement.end());
        const auto r = test::run_command(argv, 60);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.t1p09.s42.n256.txt")));
        EXPECT_EQ(test::read_file(tmp.file("ids")), test::read_file(test::reference_path("stories260K.t1p09.s42.n256.ids.txt")));
        EXPECT_NE(r.err.find(net.address_b()), std::string::npos) << r.err;  // the node table names it
    }
    EXPECT_NE(b.log().find("data connection from stage 0"), std::string::npos) << b.log();
}

// The shard transfer's progress counts bytes the worker acknowledges, so its
// first ETA on a 100 Mbit/s link (tc on the coordinator's side) is close to
// the real transfer time, and the last line says how long it took.
TEST(NetnsPipeline, ShardProgressAt100MbitGivesAnHonestEta) {
    VethPair net;
    if (!net.problem().empty()) GTEST_SKIP() << "cannot make network namespaces here (needs root): " << net.problem();
    std::vector<std::string> tc = net.in_a();
    const std::vector<std::string> rate = {"tc", "qdisc", "add", "dev", "fv" + std::to_string(getpid() % 100000) + "a",
                                           "root", "tbf", "rate", "100mbit", "burst", "64kb", "latency", "100ms"};
    tc.insert(tc.end(), rate.begin(), rate.end());
    const auto t = test::run_command(tc, 10);
    if (t.exit_code != 0) GTEST_SKIP() << "cannot shape the link with tc: " << t.err;
    test::TempDir tmp;
    const test::SynthModel m = test::synth_64mb_model(tmp, 64);
    test::WorkerProcess b({"--threads", "1", "--cache-dir", tmp.file("cb")}, tmp.file("b.log"), net.in_b(),
                          net.address_b() + ":0");
    std::vector<std::string> argv = net.in_a();
    for (const std::string& a : {test::ferry_bin(), std::string("run"), m.model, std::string("-z"), m.tokenizer,
                                 std::string("-n"), std::string("4"), std::string("--workers"), b.address(),
                                 std::string("--embedding-on-worker"), std::string("--head-on-worker")})
        argv.push_back(a);
    const auto r = test::run_command(argv, 120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // "sending shards to 1 worker: 10.0 MB / 61.0 MB (16%), 9.9 MB/s, ETA 5 s" (off a terminal: after about a
    // second, then every few seconds), and "..., done in 5.5 s".
    const size_t eta_at = r.err.find(", ETA ");
    ASSERT_NE(eta_at, std::string::npos) << r.err;
    const double eta = std::stod(r.err.substr(eta_at + 6));
    const size_t done_at = r.err.find(", done in ");
    ASSERT_NE(done_at, std::string::npos) << r.err;
    const double took = std::stod(r.err.substr(done_at + 10));
    EXPECT_GT(took, 3.0) << "64 MB at 100 Mbit/s take about 5.4 s: " << r.err;
    const double predicted = 1.0 + eta;  // the first line comes after about a second
    EXPECT_GT(predicted, took / 2) << r.err;
    EXPECT_LT(predicted, took * 2) << r.err;
}

// A stage whose network goes away mid-generation (its link down, the process
// alive): the coordinator notices the silence within --timeout, plans again
// over the survivor and a spare, and the text equals an uninterrupted run's.
TEST(NetnsPipeline, AStageWhoseLinkGoesDownIsReplacedAndTheTextIsUnchanged) {
    VethPair net;
    if (!net.problem().empty()) GTEST_SKIP() << "cannot make network namespaces here (needs root): " << net.problem();
    test::TempDir tmp;
    const test::SynthModel m = test::synth_64mb_model(tmp, 2048);
    const std::vector<std::string> sampling = {"-t", "0.5", "-p", "0.9", "-s", "5", "-n", "1500", "--threads", "1"};
    std::vector<std::string> ref = {test::ferry_bin(), "run", m.model, "-z", m.tokenizer};
    ref.insert(ref.end(), sampling.begin(), sampling.end());
    const auto want = test::run_command(ref, 120);
    ASSERT_EQ(want.exit_code, 0) << want.err;

    test::WorkerProcess a({"--threads", "1", "--cache-dir", tmp.file("ca")}, tmp.file("a.log"), net.in_a(),
                          net.address_a() + ":0");
    test::WorkerProcess b({"--threads", "1", "--cache-dir", tmp.file("cb")}, tmp.file("b.log"), net.in_b(),
                          net.address_b() + ":0");
    test::WorkerProcess spare({"--threads", "1", "--cache-dir", tmp.file("cs")}, tmp.file("s.log"), net.in_a(),
                              net.address_a() + ":0");
    std::vector<std::string> argv = net.in_a();
    for (const std::string& x : {test::ferry_bin(), std::string("run"), m.model, std::string("-z"), m.tokenizer})
        argv.push_back(x);
    argv.insert(argv.end(), sampling.begin(), sampling.end());
    for (const std::string& x : {std::string("--workers"), test::addresses({&a, &b}), std::string("--split"),
                                 std::string("3,2"), std::string("--spare"), spare.address(), std::string("--timeout"),
                                 std::string("2"), std::string("--connect-timeout"), std::string("1"),
                                 std::string("--log-level"), std::string("warn")})
        argv.push_back(x);
    auto run = std::async(std::launch::async, [&] { return test::run_command(argv, 180); });
    // Mid-generation (the second stage has processed 300 positions), pull its cable.
    std::vector<std::string> status = net.in_a();
    for (const std::string& x : {test::ferry_bin(), std::string("status"), std::string("--workers"), b.address(),
                                 std::string("--json")})
        status.push_back(x);
    bool reached = false;
    for (int i = 0; i < 400 && !reached; ++i) {
        const auto r = test::run_command(status, 10);
        reached = r.exit_code == 0 && nlohmann::json::parse(r.out)[0].value("tokens", 0) >= 300;
        if (!reached) usleep(25000);
    }
    ASSERT_TRUE(reached) << b.log();
    ASSERT_TRUE(net.in_b_ip({"link", "set", net.veth_b(), "down"}));
    const auto r = run.get();
    net.in_b_ip({"link", "set", net.veth_b(), "up"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, want.out);
    EXPECT_NE(r.err.find("recovery 1: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(b.address()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("replayed "), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ferry
