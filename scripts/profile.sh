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
command -v perf >/dev/null || { echo "profile: perf is not installed" >&2; exit 1; }
cargo build --release --quiet -p ringws -p loadgen
mkdir -p target/profile
python3 - "$@" <<'PY'
import json, subprocess, sys, time
sys.path.insert(0, "scripts")
import bench
conns, size, flags = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
out, port = "target/profile", 29311
cmd = ["taskset", "-c", "0", f"{bench.REL}/ringws", "--listen", "{addr}", "--threads", "1",
       "--log-level", "warn"] + flags
server = bench.start_server(cmd, port)
try:
    lg = bench.loadgen(port, conns, size, False, "0", ["--warmup", "1s", "--duration", "5s"],
                       f"{out}/loadgen.json")
    # Sample inside loadgen's measured window (connections and warm-up first).
    time.sleep(2)
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-p", str(server.pid),
                    "-o", f"{out}/perf.data", "--", "sleep", "3"], check=True, stdout=subprocess.DEVNULL)
    _, err = lg.communicate()
finally:
    bench.stop(server)
run = json.load(open(f"{out}/loadgen.json"))["runs"][0]
print("profile: %.0f msgs/s, %d errors (under perf)" % (run["msgs_per_sec"], run["errors"]["total"]))
PY
report() {
    perf report -i target/profile/perf.data --no-children -g none --stdio "$@" 2>/dev/null |
        grep '%' | grep -v '^#' || true
}
report --sort dso | head -5
report --sort sym | head -25
