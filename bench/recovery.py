#!/usr/bin/env python3
"""What a recovery from a killed worker costs (issue 12), phase by phase.

stories110m's shape (random weights, `ferry synth`, f32, 438 MB) over three
one-thread workers with --split 4,4,4; mid-generation (the middle worker has
processed KILL_AT positions) the middle worker is SIGKILLed. `ferry run --json`
reports the recovery's phases: detection (from the last answer to the
failure), re-plan (connect, measure, plan, assign), shard transfer and
replay. Cases:

  spare, cold     a fourth worker (--spare) with an empty cache takes over
  spare, cached   the same spare after it held the middle range once
  survivors       no spare: the two survivors merge the layers

each on loopback (`lo`) and, as root, over a 100 Mbit/s LAN of network
namespaces (`lan`, bench/pool-lan.sh: coordinator and workers each in their
own namespace, tc tbf on every link). Every run's text is compared with an
uninterrupted run's. Prints a markdown table of medians over ROUNDS.

  python3 bench/recovery.py                 # both modes
  MODES=lo ROUNDS=1 python3 bench/recovery.py

Environment: FERRY_BUILD (default build), WORK (default /tmp/ferry-bench-recovery), MODES ("lo lan"),
ROUNDS (3), STEPS (600 tokens per run), KILL_AT (300 positions), RATE (100mbit), PORT (7681).
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("FERRY_BUILD", os.path.join(ROOT, "build"))
FERRY = os.path.join(BUILD, "coordinator", "ferry")
WORKER = os.path.join(BUILD, "worker", "ferry-worker")
WORK = os.environ.get("WORK", "/tmp/ferry-bench-recovery")
MODES = os.environ.get("MODES", "lo lan").split()
ROUNDS = int(os.environ.get("ROUNDS", "3"))
STEPS = os.environ.get("STEPS", "600")
KILL_AT = int(os.environ.get("KILL_AT", "300"))
RATE = os.environ.get("RATE", "100mbit")
PORT = int(os.environ.get("PORT", "7681"))
POOL = os.path.join(ROOT, "bench", "pool-lan.sh")
POOL_ENV = dict(os.environ, FERRY_POOL_PREFIX="fbr", FERRY_POOL_NET="10.79.0", FERRY_BUILD=BUILD)
MODEL = os.path.join(WORK, "stories110m-f32.bin")
TOKENIZER = os.path.join(WORK, "tok32000.bin")
SAMPLING = ["-n", STEPS, "-t", "0.8", "-p", "0.9", "-s", "7", "--threads", "1"]


class Lo:
    """Workers on 127.0.0.1, the coordinator in this namespace."""
    name = "lo"

    def __init__(self):
        self.procs = {}

    def address(self, i):
        return "127.0.0.1:%d" % (PORT + i)

    def start(self, i, cache):
        log = open(os.path.join(WORK, "w%d.log" % i), "w")
        self.procs[i] = subprocess.Popen([WORKER, "--listen", self.address(i), "--threads", "1", "--cache-dir", cache,
                                          "--log-level", "warn"], stdout=log, stderr=log)
        wait_listening(self, i)

    def kill(self, i, sig=signal.SIGKILL):
        p = self.procs.pop(i, None)
        if p:
            p.send_signal(sig)
            p.wait()

    def pid(self, i):
        return self.procs[i].pid

    def coord(self, argv):
        return argv

    def stop_workers(self):
        for i in list(self.procs):
            self.kill(i, signal.SIGTERM)

    def stop(self):
        self.stop_workers()


class Lan(Lo):
    """bench/pool-lan.sh: host fbr-c is the coordinator, fbr-w1..4 the workers, RATE on every link."""
    name = "lan"

    def __init__(self):
        super().__init__()
        subprocess.run(["bash", POOL, "up", "4", RATE], check=True, env=POOL_ENV, stdout=subprocess.DEVNULL)

    def address(self, i):
        return "10.79.0.%d:7070" % (10 + i)

    def start(self, i, cache):
        # info level: pool-lan.sh waits for the "listening on port" line
        subprocess.run(["bash", POOL, "worker", str(i), "1G", "--threads", "1", "--cache-dir", cache],
                       check=True, env=POOL_ENV, stdout=subprocess.DEVNULL)

    def pid(self, i):
        out = subprocess.run(["ip", "netns", "pids", "fbr-w%d" % i], capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else None

    def kill(self, i, sig=signal.SIGKILL):
        pid = self.pid(i)
        if pid:
            os.kill(pid, sig)
            time.sleep(0.2)

    def coord(self, argv):
        return ["ip", "netns", "exec", "fbr-c"] + argv

    def stop_workers(self):
        for i in (1, 2, 3, 4):
            self.kill(i, signal.SIGTERM)

    def stop(self):
        subprocess.run(["bash", POOL, "down"], env=POOL_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def status(net, i):
    r = subprocess.run(net.coord([FERRY, "status", "--workers", net.address(i), "--json"]), capture_output=True,
                       text=True)
    return json.loads(r.stdout)[0] if r.returncode == 0 else {}


def wait_listening(net, i):
    for _ in range(100):
        if status(net, i).get("uptime_s") is not None:
            return
        time.sleep(0.1)
    sys.exit("worker %d did not start" % i)


def run(net, workers, extra, name, kill=None):
    """`ferry run` over `workers`; kill=i SIGKILLs worker i once it has processed KILL_AT positions."""
    js = os.path.join(WORK, name + ".json")
    argv = net.coord([FERRY, "run", MODEL, "-z", TOKENIZER, "--workers", ",".join(net.address(i) for i in workers),
                      "--split", "4,4,4", "--json", js, "--log-level", "warn"] + SAMPLING + extra)
    base = status(net, kill).get("tokens", 0) if kill is not None else 0  # positions since the worker started
    out = open(os.path.join(WORK, name + ".out"), "w")
    err = open(os.path.join(WORK, name + ".err"), "w")
    p = subprocess.Popen(argv, stdout=out, stderr=err)
    if kill is not None:
        while p.poll() is None and status(net, kill).get("tokens", 0) < base + KILL_AT:
            time.sleep(0.02)
        net.kill(kill)
    if p.wait() != 0:
        sys.exit("%s failed: %s" % (name, open(err.name).read()[-2000:]))
    return json.load(open(js)), open(out.name).read()


def one_round(net, reference):
    rows = {}
    for case in ("spare, cold", "spare, cached", "survivors"):
        for d in ("c1", "c2", "c3", "c4"):
            shutil.rmtree(os.path.join(WORK, d), ignore_errors=True)
        for i in (1, 2, 3, 4):
            net.start(i, os.path.join(WORK, "c%d" % i))
        run(net, [1, 2, 3], [], "warm")  # workers 1-3 hold their ranges, as in a session before the fault
        if case == "spare, cached":
            run(net, [1, 4, 3], [], "warm-spare")  # the spare held the middle range once
        extra = ["--spare", net.address(4)] if case.startswith("spare") else []
        if case == "survivors":
            net.kill(4, signal.SIGTERM)
        j, text = run(net, [1, 2, 3], extra, "faulted", kill=2)
        r = j["last_recovery"]
        rows[case] = {k: r[k] for k in ("detect_ms", "plan_ms", "shards_ms", "shard_bytes", "replay_ms",
                                         "replayed_positions", "total_ms")}
        rows[case]["same"] = text == reference
        net.stop_workers()
        time.sleep(0.5)
    return rows


def main():
    os.makedirs(WORK, exist_ok=True)
    if not os.path.exists(MODEL):
        subprocess.run([FERRY, "synth", MODEL, "--preset", "stories110m", "--tokenizer-out", TOKENIZER, "-q"], check=True)
    reference = subprocess.run([FERRY, "run", MODEL, "-z", TOKENIZER] + SAMPLING, capture_output=True, text=True,
                               check=True).stdout
    print("| network | case | detect ms | re-plan ms | shards ms (MB) | replay ms (positions) | total ms | text unchanged |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for mode in MODES:
        net = Lan() if mode == "lan" else Lo()
        try:
            rounds = [one_round(net, reference) for _ in range(ROUNDS)]
        finally:
            net.stop()
        for case in rounds[0]:
            med = {k: statistics.median(r[case][k] for r in rounds) for k in rounds[0][case] if k != "same"}
            same = all(r[case]["same"] for r in rounds)
            print("| %s | %s | %.0f | %.0f | %.0f (%.0f) | %.0f (%.0f) | %.0f | %s |" % (
                mode, case, med["detect_ms"], med["plan_ms"], med["shards_ms"], med["shard_bytes"] / 1e6,
                med["replay_ms"], med["replayed_positions"], med["total_ms"], "yes" if same else "**no**"), flush=True)


if __name__ == "__main__":
    main()
