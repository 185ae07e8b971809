#include "coordinator/pipeline/pipeline_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>

#include "common/error.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"
#include "common/net/hub.h"
#include "common/net/shard_image.h"
#include "common/net/values.h"
#include "common/process_stats.h"
#include "common/progress.h"
#include "common/shard_memory.h"
#include "kernels/kernels.h"
#include "kernels/cpu_features.h"
#include "coordinator/pipeline/pipeline_probe.h"
#include "coordinator/pipeline/plan_report.h"

namespace ferry {

using net::Hub;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kShardChunkBytes = 1u << 20;
// Queued while streaming, over all links: the coordinator's memory, which
// the plan counts (kCoordinatorOverhead), must not grow with the workers.
constexpr size_t kShardWindowBytes = 4u << 20;

Clock::time_point after(double seconds) {
    return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

struct PipelineEngine::Net {
    explicit Net(const std::optional<net::ClusterKey>& key) : hub(key) {}
    Hub hub;
    // Events read ahead: a later batch's result that arrived while the slices
    // of an earlier one were answering.
    std::deque<Hub::Event> stashed;
    std::optional<Hub::Event> next(Clock::time_point deadline) {
        if (stashed.empty()) return hub.wait(deadline);
        Hub::Event e = std::move(stashed.front());
        stashed.pop_front();
        return e;
    }
};

struct PipelineEngine::Node : WorkerLink {
    int stage = -1;  // index in the chain, -1 if left out
    ShardSpec spec;
    std::unique_ptr<net::ShardImage> image;
    std::string image_error;
    std::string image_hash;  // as stated in the Assign
    // Shard transfer.
    bool need_shard = false, loaded = false, end_sent = false;
    uint64_t send_at = 0, resumed_at = 0;
    std::unique_ptr<net::Hasher> hasher;
    std::string source;
    NodeStats stats;
    double slice_predicted_ms = 0;  // of stats.predicted_compute_ms: its vocabulary slice's (not in a Forward's trace)
    std::array<double, 32> window_ms{};  // decode steps' compute since the last check (note_decode_speed)
    size_t window_steps = 0;
    bool slow_said = false;
};

PipelineEngine::PipelineEngine(const ModelFile& file, const PipelineOptions& options, int context,
                               kernels::ThreadPool* pool)
    : file_(file), opt_(options), config_(file.config), context_(context), pool_(pool), net_(std::make_unique<Net>(options.cluster_key)) {
    if (opt_.workers.empty()) throw Error("--workers: no workers given");
    if (opt_.wire != "f32" && opt_.wire != "f16") throw Error("--wire " + opt_.wire + ": use f32 or f16");
    const std::string model_hash = net::file_content_hash(file.path, net::default_cache_dir());
    spdlog::info("{}: content hash {}", file.path, net::hex(model_hash));
    // Meet the workers as the coordinator of a session, measure the links, plan.
    std::vector<WorkerLink*> links;
    for (WorkerLink& w : greet_workers(net_->hub, opt_.workers, wire::COORDINATOR, model_hash, opt_.connect_timeout_s,
                                       opt_.timeout_s)) {
        auto n = std::make_unique<Node>();
        static_cast<WorkerLink&>(*n) = std::move(w);
        links.push_back(n.get());
        nodes_.push_back(std::move(n));
    }
    measure_links(net_->hub, links, opt_.timeout_s);
    std::vector<WorkerCapacity> capacities;
    const std::string type = dominant_tensor_type(file);
    for (const auto& n : nodes_) capacities.push_back(capacity_of(*n, type));
    PlanRequest request;
    request.context = context;
    request.kv_type = opt_.kv_type;
    request.wire_bytes = opt_.wire == "f16" ? 2 : 4;
    request.max_positions = opt_.prefill_chunk;
    request.slots = std::max(1, opt_.slots);
    request.split = opt_.split;
    if (opt_.embedding_on_worker && opt_.embedding_on_coordinator)
        throw Error("--embedding-on-worker and --embedding-on-coordinator: choose one");
    if (opt_.head_on_worker && opt_.head_on_coordinator)
        throw Error("--head-on-worker and --head-on-coordinator: choose one");
    if (opt_.embedding_on_worker) request.embedding = Placement::worker;
    if (opt_.embedding_on_coordinator) request.embedding = Placement::coordinator;
    if (opt_.head_on_worker) request.head = Placement::worker;
    if (opt_.head_on_coordinator) request.head = Placement::coordinator;
    request.head_slices = opt_.head_slices;
    request.coordinator.memory_budget = opt_.coordinator_memory;
    request.sampled = opt_.sampled;
    plan_ = plan_pipeline(file, capacities, request);
    std::fprintf(stderr, "%s", format_plan(plan_, capacities).c_str());
    // What each node holds, from the plan (planned_spec: the one place a ShardSpec is made).
    for (const PlannedStage& s : plan_.stages) {
        Node* n = nodes_[static_cast<size_t>(s.worker)].get();
        n->stage = static_cast<int>(chain_.size());
        n->spec = planned_spec(plan_, s.worker);
        n->stats.predicted_compute_ms = s.compute_ms;
        n->stats.predicted_net_ms = s.hop_ms;
        chain_.push_back(n);
    }
    assigned_ = chain_;
    for (const PlannedSlice& sl : plan_.slices) {
        Node* n = nodes_[static_cast<size_t>(sl.worker)].get();
        n->spec = planned_spec(plan_, sl.worker);
        n->stats.predicted_compute_ms += sl.compute_ms;
        n->slice_predicted_ms = sl.compute_ms;
        if (sl.slice_only) {
            n->stats.predicted_net_ms = sl.hop_ms;
            n->stats.memory_needed = sl.shard.total();
            assigned_.push_back(n);
        }
        slices_.push_back(n);
    }
    for (const auto& n : nodes_)
        if (n->stage < 0 && !n->spec.has_slice()) net_->hub.close(n->link);

    // The coordinator keeps only what no node holds.
    embedding_remote_ = chain_.front()->spec.embedding;
    head_remote_ = chain_.back()->spec.head;
    sliced_ = !slices_.empty();
    local_ = bind_weights(config_, ShardSpec{0, 0, !embedding_remote_, !head_remote_ && !sliced_}, file.tensors,
                          file.map.data(), file.path);
    local_stats_.address = "coordinator";
    local_stats_.predicted_compute_ms = plan_.coordinator_ms;
    local_stats_.predicted_net_ms = plan_.return_hop_ms;
    const bool head_here = !head_remote_ && !sliced_;
    local_stats_.layers = std::string(embedding_remote_ ? "" : "emb") + (embedding_remote_ || !head_here ? "" : "+") +
                          (head_here ? "head" : "");
    if (local_stats_.layers.empty()) local_stats_.layers = "tokens";
    local_stats_.weight_bytes = shard_weight_bytes(local_);
    logits_.resize(static_cast<size_t>(config_.vocab_size));
    // Only a classifier that is the table itself (tied, applied here) keeps it resident.
    const TensorInfo* table = file.find("token_embd.weight");
    // (Q8_GROUP keeps its scales after all the rows: not worth a special case.)
    if (!embedding_remote_ && table && table->type != TensorType::Q8_GROUP &&
        (!head_here || file.find("output.weight"))) {
        try {
            embedding_file_ = File(file.path, File::Mode::read);
            embedding_offset_ = table->offset;
            embedding_row_bytes_ = static_cast<uint64_t>(tensor_bytes(table->type, 1, table->cols, table->group));
            local_stats_.weight_bytes -= table->bytes - embedding_row_bytes_;  // what it holds: a row at a time
        } catch (const Error& e) {
            spdlog::warn("{}; embedding from the mapped table instead (it stays resident)", e.what());
        }
    }

    assign_all(model_hash);
    stream_shards();
    wire_chain();
    for (Node* n : assigned_) {
        n->stats.address = n->address;
        n->stats.layers = spec_text(n->spec);
        n->stats.arch = n->caps.arch();
        n->stats.kernel_level = n->caps.kernel_level();
        n->stats.memory_budget = n->caps.memory_budget();
        if (n->stage >= 0) n->stats.memory_needed = plan_.stages[static_cast<size_t>(n->stage)].memory.total();
        n->stats.link_rtt_ms = n->rtt_ms;
        n->stats.kv_slots = plan_.slots;
    }
    local_stats_.arch = machine_arch();
    local_stats_.kernel_level = kernels::level_name(kernels::active_level());
}

PipelineEngine::~PipelineEngine() {
    // The plan kept the coordinator within --memory; say so if the process went past it anyway.
    if (opt_.coordinator_memory == 0) return;
    const uint64_t peak = read_process_memory().peak_rss;
    if (peak > opt_.coordinator_memory)
        spdlog::warn("coordinator: peak RSS {} went past --memory {} that the plan kept it within (its process was "
                     "counted at {}); give it more, or report this",
                     format_bytes(peak), format_bytes(opt_.coordinator_memory),
                     format_bytes(coordinator_process_memory(config_.vocab_size)));
}

std::string PipelineEngine::node_name(int link) const {
    for (const auto& n : nodes_) {
        if (n->link != link) continue;
        if (n->stage < 0 && n->spec.has_slice()) return "worker " + n->address + " (vocabulary slice: " + vocab_text(n->spec) + ")";
        if (n->stage < 0) return "worker " + n->address;
        return "worker " + n->address + " (stage " + std::to_string(n->stage + 1) + " of " +
               std::to_string(chain_.size()) + ", layers " + spec_text(n->spec) + ")";
    }
    return "worker ?";
}

void PipelineEngine::fail_node(int link, const std::string& what) const {
    std::string address;
    for (const auto& n : nodes_)
        if (n->link == link) address = n->address;
    throw WorkerError(address, node_name(link) + ": " + what);
}

void PipelineEngine::check_event(const void* event) const {
    const Hub::Event& e = *static_cast<const Hub::Event*>(event);
    if (e.kind == Hub::Event::closed && e.link >= 0 && nodes_[static_cast<size_t>(e.link)]->stage < 0 &&
        !nodes_[static_cast<size_t>(e.link)]->spec.has_slice() && !chain_.empty())
        return;  // a worker the plan left out, closed by us
    if (const std::string problem = event_problem(e); !problem.empty()) fail_node(e.link, problem);
}

// ---- setup ----

void PipelineEngine::assign_all(const std::string& model_hash) {
    Hub& hub = net_->hub;
    std::random_device rd;
    const uint64_t session = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    for (Node* n : assigned_) {
        std::vector<TensorInfo> tensors;
        try {
            n->image = std::make_unique<net::ShardImage>(file_, n->spec, model_hash);
            tensors = n->image->tensors();
        } catch (const Error& e) {
            n->image_error = e.what();  // fatal only if the worker has to receive the shard
            for (const std::string& name : shard_tensor_names(config_, n->spec, file_.find("output.weight") == nullptr))
                if (const TensorInfo* t = file_.find(name)) tensors.push_back(*t);
        }
        wire::Frame f;
        wire::Assign* a = f.mutable_assign();
        a->set_model_hash(model_hash);
        a->set_model_bytes(file_.map.size());
        a->set_model_name(file_.path.substr(file_.path.find_last_of('/') + 1));
        *a->mutable_shape() = net::shape_to_wire(config_);
        a->set_first_layer(n->spec.first_layer);
        a->set_last_layer(n->spec.last_layer);
        a->set_embedding(n->spec.embedding);
        a->set_head(n->spec.head);
        a->set_vocab_first(n->spec.vocab_first);
        a->set_vocab_last(n->spec.vocab_last);
        a->set_context(context_);
        a->set_max_positions(plan_.max_positions);
        a->set_slots(plan_.slots);
        a->set_recovery(opt_.recovery);
        a->set_kv_type(kv_type_name(opt_.kv_type));
        a->set_wire(opt_.wire == "f16" ? wire::WIRE_F16 : wire::WIRE_F32);
        for (const TensorInfo& t : tensors) {
            wire::TensorDesc* d = a->add_tensors();
            d->set_name(t.name);
            d->set_type(static_cast<uint32_t>(t.type));
            d->set_rows(t.rows);
            d->set_cols(t.cols);
            d->set_group(t.group);
            d->set_bytes(t.bytes);
        }
        a->set_image_bytes(n->image ? n->image->size() : 0);
        if (n->image) n->image_hash = n->image->content_hash(net::default_cache_dir());
        a->set_image_hash(n->image_hash);
        a->set_session_id(session);
        a->set_stage_index(n->stage);
        a->set_n_stages(static_cast<int>(chain_.size()));
        hub.send(n->link, f);
    }
    size_t replied = 0;
    // Loading a cached shard or hashing a --model-dir file can take a while on a big model.
    const auto deadline = after(opt_.timeout_s + 120);
    while (replied < assigned_.size()) {
        std::optional<Hub::Event> e = hub.wait(deadline);
        if (!e) throw Error("workers did not answer their assignments within " + std::to_string(opt_.timeout_s + 120) + " s");
        check_event(&*e);
        if (e->kind != Hub::Event::received || !e->frame.frame.has_assign_reply()) continue;
        Node& n = *nodes_[static_cast<size_t>(e->link)];
        const wire::AssignReply& r = e->frame.frame.assign_reply();
        ++replied;
        if (r.state() == wire::AssignReply::READY) {
            n.loaded = true;
            n.source = r.source();
            n.stats.weight_bytes = r.weight_bytes();
            spdlog::info("{}: shard ready from its {}", n.address, r.source());
            continue;
        }
        if (!n.image) fail_node(n.link, "needs its shard sent, but " + n.image_error);
        n.need_shard = true;
        n.hasher = std::make_unique<net::Hasher>();
        // Resume only if the bytes it has are the image's bytes.
        if (r.have_bytes() > 0 && r.have_bytes() <= n.image->size()) {
            std::vector<uint8_t> buf(1u << 20);
            for (uint64_t off = 0; off < r.have_bytes(); off += buf.size()) {
                const uint64_t len = std::min<uint64_t>(buf.size(), r.have_bytes() - off);
                n.image->read(off, len, buf.data());
                n.hasher->update(buf.data(), static_cast<size_t>(len));
                n.image->drop_pages(off, len);
            }
            if (n.hasher->digest() == r.have_hash()) {
                n.send_at = n.resumed_at = r.have_bytes();
            } else {
                spdlog::warn("{}: its partial shard differs from the image; sending it again", n.address);
                n.hasher = std::make_unique<net::Hasher>();
            }
        }
        wire::Frame b;
        b.mutable_shard_begin()->set_offset(n.send_at);
        hub.send(n.link, b);
    }
}

void PipelineEngine::stream_shards() {
    Hub& hub = net_->hub;
    std::vector<Node*> sending;
    for (Node* n : assigned_)
        if (n->need_shard) sending.push_back(n);
    if (sending.empty()) return;
    std::vector<std::string> names;
    for (Node* n : sending) names.push_back(n->address);
    // What the workers acknowledge (ShardAck) is what the progress and its ETA count.
    std::optional<Progress> progress;
    if (opt_.progress) progress.emplace("sending shards to " + std::to_string(sending.size()) + " worker" +
                                            (sending.size() == 1 ? "" : "s"),
                                        names);
    std::vector<uint64_t> acked(sending.size());
    for (size_t i = 0; i < sending.size(); ++i) {
        Node& n = *sending[i];
        acked[i] = n.send_at;
        if (progress) {
            progress->set_total(i, n.image->size() - n.resumed_at);
            if (n.resumed_at > 0)
                progress->note(n.address + ": resuming at " + format_bytes(n.resumed_at) + " of " +
                               format_bytes(n.image->size()) + " (its partial shard checked)");
        }
    }
    uint64_t sent = 0;
    const size_t window = std::max<size_t>(kShardChunkBytes, kShardWindowBytes / sending.size());
    const auto t0 = Clock::now();
    std::string chunk;
    std::vector<uint8_t> buf(kShardChunkBytes);
    size_t loaded = 0;
    while (loaded < sending.size()) {
        for (Node* n : sending) {
            if (n->end_sent) continue;
            while (n->send_at < n->image->size() && hub.queued_bytes(n->link) < window) {
                const uint64_t len = std::min<uint64_t>(kShardChunkBytes, n->image->size() - n->send_at);
                n->image->read(n->send_at, len, buf.data());
                n->hasher->update(buf.data(), static_cast<size_t>(len));
                n->image->drop_pages(n->send_at, len);  // sent: the coordinator keeps only its own weights
                wire::Frame f;
                wire::ShardChunk* c = f.mutable_shard_chunk();
                c->set_offset(n->send_at);
                c->set_data(buf.data(), static_cast<size_t>(len));
                c->set_checksum(net::checksum64(buf.data(), static_cast<size_t>(len)));
                hub.send(n->link, f);
                n->send_at += len;
                sent += len;
            }
            if (n->send_at == n->image->size()) {
                wire::Frame f;
                f.mutable_shard_end()->set_image_hash(n->hasher->digest());
                // Only a stale hash record (another build's image layout) can make these differ.
                if (n->hasher->digest() != n->image_hash)
                    fail_node(n->link, "its shard image hashes to " + net::hex(n->hasher->digest()) + ", but " +
                                           net::default_cache_dir() + "/image-hashes says " + net::hex(n->image_hash) +
                                           "; delete that directory and run again");
                hub.send(n->link, f);
                n->end_sent = true;
            }
        }
        std::optional<Hub::Event> e = hub.wait(after(0.05), true);
        if (e) {
            check_event(&*e);
            if (e->kind == Hub::Event::received) {
                const wire::Frame& f = e->frame.frame;
                for (size_t i = 0; i < sending.size(); ++i) {
                    Node& n = *sending[i];
                    if (n.link != e->link) continue;
                    if (f.has_shard_ack()) acked[i] = std::max(acked[i], std::min(f.shard_ack().received_to(), n.image->size()));
                    if (f.has_shard_loaded()) {
                        n.loaded = true;
                        n.stats.weight_bytes = f.shard_loaded().weight_bytes();
                        n.source = "received";
                        acked[i] = n.image->size();
                        ++loaded;
                    }
                }
            }
        }
        if (progress) {
            bool all_delivered = true;
            for (size_t i = 0; i < sending.size(); ++i) {
                progress->update_part(i, acked[i] - sending[i]->resumed_at);
                all_delivered = all_delivered && acked[i] == sending[i]->image->size();
            }
            if (all_delivered && loaded < sending.size()) progress->phase("verifying and loading on the workers");
        }
    }
    if (progress) progress->finish();
    totals_.shard_bytes_sent = sent;
    totals_.shard_seconds = ms_since(t0) / 1e3;
    for (Node* n : sending)
        spdlog::info("{}: shard {} sent ({} bytes{})", n->address, spec_text(n->spec), n->image->size() - n->resumed_at,
                     n->resumed_at ? ", resumed at byte " + std::to_string(n->resumed_at) : "");
}

void PipelineEngine::wire_chain() {
    Hub& hub = net_->hub;
    for (size_t i = 0; i + 1 < chain_.size(); ++i) {
        wire::Frame f;
        f.mutable_connect_next()->set_address(chain_[i + 1]->address);
        hub.send(chain_[i]->link, f);
    }
    size_t connected = 0;
    const auto deadline = after(opt_.timeout_s + opt_.connect_timeout_s);
    while (connected + 1 < chain_.size()) {
        std::optional<Hub::Event> e = hub.wait(deadline);
        if (!e) throw Error("the workers did not connect to each other within " +
                            std::to_string(static_cast<int>(opt_.timeout_s + opt_.connect_timeout_s)) + " s");
        check_event(&*e);
        if (e->kind == Hub::Event::received && e->frame.frame.has_connected()) ++connected;
    }
    // Results carry one activation or the logits per sequence in the request.
    const uint64_t result = (64u << 10) + static_cast<uint64_t>(plan_.slots) * (4ull * config_.vocab_size + 4ull * config_.dim + 32);
    for (Node* n : assigned_)
        hub.configure(n->link, static_cast<uint32_t>(std::max<uint64_t>(result, net::kControlFrameBytes)),
                      opt_.timeout_s, n->heartbeat_s);
}

// ---- requests ----

void PipelineEngine::run_request(const int* tokens, int n_tokens, int pos, int want, const SamplerParams* params,
                                 uint64_t rng_state) {
    Hub& hub = net_->hub;
    const auto t_start = Clock::now();
    Node& first = *chain_.front();
    Node& last = *chain_.back();
    const wire::WireType wt = opt_.wire == "f16" ? wire::WIRE_F16 : wire::WIRE_F32;
    double local_ms = 0;
    if (!embedding_remote_) {
        const auto t0 = Clock::now();
        embed_locally(tokens, n_tokens);
        local_ms += ms_since(t0);
    }
    // The plan's request size (--prefill-chunk, or smaller when a whole prompt would not fit a worker).
    const int chunk = plan_.max_positions > 0 && n_tokens > 1 ? plan_.max_positions : n_tokens;
    uint64_t last_id = 0;
    struct Sent {
        uint64_t id, at_ns, bytes;
        int n;
    };
    std::vector<Sent> sent;
    for (int start = 0; start < n_tokens; start += chunk) {
        const int n = std::min(chunk, n_tokens - start);
        wire::Frame f;
        wire::Forward* fw = f.mutable_forward();
        fw->set_request_id(next_request_++);
        fw->set_seq_id(0);
        fw->set_pos(pos + start);
        fw->set_n_tokens(n);
        if (embedding_remote_) {
            for (int t = 0; t < n; ++t) fw->add_tokens(tokens[start + t]);
        } else {
            fw->set_wire(wt);
            fw->set_activations(net::encode_values(x_.data() + static_cast<size_t>(start) * config_.dim,
                                                   static_cast<size_t>(n) * config_.dim, wt));
        }
        fw->set_want(static_cast<wire::Want>(want));
        if (params) {
            fw->mutable_sampling()->set_temperature(params->temperature);
            fw->mutable_sampling()->set_topp(params->topp);
            fw->mutable_sampling()->set_rng_state(rng_state);
        }
        fw->set_result_needed(start + n == n_tokens);
        std::string encoded = net::encode_frame(f);
        sent.push_back({fw->request_id(), net::now_ns(), encoded.size(), n});
        hub.send_encoded(first.link, std::move(encoded));
        last_id = fw->request_id();
    }
    // Bounded by the expected work, generously (a cold start pages a shard in
    // from disk); heartbeats prove the workers alive meanwhile and a silent
    // one is caught by its link's timeout long before this.
    const double expected_s = plan_.predicted_ms_per_token * n_tokens / 1e3;
    const double limit_s = opt_.timeout_s + 120 + 50 * expected_s;
    const auto deadline = after(limit_s);
    double compute_ms = 0;
    size_t results = 0;
    while (results < sent.size()) {
        std::optional<Hub::Event> e = net_->next(deadline);
        if (!e)
            fail_node(last.link, "no result within " + std::to_string(static_cast<int>(limit_s)) +
                                     " s although every worker answers heartbeats (the chain is stuck)");
        check_event(&*e);
        if (e->kind != Hub::Event::received) continue;
        const wire::Frame& f = e->frame.frame;
        if (!f.has_result()) continue;
        if (e->link != last.link) fail_node(e->link, "sent a result but it is not the last stage");
        const wire::Result& r = f.result();
        auto it = std::find_if(sent.begin(), sent.end(), [&](const Sent& s) { return s.id == r.request_id(); });
        if (it == sent.end()) continue;  // a stale answer
        ++results;
        account(&r, it->at_ns, it->bytes, e->at_ns, e->frame.wire_bytes, it->n, &compute_ms);
        if (r.request_id() != last_id) continue;
        if (want == wire::WANT_ACTIVATION) {
            x_.resize(static_cast<size_t>(config_.dim));
            if (!net::decode_values(r.activation(), r.wire(), x_.size(), x_.data()))
                fail_node(last.link, "returned an activation of " + std::to_string(r.activation().size()) + " bytes");
        } else if (want == wire::WANT_LOGITS) {
            logits_.resize(static_cast<size_t>(config_.vocab_size));
            if (!net::decode_values(r.logits(), wire::WIRE_F32, logits_.size(), logits_.data()))
                fail_node(last.link, "returned logits of " + std::to_string(r.logits().size()) + " bytes");
        } else {
            if (r.token() < 0 || r.token() >= config_.vocab_size)
                fail_node(last.link, "returned token id " + std::to_string(r.token()) + " outside the vocabulary");
            result_token_ = r.token();
            result_rng_ = r.rng_state();
        }
    }
    if (want == wire::WANT_ACTIVATION && !sliced_) {
        const auto t0 = Clock::now();
        compute_logits(config_, local_, x_.data(), logits_.data(), pos + n_tokens - 1, pool_);
        local_ms += ms_since(t0);
    }
    local_stats_.compute_ms += local_ms;
    if (n_tokens == 1) local_stats_.decode_compute_ms += local_ms;
    local_stats_.positions += static_cast<uint64_t>(n_tokens);
    ++local_stats_.requests;
    const double wall = ms_since(t_start);
    if (n_tokens == 1) {
        ++totals_.decode_tokens;
        totals_.decode_ms += wall;
        totals_.decode_compute_ms += compute_ms + local_ms;
        if (opt_.stats_every > 0 && ++decoded_since_print_ % static_cast<uint64_t>(opt_.stats_every) == 0)
            std::fprintf(stderr, "%s", format_node_table(stats()).c_str());
    } else {
        totals_.prefill_tokens += static_cast<uint64_t>(n_tokens);
        totals_.prefill_ms += wall;
    }
}

void PipelineEngine::account(const void* result, uint64_t sent_ns, uint64_t sent_bytes, uint64_t received_ns,
                             uint64_t received_bytes, int n_tokens, double* compute_ms) {
    const wire::Result& r = *static_cast<const wire::Result*>(result);
    local_stats_.bytes_sent += sent_bytes;
    local_stats_.bytes_received += received_bytes;
    // Timestamps are each worker's clock; the offsets measured at connect map them to ours.
    int64_t prev_send = static_cast<int64_t>(sent_ns);
    for (int i = 0; i < r.trace_size(); ++i) {
        const wire::StageTrace& t = r.trace(i);
        if (t.stage_index() < 0 || static_cast<size_t>(t.stage_index()) >= chain_.size()) continue;
        Node& n = *chain_[static_cast<size_t>(t.stage_index())];
        const int64_t recv = static_cast<int64_t>(t.recv_ns()) - n.clock_offset_ns;
        const double hop_ms = std::max<int64_t>(0, recv - prev_send) / 1e6;
        n.stats.net_ms += hop_ms;
        if (n_tokens == 1) {
            n.stats.decode_net_ms += hop_ms;
            n.stats.decode_compute_ms += t.compute_ns() / 1e6;
            ++n.stats.decode_requests;
            note_decode_speed(n, t.compute_ns() / 1e6);
        }
        prev_send = static_cast<int64_t>(t.send_ns()) - n.clock_offset_ns;
        n.stats.compute_ms += t.compute_ns() / 1e6;
        *compute_ms += t.compute_ns() / 1e6;
        n.stats.positions += static_cast<uint64_t>(n_tokens);
        ++n.stats.requests;
        n.stats.bytes_received += t.bytes_in();
        n.stats.bytes_sent += i + 1 < r.trace_size() ? r.trace(i + 1).bytes_in() : received_bytes;
        n.stats.rss = t.rss();
        n.stats.peak_rss = std::max(n.stats.peak_rss, t.peak_rss());
    }
    const double back_ms = std::max<int64_t>(0, static_cast<int64_t>(received_ns) - prev_send) / 1e6;
    local_stats_.net_ms += back_ms;
    if (n_tokens == 1) {
        local_stats_.decode_net_ms += back_ms;
        ++local_stats_.decode_requests;
    }
}

// A node far slower than planned is named once: the user learns which
// machine holds the chain back (and the plan's figures for it are then wrong
// too). The median of each 32 decode steps is compared, so a throttled or
// shared CPU is caught although some steps still run at full speed, and one
// long hiccup is not; the per-token cost is one store.
void PipelineEngine::note_decode_speed(Node& n, double compute_ms) {
    constexpr double kSlowFactor = 1.5;
    const double planned = n.stats.predicted_compute_ms - n.slice_predicted_ms;  // a Forward's: its layers
    if (!(planned > 0) || n.slow_said) return;
    n.window_ms[n.window_steps++] = compute_ms;
    if (n.window_steps < n.window_ms.size()) return;
    n.window_steps = 0;
    const auto mid = n.window_ms.begin() + n.window_ms.size() / 2;
    std::nth_element(n.window_ms.begin(), mid, n.window_ms.end());
    const double median = *mid;
    if (median <= kSlowFactor * planned) return;
    n.slow_said = true;
    spdlog::warn("{}: {} decode steps took {:.1f} ms (median), {:.1f}x the planned {:.1f} ms; this node "
                 "underperforms: another program on its CPU, swapping, a throttled CPU, or its shard still being read "
                 "from disk",
                 node_name(n.link), n.window_ms.size(), median, median / planned, planned);
}

void PipelineEngine::embed_locally(const int* tokens, int n_tokens) {
    x_.resize(static_cast<size_t>(n_tokens) * config_.dim);
    if (!embedding_file_.is_open()) {
        embed_tokens(config_, local_, tokens, n_tokens, x_.data());
        return;
    }
    // Rows read from the file, never mapped: a long session touches most of
    // the vocabulary, and mapped pages (whole folios around each row) would
    // add up to the table a 128 MB coordinator cannot keep.
    const Matrix& table = local_.token_embedding;
    embedding_row_.resize(static_cast<size_t>(embedding_row_bytes_));
    for (int t = 0; t < n_tokens; ++t) {
        check_token_id(config_, tokens[t]);
        const uint64_t at = embedding_offset_ + static_cast<uint64_t>(tokens[t]) * embedding_row_bytes_;
        if (!embedding_file_.read_exact_at(embedding_row_.data(), embedding_row_.size(), at))
            throw Error(file_.path + ": cannot read row " + std::to_string(tokens[t]) + " of its embedding table: " +
                        last_system_error());
        const Matrix row{table.type, embedding_row_.data(), 1, table.cols, 0};
        kernels::dequantize_row(row, 0, x_.data() + static_cast<size_t>(t) * config_.dim);
    }
}

void PipelineEngine::classify_sliced(int k, bool want_logits, bool decode) {
    Hub& hub = net_->hub;
    const auto t_start = Clock::now();
    const size_t dim = static_cast<size_t>(config_.dim), vocab = static_cast<size_t>(config_.vocab_size);
    wire::Frame f;
    wire::Classify* c = f.mutable_classify();
    c->set_request_id(next_request_++);
    c->set_rows(k);
    c->set_hidden(net::encode_values(x_.data(), static_cast<size_t>(k) * dim, wire::WIRE_F32));
    c->set_logits(want_logits);
    const std::string encoded = net::encode_frame(f);
    const uint64_t sent_ns = net::now_ns();
    for (Node* n : slices_) hub.send_encoded(n->link, std::string(encoded));
    local_stats_.bytes_sent += encoded.size() * slices_.size();
    if (want_logits) logits_.resize(static_cast<size_t>(k) * vocab);
    std::vector<float> best_value(static_cast<size_t>(k) * slices_.size());
    std::vector<int> best_index(best_value.size());
    std::vector<float> slice_logits;
    std::vector<bool> answered(slices_.size(), false);
    size_t answers = 0;
    double slowest_ms = 0;
    const double limit_s = opt_.timeout_s + 120;
    const auto deadline = after(limit_s);
    while (answers < slices_.size()) {
        // From the hub, not the stash: a result stashed here goes to the back, in order.
        std::optional<Hub::Event> e = hub.wait(deadline);
        if (!e) {
            size_t i = 0;
            while (answered[i]) ++i;
            fail_node(slices_[i]->link, "no answer to its vocabulary slice within " +
                                            std::to_string(static_cast<int>(limit_s)) + " s");
        }
        check_event(&*e);
        if (e->kind != Hub::Event::received) continue;
        if (e->frame.frame.has_result()) {  // a later batch's, for wait()
            net_->stashed.push_back(std::move(*e));
            continue;
        }
        if (!e->frame.frame.has_classified()) continue;
        const wire::Classified& r = e->frame.frame.classified();
        if (r.request_id() != c->request_id()) continue;  // a stale answer
        size_t i = 0;
        while (i < slices_.size() && slices_[i]->link != e->link) ++i;
        if (i == slices_.size()) fail_node(e->link, "answered a vocabulary slice it does not hold");
        if (answered[i]) continue;
        answered[i] = true;
        ++answers;
        Node& n = *slices_[i];
        const size_t first = static_cast<size_t>(n.spec.vocab_first);
        const size_t rows = static_cast<size_t>(n.spec.vocab_last - n.spec.vocab_first);
        if (want_logits) {
            slice_logits.resize(static_cast<size_t>(k) * rows);
            if (!net::decode_values(r.logits(), wire::WIRE_F32, slice_logits.size(), slice_logits.data()))
                fail_node(n.link, "returned " + std::to_string(r.logits().size()) + " bytes of logits for " +
                                      std::to_string(k) + " x " + std::to_string(rows));
            for (int t = 0; t < k; ++t)
                std::copy_n(slice_logits.data() + static_cast<size_t>(t) * rows, rows,
                            logits_.data() + static_cast<size_t>(t) * vocab + first);
        } else {
            if (r.best_value_size() != k || r.best_index_size() != k)
                fail_node(n.link, "answered " + std::to_string(r.best_index_size()) + " rows of " + std::to_string(k));
            for (int t = 0; t < k; ++t) {
                const int index = r.best_index(t);
                if (index < n.spec.vocab_first || index >= n.spec.vocab_last)
                    fail_node(n.link, "answered token " + std::to_string(index) + " outside its slice " +
                                          vocab_text(n.spec));
                best_value[i * static_cast<size_t>(k) + static_cast<size_t>(t)] = r.best_value(t);
                best_index[i * static_cast<size_t>(k) + static_cast<size_t>(t)] = index;
            }
        }
        // Every Classify is a decode step's (one row per sequence drawn).
        const double compute_ms = r.compute_ns() / 1e6;
        const double net_ms = std::max(0.0, (e->at_ns - sent_ns) / 1e6 - compute_ms);
        n.stats.compute_ms += compute_ms;
        n.stats.decode_compute_ms += compute_ms;
        if (n.stage < 0) {  // a chain stage counts its positions, requests and hops with its layers
            n.stats.positions += static_cast<uint64_t>(k);
            ++n.stats.requests;
            ++n.stats.decode_requests;
            n.stats.net_ms += net_ms;
            n.stats.decode_net_ms += net_ms;
        }
        n.stats.bytes_received += encoded.size();
        n.stats.bytes_sent += e->frame.wire_bytes;
        local_stats_.bytes_received += e->frame.wire_bytes;
        n.stats.rss = r.rss();
        n.stats.peak_rss = std::max(n.stats.peak_rss, r.peak_rss());
        slowest_ms = std::max(slowest_ms, compute_ms);
    }
    // The slices' round trip is part of the token's time (the slowest slice's compute of it).
    const double wall = ms_since(t_start);
    (decode ? totals_.decode_ms : totals_.prefill_ms) += wall;
    if (decode) totals_.decode_compute_ms += slowest_ms;
    if (want_logits) return;
    // The slices in vocabulary order, a later one only on a strictly larger
    // value: one process's argmax over the whole vocabulary.
    best_.assign(static_cast<size_t>(k), -1);
    for (int t = 0; t < k; ++t) {
        float value = 0;
        for (size_t i = 0; i < slices_.size(); ++i) {
            const size_t at = i * static_cast<size_t>(k) + static_cast<size_t>(t);
            if (best_[t] < 0 || best_value[at] > value) {
                value = best_value[at];
                best_[t] = best_index[at];
            }
        }
    }
}

float* PipelineEngine::forward(const int* tokens, int n_tokens, int pos) {
    run_request(tokens, n_tokens, pos, head_remote_ ? wire::WANT_LOGITS : wire::WANT_ACTIVATION, nullptr, 0);
    if (sliced_) classify_sliced(1, true, n_tokens == 1);
    return logits_.data();
}

int PipelineEngine::forward_sample(const int* tokens, int n_tokens, int pos, Sampler& sampler) {
    if (sliced_ && sampler.params().temperature == 0.0f) {
        // Greedy: a best value and index from each slice, not the logits.
        run_request(tokens, n_tokens, pos, wire::WANT_ACTIVATION, nullptr, 0);
        classify_sliced(1, false, n_tokens == 1);
        return best_[0];
    }
    if (!head_remote_) return sampler.sample(forward(tokens, n_tokens, pos));
    if (sampler.vocab_size() != config_.vocab_size)
        throw Error("a sampler over " + std::to_string(sampler.vocab_size()) + " tokens for a model of " +
                    std::to_string(config_.vocab_size));
    run_request(tokens, n_tokens, pos, wire::WANT_TOKEN, &sampler.params(), sampler.rng_state());
    sampler.set_rng_state(result_rng_);
    return result_token_;
}

// ---- batches of sequences ----

void PipelineEngine::submit(Batch batch) {
    Hub& hub = net_->hub;
    const wire::WireType wt = opt_.wire == "f16" ? wire::WIRE_F16 : wire::WIRE_F32;
    const int n = batch.rows();
    if (n < 1 || n > max_rows())
        throw Error("a batch of " + std::to_string(n) + " positions; the plan allows 1.." + std::to_string(max_rows()));
    wire::Frame f;
    wire::Forward* fw = f.mutable_forward();
    fw->set_request_id(next_request_++);
    fw->set_n_tokens(n);
    fw->set_want(head_remote_ ? wire::WANT_TOKEN : wire::WANT_ACTIVATION);
    std::vector<int> tokens;
    for (const SeqStep& s : batch.steps) {
        if (s.slot < 0 || s.slot >= slots()) throw Error("slot " + std::to_string(s.slot) + " of " + std::to_string(slots()));
        wire::Span* sp = fw->add_spans();
        sp->set_seq_id(static_cast<uint64_t>(s.slot));
        sp->set_pos(s.pos);
        sp->set_n_tokens(static_cast<int>(s.tokens.size()));
        sp->set_result_needed(s.draw);
        if (s.draw && head_remote_) {
            sp->mutable_sampling()->set_temperature(s.sampler->params().temperature);
            sp->mutable_sampling()->set_topp(s.sampler->params().topp);
            sp->mutable_sampling()->set_rng_state(s.sampler->rng_state());
        }
        tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
    }
    if (embedding_remote_) {
        for (int t : tokens) fw->add_tokens(t);
    } else {
        const auto t0 = Clock::now();
        embed_locally(tokens.data(), n);
        local_stats_.compute_ms += ms_since(t0);
        fw->set_wire(wt);
        fw->set_activations(net::encode_values(x_.data(), x_.size(), wt));
    }
    std::string encoded = net::encode_frame(f);
    in_flight_.push_back(InFlight{fw->request_id(), net::now_ns(), encoded.size(), std::move(batch)});
    hub.send_encoded(chain_.front()->link, std::move(encoded));
}

Batch PipelineEngine::wait() {
    if (in_flight_.empty()) throw Error("no batch in flight");
    Node& last = *chain_.back();
    InFlight& front = in_flight_.front();
    const int n = front.batch.rows();
    const double limit_s = opt_.timeout_s + 120 + 50 * plan_.predicted_ms_per_token * n / 1e3;
    const auto deadline = after(limit_s);
    for (;;) {
        std::optional<Hub::Event> e = net_->next(deadline);
        if (!e)
            fail_node(last.link, "no result within " + std::to_string(static_cast<int>(limit_s)) +
                                     " s although every worker answers heartbeats (the chain is stuck)");
        check_event(&*e);
        if (e->kind != Hub::Event::received || !e->frame.frame.has_result()) continue;
        if (e->link != last.link) fail_node(e->link, "sent a result but it is not the last stage");
        const wire::Result& r = e->frame.frame.result();
        if (r.request_id() != front.id) continue;  // a stale answer
        double compute_ms = 0;
        account(&r, front.sent_ns, front.bytes, e->at_ns, e->frame.wire_bytes, n, &compute_ms);
        std::vector<SeqStep*> drawn;
        for (SeqStep& s : front.batch.steps)
            if (s.draw) drawn.push_back(&s);
        const size_t k = drawn.size();
        if (head_remote_) {
            if (static_cast<size_t>(r.spans_size()) != k)
                fail_node(last.link, "answered " + std::to_string(r.spans_size()) + " sequences of " + std::to_string(k));
            for (size_t i = 0; i < k; ++i) {
                const wire::SpanResult& sr = r.spans(static_cast<int>(i));
                if (sr.seq_id() != static_cast<uint64_t>(drawn[i]->slot) || sr.token() < 0 ||
                    sr.token() >= config_.vocab_size)
                    fail_node(last.link, "answered sequence " + std::to_string(sr.seq_id()) + " with token " +
                                             std::to_string(sr.token()) + " for sequence " +
                                             std::to_string(drawn[i]->slot));
                drawn[i]->token = sr.token();
                drawn[i]->sampler->set_rng_state(sr.rng_state());
            }
        } else if (k > 0) {
            const size_t dim = static_cast<size_t>(config_.dim), vocab = static_cast<size_t>(config_.vocab_size);
            x_.resize(k * dim);
            if (!net::decode_values(r.activation(), r.wire(), x_.size(), x_.data()))
                fail_node(last.link, "returned activations of " + std::to_string(r.activation().size()) + " bytes for " +
                                         std::to_string(k) + " sequences");
            const auto t0 = Clock::now();
            if (sliced_) {
                bool greedy = true;
                for (SeqStep* s : drawn) greedy = greedy && s->sampler->params().temperature == 0.0f;
                classify_sliced(static_cast<int>(k), !greedy);
                for (size_t i = 0; i < k; ++i)
                    drawn[i]->token = greedy ? best_[i] : drawn[i]->sampler->sample(logits_.data() + i * vocab);
            } else {
                std::vector<int> pos;
                for (SeqStep* s : drawn) pos.push_back(s->pos + static_cast<int>(s->tokens.size()) - 1);
                logits_.resize(k * vocab);
                compute_logits_rows(config_, local_, x_.data(), static_cast<int>(k), logits_.data(), pos.data(), pool_);
                for (size_t i = 0; i < k; ++i) drawn[i]->token = drawn[i]->sampler->sample(logits_.data() + i * vocab);
                local_stats_.compute_ms += ms_since(t0);
            }
        }
        local_stats_.positions += static_cast<uint64_t>(n);
        ++local_stats_.requests;
        Batch done = std::move(front.batch);
        in_flight_.pop_front();
        return done;
    }
}

void PipelineEngine::reset(uint64_t seq) {
    wire::Frame f;
    f.mutable_reset()->set_seq_id(seq);
    net_->hub.send(chain_.front()->link, f);
}

PipelineStats PipelineEngine::stats() const {
    PipelineStats s = totals_;
    NodeStats local = local_stats_;
    const ProcessMemory mem = read_process_memory();
    local.rss = mem.rss;
    local.peak_rss = mem.peak_rss;
    s.nodes.push_back(local);
    for (const Node* n : assigned_) s.nodes.push_back(n->stats);
    return s;
}

}  // namespace ferry
