#!/usr/bin/env bash
# Measures a healthy nemesis link proxy on loopback: bulk throughput and added round-trip latency,
# each against a direct connection. Extra arguments go to the benchmark:
#   scripts/bench-proxy.sh --megabytes 1024 --round-trips 50000
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p riptide-nemesis --bench proxy -- "$@"
