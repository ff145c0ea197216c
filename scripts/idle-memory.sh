#!/usr/bin/env bash
# Memory one idle WebSocket connection costs a server in user space:
# (RSS with N idle connections - RSS after a warm-up with none) / N,
# with the connections opened one at a time, then again (a fresh server)
# with them arriving in bursts of 500: 500 connects and requests at once,
# every response read, then the next 500 (the "burst" line).
#
#   scripts/idle-memory.sh         ringws, N = 10000
#   scripts/idle-memory.sh --all   ringws and the benchmark peers, N = 10000 and 50000
#   scripts/idle-memory.sh --deflate shared   ringws with --deflate shared,
#                                   every connection offering (and agreeing
#                                   to) permessage-deflate
#   scripts/idle-memory.sh --tls    ringws over wss:// (a build with the tls
#                                   feature, a test CA made with openssl):
#                                   TLS 1.3 handshake, upgrade, then idle;
#                                   connections opened one at a time
#
# IDLE_CONNECTIONS="..." sets the counts; IDLE_BURST sets the burst size
# (0: no burst line; default 500); IDLE_SERVER_FLAGS adds ringws
# flags; IDLE_SEND_COMPRESSED=1 (with --deflate) has each connection send
# one compressed message first (see idle_conns.py). Source addresses are spread over
# 127.0.0.2-255. A count that needs more file descriptors than one process
# may have here (the hard RLIMIT_NOFILE) is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

servers=(ringws)
counts="${IDLE_CONNECTIONS:-10000}"
deflate=off
if [ "${1:-}" = "--deflate" ]; then
  deflate="${2:?--deflate needs shared or dedicated}"
  export IDLE_OFFER_DEFLATE=1
  shift 2
fi
tls=0
if [ "${1:-}" = "--tls" ]; then
  tls=1
  shift
  tlsdir=$(mktemp -d)
  trap 'rm -rf "$tlsdir"' EXIT
  # A throwaway CA and a leaf for 127.0.0.1 (ECDSA P-256).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=idle-ca -keyout "$tlsdir/ca.key" -out "$tlsdir/ca.pem" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$tlsdir/leaf.key" -out "$tlsdir/leaf.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tlsdir/leaf.ext"
  openssl x509 -req -in "$tlsdir/leaf.csr" -CA "$tlsdir/ca.pem" -CAkey "$tlsdir/ca.key" \
    -set_serial 1 -days 2 -extfile "$tlsdir/leaf.ext" -out "$tlsdir/leaf.pem" 2>/dev/null
  export IDLE_TLS_CA="$tlsdir/ca.pem"
  IDLE_SERVER_FLAGS="${IDLE_SERVER_FLAGS:-} --tls-cert $tlsdir/leaf.pem --tls-key $tlsdir/leaf.key"
  # The client's TLS handshakes are blocking ones: one at a time.
  IDLE_BURST=0
fi
if [ "$tls" = 1 ]; then
  cargo build --release --quiet -p ringws --features tls
elif [ "${1:-}" = "--all" ]; then
  servers=(ringws fastwebsockets tokio-tungstenite tokio-websockets)
  counts="${IDLE_CONNECTIONS:-10000 50000}"
  cargo build --release --quiet -p ringws
  cargo build --release --quiet --manifest-path benches/peers/Cargo.toml --target-dir target
else
  cargo build --release --quiet -p ringws
fi
hard=$(ulimit -Hn)
ulimit -n "$hard"
port="${IDLE_PORT:-9101}"
burst="${IDLE_BURST:-500}"

command_for() {
  case "$1" in
    ringws) echo "./target/release/ringws --listen 127.0.0.1:$2 --max-connections 200000 --deflate $deflate --log-level warn ${IDLE_SERVER_FLAGS:-}" ;;
    fastwebsockets) echo "./target/release/peer-fastwebsockets 127.0.0.1:$2" ;;
    tokio-tungstenite) echo "./target/release/peer-tungstenite 127.0.0.1:$2" ;;
    tokio-websockets) echo "./target/release/peer-tokio-websockets 127.0.0.1:$2" ;;
  esac
}

measure() {
  local name=$1 n=$2 burst=${3:-0} label=$1
  if [ "$burst" -gt 0 ]; then
    label="$name burst $burst"
  fi
  if [ "$((n + 200))" -gt "$hard" ]; then
    echo "idle-memory: $label with $n: skipped: needs $n descriptors in one process, the hard limit here is $hard"
    return
  fi
  port=$((port + 1))
  $(command_for "$name" "$port") 2>/dev/null &
  local server=$!
  local holder=""
  sleep 0.5
  rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$server/status"; }
  # Warm-up: connections opened and closed, so that once-per-process
  # allocations are in the baseline, not charged to the connections.
  python3 scripts/idle_conns.py 127.0.0.1 "$port" 100 </dev/null >/dev/null
  sleep 0.5
  local before after fifo
  before=$(rss)
  fifo=$(mktemp -u)
  mkfifo "$fifo"
  local args=("$n")
  if [ "$burst" -gt 0 ]; then
    args+=("$burst")
  fi
  python3 scripts/idle_conns.py 127.0.0.1 "$port" "${args[@]}" <"$fifo" >"$fifo.out" &
  holder=$!
  exec 7>"$fifo"
  while ! grep -q "^open" "$fifo.out" 2>/dev/null; do
    if ! kill -0 $holder 2>/dev/null; then
      echo "idle-memory: $label with $n: the client failed" >&2
      kill $server; exec 7>&-; rm -f "$fifo" "$fifo.out"; return 1
    fi
    sleep 0.2
  done
  sleep 1
  after=$(rss)
  exec 7>&-
  wait $holder || true
  kill $server; wait $server 2>/dev/null || true
  rm -f "$fifo" "$fifo.out"
  python3 - "$label" "$before" "$after" "$n" <<'PY'
import sys
name, before, after, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("idle-memory: %-18s %6d idle connections: RSS %6.1f -> %6.1f MiB, %5d bytes per connection"
      % (name, n, before / 2**20, after / 2**20, round((after - before) / n)))
PY
}

for n in $counts; do
  for s in "${servers[@]}"; do
    measure "$s" "$n"
    if [ "$burst" -gt 0 ] && [ -z "${IDLE_SEND_COMPRESSED:-}" ]; then
      measure "$s" "$n" "$burst"
    fi
  done
done
