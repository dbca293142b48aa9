#!/usr/bin/env bash
# Only the end-to-end tests (the real binary, real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build -p minik
cargo nextest run -p minik-tests -E 'binary(/^e2e_/) | binary(store_crash) | binary(store_sqlite)' "$@"
