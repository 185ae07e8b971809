// A newcomer's mistakes, answered well: exit codes that say which kind of
// failure it was, a near option suggested, a port that is not a ferry
// worker named as such, a worker listed twice, and Ctrl+C keeping the text.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "tests/test_support.h"

namespace ferry {
namespace {

TEST(CliErrors, ExitCodesTellUsageInputPeerAndSuccessApart) {
    const std::string model = test::model_path("stories260K.bin"), tok = test::model_path("tok512.bin");
    EXPECT_EQ(test::run_command({test::ferry_bin(), "run", model, "-z", tok, "-n", "4"}).exit_code, 0);
    EXPECT_EQ(test::run_command({test::ferry_bin(), "--help"}).exit_code, 0);
    EXPECT_EQ(test::run_command({test::ferry_bin(), "run", model, "--no-such-option"}).exit_code, 2);
    EXPECT_EQ(test::run_command({test::ferry_bin(), "run"}).exit_code, 2);
    EXPECT_EQ(test::run_command({test::ferry_bin(), "run", "/nonexistent/model.bin"}).exit_code, 1);
    // A worker that is not there: a peer failed.
    const auto r = test::run_command({test::ferry_bin(), "run", model, "-z", tok, "-n", "4", "--workers", "127.0.0.1:1",
                                      "--connect-timeout", "2"});
    EXPECT_EQ(r.exit_code, 3) << r.err;
}

TEST(CliErrors, AnOptionCloseToAKnownOneIsSuggested) {
    const auto r = test::run_command({test::ferry_bin(), "run", test::model_path("stories260K.bin"), "--temp", "0.5"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("--temp: did you mean --temperature?"), std::string::npos) << r.err;
    const auto typo = test::run_command({test::ferry_bin(), "status", "--wokers", "127.0.0.1:1"});
    EXPECT_NE(typo.err.find("did you mean --workers?"), std::string::npos) << typo.err;
}

// An HTTP server where a worker was expected: named as "not a ferry peer",
// not as an oversized frame.
TEST(CliErrors, AnHttpServerIsNamedAsNotAFerryPeer) {
    httplib::Server http;
    http.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content("hello", "text/plain"); });
    const int port = http.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port, 0);
    std::thread serving([&] { http.listen_after_bind(); });
    const std::string address = "127.0.0.1:" + std::to_string(port);
    const auto r = test::run_command(
        test::ferry_run_args("stories260K.bin", "tok512.bin", {"-n", "4", "--workers", address, "--timeout", "5"}), 60);
    http.stop();
    serving.join();
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_NE(r.err.find(address), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("is not a ferry peer: it speaks HTTP"), std::string::npos) << r.err;
}

TEST(CliErrors, AWorkerListedTwiceIsRefusedBeforeConnecting) {
    const auto r = test::run_command(test::ferry_run_args(
        "stories260K.bin", "tok512.bin", {"-n", "4", "--workers", "127.0.0.1:1,127.0.0.1:1"}));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("127.0.0.1:1 is listed twice"), std::string::npos) << r.err;
}

// Ctrl+C during a run: the text so far stays printed, ferry says it was
// interrupted and exits 130.
TEST(CliErrors, InterruptedRunKeepsItsTextAndExits130) {
    test::TempDir dir;
    const test::SynthModel m = test::synth_64mb_model(dir, 2048);
    const int out = ::open(dir.file("out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(dir.file("err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::string why;
    // Seeded sampling that runs the whole way on this model (as tests/recovery_test.cpp's).
    const int pid = test::spawn({test::ferry_bin(), "run", m.model, "-z", m.tokenizer, "-n", "2000", "--threads", "1",
                                 "-t", "0.5", "-p", "0.9", "-s", "5"},
                                out, err, &why);
    ::close(out);
    ::close(err);
    ASSERT_GT(pid, 0) << why;
    for (int i = 0; i < 500 && test::read_file(dir.file("out")).size() < 50; ++i) usleep(20000);
    ASSERT_GE(test::read_file(dir.file("out")).size(), 50u) << test::read_file(dir.file("err"));
    kill(pid, SIGINT);
    EXPECT_EQ(test::wait_exit(pid, 30), 130) << test::read_file(dir.file("err"));
    EXPECT_GE(test::read_file(dir.file("out")).size(), 50u);
    EXPECT_NE(test::read_file(dir.file("err")).find("interrupted after"), std::string::npos)
        << test::read_file(dir.file("err"));
}

}  // namespace
}  // namespace ferry
