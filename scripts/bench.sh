#!/usr/bin/env bash
# Benchmarks; each prints a table. `bench.sh store` runs only the datastore benchmark
# (minik's store beside etcd 3.4 in the same run); `bench.sh api` only the API server's
# (a release `minik server` driven over HTTPS by kube-rs clients).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
which="${1:-all}"
api() {
  cargo build --release --locked -p minik
  cargo bench --locked -p minik-bench --bench api
}
case "$which" in
  store) cargo bench --locked -p minik-bench --bench store ;;
  api) api ;;
  all) cargo bench --locked -p minik-bench --bench store; api ;;
  *) echo "bench.sh: unknown benchmark $which (store, api, all)" >&2; exit 2 ;;
esac
