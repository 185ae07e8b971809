// Hostile and mistaken peers against a live ferry-worker: each gets its error
// (or is dropped after the handshake timeout) and the daemon keeps serving the
// next good client. And the coordinator's side: a peer speaking another
// protocol version is named in one line.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/model_file.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"
#include "common/net/shard_image.h"
#include "coordinator/pipeline/pipeline_engine.h"
#include "kernels/thread_pool.h"
#include "tests/fake_model.h"
#include "tests/raw_client.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using test::errors_of;
using test::RawClient;
using test::u32;

class LiveWorker : public ::testing::Test {
protected:
    void SetUp() override {
        worker_ = std::make_unique<test::WorkerProcess>(
            std::vector<std::string>{"--threads", "1", "--cache-dir", tmp_.file("cache"), "--handshake-timeout", "1",
                                     "--memory", "64M"},
            tmp_.file("w.log"));
    }
    // The worker logs a line just after closing a connection: give it a moment.
    bool logged(const std::string& text) const {
        for (int i = 0; i < 100; ++i) {
            if (worker_->log().find(text) != std::string::npos) return true;
            usleep(20000);
        }
        return false;
    }
    // The daemon still answers a status client.
    void expect_serving() {
        const auto s = test::run_command({test::ferry_bin(), "status", "--json", "--workers", worker_->address()}, 10);
        EXPECT_EQ(s.exit_code, 0) << s.err << s.out;
    }
    test::TempDir tmp_;
    std::unique_ptr<test::WorkerProcess> worker_;
};

TEST_F(LiveWorker, OversizedLengthIsRefusedBeforeAllocating) {
    RawClient c(worker_->port());
    c.send(u32(0xFFFFFFF0u));
    bool closed = false;
    const auto frames = c.read(5, &closed);
    EXPECT_TRUE(closed);
    EXPECT_NE(errors_of(frames).find("over the limit"), std::string::npos) << errors_of(frames);
    expect_serving();
}

TEST_F(LiveWorker, GarbageBytesGetAnErrorAndTheConnectionCloses) {
    RawClient c(worker_->port());
    c.send(u32(12) + std::string("\xff\xfe\xfd\xfc garbage", 12));
    bool closed = false;
    const auto frames = c.read(5, &closed);
    EXPECT_TRUE(closed);
    EXPECT_NE(errors_of(frames).find("malformed input"), std::string::npos) << errors_of(frames);
    expect_serving();
}

TEST_F(LiveWorker, ATruncatedFrameTimesOutAndTheDaemonServesOn) {
    RawClient c(worker_->port());
    c.send(u32(100) + std::string(10, 'x'));
    bool closed = false;
    c.read(5, &closed);
    EXPECT_TRUE(closed);
    EXPECT_TRUE(logged("handshake timeout")) << worker_->log();
    expect_serving();
}

TEST_F(LiveWorker, APeerThatSaysNothingIsDroppedAfterTheHandshakeTimeout) {
    RawClient c(worker_->port());
    bool closed = false;
    const auto t0 = std::chrono::steady_clock::now();
    c.read(5, &closed);
    EXPECT_TRUE(closed);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3.0);
    expect_serving();
}

TEST_F(LiveWorker, AFrameBeforeTheHelloIsRefused) {
    RawClient c(worker_->port());
    wire::Frame f;
    f.mutable_forward()->set_n_tokens(1);
    c.send(f);
    bool closed = false;
    const auto frames = c.read(5, &closed);
    EXPECT_TRUE(closed);
    EXPECT_NE(errors_of(frames).find("before the handshake"), std::string::npos) << errors_of(frames);
    expect_serving();
}

