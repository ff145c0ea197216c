#!/usr/bin/env bash
# Where the release server's time goes at one echo load: `perf record -e
# cpu-clock` of the server (kernel and user space) while loadgen drives it,
# both on core 0 as in scripts/bench.sh's shared placement, then the top
# symbols. The quick check behind a throughput difference that the
# instruction count (scripts/instructions.sh) does not show: cache misses,
# kernel paths, waits.
#   scripts/profile.sh CONNS SIZE [server flags...]
#   scripts/profile.sh 500 16384 --backend epoll
# Needs `perf` (linux-tools / linux-perf). Writes target/profile/perf.data;
# `perf report -i target/profile/perf.data` reads it further.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
conns=$1 size=$2
shift 2
command -v perf >/dev/null || { echo "profile: perf is not installed" >&2; exit 1; }
cargo build --release --quiet -p ringws -p loadgen
out=target/profile
mkdir -p "$out"
port=$((20000 + RANDOM % 20000))
taskset -c 0 target/release/ringws --listen "127.0.0.1:$port" --threads 1 --log-level warn "$@" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
taskset -c 0 target/release/loadgen "ws://127.0.0.1:$port/" --threads 1 --connections "$conns" \
    --size "$size" --warmup 1s --duration 5s --quiet --json "$out/loadgen.json" >/dev/null &
lg=$!
# Sample inside loadgen's measured window (connections and warm-up first).
sleep 2
perf record -q -e cpu-clock -g -p "$server" -o "$out/perf.data" -- sleep 3 >/dev/null 2>&1
wait "$lg"
kill -INT "$server"
wait "$server" || true
trap - EXIT
python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["runs"][0]; print("profile: %.0f msgs/s, %d errors (under perf)" % (r["msgs_per_sec"], r["errors"]["total"]))' "$out/loadgen.json"
perf report -i "$out/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -5
perf report -i "$out/perf.data" --no-children --sort sym -g none --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -25
