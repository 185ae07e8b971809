#!/usr/bin/env python3
"""Load for `ferry serve`: N concurrent streams, each sending streamed
completions one after another; prints one JSON line with the aggregate
generated tok/s (all streams' tokens over the wall time), the median time to
first token, and the failures. Standard library only.

  python3 bench/serve_load.py --url http://127.0.0.1:8080 --streams 8 --requests 2 --max-tokens 64
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def one_request(url, body, key):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    t0 = time.monotonic()
    conn.request("POST", "/v1/completions", json.dumps(body), headers)
    res = conn.getresponse()
    if res.status != 200:
        raise RuntimeError("HTTP %d: %s" % (res.status, res.read()[:200]))
    ttft = None
    tokens = 0
    buf = b""
    while True:
        chunk = res.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if not event.startswith(b"data: "):
                continue
            data = event[6:]
            if data == b"[DONE]":
                conn.close()
                return ttft, tokens
            j = json.loads(data)
            if j.get("usage"):
                tokens = j["usage"]["completion_tokens"]
            if ttft is None and j["choices"] and j["choices"][0].get("text"):
                ttft = time.monotonic() - t0
    raise RuntimeError("stream ended without [DONE]")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--requests", type=int, default=2, help="requests per stream, one after another")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt", default="Once")
    ap.add_argument("--key", default="")
    a = ap.parse_args()
    ttfts, tokens, failures = [], [0], []
    lock = threading.Lock()

    def stream(i):
        for r in range(a.requests):
            body = {"prompt": a.prompt, "max_tokens": a.max_tokens, "temperature": 1.0, "seed": 1 + i * 1000 + r,
                    "stream": True, "stream_options": {"include_usage": True}}
            try:
                ttft, n = one_request(a.url, body, a.key)
                with lock:
                    tokens[0] += n
                    if ttft is not None:
                        ttfts.append(ttft)
            except Exception as e:  # counted, never hidden
                with lock:
                    failures.append(str(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(a.streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    print(json.dumps({"streams": a.streams, "tokens": tokens[0], "wall_s": round(wall, 3),
                      "tok_s": round(tokens[0] / wall, 3) if wall > 0 else 0,
                      "ttft_median_s": round(statistics.median(ttfts), 3) if ttfts else None,
                      "failures": len(failures), "first_failure": failures[0] if failures else None}))


if __name__ == "__main__":
    main()
