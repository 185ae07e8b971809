#!/usr/bin/env bash
# Builds a static 32-bit ferry-worker (and ferry) for i686 machines without
# SSE2, e.g. a Pentium II. Uses gcc-multilib and i386 library packages that are
# downloaded and unpacked into build-i686/sysroot (no i386 packages are
# installed system-wide, so Debian's multiarch version pinning cannot block it).
# Output: build-i686/worker/ferry-worker, build-i686/coordinator/ferry.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh
need=()
for p in gcc-multilib g++-multilib qemu-user; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if ! dpkg --print-foreign-architectures | grep -qx i386; then
  dpkg --add-architecture i386
  need+=(update)
fi
if ((${#need[@]})); then
  apt-get update -qq || true   # a partial index (mirror sync) is fine for what follows
  pkgs=("${need[@]/update/}")
  [ -n "${pkgs[*]// /}" ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${pkgs[*]} >/dev/null
fi
sysroot=$root/build-i686/sysroot
if [ ! -f "$sysroot/.complete" ] || [ ! -f "$sysroot/usr/lib/i386-linux-gnu/libsodium.a" ]; then
  rm -rf "$sysroot" && mkdir -p "$sysroot/debs"
  (cd "$sysroot/debs" && apt-get download -qq libprotobuf-dev:i386 zlib1g-dev:i386 libsodium-dev:i386 2>/dev/null) || {
    apt-get update -qq || true
    (cd "$sysroot/debs" && apt-get download -qq libprotobuf-dev:i386 zlib1g-dev:i386 libsodium-dev:i386)
  }
  for d in "$sysroot"/debs/*.deb; do dpkg -x "$d" "$sysroot"; done
  touch "$sysroot/.complete"
fi
# The toolchain's flags apply only when the cache is made: start over if it predates them.
if [ -f build-i686/CMakeCache.txt ] && ! grep -q _FILE_OFFSET_BITS=64 build-i686/CMakeCache.txt; then
  rm -f build-i686/CMakeCache.txt
fi
cmake -S . -B build-i686 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/i686.cmake" -DFERRY_I686_SYSROOT="$sysroot" \
  -DFERRY_BUILD_TESTS=OFF -DFERRY_SERVE=OFF -DProtobuf_PROTOC_EXECUTABLE=/usr/bin/protoc \
  -DProtobuf_INCLUDE_DIR=/usr/include \
  -DProtobuf_LIBRARY="$sysroot/usr/lib/i386-linux-gnu/libprotobuf.a" \
  -DProtobuf_LITE_LIBRARY="$sysroot/usr/lib/i386-linux-gnu/libprotobuf-lite.a" \
  -DZLIB_LIBRARY="$sysroot/usr/lib/i386-linux-gnu/libz.a" >/dev/null
cmake --build build-i686 -j "$(nproc)"
