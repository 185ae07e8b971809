#!/usr/bin/env python3
"""`ferry serve` under load while workers die (issue 12's chaos run).

Four one-thread workers on loopback (three in the chain, one --spare) serve
stories15m's shape (random weights, `ferry synth`); STREAMS clients send
completions one after another, streamed and not, greedy and seeded, from a
fixed set whose texts were first taken from a single-process `ferry serve`.
Every INTERVAL seconds a random worker of the chain is SIGKILLed and restarted 3 s later
on the same port with its cache (a systemd service coming back). After
DURATION seconds prints one JSON line: requests done, failed (goal 0), wrong
(must be 0), kills, the server's recoveries and their median phases.

  python3 bench/chaos.py
  DURATION=60 INTERVAL=15 python3 bench/chaos.py

Environment: FERRY_BUILD (default build), WORK (default /tmp/ferry-bench-chaos), DURATION (300 s),
INTERVAL (30 s), STREAMS (4), MAX_TOKENS (120), PORT (7781), SEED (1: the choice of victims).
"""
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("FERRY_BUILD", os.path.join(ROOT, "build"))
FERRY = os.path.join(BUILD, "coordinator", "ferry")
WORKER = os.path.join(BUILD, "worker", "ferry-worker")
WORK = os.environ.get("WORK", "/tmp/ferry-bench-chaos")
DURATION = float(os.environ.get("DURATION", "300"))
INTERVAL = float(os.environ.get("INTERVAL", "30"))
STREAMS = int(os.environ.get("STREAMS", "4"))
MAX_TOKENS = int(os.environ.get("MAX_TOKENS", "120"))
PORT = int(os.environ.get("PORT", "7781"))
MODEL = os.path.join(WORK, "stories15m-f32.bin")
TOKENIZER = os.path.join(WORK, "tok32000.bin")
PROMPTS = ["Once upon a time", "The cat", "Lily and Tom went to the park", "One day a little bird", "Sam had a red ball",
           "The sun was hot"]
REQUESTS = [{"prompt": p, "max_tokens": MAX_TOKENS, "temperature": t, "top_p": 0.9, "seed": 11 + i}
            for i, p in enumerate(PROMPTS) for t in (0.0, 0.8)]


def complete(port, body, stream):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", "/v1/completions", json.dumps(dict(body, stream=stream)), {"Content-Type": "application/json"})
    res = conn.getresponse()
    if res.status != 200:
        raise RuntimeError("HTTP %d: %s" % (res.status, res.read()[:200]))
    if not stream:
        return json.loads(res.read())["choices"][0]["text"]
    text, buf = [], b""
    while True:
        chunk = res.read1(65536)
        if not chunk:
            raise RuntimeError("stream ended without [DONE]")
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if not event.startswith(b"data: "):
                continue
            if event[6:] == b"[DONE]":
                return "".join(text)
            j = json.loads(event[6:])
            if "error" in j:
                raise RuntimeError("error event: %s" % j["error"])
            if j["choices"]:
                text.append(j["choices"][0].get("text", ""))


def start_serve(port, extra, log):
    p = subprocess.Popen([FERRY, "serve", MODEL, "-z", TOKENIZER, "--listen", "127.0.0.1:%d" % port, "--parallel",
                          str(STREAMS), "--threads", "1", "--log-level", "warn"] + extra,
                         stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit("ferry serve exited: " + open(log).read()[-2000:])
        time.sleep(0.1)
    sys.exit("ferry serve did not become healthy")


class Workers:
    def __init__(self, n):
        self.procs = {}
        for i in range(1, n + 1):
            self.start(i)

    def address(self, i):
        return "127.0.0.1:%d" % (PORT + i)

    def start(self, i):
        log = open(os.path.join(WORK, "w%d.log" % i), "a")
        self.procs[i] = subprocess.Popen([WORKER, "--listen", self.address(i), "--threads", "1", "--cache-dir",
                                          os.path.join(WORK, "c%d" % i), "--log-level", "warn"], stdout=log, stderr=log)
        for _ in range(100):
            if subprocess.run([FERRY, "status", "--workers", self.address(i)], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        sys.exit("worker %d did not start" % i)

    def serving(self, i):
        r = subprocess.run([FERRY, "status", "--workers", self.address(i), "--json"], capture_output=True, text=True)
        return r.returncode == 0 and json.loads(r.stdout)[0].get("coordinator_connected", False)

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            p.wait()


def metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def main():
    os.makedirs(WORK, exist_ok=True)
    if not os.path.exists(MODEL):
        subprocess.run([FERRY, "synth", MODEL, "--preset", "stories15m", "--tokenizer-out", TOKENIZER, "-q"], check=True)
    # The texts every reply must have: one process, no faults.
    single = start_serve(PORT, [], os.path.join(WORK, "single.log"))
    want = [complete(PORT, r, False) for r in REQUESTS]
    single.send_signal(signal.SIGTERM)
    single.wait()

    workers = Workers(4)
    # --split: every one of the three workers holds a stage (one alone would be fastest for so small a model).
    serve = start_serve(PORT, ["--workers", ",".join(workers.address(i) for i in (1, 2, 3)), "--split", "2,2,2",
                               "--spare", workers.address(4), "--recover-wait", "30"], os.path.join(WORK, "serve.log"))
    done, failed, wrong, lock = [0], [], [], threading.Lock()
    deadline = time.monotonic() + DURATION

    def client(k):
        n = 0
        while time.monotonic() < deadline:
            i = (k + n * STREAMS) % len(REQUESTS)
            n += 1
            try:
                text = complete(PORT, REQUESTS[i], stream=n % 2 == 0)
                with lock:
                    done[0] += 1
                    if text != want[i]:
                        wrong.append(i)
            except Exception as e:  # counted, never hidden
                with lock:
                    failed.append(str(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(STREAMS)]
    for t in threads:
        t.start()
    rng = random.Random(int(os.environ.get("SEED", "1")))
    kills = 0
    while time.monotonic() + INTERVAL < deadline:
        time.sleep(INTERVAL)
        # A worker of the chain (one serving the coordinator), so that every kill is a fault to recover from.
        serving = [i for i in workers.procs if workers.serving(i)]
        victim = rng.choice(serving or list(workers.procs))
        workers.kill(victim)
        kills += 1
        time.sleep(3)
        workers.start(victim)
    for t in threads:
        t.join()
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    c.request("GET", "/metrics")
    metrics = c.getresponse().read().decode()
    serve.send_signal(signal.SIGTERM)
    serve.wait()
    workers.stop()
    log = open(os.path.join(WORK, "serve.log")).read()
    totals = [float(x) for x in re.findall(r"; (\d+) ms in all", log)]
    print(json.dumps({"duration_s": DURATION, "interval_s": INTERVAL, "streams": STREAMS, "requests_done": done[0],
                      "failed": len(failed), "wrong": len(wrong), "kills": kills,
                      "recoveries": metric(metrics, "ferry_recoveries_total"),
                      "recovery_ms_median": statistics.median(totals) if totals else None,
                      "recovery_ms_max": max(totals) if totals else None,
                      "first_failure": failed[0] if failed else None}))
    return 0 if not failed and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
