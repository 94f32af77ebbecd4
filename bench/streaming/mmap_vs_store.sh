#!/usr/bin/env bash
# The same model decoded two ways, same kernel (`ref`: cpu::linear on the shipped FP8 bytes),
# in alternating rounds (bench/RESULTS.md ## Streaming):
#   mmap   `hetmoe bench -m MODEL --format ref`: experts read through the safetensors mapping,
#          the page cache deciding what stays (llama.cpp's way of running models larger than RAM)
#   store  `hetmoe bench -m MODEL --store STORE --dram-budget BUDGET` (STORE packed --format ref)
# Before each run the model's and the store's pages are evicted from the page cache with
# posix_fadvise(DONTNEED) (dropping caches needs root on the host); each run then does one warm-up
# and -r measured tg runs. The mmap run may use all free RAM as page cache; the store run only its
# budget. Reports tokens/s and the storage bytes the process read per token (/proc/self/io).
#
# --memory-limit 4.6GiB runs both benches in a memory cgroup of that size (v2 memory.max or v1
# memory.limit_in_bytes; needs write access to /sys/fs/cgroup), which counts the page cache: the
# mmap run then really has less memory than the model, as on a machine whose RAM it exceeds,
# instead of all the host's free RAM.
#
# Usage: bench/streaming/mmap_vs_store.sh --model DIR --store STORE [--budget 8GiB] [--binary PATH]
#                                         [-n 12] [-r 2] [--rounds 2] [--memory-limit BYTES]
set -euo pipefail
BINARY=build/tools/hetmoe; MODEL=; STORE=; BUDGET=8GiB; N=12; R=2; ROUNDS=2; LIMIT=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --store) STORE=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    -n) N=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --memory-limit) LIMIT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n "$MODEL" && -n "$STORE" ]] || { echo "--model and --store are required" >&2; exit 2; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
evict() {
  python3 - "$@" <<'PY'
import os, sys
for top in sys.argv[1:]:
    paths = [os.path.join(top, f) for f in os.listdir(top)] if os.path.isdir(top) else [top]
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}
CGROUP=
if [[ -n "$LIMIT" ]]; then
  bytes=${LIMIT%B}; bytes=$(numfmt --from=iec "${bytes%i}")
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    CGROUP=/sys/fs/cgroup/hetmoe-mmap-$$; mkdir "$CGROUP"; echo "$bytes" > "$CGROUP/memory.max"
  else
    CGROUP=/sys/fs/cgroup/memory/hetmoe-mmap-$$; mkdir "$CGROUP"; echo "$bytes" > "$CGROUP/memory.limit_in_bytes"
  fi
  trap 'rm -rf "$OUT"; rmdir "$CGROUP" 2>/dev/null || true' EXIT
fi
# Runs the command inside the cgroup (when there is one).
limited() {
  if [[ -n "$CGROUP" ]]; then
    bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CGROUP" "$@"
  else
    "$@"
  fi
}
for ((r = 1; r <= ROUNDS; r++)); do
  echo "== round $r: mmap${LIMIT:+ (memory limit $LIMIT)}" >&2
  evict "$MODEL" "$STORE"
  limited "$BINARY" bench -m "$MODEL" --format ref -p 0 -n "$N" -r "$R" -o json > "$OUT/mmap_$r.json"
  echo "== round $r: store, budget $BUDGET" >&2
  evict "$MODEL" "$STORE"
  limited "$BINARY" bench -m "$MODEL" --store "$STORE" --dram-budget "$BUDGET" -p 0 -n "$N" -r "$R" -o json > "$OUT/store_$r.json"
done
python3 - "$OUT" "$ROUNDS" "$BUDGET" <<'PY'
import json, sys
out, rounds, budget = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print("| round | mmap t/s | mmap MB/tok read | mmap CPU s/tok | store t/s | store MB/tok read | store CPU s/tok | store / mmap |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios = []
for r in range(1, rounds + 1):
    m = json.load(open(f"{out}/mmap_{r}.json"))[0]
    s = json.load(open(f"{out}/store_{r}.json"))[0]
    ratios.append(s["tokens_per_second"] / m["tokens_per_second"])
    print(f"| {r} | {m['tokens_per_second']:.3f} | {m['process_read_bytes_per_token']/1e6:.0f} | {m['cpu_seconds_per_token']:.2f} | "
          f"{s['tokens_per_second']:.3f} | {s['process_read_bytes_per_token']/1e6:.0f} | {s['cpu_seconds_per_token']:.2f} | "
          f"{ratios[-1]:.2f}x |")
print(f"\nstore (budget {budget}) / mmap: {sum(ratios)/len(ratios):.2f}x mean")
PY
