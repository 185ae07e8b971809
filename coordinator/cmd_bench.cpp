// `ferry bench`: not built yet.
#include "coordinator/commands.h"

namespace ferry {

void register_bench(CLI::App&, std::vector<Command>&) {}

}  // namespace ferry
