// How a plan is shown to a user: `ferry plan` prints it, `ferry run
// --workers` prints it before starting, and `--json` gives it to machines.
#pragma once
#include <string>
#include <vector>

#include "coordinator/pipeline/planner.h"

namespace ferry {

// One line per stage: node, what it holds (layers, embedding, head), weight /
// KV / other / total MB against its budget, predicted ms per token; then what
// the coordinator keeps, the predicted ms and tok/s split into compute and
// network, and each left-out worker with the reason.
std::string format_plan(const PipelinePlan& plan, const std::vector<WorkerCapacity>& workers);
// The same as a JSON object (pretty-printed).
std::string plan_json(const PipelinePlan& plan, const std::vector<WorkerCapacity>& workers);

// "layers 0-3 + embedding" style: what a stage holds.
std::string stage_holds(const PlannedStage& stage);

}  // namespace ferry
