#!/usr/bin/env bash
# Installs what hetmoe needs on Debian 12 (apt) — only what is missing. Safe to re-run.
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config git
  libtbb-dev libhwloc-dev liburing-dev libxsimd-dev xtl-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libpcre2-dev libxxhash-dev libcli11-dev libfmt-dev python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "hetmoe: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
