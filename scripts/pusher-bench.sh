#!/usr/bin/env bash
# ringws-gateway against sockudo (scripts/peers-sockudo.sh builds it from
# crates.io) on the gateway issue's three targets, side by side in one run:
#
#   fan-out  one publisher through the HTTP API (closed loop), one channel,
#            CLIENTS (1,000) subscribers: deliveries/s; beside them the
#            ceiling of that load here (peer-fanout-ceiling: each delivery
#            one send to its own loopback socket, no protocol at all, the
#            "server" on core 0 and the "clients" on core 1);
#   latency  the same at a fixed RATE events/s (100: 100,000 deliveries/s):
#            delivery latency from the intended send (coordinated omission
#            corrected), p50/p99/p99.9;
#   api      HTTP API publishes/s: 4 publishers, 8 requests in flight each,
#            one subscriber.
#
# The server on core 0 (one worker thread; sockudo's tokio runtime sees one
# core through its affinity), loadgen on core 1, one server at a time, the
# servers alternating RUNS (3) times per scenario; each run DURATION (10s).
# Prints each run and the median ratio. Also the memory of idle subscribed
# connections (scripts/pusher-idle.sh, IDLE (2,000) connections).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
dur=${DURATION:-10s}
clients=${CLIENTS:-1000}
rate=${RATE:-100}
idle=${IDLE:-2000}
ulimit -n "$(ulimit -Hn)"

cargo build --release -q -p ringws-gateway -p loadgen
sockudo=$(scripts/peers-sockudo.sh)
(cd benches/peers && CARGO_TARGET_DIR=../../target cargo build --release -q --bin peer-fanout-ceiling)
gw="target/release/ringws-gateway --app-id 1 --app-key app-key --app-secret app-secret --listen 127.0.0.1:6001 --threads 1 --log-level warn"
sk="$sockudo --config benches/peers/sockudo/config.toml"
out=target/pusher-bench
mkdir -p "$out"

server=""
port=""
stop() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  server=""
}
trap stop EXIT

# start NAME: the server on core 0 (its port in $port), once the port
# answers.
start() {
  local cmd
  case $1 in
    gateway) cmd=$gw port=6001 ;;
    sockudo) cmd=$sk port=6002 ;;
  esac
  taskset -c 0 bash -c "exec $cmd" >"$out/$1.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return
    fi
    sleep 0.1
  done
  echo "pusher-bench: $1 did not start (see $out/$1.log)" >&2
  exit 1
}

# load NAME SCENARIO RUN: loadgen on core 1 against NAME, into
# $out/SCENARIO-NAME-RUN.json.
load() {
  local json args
  start "$1"
  json="$out/$2-$1-$3.json"
  case $2 in
    fanout) args=(--clients "$clients" --publishers 1) ;;
    latency) args=(--clients "$clients" --publishers 1 --rate "$rate") ;;
    api) args=(--clients 1 --publishers 4 --in-flight 8) ;;
  esac
  taskset -c 1 target/release/loadgen pusher --url "ws://127.0.0.1:$port" \
    --app-id 1 --app-key app-key --app-secret app-secret --channels 1 \
    --threads 1 --duration "$dur" --warmup 1s -q --json "$json" "${args[@]}" \
    >"$out/$2-$1-$3.txt" || { echo "pusher-bench: loadgen failed against $1 ($2, run $3)" >&2; cat "$out/$2-$1-$3.txt" >&2; exit 1; }
  stop
}

# ceiling RUN: the fan-out's ceiling, into $out/fanout-ceiling-RUN.json.
ceiling() {
  target/release/peer-fanout-ceiling --subscribers "$clients" --size 151 \
    --duration "$dur" --warmup 1 --json "$out/fanout-ceiling-$1.json" \
    >"$out/fanout-ceiling-$1.txt" || { echo "pusher-bench: the fan-out ceiling failed (run $1)" >&2; cat "$out/fanout-ceiling-$1.txt" >&2; exit 1; }
}

for scenario in fanout latency api; do
  for run in $(seq "$runs"); do
    for name in gateway sockudo; do
      load "$name" "$scenario" "$run"
    done
    if [ "$scenario" = fanout ]; then
      ceiling "$run"
    fi
  done
done

python3 - "$out" "$runs" <<'EOF'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def get(s, n, r):
    return json.load(open(f"{out}/{s}-{n}-{r}.json"))
def row(label, f, fmt, better_high=True):
    ratios = []
    for r in range(1, runs + 1):
        g, k = f(get(SC, "gateway", r)), f(get(SC, "sockudo", r))
        ratios.append(g / k if better_high else k / g)
        print(f"  run {r}: ringws-gateway {fmt(g)}  sockudo {fmt(k)}  ratio {ratios[-1]:.2f}x")
    print(f"  {label}: median ratio {statistics.median(ratios):.2f}x")
SC = "fanout"
print(f"fan-out, deliveries/s (closed loop, 1 publisher, 1 channel):")
row("deliveries/s", lambda d: d["deliveries_per_sec"], lambda v: f"{v:,.0f}")
shares = {"gateway": [], "sockudo": []}
for r in range(1, runs + 1):
    c = get(SC, "ceiling", r)["deliveries_per_sec"]
    g, k = get(SC, "gateway", r)["deliveries_per_sec"], get(SC, "sockudo", r)["deliveries_per_sec"]
    shares["gateway"].append(g / c)
    shares["sockudo"].append(k / c)
    print(f"  run {r}: ceiling {c:,.0f}  ringws-gateway {g / c:.0%} of it  sockudo {k / c:.0%}  3x sockudo {3 * k / c:.0%}")
print(f"  of the ceiling (median): ringws-gateway {statistics.median(shares['gateway']):.0%}, sockudo {statistics.median(shares['sockudo']):.0%}")
SC = "latency"
print(f"latency at a fixed rate (from the intended send), sockudo's over ringws-gateway's:")
for p in ["p50", "p99", "p99.9"]:
    print(f" {p}")
    row(f"{p} (higher: ringws-gateway faster)", lambda d: d["latency_ns"][p] / 1e3, lambda v: f"{v:,.0f} us", better_high=False)
SC = "api"
print(f"HTTP API publishes/s (4 publishers x 8 in flight):")
row("events/s", lambda d: d["events_per_sec"], lambda v: f"{v:,.0f}")
for s in ["fanout", "latency", "api"]:
    for n in ["gateway", "sockudo"]:
        for r in range(1, runs + 1):
            d = get(s, n, r)
            errs = d.get("api", {}).get("refused", 0) + d.get("api", {}).get("unanswered", 0)
            if errs:
                print(f"  note: {s} {n} run {r}: {errs} API requests refused or unanswered")
EOF

echo "idle subscribed connections ($idle each):"
scripts/pusher-idle.sh "$gw" 6001 "$idle" | sed 's/^/  ringws-gateway: /'
scripts/pusher-idle.sh "$sk" 6002 "$idle" | sed 's/^/  sockudo: /'
