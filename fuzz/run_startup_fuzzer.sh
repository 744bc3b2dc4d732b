#!/bin/sh
# Builds fuzz/startup_fuzzer with clang++-14 (libFuzzer + ASan + UBSan) and runs it for
# SECONDS (default 60) on a scratch copy of the seed corpus. Exit status is non-zero when
# the fuzzer finds a crash; the crashing input is left in BUILD_DIR (crash-*).
# Usage: fuzz/run_startup_fuzzer.sh [SECONDS] [BUILD_DIR]
set -eu
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build-fuzz}
cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" startup_fuzzer >/dev/null
# New inputs go to the build tree (the first corpus directory); the seeds are only read.
mkdir -p "$build/corpus-startup"
cd "$build"
./startup_fuzzer -max_total_time="$seconds" -max_len=12000 -timeout=10 -print_final_stats=1 \
  "$build/corpus-startup" "$root/fuzz/corpus/startup"
