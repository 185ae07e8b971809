#include <cstring>
#include <fstream>

#include "common/error.h"
#include "common/model_file.h"

namespace ferry {

ModelFile open_model_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open the model file");
    char magic[4] = {};
    in.read(magic, 4);
    if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0)
        throw Error(path + ": GGUF models are not supported by this build yet");
    return open_llama2c_file(path);
}

}  // namespace ferry
