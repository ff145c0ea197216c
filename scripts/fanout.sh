#!/usr/bin/env bash
# Fan-out figures of the library's topics, through examples/broadcast.rs:
#  * one publisher, 1,000 subscribers, one server thread: deliveries/s at
#    1, 64 and 256 messages in flight, with server and loadgen on separate
#    cores (split) and on one (shared);
#  * rounds of 320 clients (as uWebSockets' benchmarks/broadcast_test.c):
#    rounds/s, deliveries/s and the server's writes per round;
#  * user-space instructions per delivery (callgrind).
# Every delivery is checked by loadgen (exactly once, in order per sender).
#  * across nodes (scripts/fanout_cross.py, needs redis-server): two nodes
#    sharing the topic through one Redis against one node, Redis's PUBLISH
#    count, latency at fixed rates, the broker thread's instructions per
#    message and its CPU at 100,000 publishes/s.
# Writes target/bench/fanout.json and fanout-cross.json.
#   scripts/fanout.sh           full run (about 5 minutes)
#   scripts/fanout.sh --quick   one load per placement
#   scripts/fanout.sh --cross   the cross-node section only
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p ringws --example broadcast
cargo build --release --quiet -p loadgen
if [[ " $* " != *" --cross "* ]]; then
    python3 scripts/fanout.py "$@"
fi
exec python3 scripts/fanout_cross.py "$@"
