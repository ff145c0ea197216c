#!/usr/bin/env python3
"""Interleaved A/B throughput runs, for judging one change at one load.

    scripts/ab.py CONNS SIZE ROUNDS PLACEMENT NAME=COMMAND...

Each round runs every NAME in turn, the way scripts/bench.py runs a cell
(server pinned to core 0; loadgen on core 0 with PLACEMENT `shared`, on
core 1 with `split`), then prints the median messages/s and server CPU time
per message of each. COMMAND is a server command line with `{addr}` for its
listen address; a relative program name is taken from target/release, so
build first (scripts/bench.sh builds everything). A program whose name
ends in `tcp-echo` or `uring-echo` is driven with `loadgen --raw`. Example, the current
build against a saved one and a peer:

    scripts/ab.py 100 20 4 shared "new=ringws --listen {addr} --threads 1 --log-level warn" \\
        "old=/tmp/ringws-old --listen {addr} --threads 1 --log-level warn" \\
        "fws=peer-fastwebsockets {addr}"

AB_LOADGEN="--payload json --deflate" (for example) adds loadgen flags to
every run; AB_IN_FLIGHT=64 runs the pipelined load (messages in flight per
connection; loadgen's `--in-flight`, which this script sets itself).

On this machine single rounds at 500 x 16 KiB and 1000 x 512 B can be tens
of per cent apart; read differences against the spread of the rounds.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    if len(sys.argv) < 6 or sys.argv[4] not in bench.PLACEMENTS:
        sys.exit(__doc__)
    conns, size, rounds, placement = (int(sys.argv[1]), int(sys.argv[2]),
                                      int(sys.argv[3]), sys.argv[4])
    variants = []
    for arg in sys.argv[5:]:
        name, cmd = arg.split("=", 1)
        parts = cmd.split()
        parts[0] = os.path.join(bench.REL, parts[0])
        variants.append((name, parts, parts[0].endswith(("tcp-echo", "uring-echo"))))
    in_flight = int(os.environ.get("AB_IN_FLIGHT", "1"))
    res = {}
    for r in range(rounds):
        for name, cmd, raw in variants:
            x = bench.throughput_run(name, cmd, raw, conns, size, placement, in_flight=in_flight,
                                     lg_args=os.environ.get("AB_LOADGEN", "").split())
            res.setdefault(name, []).append(x)
            print("round %d %-14s %9.0f msgs/s  server %6.0f ns/msg  cpu s %3.0f%% c %3.0f%%"
                  % (r + 1, name, x["msgs_per_sec"], x["server_ns_per_msg"] or 0,
                     100 * x["server_cpu"], 100 * x["client_cpu"]), flush=True)
    for name, xs in res.items():
        rates = [x["msgs_per_sec"] for x in xs]
        print("median %-13s %9.0f msgs/s (%.0f-%.0f)  server %6.0f ns/msg"
              % (name, statistics.median(rates), min(rates), max(rates),
                 statistics.median(x["server_ns_per_msg"] or 0 for x in xs)))


if __name__ == "__main__":
    main()
