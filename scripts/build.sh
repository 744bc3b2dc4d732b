#!/usr/bin/env bash
# Configures and builds Tandem into build/ (RelWithDebInfo), or build-asan/ with --asan.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [[ "${1:-}" == "--asan" ]]; then
  dir=build-asan
  args=(-DCMAKE_BUILD_TYPE=Debug -DTANDEM_SANITIZE=ON -DTANDEM_BUILD_BENCH=OFF)
  shift
fi
cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
ninja -C "$dir" "$@"
