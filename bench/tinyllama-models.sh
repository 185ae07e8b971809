# Sourced by bench/levels.sh and bench/peers.sh: their shared settings and the
# TinyLlama-1.1B-shaped GGUF files both measure (random weights, every 2-D
# tensor in the type, the shapes of peers.md's llama.cpp figures).
# Environment: FERRY (default build/coordinator/ferry), WORK (default /tmp/ferry-bench/levels: the models, 4.4 GB
# for f32; written by `ferry synth` when missing), TYPES (default "f32 f16 q8_0 q4_0 q4_K tq2_0"), THREADS
# (default "1 2"), ROUNDS (default 3), PROMPT (default 64), GEN (default 32).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ferry=${FERRY:-$root/build/coordinator/ferry}
work=${WORK:-/tmp/ferry-bench/levels}
types=(${TYPES:-f32 f16 q8_0 q4_0 q4_K tq2_0})
threads=(${THREADS:-1 2})
rounds=${ROUNDS:-3}
prompt=${PROMPT:-64}
gen=${GEN:-32}
mkdir -p "$work"

# The model file of type $1, written first if missing.
model() {
  local f="$work/tinyllama-1.1b-$1.gguf"
  [ -f "$f" ] || "$ferry" synth "$f" --preset tinyllama-1.1b --format gguf --type "$1" >&2
  echo "$f"
}
