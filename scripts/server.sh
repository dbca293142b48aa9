#!/usr/bin/env bash
# Install what is missing, build, and run a single-node cluster. The admin kubeconfig is
# written to /etc/minik/minik.yaml (override with MINIK_KUBECONFIG_OUTPUT or -o).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked -p minik
exec target/release/minik server "$@"
