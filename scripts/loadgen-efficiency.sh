#!/usr/bin/env bash
# Is loadgen ever the bottleneck? Compares the CPU time per message of
# loadgen and of the server it measures: throughput mode, 100 connections,
# 20-byte messages, one thread each.
#
# Both processes' CPU time (user + system, /proc/PID/stat) is sampled over
# the same window inside the measured period and divided by the messages
# echoed in it. Two placements, three interleaved rounds each, medians:
#  - shared: both on core 0. Only one runs at a time, so each one's share of
#    the core is its cost; rounds agree within about 2 %.
#  - split: server on core 0, loadgen on core 1 (the placement the figure
#    is quoted for). Both saturate their core, so the ratio is near 1 by
#    construction and noisier; it is printed last.
# A ratio below 1 means loadgen spends less CPU per message than the server.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${EFFICIENCY_PORT:-9103}"
secs="${EFFICIENCY_SECONDS:-6}"
rounds="${EFFICIENCY_ROUNDS:-3}"
out=target/efficiency
mkdir -p "$out"
cargo build --release --quiet -p ringws -p loadgen
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# round PLACEMENT CLIENT_CORE -> appends "server_ns client_ns msgs_per_sec" to $out/PLACEMENT
round() {
  local placement=$1 core=$2
  taskset -c 0 ./target/release/ringws --listen "127.0.0.1:$port" --threads 1 --log-level warn &
  local server=$!
  sleep 0.5
  taskset -c "$core" ./target/release/loadgen "ws://127.0.0.1:$port" --threads 1 --connections 100 \
    --size 20 --warmup 2s --duration "$((secs + 2))s" --quiet --json "$out/run.json" >"$out/report-$placement.txt" &
  local client=$!
  sleep 3
  local s0 c0 t0 s1 c1 t1
  s0=$(cpu $server); c0=$(cpu $client); t0=$(date +%s.%N)
  sleep "$secs"
  s1=$(cpu $server); c1=$(cpu $client); t1=$(date +%s.%N)
  wait $client || { echo "loadgen-efficiency: loadgen failed" >&2; cat "$out/report-$placement.txt"; kill $server; exit 1; }
  kill $server; wait $server 2>/dev/null || true
  python3 - "$out/run.json" "$s0" "$s1" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" >>"$out/$placement" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
if run["errors"]["total"]:
    sys.exit("loadgen-efficiency: the run had errors")
s0, s1, c0, c1 = map(int, sys.argv[2:6])
t0, t1, hz = float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
msgs = run["msgs_per_sec"] * (t1 - t0)
print((s1 - s0) / hz * 1e9 / msgs, (c1 - c0) / hz * 1e9 / msgs, run["msgs_per_sec"])
PY
}

rm -f "$out/shared" "$out/split"
for _ in $(seq "$rounds"); do
  round shared 0
  round split 1
done
cat "$out/report-split.txt"
python3 - "$out" <<'PY'
import statistics, sys
out = sys.argv[1]
for placement, what in (("shared", "both on core 0"), ("split", "server core 0, loadgen core 1")):
    rows = [list(map(float, l.split())) for l in open("%s/%s" % (out, placement))]
    ratios = [c / s for s, c, _ in rows]
    print("loadgen-efficiency: %-6s (%s): %.0f msgs/s; CPU per message: server %.0f ns, loadgen %.0f ns; ratio %s"
          % (placement, what, statistics.median(r[2] for r in rows), statistics.median(r[0] for r in rows),
             statistics.median(r[1] for r in rows), " ".join("%.2f" % r for r in ratios)))
rows = [list(map(float, l.split())) for l in open("%s/split" % out)]
print("loadgen-efficiency: ratio loadgen/server %.2f" % statistics.median(c / s for s, c, _ in rows))
PY
