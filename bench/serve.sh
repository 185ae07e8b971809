#!/usr/bin/env bash
# `ferry serve` under concurrent load (issue 10): aggregate generated tok/s
# and median time to first token at 1, 2, 4, 8 and 16 concurrent streams, on
# tinyllama-1.1b's shape (random weights, `ferry synth`), per weight type, for
#   single   one process (--threads 1, so it is one machine's core)
#   lo2      2 one-thread workers on loopback
#   lan4     4 one-thread workers in network namespaces on a 100 Mbit/s
#            bridge, each in a cgroup capped at CPU_PCT% of a core (four slow
#            PCs on one machine); the coordinator in its own namespace
# Each stream sends REQUESTS streamed completions of GEN tokens one after
# another (bench/serve_load.py); the ratio column is aggregate tok/s over the
# same configuration's one-stream figure, measured in the same round. With
# ROUNDS > 1 every round starts the configuration afresh and the table has
# the medians of the rounds (figures and ratios).
#
#   bash bench/serve.sh [TYPES...]        # default: q8_0 q4_0
#
# Environment: FERRY_BUILD (default build), WORK (default /tmp/ferry-bench-serve), MODES (default "single lo2 lan4"),
# STREAMS (default "1 2 4 8 16"), GEN (default 64), REQUESTS (default 2), CPU_PCT (default 40), RATE (default 100mbit),
# PORT (default 7581), ROUNDS (default 1). lan4 needs root (ip netns, tc, cgroups).
set -euo pipefail
# Workers on the namespaces' addresses need the cluster key (FERRY_KEY_FILE, read by every process) or --insecure.
no_key_flag=--insecure
[ -n "${FERRY_KEY_FILE:-}" ] && no_key_flag=
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD:-$root/build}
ferry=$build/coordinator/ferry
worker=$build/worker/ferry-worker
work=${WORK:-/tmp/ferry-bench-serve}
modes=${MODES:-single lo2 lan4}
streams=${STREAMS:-1 2 4 8 16}
gen=${GEN:-64}
requests=${REQUESTS:-2}
rounds=${ROUNDS:-1}
cpu_pct=${CPU_PCT:-40}
rate=${RATE:-100mbit}
port=${PORT:-7581}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q8_0 q4_0)
mkdir -p "$work/models"
P=fsb  # short: interface names (P-w1-l) must stay within 15 characters
NET=10.78.0

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  for ns in $(ip netns list 2>/dev/null | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for d in /sys/fs/cgroup/cpu/$P-* /sys/fs/cgroup/$P-*; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
}
trap cleanup EXIT

model_for() {
  local f="$work/models/tinyllama-1.1b-$1.gguf"
  [ -f "$f" ] || "$ferry" synth "$f" --preset tinyllama-1.1b --format gguf --type "$1" -q >&2
  # Pages as `ferry synth` wrote them stream up to 2x slower (docs/DESIGN.md, "The shard cache"): drop them, so
  # the one process reads its weights back the way workers read their received shards.
  dd if="$f" iflag=nocache count=0 status=none
  echo "$f"
}

