#!/usr/bin/env bash
# README command 1: install what is missing, build, and tell a story with the
# bundled stories260K model (../shared/models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
models=${FERRY_MODELS:-../shared/models}
exec ./build/coordinator/ferry run "$models/stories260K.bin" -z "$models/tok512.bin" "$@"
