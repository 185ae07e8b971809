// Meeting the workers before any plan: connect, exchange Hellos, measure each
// link from the coordinator (round trips and a 1 MB echo). `ferry plan
// --workers` does this as a status client (probe_workers, pipeline_engine.h);
// PipelineEngine does it as the coordinator of a session. Both turn what
// they learnt into the planner's WorkerCapacity with capacity_of().
#pragma once
#include "common/error.h"
#include <cstdint>
#include <string>
#include <vector>

#include "common/net/hub.h"
#include "coordinator/pipeline/planner.h"
#include "ferry.pb.h"

namespace ferry {

// One worker as the coordinator knows it after the handshake and the measurement.
// A failure that one worker caused (closed, silent, refused, answered
// wrongly): the message names it, and `address` says which, so recovery can
// plan without it.
class WorkerError : public Error {
public:
    WorkerError(std::string address_, const std::string& message) : Error(message), address(std::move(address_)) {}
    std::string address;
};

struct WorkerLink {
    std::string address;  // as given in --workers
    int link = -1;        // its connection on the hub
    wire::Capabilities caps;
    std::string worker_name;      // how it calls itself
    double rtt_ms = 0;            // fastest of the small round trips
    int64_t clock_offset_ns = 0;  // worker clock minus ours
    double link_mbps = 0;         // from the 1 MB echo
    double heartbeat_s = 1;       // how often it needs to hear from us (a third of its --timeout, at most 1 s)
};

// Why an event ends the conversation with its worker ("cannot connect: ...",
// "closed the connection (...)", "reports: <its error>"), or "" if it does not.
std::string event_problem(const net::Hub::Event& e);

// Connects to every address and exchanges Hellos as `role` (COORDINATOR takes
// the worker's session slot, STATUS_CLIENT never does). Returns the workers in
// address order. Throws ferry::Error naming the worker that failed.
std::vector<WorkerLink> greet_workers(net::Hub& hub, const std::vector<std::string>& addresses, wire::Role role,
                                      const std::string& model_hash, double connect_timeout_s, double timeout_s);

// Five 64-byte pings (latency, clock offset) and one 1 MB echo (throughput),
// one worker after another. A failure of any of them throws naming it.
void measure_links(net::Hub& hub, const std::vector<WorkerLink*>& workers, double timeout_s);
void measure_link(net::Hub& hub, WorkerLink& w, const std::vector<WorkerLink*>& workers, double timeout_s);

// The planner's view of a worker; `tensor_type` picks which measured GB/s
// (the model's dominant weight type, dominant_tensor_type()).
WorkerCapacity capacity_of(const WorkerLink& w, const std::string& tensor_type);

}  // namespace ferry
