#!/usr/bin/env bash
# Memory one idle, subscribed Pusher Channels connection costs a server:
# starts the server, opens and closes 100 subscribed connections (a warm-up,
# so that once-per-process allocations are in the baseline), then holds N
# connections open, each subscribed to a public channel, and reports
# (VmRSS with N - VmRSS after the warm-up) / N, with VmRSS at start and once
# the N closed for context. Functional sizes (a few thousand): it measures
# memory, not throughput. A server that takes time to stop (sockudo: its
# 10 s shutdown grace) is waited for.
#
#   scripts/pusher-idle.sh 'SERVER COMMAND' PORT N
#
# e.g., from the repository's root:
#   cargo build --release -p ringws-gateway
#   scripts/pusher-idle.sh 'target/release/ringws-gateway --app-id 1 --app-key app-key
#     --app-secret app-secret --listen 127.0.0.1:6001 --threads 1' 6001 2000
#   scripts/pusher-idle.sh "$(scripts/peers-sockudo.sh)
#     --config benches/peers/sockudo/config.toml" 6002 2000
#
# The command is run by bash (exec, so its PID is the server's) from the
# repository's root, its output in target/pusher-idle/server-PORT.log; it
# must serve the app key PUSHER_IDLE_KEY (app-key) on 127.0.0.1:PORT.
# PUSHER_IDLE_CHANNELS=own puts every connection on a channel of its own
# instead of all on one (see scripts/pusher_idle.py).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 3 ]; then
  sed -n '2,24p' "$0" >&2
  exit 2
fi
cmd=$1 port=$2 n=$3
key="${PUSHER_IDLE_KEY:-app-key}"
channels="${PUSHER_IDLE_CHANNELS:-shared}"
hard=$(ulimit -Hn)
ulimit -n "$hard"
if [ "$((n + 200))" -gt "$hard" ]; then
  echo "pusher-idle: $n connections need more descriptors than the hard limit here ($hard)" >&2
  exit 1
fi
mkdir -p target/pusher-idle
log="target/pusher-idle/server-$port.log"

# Something already on the port (say a server still in its shutdown grace:
# sockudo takes 10 s by default) would be measured instead.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "pusher-idle: port $port is already taken" >&2
  exit 1
fi
bash -c "exec $cmd" >"$log" 2>&1 &
server=$!
holder=""
fifo=$(mktemp -u)
cleanup() {
  exec 7>&- 2>/dev/null || true
  if [ -n "$holder" ]; then kill "$holder" 2>/dev/null || true; fi
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$fifo" "$fifo.out"
}
trap cleanup EXIT
rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$server/status"; }

# Up when the port takes a connection (at most 10 s).
for _ in $(seq 100); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "pusher-idle: the server exited; its log ($log):" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    break
  fi
  sleep 0.1
done
sleep 0.5
start=$(rss)
python3 scripts/pusher_idle.py 127.0.0.1 "$port" "$key" 100 "$channels" </dev/null >/dev/null
sleep 1
before=$(rss)

mkfifo "$fifo"
python3 scripts/pusher_idle.py 127.0.0.1 "$port" "$key" "$n" "$channels" <"$fifo" >"$fifo.out" &
holder=$!
exec 7>"$fifo"
while ! grep -q '^open' "$fifo.out" 2>/dev/null; do
  if ! kill -0 "$holder" 2>/dev/null; then
    wait "$holder" || true
    echo "pusher-idle: the client failed (server log: $log)" >&2
    exit 1
  fi
  sleep 0.2
done
sleep 2
after=$(rss)
# Another client of the same port (this machine is shared) would be
# charged to these connections: counted, and said.
others=$(($(ss -Htn state established "( sport = :$port )" | wc -l) - n))
if [ "$others" -ne 0 ]; then
  echo "pusher-idle: warning: $others connections to port $port other than these $n" >&2
fi
exec 7>&-
wait "$holder" || true
holder=""
# And once they are closed: what the server gives back.
sleep 2
closed=$(rss)

python3 - "$start" "$before" "$after" "$closed" "$n" "$channels" <<'PY'
import sys
start, before, after, closed, n = (int(v) for v in sys.argv[1:6])
mib = lambda v: v / 2**20
print("pusher-idle: VmRSS %.1f MiB at start, %.1f MiB after the warm-up, %.1f MiB with %d "
      "subscribed connections (%s channel), %.1f MiB once they closed: %d bytes per connection"
      % (mib(start), mib(before), mib(after), n, sys.argv[6], mib(closed), round((after - before) / n)))
PY
