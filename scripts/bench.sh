#!/usr/bin/env bash
# Benchmarks; each prints a table. `bench.sh store` runs only the datastore benchmark
# (minik's store beside etcd 3.4 in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
which="${1:-all}"
case "$which" in
  store|all) cargo bench --locked -p minik-bench --bench store ;;
  *) echo "bench.sh: unknown benchmark $which (store, all)" >&2; exit 2 ;;
esac
