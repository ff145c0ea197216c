#!/usr/bin/env bash
# Handshakes per second on one core against their ceiling (issue 22's
# target: full TLS 1.3 handshakes at least 85 % of bare rustls's).
#
#   1. The release server (one thread, ECDSA P-256 certificate from a
#      throwaway CA made with openssl) and `loadgen connect` (one thread)
#      share core 0, as scripts/bench.py's shared placement does: each
#      connection does TCP connect, TLS, the upgrade, one 20-byte echo and
#      the close. Run with --no-resumption (every handshake full) and
#      without (tickets resumed); plain ws:// for reference.
#   2. benches/tls_handshake.rs on core 0: a rustls client and server in
#      memory, the same server configuration, the same client provider.
#      Both sides run on the one core in both measurements, so the client's
#      share of the work is in both.
#
# The machine's speed jumps between levels from minute to minute (30 % and
# more), so one measurement of each would compare two levels: HS_ROUNDS
# rounds (3 by default) each measure all of them back to back (ws://, wss://
# full, wss:// resumed, then the bare loop, 3 s each after a 1 s warm-up),
# and each round's ratios use that round's figures only.
#
# Prints every round's handshakes/s and server ÷ bare for full and resumed,
# then the medians. 8 connections in progress by default: rustls's client
# keeps 8 TLS 1.3 tickets per server, and at 16 about half the "resumed"
# run's handshakes found no ticket and were full ones (see
# loadgen/src/connect.rs).
#
#   scripts/handshakes.sh
#   HS_ROUNDS=5 HS_DURATION=3s HS_CONCURRENCY=8 scripts/handshakes.sh
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${HS_DURATION:-3s}"
concurrency="${HS_CONCURRENCY:-8}"
rounds="${HS_ROUNDS:-3}"
# HS_DURATION in seconds for criterion: loadgen's forms `3s`, `500ms`, `3`.
case "$duration" in
  *ms) secs=$(python3 -c "print(${duration%ms} / 1000)") ;;
  *s) secs=${duration%s} ;;
  *) secs=$duration ;;
esac
python3 -c "assert float('$secs') > 0" 2>/dev/null || {
  echo "handshakes: HS_DURATION must be like 3s or 500ms, not $duration" >&2
  exit 2
}
port="${HS_PORT:-$((21000 + $$ % 2000))}"

cargo build --release --quiet -p ringws -p loadgen --features ringws/tls,loadgen/tls
bench_exe=$(cargo bench --quiet --features tls --bench tls_handshake --no-run \
  --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "tls_handshake" and m.get("executable"):
        print(m["executable"])')

tmp=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# A throwaway CA and a leaf for localhost (ECDSA P-256); no key is kept.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=handshakes-ca -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$tmp/leaf.key" -out "$tmp/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tmp/leaf.ext"
openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
  -set_serial 1 -days 2 -extfile "$tmp/leaf.ext" -out "$tmp/leaf.pem" 2>/dev/null

# Plain and TLS listeners of one server process would share its thread;
# one server per kind, started in turn.
start_server() {
  taskset -c 0 ./target/release/ringws --listen "127.0.0.1:$port" --threads 1 \
    --log-level warn "$@" &
  server=$!
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "handshakes: the server did not start" >&2
  exit 1
}

stop_server() {
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=""
  port=$((port + 1))
}

# connect NAME URL [loadgen flags]: one run, its JSON in $tmp/NAME.json.
connect() {
  local name=$1 url=$2
  shift 2
  taskset -c 0 ./target/release/loadgen connect "$url" --threads 1 \
    --concurrency "$concurrency" -d "$duration" -w 1s -q --json "$tmp/$name.json" "$@" \
    >"$tmp/$name.txt" || {
    cat "$tmp/$name.txt"
    echo "handshakes: loadgen connect $name failed" >&2
    exit 1
  }
}

for r in $(seq "$rounds"); do
  start_server
  connect "plain-$r" "ws://127.0.0.1:$port/"
  stop_server

  start_server --tls-cert "$tmp/leaf.pem" --tls-key "$tmp/leaf.key"
  connect "full-$r" "wss://localhost:$port/" --ca "$tmp/ca.pem" --no-resumption
  connect "resumed-$r" "wss://localhost:$port/" --ca "$tmp/ca.pem"
  stop_server

  # Criterion's own timing, as long as one loadgen run: warm-up 1 s,
  # then the measured seconds (criterion takes seconds, loadgen also `ms`).
  CRITERION_HOME="$tmp/criterion-$r" taskset -c 0 "$bench_exe" --bench \
    --warm-up-time 1 --measurement-time "$secs" >"$tmp/bench-$r.txt" 2>&1 || {
    cat "$tmp/bench-$r.txt"
    exit 1
  }
done

python3 - "$tmp" "$concurrency" "$duration" "$rounds" <<'PY'
import json, os, statistics, sys
tmp, conc, dur, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def run(name):
    return json.load(open(os.path.join(tmp, name + ".json")))
def bare(r, name):
    p = os.path.join(tmp, f"criterion-{r}", "tls_handshake", name, "new", "estimates.json")
    return 1e9 / json.load(open(p))["mean"]["point_estimate"]
print(f"handshakes: server and loadgen on core 0, {conc} in progress, {dur} measured, "
      f"{rounds} rounds (bare rustls in memory on core 0: benches/tls_handshake.rs)")
def line(label, r):
    t = r["tls"]
    tls = f", TLS {t['full']} full / {t['resumed']} resumed" if t["full"] + t["resumed"] else ""
    print(f"  {label:<22} {r['handshakes_per_sec']:>9.0f} handshakes/s   "
          f"p50 {r['upgrade_ns']['p50'] / 1e3:.0f} us, p99 {r['upgrade_ns']['p99'] / 1e3:.0f} us, "
          f"errors {r['errors']['total']}{tls}")
ratios = {"full": [], "resumed": []}
for r in range(1, rounds + 1):
    print(f"round {r}")
    line("ws:// (no TLS)", run(f"plain-{r}"))
    for kind in ("full", "resumed"):
        x, b = run(f"{kind}-{r}"), bare(r, kind)
        line(f"wss:// {kind}", x)
        print(f"  {'bare ' + kind:<22} {b:>9.0f} handshakes/s")
        ratios[kind].append(x["handshakes_per_sec"] / b)
    print(f"  server ÷ bare: full {ratios['full'][-1]:.1%}, resumed {ratios['resumed'][-1]:.1%}")
fmt = lambda v: " / ".join(f"{x:.1%}" for x in v)
print(f"server ÷ bare, median of {rounds} rounds: full {statistics.median(ratios['full']):.1%} "
      f"(rounds {fmt(ratios['full'])}; target at least 85 %), "
      f"resumed {statistics.median(ratios['resumed']):.1%} (rounds {fmt(ratios['resumed'])})")
PY
