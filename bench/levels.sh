#!/usr/bin/env bash
# Prefill and decode per kernel level, the figures of docs/BENCHMARKS.md's
# "Kernel levels" section: TinyLlama-1.1B-shaped GGUF files (random weights,
# every 2-D tensor in the type, as peers.md's llama.cpp figures) through
# `ferry bench`, each level in turn within a round (A B A B ...), so the ratio
# of two levels is taken within one round of a noisy machine.
#
#   bash bench/levels.sh            # TYPES, LEVELS, THREADS below
#
# Environment: LEVELS (default "avx2 avx512"), and FERRY, WORK, TYPES, THREADS, ROUNDS, PROMPT, GEN as
# bench/tinyllama-models.sh says.
# Prints one markdown row per type and thread count: each level's median prefill and decode tok/s, the medians of
# the rounds' prefill and decode ratios of the last level to the first, and the decode share of bandwidth of the
# last level.
set -euo pipefail
levels=(${LEVELS:-avx2 avx512})
source "$(dirname "$0")/tinyllama-models.sh"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for type in "${types[@]}"; do
  file=$(model "$type")
  for t in "${threads[@]}"; do
    for r in $(seq "$rounds"); do
      for level in "${levels[@]}"; do
        "$ferry" bench "$file" --kernels "$level" --threads "$t" --prompt-tokens "$prompt" --gen-tokens "$gen" \
          --runs 1 --bandwidth-passes 2 --json 2>/dev/null |
          python3 -c 'import json, sys; j = json.load(sys.stdin); print(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4],
                      j["prefill_tok_s"], j["decode_tok_s"], j["decode_share_of_bandwidth"], j["logits_checksum"])' \
            "$type" "$t" "$r" "$level" >> "$out"
      done
    done
  done
done

python3 - "$out" "${levels[@]}" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
levels = sys.argv[2:]
first, last = levels[0], levels[-1]
head = "| type | threads | " + " | ".join(f"prefill {l}" for l in levels) + f" | {last}/{first} prefill | " + \
       " | ".join(f"decode {l}" for l in levels) + f" | {last}/{first} decode | decode share {last} | checksums |"
print(head)
print("|---|---:|" + "---:|" * (2 * len(levels) + 3) + "---|")
keys = []
for r in rows:
    if (r[0], r[1]) not in keys: keys.append((r[0], r[1]))
for type_, t in keys:
    sel = [r for r in rows if r[0] == type_ and r[1] == t]
    med = lambda level, col: statistics.median(float(r[col]) for r in sel if r[3] == level)
    def ratio(col):  # the median of the rounds' own last/first ratios
        ratios = []
        for rnd in sorted({r[2] for r in sel}):
            a = [float(r[col]) for r in sel if r[2] == rnd and r[3] == first]
            b = [float(r[col]) for r in sel if r[2] == rnd and r[3] == last]
            if a and b: ratios.append(b[0] / a[0])
        return statistics.median(ratios)
    same = "equal" if len({r[7] for r in sel}) == 1 else "DIFFER"
    print(f"| {type_} | {t} | " + " | ".join(f"{med(l, 4):.1f}" for l in levels) +
          f" | {ratio(4):.2f}x | " + " | ".join(f"{med(l, 5):.2f}" for l in levels) +
          f" | {ratio(5):.2f}x | {100 * med(last, 6):.0f}% | {same} |")
EOF
