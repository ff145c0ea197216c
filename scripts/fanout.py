"""The fan-out benchmark behind scripts/fanout.sh (see there).

examples/broadcast.rs runs with one thread on core 0 and logs its counts
once a second (--stats-interval 1); loadgen broadcast runs with one thread
on core 1 ("split") or on core 0 beside the server ("shared"). From the
server's lines: messages out per write (how well deliveries gather into
one send per subscriber per loop turn) and writes per second. User-space
instructions per delivery come from callgrind: two runs of --messages N1
and N2 against a fresh server, (I1 - I2) / ((N1 - N2) * subscribers), so
connecting and closing cancel out.
"""
import json, os, re, socket, statistics, subprocess, sys, tempfile, time

QUICK = "--quick" in sys.argv
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REL = os.path.join(ROOT, "target", "release")
OUT = os.path.join(ROOT, "target", "bench")
PORT = 19501
DURATION = "2s" if QUICK else "4s"
SUBSCRIBERS = 1000
IN_FLIGHT = [1, 64, 256] if not QUICK else [64]
ROUND_CLIENTS = 320
CG = (300, 150) if not QUICK else (120, 60)
STATS = re.compile(r"stats: (\d+) connections, .* ([\d.]+) msgs/s in, ([\d.]+) msgs/s out in ([\d.]+) writes/s")


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def server(core, port, prefix=(), log=None):
    # Something else on the port would answer the readiness check below.
    if listening(port):
        raise RuntimeError("port %d is in use" % port)
    cmd = list(prefix) + [f"{REL}/examples/broadcast", "--listen", f"127.0.0.1:{port}", "--threads", "1",
                          "--stats-interval", "1"]
    if core is not None:
        cmd = ["taskset", "-c", core] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log or subprocess.DEVNULL)
    t = time.time()
    while time.time() - t < 60:
        if p.poll() is not None:
            raise RuntimeError("server exited: %s" % cmd)
        if listening(port):
            return p
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def stop(p):
    p.send_signal(2)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def loadgen(core, port, args):
    cmd = ["taskset", "-c", core, f"{REL}/loadgen", "broadcast", f"ws://127.0.0.1:{port}/", "-t", "1", "-q"] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = r.stdout
    num = lambda k: float(re.search(r"^\s+%s\s+([\d.]+)" % re.escape(k), out, re.M).group(1))
    errors = int(re.search(r"^\s+errors\s+(\d+)", out, re.M).group(1))
    lat = re.search(r"^\s+(?:send to receive|from intended send)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    res = {"deliveries_per_sec": num("deliveries/s"), "errors": errors, "p50": lat.group(1), "p99": lat.group(3),
           "rc": r.returncode}
    if "--rounds" in args:
        res["rounds_per_sec"] = num("rounds/s")
    if errors or r.returncode:
        print(out, file=sys.stderr)
        raise RuntimeError("loadgen broadcast failed: %s" % " ".join(cmd))
    return res


def measured(args, placement):
    """One run; the server's counts over the lines of the measured window."""
    global PORT
    PORT += 1
    with tempfile.TemporaryFile(mode="w+") as log:
        s = server("0", PORT, log=log)
        try:
            res = loadgen("0" if placement == "shared" else "1", PORT, args + ["-d", DURATION, "-w", "1s"])
        finally:
            stop(s)
        log.seek(0)
        lines = [m for m in map(STATS.search, log.read().splitlines()) if m]
    # Lines with messages flowing; the first and last (connecting, the
    # drain) left out when there are enough.
    busy = [(float(m.group(3)), float(m.group(4))) for m in lines if float(m.group(3)) > 0]
    if len(busy) > 3:
        busy = busy[1:-1]
    res["server_lines"] = len(busy)
    if not busy:
        print("warning: no counts from the server's log for %s" % " ".join(args), file=sys.stderr)
    else:
        res["server_msgs_out_per_sec"] = statistics.median(b[0] for b in busy)
        res["server_writes_per_sec"] = statistics.median(b[1] for b in busy)
        res["msgs_per_write"] = res["server_msgs_out_per_sec"] / max(res["server_writes_per_sec"], 1)
    return res


def instructions(n1, n2):
    counts = {}
    for n in (n1, n2):
        global PORT
        PORT += 1
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "cg.out")
            s = server(None, PORT, prefix=["valgrind", "--tool=callgrind", "--fair-sched=yes", "--callgrind-out-file=" + out])
            try:
                loadgen("1", PORT, ["-c", str(SUBSCRIBERS), "--senders", "1", "--in-flight", "64", "--messages",
                                    str(n), "-w", "0s", "-d", "600s", "--connect-timeout", "60s", "--drain", "60s"])
            finally:
                stop(s)
            time.sleep(0.2)
            text = open(out).read()
            m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
            counts[n] = int(m.group(1))
    return (counts[n1] - counts[n2]) / ((n1 - n2) * SUBSCRIBERS)


def main():
    os.makedirs(OUT, exist_ok=True)
    res = {"fanout": [], "rounds": []}
    for placement in ("split", "shared"):
        for k in IN_FLIGHT:
            r = measured(["-c", str(SUBSCRIBERS), "--senders", "1", "--in-flight", str(k)], placement)
            r.update(placement=placement, in_flight=k)
            res["fanout"].append(r)
            print("fan-out %-6s 1 publisher, %d subscribers, %3d in flight: %9.0f deliveries/s, %6.1f msgs/write, "
                  "p50 %s" % (placement, SUBSCRIBERS, k, r["deliveries_per_sec"], r.get("msgs_per_write", 0), r["p50"]),
                  flush=True)
        r = measured(["-c", str(ROUND_CLIENTS), "--rounds"], placement)
        r["placement"] = placement
        r["writes_per_round"] = r.get("server_writes_per_sec", float("nan")) / max(r["rounds_per_sec"], 1e-9)
        res["rounds"].append(r)
        print("rounds  %-6s %d clients: %.1f rounds/s, %.0f deliveries/s, %.0f server writes per round "
              "(%.1f msgs/write), p50 %s" % (placement, ROUND_CLIENTS, r["rounds_per_sec"], r["deliveries_per_sec"],
                                             r["writes_per_round"], r.get("msgs_per_write", 0), r["p50"]), flush=True)
    res["instructions_per_delivery"] = instructions(*CG)
    print("user-space instructions per delivery (callgrind, 1 publisher, %d subscribers, 64 in flight): %.1f"
          % (SUBSCRIBERS, res["instructions_per_delivery"]))
    with open(os.path.join(OUT, "fanout.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
