#!/usr/bin/env bash
# "A pool no single machine could replace" (issue 6), built on one host:
#   - network namespace $P-lan holds a bridge; each host ($P-c, the
#     coordinator, and $P-w1..N, the workers) is its own namespace joined to
#     the bridge by a veth pair whose two ends are capped by tc tbf at RATE;
#   - each worker runs in its own memory cgroup capped at MEM (cgroup v1's
#     memory controller or cgroup v2, whichever the machine has), with
#     ferry-worker --memory MEM, so the plan and the kernel agree on the budget.
# Nothing is configured in the root namespace: all traffic stays between the
# namespaces this script made. Needs root, iproute2 (ip netns, tc).
#
#   bench/pool-lan.sh bench [MODEL]            the whole benchmark (below); cleans up even on failure
#   bench/pool-lan.sh up N [RATE=100mbit]      make the LAN (coordinator $NET.10, workers $NET.11..)
#   bench/pool-lan.sh worker I MEM ARGS...     start ferry-worker I (1-based) in its namespace and cgroup
#   bench/pool-lan.sh coord CMD...             run a command on the coordinator host
#   bench/pool-lan.sh coordmem MEM CMD...      the same inside a memory cgroup capped at MEM (peak c, oom c)
#   bench/pool-lan.sh peak I                   peak memory of worker I's cgroup, bytes (RSS and page cache)
#   bench/pool-lan.sh oom I                    OOM kills in worker I's cgroup
#   bench/pool-lan.sh down                     stop the workers, remove the namespaces and cgroups
#   bench/pool-lan.sh check                    exit 0 if this machine allows namespaces and memory cgroups
#
# `bench` makes MODEL if it does not exist (`ferry synth --preset stories110m`, f32, 438 MB: twelve
# 28 MB layers and a 98 MB tied embedding table), starts N workers capped at MEM, prints what
# `ferry plan` predicts, runs `ferry run` with STEPS tokens from the coordinator host, reads every
# worker's peak RSS (`ferry status --json`), its cgroup's peak and OOM kills, then runs the same model
# in one uncapped process for comparison, and prints a markdown table.
#
# Environment: FERRY_BUILD (build dir with coordinator/ferry and worker/ferry-worker; default build;
# FERRY_BIN and FERRY_WORKER_BIN name the binaries directly),
# FERRY_POOL_PREFIX (names; default ferry-pool), FERRY_POOL_NET (default 10.77.0), and for bench:
# WORKERS (4), MEM (128M), RATE (100mbit), CTX (1024), STEPS (1000), KV (f32), THREADS (1), REPEAT (50:
# the prompt is "Once upon a time" that many times, 851 tokens with the synthetic tokenizer, so the
# prefill is the large request the plan reserves memory for), EXTRA (more ferry run flags), WORK (a
# directory for models and caches; default /tmp/ferry-pool-bench).
set -euo pipefail
# Workers on the namespaces' addresses need the cluster key (FERRY_KEY_FILE, read by every process) or --insecure.
no_key_flag=--insecure
[ -n "${FERRY_KEY_FILE:-}" ] && no_key_flag=
cd "$(dirname "$0")/.."
BUILD=${FERRY_BUILD:-$PWD/build}
FERRY=${FERRY_BIN:-$BUILD/coordinator/ferry}
WORKER=${FERRY_WORKER_BIN:-$BUILD/worker/ferry-worker}
P=${FERRY_POOL_PREFIX:-ferry-pool}
NET=${FERRY_POOL_NET:-10.77.0}
RUN_DIR=/tmp/$P.run   # pid files

# cgroup flavour: v1's memory controller if mounted, else v2.
if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then CG=v1; CG_ROOT=/sys/fs/cgroup/memory
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then CG=v2; CG_ROOT=/sys/fs/cgroup
else CG=none; CG_ROOT=; fi
cgroup_dir() { echo "$CG_ROOT/$P-w$1"; }

die() { echo "pool-lan: $*" >&2; exit 1; }

