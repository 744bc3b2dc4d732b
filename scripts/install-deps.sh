#!/usr/bin/env bash
# Installs everything Tandem needs to build, run and test on Debian 12 (as root).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail

# postgresql-server-dev-15: headers for the archive module (tandem_archive.so, src/pgmodule).
# lld-16: links tandem with its code laid out by use and packed relocations (CMakeLists.txt, TANDEM_CODE_ORDER).
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config clang-format clang-14 libclang-rt-14-dev
  libgrpc++-dev libgrpc-dev libabsl-dev libre2-dev libc-ares-dev zlib1g-dev libprotobuf-dev protobuf-compiler
  protobuf-compiler-grpc
  libboost-dev libboost-system-dev nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libcli11-dev libzstd-dev libssl-dev libpq-dev libgtest-dev libgmock-dev libbenchmark-dev
  postgresql-15 postgresql-contrib postgresql-server-dev-15 etcd-server etcd-client openssl curl bc procps iproute2
  lld-16
)
# Only for benchmarks (the anchors we compare against).
BENCH_PACKAGES=(haproxy patroni python3-etcd python3-psycopg2 pgbackrest)

want=("${PACKAGES[@]}")
if [[ "${1:-}" == "--bench" ]]; then want+=("${BENCH_PACKAGES[@]}"); fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Test-only tools: Node.js/npm (the S3 test server) and the aws CLI (reads what we upload).
# Images that already ship them (possibly not from Debian) are left alone.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v aws >/dev/null || missing+=(awscli)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian starts a default cluster on port 5432 and an etcd on 2379; Tandem runs its own.
if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q "^15 *main .*online"; then
  pg_ctlcluster 15 main stop || true
fi
if systemctl is-active --quiet etcd 2>/dev/null; then systemctl stop etcd || true; fi
