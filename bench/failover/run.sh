#!/usr/bin/env bash
# Failover and switchover benchmark, Tandem against Patroni 3.0.2 (see docs/benchmarks.md).
#   bench/failover/run.sh [--repeats 5] [--quick] [--only tandem|patroni] [--keep]
# Run as root. Uses $TANDEM_BIN if set, otherwise builds build/src/cli/tandem.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ $EUID -ne 0 ]]; then
  echo "run.sh: run as root (PostgreSQL and Patroni are started as the postgres user)" >&2
  exit 2
fi
"$root/scripts/install-deps.sh" --bench
tandem="${TANDEM_BIN:-}"
if [[ -z "$tandem" ]]; then
  "$root/scripts/build.sh" tandem
  tandem="$root/build/src/cli/tandem"
fi
exec /usr/bin/python3 "$root/bench/failover/bench.py" --tandem "$tandem" --command "bench/failover/run.sh${*:+ $*}" "$@"
