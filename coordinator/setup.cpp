#include "coordinator/setup.h"

#include <cstdio>

#include "common/error.h"
#include "coordinator/local_engine.h"
#include "coordinator/pipeline_engine.h"

namespace ferry {

PipelineOptions pipeline_options(const RunOptions& o) {
    PipelineOptions p;
    p.workers = o.workers;
    p.split = o.split;
    p.wire = o.wire;
    p.kv_type = kv_type_for(o.kv_type);
    p.embedding_on_worker = o.embedding_on_worker;
    p.head_on_worker = o.head_on_worker;
    p.embedding_on_coordinator = o.embedding_on_coordinator;
    p.head_on_coordinator = o.head_on_coordinator;
    p.prefill_chunk = o.prefill_chunk;
    p.timeout_s = o.net_timeout;
    p.connect_timeout_s = o.connect_timeout;
    p.stats_every = o.stats_every;
    return p;
}

std::unique_ptr<Engine> make_engine(const ModelFile& file, const RunOptions& o, int context,
                                    kernels::ThreadPool* pool) {
    if (!o.workers.empty()) return std::make_unique<PipelineEngine>(file, pipeline_options(o), context, pool);
    if (!o.split.empty()) throw Error("--split needs --workers");
    return std::make_unique<LocalEngine>(file, context, pool, kv_type_for(o.kv_type));
}

void report_engine(const Engine& engine) {
    if (const auto* p = dynamic_cast<const PipelineEngine*>(&engine))
        std::fprintf(stderr, "%s", format_node_table(p->stats()).c_str());
}

}  // namespace ferry
