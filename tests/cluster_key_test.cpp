// Keyed workers against every kind of peer, over loopback: the pool's own
// coordinator gets exact text; a wrong key, no key, a replayed handshake, a
// changed or cut record are each refused in one line, cost the worker no
// memory, and leave it serving the right peers. And the secure default: no
// key, no non-loopback address (without --insecure).
#include <gtest/gtest.h>
#include <poll.h>

#include <fstream>

#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/secure_link.h"
#include "tests/raw_client.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

uint64_t vm_rss(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}

struct Pool {
    test::TempDir tmp;
    std::string key, other_key;
    std::unique_ptr<test::WorkerProcess> a, b;
    Pool() {
        key = tmp.file("ferry.key");
        other_key = tmp.file("other.key");
        EXPECT_EQ(test::run_command({test::ferry_bin(), "keygen", "-o", key}).exit_code, 0);
        EXPECT_EQ(test::run_command({test::ferry_bin(), "keygen", "-o", other_key}).exit_code, 0);
        a = std::make_unique<test::WorkerProcess>(
            std::vector<std::string>{"--threads", "1", "--cache-dir", tmp.file("ca"), "--key-file", key, "--handshake-timeout", "2"},
            tmp.file("a.log"));
        b = std::make_unique<test::WorkerProcess>(
            std::vector<std::string>{"--threads", "1", "--cache-dir", tmp.file("cb"), "--key-file", key, "--handshake-timeout", "2"},
            tmp.file("b.log"));
    }
    test::CommandResult run(const std::vector<std::string>& key_args) const {
        std::vector<std::string> extra = {"-t", "1.0", "-p", "0.9", "-s", "42", "-n", "256", "--threads", "1",
                                          "--workers", test::addresses({a.get(), b.get()}), "--split", "2,3"};
        extra.insert(extra.end(), key_args.begin(), key_args.end());
        return test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin", extra), 60);
    }
    void expect_exact_with_the_key() const {
        const auto r = run({"--key-file", key});
        EXPECT_EQ(r.exit_code, 0) << r.err << a->log();
        EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.t1p09.s42.n256.txt")));
    }
};

net::ClusterKey key_in(const std::string& path) { return net::read_cluster_key_file(path); }

// A blocking client that runs the key handshake with `link` over `c`; true once established.
bool handshake(test::RawClient& c, net::SecureLink& link, std::string* sent = nullptr) {
    const std::string hello = link.opening();
    c.send(hello);
    std::string got;
    while (got.size() < net::SecureLink::kServerHelloBytes) {
        pollfd p{c.fd(), POLLIN, 0};
        if (poll(&p, 1, 3000) <= 0) return false;
        char buf[256];
        const ssize_t n = ::recv(c.fd(), buf, net::SecureLink::kServerHelloBytes - got.size(), 0);
        if (n <= 0) return false;
        got.append(buf, static_cast<size_t>(n));
    }
    const net::SecureLink::Step s = link.handshake(reinterpret_cast<const uint8_t*>(got.data()), got.size());
    c.send(s.send);
    if (sent) *sent = hello + s.send;
    return s.error.empty() && link.established();
}

// Whether the worker closes `c` within `timeout_s` (reading and dropping what it sends).
bool closed_within(test::RawClient& c, double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{c.fd(), POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        char buf[4096];
        const ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
        if (n <= 0) return true;
    }
    return false;
}

TEST(ClusterKey, ThePoolsKeyGivesTheReferenceTextAcrossKeyedWorkers) {
    Pool pool;
    pool.expect_exact_with_the_key();
    // FERRY_KEY_FILE serves as well as --key-file.
    ::setenv("FERRY_KEY_FILE", pool.key.c_str(), 1);
    const auto r = pool.run({});
    ::unsetenv("FERRY_KEY_FILE");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.t1p09.s42.n256.txt")));
    EXPECT_NE(pool.a->log().find("links are encrypted"), std::string::npos) << pool.a->log();
}

