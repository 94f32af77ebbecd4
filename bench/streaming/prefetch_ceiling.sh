#!/usr/bin/env bash
# How far prediction can take streamed decode (bench/RESULTS.md ## Streaming): the same tokens
# run with prefetch off, with the engine's next-layer prediction, and with the oracle
# (engine/runtime/oracle_prefetch.h: the warm-up's routing replayed as perfect predictions,
# next layer only = oracle-next, or also the first MoE layer at each step's start = oracle),
# each against the bound
#
#   bound tokens/s = 1 / max(nvme_bytes_per_token / drive_bytes_per_s, cpu_seconds_per_token)
#
# with the drive measured (`hetmoe bench --read-test`) and the CPU bound (the resident --small
# model, as in decode_vs_bound.sh) in every round; rounds alternate so a shared machine's drift
# hits every mode alike. A shared host's drive also changes speed within a round, so each run's
# own drive rate is shown too: bytes read / seconds with reads in flight (`drive_busy_*` of the
# bench JSON), and the bound from it ("of run bound"); "busy %" is the share of the run's time
# the drive had reads in flight (what the I/O-bound regime must keep near 100%).
#
# Usage: bench/streaming/prefetch_ceiling.sh --model DIR --store STORE --budget 3.1GiB --small DIR
#          [--binary PATH] [-n 24] [-r 2] [--rounds 3] [--read-seconds 5]
set -euo pipefail

BINARY=build/tools/hetmoe
MODEL=; STORE=; BUDGET=; SMALL=; N=24; R=2; ROUNDS=3; READ_SECONDS=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --store) STORE=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --small) SMALL=$2; shift 2 ;;
    -n) N=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --read-seconds) READ_SECONDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n "$MODEL" && -n "$STORE" && -n "$BUDGET" && -n "$SMALL" ]] ||
  { echo "--model, --store, --budget and --small are required" >&2; exit 2; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

FORMAT=$(python3 - "$STORE" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    head = f.read(24)
print({1: "fp8", 2: "int8", 3: "int4", 4: "bf16", 5: "ref"}[struct.unpack_from("<I", head, 16)[0]])
PY
)
for ((r = 1; r <= ROUNDS; r++)); do
  echo "== round $r: drive, CPU bound, streamed off / on / oracle-next / oracle" >&2
  "$BINARY" bench --store "$STORE" --read-test "$READ_SECONDS" -r 1 -o json > "$OUT/read_$r.json"
  "$BINARY" bench -m "$SMALL" --format "$FORMAT" -p 0 -n "$N" -r 1 -o json > "$OUT/cpu_$r.json"
  "$BINARY" bench -m "$MODEL" --store "$STORE" --dram-budget "$BUDGET" -p 0 -n "$N" -r "$R" --repeat-tokens \
    --prefetch off,on,oracle-next,oracle -o json > "$OUT/stream_$r.json"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print("| round | drive GB/s | CPU bound t/s | prefetch | t/s | NVMe MB/tok | hit % | recall % | over-fetch % | I/O wait % | busy % | GB/s busy | of bound | of run bound |")
print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
share, run_share = {}, {}
for r in range(1, rounds + 1):
    bw = json.load(open(f"{out}/read_{r}.json"))[0]["bytes_per_second"]
    cpu = json.load(open(f"{out}/cpu_{r}.json"))[0]["tokens_per_second"]
    for row in json.load(open(f"{out}/stream_{r}.json")):
        bound = 1.0 / max(row["nvme_bytes_per_token"] / bw, 1.0 / cpu)
        ratio = row["tokens_per_second"] / bound
        busy_bw = row["drive_busy_bytes_per_second"] or bw
        run_bound = 1.0 / max(row["nvme_bytes_per_token"] / busy_bw, 1.0 / cpu)
        run_ratio = row["tokens_per_second"] / run_bound
        share.setdefault(row["prefetch"], []).append(ratio)
        run_share.setdefault(row["prefetch"], []).append(run_ratio)
        print(f"| {r} | {bw/1e9:.2f} | {cpu:.2f} | {row['prefetch']} | {row['tokens_per_second']:.2f} | "
              f"{row['nvme_bytes_per_token']/1e6:.1f} | {100*row['cache_hit_rate']:.1f} | {100*row['prefetch_recall']:.1f} | "
              f"{100*row['prefetch_overfetch']:.1f} | {100*row['io_wait_share']:.1f} | {100*row['drive_busy_share']:.0f} | "
              f"{busy_bw/1e9:.2f} | {100*ratio:.0f}% | {100*run_ratio:.0f}% |")
print()
for mode in share:
    a, b = share[mode], run_share[mode]
    print(f"{mode}: {100*min(a):.0f}-{100*max(a):.0f}% of the bound (mean {100*sum(a)/len(a):.0f}%), "
          f"{100*min(b):.0f}-{100*max(b):.0f}% of the run's own bound (mean {100*sum(b)/len(b):.0f}%)")
PY
