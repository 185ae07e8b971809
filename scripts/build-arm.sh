#!/usr/bin/env bash
# Builds static ferry-worker and ferry for ARM with Debian's cross compilers:
#   aarch64  64-bit ARMv8 (Raspberry Pi 3/4/5 and boards on a 64-bit system)
#   armhf    32-bit ARMv7 with NEON (Pi 2/3 on a 32-bit system)
# Usage: scripts/build-arm.sh [aarch64] [armhf]   (default: both)
# The libraries ferry links come from unpacked Debian packages of that
# architecture (scripts/cross-sysroot.sh); qemu-user is installed so that the
# tests can run the builds. Output: build-<arch>/worker/ferry-worker and
# build-<arch>/coordinator/ferry, each one static file.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
targets=("$@")
((${#targets[@]})) || targets=(aarch64 armhf)
bash scripts/install-deps.sh
. scripts/cross-sysroot.sh
for target in "${targets[@]}"; do
  case $target in
    aarch64) debarch=arm64 triple=aarch64-linux-gnu ;;
    armhf) debarch=armhf triple=arm-linux-gnueabihf ;;
    *) echo "build-arm: unknown target '$target': use aarch64 or armhf" >&2; exit 2 ;;
  esac
  cross_packages "g++-$triple" qemu-user libsimde-dev
  out=build-$target
  sysroot=$root/$out/sysroot
  cross_sysroot "$debarch" "$sysroot"
  lib=$sysroot/usr/lib/$triple
  cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/arm.cmake" -DFERRY_ARM="$target" -DFERRY_ARM_SYSROOT="$sysroot" \
    -DFERRY_STATIC=ON -DFERRY_BUILD_TESTS=OFF -DFERRY_SERVE=OFF -DProtobuf_PROTOC_EXECUTABLE=/usr/bin/protoc \
    -DProtobuf_INCLUDE_DIR=/usr/include -DProtobuf_LIBRARY="$lib/libprotobuf.a" \
    -DProtobuf_LITE_LIBRARY="$lib/libprotobuf-lite.a" -DZLIB_LIBRARY="$lib/libz.a" >/dev/null
  cmake --build "$out" --target ferry-worker ferry -j "$(nproc)"
  echo "$out: ferry-worker $(du -h "$out/worker/ferry-worker" | cut -f1), ferry $(du -h "$out/coordinator/ferry" | cut -f1) ($target, static)"
done
