#!/usr/bin/env bash
# Benchmarks; each prints a table. `bench.sh store` runs only the datastore benchmark
# (minik's store beside etcd 3.4 in the same run); `bench.sh api` only the API server's
# (a release `minik server` driven over HTTPS by kube-rs clients); `bench.sh sched` the
# scheduler's (10,000 pods on 1,000 simulated nodes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
which="${1:-all}"
api() {
  cargo build --release --locked -p minik
  cargo bench --locked -p minik-bench --bench api
}
sched() {
  cargo build --release --locked -p minik
  cargo bench --locked -p minik-bench --bench sched
}
case "$which" in
  store) cargo bench --locked -p minik-bench --bench store ;;
  api) api ;;
  sched) sched ;;
  all) cargo bench --locked -p minik-bench --bench store; api; sched ;;
  *) echo "bench.sh: unknown benchmark $which (store, api, sched, all)" >&2; exit 2 ;;
esac
