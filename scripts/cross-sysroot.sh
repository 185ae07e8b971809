# Sourced by the cross builds (build-i686.sh, build-arm.sh).
# cross_packages PKG...: installs the host packages that are missing.
# cross_sysroot DEBARCH DIR: unpacks the static libraries ferry links
# (libprotobuf.a, libz.a, libsodium.a) of Debian architecture DEBARCH into
# DIR. The packages are downloaded and unpacked, not installed, so Debian's
# multiarch version pinning cannot block them and nothing foreign lands on the
# host; a second run reuses DIR.
cross_packages() {
  local need=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
  done
  ((${#need[@]})) || return 0
  apt-get update -qq || true   # a partial index (mirror sync) is fine for what follows
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

cross_sysroot() {
  local arch=$1 dir=$2 triple
  triple=$(dpkg-architecture -a "$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)
  if [ -f "$dir/.complete" ] && [ -f "$dir/usr/lib/$triple/libsodium.a" ]; then return 0; fi
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch"
    apt-get update -qq || true
  fi
  rm -rf "$dir" && mkdir -p "$dir/debs"
  local debs=("libprotobuf-dev:$arch" "zlib1g-dev:$arch" "libsodium-dev:$arch")
  (cd "$dir/debs" && apt-get download -qq "${debs[@]}" 2>/dev/null) || {
    apt-get update -qq || true
    (cd "$dir/debs" && apt-get download -qq "${debs[@]}")
  }
  local d
  for d in "$dir"/debs/*.deb; do dpkg -x "$d" "$dir"; done
  touch "$dir/.complete"
}
