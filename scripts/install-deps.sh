#!/usr/bin/env bash
# Installs the Debian packages ferry builds and tests with, only those missing.
# Run as root on Debian 12 (bookworm) or newer.
set -euo pipefail
packages=(
  build-essential cmake ninja-build     # the compiler, CMake and Ninja (dpkg-dev, with build-essential, gives cpack's dpkg-shlibdeps)
  pkg-config                            # finds cpp-httplib's build flags (coordinator/CMakeLists.txt)
  libasio-dev                           # standalone Asio: the event loop for worker and coordinator sockets
  libprotobuf-dev protobuf-compiler     # the wire format (proto/ferry.proto)
  libspdlog-dev                         # levelled logging
  libgtest-dev                          # unit and integration tests
  libbenchmark-dev                      # kernel micro-benchmarks (bench/)
  libcli11-dev                          # command lines of ferry and ferry-worker
  nlohmann-json3-dev                    # JSON: ferry serve's OpenAI API, --json output of status, plan and bench
  libcpp-httplib-dev                    # ferry serve's HTTP server (and the tests' HTTP client)
  curl                                  # tests drive ferry serve with curl (and the openai npm client: below)
  chromium python3-prometheus-client    # the dashboard test (headless chromium) and the /metrics parser
  libxxhash-dev                         # model content hash and per-chunk checksums (XXH3, ~30 GB/s)
  libsodium-dev                         # the cluster key: authenticated handshake, sealed frames, signed beacons (ChaCha20-Poly1305, HMAC)
  libsystemd-dev                        # sd_notify readiness, STATUS= and the watchdog for the systemd unit
  iproute2                              # network-namespace tests (ip netns, veth, tc)
  help2man                              # the man pages, from --help
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Node.js and npm run the official openai client and playwright-core in the
# serve tests. A machine may have them from elsewhere (NodeSource's nodejs
# includes npm and conflicts with Debian's npm), so only missing commands count.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A mirror mid-sync fails one index now and then; the others (or the cached ones) still serve.
  apt-get update -qq || echo "install-deps: apt-get update reported errors; trying with the indexes it has" >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
