// Small helpers the tests share: paths to the shared models and binaries,
// running a command, temporary directories.
#pragma once
#include <string>
#include <vector>

namespace ferry::test {

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
    std::string err;  // stderr
};
// Runs argv (no shell), waits at most timeout_s seconds (then kills it).
CommandResult run_command(const std::vector<std::string>& argv, double timeout_s = 120);

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

}  // namespace ferry::test
