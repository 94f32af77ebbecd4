#!/usr/bin/env bash
# Store reads in the engine's access pattern vs fio on the same file, same block size and queue
# depth, in the same run (bench/RESULTS.md ## Streaming).
#
# The engine pattern (hetmoe bench --read-test, io/store_reads.h): random records, each read as
# BLOCK-sized O_DIRECT reads into its own registered slot, RECORDS records in flight, QD reads in
# the device, every record's XXH3-64 verified on arrival. fio: io_uring, O_DIRECT, randread,
# bs=BLOCK, iodepth=QD over the same store file, both with plain buffers and with registered
# buffers and file (--fixedbufs --registerfiles: what the engine does, and the fair reference: on
# a KVM guest with virtio disk, stop 17, plain-buffer fio read 0.7 GB/s where fixed buffers read
# 1.9, because every plain read pins its pages). Rounds alternate engine / fio so drift in a
# shared disk's bandwidth hits both.
#
# Target: engine >= 90% of fio (the fixed-buffer fio, the stricter of the two).
# Usage: bench/streaming/read_vs_fio.sh --store STORE [--binary PATH] [--block 1M] [--qd 256]
#                                       [--records 8] [--seconds 10] [--rounds 2]
set -euo pipefail

BINARY=build/tools/hetmoe
STORE=
BLOCK=1M
QD=256
RECORDS=8
SECONDS_PER=10
ROUNDS=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --store) STORE=$2; shift 2 ;;
    --block) BLOCK=$2; shift 2 ;;
    --qd) QD=$2; shift 2 ;;
    --records) RECORDS=$2; shift 2 ;;
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n "$STORE" ]] || { echo "--store STORE is required" >&2; exit 2; }
BLOCK_BYTES=$(numfmt --from=iec "${BLOCK}")

engine() {  # $1: extra flag; prints GB/s
  "$BINARY" bench --store "$STORE" --read-test "$SECONDS_PER" -r 1 --block-size "$BLOCK_BYTES" \
    --queue-depth "$QD" --records-in-flight "$RECORDS" $1 -o json |
    python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)[0]["bytes_per_second"]/1e9))'
}
fio_run() {  # $1: rw mode, $2: extra fio flags; prints GB/s
  fio --name=store --filename="$STORE" --readonly --ioengine=io_uring --direct=1 --rw="$1" ${2:-} --bs="$BLOCK" \
    --iodepth="$QD" --runtime="$SECONDS_PER" --time_based --output-format=json |
    python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"]/1e9))'
}

echo "store: $STORE ($(du -h --apparent-size "$STORE" | cut -f1)), block $BLOCK, QD $QD, $RECORDS records in flight, ${SECONDS_PER}s per run"
echo
echo "| round | engine, verify (GB/s) | engine, no verify (GB/s) | fio randread, fixed buffers (GB/s) | fio randread (GB/s) | fio read (GB/s) |"
echo "|---:|---:|---:|---:|---:|---:|"
declare -a EV EN FX FR FS
for ((r = 1; r <= ROUNDS; r++)); do
  ev=$(engine "")
  fx=$(fio_run randread "--fixedbufs --registerfiles")
  en=$(engine --no-verify)
  fr=$(fio_run randread)
  fs=$(fio_run read)
  EV+=("$ev"); EN+=("$en"); FX+=("$fx"); FR+=("$fr"); FS+=("$fs")
  echo "| $r | $ev | $en | $fx | $fr | $fs |"
done
python3 - "${EV[*]}" "${EN[*]}" "${FX[*]}" "${FR[*]}" "${FS[*]}" <<'PY'
import sys
ev, en, fx, fr, fs = ([float(x) for x in a.split()] for a in sys.argv[1:6])
m = lambda v: sum(v) / len(v)
print()
print(f"mean: engine {m(ev):.3f} GB/s with checksums, {m(en):.3f} without; fio randread {m(fx):.3f} with fixed "
      f"buffers, {m(fr):.3f} without; fio read {m(fs):.3f}")
print(f"engine / fio randread with fixed buffers: {100*m(ev)/m(fx):.1f}% (verify), {100*m(en)/m(fx):.1f}% (no verify)  "
      f"[target >= 90%]; / fio without: {100*m(ev)/m(fr):.1f}%")
PY
