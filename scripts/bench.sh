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
#   scripts/bench.sh --tls     only wss://: ringws against tokio-websockets and
#                              fastwebsockets behind tokio-rustls, server and
#                              loadgen sharing core 0, and ringws's ns/msg
#                              over ws:// and wss:// (about 4 minutes; with
#                              --quick about 1); needs openssl. Writes
#                              target/bench/{results-tls.json,report-tls.md}.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " == *" --tls "* ]]; then
  # The TLS build in a target directory of its own: one cargo invocation
  # with both features unifies them, and target/release's ringws and
  # loadgen would then carry TLS code; the plain figures come from the
  # binaries they always did, and neither build evicts the other.
  cargo build --release --quiet --target-dir target/tls -p ringws -p loadgen \
    --features ringws/tls,loadgen/tls
else
  cargo build --release --quiet -p ringws -p loadgen
fi
cargo build --release --quiet --manifest-path benches/peers/Cargo.toml --target-dir target
exec python3 scripts/bench.py "$@"
