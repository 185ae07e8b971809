#!/usr/bin/env bash
# README command 2 (and CI): install what is missing, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bash scripts/build-static-worker.sh  # the one-file x86-64 worker (tests/install_test.cpp runs it)
bash scripts/build-i686.sh   # the 32-bit worker the tests run under qemu-i386 -cpu pentium2
bash scripts/build-arm.sh    # the aarch64 and armhf builds the tests run under qemu-aarch64 / qemu-arm
bash scripts/build-windows.sh  # ferry-worker.exe, 32- and 64-bit, that the tests run under Wine
. scripts/cross-sysroot.sh
cross_packages wine64        # runs the 64-bit .exe (tests/windows_test.cpp)
# Kernels without IA-32 emulation (built without it, or ia32_emulation=0) refuse
# 32-bit programs; the tests then run the i686 build under qemu-i386 instead,
# and the 32-bit .exe not at all: Wine's 32-bit loader is an i386 Linux program.
if ! out=$(build-i686/worker/ferry-worker --help 2>&1 >/dev/null); then
  echo "test: this host cannot run 32-bit programs (${out:-exec failed}); the i686 tests run the 32-bit build under qemu-i386, and the 32-bit Windows worker is not run"
else
  cross_packages wine32:i386  # runs the 32-bit .exe (the i386 architecture is enabled by build-i686.sh)
fi
# The official OpenAI client for the serve tests, from the npm registry, into
# build/ (never the source tree); pinned by tests/clients/package.json.
mkdir -p build/clients-node
cp tests/clients/package.json build/clients-node/
if [ ! -d build/clients-node/node_modules/openai ] || ! cmp -s tests/clients/package.json build/clients-node/.installed; then
  (cd build/clients-node && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  cp tests/clients/package.json build/clients-node/.installed
fi
cd build
ctest --output-on-failure -j 2 --timeout 300
