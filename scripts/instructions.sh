#!/usr/bin/env bash
# User-space instructions per echoed message of the release server, as
# scripts/bench.sh counts them (callgrind, two runs of N1 and N2 messages,
# (I1 - I2) / (N1 - N2)), without running the rest of the benchmark: the
# quick check of a change on the hot path.
#   scripts/instructions.sh                 100 x 20 B and 10 x 16 KiB
#   scripts/instructions.sh -- --deflate shared    extra server flags
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p ringws -p loadgen
extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi
python3 - "${extra[@]}" <<'PY'
import os, sys
sys.path.insert(0, "scripts")
import bench
cmd = [f"{bench.REL}/ringws", "--listen", "{addr}", "--threads", "1", "--log-level", "error"] + sys.argv[1:]
for conns, size, n1, n2 in bench.CALLGRIND_LOADS:
    n = bench.instructions("ringws", cmd, False, conns, size, n1, n2)
    print("instructions per echo, %d x %d B: %.0f" % (conns, size, n))
PY
