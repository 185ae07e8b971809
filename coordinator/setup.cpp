#include "coordinator/setup.h"

#include "common/error.h"
#include "coordinator/local_engine.h"

namespace ferry {

std::unique_ptr<Engine> make_engine(const ModelFile& file, const RunOptions& o, int context,
                                    kernels::ThreadPool* pool) {
    if (!o.workers.empty()) throw Error("--workers: the pipeline is not built yet");
    return std::make_unique<LocalEngine>(file, context, pool, kv_type_for(o.kv_type));
}

void report_engine(const Engine&) {}

}  // namespace ferry
