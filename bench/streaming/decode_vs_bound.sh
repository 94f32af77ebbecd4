#!/usr/bin/env bash
# Decode of a model larger than the DRAM budget, streamed from its packed store, against the
# bound from its own measured miss bytes per token, the drive's bandwidth and the CPU kernel rate
# (bench/RESULTS.md ## Streaming):
#
#   bound tokens/s = 1 / max(nvme_bytes_per_token / drive_bytes_per_s, cpu_seconds_per_token)
#
#   drive_bytes_per_s      `hetmoe bench --read-test` on the store (the engine's read pattern,
#                          checksums on, as in decode), measured right before and right after
#                          every streamed run; its bound uses the mean of the two (a shared host's
#                          drive moves by 1.5x between minutes)
#   cpu_seconds_per_token  decode of a model with the same layers, dimensions and experts per
#                          token but only 16 experts per layer, so they all sit in DRAM (same
#                          kernels, same work per token, no I/O)
#   nvme_bytes_per_token   what the streamed run itself read
#
# On a shared machine other processes move both speeds, so every round (--rounds) measures the CPU
# bound, then for each prefetch mode (--prefetch, default auto; next-use cache) a streamed run
# between two read tests, and each streamed run is compared with its own bound; CPU seconds per
# token (getrusage, all threads) are reported too, which other processes do not inflate, and so is
# the drive's rate while the run had reads in flight. A final table runs every policy/prefetch
# combination once (--no-combinations skips it).
#
# I/O and compute overlap when the streamed run reaches the bound (target >= 80%); the table also
# gives the serial rate 1 / (I/O + CPU time), what no overlap at all would reach.
# --variant 'NAME=ARGS' (repeatable) runs each prefetch mode once per variant, with ARGS added to
# the streamed `hetmoe bench` (e.g. --variant 'qd64=--queue-depth 64' --variant 'late=--late-prediction'
# --variant 'now='), alternated within each round for A/B; the read tests keep bench's defaults.
# (mmap and the page cache vs the store: mmap_vs_store.sh.)
#
# Usage: bench/streaming/decode_vs_bound.sh --model DIR --store STORE [--budget 8GiB] [--binary PATH]
#          [-n 16] [-r 2] [--rounds 3] [--small DIR] [--read-seconds 10] [--prefetch auto[,off,on]]
#          [--no-combinations] [--variant 'NAME=ARGS' ...]
set -euo pipefail

