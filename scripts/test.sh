#!/usr/bin/env bash
# The README's second command: install what is missing, build and run every test — once in
# Release and once under AddressSanitizer + UndefinedBehaviorSanitizer (host code only: the CUDA
# backend is built and its tests run in the Release pass).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
jobs=$(nproc)

echo "== Release build and tests" >&2
BUILD_DIR="$root/build" "$root/scripts/build.sh"
ctest --test-dir "$root/build" --output-on-failure -j "$jobs"

echo "== ASan + UBSan build and tests" >&2
BUILD_DIR="$root/build-asan" BUILD_TYPE=RelWithDebInfo "$root/scripts/build.sh" -DHETMOE_SANITIZE=ON -DHETMOE_BENCH=OFF -DHETMOE_CUDA=OFF \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g -DNDEBUG"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions="$root/tests/lsan.supp" \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  HETMOE_TEST_SANITIZED=1 ctest --test-dir "$root/build-asan" --output-on-failure -j "$jobs"
