#include "coordinator/pipeline/planner.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <numeric>
#include <optional>

#include "common/error.h"
#include "common/weights.h"
#include "kernels/tensor_type.h"

namespace ferry {

namespace {

constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
// Request sizes (positions) tried, largest first, when a whole-context request does not fit.
constexpr int kPlannedChunks[] = {512, 128, 32};
// Speed assumed for a worker that has not measured one: equal for all, so the
// plan then depends on memory and links only.
constexpr double kNominalGbps = 1.0;

double gbps_for(const WorkerCapacity& w, const std::string& type) {
    const auto it = w.type_gbps.find(type);
    if (it != w.type_gbps.end() && it->second > 0) return it->second;
    return w.matvec_gbps > 0 ? w.matvec_gbps : kNominalGbps;
}

// bytes / (GB/s) is nanoseconds.
int64_t read_ns(const std::vector<TypedBytes>& reads, const WorkerCapacity& w) {
    double ns = 0;
    for (const TypedBytes& r : reads) ns += static_cast<double>(r.bytes) / gbps_for(w, r.type);
    return std::llround(ns);
}

void add_read(std::vector<TypedBytes>& reads, const TensorInfo& t) {
    const std::string type = tensor_type_name(t.type);
    for (TypedBytes& r : reads)
        if (r.type == type) {
            r.bytes += t.bytes;
            return;
        }
    reads.push_back({type, t.bytes});
}

const TensorInfo* find_tensor(const std::vector<TensorInfo>& tensors, const std::string& name) {
    for (const TensorInfo& t : tensors)
        if (t.name == name) return &t;
    return nullptr;
}

int context_of(const ModelFile& file, const PlanRequest& r) {
    return r.context > 0 ? std::min(r.context, file.config.seq_len) : file.config.seq_len;
}

}  // namespace

std::vector<uint64_t> layer_weight_bytes(const ModelFile& file) {
    const ModelConfig& c = file.config;
    const bool tied = find_tensor(file.tensors, "output.weight") == nullptr;
    std::vector<uint64_t> bytes;
    for (int l = 0; l < c.n_layers; ++l) {
        std::vector<std::string> names = shard_tensor_names(c, ShardSpec{l, l + 1, false, false}, tied);
        names.erase(std::remove(names.begin(), names.end(), "rope_freqs.weight"), names.end());
        bytes.push_back(tensor_bytes_named(file.tensors, names));
    }
    return bytes;
}

PlanProblem make_plan_problem(const ModelFile& file, const PlanRequest& r) {
    const ModelConfig& c = file.config;
    const int context = context_of(file, r);
    const bool tied = find_tensor(file.tensors, "output.weight") == nullptr;
    PlanProblem p;
    const std::vector<uint64_t> weights = layer_weight_bytes(file);
    const uint64_t kv_per_layer = static_cast<uint64_t>(std::max(1, r.slots)) * KVCache::bytes_for(1, context, c.kv_dim(), r.kv_type);
    for (int l = 0; l < c.n_layers; ++l) {
        p.layer_memory.push_back(weights[static_cast<size_t>(l)] + kv_per_layer);
        std::vector<TypedBytes> reads;
        for (const std::string& name : shard_tensor_names(c, ShardSpec{l, l + 1, false, false}, tied))
            if (const TensorInfo* t = find_tensor(file.tensors, name); t && name != "rope_freqs.weight") add_read(reads, *t);
        // Attention reads the layer's cache up to the position: half the context on average
        // over a generation that fills it.
        reads.push_back({kv_type_name(r.kv_type), KVCache::bytes_for(1, context / 2, c.kv_dim(), r.kv_type)});
        p.layer_reads.push_back(std::move(reads));
    }
    const uint64_t rope = c.rope_freq_factors ? tensor_bytes_named(file.tensors, {"rope_freqs.weight"}) : 0;
    for (int first = 0; first < 2; ++first)
        for (int last = 0; last < 2; ++last)
            for (int emb = 0; emb < 2; ++emb)
                for (int head = 0; head < 2; ++head) {
                    StageLoad load{context, r.kv_type, r.max_positions, r.wire_bytes, first == 1, last == 1, "x86_64", r.slots};
                    const ShardMemory m = shard_memory(c, file.tensors, ShardSpec{0, 1, emb == 1, head == 1}, load);
                    p.stage_memory[first][last][emb][head] = m.workspace + m.buffers + rope;
                }
    p.embedding_memory = tensor_bytes_named(file.tensors, {"token_embd.weight"});
    p.tied = tied;
    p.embedding_lookup_memory = p.embedding_memory;
    if (const TensorInfo* t = find_tensor(file.tensors, "token_embd.weight"); t && t->rows > 0 && t->type != TensorType::Q8_GROUP)
        p.embedding_lookup_memory = t->bytes / static_cast<uint64_t>(t->rows) + static_cast<uint64_t>(c.dim) * 4;
    p.head_memory = tensor_bytes_named(file.tensors, {"output_norm.weight", tied ? "token_embd.weight" : "output.weight"});
    p.tied_shared = tied ? p.embedding_memory : 0;
    for (const char* name : {"output_norm.weight", tied ? "token_embd.weight" : "output.weight"})
        if (const TensorInfo* t = find_tensor(file.tensors, name)) add_read(p.head_reads, *t);
    p.activation_bytes = static_cast<uint64_t>(c.dim) * static_cast<uint64_t>(r.wire_bytes);
    p.token_bytes = 4;
    p.coordinator_extra = static_cast<uint64_t>(c.vocab_size) * (4 + 8);  // logits and the sampler's candidates
    p.vocab = c.vocab_size;
    p.coordinator_process = coordinator_process_memory(c.vocab_size);
    if (const TensorInfo* t = find_tensor(file.tensors, tied ? "token_embd.weight" : "output.weight"); t && t->rows > 0) {
        p.classifier_row = t->bytes / static_cast<uint64_t>(t->rows);
        p.classifier_type = tensor_type_name(t->type);
        p.classifier_sliceable = t->type != TensorType::Q8_GROUP && t->rows == c.vocab_size;
    }
    const uint64_t buffers0 = slice_buffers(c, 0, r.slots);
    p.slice_fixed = tensor_bytes_named(file.tensors, {"output_norm.weight"}) + buffers0;
    p.slice_row = p.classifier_row + (slice_buffers(c, 1, r.slots) - buffers0);
    p.hidden_bytes = static_cast<uint64_t>(c.dim) * 4;
    return p;
}

// ---- cost primitives ----

uint64_t stage_memory(const PlanProblem& p, const WorkerCapacity& w, const StageShape& s) {
    uint64_t bytes = worker_process_overhead(w.arch) + p.stage_memory[s.first][s.last][s.embedding][s.head];
    for (int l = s.first_layer; l < s.last_layer; ++l) bytes += p.layer_memory[static_cast<size_t>(l)];
    if (s.embedding) bytes += p.embedding_memory;
    if (s.head) bytes += p.head_memory;
    if (s.embedding && s.head) bytes -= p.tied_shared;
    return bytes;
}

bool stage_fits(const PlanProblem& p, const WorkerCapacity& w, const StageShape& s) {
    return w.memory_budget == 0 || stage_memory(p, w, s) <= w.memory_budget;
}

int64_t stage_compute_ns(const PlanProblem& p, const WorkerCapacity& w, const StageShape& s) {
    int64_t ns = 0;
    for (int l = s.first_layer; l < s.last_layer; ++l) ns += read_ns(p.layer_reads[static_cast<size_t>(l)], w);
    if (s.head) ns += read_ns(p.head_reads, w);
    return ns;
}

int64_t hop_ns(const WorkerCapacity* from, const WorkerCapacity* to, uint64_t bytes) {
    double latency_ms = 0, mbps = 0;
    if (from && to) latency_ms = (from->link_latency_ms + to->link_latency_ms) / 2;
    else if (from || to) latency_ms = (from ? from : to)->link_latency_ms;
    for (const WorkerCapacity* end : {from, to})
        if (end && end->link_mbps > 0) mbps = mbps > 0 ? std::min(mbps, end->link_mbps) : end->link_mbps;
    const double transfer_ns = mbps > 0 ? static_cast<double>(bytes) * 8e3 / mbps : 0.0;
    return std::llround(latency_ms * 1e6 + transfer_ns);
}

int64_t coordinator_head_ns(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                            const CoordinatorCapacity& coordinator) {
    WorkerCapacity c;
    c.matvec_gbps = coordinator.matvec_gbps;
    if (coordinator.matvec_gbps <= 0) {
        // Unknown: as fast as the fastest worker, type by type.
        for (const TypedBytes& r : p.head_reads) {
            double best = 0;
            for (const WorkerCapacity& w : workers) best = std::max(best, gbps_for(w, r.type));
            c.type_gbps[r.type] = best > 0 ? best : kNominalGbps;
        }
    }
    return read_ns(p.head_reads, c);
}

uint64_t coordinator_process_memory(int vocab_size) {
    return kCoordinatorOverhead + static_cast<uint64_t>(std::max(0, vocab_size)) * kCoordinatorBytesPerToken;
}

uint64_t coordinator_memory(const PlanProblem& p, bool keeps_embedding, bool keeps_head) {
    uint64_t bytes = 0;
    // Only a tied classifier applied here keeps the table resident; a lookup alone reads rows.
    if (keeps_embedding) bytes += keeps_head && p.tied ? p.embedding_memory : p.embedding_lookup_memory;
    if (keeps_head) bytes += p.head_memory + p.coordinator_extra;
    if (keeps_embedding && keeps_head) bytes -= p.tied_shared;
    return bytes;
}

namespace {

bool coordinator_fits(const PlanProblem& p, const CoordinatorCapacity& c, bool embedding_on_worker, bool head_on_worker) {
    return c.memory_budget == 0 ||
           p.coordinator_process + coordinator_memory(p, !embedding_on_worker, !head_on_worker) <= c.memory_budget;
}

StageShape shape_of(const PlannedStage& s, bool first, bool last) {
    return StageShape{s.first_layer, s.last_layer, first, last, s.embedding, s.head};
}

}  // namespace

int64_t chain_ns(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                 const CoordinatorCapacity& coordinator, const std::vector<PlannedStage>& stages) {
    if (stages.empty()) return -1;
    const bool e = stages.front().embedding, h = stages.back().head;
    if (!coordinator_fits(p, coordinator, e, h)) return -1;
    int64_t ns = 0;
    const WorkerCapacity* prev = nullptr;
    for (size_t i = 0; i < stages.size(); ++i) {
        const WorkerCapacity& w = workers[static_cast<size_t>(stages[i].worker)];
        const StageShape shape = shape_of(stages[i], i == 0, i + 1 == stages.size());
        if (!stage_fits(p, w, shape)) return -1;
        ns += hop_ns(prev, &w, i == 0 && e ? p.token_bytes : p.activation_bytes) + stage_compute_ns(p, w, shape);
        prev = &w;
    }
    ns += hop_ns(prev, nullptr, h ? p.token_bytes : p.activation_bytes);
    if (!h) ns += coordinator_head_ns(p, workers, coordinator);
    return ns;
}

// ---- the search ----

namespace {

bool allowed(Placement rule, bool on_worker) {
    return rule == Placement::planned || (rule == Placement::worker) == on_worker;
}

// Forward and backward tables over (layers placed, worker) for each
// placement of the embedding and the head, in ns.
class Solver {
public:
    Solver(const PlanProblem& p, const std::vector<WorkerCapacity>& w, const PlanRequest& r)
        : p_(p), w_(w), r_(r), N_(static_cast<int>(w.size())), L_(static_cast<int>(p.layer_memory.size())) {
        mem_prefix_.assign(static_cast<size_t>(L_) + 1, 0);
        for (int l = 0; l < L_; ++l) mem_prefix_[l + 1] = mem_prefix_[l] + p.layer_memory[static_cast<size_t>(l)];
        ns_prefix_.assign(static_cast<size_t>(N_), std::vector<int64_t>(static_cast<size_t>(L_) + 1, 0));
        head_ns_.resize(static_cast<size_t>(N_));
        for (int j = 0; j < N_; ++j) {
            for (int l = 0; l < L_; ++l)
                ns_prefix_[j][l + 1] = ns_prefix_[j][l] + read_ns(p.layer_reads[static_cast<size_t>(l)], w[j]);
            head_ns_[j] = read_ns(p.head_reads, w[j]);
        }
        coord_head_ns_ = coordinator_head_ns(p, w, r.coordinator);
    }

