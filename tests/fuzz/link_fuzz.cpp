// libFuzzer target for what an unauthenticated peer controls on a keyed
// link and on the discovery port: the cluster-key handshake, sealed records
// (common/net/secure_link.h: fuzz_secure_link) and beacon datagrams
// (common/net/discovery.h: fuzz_beacon). The first byte picks which.
// Companion ctest: tests/secure_link_test.cpp (LinkFuzzCorpus).
#include "common/net/discovery.h"
#include "common/net/secure_link.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    if (data[0] & 0x80) return ferry::net::fuzz_beacon(data + 1, size - 1);
    return ferry::net::fuzz_secure_link(data, size);
}
