// `ferry plan`: not built yet.
#include "coordinator/commands.h"

namespace ferry {

void register_plan(CLI::App&, std::vector<Command>&) {}

}  // namespace ferry
