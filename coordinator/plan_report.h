// How a plan is shown to a user: `ferry plan` prints it, `ferry run
// --workers` prints it before starting, and `--json` gives it to machines.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "coordinator/planner.h"

namespace ferry {

// One line per stage: node, layers, weight/KV/total MB against its budget,
// predicted ms per token; then the predicted tok/s and who was left out.
std::string format_plan(const PipelinePlan& plan, const std::vector<WorkerCapacity>& workers);
std::string plan_json(const PipelinePlan& plan, const std::vector<WorkerCapacity>& workers);

}  // namespace ferry
