// The pipeline across real network interfaces: two workers, each in its own
// network namespace, joined by a veth pair the test makes (and always removes).
// The coordinator runs in the first namespace, so the activations go worker 1
// -> veth -> worker 2 -> veth -> coordinator. Skipped with the reason where
// the machine forbids namespaces (no root, no CAP_SYS_ADMIN).
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>

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
        test::run_command({ip(), "netns", "del", ns_a_}, 10);  // takes the veth pair with it
        test::run_command({ip(), "netns", "del", ns_b_}, 10);
    }
    static std::string ip() { return access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip"; }
    const std::string& problem() const { return problem_; }
    std::vector<std::string> in_a() const { return {ip(), "netns", "exec", ns_a_}; }
    std::vector<std::string> in_b() const { return {ip(), "netns", "exec", ns_b_}; }
    std::string address_a() const { return subnet_ + ".1"; }
    std::string address_b() const { return subnet_ + ".2"; }

private:
    std::string ns_a_, ns_b_, subnet_, problem_;
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

}  // namespace
}  // namespace ferry