    int layers() const { return L_; }

    // Compute of worker j running [k, i) (first stage if k == 0, last if i == L),
    // or kInf if it does not fit: the numbers of stage_compute_ns and stage_fits.
    int64_t stage(int j, int k, int i, bool e, bool h) const {
        if (w_[j].memory_budget > 0 && stage_bytes(j, k, i, e, h) > w_[j].memory_budget) return kInf;
        return ns_prefix_[j][i] - ns_prefix_[j][k] + (h ? head_ns_[j] : 0);
    }
    uint64_t stage_bytes(int j, int k, int i, bool e, bool h) const {
        uint64_t bytes = worker_process_overhead(w_[j].arch) + p_.stage_memory[k == 0][i == L_][e][h] +
                         (mem_prefix_[i] - mem_prefix_[k]);
        if (e) bytes += p_.embedding_memory;
        if (h) bytes += p_.head_memory;
        if (e && h) bytes -= p_.tied_shared;
        return bytes;
    }
    int64_t hop(int from, int to, uint64_t bytes) const {
        return hop_ns(from < 0 ? nullptr : &w_[from], to < 0 ? nullptr : &w_[to], bytes);
    }
    // Into the first stage, worker j.
    int64_t start(int j, bool e) const { return hop(-1, j, e ? p_.token_bytes : p_.activation_bytes); }
    // After the last stage, worker j: the hop back and the coordinator's head; kInf if the
    // coordinator cannot keep what the stages leave it.
    int64_t finish(int j, bool e, bool h) const {
        if (!coordinator_fits(p_, r_.coordinator, e, h)) return kInf;
        return hop(j, -1, h ? p_.token_bytes : p_.activation_bytes) + (h ? 0 : coord_head_ns_);
    }

    // ---- forward: the optimal plan under the tie rule ----
    struct Cell {
        int64_t ns = kInf;
        int stages = 0;
        int prev_worker = -1, prev_end = 0;  // the stage before this one (-1: none)
    };

