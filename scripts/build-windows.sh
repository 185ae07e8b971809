#!/usr/bin/env bash
# Builds static ferry-worker.exe for Windows with Debian's mingw-w64 cross
# compilers (POSIX thread model):
#   i686    32-bit Windows 7 and later, any x86 CPU (scalar, SSE2, SSSE3 ... kernels chosen at run time)
#   x86_64  64-bit Windows 7 and later
# Usage: scripts/build-windows.sh [i686] [x86_64]   (default: both)
# Debian packages no Windows build of protobuf or libsodium, so this script
# builds both from Debian's own source packages (the same versions as the
# Linux build: protobuf 3.21.12's lite runtime, libsodium 1.0.18), fetched
# with a private deb-src list (the machine's apt sources are not touched)
# into build-windows-src/. Header-only libraries (Asio, spdlog, fmt, CLI11,
# xxHash, SIMDe) come from the host's Debian packages. A second run reuses
# the built dependencies. Output: build-windows-<arch>/worker/ferry-worker.exe.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
targets=("$@")
((${#targets[@]})) || targets=(i686 x86_64)
bash scripts/install-deps.sh
. scripts/cross-sysroot.sh
cross_packages g++-mingw-w64-i686-posix g++-mingw-w64-x86-64-posix libsimde-dev dpkg-dev \
  autoconf automake libtool   # libsodium's source package has no configure script

# Debian's source packages, by a deb-src list of the machine's own mirror.
src=$root/build-windows-src
fetch_sources() {
  [ -f "$src/.complete" ] && return 0
  rm -rf "$src" && mkdir -p "$src/apt/lists/partial" "$src/apt/archives/partial"
  local mirror suite
  mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 2>/dev/null | grep -m1 -E 'debian/?$' || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian/
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  echo "deb-src ${mirror%/} $suite main" >"$src/apt/sources.list"
  local apt=(apt-get -o Dir::Etc::SourceList="$src/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o Dir::State::Lists="$src/apt/lists" -o Dir::Cache::Archives="$src/apt/archives" -o APT::Sandbox::User=root)
  "${apt[@]}" update -qq
  (cd "$src" && "${apt[@]}" source -qq --download-only protobuf libsodium)
  # dpkg-source checks the checksums apt verified; the signature warning (no keyring of uploaders) is noise.
  (cd "$src" && for dsc in protobuf_*.dsc libsodium_*.dsc; do dpkg-source -q -x "$dsc" >/dev/null 2>&1; done)
  (cd "$src"/libsodium-*/ && autoreconf -fi >/dev/null 2>&1)
  touch "$src/.complete"
}
fetch_sources
protobuf_src=$(ls -d "$src"/protobuf-*/ | head -1)
sodium_src=$(ls -d "$src"/libsodium-*/ | head -1)

for target in "${targets[@]}"; do
  case $target in
    i686) triple=i686-w64-mingw32 ;;
    x86_64) triple=x86_64-w64-mingw32 ;;
    *) echo "build-windows: unknown target '$target': use i686 or x86_64" >&2; exit 2 ;;
  esac
  out=build-windows-$target
  deps=$root/$out/deps
  mkdir -p "$deps/include" "$deps/lib"
  # Header-only libraries: links to the host's headers, and nothing else of /usr/include.
  for h in asio asio.hpp spdlog fmt CLI xxhash.h simde; do ln -sfn "/usr/include/$h" "$deps/include/$h"; done
  if [ ! -f "$deps/lib/libprotobuf-lite.a" ]; then
    echo "build-windows: protobuf-lite for $target (once)"
    cmake -S "$protobuf_src" -B "$out/protobuf" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_SYSTEM_NAME=Windows -DCMAKE_CXX_COMPILER=$triple-g++-posix -DCMAKE_C_COMPILER=$triple-gcc-posix \
      -Dprotobuf_BUILD_TESTS=OFF -Dprotobuf_BUILD_PROTOC_BINARIES=OFF -Dprotobuf_BUILD_SHARED_LIBS=OFF \
      -Dprotobuf_WITH_ZLIB=OFF -Dprotobuf_MSVC_STATIC_RUNTIME=OFF -DCMAKE_CXX_FLAGS="-w" >/dev/null
    cmake --build "$out/protobuf" --target libprotobuf-lite -j "$(nproc)" >/dev/null
    rm -rf "$deps/include/google" && cp -r "$protobuf_src/src/google" "$deps/include/google"
    cp "$out/protobuf/libprotobuf-lite.a" "$deps/lib/"
  fi
  if [ ! -f "$deps/lib/libsodium.a" ]; then
    echo "build-windows: libsodium for $target (once)"
    rm -rf "$out/sodium" && cp -r "$sodium_src" "$out/sodium"
    (cd "$out/sodium" && ./configure -q --host=$triple --prefix="$deps" --disable-shared --enable-static \
       --disable-pie --disable-ssp CC=$triple-gcc-posix >/dev/null && make -s -j "$(nproc)" >/dev/null 2>&1 &&
       make -s install >/dev/null)
  fi
  cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/windows.cmake" -DFERRY_WINDOWS="$target" -DFERRY_WINDOWS_DEPS="$deps" \
    -DFERRY_WORKER_ONLY=ON -DFERRY_BUILD_TESTS=OFF -DFERRY_SERVE=OFF -DProtobuf_PROTOC_EXECUTABLE=/usr/bin/protoc \
    -DProtobuf_INCLUDE_DIR="$deps/include" -DProtobuf_LIBRARY="$deps/lib/libprotobuf-lite.a" \
    -DProtobuf_LITE_LIBRARY="$deps/lib/libprotobuf-lite.a" >/dev/null
  cmake --build "$out" --target ferry-worker -j "$(nproc)"
  echo "$out: ferry-worker.exe $(du -h "$out/worker/ferry-worker.exe" | cut -f1) ($target, static)"
done
