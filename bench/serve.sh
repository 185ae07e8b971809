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
# same configuration's one-stream figure, measured in the same round.
#
#   bash bench/serve.sh [TYPES...]        # default: q8_0 q4_0
#
# Environment: FERRY_BUILD (default build), WORK (default /tmp/ferry-bench-serve), MODES (default "single lo2 lan4"),
# STREAMS (default "1 2 4 8 16"), GEN (default 64), REQUESTS (default 2), CPU_PCT (default 40), RATE (default 100mbit),
# PORT (default 7581). lan4 needs root (ip netns, tc, cgroups).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD:-$root/build}
ferry=$build/coordinator/ferry
worker=$build/worker/ferry-worker
work=${WORK:-/tmp/ferry-bench-serve}
modes=${MODES:-single lo2 lan4}
streams=${STREAMS:-1 2 4 8 16}
gen=${GEN:-64}
requests=${REQUESTS:-2}
cpu_pct=${CPU_PCT:-40}
rate=${RATE:-100mbit}
port=${PORT:-7581}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q8_0 q4_0)
mkdir -p "$work/models"
P=ferry-sbench
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
  echo "$f"
}

wait_for() {  # wait_for LOG PATTERN: until the pattern is in the log (60 s)
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "serve.sh: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

# cpu_cgroup NAME: a cgroup capped at cpu_pct% of one core; prints its procs file.
cpu_cgroup() {
  if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    mkdir -p "/sys/fs/cgroup/cpu/$1"
    echo 100000 > "/sys/fs/cgroup/cpu/$1/cpu.cfs_period_us"
    echo $((cpu_pct * 1000)) > "/sys/fs/cgroup/cpu/$1/cpu.cfs_quota_us"
    echo "/sys/fs/cgroup/cpu/$1/cgroup.procs"
  else
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
    mkdir -p "/sys/fs/cgroup/$1"
    echo "$((cpu_pct * 1000)) 100000" > "/sys/fs/cgroup/$1/cpu.max"
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
  local mode=$1 model=$2 log="$work/serve.log" workers="" i
  run_in=()
  case $mode in
    single) ;;
    lo2)
      for i in 1 2; do
        "$worker" --listen "127.0.0.1:$((port + i))" --threads 1 --cache-dir "$work/cache-$i" --log-level warn \
          2>"$work/w$i.log" & pids+=($!)
        workers+="${workers:+,}127.0.0.1:$((port + i))"
      done
      sleep 0.5 ;;
    lan4)
      ip netns add "$P-lan"; ip -n "$P-lan" link add br0 type bridge; ip -n "$P-lan" link set br0 up
      host_up "$P-c" "$NET.10"
      for i in 1 2 3 4; do
        host_up "$P-w$i" "$NET.$((10 + i))"
        local procs; procs=$(cpu_cgroup "$P-w$i")
        sh -c "echo \$\$ > $procs && exec ip netns exec $P-w$i $worker --listen $NET.$((10 + i)):7070 --threads 1 --cache-dir $work/cache-lan-$i --log-level warn" \
          2>"$work/w$i.log" & pids+=($!)
        workers+="${workers:+,}$NET.$((10 + i)):7070"
      done
      run_in=(ip netns exec "$P-c")
      sleep 1 ;;
  esac
  local host=127.0.0.1
  [ "$mode" = lan4 ] && host=$NET.10
  "${run_in[@]}" "$ferry" serve "$model" --listen "$host:$port" --parallel 16 --threads 1 --log-level "${LOG_LEVEL:-warn}" \
    ${workers:+--workers "$workers"} 2>"$log" & pids+=($!)
  wait_for "$log" "serving "
  url="http://$host:$port"
}

echo "| type | mode | streams | aggregate tok/s | x one stream | TTFT median s | failures |"
echo "|---|---|---:|---:|---:|---:|---:|"
for t in "${types[@]}"; do
  model=$(model_for "$t")
  for mode in $modes; do
    start "$mode" "$model"
    one=""
    for n in $streams; do
      r=$("${run_in[@]}" python3 "$root/bench/serve_load.py" --url "$url" --streams "$n" --requests "$requests" --max-tokens "$gen")
      tps=$(echo "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tok_s"])')
      ttft=$(echo "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ttft_median_s"])')
      fails=$(echo "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["failures"])')
      [ -n "$one" ] || one=$tps
      ratio=$(python3 -c "print('%.2f' % ($tps / $one if $one > 0 else 0))")
      echo "| $t | $mode | $n | $tps | $ratio | $ttft | $fails |"
    done
    cleanup
  done
done
