#!/usr/bin/env bash
# Only the end-to-end tests (the real binary, real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build -p minik
cargo nextest run -p minik-tests -E 'test(/^e2e_/) | test(/^store_crash::/) | test(/^store_sqlite::/)' "$@"
