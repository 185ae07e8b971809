// A blocking loopback client that speaks raw bytes to a live worker and reads
// frames back: what hostile and mistaken peers send in the protocol tests.
#pragma once
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/model_file.h"
#include "common/net/frame.h"
#include "common/net/shard_image.h"
#include "common/weights.h"

namespace ferry::test {

class RawClient {
public:
    explicit RawClient(int port) {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            close(fd_);
            throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
        }
    }
    ~RawClient() { close(fd_); }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;

    int fd() const { return fd_; }
    void send(const std::string& bytes) {
        ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    }
    void send(const wire::Frame& f) { send(net::encode_frame(f)); }
    // Frames until the peer closes or timeout_s passes; *closed tells which.
    std::vector<wire::Frame> read(double timeout_s, bool* closed) {
        std::vector<wire::Frame> frames;
        *closed = false;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        for (;;) {
            const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  deadline - std::chrono::steady_clock::now()).count());
            if (left <= 0) return frames;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, left) <= 0) continue;
            char buf[65536];
            const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) {
                *closed = true;
                return frames;
            }
            std::vector<net::FrameDecoder::Decoded> out;
            decoder_.feed(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n), out);
            for (auto& x : out) frames.push_back(std::move(x.frame));
        }
    }

private:
    int fd_ = -1;
    net::FrameDecoder decoder_{net::kControlFrameBytes};
};

// The messages of the Error frames among `frames`, one per line.
inline std::string errors_of(const std::vector<wire::Frame>& frames) {
    std::string s;
    for (const wire::Frame& f : frames)
        if (f.has_error()) s += f.error().message() + "\n";
    return s;
}

// A frame's length prefix: u32 little-endian.
inline std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

// An Assign of `spec` of `model`: its shape and the tensors the spec needs
// (from its directory), f32 KV cache, the whole context, stage `stage` of
// `n_stages`, a made-up model hash.
inline wire::Frame assign_frame(const ModelFile& model, const ShardSpec& spec, uint64_t image_bytes, int stage = 0,
                                int n_stages = 1) {
    wire::Frame f;
    wire::Assign* a = f.mutable_assign();
    a->set_model_hash(std::string(16, 'h'));
    a->set_model_name(model.path.substr(model.path.find_last_of('/') + 1));
    *a->mutable_shape() = net::shape_to_wire(model.config);
    a->set_first_layer(spec.first_layer);
    a->set_last_layer(spec.last_layer);
    a->set_embedding(spec.embedding);
    a->set_head(spec.head);
    a->set_context(model.config.seq_len);
    a->set_kv_type("f32");
    for (const std::string& name : shard_tensor_names(model.config, spec, model.find("output.weight") == nullptr)) {
        const TensorInfo* t = model.find(name);
        if (!t) continue;
        wire::TensorDesc* d = a->add_tensors();
        d->set_name(t->name);
        d->set_type(static_cast<uint32_t>(t->type));
        d->set_rows(t->rows);
        d->set_cols(t->cols);
        d->set_group(t->group);
        d->set_bytes(t->bytes);
    }
    a->set_image_bytes(image_bytes);
    a->set_image_hash(std::string(16, 'i'));  // no cached file has this name
    a->set_stage_index(stage);
    a->set_n_stages(n_stages);
    return f;
}

}  // namespace ferry::test
