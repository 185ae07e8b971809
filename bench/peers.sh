#!/usr/bin/env bash
# ferry beside llama.cpp on this machine: the same TinyLlama-1.1B-shaped GGUF
# files (those of bench/levels.sh) through `ferry bench` (the best kernel
# level this CPU has) and `llama-bench -p PROMPT -n GEN`, back to back in each
# round, so each ratio is taken within one round of a noisy machine.
#
#   LLAMA_BENCH=/path/to/llama-bench bash bench/peers.sh
#
# llama-bench is llama.cpp's (built as peers.md says: Release, GGML_NATIVE=ON);
# ferry does not build it. Environment: FERRY, WORK, TYPES, THREADS, ROUNDS, PROMPT, GEN as
# bench/tinyllama-models.sh says. Prints one markdown row per type and thread count: medians of ferry's and llama.cpp's prefill
# and decode tok/s, the medians of the rounds' ferry/llama.cpp ratios, and ferry's decode share of the
# bandwidth its own probe measured in the same run.
set -euo pipefail
llama=${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}
source "$(dirname "$0")/tinyllama-models.sh"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for type in "${types[@]}"; do
  file=$(model "$type")
  for t in "${threads[@]}"; do
    for r in $(seq "$rounds"); do
      echo "$type, $t thread(s), round $r" >&2
      "$ferry" bench "$file" --threads "$t" --prompt-tokens "$prompt" --gen-tokens "$gen" --runs 1 \
        --bandwidth-passes 2 --json 2>/dev/null |
        /usr/bin/python3 -c 'import json, sys; j = json.load(sys.stdin)
print(*sys.argv[1:], "ferry", j["prefill_tok_s"], j["decode_tok_s"], j["decode_share_of_bandwidth"])' \
          "$type" "$t" "$r" >> "$out"
      "$llama" -m "$file" -p "$prompt" -n "$gen" -t "$t" -r 1 -o json 2>/dev/null |
        /usr/bin/python3 -c 'import json, sys; runs = json.load(sys.stdin)
pre = [x["avg_ts"] for x in runs if x["n_prompt"] > 0]; dec = [x["avg_ts"] for x in runs if x["n_gen"] > 0]
print(*sys.argv[1:], "llama.cpp", pre[0], dec[0], 0)' "$type" "$t" "$r" >> "$out"
    done
  done
done

/usr/bin/python3 - "$out" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("| type | threads | prefill ferry | prefill llama.cpp | ferry/llama.cpp | decode ferry | decode llama.cpp | "
      "ferry/llama.cpp | ferry decode share of bandwidth |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
keys = []
for r in rows:
    if (r[0], r[1]) not in keys: keys.append((r[0], r[1]))
for type_, t in keys:
    sel = [r for r in rows if r[0] == type_ and r[1] == t]
    med = lambda who, col: statistics.median(float(r[col]) for r in sel if r[3] == who)
    def ratio(col):
        rs = []
        for rnd in sorted({r[2] for r in sel}):
            f = [float(r[col]) for r in sel if r[2] == rnd and r[3] == "ferry"]
            l = [float(r[col]) for r in sel if r[2] == rnd and r[3] == "llama.cpp"]
            if f and l and l[0] > 0: rs.append(f[0] / l[0])
        return statistics.median(rs)
    print(f"| {type_} | {t} | {med('ferry', 4):.1f} | {med('llama.cpp', 4):.1f} | {ratio(4):.2f}x | "
          f"{med('ferry', 5):.2f} | {med('llama.cpp', 5):.2f} | {ratio(5):.2f}x | {100 * med('ferry', 6):.0f}% |")
EOF
