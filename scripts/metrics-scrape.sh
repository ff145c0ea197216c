#!/usr/bin/env bash
# How long a scrape of /metrics takes with many connections open: the
# release server with --admin-listen, N idle WebSockets (default 10,000,
# scripts/idle_conns.py), then 100 scrapes over one keep-alive connection,
# timed from the request's first byte to the response's last. Prints the
# median, p99 and max in milliseconds and a sample of the exposition.
#   scripts/metrics-scrape.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
cargo build --release --quiet -p ringws
ulimit -n "$(ulimit -Hn)"
port="${SCRAPE_PORT:-9301}"
admin=$((port + 1))
./target/release/ringws --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --max-connections 200000 --log-level warn &
server=$!
trap 'kill $server 2>/dev/null || true; kill ${holder:-} 2>/dev/null || true' EXIT
sleep 0.5
coproc HOLD { python3 scripts/idle_conns.py 127.0.0.1 "$port" "$n"; }
holder=$HOLD_PID
read -r line <&"${HOLD[0]}"
echo "metrics-scrape: $line idle connections"
python3 - "$admin" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
times, body = [], b""
for _ in range(100):
    t = time.perf_counter()
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < n:
        body += s.recv(65536)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print("metrics-scrape: 100 scrapes: median %.2f ms, p99 %.2f ms, max %.2f ms, %d bytes"
      % (times[50], times[98], times[-1], len(body)))
for line in body.decode().splitlines():
    if not line.startswith("#") and any(k in line for k in ("connections ", "accepted", "upgrades", "resident", "open_fds", "turns")):
        print("  " + line)
PY
