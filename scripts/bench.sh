#!/usr/bin/env bash
# Side-by-side benchmark of ringws, three Rust WebSocket servers and a plain
# TCP echo on this machine: throughput in two placements, latency at fixed
# rates, server CPU time, user-space instructions per echoed message, and
# ringws's compressed echo (permessage-deflate).
# Writes target/bench/{results.json,report.md,chart.svg}.
#   scripts/bench.sh           full run (about 10 minutes)
#   scripts/bench.sh --quick   fewer loads, one round (about 3 minutes)
#   scripts/bench.sh --deflate only ringws's permessage-deflate echo (off,
#                              shared, dedicated; about 1 minute)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p ringws -p loadgen
cargo build --release --quiet --manifest-path benches/peers/Cargo.toml --target-dir target
exec python3 scripts/bench.py "$@"
