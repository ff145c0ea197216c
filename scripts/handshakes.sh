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
# Prints handshakes/s of each and server ÷ bare for full and resumed.
# 8 connections in progress by default: rustls's client keeps 8 TLS 1.3
# tickets per server, and at 16 about half the "resumed" run's handshakes
# found no ticket and were full ones (see loadgen/src/connect.rs).
#
#   scripts/handshakes.sh
#   HS_DURATION=5s HS_CONCURRENCY=8 scripts/handshakes.sh
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${HS_DURATION:-5s}"
concurrency="${HS_CONCURRENCY:-8}"
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

start_server
connect plain "ws://127.0.0.1:$port/"
stop_server

start_server --tls-cert "$tmp/leaf.pem" --tls-key "$tmp/leaf.key"
connect full "wss://localhost:$port/" --ca "$tmp/ca.pem" --no-resumption
connect resumed "wss://localhost:$port/" --ca "$tmp/ca.pem"
stop_server

CRITERION_HOME="$tmp/criterion" taskset -c 0 "$bench_exe" --bench >"$tmp/bench.txt" 2>&1 || {
  cat "$tmp/bench.txt"
  exit 1
}

python3 - "$tmp" "$concurrency" "$duration" <<'PY'
import json, os, sys
tmp, conc, dur = sys.argv[1], sys.argv[2], sys.argv[3]
def run(name):
    return json.load(open(os.path.join(tmp, name + ".json")))
def bare(name):
    p = os.path.join(tmp, "criterion", "tls_handshake", name, "new", "estimates.json")
    return 1e9 / json.load(open(p))["mean"]["point_estimate"]
plain, full, resumed = run("plain"), run("full"), run("resumed")
b_full, b_res = bare("full"), bare("resumed")
print(f"handshakes: server and loadgen on core 0, {conc} in progress, {dur} measured")
def line(label, r):
    t = r["tls"]
    tls = f", TLS {t['full']} full / {t['resumed']} resumed" if t["full"] + t["resumed"] else ""
    print(f"  {label:<22} {r['handshakes_per_sec']:>9.0f} handshakes/s   "
          f"p50 101 {r['upgrade_ns']['p50'] / 1e3:.0f} us, p99 {r['upgrade_ns']['p99'] / 1e3:.0f} us, "
          f"errors {r['errors']['total']}{tls}")
line("ws:// (no TLS)", plain)
line("wss:// full", full)
line("wss:// resumed", resumed)
print("bare rustls in memory on core 0 (benches/tls_handshake.rs)")
print(f"  {'full':<22} {b_full:>9.0f} handshakes/s")
print(f"  {'resumed':<22} {b_res:>9.0f} handshakes/s")
print(f"server ÷ bare: full {full['handshakes_per_sec'] / b_full:.1%} (target at least 85 %), "
      f"resumed {resumed['handshakes_per_sec'] / b_res:.1%}")
PY