    // Tie rule (2) on equal time and stage count, read from the last stage back:
    // the stage on the earlier worker wins; on the same worker, the one ending later.
    // a and b are stages (worker, end) in the tables of embedding placements ea, eb.
    bool seq_less(int ea, int ja, int ia, int eb, int jb, int ib) const {
        while (ja >= 0 && jb >= 0) {
            if (ja != jb) return ja < jb;
            if (ia != ib) return ia > ib;
            const Cell& ca = cell(ea, ja, ia);
            const Cell& cb = cell(eb, jb, ib);
            ja = ca.prev_worker, ia = ca.prev_end, jb = cb.prev_worker, ib = cb.prev_end;
        }
        return ja < 0 && jb >= 0;
    }

    void run_forward() {
        for (int e = 0; e < 2; ++e) {
            forward_[e].assign(static_cast<size_t>(N_) * (L_ + 1), Cell{});
            into_[e].assign(static_cast<size_t>(N_) * (L_ + 1), Cell{});
            if (!allowed(r_.embedding, e == 1)) continue;
            for (int j = 0; j < N_; ++j) {
                // The best prefix handing layer k to worker j from an earlier worker.
                for (int k = 1; k < L_; ++k) {
                    Cell& best = into(e, j, k);
                    for (int jp = 0; jp < j; ++jp) {
                        const Cell& c = cell(e, jp, k);
                        if (c.ns >= kInf) continue;
                        const int64_t ns = c.ns + hop(jp, j, p_.activation_bytes);
                        if (best.prev_worker < 0 || ns < best.ns ||
                            (ns == best.ns && (c.stages + 1 < best.stages ||
                                               (c.stages + 1 == best.stages && seq_less(e, jp, k, e, best.prev_worker, k)))))
                            best = Cell{ns, c.stages + 1, jp, k};
                    }
                }
                for (int i = 1; i < L_; ++i) {
                    Cell& out = cell(e, j, i);
                    const int64_t s0 = stage(j, 0, i, e == 1, false);
                    if (s0 < kInf) out = Cell{start(j, e == 1) + s0, 1, -1, 0};
                    for (int k = 1; k < i; ++k) {
                        const Cell& in = into(e, j, k);
                        if (in.prev_worker < 0) continue;
                        const int64_t s = stage(j, k, i, false, false);
                        if (s >= kInf) continue;
                        const int64_t ns = in.ns + s;
                        if (out.ns >= kInf || ns < out.ns ||
                            (ns == out.ns && (in.stages < out.stages ||
                                              (in.stages == out.stages &&
                                               seq_less(e, in.prev_worker, k, e, out.prev_worker, out.prev_end)))))
                            out = Cell{ns, in.stages, in.prev_worker, k};
                    }
                }
            }
        }
    }

    struct Best {
        int64_t ns = kInf;
        int stages = 0;
        int e = 0, h = 0, worker = -1, from = 0, prev_worker = -1;
    };
    // The optimal complete chain: least time, then fewer stages, then rule (2),
    // then the embedding and the head on the coordinator.
    Best best_chain() const {
        Best best;
        auto take = [&](const Best& c) {
            if (best.worker < 0 || c.ns < best.ns) return true;
            if (c.ns > best.ns) return false;
            if (c.stages != best.stages) return c.stages < best.stages;
            if (c.worker != best.worker) return c.worker < best.worker;
            if (c.prev_worker != best.prev_worker || c.from != best.from || c.e != best.e) {
                if (seq_less(c.e, c.prev_worker, c.from, best.e, best.prev_worker, best.from)) return true;
                if (seq_less(best.e, best.prev_worker, best.from, c.e, c.prev_worker, c.from)) return false;
            }
            return std::make_pair(c.e, c.h) < std::make_pair(best.e, best.h);
        };
        for (int e = 0; e < 2; ++e) {
            if (!allowed(r_.embedding, e == 1)) continue;
            for (int h = 0; h < 2; ++h) {
                if (!allowed(r_.head, h == 1)) continue;
                for (int j = 0; j < N_; ++j) {
                    const int64_t tail = finish(j, e == 1, h == 1);
                    if (tail >= kInf) continue;
                    const int64_t whole = stage(j, 0, L_, e == 1, h == 1);
                    if (whole < kInf) {
                        const Best c{start(j, e == 1) + whole + tail, 1, e, h, j, 0, -1};
                        if (take(c)) best = c;
                    }
                    for (int k = 1; k < L_; ++k) {
                        const Cell& in = into(e, j, k);
                        if (in.prev_worker < 0) continue;
                        const int64_t s = stage(j, k, L_, false, h == 1);
                        if (s >= kInf) continue;
                        const Best c{in.ns + s + tail, in.stages, e, h, j, k, in.prev_worker};
                        if (take(c)) best = c;
                    }
                }
            }
        }
        return best;
    }

    std::vector<PlannedStage> stages_of(const Best& b) const {
        std::vector<PlannedStage> stages;
        for (int j = b.prev_worker, i = b.from; j >= 0;) {
            const Cell& c = cell(b.e, j, i);
            PlannedStage s;
            s.worker = j;
            s.first_layer = c.prev_end;
            s.last_layer = i;
            stages.insert(stages.begin(), s);
            j = c.prev_worker;
            i = c.prev_end;
        }
        PlannedStage last;
        last.worker = b.worker;
        last.first_layer = b.from;
        last.last_layer = L_;
        last.head = b.h == 1;
        stages.push_back(last);
        stages.front().embedding = b.e == 1;
        return stages;
    }

    // ---- backward: for every worker, the best chain that uses it ----
    // after(e, h, j, i): the best continuation once worker j's stage ends at layer i < L
    // (the hop to a later worker and everything from there).
    void run_backward() {
        const size_t cells = static_cast<size_t>(N_) * (L_ + 1);
        for (int e = 0; e < 2; ++e)
            for (int h = 0; h < 2; ++h) {
                std::vector<int64_t>& from = from_[e][h];  // from(j, k): worker j's stage starts at k > 0
                std::vector<int64_t>& after = after_[e][h];
                from.assign(cells, kInf);
                after.assign(cells, kInf);
                if (!allowed(r_.embedding, e == 1) || !allowed(r_.head, h == 1)) continue;
                for (int j = N_ - 1; j >= 0; --j) {
                    for (int i = 1; i < L_; ++i) {
                        int64_t best = kInf;
                        for (int jn = j + 1; jn < N_; ++jn) {
                            const int64_t b = from[static_cast<size_t>(jn) * (L_ + 1) + i];
                            if (b < kInf) best = std::min(best, hop(j, jn, p_.activation_bytes) + b);
                        }
                        after[static_cast<size_t>(j) * (L_ + 1) + i] = best;
                    }
                    const int64_t tail = finish(j, e == 1, h == 1);
                    for (int k = 1; k < L_; ++k) {
                        int64_t best = kInf;
                        for (int i = k + 1; i <= L_; ++i) {
                            const int64_t rest = i == L_ ? tail : after[static_cast<size_t>(j) * (L_ + 1) + i];
                            if (rest >= kInf) continue;
                            const int64_t s = stage(j, k, i, false, i == L_ && h == 1);
                            if (s < kInf) best = std::min(best, s + rest);
                        }
                        from[static_cast<size_t>(j) * (L_ + 1) + k] = best;
                    }
                }
            }
    }

