#!/usr/bin/env bash
# Build the release binary: target/release/minik.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked -p minik
ls -l target/release/minik
target/release/minik --version
