#!/usr/bin/env bash
# Build the shipped binary: target/dist/minik (the dist profile: release with whole-program
# LTO, smaller and slower to build; benchmarks use target/release/minik).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --profile dist --locked -p minik
ls -l target/dist/minik
target/dist/minik --version