    // The fastest plan that uses worker w, in ns (kInf: none fits), and the
    // least memory w would need beyond its budget for some plan with it to fit.
    void using_worker(int w, int64_t* best_ns, uint64_t* extra) const {
        *best_ns = kInf;
        *extra = std::numeric_limits<uint64_t>::max();
        for (int e = 0; e < 2; ++e)
            for (int h = 0; h < 2; ++h) {
                if (!allowed(r_.embedding, e == 1) || !allowed(r_.head, h == 1)) continue;
                const int64_t tail = finish(w, e == 1, h == 1);
                for (int k = 0; k < L_; ++k) {
                    const int64_t before = k == 0 ? start(w, e == 1) : into(e, w, k).ns;
                    if (before >= kInf) continue;
                    for (int i = k + 1; i <= L_; ++i) {
                        const int64_t rest = i == L_ ? tail : after_[e][h][static_cast<size_t>(w) * (L_ + 1) + i];
                        if (rest >= kInf) continue;
                        const bool emb = k == 0 && e == 1, head = i == L_ && h == 1;
                        const uint64_t need = stage_bytes(w, k, i, emb, head), budget = w_[w].memory_budget;
                        *extra = std::min<uint64_t>(*extra, budget == 0 || need <= budget ? 0 : need - budget);
                        const int64_t s = stage(w, k, i, emb, head);
                        if (s < kInf) *best_ns = std::min(*best_ns, before + s + rest);
                    }
                }
            }
    }

private:
    Cell& cell(int e, int j, int i) { return forward_[e][static_cast<size_t>(j) * (L_ + 1) + i]; }
    const Cell& cell(int e, int j, int i) const { return forward_[e][static_cast<size_t>(j) * (L_ + 1) + i]; }
    Cell& into(int e, int j, int k) { return into_[e][static_cast<size_t>(j) * (L_ + 1) + k]; }
    const Cell& into(int e, int j, int k) const { return into_[e][static_cast<size_t>(j) * (L_ + 1) + k]; }

    const PlanProblem& p_;
    const std::vector<WorkerCapacity>& w_;
    const PlanRequest& r_;
    int N_, L_;
    std::vector<uint64_t> mem_prefix_;
    std::vector<std::vector<int64_t>> ns_prefix_;
    std::vector<int64_t> head_ns_;
    int64_t coord_head_ns_ = 0;
    std::vector<Cell> forward_[2], into_[2];
    std::vector<int64_t> from_[2][2], after_[2][2];
};

double ms(int64_t ns) { return ns / 1e6; }

std::string ms_text(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, v < 10 ? "%.3f ms" : "%.1f ms", v);
    return buf;
}

// Fills the predicted times, the coordinator's share and the left-out list.
PipelinePlan finish_plan(const PlanProblem& p, const std::vector<WorkerCapacity>& workers, const PlanRequest& r,
                         std::vector<PlannedStage> stages) {
    PipelinePlan plan;
    plan.kv_type = r.kv_type;
    plan.wire_bytes = r.wire_bytes;
    plan.max_positions = r.max_positions;
    plan.slots = std::max(1, r.slots);
    plan.forced_split = !r.split.empty();
    const bool e = stages.front().embedding, h = stages.back().head;
    const WorkerCapacity* prev = nullptr;
    std::vector<bool> used(workers.size(), false);
    for (size_t i = 0; i < stages.size(); ++i) {
        PlannedStage& s = stages[i];
        const WorkerCapacity& w = workers[static_cast<size_t>(s.worker)];
        s.hop_ms = ms(hop_ns(prev, &w, i == 0 && e ? p.token_bytes : p.activation_bytes));
        s.compute_ms = ms(stage_compute_ns(p, w, shape_of(s, i == 0, i + 1 == stages.size())));
        prev = &w;
        used[static_cast<size_t>(s.worker)] = true;
    }
    plan.return_hop_ms = ms(hop_ns(prev, nullptr, h ? p.token_bytes : p.activation_bytes));
    plan.coordinator_ms = h ? 0 : ms(coordinator_head_ns(p, workers, r.coordinator));
    plan.coordinator_weights = coordinator_memory(p, !e, !h);
    plan.embedding_by_rows = !e && !(!h && p.tied) && p.embedding_lookup_memory < p.embedding_memory;
    if (!h) plan.coordinator_weights -= p.coordinator_extra;  // weights only
    plan.predicted_ms_per_token = ms(chain_ns(p, workers, r.coordinator, stages));
    for (size_t w = 0; w < workers.size(); ++w)
        if (!used[w]) plan.left_out.push_back(static_cast<int>(w));
    plan.stages = std::move(stages);
    return plan;
}

void explain_left_out(const PlanProblem& p, const std::vector<WorkerCapacity>& workers, const Solver& solver,
                      PipelinePlan& plan) {
    for (int w : plan.left_out) {
        const WorkerCapacity& c = workers[static_cast<size_t>(w)];
        int64_t best = kInf;
        uint64_t extra = 0;
        solver.using_worker(w, &best, &extra);
        std::string why;
        if (best >= kInf) {
            uint64_t smallest = std::numeric_limits<uint64_t>::max();
            for (int l = 0; l < solver.layers(); ++l)
                smallest = std::min(smallest, stage_memory(p, c, StageShape{l, l + 1, false, false, false, false}));
            if (c.memory_budget > 0 && smallest > c.memory_budget)
                why = "its budget of " + format_bytes(c.memory_budget) + " cannot hold one layer (the smallest stage needs " +
                      format_bytes(smallest) + ")";
            else
                why = "no plan that uses it fits the other workers' budgets (it would need " + format_bytes(extra) + " more)";
        } else {
            const double delta = ms(best) - plan.predicted_ms_per_token;
            char gbps[32];
            std::snprintf(gbps, sizeof gbps, "%.2g GB/s", c.matvec_gbps > 0 ? c.matvec_gbps : kNominalGbps);
            why = "the best plan using it takes " + ms_text(ms(best)) + " per token, " + ms_text(std::max(0.0, delta)) +
                  " more: its speed (" + gbps + ") and an extra hop (" +
                  ms_text(ms(hop_ns(nullptr, &c, p.activation_bytes))) + ") cost more than it adds";
            if (delta <= 0) why = "a plan using it instead is as fast, and ties go to fewer stages and earlier workers";
        }
        plan.left_out_reasons.push_back({w, why, best >= kInf ? -1.0 : ms(best)});
    }
}

}  // namespace

PipelinePlan plan_optimal(const PlanProblem& p, const std::vector<WorkerCapacity>& workers, const PlanRequest& request) {
    if (workers.empty()) throw Error("--workers: no workers given");
    if (p.layer_memory.empty()) throw Error("the model has no layers to place");
    Solver solver(p, workers, request);
    solver.run_forward();
    const Solver::Best best = solver.best_chain();
    solver.run_backward();
    if (best.worker < 0) {
        const uint64_t layers = std::accumulate(p.layer_memory.begin(), p.layer_memory.end(), uint64_t{0});
        uint64_t offered = 0;
        for (const WorkerCapacity& w : workers) offered += w.memory_budget;
        throw PoolTooSmall("the " + std::to_string(workers.size()) + " workers cannot hold the model (its layers need " +
                               format_bytes(layers) + ", the budgets offer " + format_bytes(offered) + ")",
                           layers, offered);
    }
    PipelinePlan plan = finish_plan(p, workers, request, solver.stages_of(best));
    explain_left_out(p, workers, solver, plan);
    return plan;
}

