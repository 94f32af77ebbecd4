#!/usr/bin/env bash
# Decode of a model larger than the DRAM budget, streamed from its packed store, against the
# bound from its own measured miss bytes per token, the drive's bandwidth and the CPU kernel rate
# (bench/RESULTS.md ## Streaming):
#
#   bound tokens/s = 1 / max(nvme_bytes_per_token / drive_bytes_per_s, cpu_seconds_per_token)
#
#   drive_bytes_per_s      `hetmoe bench --read-test` on the store (the engine's read pattern,
#                          checksums on, as in decode), measured again in every round (a shared
#                          host's drive moves by 1.5x between minutes)
#   cpu_seconds_per_token  decode of a model with the same layers, dimensions and experts per
#                          token but only 16 experts per layer, so they all sit in DRAM (same
#                          kernels, same work per token, no I/O)
#   nvme_bytes_per_token   what the streamed run itself read
#
# On a shared machine other processes move both speeds, so the CPU bound and the streamed run
# (next-use cache, default prefetch: auto) are measured in alternating pairs (--rounds) and each streamed
# run is compared with its own pair's bound; CPU seconds per token (getrusage, all threads) are
# reported too, which other processes do not inflate. A final table runs every policy/prefetch
# combination once.
#
# I/O and compute overlap when the streamed run reaches the bound (target >= 80%).
# (mmap and the page cache vs the store: mmap_vs_store.sh.)
#
# Usage: bench/streaming/decode_vs_bound.sh --model DIR --store STORE [--budget 8GiB] [--binary PATH]
#          [-n 16] [-r 2] [--rounds 3] [--small DIR] [--read-seconds 10]
set -euo pipefail

BINARY=build/tools/hetmoe
MODEL=; STORE=; BUDGET=8GiB; N=16; R=2; SMALL=; READ_SECONDS=10; ROUNDS=3
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
for ((r = 1; r <= ROUNDS; r++)); do
  echo "== round $r: drive (engine read pattern), CPU bound (resident small model, $FORMAT), streamed decode, budget $BUDGET" >&2
  "$BINARY" bench --store "$STORE" --read-test "$READ_SECONDS" -r 1 -o json > "$OUT/read_$r.json"
  "$BINARY" bench -m "$SMALL" --format "$FORMAT" -p 0 -n "$N" -r 1 -o json > "$OUT/cpu_$r.json"
  "$BINARY" bench -m "$MODEL" --store "$STORE" --dram-budget "$BUDGET" -p 0 -n "$N" -r 1 -o json > "$OUT/pair_$r.json"
done
echo "== every policy / prefetch combination, budget $BUDGET" >&2
"$BINARY" bench -m "$MODEL" --store "$STORE" --dram-budget "$BUDGET" -p 0 -n "$N" -r "$R" \
  --prefetch off,on,auto --cache-policy lru,next-use -o json > "$OUT/stream.json"

python3 - "$OUT" "$MODEL" "$STORE" "$BUDGET" "$ROUNDS" <<'PY'
import json, os, sys
out, model, store, budget, rounds = sys.argv[1:6]
bws = [json.load(open(f"{out}/read_{r}.json"))[0]["bytes_per_second"] for r in range(1, int(rounds) + 1)]
bw = sum(bws) / len(bws)
size = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model) if f.endswith(".safetensors"))
print(f"model {model}: {size/2**30:.1f} GiB; store {os.path.getsize(store)/2**30:.1f} GiB; budget {budget}")
print(f"drive (engine read pattern, checksums on): {' / '.join(f'{b/1e9:.3f}' for b in bws)} GB/s by round")
print()
print("Alternating rounds (streamed: next-use cache, default prefetch auto):")
print()
print("| round | drive GB/s | CPU bound t/s | CPU s/tok | streamed t/s | CPU s/tok | NVMe MB/tok | I/O ms/tok | I/O wait % | drive busy % | bound t/s | of bound |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios = []
t_cpu_all = []
for r in range(1, int(rounds) + 1):
    cpu = json.load(open(f"{out}/cpu_{r}.json"))[0]
    st = json.load(open(f"{out}/pair_{r}.json"))[0]
    t_cpu = 1.0 / cpu["tokens_per_second"]
    t_cpu_all.append(t_cpu)
    t_io = st["nvme_bytes_per_token"] / bws[r - 1]
    bound = 1.0 / max(t_io, t_cpu)
    ratios.append(st["tokens_per_second"] / bound)
    print(f"| {r} | {bws[r - 1]/1e9:.2f} | {cpu['tokens_per_second']:.3f} | {cpu['cpu_seconds_per_token']:.2f} | {st['tokens_per_second']:.3f} | "
          f"{st['cpu_seconds_per_token']:.2f} | {st['nvme_bytes_per_token']/1e6:.1f} | {t_io*1e3:.0f} | "
          f"{100*st['io_wait_share']:.1f} | {100*st['drive_busy_share']:.0f} | {bound:.3f} | **{100*ratios[-1]:.0f}%** |")
print(f"\nmean of bound: {100*sum(ratios)/len(ratios):.0f}%  [target >= 80%]")
t_cpu = sum(t_cpu_all) / len(t_cpu_all)
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
