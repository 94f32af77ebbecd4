#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the main job — text
# generation with the bundled model (models/tiny-shakespeare, a DeepSeek-V3-architecture MoE
# trained on Shakespeare and shipped in FP8 exactly like the published checkpoint).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
hetmoe="$root/build/tools/hetmoe"
model="$root/models/tiny-shakespeare"
prompt=${1:-"ROMEO:"}
echo "== hetmoe run -m models/tiny-shakespeare -p \"$prompt\" -n 128" >&2
"$hetmoe" run -m "$model" -p "$prompt" -n 128