PipelinePlan plan_forced(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                         const std::vector<int>& split, const PlanRequest& request) {
    const int L = static_cast<int>(p.layer_memory.size());
    if (split.size() != workers.size())
        throw Error("--split gives " + std::to_string(split.size()) + " layer counts for " +
                    std::to_string(workers.size()) + " workers; give one count per worker");
    for (int n : split)
        if (n < 0) throw Error("--split: a negative layer count (" + std::to_string(n) + ")");
    const int sum = std::accumulate(split.begin(), split.end(), 0);
    if (sum != L) throw Error("--split adds up to " + std::to_string(sum) + " layers; the model has " + std::to_string(L));
    std::vector<PlannedStage> stages;
    int first = 0;
    for (size_t w = 0; w < split.size(); ++w) {
        if (split[w] == 0) continue;  // a worker without layers: left out, or a vocabulary slice's holder
        PlannedStage s;
        s.worker = static_cast<int>(w);
        s.first_layer = first;
        s.last_layer = first + split[w];
        stages.push_back(s);
        first += split[w];
    }
    // The placements: the fastest that fits, ties to the coordinator (e, then h).
    int64_t best = -1;
    std::vector<PlannedStage> chosen;
    for (int e = 0; e < 2; ++e)
        for (int h = 0; h < 2; ++h) {
            if (!allowed(request.embedding, e == 1) || !allowed(request.head, h == 1)) continue;
            stages.front().embedding = e == 1;
            stages.back().head = h == 1;
            const int64_t ns = chain_ns(p, workers, request.coordinator, stages);
            if (ns >= 0 && (best < 0 || ns < best)) {
                best = ns;
                chosen = stages;
            }
        }
    if (best < 0) {
        // Name the first worker whose range does not fit even without the embedding and head.
        for (size_t i = 0; i < stages.size(); ++i) {
            const PlannedStage& s = stages[i];
            const StageShape shape{s.first_layer, s.last_layer, i == 0, i + 1 == stages.size(),
                                   i == 0 && request.embedding == Placement::worker,
                                   i + 1 == stages.size() && request.head == Placement::worker};
            const WorkerCapacity& w = workers[static_cast<size_t>(s.worker)];
            if (!stage_fits(p, w, shape))
                throw Error(w.address + ": layers " + std::to_string(s.first_layer) + "-" +
                            std::to_string(s.last_layer - 1) + " need " + format_bytes(stage_memory(p, w, shape)) +
                            ", over its memory budget of " + format_bytes(w.memory_budget) +
                            (request.max_positions > 0
                                 ? " (with prompts in requests of " + std::to_string(request.max_positions) + " positions)"
                                 : std::string()) +
                            "; give it fewer layers or drop --split");
        }
        throw Error("--split: the coordinator's memory budget of " + format_bytes(request.coordinator.memory_budget) +
                    " cannot keep the embedding or the head, and no worker at the ends can take them");
    }
    PipelinePlan plan = finish_plan(p, workers, request, std::move(chosen));
    for (int w : plan.left_out) plan.left_out_reasons.push_back({w, "--split gives it no layers", -1});
    return plan;
}

// ---- the classifier by vocabulary slices ----

ShardSpec planned_spec(const PipelinePlan& plan, int worker) {
    ShardSpec spec;
    for (const PlannedStage& s : plan.stages)
        if (s.worker == worker) spec = ShardSpec{s.first_layer, s.last_layer, s.embedding, s.head};
    for (const PlannedSlice& sl : plan.slices)
        if (sl.worker == worker) {
            spec.vocab_first = sl.vocab_first;
            spec.vocab_last = sl.vocab_last;
        }
    return spec;
}

namespace {

// Rows for each chosen worker, in proportion to its speed and within its
// capacity; empty if the capacities cannot hold the vocabulary.
std::vector<int64_t> water_fill(const std::vector<int64_t>& caps, const std::vector<double>& speeds, int64_t total) {
    const size_t k = caps.size();
    int64_t room = 0;
    for (int64_t c : caps) room += c;
    if (room < total) return {};
    std::vector<double> share(k, 0);
    std::vector<bool> fixed(k, false);
    double remaining = static_cast<double>(total);
    for (bool changed = true; changed;) {
        changed = false;
        double speed = 0;
        for (size_t i = 0; i < k; ++i)
            if (!fixed[i]) speed += speeds[i];
        for (size_t i = 0; i < k; ++i) {
            if (fixed[i]) continue;
            share[i] = remaining * speeds[i] / speed;
            if (share[i] > static_cast<double>(caps[i])) {
                share[i] = static_cast<double>(caps[i]);
                fixed[i] = true;
                remaining -= share[i];
                changed = true;
                break;
            }
        }
    }
    std::vector<int64_t> rows(k);
    int64_t placed = 0;
    for (size_t i = 0; i < k; ++i) placed += rows[i] = std::min(caps[i], static_cast<int64_t>(share[i]));
    for (size_t i = 0; placed < total; i = (i + 1) % k)
        if (rows[i] < caps[i]) {
            const int64_t add = std::min(caps[i] - rows[i], total - placed);
            rows[i] += add;
            placed += add;
        }
    return rows;
}

}  // namespace

