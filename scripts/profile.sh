#!/usr/bin/env bash
# Where the release server's time goes at one echo load: `perf record -e
# cpu-clock` of the server (kernel and user space) while loadgen drives it,
# both on core 0 as in scripts/bench.sh's shared placement, then the top
# symbols. The quick check behind a throughput difference that the
# instruction count (scripts/instructions.sh) does not show: cache misses,
# kernel paths, waits.
#   scripts/profile.sh CONNS SIZE [server flags...]
#   scripts/profile.sh 500 16384 --backend epoll
#   scripts/profile.sh --tls 10 16384   over wss:// (the tls build in
#                        target/tls, a throwaway CA made with openssl), then
#                        the share of aws-lc's AES-GCM and GHASH symbols
# Needs `perf` (linux-tools / linux-perf). Writes target/profile/perf.data;
# `perf report -i target/profile/perf.data` reads it further.
set -euo pipefail
cd "$(dirname "$0")/.."
tls=0
if [ "${1:-}" = "--tls" ]; then
    tls=1
    shift
fi
if [ $# -lt 2 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
command -v perf >/dev/null || { echo "profile: perf is not installed" >&2; exit 1; }
if [ "$tls" = 1 ]; then
    # Where scripts/bench.sh --tls builds it (see there).
    cargo build --release --quiet --target-dir target/tls -p ringws -p loadgen \
        --features ringws/tls,loadgen/tls
else
    cargo build --release --quiet -p ringws -p loadgen
fi
mkdir -p target/profile
PROFILE_TLS=$tls python3 - "$@" <<'PY'
import json, os, subprocess, sys, tempfile, time
sys.path.insert(0, "scripts")
import bench
conns, size, flags = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
out, port = "target/profile", 29311
tls = os.environ["PROFILE_TLS"] == "1"
certs = tempfile.TemporaryDirectory()
rel, ca = bench.REL, None
if tls:
    ca, cert, key = bench.make_certs(certs.name)
    rel, flags = bench.TLS_REL, flags + ["--tls-cert", cert, "--tls-key", key]
cmd = ["taskset", "-c", "0", f"{rel}/ringws", "--listen", "{addr}", "--threads", "1",
       "--log-level", "warn"] + flags
server = bench.start_server(cmd, port)
try:
    lg = bench.loadgen(port, conns, size, False, "0", ["--warmup", "1s", "--duration", "5s"],
                       f"{out}/loadgen.json", tls_ca=ca, rel=rel)
    # Sample inside loadgen's measured window (connections and warm-up first).
    time.sleep(2)
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-p", str(server.pid),
                    "-o", f"{out}/perf.data", "--", "sleep", "3"], check=True, stdout=subprocess.DEVNULL)
    _, err = lg.communicate()
finally:
    bench.stop(server)
    certs.cleanup()
run = json.load(open(f"{out}/loadgen.json"))["runs"][0]
print("profile: %.0f msgs/s, %d errors (under perf)" % (run["msgs_per_sec"], run["errors"]["total"]))
PY
report() {
    perf report -i target/profile/perf.data --no-children -g none --stdio "$@" 2>/dev/null |
        grep '%' | grep -v '^#' || true
}
report --sort dso | head -5
report --sort sym | head -25
if [ "$tls" = 1 ]; then
    # aws-lc's own AES-GCM and GHASH code (C and assembly: aesni_gcm_*,
    # _aesni_ctr32_ghash_6x, gcm_ghash_*, CRYPTO_gcm128_*, aead_aes_gcm_*),
    # not the Rust wrappers around it (rustls's and aws-lc-rs's, whose
    # demangled names have "::").
    report --sort sym | awk '
        { share = $1; sub("%", "", share) }
        /aes|gcm|ghash|gmult/ && !/::/ { total += share }
        END { printf "profile: AES-GCM and GHASH (aws-lc) %.1f%% of the server'"'"'s samples\n", total }'
fi
