#!/usr/bin/env bash
# Fan-out figures of the library's topics, through examples/broadcast.rs:
#  * one publisher, 1,000 subscribers, one server thread: deliveries/s at
#    1, 64 and 256 messages in flight, with server and loadgen on separate
#    cores (split) and on one (shared);
#  * rounds of 320 clients (as uWebSockets' benchmarks/broadcast_test.c):
#    rounds/s, deliveries/s and the server's writes per round;
#  * user-space instructions per delivery (callgrind).
# Every delivery is checked by loadgen (exactly once, in order per sender).
# Writes target/bench/fanout.json.
#   scripts/fanout.sh           full run (about 3 minutes)
#   scripts/fanout.sh --quick   one load per placement
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p ringws --example broadcast
cargo build --release --quiet -p loadgen
exec python3 scripts/fanout.py "$@"