bool place_slices(const PlanProblem& p, const std::vector<WorkerCapacity>& workers, const PlanRequest& r,
                  PipelinePlan& plan, int count) {
    if (!p.classifier_sliceable || p.vocab < 1 || p.slice_row == 0) return false;
    const size_t n = workers.size();
    // What each worker has left: after its stage, or after its process if it holds no layers.
    std::vector<int64_t> cap(n, 0);
    std::vector<bool> in_chain(n, false);
    std::vector<uint64_t> used(n, 0);
    for (size_t i = 0; i < plan.stages.size(); ++i) {
        const PlannedStage& s = plan.stages[i];
        in_chain[static_cast<size_t>(s.worker)] = true;
        used[static_cast<size_t>(s.worker)] =
            stage_memory(p, workers[static_cast<size_t>(s.worker)], shape_of(s, i == 0, i + 1 == plan.stages.size()));
    }
    std::vector<size_t> candidates;
    for (size_t j = 0; j < n; ++j) {
        const WorkerCapacity& w = workers[j];
        if (!in_chain[j]) used[j] = worker_process_overhead(w.arch);
        if (w.memory_budget == 0) cap[j] = p.vocab;
        else if (w.memory_budget > used[j] + p.slice_fixed)
            cap[j] = std::min<int64_t>(p.vocab, static_cast<int64_t>((w.memory_budget - used[j] - p.slice_fixed) / p.slice_row));
        if (cap[j] > 0) candidates.push_back(j);
    }
    // The roomiest first (ties: earlier workers), so k slices go where they fit best.
    std::stable_sort(candidates.begin(), candidates.end(), [&](size_t a, size_t b) { return cap[a] > cap[b]; });
    auto slice_ns = [&](size_t j, int64_t rows) {
        const WorkerCapacity& w = workers[j];
        const uint64_t answer = r.sampled ? static_cast<uint64_t>(rows) * 4 : 8;
        return hop_ns(nullptr, &w, p.hidden_bytes) + hop_ns(&w, nullptr, answer) +
               read_ns({{p.classifier_type, static_cast<uint64_t>(rows) * p.classifier_row}}, w);
    };
    int64_t best_ns = kInf;
    std::vector<size_t> best_workers;
    std::vector<int64_t> best_rows;
    const size_t most = count > 0 ? static_cast<size_t>(count) : candidates.size();
    for (size_t k = count > 0 ? most : 1; k <= std::min(most, candidates.size()); ++k) {
        std::vector<size_t> chosen(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(k));
        std::sort(chosen.begin(), chosen.end());  // vocabulary order follows the workers' order
        std::vector<int64_t> caps;
        std::vector<double> speeds;
        for (size_t j : chosen) {
            caps.push_back(cap[j]);
            speeds.push_back(gbps_for(workers[j], p.classifier_type));
        }
        std::vector<int64_t> rows = water_fill(caps, speeds, p.vocab);
        if (rows.empty()) continue;
        // Every chosen worker holds a slice, however slow (a row from the largest).
        for (int64_t& n_rows : rows)
            if (n_rows == 0) {
                int64_t& largest = *std::max_element(rows.begin(), rows.end());
                if (largest < 2) break;
                --largest;
                n_rows = 1;
            }
        int64_t ns = 0;
        double slowest_mbps = 0;
        for (size_t i = 0; i < k; ++i) {
            if (rows[i] > 0) ns = std::max(ns, slice_ns(chosen[i], rows[i]));
            const double mbps = workers[chosen[i]].link_mbps;
            if (mbps > 0) slowest_mbps = slowest_mbps > 0 ? std::min(slowest_mbps, mbps) : mbps;
        }
        // Sampling: every slice's logits converge on the coordinator's own link
        // (as fast as the slowest slice's, at best): the whole vocabulary's 4 bytes.
        if (r.sampled && slowest_mbps > 0)
            ns = std::max<int64_t>(ns, std::llround(static_cast<double>(p.vocab) * 4 * 8e3 / slowest_mbps));
        if (ns < best_ns) {
            best_ns = ns;
            best_workers = chosen;
            best_rows = rows;
        }
    }
    if (best_workers.empty() || (count > 0 && best_workers.size() != static_cast<size_t>(count))) return false;
    plan.slices.clear();
    int first = 0;
    for (size_t i = 0; i < best_workers.size(); ++i) {
        if (best_rows[i] == 0) continue;
        PlannedSlice sl;
        sl.worker = static_cast<int>(best_workers[i]);
        sl.vocab_first = first;
        sl.vocab_last = first + static_cast<int>(best_rows[i]);
        sl.slice_only = !in_chain[best_workers[i]];
        sl.memory = p.slice_fixed + static_cast<uint64_t>(best_rows[i]) * p.slice_row;
        const WorkerCapacity& w = workers[best_workers[i]];
        sl.compute_ms = ms(read_ns({{p.classifier_type, static_cast<uint64_t>(best_rows[i]) * p.classifier_row}}, w));
        sl.hop_ms = ms(slice_ns(best_workers[i], best_rows[i])) - sl.compute_ms;
        plan.slices.push_back(sl);
        first = sl.vocab_last;
    }
    // A worker that holds a slice is not left out.
    auto holds_slice = [&](int w) {
        return std::any_of(plan.slices.begin(), plan.slices.end(), [&](const PlannedSlice& s) { return s.worker == w; });
    };
    plan.left_out.erase(std::remove_if(plan.left_out.begin(), plan.left_out.end(), holds_slice), plan.left_out.end());
    plan.left_out_reasons.erase(std::remove_if(plan.left_out_reasons.begin(), plan.left_out_reasons.end(),
                                               [&](const LeftOutWorker& l) { return holds_slice(l.worker); }),
                                plan.left_out_reasons.end());
    plan.slices_ms = ms(best_ns);
    plan.predicted_ms_per_token += plan.slices_ms;
    return true;
}

namespace {

// The layers planned with the classifier on neither end, then the
// classifier in slices over what the workers have left. When the layers
// would leave too little anywhere, each worker first sets aside its share of
// the table. Empty when no slicing fits.
std::optional<PipelinePlan> plan_sliced(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                                        const PlanRequest& r) {
    if (r.head != Placement::planned || !p.classifier_sliceable) return std::nullopt;
    PlanProblem q = p;  // the layers' problem: nobody at the ends keeps the classifier
    q.head_memory = 0;
    q.tied_shared = 0;
    q.tied = false;
    q.head_reads.clear();
    PlanRequest rq = r;
    rq.head = Placement::coordinator;
    size_t limited = 0;
    for (const WorkerCapacity& w : workers) limited += w.memory_budget > 0;
    const uint64_t table = static_cast<uint64_t>(p.vocab) * p.slice_row;
    for (double reserve : {0.0, 1.0, 1.3}) {
        if (reserve > 0 && limited == 0) break;
        std::vector<WorkerCapacity> reduced = workers;
        const uint64_t share = static_cast<uint64_t>(reserve * static_cast<double>(table) / static_cast<double>(limited)) + p.slice_fixed;
        if (reserve > 0)
            for (WorkerCapacity& w : reduced)
                if (w.memory_budget > 0) w.memory_budget = w.memory_budget > share ? w.memory_budget - share : 1;
        PipelinePlan plan;
        try {
            plan = r.split.empty() ? plan_optimal(q, reduced, rq) : plan_forced(q, reduced, r.split, rq);
        } catch (const Error&) {
            continue;
        }
        if (place_slices(p, workers, r, plan, r.head_slices)) return plan;
    }
    return std::nullopt;
}

}  // namespace

// ---- the entry point and the refusal ----