TEST(ClusterKey, AWrongOrMissingKeyIsRefusedInOneLineAndTheWorkerServesOn) {
    Pool pool;
    for (const std::vector<std::string>& key_args :
         {std::vector<std::string>{"--key-file", pool.other_key}, std::vector<std::string>{}}) {
        const auto r = pool.run(key_args);
        EXPECT_EQ(r.exit_code, 3) << r.err;
        EXPECT_NE(r.err.find("wrong or missing cluster key"), std::string::npos) << r.err;
        EXPECT_TRUE(r.out.empty()) << r.out;
    }
    // `ferry status` is refused the same way.
    const auto s = test::run_command({test::ferry_bin(), "status", "--workers", pool.a->address()}, 20);
    EXPECT_NE(s.exit_code, 0);
    EXPECT_NE(s.out.find("wrong or missing cluster key"), std::string::npos) << s.out;
    EXPECT_NE(pool.a->log().find("wrong or missing cluster key"), std::string::npos) << pool.a->log();
    // A keyed coordinator meeting a worker without a key is told so, not a frame-size error.
    test::WorkerProcess plain({"--threads", "1", "--cache-dir", pool.tmp.file("cp")}, pool.tmp.file("p.log"));
    const auto k = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin",
                                                          {"-n", "8", "--workers", plain.address(), "--key-file", pool.key}),
                                     30);
    EXPECT_EQ(k.exit_code, 3) << k.err;
    EXPECT_NE(k.err.find("wrong or missing cluster key: the peer has none"), std::string::npos) << k.err;
    pool.expect_exact_with_the_key();
}

TEST(ClusterKey, AReplayedHandshakeIsRefused) {
    Pool pool;
    std::string recorded;
    {
        test::RawClient c(pool.a->port());
        net::SecureLink link(key_in(pool.key), net::SecureLink::Side::client);
        ASSERT_TRUE(handshake(c, link, &recorded));
    }
    test::RawClient replay(pool.a->port());
    replay.send(recorded);  // its hello and its proof, against a new server nonce
    EXPECT_TRUE(closed_within(replay, 3));
    EXPECT_NE(pool.a->log().find("replayed"), std::string::npos) << pool.a->log();
    pool.expect_exact_with_the_key();
}

TEST(ClusterKey, AChangedOrCutRecordEndsTheConnection) {
    Pool pool;
    const std::string hello = net::encode_frame(net::make_hello(wire::STATUS_CLIENT, "tester"));
    for (int kind = 0; kind < 3; ++kind) {
        test::RawClient c(pool.a->port());
        net::SecureLink link(key_in(pool.key), net::SecureLink::Side::client);
        ASSERT_TRUE(handshake(c, link));
        std::string record = link.seal(hello);
        if (kind == 0) record[10] ^= 0x40;                     // a changed ciphertext byte
        if (kind == 1) record = record.substr(0, record.size() - 5);  // cut: the rest never comes
        if (kind == 2) record = link.seal(hello) + record;       // out of order (the second sealed first)
        c.send(record);
        EXPECT_TRUE(closed_within(c, 6)) << "kind " << kind;
    }
    EXPECT_NE(pool.a->log().find("does not open"), std::string::npos) << pool.a->log();
    EXPECT_NE(pool.a->log().find("begun"), std::string::npos) << pool.a->log();  // the cut one, at the timeout
    pool.expect_exact_with_the_key();
}

TEST(ClusterKey, UnprovenPeersCostTheWorkerNoMemory) {
    Pool pool;
    const uint64_t before = vm_rss(pool.a->pid());
    // 200 peers that send a hello and then 256 KB of garbage each, and 200 plain peers announcing 1 GB frames.
    for (int i = 0; i < 200; ++i) {
        test::RawClient c(pool.a->port());
        net::SecureLink link(key_in(pool.other_key), net::SecureLink::Side::client);
        (void)::send(c.fd(), link.opening().data(), net::SecureLink::kClientHelloBytes, MSG_NOSIGNAL);
        const std::string junk(256 << 10, '\x5a');
        (void)::send(c.fd(), junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        test::RawClient p(pool.a->port());
        p.send(test::u32(1u << 30));
    }
    usleep(500000);
    const uint64_t after = vm_rss(pool.a->pid());
    std::printf("[ key ] 400 unproven peers: worker RSS %.1f -> %.1f MB\n", before / 1048576.0, after / 1048576.0);
    EXPECT_LT(after, before + (4u << 20)) << "unproven peers made the worker hold memory";
    // One log line per 10 s, not one per peer.
    const std::string log = pool.a->log();
    size_t lines = 0;
    for (size_t at = log.find("wrong or missing cluster key"); at != std::string::npos;
         at = log.find("wrong or missing cluster key", at + 1))
        ++lines;
    EXPECT_LE(lines, 3u) << log;
    pool.expect_exact_with_the_key();
}

TEST(ClusterKey, NoKeyNoNetworkAddressUnlessInsecure) {
    test::TempDir tmp;
    const auto r = test::run_command({test::worker_bin(), "--listen", "0.0.0.0:0", "--cache-dir", tmp.file("c")}, 20);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("without a cluster key anyone on the network could use this worker"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--insecure"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    test::WorkerProcess w({"--insecure", "--threads", "1", "--cache-dir", tmp.file("c")}, tmp.file("w.log"), {},
                          "0.0.0.0:0");
    EXPECT_GT(w.port(), 0);
}

}  // namespace
}  // namespace ferry
