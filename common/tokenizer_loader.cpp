#include "common/tokenizer_loader.h"

#include <filesystem>

namespace ferry {

Tokenizer load_tokenizer(const ModelFile& model, const std::string& tokenizer_path) {
    std::string path = tokenizer_path;
    if (path.empty()) path = (std::filesystem::path(model.path).parent_path() / "tokenizer.bin").string();
    return Tokenizer::load_llama2c(path, model.config.vocab_size);
}

}  // namespace ferry
