#!/usr/bin/env bash
# Memory one idle WebSocket connection costs the server in user space:
# (RSS with N idle connections - RSS with none) / N, for the release binary
# with default flags. N defaults to 10000 (IDLE_CONNECTIONS to change).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${IDLE_CONNECTIONS:-10000}"
port="${IDLE_PORT:-9101}"
ulimit -n "$(( n * 2 + 1000 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bin ringws
./target/release/ringws --listen "127.0.0.1:$port" --max-connections $((n + 100)) --log-level warn &
server=$!
trap 'kill $server 2>/dev/null || true; kill $holder 2>/dev/null || true' EXIT
sleep 0.5
rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$server/status"; }

# Warm up: a few connections opened and closed, so that allocations made
# once per thread are in the baseline and not charged to the connections.
python3 scripts/idle_conns.py 127.0.0.1 "$port" 100 </dev/null >/dev/null
sleep 0.5
before=$(rss)

fifo=$(mktemp -u); mkfifo "$fifo"
python3 scripts/idle_conns.py 127.0.0.1 "$port" "$n" <"$fifo" >"$fifo.out" &
holder=$!
exec 7>"$fifo"
while ! grep -q "^open" "$fifo.out" 2>/dev/null; do
  kill -0 $holder 2>/dev/null || { echo "idle-memory: client failed" >&2; exit 1; }
  sleep 0.2
done
sleep 1
after=$(rss)
exec 7>&-
wait $holder || true
rm -f "$fifo" "$fifo.out"

python3 - "$before" "$after" "$n" <<'PY'
import sys
before, after, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print("idle-memory: RSS %.1f MiB with none, %.1f MiB with %d idle connections" % (before / 2**20, after / 2**20, n))
print("idle-memory: %d bytes per idle connection" % round((after - before) / n))
PY
