// `ferry status`: not built yet.
#include "coordinator/commands.h"

namespace ferry {

void register_status(CLI::App&, std::vector<Command>&) {}

}  // namespace ferry
