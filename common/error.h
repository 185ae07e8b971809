// Every user-facing failure is one of these: a single line that names the
// thing (file, node, flag) and says what is wrong and, where possible, what to do.
#pragma once
#include <stdexcept>
#include <string>

namespace ferry {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace ferry
