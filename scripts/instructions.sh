#!/usr/bin/env bash
# User-space instructions per echoed message of the release server, as
# scripts/bench.sh counts them (callgrind, two runs of N1 and N2 messages,
# (I1 - I2) / (N1 - N2)), without running the rest of the benchmark: the
# quick check of a change on the hot path. Two clients:
#   loadgen   as fast as it can, whatever is ready batched into each write:
#             a loop turn carries many messages (bench.py's loads);
#   pingpong  scripts/pingpong.py, one message per write, strict ping-pong
#             per connection, a pause between an echo and the next message
#             (bench.PINGPONG_LOADS): a turn carries one message (1
#             connection) or a few (100), so the cost of a turn shows.
# Usage:
#   scripts/instructions.sh                  loadgen 100 x 20 B and 10 x 16 KiB
#                                            (io_uring); pingpong 1 x 20 B and
#                                            100 x 20 B on io_uring and epoll
#   scripts/instructions.sh --backend epoll  one backend (the loadgen loads too)
#   scripts/instructions.sh --peers          also fastwebsockets (benches/peers)
#                                            under pingpong
#   scripts/instructions.sh -- --deflate shared    extra server flags
#   scripts/instructions.sh --tls            over wss:// (the tls build in
#                                            target/tls, a throwaway CA): the
#                                            loadgen loads only; with --peers
#                                            also fastwebsockets and
#                                            tokio-websockets behind
#                                            tokio-rustls (bench.sh --tls's)
set -euo pipefail
cd "$(dirname "$0")/.."
backends="io-uring epoll"
loadgen_backends="io-uring"
peers=0
tls=0
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) backends="$2"; loadgen_backends="$2"; shift 2 ;;
        --peers) peers=1; shift ;;
        --tls) tls=1; shift ;;
        --) shift; break ;;
        *) echo "instructions.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$tls" = 1 ]; then
    # Where scripts/bench.sh --tls builds it (see there).
    cargo build --release --quiet --target-dir target/tls -p ringws -p loadgen \
        --features ringws/tls,loadgen/tls
    if [ "$peers" = 1 ]; then
        cargo build --release --quiet --manifest-path benches/peers/Cargo.toml --target-dir target \
            --bin peer-fastwebsockets-tls --bin peer-tokio-websockets-tls
    fi
    LOADGEN_BACKENDS="$loadgen_backends" PEERS="$peers" python3 - "$@" <<'PY'
import os, sys, tempfile
sys.path.insert(0, "scripts")
import bench
with tempfile.TemporaryDirectory() as d:
    ca, cert, key = bench.make_certs(d)
    servers = [("ringws " + b + " wss", [f"{bench.TLS_REL}/ringws", "--listen", "{addr}", "--threads", "1",
                "--log-level", "error", "--backend", b, "--tls-cert", cert, "--tls-key", key] + sys.argv[1:])
               for b in os.environ["LOADGEN_BACKENDS"].split()]
    if os.environ["PEERS"] == "1":
        servers += [(n + " wss", c) for n, c, tls in bench.tls_servers(cert, key) if tls and n != "ringws"]
    for conns, size, n1, n2 in bench.CALLGRIND_LOADS:
        for name, cmd in servers:
            n = bench.instructions(name, cmd, False, conns, size, n1, n2, tls_ca=ca, rel=bench.TLS_REL)
            print("instructions per echo, %-24s loadgen %3d x %5d B: %6.0f" % (name, conns, size, n), flush=True)
PY
    exit
fi
cargo build --release --quiet -p ringws -p loadgen
if [ "$peers" = 1 ]; then
    cargo build --release --quiet --manifest-path benches/peers/Cargo.toml --target-dir target \
        --bin peer-fastwebsockets
fi
BACKENDS="$backends" LOADGEN_BACKENDS="$loadgen_backends" PEERS="$peers" python3 - "$@" <<'PY'
import os, sys
sys.path.insert(0, "scripts")
import bench
def ringws(backend):
    return [f"{bench.REL}/ringws", "--listen", "{addr}", "--threads", "1", "--log-level", "error",
            "--backend", backend] + sys.argv[1:]
def line(server, client, conns, size, n):
    print("instructions per echo, %-16s %-8s %3d x %5d B: %5.0f" % (server, client, conns, size, n), flush=True)
for backend in os.environ["LOADGEN_BACKENDS"].split():
    for conns, size, n1, n2 in bench.CALLGRIND_LOADS:
        line("ringws " + backend, "loadgen", conns, size,
             bench.instructions("ringws", ringws(backend), False, conns, size, n1, n2))
servers = [("ringws " + b, ringws(b)) for b in os.environ["BACKENDS"].split()]
if os.environ["PEERS"] == "1":
    servers.append(("fastwebsockets", [f"{bench.REL}/peer-fastwebsockets", "{addr}"]))
for conns, size, n1, n2, think in bench.PINGPONG_LOADS:
    for name, cmd in servers:
        line(name, "pingpong", conns, size,
             bench.instructions(name, cmd, False, conns, size, n1, n2, client="pingpong", think=think))
PY
