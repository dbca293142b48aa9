#!/usr/bin/env bash
# Benchmarks; each prints a table. `bench.sh store` runs only the datastore benchmark
# (minik's store beside etcd 3.4 in the same run); `bench.sh api` only the API server's
# (a release `minik server` driven over HTTPS by kube-rs clients); `bench.sh sched` the
# scheduler's (10,000 pods on 1,000 simulated nodes); `bench.sh pods` the real node's (100
# busybox pods in real containers; needs root); `bench.sh net` the network's (service proxy
# sync of 1,000 services with 10 endpoints each into a scratch network namespace, and
# cluster DNS queries per second; needs root); `bench.sh start` how fast a release server
# starts (to /readyz and to its node Ready, 5 starts from empty data dirs; needs root), its
# stripped binary size and its idle memory.
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
pods() {
  cargo build --release --locked -p minik
  cargo bench --locked -p minik-bench --bench pods
}
start() {
  cargo build --release --locked -p minik
  cargo bench --locked -p minik-bench --bench start
}
case "$which" in
  store) cargo bench --locked -p minik-bench --bench store ;;
  api) api ;;
  sched) sched ;;
  pods) pods ;;
  net) cargo bench --locked -p minik-bench --bench net ;;
  start) start ;;
  all) cargo bench --locked -p minik-bench --bench store; api; sched; pods; cargo bench --locked -p minik-bench --bench net; start ;;
  *) echo "bench.sh: unknown benchmark $which (store, api, sched, pods, net, start, all)" >&2; exit 2 ;;
esac
