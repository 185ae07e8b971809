#!/usr/bin/env python3
"""What the cluster key costs (issue 13): sealed frames against plain ones.

  decode   tok/s of `ferry bench` over two one-thread workers on loopback,
           plain workers and keyed workers (--key-file) alternating, ratio
           keyed/plain per pair: stories260K (the real model: ~0.1 ms per
           token, the worst case for a per-frame cost) and stories110m's
           shape (q8_0, random weights).
  shards   MB/s of the shard transfer of stories110m q8_0 (one worker takes
           the whole model, a fresh cache each time) on loopback: native
           worker plain and keyed, the i686 worker keyed under qemu-i386
           (build-i686; the decryption on a 32-bit CPU without SSE2 is
           emulated, so this is a floor), and, as root, a 100 Mbit/s veth
           between two network namespaces (tc tbf), plain and keyed.

  python3 bench/encryption.py

Environment: FERRY_BUILD (build), WORK (/tmp/ferry-bench-crypto), ROUNDS (5), GEN (64), PORT (7781),
PARTS ("decode shards lan").
Prints a markdown table of medians.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("FERRY_BUILD", os.path.join(ROOT, "build"))
FERRY = os.path.join(BUILD, "coordinator", "ferry")
WORKER = os.path.join(BUILD, "worker", "ferry-worker")
WORKER_I686 = os.path.join(ROOT, "build-i686", "worker", "ferry-worker")
WORK = os.environ.get("WORK", "/tmp/ferry-bench-crypto")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
GEN = os.environ.get("GEN", "64")
PORT = int(os.environ.get("PORT", "7781"))
PARTS = os.environ.get("PARTS", "decode shards lan").split()
MODELS = os.path.join(ROOT, "..", "shared", "models")
KEY = os.path.join(WORK, "ferry.key")


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


class Worker:
    def __init__(self, port, keyed, prefix=(), binary=WORKER, host="127.0.0.1", extra=(), launcher=()):
        """prefix: where it runs (`ip netns exec NS`), for the worker and the status check; launcher: how (qemu)."""
        self.address = f"{host}:{port}"
        cache = os.path.join(WORK, f"cache-{port}")
        shutil.rmtree(cache, ignore_errors=True)
        argv = list(prefix) + list(launcher) + [binary, "--listen", self.address, "--threads", "1", "--cache-dir", cache,
                               "--log-level", "warn"] + (["--key-file", KEY] if keyed else ["--insecure"]) + list(extra)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        STARTED.append(self)
        status = list(prefix) + [FERRY, "status", "--workers", self.address] + (["--key-file", KEY] if keyed else [])
        for _ in range(300):
            if subprocess.run(status, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit(f"worker {self.address} did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)


def decode(model, tok, workers, keyed, split):
    argv = [FERRY, "bench", model, "--threads", "1", "--prompt-tokens", "8", "--gen-tokens", GEN, "--runs", "1",
            "--bandwidth-passes", "0", "--json", "--workers", ",".join(w.address for w in workers), "--split", split]
    if keyed:
        argv += ["--key-file", KEY]
    return json.loads(sh(argv).stdout)["decode_tok_s"]


def shard_rate(model, worker, keyed, prefix=()):
    """MB/s of sending the whole model to `worker` (fresh cache), from `ferry run --json`."""
    out = os.path.join(WORK, "run.json")
    argv = list(prefix) + [FERRY, "run", model, "-n", "2", "--threads", "1", "--workers", worker.address, "--split",
                           "12", "--embedding-on-worker", "--head-on-worker", "--json", out]
    if keyed:
        argv += ["--key-file", KEY]
    sh(argv)
    s = json.load(open(out))["shards"]
    return s["bytes_sent"] / 2**20 / s["seconds"]


STARTED = []


def main():
    try:
        run()
    finally:
        for w in STARTED:
            if w.proc.poll() is None:
                w.proc.kill()


def run():
    os.makedirs(WORK, exist_ok=True)
    sh([FERRY, "keygen", "--force", "-o", KEY])
    m110 = os.path.join(WORK, "stories110m-q8_0.gguf")
    if not os.path.exists(m110):
        sh([FERRY, "synth", m110, "--preset", "stories110m", "--format", "gguf", "--type", "q8_0", "-q"])
    rows = []
    port = PORT
    for name, model, tok, split in [] if "decode" not in PARTS else [("stories260K (real, f32)", os.path.join(MODELS, "stories260K.bin"),
                                     os.path.join(MODELS, "tok512.bin"), "2,3"),
                                    ("stories110m shape, q8_0", m110, None, "6,6")]:
        plain = [Worker(port, False), Worker(port + 1, False)]
        keyed = [Worker(port + 2, True), Worker(port + 3, True)]
        port += 4
        decode(model, tok, plain, False, split), decode(model, tok, keyed, True, split)  # shards sent, caches warm
        p, k, r = [], [], []
        for _ in range(ROUNDS):
            a = decode(model, tok, plain, False, split)
            b = decode(model, tok, keyed, True, split)
            p.append(a), k.append(b), r.append(b / a)
        for w in plain + keyed:
            w.stop()
        rows.append((f"decode, 2 workers on loopback: {name}", f"{statistics.median(p):.1f} tok/s",
                     f"{statistics.median(k):.1f} tok/s", f"{statistics.median(r):.3f}"))
        print(rows[-1], file=sys.stderr)
    # Shard transfer on loopback.
    cases = [("native worker", (), WORKER)] if "shards" in PARTS else []
    if cases and os.path.exists(WORKER_I686) and shutil.which("qemu-i386"):
        cases.append(("i686 worker under qemu-i386", ("qemu-i386",), WORKER_I686))
    for name, launcher, binary in cases:
        res = {}
        for keyed in (False, True):
            vals = []
            for _ in range(max(1, ROUNDS // 2)):
                w = Worker(port, keyed, binary=binary, launcher=launcher)
                port += 1
                vals.append(shard_rate(m110, w, keyed))
                w.stop()
            res[keyed] = statistics.median(vals)
        rows.append((f"shard transfer, loopback, {name} (MB/s)", f"{res[False]:.1f}", f"{res[True]:.1f}",
                     f"{res[True] / res[False]:.3f}"))
        print(rows[-1], file=sys.stderr)
    # 100 Mbit/s between two namespaces.
    if "lan" in PARTS and os.geteuid() == 0:
        ns_a, ns_b, va, vb = "fcra", "fcrb", "fcrva", "fcrvb"
        for cmd in (["ip", "netns", "add", ns_a], ["ip", "netns", "add", ns_b],
                    ["ip", "link", "add", va, "type", "veth", "peer", "name", vb],
                    ["ip", "link", "set", va, "netns", ns_a], ["ip", "link", "set", vb, "netns", ns_b],
                    ["ip", "-n", ns_a, "addr", "add", "10.78.0.1/24", "dev", va],
                    ["ip", "-n", ns_b, "addr", "add", "10.78.0.2/24", "dev", vb],
                    ["ip", "-n", ns_a, "link", "set", va, "up"], ["ip", "-n", ns_b, "link", "set", vb, "up"],
                    ["ip", "-n", ns_a, "link", "set", "lo", "up"], ["ip", "-n", ns_b, "link", "set", "lo", "up"],
                    ["ip", "netns", "exec", ns_a, "tc", "qdisc", "add", "dev", va, "root", "tbf", "rate", "100mbit",
                     "burst", "64kb", "latency", "100ms"]):
            sh(cmd)
        try:
            res = {}
            for keyed in (False, True):
                vals = []
                for _ in range(max(1, ROUNDS // 2)):
                    w = Worker(port, keyed, ("ip", "netns", "exec", ns_b), host="10.78.0.2")
                    port += 1
                    vals.append(shard_rate(m110, w, keyed, ("ip", "netns", "exec", ns_a)))
                    w.stop()
                res[keyed] = statistics.median(vals)
            rows.append(("shard transfer, 100 Mbit/s veth (tc tbf), native worker (MB/s)", f"{res[False]:.1f}",
                         f"{res[True]:.1f}", f"{res[True] / res[False]:.3f}"))
        finally:
            subprocess.run(["ip", "netns", "del", ns_a]), subprocess.run(["ip", "netns", "del", ns_b])
    print("| measured | plain | keyed (sealed) | keyed / plain |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
