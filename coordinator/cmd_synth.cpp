// `ferry synth`: not built yet.
#include "coordinator/commands.h"

namespace ferry {

void register_synth(CLI::App&, std::vector<Command>&) {}

}  // namespace ferry
