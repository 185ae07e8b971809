#!/usr/bin/env bash
# The single-process figures of docs/BENCHMARKS.md: prefill and decode tok/s,
# weight bytes streamed per second and their share of the memory bandwidth the
# same command measures, for stories260K (real) and the stories110m and
# tinyllama-1.1b shapes (random weights from `ferry synth`), at 1 and 2
# threads, with the machine idle and with a busy loop pinned to core 1.
#
#   bash bench/single-node.sh [MODELS...]     # default: stories260K stories110m tinyllama-1.1b
#
# Environment: FERRY (default build/coordinator/ferry), WORK (default /tmp/ferry-bench: synthetic models,
# 4.4 GB for tinyllama f32), RUNS (default 5), SHARED (default ../shared).
# Prints one markdown row per case: model | threads | load | prefill tok/s | decode tok/s | weight GB/s |
# bandwidth GB/s | share (median of the runs' own ratios).
# Then, for run.c's comparison, `ferry run` of stories260K for 256 steps: the decode tok/s it prints, median of RUNS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ferry=${FERRY:-$root/build/coordinator/ferry}
work=${WORK:-/tmp/ferry-bench}
runs=${RUNS:-5}
shared=${SHARED:-$root/../shared}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(stories260K stories110m tinyllama-1.1b)
mkdir -p "$work"

busy_pid=""
stop_busy() { [ -z "$busy_pid" ] || kill "$busy_pid" 2>/dev/null || true; busy_pid=""; }
trap stop_busy EXIT
start_busy() { taskset -c 1 sh -c 'while :; do :; done' & busy_pid=$!; sleep 0.5; }

model_file() {
  case "$1" in
    stories260K) echo "$shared/models/stories260K.bin" ;;
    *) local f="$work/$1-f32.bin"
       [ -f "$f" ] || "$ferry" synth "$f" --preset "$1" -q >&2
       echo "$f" ;;
  esac
}

row() {  # model threads load
  local file; file=$(model_file "$1")
  local gen=32; [ "$1" = stories260K ] && gen=128
  "$ferry" bench "$file" --threads "$2" --prompt-tokens 64 --gen-tokens "$gen" --runs "$runs" \
    --bandwidth-passes 2 --bandwidth-gib 1 --json 2>/dev/null |
  python3 -c '
import json, sys
j = json.load(sys.stdin)
print("| %s | %s | %s | %.1f | %.2f | %.1f | %.1f | %.0f%% |" % (sys.argv[1], sys.argv[2], sys.argv[3],
      j["prefill_tok_s"], j["decode_tok_s"], j["weight_bytes_per_s"] / 1e9, j["bandwidth_bytes_per_s"] / 1e9,
      100 * j["decode_share_of_bandwidth"]))' "$1" "$2" "$3"
}

echo "| model | threads | other core | prefill tok/s | decode tok/s | weight GB/s | bandwidth GB/s | share |"
echo "|---|---:|---|---:|---:|---:|---:|---:|"
for m in "${models[@]}"; do
  for load in idle busy; do
    [ "$load" = busy ] && start_busy
    for t in 1 2; do row "$m" "$t" "$load"; done
    stop_busy
  done
done

echo
echo "stories260K, ferry run -n 256 (run.c's loop), decode tok/s, median of $runs:"
for load in idle busy; do
  [ "$load" = busy ] && start_busy
  for t in 1 2; do
    for _ in $(seq "$runs"); do
      "$ferry" run "$shared/models/stories260K.bin" -z "$shared/models/tok512.bin" -t 0 -n 256 --threads "$t" 2>&1 >/dev/null |
        sed -n 's/.*decode: [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p'
    done | sort -n | awk -v t="$t" -v l="$load" '{a[NR]=$1} END {printf "  %s threads, other core %s: %.0f tok/s\n", t, l, a[int((NR+1)/2)]}'
  done
  stop_busy
done
