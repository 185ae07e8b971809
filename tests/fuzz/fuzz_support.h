// What the fuzz targets share: the input as a file for readers that take only
// a path, using a tokenizer once it loads, and the hard failure for a broken
// invariant (an abort, which libFuzzer records as a crash and ctest as a
// failed test).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/tokenizer.h"

namespace ferry::fuzz {

[[noreturn]] inline void broken(const std::string& what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what.c_str());
    std::abort();
}

// The llama2.c readers map a file by path and have no from-memory entry, so
// each input is written into one anonymous memory file (memfd) that they
// open as /proc/self/fd/N: no disk, and one descriptor for the whole run.
// The reader maps the file, so an address sanitizer cannot see a read past
// its end: the targets check every range they are handed instead.
class InputFile {
public:
    InputFile() {
        fd_ = ::memfd_create("ferry-fuzz-input", MFD_CLOEXEC);
        if (fd_ < 0) broken("memfd_create failed");
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;
    ~InputFile() { ::close(fd_); }

    // Replaces the file's bytes; returns its path.
    const std::string& write(const uint8_t* data, size_t size) {
        if (::ftruncate(fd_, 0) != 0) broken("ftruncate of the input file failed");
        for (size_t done = 0; done < size;) {
            const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
            if (n <= 0) broken("writing the input file failed");
            done += static_cast<size_t>(n);
        }
        return path_;
    }

private:
    int fd_ = -1;
    std::string path_;
};

// Turns logging off while it lives: warnings about odd but accepted inputs
// would otherwise print once per mutant.
struct QuietLogs {
    spdlog::level::level_enum saved = spdlog::get_level();
    QuietLogs() { spdlog::set_level(spdlog::level::off); }
    ~QuietLogs() { spdlog::set_level(saved); }
};

inline InputFile& input_file() {
    static InputFile f;
    return f;
}

// Encodes a fixed text (special-token syntax, UTF-8, digits) and decodes the
// result and every id up to 4096: every id encode returns must be a token.
inline void use_tokenizer(const Tokenizer& tok) {
    const std::vector<int> ids = tok.encode("Hello world, 123 <s> \xc3\xa9\xe4\xb8\xad!", true, true, true);
    int prev = -1;
    for (int id : ids) {
        if (id < 0 || id >= tok.vocab_size())
            broken("encode returned id " + std::to_string(id) + " of a " + std::to_string(tok.vocab_size()) +
                   "-token vocabulary");
        (void)tok.decode(prev, id);
        prev = id;
    }
    for (int id = 0; id < tok.vocab_size() && id < 4096; ++id) (void)tok.decode(id > 0 ? id - 1 : -1, id);
}

}  // namespace ferry::fuzz
