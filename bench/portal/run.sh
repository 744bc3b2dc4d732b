#!/usr/bin/env bash
# Portal throughput benchmark: pgbench -S direct / through a Tandem portal / through HAProxy,
# plain, TLS and connection-per-transaction, interleaved (see docs/benchmarks.md).
#   bench/portal/run.sh [--seconds 15] [--rounds 3] [--only direct,portal,haproxy] [--keep]
# Run as root. Uses $TANDEM_BIN if set, otherwise builds build/src/cli/tandem.
# Rewrites the "Portal throughput" section of docs/benchmarks.md and bench/portal/results.json
# unless --no-doc is given.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ $EUID -ne 0 ]]; then
  echo "run.sh: run as root (PostgreSQL is started as the postgres user)" >&2
  exit 2
fi
"$root/scripts/install-deps.sh" --bench
tandem="${TANDEM_BIN:-}"
if [[ -z "$tandem" ]]; then
  "$root/scripts/build.sh" tandem
  tandem="$root/build/src/cli/tandem"
fi
doc=(--doc "$root/docs/benchmarks.md" --notes "$root/bench/portal/notes.md" --json "$root/bench/portal/results.json")
args=()
for a in "$@"; do
  if [[ "$a" == "--no-doc" ]]; then doc=(); else args+=("$a"); fi
done
exec /usr/bin/python3 "$root/bench/portal/bench.py" --tandem "$tandem" --command "bench/portal/run.sh${*:+ $*}" \
  "${doc[@]}" "${args[@]}"
