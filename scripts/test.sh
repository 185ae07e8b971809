#!/usr/bin/env bash
# README command 2 (and CI): install what is missing, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bash scripts/build-i686.sh   # the 32-bit worker the tests run under qemu-i386 -cpu pentium2
cd build
ctest --output-on-failure -j 2 --timeout 300