BINARY=build/tools/hetmoe
MODEL=; STORE=; BUDGET=8GiB; N=16; R=2; SMALL=; READ_SECONDS=10; ROUNDS=3; MODES=auto; COMBINATIONS=1; VARIANTS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --store) STORE=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    -n) N=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    --small) SMALL=$2; shift 2 ;;
    --read-seconds) READ_SECONDS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --prefetch) MODES=$2; shift 2 ;;
    --no-combinations) COMBINATIONS=0; shift ;;
    --variant) VARIANTS+=("$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n "$MODEL" && -n "$STORE" ]] || { echo "--model and --store are required" >&2; exit 2; }
if [[ -z "${KEEP_DIR:-}" ]]; then
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
else
  OUT=$KEEP_DIR  # KEEP_DIR=path keeps the raw JSON of every run there
  mkdir -p "$OUT"
fi


FORMAT=$(python3 - "$STORE" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    head = f.read(24)
print({1: "fp8", 2: "int8", 3: "int4", 4: "bf16", 5: "ref"}[struct.unpack_from("<I", head, 16)[0]])
PY
)
if [[ -z "$SMALL" ]]; then
  SMALL=$OUT/small
  LAYERS=$(python3 -c "import json;print(json.load(open('$MODEL/config.json'))['num_hidden_layers'])")
  echo "== CPU: making a ${LAYERS}-layer model with 16 experts per layer" >&2
  "$BINARY" make-model -o "$SMALL" --preset ds3-layers --layers "$LAYERS" --experts 16 --seed 1 > /dev/null
fi
rm -f "$OUT/stream.json"
read_test() { "$BINARY" bench --store "$STORE" --read-test "$READ_SECONDS" -r 1 -o json > "$1"; }
for ((r = 1; r <= ROUNDS; r++)); do
  echo "== round $r: CPU bound (resident small model, $FORMAT); prefetch $MODES streamed between read tests, budget $BUDGET" >&2
  "$BINARY" bench -m "$SMALL" --format "$FORMAT" -p 0 -n "$N" -r 1 -o json > "$OUT/cpu_$r.json"
  read_test "$OUT/read_${r}_0.json"
  i=0
  for mode in ${MODES//,/ }; do
    for variant in "${VARIANTS[@]:-=}"; do
      i=$((i + 1))
      read -r -a extra <<< "${variant#*=}"
      "$BINARY" bench -m "$MODEL" --store "$STORE" --dram-budget "$BUDGET" -p 0 -n "$N" -r 1 --prefetch "$mode" \
        "${extra[@]}" -o json > "$OUT/pair_${r}_$i.json"
      read_test "$OUT/read_${r}_$i.json"
    done
  done
done
# Labels of the streamed runs, in the order each round ran them.
LABELS=
for mode in ${MODES//,/ }; do
  for variant in "${VARIANTS[@]:-=}"; do
    label=$mode; [[ -z ${variant%%=*} ]] || label="$mode ${variant%%=*}"
    LABELS+="${LABELS:+,}$label"
  done
done
if ((COMBINATIONS)); then
  echo "== every policy / prefetch combination, budget $BUDGET" >&2
  "$BINARY" bench -m "$MODEL" --store "$STORE" --dram-budget "$BUDGET" -p 0 -n "$N" -r "$R" \
    --prefetch off,on,auto --cache-policy lru,next-use -o json > "$OUT/stream.json"
fi

python3 - "$OUT" "$MODEL" "$STORE" "$BUDGET" "$ROUNDS" "$LABELS" <<'PY'
import json, os, sys
out, model, store, budget, rounds, modes = sys.argv[1:7]
modes = modes.split(",")
def load(name):
    return json.load(open(f"{out}/{name}.json"))[0]
size = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model) if f.endswith(".safetensors"))
print(f"model {model}: {size/2**30:.1f} GiB; store {os.path.getsize(store)/2**30:.1f} GiB; budget {budget}")
print()
print("Rounds (next-use cache; each streamed run between two read tests of the engine's read pattern, checksums on):")
print()
print("| round | prefetch | drive GB/s before / after | CPU bound t/s | streamed t/s | CPU s/tok | NVMe MB/tok | I/O ms/tok | I/O wait % | drive busy % | GB/s while busy | recall % | serial t/s | bound t/s | of bound |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios = {m: [] for m in modes}
bws, t_cpu_all = [], []
for r in range(1, int(rounds) + 1):
    cpu = load(f"cpu_{r}")
    t_cpu = 1.0 / cpu["tokens_per_second"]
    t_cpu_all.append(t_cpu)
    for i, mode in enumerate(modes, start=1):
        before, after = load(f"read_{r}_{i - 1}")["bytes_per_second"], load(f"read_{r}_{i}")["bytes_per_second"]
        bws += [before, after]
        st = load(f"pair_{r}_{i}")
        t_io = st["nvme_bytes_per_token"] / ((before + after) / 2)
        bound = 1.0 / max(t_io, t_cpu)
        ratios[mode].append(st["tokens_per_second"] / bound)
        print(f"| {r} | {mode} ({100*st['prefetch_step_share']:.0f}% on) | {before/1e9:.2f} / {after/1e9:.2f} | {cpu['tokens_per_second']:.3f} | "
              f"{st['tokens_per_second']:.3f} | {st['cpu_seconds_per_token']:.2f} | {st['nvme_bytes_per_token']/1e6:.1f} | {t_io*1e3:.0f} | "
              f"{100*st['io_wait_share']:.1f} | {100*st['drive_busy_share']:.0f} | {st['drive_busy_bytes_per_second']/1e9:.2f} | "
              f"{100*st['prefetch_recall']:.0f} | "
              f"{1.0 / (t_io + t_cpu):.3f} | {bound:.3f} | **{100*ratios[mode][-1]:.0f}%** |")
print()
print("serial: 1 / (I/O time + CPU time), what reads and compute that never overlap would reach.")
print()
for mode in modes:
    rs = ratios[mode]
    print(f"prefetch {mode}: {100*min(rs):.0f}-{100*max(rs):.0f}% of the bound (mean {100*sum(rs)/len(rs):.0f}%)  [target >= 80%]")
bw = sum(bws) / len(bws)
t_cpu = sum(t_cpu_all) / len(t_cpu_all)
if not os.path.exists(f"{out}/stream.json"):
    sys.exit(0)
print()
print("Every combination (bound from the mean CPU time and drive bandwidth of the rounds):")
print()
print("| policy | prefetch | t/s | NVMe MB/tok | hit % | recall % | over-fetch % | I/O wait % | I/O ms/tok | bound t/s | of bound |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for row in json.load(open(f"{out}/stream.json")):
    t_io = row["nvme_bytes_per_token"] / bw
    bound = 1.0 / max(t_io, t_cpu)
    print(f"| {row['cache_policy']} | {row['prefetch']} ({100*row['prefetch_step_share']:.0f}% on) | {row['tokens_per_second']:.3f} ± "
          f"{row['tokens_per_second_sd']:.3f} | {row['nvme_bytes_per_token']/1e6:.1f} | {100*row['cache_hit_rate']:.1f} | "
          f"{100*row['prefetch_recall']:.1f} | {100*row['prefetch_overfetch']:.1f} | {100*row['io_wait_share']:.1f} | "
          f"{t_io*1e3:.0f} | {bound:.3f} | {100*row['tokens_per_second']/bound:.0f}% |")
PY
