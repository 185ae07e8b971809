#!/usr/bin/env bash
# One-thread ferry-worker daemons against one one-thread process (issue 24):
# tinyllama-1.1b's shape (random weights) per weight type, decode tok/s of
#   - one process (`ferry bench MODEL`),
#   - one worker holding the whole model right after it received its shard,
#   - the same worker restarted, its shard read back from its cache on disk
#     (the file's page cache dropped first, as after a reboot),
#   - chains of 2 and 3 workers (splits 11,11 and 8,7,7) that received their
#     shards over loopback.
# Unlike bench/pipeline.sh (workers load from --model-dir), every shard here
# arrives the way users' shards do: sent by the coordinator and written into
# the worker's cache. Each configuration runs right after a one-process run
# and its ratio is taken to that run; the table has medians over rounds.
#
#   bash bench/worker-vs-process.sh [TYPES...]   # default: f32 f16 q8_0 q4_0 q4_K tq2_0
#
# Environment: FERRY_BUILD (default build), WORK (default /tmp/ferry-bench-wvp), ROUNDS (default 3),
# GEN (decode tokens per run, default 32), PORT (first worker port, default 7481).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD:-$root/build}
ferry=$build/coordinator/ferry
worker=$build/worker/ferry-worker
work=${WORK:-/tmp/ferry-bench-wvp}
rounds=${ROUNDS:-3}
gen=${GEN:-32}
port=${PORT:-7481}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(f32 f16 q8_0 q4_0 q4_K tq2_0)
mkdir -p "$work/models"

declare -A pid_of=()
start_worker() {  # start_worker N: worker N on port+N with cache $work/cache-N
  "$worker" --listen "127.0.0.1:$((port + $1))" --threads 1 --cache-dir "$work/cache-$1" --log-level warn &
  pid_of[$1]=$!
  for _ in $(seq 50); do
    "$ferry" status --workers "127.0.0.1:$((port + $1))" >/dev/null 2>&1 && return
    sleep 0.1
  done
}
stop_worker() { kill "${pid_of[$1]}" 2>/dev/null || true; wait "${pid_of[$1]}" 2>/dev/null || true; unset "pid_of[$1]"; }
stop_all() { for n in "${!pid_of[@]}"; do stop_worker "$n"; done; }
trap stop_all EXIT

# The model's pages are dropped once: as `ferry synth` wrote them they stream
# up to 2x slower on some CPUs (docs/DESIGN.md, "Where the weights lie"), which
# would handicap the one process against workers whose shards are read back.
model_for() {
  local f="$work/models/tinyllama-1.1b-$1.gguf"
  [ -f "$f" ] || "$ferry" synth "$f" --preset tinyllama-1.1b --format gguf --type "$1" -q >&2
  dd if="$f" iflag=nocache count=0 status=none
  echo "$f"
}

# decode tok/s of one `ferry bench` run (GEN tokens after an 8-token prefill)
decode() {
  "$ferry" bench "$@" --threads 1 --prompt-tokens 8 --gen-tokens "$gen" --runs 1 --bandwidth-passes 0 \
    --json 2>/dev/null | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["decode_tok_s"])'
}
whole=(--split 22 --embedding-on-worker --head-on-worker)
drop_cache() { for f in "$work/cache-$1"/*/*.gguf; do dd if="$f" iflag=nocache count=0 status=none; done; }

echo "| type | 1 process tok/s | 1 worker, fresh shard | ratio | restarted | ratio | 2 workers | ratio | 3 workers | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for t in "${types[@]}"; do
  m=$(model_for "$t")
  rm -rf "$work"/cache-*
  for n in 2 3 4 5 6; do start_worker "$n"; done
  two="127.0.0.1:$((port + 2)),127.0.0.1:$((port + 3))"
  three="127.0.0.1:$((port + 4)),127.0.0.1:$((port + 5)),127.0.0.1:$((port + 6))"
  decode "$m" >/dev/null  # hash the model once, page it in
  decode "$m" --workers "$two" --split 11,11 --embedding-on-worker --head-on-worker >/dev/null  # send the chains' shards
  decode "$m" --workers "$three" --split 8,7,7 --embedding-on-worker --head-on-worker >/dev/null
  : > "$work/rounds-$t"
  for _ in $(seq "$rounds"); do
    # Each configuration is paired with a one-process run just before it, so a
    # ratio never spans more than two adjacent runs of this noisy machine.
    s1=$(decode "$m")
    rm -rf "$work/cache-1"
    start_worker 1
    fresh=$(decode "$m" --workers "127.0.0.1:$((port + 1))" "${whole[@]}")
    stop_worker 1
    drop_cache 1
    start_worker 1
    s2=$(decode "$m")
    restarted=$(decode "$m" --workers "127.0.0.1:$((port + 1))" "${whole[@]}")
    stop_worker 1
    s3=$(decode "$m")
    p2=$(decode "$m" --workers "$two" --split 11,11 --embedding-on-worker --head-on-worker)
    s4=$(decode "$m")
    p3=$(decode "$m" --workers "$three" --split 8,7,7 --embedding-on-worker --head-on-worker)
    echo "$s1 $fresh $s2 $restarted $s3 $p2 $s4 $p3" >> "$work/rounds-$t"
  done
  stop_all
  rm -rf "$work"/cache-*
  python3 - "$t" "$work/rounds-$t" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
single = statistics.median(v for r in rows for v in r[0::2])
cells = ["%.2f" % single]
for i in range(4):
    cells.append("%.2f | %.2f" % (statistics.median(r[2 * i + 1] for r in rows),
                                  statistics.median(r[2 * i + 1] / r[2 * i] for r in rows)))
print("| %s | %s |" % (sys.argv[1], " | ".join(cells)))
EOF
done