namespace {

void fill_stage_memory(const ModelFile& file, const PlanRequest& r, const std::vector<WorkerCapacity>& workers,
                       PipelinePlan& plan) {
    plan.context = context_of(file, r);
    for (size_t i = 0; i < plan.stages.size(); ++i) {
        PlannedStage& s = plan.stages[i];
        const WorkerCapacity& w = workers[static_cast<size_t>(s.worker)];
        StageLoad load{plan.context, r.kv_type, r.max_positions, r.wire_bytes, i == 0, i + 1 == plan.stages.size(),
                       w.arch.empty() ? "x86_64" : w.arch, r.slots};
        s.memory = shard_memory(file.config, file.tensors, planned_spec(plan, s.worker), load);
    }
    for (PlannedSlice& sl : plan.slices) {
        if (!sl.slice_only) continue;
        const WorkerCapacity& w = workers[static_cast<size_t>(sl.worker)];
        StageLoad load{plan.context, r.kv_type, r.max_positions, r.wire_bytes, false, false,
                       w.arch.empty() ? "x86_64" : w.arch, r.slots};
        sl.shard = shard_memory(file.config, file.tensors, planned_spec(plan, sl.worker), load);
    }
}

// Whether the request's plan fits, with the classifier whole or in slices.
bool plan_fits(const PlanProblem& p, const std::vector<WorkerCapacity>& workers, const PlanRequest& r) {
    if (r.head_slices == 0) {
        if (!r.split.empty()) {
            try {
                plan_forced(p, workers, r.split, r);
                return true;
            } catch (const Error&) {
            }
        } else {
            Solver solver(p, workers, r);
            solver.run_forward();
            if (solver.best_chain().worker >= 0) return true;
        }
    }
    return plan_sliced(p, workers, r).has_value();
}

bool fits(const ModelFile& file, const std::vector<WorkerCapacity>& workers, const PlanRequest& r) {
    return plan_fits(make_plan_problem(file, r), workers, r);
}

bool vocabulary_table(const TensorInfo& t) { return t.name == "token_embd.weight" || t.name == "output.weight"; }

// The model's matrices stored as `type` where that is smaller (what `ferry
// quantize --type` writes; norms keep theirs), or with tables_only just the
// vocabulary tables (--token-embedding-type, --output-type).
ModelFile retyped(const ModelFile& file, TensorType type, bool tables_only = false) {
    ModelFile f;
    f.config = file.config;
    f.tensors = file.tensors;
    for (TensorInfo& t : f.tensors) {
        if (t.rows < 2 || t.cols % 32 != 0 || (tables_only && !vocabulary_table(t))) continue;
        const int64_t bytes = tensor_bytes(type, t.rows, t.cols);
        if (bytes > 0 && static_cast<uint64_t>(bytes) < t.bytes) {
            t.type = type;
            t.group = 0;
            t.bytes = static_cast<uint64_t>(bytes);
        }
    }
    return f;
}

// How many more workers like the roomiest one make the pool fit (their
// layers and vocabulary slices), up to 32; "" if none or unlimited budgets.
std::string more_workers_fix(const ModelFile& file, const std::vector<WorkerCapacity>& workers, const PlanRequest& r) {
    if (workers.empty() || !r.split.empty()) return "";
    const WorkerCapacity* like = &workers.front();
    for (const WorkerCapacity& w : workers) {
        if (w.memory_budget == 0) return "";
        if (w.memory_budget > like->memory_budget) like = &w;
    }
    std::vector<WorkerCapacity> more = workers;
    for (int k = 1; k <= 32; ++k) {
        more.push_back(*like);
        more.back().address = "new-" + std::to_string(k);
        if (fits(file, more, r))
            return std::to_string(k) + " more worker" + (k == 1 ? "" : "s") + " of " + format_bytes(like->memory_budget) +
                   (like->arch.empty() || like->arch == "x86_64" ? std::string() : " (" + like->arch + ")");
    }
    return "";
}

// When the layers fit the workers and only the coordinator's budget stops the
// plan: the vocabulary table (embedding and classifier) fits no node, whole
// or in slices. The refusal says so and names what would fit: the
// coordinator budget it needs, how many more workers, or the largest smaller
// table type that fits; "" if that is not the case.
std::string table_refusal(const ModelFile& file, const std::vector<WorkerCapacity>& workers, const PlanRequest& r,
                          const PlanProblem& p) {
    if (r.coordinator.memory_budget == 0 || !r.split.empty()) return "";
    PlanRequest free_coordinator = r;
    free_coordinator.coordinator.memory_budget = 0;
    PipelinePlan plan;
    try {
        plan = plan_optimal(p, workers, free_coordinator);
    } catch (const Error&) {
        return "";  // the layers do not fit either: the general refusal
    }
    const uint64_t need = p.coordinator_process + coordinator_memory(p, !plan.stages.front().embedding, !plan.stages.back().head);
    uint64_t table = 0;
    for (const TensorInfo& t : file.tensors)
        if (vocabulary_table(t)) table += t.bytes;
    std::string msg = "the workers can hold the layers of " + file.path.substr(file.path.find_last_of('/') + 1) +
                      ", but no node can hold its vocabulary table (" + format_bytes(table) +
                      ") beside them: the coordinator needs " + format_bytes(need) + " for it and its budget is " +
                      format_bytes(r.coordinator.memory_budget) + ", and the workers cannot hold it beside their layers, whole or in vocabulary slices";
    // As the flag takes it: whole MB, rounded up.
    std::vector<std::string> fixes = {"--coordinator-memory " + std::to_string((need + (1u << 20) - 1) >> 20) + "M",
                                      more_workers_fix(file, workers, r)};
    for (TensorType t : {TensorType::Q8_0, TensorType::Q6_K, TensorType::Q4_K, TensorType::Q4_0}) {
        const ModelFile smaller = retyped(file, t, true);
        uint64_t after = 0;
        for (const TensorInfo& x : smaller.tensors)
            if (vocabulary_table(x)) after += x.bytes;
        if (after >= table || !fits(smaller, workers, r)) continue;
        const std::string name = ggml_type_name(static_cast<uint32_t>(t));
        fixes.push_back("a " + name + " table (ferry quantize --token-embedding-type " + name +
                        (file.find("output.weight") ? " --output-type " + name : std::string()) + ": " +
                        format_bytes(after) + " instead of " + format_bytes(table) + ")");
        break;
    }
    return msg + any_of_these_fits(fixes);
}

std::string refusal(const ModelFile& file, const std::vector<WorkerCapacity>& workers, const PlanRequest& r,
                    const PlanProblem& p) {
    if (std::string table = table_refusal(file, workers, r, p); !table.empty()) return table;
    const int context = context_of(file, r);
    const uint64_t layers = std::accumulate(p.layer_memory.begin(), p.layer_memory.end(), uint64_t{0});
    uint64_t weights = 0;
    for (uint64_t b : layer_weight_bytes(file)) weights += b;
    const uint64_t per_stage = worker_process_overhead("x86_64") + p.stage_memory[0][0][0][0];
    uint64_t offered = 0, largest = 0, usable = 0;  // usable: what budgets leave for layers after a stage's fixed part
    bool unlimited = false;
    for (const WorkerCapacity& w : workers) {
        offered += w.memory_budget;
        largest = std::max(largest, w.memory_budget);
        unlimited = unlimited || w.memory_budget == 0;
        const uint64_t fixed = worker_process_overhead(w.arch) + p.stage_memory[0][0][0][0];
        if (w.memory_budget > fixed) usable += w.memory_budget - fixed;
    }
    const std::string name = file.path.substr(file.path.find_last_of('/') + 1);
    std::string msg = "the " + std::to_string(workers.size()) + " worker" + (workers.size() == 1 ? "" : "s") +
                      " cannot hold " + (name.empty() ? std::string("the model") : name) + " at --ctx " +
                      std::to_string(context) + " --kv-type " + kv_type_name(r.kv_type) +
                      (r.slots > 1 ? " --parallel " + std::to_string(r.slots) : std::string()) +
                      (r.max_positions > 0 && r.max_positions < context
                           ? " with prompts in requests of " + std::to_string(r.max_positions) + " positions"
                           : std::string()) +
                      ": its layers need " +
                      format_bytes(layers) + " (weights " + format_bytes(weights) + ", KV cache " + format_bytes(layers - weights) +
                      ") plus about " + format_bytes(per_stage) + " per worker used";
    if (!unlimited) {
        msg += ", and the budgets offer " + format_bytes(offered) + " (largest " + format_bytes(largest) + ")";
        if (layers > usable) msg += ", at least " + format_bytes(layers - usable) + " short";
        else msg += ", enough in total but not in pieces that fit";
    }
    if (!r.split.empty()) msg += " with --split";

    const FitsTest pool_fits = [&](const ModelFile& f, const PlanRequest& q) { return fits(f, workers, q); };
    std::vector<std::string> fixes = {shorter_context_fix(file, r, pool_fits)};
    // Smaller requests.
    if (r.max_positions > kPlannedChunks[std::size(kPlannedChunks) - 1]) {
        PlanRequest q = r;
        q.max_positions = kPlannedChunks[std::size(kPlannedChunks) - 1];
        if (fits(file, workers, q)) fixes.push_back("--prefill-chunk " + std::to_string(q.max_positions));
    }
    fixes.push_back(smaller_kv_type_fix(file, r, pool_fits));
    fixes.push_back(quantized_model_fix(file, r, pool_fits));
    // More memory on one worker: the least any single worker would need.
    if (r.split.empty()) {
        Solver solver(p, workers, r);
        solver.run_forward();
        solver.run_backward();
        uint64_t least = std::numeric_limits<uint64_t>::max();
        int who = -1;
        for (int w = 0; w < static_cast<int>(workers.size()); ++w) {
            int64_t ns = 0;
            uint64_t extra = 0;
            solver.using_worker(w, &ns, &extra);
            if (extra < least) {
                least = extra;
                who = w;
            }
        }
        if (who >= 0 && least > 0 && least < std::numeric_limits<uint64_t>::max())
            fixes.push_back(format_bytes(least) + " more on " + workers[static_cast<size_t>(who)].address + " (budget " +
                            format_bytes(workers[static_cast<size_t>(who)].memory_budget + least) + ")");
    }
    fixes.push_back(more_workers_fix(file, workers, r));
    return msg + any_of_these_fits(fixes);
}

}  // namespace

