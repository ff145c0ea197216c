#!/usr/bin/env bash
# Is loadgen ever the bottleneck? Server and loadgen each get one core (one
# thread, pinned with taskset to cores 0 and 1); loadgen runs throughput
# mode with 100 connections and 20-byte messages. Both processes' CPU time
# (user + system, from /proc/PID/stat) is sampled over the same window
# inside the measured period and divided by the messages echoed in it.
# Prints both figures and, last, the ratio loadgen / server (below 1 means
# loadgen spends less CPU per message than the server it measures).
set -euo pipefail
cd "$(dirname "$0")/.."
port="${EFFICIENCY_PORT:-9103}"
secs="${EFFICIENCY_SECONDS:-8}"
out=target/efficiency
mkdir -p "$out"
cargo build --release --quiet -p ringws -p loadgen

taskset -c 0 ./target/release/ringws --listen "127.0.0.1:$port" --threads 1 --log-level warn &
server=$!
trap 'kill $server $client 2>/dev/null || true' EXIT
sleep 0.5
taskset -c 1 ./target/release/loadgen "ws://127.0.0.1:$port" --threads 1 --connections 100 --size 20 \
  --warmup 2s --duration "$((secs + 2))s" --quiet --json "$out/run.json" >"$out/report.txt" &
client=$!

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sleep 3
s0=$(cpu $server); c0=$(cpu $client); t0=$(date +%s.%N)
sleep "$secs"
s1=$(cpu $server); c1=$(cpu $client); t1=$(date +%s.%N)
wait $client
cat "$out/report.txt"

python3 - "$out/run.json" "$s0" "$s1" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
s0, s1, c0, c1 = map(int, sys.argv[2:6])
t0, t1, hz = float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
if run["errors"]["total"]:
    sys.exit("loadgen-efficiency: the run had errors")
window = t1 - t0
msgs = run["msgs_per_sec"] * window
server_ns = (s1 - s0) / hz * 1e9 / msgs
client_ns = (c1 - c0) / hz * 1e9 / msgs
print("loadgen-efficiency: %.0f msgs/s; CPU over %.1f s: server %.0f%%, loadgen %.0f%%"
      % (run["msgs_per_sec"], window, (s1 - s0) / hz / window * 100, (c1 - c0) / hz / window * 100))
print("loadgen-efficiency: CPU time per message: server %.0f ns, loadgen %.0f ns" % (server_ns, client_ns))
print("loadgen-efficiency: ratio loadgen/server %.2f" % (client_ns / server_ns))
PY