TEST_F(LiveWorker, AnotherProtocolVersionIsRefusedNamingBothVersions) {
    RawClient c(worker_->port());
    wire::Frame hello = net::make_hello(wire::COORDINATOR, "future coordinator");
    hello.mutable_hello()->set_protocol_version(net::kProtocolVersion + 1);
    c.send(hello);
    bool closed = false;
    const auto frames = c.read(5, &closed);
    EXPECT_TRUE(closed);
    ASSERT_FALSE(frames.empty());
    EXPECT_TRUE(frames[0].has_hello());
    EXPECT_EQ(frames[0].hello().protocol_version(), net::kProtocolVersion);
    const std::string e = errors_of(frames);
    EXPECT_NE(e.find("speaks ferry protocol " + std::to_string(net::kProtocolVersion + 1)), std::string::npos) << e;
    EXPECT_NE(e.find("future coordinator"), std::string::npos) << e;
    EXPECT_TRUE(logged("speaks ferry protocol")) << worker_->log();
    expect_serving();
}

TEST_F(LiveWorker, AnAssignmentOverItsMemoryIsRefusedWithTheNumbers) {
    RawClient c(worker_->port());
    c.send(net::make_hello(wire::COORDINATOR, "test"));
    ModelConfig tinyllama;
    tinyllama.dim = 2048;
    tinyllama.hidden_dim = 5632;
    tinyllama.n_layers = 22;
    tinyllama.n_heads = 32;
    tinyllama.n_kv_heads = 4;
    tinyllama.vocab_size = 32000;
    tinyllama.seq_len = 2048;
    const wire::Frame f =
        test::assign_frame(test::fake_model(tinyllama, TensorType::F32, false, "big.bin"), ShardSpec{0, 22, false, false}, 0);
    c.send(f);
    bool closed = false;
    const auto frames = c.read(5, &closed);
    EXPECT_TRUE(closed);
    const std::string e = errors_of(frames);
    EXPECT_NE(e.find("layers 0-21 of big.bin need"), std::string::npos) << e;
    EXPECT_NE(e.find("but --memory is 64.0 MB"), std::string::npos) << e;
    expect_serving();
}

// Vocabulary slices a coordinator could not mean: refused in one line each,
// and the worker serves on.
TEST_F(LiveWorker, AHostileVocabularySliceIsRefusedInOneLine) {
    ModelConfig small;
    small.dim = 64;
    small.hidden_dim = 128;
    small.n_layers = 2;
    small.n_heads = 4;
    small.n_kv_heads = 4;
    small.vocab_size = 512;
    small.seq_len = 64;
    const ModelFile model = test::fake_model(small, TensorType::F32, false, "small.bin");
    struct Bad {
        ShardSpec spec;
        int stage;
        const char* says;
    };
    const Bad cases[] = {
        {ShardSpec{0, 0, false, false, 0, 513}, -1, "assigned vocabulary slice [0, 513) is not a part of the model's 512"},
        {ShardSpec{0, 0, false, false, 300, 200}, -1, "assigned vocabulary slice [300, 200)"},
        {ShardSpec{0, 2, false, true, 0, 256}, 0, "or comes with the whole head"},
        {ShardSpec{0, 0, false, false, 0, 256}, 0, "for a vocabulary slice alone (it is no stage: -1)"},
        {ShardSpec{0, 2, false, false, 0, 256}, -1, "stage -1 of 1"},
    };
    for (const Bad& b : cases) {
        RawClient c(worker_->port());
        c.send(net::make_hello(wire::COORDINATOR, "test"));
        wire::Frame f = test::assign_frame(model, b.spec, 0, b.stage);
        f.mutable_assign()->set_vocab_first(b.spec.vocab_first);
        f.mutable_assign()->set_vocab_last(b.spec.vocab_last);
        c.send(f);
        bool closed = false;
        const std::string e = errors_of(c.read(5, &closed));
        EXPECT_TRUE(closed) << b.says;
        EXPECT_NE(e.find(b.says), std::string::npos) << e;
    }
    expect_serving();
}

