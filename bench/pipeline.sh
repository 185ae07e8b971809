#!/usr/bin/env bash
# The pipeline figures of docs/BENCHMARKS.md (issue 4): tinyllama-1.1b's shape
# (random weights) in f32, Q8_0 and Q4_0, decoded by one 1-thread process and
# by chains of 2 and 3 one-thread ferry-worker daemons on loopback. For one
# stream the stages run one after another, so the fair baseline of a chain of
# 1-thread workers is a 1-thread process; the ratio is pipeline / single.
#
#   bash bench/pipeline.sh [TYPES...]      # default: f32 q8_0 q4_0
#
# Every round runs the single process, then 2 workers, then 3 workers back to
# back (so a ratio compares runs under the same load), ROUNDS times; the
# splits are forced (11,11 and 8,7,7: the planner would otherwise leave out a
# worker that does not speed up a single stream), embedding and head on the
# workers so only token ids reach the coordinator; the
# figures are medians over the rounds. The workers load their layers from
# --model-dir (the same file), so no shard crosses loopback and nothing fills
# the disk; shard transfer over a real link is measured by bench/pool-lan.sh.
#
# Environment: FERRY_BUILD (default build), WORK (default /tmp/ferry-bench), ROUNDS (default 5),
# GEN (decode tokens per run, default 32), PORT (first worker port, default 7471).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD:-$root/build}
ferry=$build/coordinator/ferry
worker=$build/worker/ferry-worker
work=${WORK:-/tmp/ferry-bench}
rounds=${ROUNDS:-5}
gen=${GEN:-32}
port=${PORT:-7471}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(f32 q8_0 q4_0)
mkdir -p "$work/models"

pids=()
stop_workers() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop_workers EXIT

model_for() {
  local f="$work/models/tinyllama-1.1b-$1.gguf"
  [ -f "$f" ] || "$ferry" synth "$f" --preset tinyllama-1.1b --format gguf --type "$1" -q >&2
  echo "$f"
}

# decode tok/s of one `ferry bench` run (1 run of GEN tokens after a 64-token prefill)
decode() {
  "$ferry" bench "$@" --threads 1 --prompt-tokens 64 --gen-tokens "$gen" --runs 1 --bandwidth-passes 0 \
    --json 2>/dev/null | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["decode_tok_s"])'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| type | 1 process tok/s | 2 workers tok/s | ratio | 3 workers tok/s | ratio |"
echo "|---|---:|---:|---:|---:|---:|"
for t in "${types[@]}"; do
  m=$(model_for "$t")
  for i in 1 2 3; do
    "$worker" --listen "127.0.0.1:$((port + i))" --threads 1 --model-dir "$work/models" \
      --cache-dir "$work/cache-$i" --log-level warn &
    pids+=($!)
  done
  sleep 1
  two="127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
  three="$two,127.0.0.1:$((port + 3))"
  decode "$m" --workers "$three" --split 8,7,7 >/dev/null  # warm: hash the file once, page it in
  : > "$work/rounds-$t"
  for _ in $(seq "$rounds"); do
    s=$(decode "$m")
    p2=$(decode "$m" --workers "$two" --split 11,11 --embedding-on-worker --head-on-worker)
    p3=$(decode "$m" --workers "$three" --split 8,7,7 --embedding-on-worker --head-on-worker)
    echo "$s $p2 $p3" >> "$work/rounds-$t"
  done
  stop_workers
  python3 - "$t" "$work/rounds-$t" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
s, p2, p3 = (statistics.median(c) for c in zip(*rows))
r2 = statistics.median(r[1] / r[0] for r in rows)
r3 = statistics.median(r[2] / r[0] for r in rows)
print("| %s | %.2f | %.2f | %.0f%% | %.2f | %.0f%% |" % (sys.argv[1], s, p2, 100 * r2, p3, 100 * r3))
EOF
done
