#!/usr/bin/env bash
# Backup benchmark: Tandem base backups (file:// and s3rver) against pg_basebackup -Ft
# (plain and server-zstd) and pgBackRest (zstd + aes-256-cbc, process-max 1 and 2) on one
# pgbench -i -s SCALE database, then the restore of each, then WAL archiving after a burst
# (tandem wal-push vs pgBackRest archive-push sync and async). See docs/benchmarks.md.
#   bench/backup/run.sh [--scale 100] [--burst 64] [--keep] [--workdir DIR]
# Run as root. Uses $TANDEM_BIN if set, otherwise builds build/src/cli/tandem.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ $EUID -ne 0 ]]; then
  echo "run.sh: run as root (PostgreSQL and pgBackRest run as the postgres user)" >&2
  exit 2
fi
"$root/scripts/install-deps.sh" --bench
tandem="${TANDEM_BIN:-}"
if [[ -z "$tandem" ]]; then
  "$root/scripts/build.sh" tandem
  tandem="$root/build/src/cli/tandem"
fi
exec /usr/bin/python3 "$root/bench/backup/bench.py" --tandem "$tandem" --root "$root" "$@"
