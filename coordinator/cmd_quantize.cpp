// `ferry quantize`: not built yet (owned by the GGUF work).
#include "coordinator/commands.h"

namespace ferry {

void register_quantize(CLI::App&, std::vector<Command>&) {}

}  // namespace ferry
