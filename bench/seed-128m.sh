#!/usr/bin/env bash
# The seed's case (issue 22): Llama 3.2 1B's shape on a pool of 128 MB
# machines with a 128 MB coordinator. No node can hold the 128256-entry
# vocabulary table (141 MB in Q4_K), so the plan cuts the classifier into
# vocabulary slices beside the layers and the coordinator reads embedding
# rows from the file. Built with bench/pool-lan.sh: every worker in its own
# network namespace at RATE and memory cgroup of MEM (ferry-worker --memory
# MEM), the coordinator in one too (ferry run --memory MEM). Runs greedy and
# seeded STEPS tokens across the pool and in one uncapped process, compares
# the token ids, and prints every process's peak (its cgroup's, and the RSS
# the node table reports) next to what `ferry plan` predicted.
#
#   bench/seed-128m.sh                 TYPE=q4_K WORKERS=8 MEM=128M CTX=256 STEPS=64 RATE=100mbit
#
# STEPS counts positions, as -n does: the 26-token prompt and 38 generated tokens by default.
#
# The model is made once with `ferry synth --preset llama3.2-1b --format gguf --type TYPE` in WORK
# (default /tmp/ferry-seed-bench). Needs root, iproute2 and memory cgroups (bench/pool-lan.sh check).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${FERRY_BUILD:-$PWD/build}
FERRY=${FERRY_BIN:-$BUILD/coordinator/ferry}
POOL=bench/pool-lan.sh
TYPE=${TYPE:-q4_K}; WORKERS=${WORKERS:-8}; MEM=${MEM:-128M}; CTX=${CTX:-256}; STEPS=${STEPS:-64}
RATE=${RATE:-100mbit}; WORK=${WORK:-/tmp/ferry-seed-bench}
NET=${FERRY_POOL_NET:-10.77.0}
mkdir -p "$WORK"
model=$WORK/llama3.2-1b-$TYPE.gguf
[ -f "$model" ] || "$FERRY" synth "$model" --preset llama3.2-1b --format gguf --type "$TYPE" -q
"$POOL" check
trap '"$POOL" down >/dev/null 2>&1' EXIT
"$POOL" up "$WORKERS" "$RATE"
list=""
for i in $(seq 1 "$WORKERS"); do
  rm -rf "$WORK/cache-w$i"
  "$POOL" worker "$i" "$MEM" --threads 1 --cache-dir "$WORK/cache-w$i"
  list+="${list:+,}$NET.$((10 + i)):7070"
done
echo "## ferry plan (predicted)"
"$POOL" coord "$FERRY" plan "$model" --workers "$list" --ctx "$CTX" --coordinator-memory "$MEM"
same=yes
for mode in greedy seeded; do
  if [ "$mode" = greedy ]; then sampling=(-t 0); else sampling=(-t 0.8 -p 0.9 -s 42); fi
  echo "## $mode: one uncapped process"
  "$FERRY" run "$model" --ctx "$CTX" -n "$STEPS" "${sampling[@]}" -i "Once upon a time" --threads 1 \
    --ids-out "$WORK/$mode.local.ids" > "$WORK/$mode.local.out" 2> "$WORK/$mode.local.err"
  tail -3 "$WORK/$mode.local.err"
  echo "## $mode: across the pool, the coordinator capped at $MEM too"
  "$POOL" coordmem "$MEM" "$FERRY" run "$model" --workers "$list" --memory "$MEM" --ctx "$CTX" -n "$STEPS" \
    "${sampling[@]}" -i "Once upon a time" --threads 1 --ids-out "$WORK/$mode.pool.ids" \
    --json "$WORK/$mode.pool.json" > "$WORK/$mode.pool.out" 2> "$WORK/$mode.pool.err" || { cat "$WORK/$mode.pool.err"; exit 1; }
  grep -vE "^sending shards|^\s*$" "$WORK/$mode.pool.err" | tail -22
  if cmp -s "$WORK/$mode.pool.ids" "$WORK/$mode.local.ids"; then echo "$mode: token ids identical"; else echo "$mode: TOKEN IDS DIFFER"; same=no; fi
done
echo "## cgroup peaks (RSS and page cache) and OOM kills"
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "coordinator: peak $(mb "$("$POOL" peak c)") MB, OOM kills $("$POOL" oom c)"
for i in $(seq 1 "$WORKERS"); do
  echo "worker $i: peak $(mb "$("$POOL" peak "$i")") MB, OOM kills $("$POOL" oom "$i")"
done
[ "$same" = yes ]
