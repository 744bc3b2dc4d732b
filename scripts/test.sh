#!/usr/bin/env bash
# The whole test suite: unit tests (also under ASan/UBSan), the fuzz smoke run, and the
# integration tests against real etcd and PostgreSQL. Installs and builds what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [[ -f package.json ]]; then npm install --no-audit --no-fund --silent; fi

echo "== build"
scripts/build.sh
echo "== build (ASan + UBSan, unit tests)"
scripts/build.sh --asan $(cd build && ninja -t targets all | grep -oE '^unit_[a-z_]+' | sort -u)

echo "== unit tests (ASan + UBSan)"
(cd build-asan && ctest -L unit --output-on-failure -j2)

for fuzzer in fuzz/run_*.sh; do
  [[ -x "$fuzzer" ]] || continue
  echo "== fuzz smoke run: $fuzzer"
  "$fuzzer" 30
done

echo "== unit and integration tests"
# Timing-sensitive integration tests get one retry on this shared 2-core machine.
(cd build && ctest --output-on-failure -j1 --timeout 900 --repeat until-pass:2)