host_up() {  # name ip rate
  ip netns add "$1"
  ip link add "$1-l" type veth peer name eth0 netns "$1"
  ip link set "$1-l" netns "$P-lan"
  ip -n "$P-lan" link set "$1-l" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$1" link set lo up
  # Both directions: the host's egress and the bridge port's egress (the host's ingress).
  tc -n "$1" qdisc add dev eth0 root tbf rate "$3" burst 64kb latency 100ms
  tc -n "$P-lan" qdisc add dev "$1-l" root tbf rate "$3" burst 64kb latency 100ms
}

lan_up() {  # n rate
  "$0" down >/dev/null 2>&1 || true
  mkdir -p "$RUN_DIR"
  ip netns add "$P-lan"
  ip -n "$P-lan" link add br0 type bridge
  ip -n "$P-lan" link set br0 up
  host_up "$P-c" "$NET.10" "$2"
  for i in $(seq 1 "$1"); do host_up "$P-w$i" "$NET.$((10 + i))" "$2"; done
}

cgroup_make() {  # i mem
  local d; d=$(cgroup_dir "$1")
  [ "$CG" = none ] && die "no memory cgroup controller (neither /sys/fs/cgroup/memory nor cgroup v2 with memory)"
  if [ "$CG" = v2 ] && ! grep -qw memory "$CG_ROOT/cgroup.subtree_control"; then
    echo +memory > "$CG_ROOT/cgroup.subtree_control"
  fi
  mkdir -p "$d"
  if [ "$CG" = v1 ]; then
    echo "$2" > "$d/memory.limit_in_bytes"
    [ -f "$d/memory.memsw.limit_in_bytes" ] && echo "$2" > "$d/memory.memsw.limit_in_bytes" 2>/dev/null || true
  else
    echo "$2" > "$d/memory.max"
    [ -f "$d/memory.swap.max" ] && echo 0 > "$d/memory.swap.max" || true
  fi
}

worker_start() {  # i mem args...
  local i=$1 mem=$2; shift 2
  mkdir -p "$RUN_DIR"
  cgroup_make "$i" "$mem"
  local d; d=$(cgroup_dir "$i")
  # The shell joins the cgroup, then becomes the worker inside the namespace (ip netns exec execs).
  sh -c "echo \$\$ > $d/cgroup.procs && exec ip netns exec $P-w$i $WORKER --listen $NET.$((10 + i)):7070 --memory $mem $no_key_flag $*" \
    > "$RUN_DIR/w$i.log" 2>&1 &
  echo $! > "$RUN_DIR/w$i.pid"
  for _ in $(seq 1 150); do
    grep -q "listening on port" "$RUN_DIR/w$i.log" 2>/dev/null && return 0
    kill -0 "$(cat "$RUN_DIR/w$i.pid")" 2>/dev/null || die "worker $i exited at start: $(cat "$RUN_DIR/w$i.log")"
    sleep 0.1
  done
  die "worker $i did not start listening: $(cat "$RUN_DIR/w$i.log")"
}

cgroup_peak() {
  local d; d=$(cgroup_dir "$1")
  if [ "$CG" = v1 ]; then cat "$d/memory.max_usage_in_bytes"; else cat "$d/memory.peak" 2>/dev/null || echo 0; fi
}

cgroup_oom() {
  local d; d=$(cgroup_dir "$1")
  if [ "$CG" = v1 ]; then awk '/^oom_kill /{print $2; f=1} END{if(!f) print 0}' "$d/memory.oom_control"
  else awk '/^oom_kill /{print $2; f=1} END{if(!f) print 0}' "$d/memory.events"; fi
}

lan_down() {
  for f in "$RUN_DIR"/w*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 0.3
  for f in "$RUN_DIR"/w*.pid; do
    [ -f "$f" ] || continue
    kill -9 "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  for ns in $(ip netns list 2>/dev/null | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ -n "$CG_ROOT" ]; then
    for d in "$CG_ROOT/$P"-w*; do
      [ -d "$d" ] || continue
      for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
    done
  fi
  rm -rf "$RUN_DIR"
}

check() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces and cgroups)"
  command -v tc >/dev/null || die "needs tc (iproute2)"
  [ "$CG" != none ] || die "no memory cgroup controller"
  local t="$P-chk$$"
  ip netns add "$t" 2>/dev/null || die "cannot create network namespaces (ip netns add)"
  ip netns del "$t"
  mkdir "$CG_ROOT/$t" 2>/dev/null || die "cannot create memory cgroups under $CG_ROOT"
  rmdir "$CG_ROOT/$t"
}

bench() {
  local model=${1:-} workers=${WORKERS:-4} mem=${MEM:-128M} rate=${RATE:-100mbit} ctx=${CTX:-1024}
  local steps=${STEPS:-1000} kv=${KV:-f32} threads=${THREADS:-1} work=${WORK:-/tmp/ferry-pool-bench}
  local prompt="Once upon a time" r
  for ((r = 1; r < ${REPEAT:-50}; ++r)); do prompt+=" Once upon a time"; done
  check
  [ -x "$FERRY" ] && [ -x "$WORKER" ] || die "build first: $FERRY and $WORKER (FERRY_BUILD=...)"
  mkdir -p "$work"
  if [ -z "$model" ]; then
    model=$work/stories110m-f32.bin
    [ -f "$model" ] || "$FERRY" synth "$model" --preset stories110m --tokenizer-out "$work/tok32000.bin" -q
  fi
  local tok=()
  [ -f "$work/tok32000.bin" ] && [[ "$model" == *.bin ]] && tok=(-z "$work/tok32000.bin")
  trap lan_down EXIT
  lan_up "$workers" "$rate"
  local list=""
  for i in $(seq 1 "$workers"); do
    rm -rf "$work/cache-w$i"
    worker_start "$i" "$mem" --threads "$threads" --cache-dir "$work/cache-w$i"
    list+="${list:+,}$NET.$((10 + i)):7070"
  done
  echo "## ferry plan (predicted)"
  ip netns exec "$P-c" "$FERRY" plan "$model" --workers "$list" --ctx "$ctx" --kv-type "$kv"
  echo "## ferry run across the pool"
  local out="$work/run.err"
  local t0; t0=$(date +%s.%N)
  ip netns exec "$P-c" "$FERRY" run "$model" "${tok[@]}" --workers "$list" --ctx "$ctx" --kv-type "$kv" \
    -n "$steps" -t 0 -i "$prompt" --threads "$threads" ${EXTRA:-} > "$work/run.out" 2> "$out"
  local t1; t1=$(date +%s.%N)
  cat "$out"
  ip netns exec "$P-c" "$FERRY" status --workers "$list" --json > "$work/status.json"
  echo "## the same model in one uncapped process"
  "$FERRY" run "$model" "${tok[@]}" --ctx "$ctx" --kv-type "$kv" -n "$steps" -t 0 -i "$prompt" \
    --threads "$threads" > "$work/local.out" 2> "$work/local.err"
  cat "$work/local.err"
  local same=no
  cmp -s "$work/run.out" "$work/local.out" && same=yes
  local alive=0
  for i in $(seq 1 "$workers"); do kill -0 "$(cat "$RUN_DIR/w$i.pid")" 2>/dev/null && alive=$((alive + 1)); done
  local peaks="" ooms=""
  for i in $(seq 1 "$workers"); do peaks+="$(cgroup_peak "$i") "; ooms+="$(cgroup_oom "$i") "; done
  python3 - "$out" "$work/local.err" "$work/status.json" "$mem" "$same" "$alive" "$workers" "$rate" "$CG" \
    "$peaks" "$ooms" "$(basename "$model")" "$ctx" "$kv" "$t0" "$t1" <<'EOF'
import json, re, sys
run_err, local_err, status_path, mem, same, alive, n, rate, cg, peaks, ooms, model, ctx, kv, t0, t1 = sys.argv[1:17]
run, local = open(run_err).read(), open(local_err).read()
status = json.load(open(status_path))
peaks, ooms = [int(x) for x in peaks.split()], [int(x) for x in ooms.split()]
mb = lambda b: b / 1048576
# The plan `ferry run` printed: stage rows "N  node  holds...  weights KV other total budget use ms".
plan = {}
for line in run.splitlines():
    m = re.match(r"^\s*(\d+)\s+(\S+)\s+(.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\S+)\s+([\d.]+)\s*$", line)
    if m: plan[m.group(2)] = (m.group(3), float(m.group(7)), float(m.group(10)))
# The node table at the end of the run: node, layers, weight MB, RSS MB, peak MB, tokens, compute ms,
# decode ms, plan ms, net ms, plan net, sent B, recv B.
table = {}
for line in run.splitlines():
    f = line.split()
    if len(f) == 13 and f[0] in plan: table[f[0]] = (f[7], f[9])
def decode(text):
    m = re.search(r"decode: ([\d.]+) tok/s end to end, ([\d.]+) ms per token = compute ([\d.]+) ms \(([\d.]+)%\) \+ network and overhead ([\d.]+) ms \(([\d.]+)%\)", text)
    return m.groups() if m else None
def local_decode(text):
    m = re.search(r"decode: (\d+) tokens, ([\d.]+) tok/s", text)
    return m.group(2) if m else "?"
d = decode(run)
pred = re.search(r"predicted: ([\d.]+) ms per token", run)
print()
print(f"### {model}, {n} workers capped at {mem} ({cg} memory cgroups), links {rate}, ctx {ctx}, KV {kv}")
print()
print("| node | holds | plan MB | peak RSS MB (VmHWM) | plan error | cgroup peak MB | OOM kills | plan ms/token | decode compute ms | network ms into it |")
print("|---|---|---|---|---|---|---|---|---|---|")
for i, w in enumerate(status):
    addr = w["address"]
    holds, total, ms = plan.get(addr, ("left out", 0.0, 0.0))
    peak = mb(w.get("peak_rss", 0))
    err = f"{100 * (total - peak) / peak:+.1f}%" if total and peak else "-"
    compute, net = table.get(addr, ("-", "-"))
    print(f"| {addr} | {holds} | {total:.1f} | {peak:.1f} | {err} | {mb(peaks[i]):.1f} | {ooms[i]} | {ms:.2f} | {compute} | {net} |")
print()
if d:
    print(f"pool: decode {d[0]} tok/s end to end, {d[1]} ms per token = compute {d[2]} ms ({d[3]}%) + network and overhead {d[4]} ms ({d[5]}%)")
if pred: print(f"plan predicted {pred.group(1)} ms per token")
print(f"one uncapped process: decode {local_decode(local)} tok/s")
pre = re.search(r"prefill: (\d+) tokens, ([\d.]+) tok/s", run)
pre_local = re.search(r"prefill: (\d+) tokens, ([\d.]+) tok/s", local)
if pre and pre_local: print(f"prefill of {pre.group(1)} tokens: pool {pre.group(2)} tok/s, one process {pre_local.group(2)} tok/s")
print(f"output identical to the single process: {same}; workers alive after the run: {alive}/{n}; OOM kills: {sum(ooms)}")
print(f"wall time of ferry run (connect, plan, shards over {rate}, prefill, {n and ''}decode): {float(t1) - float(t0):.1f} s")
EOF
}

case "${1:-}" in
  up) lan_up "${2:?number of workers}" "${3:-100mbit}"
      echo "pool-lan: coordinator $NET.10, workers $NET.11-$NET.$((10 + $2)), links ${3:-100mbit}" ;;
  worker) i=${2:?worker index}; mem=${3:?memory cap, e.g. 160M}; shift 3; worker_start "$i" "$mem" "$@" ;;
  coord) shift; exec ip netns exec "$P-c" "$@" ;;
  coordmem) mem=${2:?memory cap, e.g. 128M}; shift 2; cgroup_make c "$mem"
      # The coordinator in its own memory cgroup too (peak c / oom c read it).
      exec sh -c 'echo $$ > "$1/cgroup.procs" && ns=$2 && shift 2 && exec ip netns exec "$ns" "$@"' sh "$(cgroup_dir c)" "$P-c" "$@" ;;
  peak) cgroup_peak "${2:?}" ;;
  oom) cgroup_oom "${2:?}" ;;
  down) lan_down ;;
  check) check ;;
  bench) shift; bench "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
