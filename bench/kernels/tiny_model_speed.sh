#!/usr/bin/env bash
# Tokens/s of a model per --format at 1 and all threads: a prompt of the first 1000 characters of
# the held-out text (prefill), then N greedy tokens (decode); hetmoe run prints both tokens/s on
# stderr. Best of RUNS (default 3) runs; PROMPT_CHARS (default 1000) sets the prompt length.
#   [RUNS=3] [PROMPT_CHARS=1000] bench/kernels/tiny_model_speed.sh [BINARY] [MODEL] [N]
set -euo pipefail
binary=${1:-build/tools/hetmoe}
model=${2:-models/tiny-shakespeare}
tokens=${3:-256}
threads_all=$(nproc)
prompt_file=$(mktemp)
trap 'rm -f "$prompt_file"' EXIT
head -c "${PROMPT_CHARS:-1000}" tests/data/tiny_ref/heldout.txt >"$prompt_file"
echo "| format | threads | prompt tokens/s | generation tokens/s (best of ${RUNS:-3}) |"
echo "|---|---:|---:|---:|"
for format in fp8 int8 int4 bf16 ref; do
  for threads in 1 "$threads_all"; do
    best_gen=0 best_prompt=0
    for ((run = 1; run <= ${RUNS:-3}; run++)); do
      line=$("$binary" run -m "$model" -f "$prompt_file" -n "$tokens" --temp 0 --ignore-eos -t "$threads" --format "$format" \
               2>&1 >/dev/null | grep 'hetmoe: prompt')
      prompt=$(sed -E 's/.*\(([0-9.]+) tokens\/s\); generation.*/\1/' <<<"$line")
      gen=$(sed -E 's/.*generation .*\(([0-9.]+) tokens\/s\).*/\1/' <<<"$line")
      best_gen=$(python3 -c "print(max($best_gen, $gen))")
      best_prompt=$(python3 -c "print(max($best_prompt, $prompt))")
    done
    echo "| $format | $threads | $best_prompt | $best_gen |"
  done
done