wait_for() {  # wait_for LOG PATTERN: until the pattern is in the log (15 min: a first transfer at 100 Mbit/s)
  for _ in $(seq 9000); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "serve.sh: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

# cpu_cgroup NAME: a cgroup capped at cpu_pct% of one core; prints its procs file. The period is 5 ms:
# a quota only binds once a period's share is used, so with the default 100 ms a stage computing for
# 15 ms then waiting for the others would run at full speed; at 5 ms every burst runs at cpu_pct%,
# as on a slower CPU.
cpu_cgroup() {
  if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    mkdir -p "/sys/fs/cgroup/cpu/$1"
    echo 5000 > "/sys/fs/cgroup/cpu/$1/cpu.cfs_period_us"
    echo $((cpu_pct * 50)) > "/sys/fs/cgroup/cpu/$1/cpu.cfs_quota_us"
    echo "/sys/fs/cgroup/cpu/$1/cgroup.procs"
  else
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
    mkdir -p "/sys/fs/cgroup/$1"
    echo "$((cpu_pct * 50)) 5000" > "/sys/fs/cgroup/$1/cpu.max"
    echo "/sys/fs/cgroup/$1/cgroup.procs"
  fi
}

host_up() {  # name ip
  ip netns add "$1"
  ip link add "$1-l" type veth peer name eth0 netns "$1"
  ip link set "$1-l" netns "$P-lan"
  ip -n "$P-lan" link set "$1-l" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$1" link set lo up
  tc -n "$1" qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 100ms
  tc -n "$P-lan" qdisc add dev "$1-l" root tbf rate "$rate" burst 64kb latency 100ms
}

# start MODE MODEL: workers and the server; sets url and run_in (a command prefix for the load)
start() {
  local mode=$1 model=$2 log="$work/serve.log" workers="" split="" i
  run_in=()
  case $mode in
    single) ;;
    lo2)
      for i in 1 2; do
        "$worker" --listen "127.0.0.1:$((port + i))" --threads 1 --cache-dir "$work/cache-$i" --log-level warn \
          2>"$work/w$i.log" & pids+=($!)
        workers+="${workers:+,}127.0.0.1:$((port + i))"
      done
      split=11,11
      sleep 0.5 ;;
    lan4)
      ip netns add "$P-lan"; ip -n "$P-lan" link add br0 type bridge; ip -n "$P-lan" link set br0 up
      host_up "$P-c" "$NET.10"
      for i in 1 2 3 4; do
        host_up "$P-w$i" "$NET.$((10 + i))"
        local procs; procs=$(cpu_cgroup "$P-w$i")
        sh -c "echo \$\$ > $procs && exec ip netns exec $P-w$i $worker --listen $NET.$((10 + i)):7070 $no_key_flag --threads 1 --cache-dir $work/cache-lan-$i --log-level warn" \
          2>"$work/w$i.log" & pids+=($!)
        workers+="${workers:+,}$NET.$((10 + i)):7070"
      done
      split=6,6,5,5  # four equal stages
      run_in=(ip netns exec "$P-c")
      sleep 1 ;;
  esac
  local host=127.0.0.1
  [ "$mode" = lan4 ] && host=$NET.10
  "${run_in[@]}" "$ferry" serve "$model" --listen "$host:$port" --parallel 16 --threads 1 --log-level "${LOG_LEVEL:-warn}" \
    ${workers:+--workers "$workers" --split "$split" --embedding-on-worker --head-on-worker} 2>"$log" & pids+=($!)
  wait_for "$log" "serving "
  url="http://$host:$port"
}

raw="$work/rounds.txt"
: > "$raw"
for t in "${types[@]}"; do
  model=$(model_for "$t")
  for mode in $modes; do
    for round in $(seq "$rounds"); do
      dd if="$model" iflag=nocache count=0 status=none
      start "$mode" "$model"
      # A first request pages the weights in (and on capped workers slowly): not part of any figure.
      "${run_in[@]}" python3 "$root/bench/serve_load.py" --url "$url" --streams 1 --requests 1 --max-tokens 8 >/dev/null
      one=""
      for n in $streams; do
        r=$("${run_in[@]}" python3 "$root/bench/serve_load.py" --url "$url" --streams "$n" --requests "$requests" --max-tokens "$gen")
        read -r tps ttft fails < <(echo "$r" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["tok_s"], j["ttft_median_s"], j["failures"])')
        [ -n "$one" ] || one=$tps
        echo "$t $mode $n $tps $(python3 -c "print($tps / $one if $one > 0 else 0)") $ttft $fails" | tee -a "$raw" >&2
      done
      cleanup
    done
  done
done
# Medians over the rounds.
python3 - "$raw" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, mode, n, tps, ratio, ttft, fails = line.split()
    rows.setdefault((t, mode, int(n)), []).append((float(tps), float(ratio), float(ttft) if ttft != "None" else 0.0, int(fails)))
print("| type | mode | streams | aggregate tok/s | x one stream | TTFT median s | failures |")
print("|---|---|---:|---:|---:|---:|---:|")
for (t, mode, n), v in rows.items():
    med = lambda i: statistics.median(x[i] for x in v)
    print("| %s | %s | %d | %.1f | %.2f | %.2f | %d |" % (t, mode, n, med(0), med(1), med(2), sum(x[3] for x in v)))
PY
