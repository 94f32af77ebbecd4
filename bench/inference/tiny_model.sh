#!/usr/bin/env bash
# Prefill and decode tokens/s of the bundled model at 1 and 2 threads (inference issue's
# benchmark). Prints a markdown table; each cell is the median of REPS runs of
# `hetmoe run` with a ~256-token prompt and 128 generated tokens (greedy, EOS ignored).
# Usage: bench/inference/tiny_model.sh [REPS] [FORMAT]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
hetmoe="$root/build/tools/hetmoe"
model="$root/models/tiny-shakespeare"
reps=${1:-5}
prompt=$(head -c 1000 "$root/tests/data/tiny_ref/heldout.txt")
echo "| threads | prompt tokens | prefill tokens/s (median of $reps) | decode tokens/s (median of $reps) |"
echo "|---|---|---|---|"
for threads in 1 2; do
  prefill=(); decode=()
  for ((i = 0; i < reps; i++)); do
    line=$("$hetmoe" run -m "$model" -p "$prompt" -n 128 --temp 0 --ignore-eos -t "$threads" 2>&1 >/dev/null | grep "tokens/s")
    prompt_tokens=$(sed -E 's/.*prompt ([0-9]+) tokens.*/\1/' <<<"$line")
    prefill+=("$(sed -E 's/.*prompt [0-9]+ tokens in [0-9.]+ s \(([0-9.]+) tokens\/s\).*/\1/' <<<"$line")")
    decode+=("$(sed -E 's/.*generation [0-9]+ tokens in [0-9.]+ s \(([0-9.]+) tokens\/s\).*/\1/' <<<"$line")")
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  echo "| $threads | $prompt_tokens | $(median "${prefill[@]}") | $(median "${decode[@]}") |"
done
