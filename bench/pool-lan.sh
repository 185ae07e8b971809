#!/usr/bin/env bash
# A small LAN of capped machines on one host, for the "pool no single machine
# could replace" benchmark and its shorter test (issue 6):
#   - network namespace ferry-lan holds a bridge; each host (ferry-c, the
#     coordinator, and ferry-w1..N, the workers) is its own namespace joined to
#     the bridge by a veth pair, its side capped by tc tbf at RATE;
#   - each worker runs in its own memory cgroup capped at MEM (cgroup v1 or v2,
#     whichever the machine has).
# Nothing is configured in the root namespace: all traffic stays between the
# namespaces this script made.
#
#   bench/pool-lan.sh up N [RATE=100mbit]      make the LAN (hosts 10.77.0.10 coordinator, 10.77.0.11.. workers)
#   bench/pool-lan.sh worker I MEM ARGS...     start ferry-worker I (1-based) in its namespace and cgroup
#   bench/pool-lan.sh coord CMD...             run a command on the coordinator host
#   bench/pool-lan.sh peak I                   peak memory of worker I's cgroup, bytes
#   bench/pool-lan.sh oom I                    OOM kills in worker I's cgroup
#   bench/pool-lan.sh down                     stop workers, remove namespaces and cgroups
set -euo pipefail
cd "$(dirname "$0")/.."
WORKER=${FERRY_WORKER:-$PWD/build/worker/ferry-worker}
net=10.77.0
cg_v1=/sys/fs/cgroup/memory
cg_v2=/sys/fs/cgroup
[ -d /sys/fs/cgroup/unified ] && [ -d $cg_v1 ] && cg_v2=""   # hybrid: use v1 memory
[ -f /sys/fs/cgroup/cgroup.controllers ] && cg_v1=""

cgroup_dir() { if [ -n "$cg_v1" ]; then echo "$cg_v1/ferry-w$1"; else echo "$cg_v2/ferry-w$1"; fi; }

host_up() {  # name ip rate
  ip netns add "$1"
  ip link add "$1-l" type veth peer name eth0 netns "$1"
  ip link set "$1-l" netns ferry-lan
  ip -n ferry-lan link set "$1-l" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$1" link set lo up
  tc -n "$1" qdisc add dev eth0 root tbf rate "$3" burst 64kb latency 100ms
  tc -n ferry-lan qdisc add dev "$1-l" root tbf rate "$3" burst 64kb latency 100ms
}

case "${1:-}" in
  up)
    n=${2:?number of workers}; rate=${3:-100mbit}
    "$0" down >/dev/null 2>&1 || true
    ip netns add ferry-lan
    ip -n ferry-lan link add br0 type bridge
    ip -n ferry-lan link set br0 up
    host_up ferry-c "$net.10" "$rate"
    for i in $(seq 1 "$n"); do host_up "ferry-w$i" "$net.$((10 + i))" "$rate"; done
    echo "pool-lan: coordinator $net.10, workers $net.11-$net.$((10 + n)), links $rate"
    ;;
  worker)
    i=${2:?worker index}; mem=${3:?memory cap, e.g. 160M}; shift 3
    d=$(cgroup_dir "$i"); mkdir -p "$d"
    if [ -n "$cg_v1" ]; then
      echo "$mem" > "$d/memory.limit_in_bytes"
      echo "$mem" > "$d/memory.memsw.limit_in_bytes" 2>/dev/null || true
    else
      echo "$mem" > "$d/memory.max"; echo 0 > "$d/memory.swap.max" 2>/dev/null || true
    fi
    # The shell joins the cgroup, then becomes the worker inside the namespace.
    sh -c "echo \$\$ > $d/cgroup.procs && exec ip netns exec ferry-w$i $WORKER --listen $net.$((10 + i)):7070 $*" &
    echo $! > "/tmp/ferry-w$i.pid"
    ;;
  coord)
    shift; exec ip netns exec ferry-c "$@" ;;
  peak)
    d=$(cgroup_dir "${2:?}")
    if [ -n "$cg_v1" ]; then cat "$d/memory.max_usage_in_bytes"; else cat "$d/memory.peak" 2>/dev/null || echo 0; fi ;;
  oom)
    d=$(cgroup_dir "${2:?}")
    if [ -n "$cg_v1" ]; then awk '/oom_kill /{print $2}' "$d/memory.oom_control"; else awk '/oom_kill /{print $2}' "$d/memory.events"; fi ;;
  down)
    for f in /tmp/ferry-w*.pid; do [ -f "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }; done
    sleep 0.5
    for ns in $(ip netns list | awk '/^ferry-/{print $1}'); do
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns"
    done
    for d in ${cg_v1:-$cg_v2}/ferry-w*; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
    ;;
  *) sed -n '2,22p' "$0"; exit 2 ;;
esac
