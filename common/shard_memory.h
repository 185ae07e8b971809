// How many bytes a process needs to run a shard: the one function the
// planner, `ferry plan` and a worker checking its --memory budget all use.
//
// What is counted, and why it is what the kernel's VmRSS/VmHWM will show:
//   weights    the shard's tensors in their stored type, mapped from the shard
//              cache or the model (every page is read once per token, so all
//              are resident after the first token; the embedding table is
//              counted whole although only the rows of tokens seen are read);
//   kv_cache   keys and values for the context, per sequence slot (allocated and zeroed at load);
//   workspace  forward_layers' scratch for kMaxBatch positions
//              (Workspace::bytes_for), including a non-f32 cache's decode rows;
//   buffers    the largest request in flight: the frame received and its
//              parsed copy, the stage's activations, the frame it sends and
//              its encoding, plus logits and the sampler on a head stage;
//   overhead   the process itself (code, libraries, heap, thread stacks and
//              what a session's handshake and link echo leave behind),
//              measured per architecture (kWorkerOverhead*, below).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/model_config.h"
#include "common/model_file.h"
#include "common/weights.h"

namespace ferry {

struct ShardMemory {
    uint64_t weights = 0;    // tensors in their stored type (mapped from the model or the shard cache)
    uint64_t embedding = 0;  // of weights: the embedding table, if held
    uint64_t head = 0;       // of weights: final norm and classifier, if held (a tied one held with the embedding: 0)
    uint64_t kv_cache = 0;   // keys and values for the context
    uint64_t workspace = 0;  // activations and scratch for the largest batch
    uint64_t buffers = 0;    // frames and activations of the largest request in flight
    uint64_t overhead = 0;   // the process itself: code, libraries, heap, thread stacks (measured)
    uint64_t total() const { return weights + kv_cache + workspace + buffers + overhead; }
};

// What a stage is asked to do besides holding its tensors.
struct StageLoad {
    int context = 0;              // positions the KV cache holds
    KvType kv_type = KvType::f32;
    int max_positions = 0;        // most positions in one request (the prefill batch); 0: the whole context
    int wire_bytes = 4;           // bytes per activation value between stages: 4 (f32) or 2 (f16)
    bool first = false;           // receives from the coordinator (chunked prefills queue up here)
    bool last = false;            // answers the coordinator with one position (or a token)
    std::string arch = "x86_64";  // the worker's; picks the measured process overhead
    int slots = 1;                // sequences held at once (`ferry serve --parallel`): a KV cache each, and
                                  // the last stage answers for each in one result
};

// Resident bytes of a ferry-worker process beyond what ShardMemory counts
// item by item, measured (tests/memory_accounting_test.cpp prints them per
// case): the peak RSS (VmHWM) of real workers serving a shard through a whole
// session (handshake, 1 MB link echo, shard, prefill, 200 tokens) minus the
// counted weights, KV cache, workspace and buffers.
//   x86-64 (dynamic, Debian 12): idle after start 7.0 MB VmRSS (6.6 MB of it
//     the binary and its shared libraries: libstdc++, protobuf, spdlog, ...);
//     serving, 9.8-11.1 MB over 11 stages of 5 runs. The spread is glibc malloc: the
//     start-up speed probe frees a 4-16 MB matrix, which raises malloc's
//     mmap threshold, so later 1 MB frames stay in the heap. Under budgets
//     below 32 MB (a 1 MB probe) the process is ~3 MB smaller than counted.
//   i686 (static): idle 3.3-3.5 MB; serving 3.7 MB (32-bit malloc never
//     raises its mmap threshold past 512 KB).
//   aarch64 and armhf (static, scripts/build-arm.sh): estimates, not
//     measurements: under qemu-user a process's RSS is the emulator's (its
//     translation cache), and no ARM board is here. aarch64's glibc malloc
//     is 64-bit, with x86-64's threshold rise above, and its binary (4.1 MB
//     of code) is smaller than x86-64's 6.6 MB of code and libraries:
//     x86-64's figure, an upper estimate. armhf's malloc is 32-bit like
//     i686's and its Thumb-2 code 2.7 MB against i686's 5.7: i686's figure.
constexpr uint64_t kWorkerOverheadX86_64 = 11ull << 20;
constexpr uint64_t kWorkerOverheadI686 = 4ull << 20;
constexpr uint64_t kWorkerOverheadAarch64 = 11ull << 20;
constexpr uint64_t kWorkerOverheadArmhf = 4ull << 20;
// The architectures a pool may name ("x86_64", "i686", "aarch64", "armhf").
bool known_worker_arch(const std::string& arch);
// The overhead for a worker's architecture ("x86_64", "i686"; anything else: x86_64's).
uint64_t worker_process_overhead(const std::string& arch);

ShardMemory shard_memory(const ModelConfig& c, const std::vector<TensorInfo>& tensors, const ShardSpec& spec,
                         const StageLoad& load);
// The worst case of a stage: a whole context in one request, f32 wire, not the last stage.
ShardMemory shard_memory(const ModelConfig& c, const std::vector<TensorInfo>& tensors, const ShardSpec& spec,
                         int context, KvType kv_type = KvType::f32);

// A vocabulary slice's buffers: `rows` logits per sequence slot and the final hidden states.
uint64_t slice_buffers(const ModelConfig& c, int64_t rows, int slots);

// Bytes of the tensors named, from a model's directory (names not present count 0).
uint64_t tensor_bytes_named(const std::vector<TensorInfo>& tensors, const std::vector<std::string>& names);

// Sizes everywhere (plans, progress, tables, refusals) count in powers of
// 1024: KB = 2^10, MB = 2^20, GB = 2^30 bytes; rates are MB/s of the same MB.
// Link speeds are the network's Mbit/s (10^6 bits). "12.3 MB":
std::string format_bytes(uint64_t bytes);
// bytes / 2^20, for table columns in MB.
double to_mb(uint64_t bytes);
// Parses "128M", "1.5G", "65536" (bytes), "512K"; false if malformed.
bool parse_bytes(const std::string& text, uint64_t* out);

}  // namespace ferry
