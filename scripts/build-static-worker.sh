#!/usr/bin/env bash
# Builds a static x86-64 ferry-worker: one file to copy onto any x86-64 Linux
# machine, whatever its libraries (Debian's own packages: libprotobuf.a and
# libz.a, spdlog header-only). Without libsystemd: under systemd run it with
# Type=simple. Output: build-static/worker/ferry-worker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build-static -G Ninja -DCMAKE_BUILD_TYPE=Release -DFERRY_STATIC=ON -DFERRY_WORKER_ONLY=ON \
  -DFERRY_BUILD_TESTS=OFF >/dev/null
cmake --build build-static --target ferry-worker -j "$(nproc)"
ldd build-static/worker/ferry-worker >/dev/null 2>&1 && { echo "build-static: ferry-worker is not static" >&2; exit 1; }
echo "build-static/worker/ferry-worker: static, $(du -h build-static/worker/ferry-worker | cut -f1)"
