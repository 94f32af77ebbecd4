#!/usr/bin/env bash
# Benchmark: `hetmoe make-model` write bandwidth against `dd` on the same disk in the same run,
# and the time `hetmoe inspect` takes to open every shard header and validate the tensors.
#
# Targets (bench/RESULTS.md): make-model >= 50% of dd's sequential write bandwidth; inspect of
# a ~30+ GB checkpoint < 1 s.
#
# Usage: bench/make_model.sh [--binary PATH] [--dir DIR] [--layers L] [--dd-gb N]
#                            [--max-shard-size SIZE] [--keep]
#   --binary  the hetmoe binary (default: build/tools/hetmoe)
#   --dir     scratch directory on the disk to measure (default: /work/bench-make-model)
#   --layers  ds3-layers layer count: 1 dense + (L-1) MoE layers, ~11.5 GB per MoE layer (default 4)
#   --dd-gb   size of the dd reference write in GB (default 8)
#   --experts routed experts per MoE layer (default 256; fewer for a quick smoke run)
#   --keep    keep the generated model (deleted by default)
# Both writes end with fdatasync (dd conv=fdatasync; make-model syncs every shard), so the
# numbers are disk bandwidth, not page-cache bandwidth. Prints a markdown summary on stdout.
set -euo pipefail

BINARY=build/tools/hetmoe
DIR=/work/bench-make-model
LAYERS=4
DD_GB=8
SHARD=5GB
KEEP=0
EXPERTS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --dd-gb) DD_GB=$2; shift 2 ;;
    --max-shard-size) SHARD=$2; shift 2 ;;
    --experts) EXPERTS=(--experts "$2"); shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

[[ -x "$BINARY" ]] || { echo "no hetmoe binary at $BINARY (build it, or pass --binary)" >&2; exit 1; }
mkdir -p "$DIR"
MODEL="$DIR/ds3-layers-$LAYERS"
DD_FILE="$DIR/dd.bin"
cleanup() { rm -f "$DD_FILE"; [[ $KEEP == 1 ]] || rm -rf "$MODEL"; }
trap cleanup EXIT

# Model size: 1 dense layer ~0.64 GB + (L-1) MoE layers ~11.51 GB each (hetmoe inspect prints
# the exact figure). Refuse to start unless >= 20 GB stay free afterwards.
MODEL_GB=$(( LAYERS > 1 ? 1 + (LAYERS - 1) * 23 / 2 : 12 ))
FREE_GB=$(( $(df --output=avail -B1 "$DIR" | tail -1) / 1000000000 ))
NEED_GB=$(( (MODEL_GB > DD_GB ? MODEL_GB : DD_GB) + 20 ))
if (( FREE_GB < NEED_GB )); then
  echo "only ${FREE_GB} GB free on $DIR; need ~${NEED_GB} GB (model ~${MODEL_GB} GB + 20 GB margin)." \
       "Use fewer --layers." >&2
  exit 1
fi

now() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }  # MB/s

# 1. dd reference: sequential 8 MiB writes, fdatasync at the end.
DD_COUNT=$(( DD_GB * 1000000000 / 8388608 ))
sync
T0=$(now)
dd if=/dev/zero of="$DD_FILE" bs=8M count="$DD_COUNT" conv=fdatasync status=none
T1=$(now)
rm -f "$DD_FILE"
DD_BYTES=$(( DD_COUNT * 8388608 ))
DD_S=$(awk -v a="$T0" -v b="$T1" 'BEGIN { print b - a }')

# 2. make-model, same disk.
rm -rf "$MODEL"
sync
RSS_FILE=$(mktemp)
T0=$(now)
/usr/bin/time -f "%M" -o "$RSS_FILE" "$BINARY" make-model -o "$MODEL" --preset ds3-layers \
  --layers "$LAYERS" --seed 1 --max-shard-size "$SHARD" "${EXPERTS[@]}" > "$DIR/make-model.log"
T1=$(now)
MM_S=$(awk -v a="$T0" -v b="$T1" 'BEGIN { print b - a }')
MM_BYTES=$(du -sb --apparent-size "$MODEL" | cut -f1)
MM_RSS_MB=$(( $(cat "$RSS_FILE") / 1024 ))
rm -f "$RSS_FILE"
SHARDS=$(ls "$MODEL"/*.safetensors | wc -l)

# 3. inspect: open every shard header, build the index, validate against the inventory.
# Three runs; the first right after writing (headers are likely still in the page cache).
INSPECT_TIMES=()
for _ in 1 2 3; do
  T0=$(now)
  "$BINARY" inspect "$MODEL" --json > "$DIR/inspect.json"
  T1=$(now)
  INSPECT_TIMES+=("$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.3f", b - a }')")
done
VALIDATED=$(grep -o '"validated": [a-z]*' "$DIR/inspect.json" | cut -d' ' -f2)
TENSORS=$(grep -o '"tensor_count": [0-9]*' "$DIR/inspect.json" | cut -d' ' -f2)

DD_RATE=$(rate "$DD_BYTES" "$DD_S")
MM_RATE=$(rate "$MM_BYTES" "$MM_S")
RATIO=$(awk -v a="$MM_RATE" -v b="$DD_RATE" 'BEGIN { printf "%.0f", 100 * a / b }')
cat <<EOF
### make-model write bandwidth and inspect time ($(date -u +%Y-%m-%d), $(hostname))

Disk: \`$(df --output=source "$DIR" | tail -1)\` at \`$DIR\`, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg).

| measurement | bytes | seconds | MB/s |
|---|---:|---:|---:|
| \`dd if=/dev/zero bs=8M count=$DD_COUNT conv=fdatasync\` | $DD_BYTES | $(printf %.1f "$DD_S") | $DD_RATE |
| \`hetmoe make-model --preset ds3-layers --layers $LAYERS --seed 1 --max-shard-size $SHARD ${EXPERTS[*]}\` | $MM_BYTES | $(printf %.1f "$MM_S") | $MM_RATE |

make-model / dd = **${RATIO}%** (target >= 50%); $SHARDS shards, $TENSORS tensors, peak RSS ${MM_RSS_MB} MB.

\`hetmoe inspect $MODEL --json\` (open all headers + validate, whole process): ${INSPECT_TIMES[*]} s
(validated: $VALIDATED; target < 1 s).
EOF