std::string shorter_context_fix(const ModelFile& file, const PlanRequest& r, const FitsTest& fits) {
    const int context = context_of(file, r);
    PlanRequest q = r;
    q.context = 1;
    if (context <= 1 || !fits(file, q)) return "";
    int lo = 1, hi = context;  // lo fits, hi does not
    while (hi - lo > 1) {
        q.context = lo + (hi - lo) / 2;
        (fits(file, q) ? lo : hi) = q.context;
    }
    return "--ctx " + std::to_string(lo);
}

std::string smaller_kv_type_fix(const ModelFile& file, const PlanRequest& r, const FitsTest& fits) {
    for (KvType t : {KvType::f16, KvType::q8_0}) {
        if (KVCache::bytes_for(1, 1, 32, t) >= KVCache::bytes_for(1, 1, 32, r.kv_type)) continue;
        if (t == KvType::q8_0 && file.config.kv_dim() % 32 != 0) continue;
        PlanRequest q = r;
        q.kv_type = t;
        if (fits(file, q)) return std::string("--kv-type ") + kv_type_name(t);
    }
    return "";
}

std::string quantized_model_fix(const ModelFile& file, const PlanRequest& r, const FitsTest& fits) {
    for (TensorType t : {TensorType::Q8_0, TensorType::Q4_0}) {
        const ModelFile q = retyped(file, t);
        uint64_t before = 0, after = 0;
        for (const TensorInfo& x : file.tensors) before += x.bytes;
        for (const TensorInfo& x : q.tensors) after += x.bytes;
        if (after >= before) continue;
        if (fits(q, r))
            return std::string("a ") + tensor_type_name(t) + " model (ferry quantize --type " + tensor_type_name(t) +
                   ": weights " + format_bytes(after) + " instead of " + format_bytes(before) + ")";
    }
    return "";
}

std::string any_of_these_fits(const std::vector<std::string>& fixes) {
    std::vector<std::string> found;
    for (const std::string& f : fixes)
        if (!f.empty()) found.push_back(f);
    if (found.empty()) return "";
    std::string text = "; any of these fits: ";
    for (size_t i = 0; i < found.size(); ++i) text += (i ? (i + 1 == found.size() ? " or " : ", ") : "") + found[i];
    return text;
}

PipelinePlan plan_pipeline(const ModelFile& file, const std::vector<WorkerCapacity>& workers, const PlanRequest& request) {
    if (request.wire_bytes != 4 && request.wire_bytes != 2)
        throw Error("wire bytes per value must be 4 (f32) or 2 (f16), not " + std::to_string(request.wire_bytes));
    // A whole context in one request if that fits; else prompts in smaller
    // requests (the largest that fits), which the pipeline then sends.
    std::vector<PlanRequest> tries = {request};
    if (request.max_positions == 0)
        for (int n : kPlannedChunks)
            if (n < context_of(file, request)) {
                tries.push_back(request);
                tries.back().max_positions = n;
            }
    if (request.head_slices < 0) throw Error("--head-slices " + std::to_string(request.head_slices) + ": give 1 or more");
    if (const uint64_t self = coordinator_process_memory(file.config.vocab_size);
        request.coordinator.memory_budget > 0 && request.coordinator.memory_budget < self)
        throw Error("the coordinator's memory budget of " + format_bytes(request.coordinator.memory_budget) +
                    " cannot hold the coordinator itself (" + format_bytes(self) + ": code, libraries, the tokenizer of " +
                    std::to_string(file.config.vocab_size) + " tokens and a token's logits); give it at least " +
                    std::to_string((self + (1u << 20) - 1) >> 20) + "M");
    if (request.head_slices > 0 && request.head != Placement::planned)
        throw Error("--head-slices puts the classifier on workers in slices; drop --head-on-worker / --head-on-coordinator");
    if (request.head_slices > static_cast<int>(workers.size()))
        throw Error("--head-slices " + std::to_string(request.head_slices) + " needs as many workers; " +
                    std::to_string(workers.size()) + " given");
    for (size_t i = 0;; ++i) {
        const PlanRequest& r = tries[i];
        const PlanProblem p = make_plan_problem(file, r);
        const bool last = i + 1 == tries.size();
        // The classifier whole (on the coordinator or the last stage), or in
        // slices on the workers: whichever is faster, ties to whole.
        std::optional<PipelinePlan> whole;
        std::string whole_error;
        bool too_small = false;
        if (r.head_slices == 0) {
            try {
                whole = r.split.empty() ? plan_optimal(p, workers, r) : plan_forced(p, workers, r.split, r);
            } catch (const PoolTooSmall&) {
                too_small = true;
            } catch (const Error& e) {
                whole_error = e.what();
            }
        }
        std::optional<PipelinePlan> sliced = plan_sliced(p, workers, r);
        if (whole && sliced && sliced->predicted_ms_per_token >= whole->predicted_ms_per_token) sliced.reset();
        if (sliced || whole) {
            PipelinePlan plan = sliced ? std::move(*sliced) : std::move(*whole);
            fill_stage_memory(file, r, workers, plan);
            return plan;
        }
        if (!last) continue;
        if (r.head_slices > 0 && !p.classifier_sliceable)
            throw Error("--head-slices: the classifier of " + file.path +
                        " is an int8-group table, which cannot be cut; convert the model to GGUF (ferry quantize)");
        if (!whole_error.empty() && !too_small) throw Error(whole_error);
        throw Error(refusal(file, workers, r, p));
    }
}

PipelinePlan plan_pipeline(const ModelFile& file, int context, const std::vector<WorkerCapacity>& workers,
                           const std::vector<int>& forced_split, int wire_bytes_per_value, KvType kv_type) {
    PlanRequest r;
    r.context = context;
    r.kv_type = kv_type;
    r.wire_bytes = wire_bytes_per_value;
    r.split = forced_split;
    return plan_pipeline(file, workers, r);
}

}  // namespace ferry
