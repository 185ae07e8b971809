#!/usr/bin/env bash
# Builds a static 32-bit ferry-worker (and ferry) for i686 machines without
# SSE2, e.g. a Pentium II. Uses Debian's i686 cross compiler and i386 library
# packages unpacked into build-i686/sysroot (scripts/cross-sysroot.sh).
# Output: build-i686/worker/ferry-worker, build-i686/coordinator/ferry.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh
. scripts/cross-sysroot.sh
cross_packages g++-i686-linux-gnu qemu-user
sysroot=$root/build-i686/sysroot
cross_sysroot i386 "$sysroot"
# The toolchain's compiler and flags apply only when the cache is made: start
# over if it predates them (a multilib build, or one without 64-bit offsets).
cache=build-i686/CMakeCache.txt
if [ -f $cache ] && { ! grep -q "_FILE_OFFSET_BITS=64" $cache || ! grep -q "CMAKE_CXX_COMPILER:.*i686-linux-gnu-g++" $cache; }; then
  rm -rf build-i686/CMakeCache.txt build-i686/CMakeFiles
fi
cmake -S . -B build-i686 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/i686.cmake" -DFERRY_I686_SYSROOT="$sysroot" \
  -DFERRY_BUILD_TESTS=OFF -DFERRY_SERVE=OFF -DProtobuf_PROTOC_EXECUTABLE=/usr/bin/protoc \
  -DProtobuf_INCLUDE_DIR=/usr/include \
  -DProtobuf_LIBRARY="$sysroot/usr/lib/i386-linux-gnu/libprotobuf.a" \
  -DProtobuf_LITE_LIBRARY="$sysroot/usr/lib/i386-linux-gnu/libprotobuf-lite.a" \
  -DZLIB_LIBRARY="$sysroot/usr/lib/i386-linux-gnu/libz.a" >/dev/null
cmake --build build-i686 -j "$(nproc)"