// A data connection that claims another model: refused with both hashes named,
// while the real session (an in-process coordinator) goes on.
TEST(LiveWorkers, AWrongModelHashOnADataConnectionIsRefusedAtBothEnds) {
    test::TwoWorkerSession s;
    RawClient c(s.b.port());
    wire::Frame hello = net::make_hello(wire::UPSTREAM_STAGE, "impostor stage", std::string(16, 'x'));
    hello.mutable_hello()->set_stage_index(0);
    c.send(hello);
    bool closed = false;
    const auto frames = c.read(5, &closed);
    EXPECT_TRUE(closed);
    const std::string e = errors_of(frames);
    EXPECT_NE(e.find("impostor stage"), std::string::npos) << e;
    EXPECT_NE(e.find("serves model " + net::hex(std::string(16, 'x')).substr(0, 16)), std::string::npos) << e;
    EXPECT_NE(s.b.log().find("serves model"), std::string::npos) << s.b.log();
    int token = 1;
    EXPECT_EQ(argmax(s.engine->forward(&token, 1, 0), s.file.config.vocab_size), 403);  // "Once"
}

// The coordinator's end: a "worker" that answers with another protocol version.
TEST(LiveWorkers, TheCoordinatorNamesAWorkerOfAnotherProtocolVersion) {
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    listen(listener, 1);
    socklen_t len = sizeof addr;
    getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    const std::string address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    std::thread fake([listener] {
        const int fd = accept(listener, nullptr, nullptr);
        char buf[4096];
        (void)!recv(fd, buf, sizeof buf, 0);
        wire::Frame hello = net::make_hello(wire::WORKER, "old worker");
        hello.mutable_hello()->set_protocol_version(net::kProtocolVersion + 7);
        const std::string bytes = net::encode_frame(hello);
        (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        usleep(500000);
        close(fd);
    });
    const auto r = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin", {"-n", "4", "--workers", address}), 30);
    fake.join();
    close(listener);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find(address), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("speaks ferry protocol " + std::to_string(net::kProtocolVersion + 7)), std::string::npos) << r.err;
}

TEST(LiveWorkers, AnUnreachableWorkerIsNamedQuickly) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin", {"-n", "4", "--workers", "127.0.0.1:1"}), 30);
    EXPECT_EQ(r.exit_code, 3);  // a peer failed
    EXPECT_NE(r.err.find("worker 127.0.0.1:1: cannot connect"), std::string::npos) << r.err;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
}

// A peer's malformed assignment (the right image hash, other shapes) is
// refused, and the sound cached shard it names stays: the next real run
// sends nothing.
TEST_F(LiveWorker, AMalformedAssignmentNeverDeletesASoundCachedShard) {
    const std::vector<std::string> run = test::ferry_run_args(
        "stories260K.bin", "tok512.bin",
        {"-t", "0", "-n", "16", "--workers", worker_->address(), "--embedding-on-worker", "--head-on-worker"});
    const auto first = test::run_command(run, 60);
    ASSERT_EQ(first.exit_code, 0) << first.err;

    const ModelFile file = open_model_file(test::model_path("stories260K.bin"));
    const std::string model_hash = net::file_content_hash(file.path, "");
    const ShardSpec spec{0, file.config.n_layers, true, true};
    RawClient c(worker_->port());
    c.send(net::make_hello(wire::COORDINATOR, "buggy coordinator"));
    wire::Frame f = test::assign_frame(file, spec, 0);
    wire::Assign* a = f.mutable_assign();
    a->set_model_hash(model_hash);
    a->set_image_hash(net::ShardImage(file, spec, model_hash).content_hash(""));
    a->set_context(16);
    a->mutable_shape()->set_rope_theta(file.config.rope_theta * 2);  // tensors as listed, but not this model
    c.send(f);
    bool closed = false;
    const std::string e = errors_of(c.read(5, &closed));
    EXPECT_NE(e.find("shapes differ"), std::string::npos) << e;

    const auto again = test::run_command(run, 60);
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_NE(again.err.find("shard bytes sent: 0"), std::string::npos) << again.err;
    EXPECT_EQ(again.out, first.out);
}

}  // namespace
}  // namespace ferry
