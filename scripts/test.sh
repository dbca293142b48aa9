#!/usr/bin/env bash
# Every test tier: lint (fmt, clippy), then unit, integration and end-to-end tests (nextest
# runs them all; the e2e tests drive the real minik binary built first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

if [[ -n "${CI:-}" ]]; then
    # A clean CI build gains nothing from incremental caches; they took 5 GB of disk.
    export CARGO_INCREMENTAL=0
fi
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
echo "== disk free for $target: $(df -h --output=avail "$target" | tail -1 | tr -d ' ')"

echo "== lint"
bash scripts/lint.sh

echo "== build (the e2e tests drive target/debug/minik)"
cargo build --locked -p minik

echo "== unit, integration and e2e tests"
profile=default
[[ -n "${CI:-}" ]] && profile=ci
cargo nextest run --workspace --exclude minik-bench --profile "$profile" "$@"
