#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the main job.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
hetmoe="$root/build/tools/hetmoe"
model="$root/build/tiny-random"
echo "== hetmoe make-model --preset tiny -o $model" >&2
"$hetmoe" make-model --preset tiny --force -o "$model"
echo "== hetmoe inspect $model" >&2
"$hetmoe" inspect "$model"
