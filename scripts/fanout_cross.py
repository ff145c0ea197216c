"""The cross-node section of scripts/fanout.sh (issue 23's targets).

Two nodes of examples/broadcast, one thread each, share their topic through
one redis-server on this machine; one publisher on node A, 1,000
subscribers split between A and B (loadgen broadcast with both URLs),
20-byte messages. Printed:

* deliveries/s across nodes against the same load on a single node, in one
  run, closed loop (64 in flight), in two placements: everything on one
  core (steady from run to run), and across both cores (single node on
  core 0 and loadgen on core 1; node A and Redis on core 0, node B and
  loadgen on core 1), alternating single and cross runs, with the median;
* Redis's PUBLISH calls (INFO commandstats) against the messages sent: one
  per message, never one per subscriber;
* delivery latency across nodes at fixed rates (corrected for coordinated
  omission);
* the broker thread's user-space instructions per message (callgrind,
  --separate-threads, two runs of N1 and N2 messages so that connecting
  cancels out): node A's per message published, node B's per message
  relayed to its workers;
* the broker thread's CPU at 100,000 publishes/s (10 subscribers, 5 per
  node), from /proc, as a share of a core and of its process's CPU;
* memory while Redis is away: one node publishing 100,000 messages/s to
  10 local subscribers while Redis is stopped (SIGSTOP) for 15 s: the
  node's resident memory before, its peak while Redis is away and after,
  and the broker's drops by reason (its /metrics).

Writes target/bench/fanout-cross.json.
"""
import glob, json, os, re, statistics, subprocess, sys, tempfile, time

from fanout import listening, stop

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REL = os.path.join(ROOT, "target", "release")
OUT = os.path.join(ROOT, "target", "bench")
QUICK = "--quick" in sys.argv
DURATION = "2s" if QUICK else "4s"
SUBSCRIBERS = 1000
RATES = [1000, 5000, 10000] if not QUICK else [1000]
CG = (300, 150) if not QUICK else (120, 60)
PORT = [19700]


def port():
    PORT[0] += 1
    return PORT[0]


def wait_listening(proc, p, what):
    t = time.time()
    while time.time() - t < 60:
        if proc.poll() is not None:
            raise RuntimeError("%s exited" % what)
        if listening(p):
            return
        time.sleep(0.05)
    raise RuntimeError("%s did not start" % what)


def redis():
    p = port()
    d = tempfile.TemporaryDirectory()
    proc = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(p), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", d.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.tmp = d  # removed with the process object, not left in /tmp
    wait_listening(proc, p, "redis-server")
    return proc, p


def redis_cli(p, *args):
    return subprocess.run(["redis-cli", "-p", str(p)] + list(args), capture_output=True, text=True).stdout


def node(core, redis_port, prefix=(), admin=None):
    p = port()
    cmd = list(prefix) + [f"{REL}/examples/broadcast", "--listen", f"127.0.0.1:{p}", "--threads", "1"]
    if admin:
        cmd += ["--admin-listen", f"127.0.0.1:{admin}"]
    if redis_port:
        cmd += ["--redis", f"redis://127.0.0.1:{redis_port}"]
    if core is not None:
        cmd = ["taskset", "-c", core] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(proc, p, "broadcast")
    return proc, p


def loadgen(core, ports, args, settle="500ms"):
    urls = [f"ws://127.0.0.1:{p}/" for p in ports]
    # Time for the nodes to subscribe in Redis once every client is in.
    settle = ["--settle", settle] if len(ports) > 1 else []
    cmd = ["taskset", "-c", core, f"{REL}/loadgen", "broadcast"] + urls + ["-t", "1", "-q"] + settle + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    out = r.stdout
    num = lambda k: float(re.search(r"^\s+%s\s+([\d.]+)" % re.escape(k), out, re.M).group(1))
    row = r"^\s+%s\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)"
    # At a fixed rate, from the intended send time (coordinated omission).
    lat = re.search(row % "from intended send", out, re.M) or re.search(row % "send to receive", out, re.M)
    if r.returncode:
        print(out, r.stderr, file=sys.stderr)
        raise RuntimeError("loadgen broadcast failed: %s" % " ".join(cmd))
    return {"deliveries_per_sec": num("deliveries/s"), "messages_sent": num("messages sent"),
            "p50": lat.group(1), "p90": lat.group(2), "p99": lat.group(3), "p999": lat.group(4)}


def one_pair(placement, rport, base):
    """One single-node run then one two-node run, in the placement named
    (cores: single server, loadgen; node A, node B, loadgen)."""
    (sc, slg), (ac, bc, clg) = placement
    s, sp = node(sc, None)
    try:
        single = loadgen(slg, [sp], base)
    finally:
        stop(s)
    redis_cli(rport, "config", "resetstat")
    a, ap = node(ac, rport)
    b, bp = node(bc, rport)
    try:
        time.sleep(0.5)
        cross = loadgen(clg, [ap, bp], base)
    finally:
        for p in (a, b):
            stop(p)
    cross["redis_publish_calls"] = int(
        re.search(r"cmdstat_publish:calls=(\d+)", redis_cli(rport, "info", "commandstats")).group(1))
    return single, cross


# Redis is on core 0 throughout. On one core everything agrees from run to
# run within a few per cent; across two, throughput jumps between levels
# from run to run (30 % and more), hence the repeats and the median.
PLACEMENTS = {
    "one core (servers, Redis and loadgen on core 0)": ((("0", "0"), ("0", "0", "0")), 2),
    "two cores (server, or node A and Redis, on core 0; node B and loadgen on core 1)":
        ((("0", "1"), ("0", "1", "1")), 3),
}


def closed_loop():
    base = ["-c", str(SUBSCRIBERS), "--senders", "1", "--in-flight", "64", "-d", DURATION, "-w", "1s"]
    rp, rport = redis()
    res = {}
    try:
        for name, (placement, reps) in PLACEMENTS.items():
            pairs = [one_pair(placement, rport, base) for _ in range(1 if QUICK else reps)]
            ratios = sorted(c["deliveries_per_sec"] / s["deliveries_per_sec"] for s, c in pairs)
            res[name] = {"pairs": pairs, "ratios": ratios, "median_ratio": statistics.median(ratios)}
        a, ap = node("0", rport)
        b, bp = node("1", rport)
        lat = []
        try:
            time.sleep(0.5)
            for rate in RATES:
                r = loadgen("1", [ap, bp], ["-c", str(SUBSCRIBERS), "--senders", "1", "--rate", str(rate),
                                            "-d", DURATION, "-w", "1s"])
                r["rate"] = rate
                lat.append(r)
        finally:
            for p in (a, b):
                stop(p)
    finally:
        rp.kill()
        rp.wait()
    return res, lat


def thread_totals(pattern):
    """Instruction totals of each callgrind thread file, by thread number."""
    res = {}
    for f in glob.glob(pattern):
        m = re.search(r"-(\d+)$", f)
        text = open(f).read()
        t = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
        res[int(m.group(1))] = int(t.group(1))
    return res


def broker_instructions():
    runs = {}
    for n in CG:
        rp, rport = redis()
        with tempfile.TemporaryDirectory() as d:
            vg = lambda name: ["valgrind", "--tool=callgrind", "--fair-sched=yes", "--separate-threads=yes",
                               f"--callgrind-out-file={d}/{name}.out"]
            a, ap = node(None, rport, prefix=vg("a"))
            b, bp = node(None, rport, prefix=vg("b"))
            try:
                time.sleep(1)
                loadgen("1", [ap, bp], ["-c", "100", "--senders", "1", "--in-flight", "16", "--messages", str(n),
                                        "-w", "0s", "-d", "600s", "--connect-timeout", "60s", "--drain", "60s"],
                        settle="5s")  # under callgrind, everything is some 50 times slower
            finally:
                stop(a)
                stop(b)
                rp.kill()
                rp.wait()
            time.sleep(0.3)
            # Threads: 1 main, 2 the worker, 3 the broker (started last).
            runs[n] = (thread_totals(f"{d}/a.out-*"), thread_totals(f"{d}/b.out-*"))
    n1, n2 = CG
    per = lambda side: (runs[n1][side][3] - runs[n2][side][3]) / (n1 - n2)
    return {"publishing_node_per_message": per(0), "receiving_node_per_message": per(1)}


def task_cpu(pid):
    """CPU seconds of each thread of `pid`, by thread name."""
    hz = os.sysconf("SC_CLK_TCK")
    res = {}
    for t in glob.glob(f"/proc/{pid}/task/*"):
        try:
            name = open(f"{t}/comm").read().strip()
            f = open(f"{t}/stat").read().rsplit(")", 1)[1].split()
            res[name] = res.get(name, 0) + (int(f[11]) + int(f[12])) / hz
        except OSError:
            pass
    return res


def broker_cpu():
    rp, rport = redis()
    a, ap = node("0", rport)
    b, bp = node("1", rport)
    try:
        time.sleep(0.5)
        args = ["-c", "10", "--senders", "1", "--rate", "100000", "-d", "5s", "-w", "1s"]
        before = {p.pid: task_cpu(p.pid) for p in (a, b)}
        t0 = time.time()
        r = loadgen("1", [ap, bp], args)
        dt = time.time() - t0
        after = {p.pid: task_cpu(p.pid) for p in (a, b)}
    finally:
        for p in (a, b):
            stop(p)
        rp.kill()
        rp.wait()
    res = {"deliveries_per_sec": r["deliveries_per_sec"], "seconds": dt}
    for side, p in (("publishing_node", a), ("receiving_node", b)):
        used = {k: after[p.pid].get(k, 0) - before[p.pid].get(k, 0) for k in after[p.pid]}
        total = sum(used.values())
        br = used.get("ringws-broker", 0)
        res[side] = {"broker_core_share": br / dt, "broker_process_share": br / max(total, 1e-9)}
    return res


def rss_kib(pid):
    return int(re.search(r"^VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read(), re.M).group(1))


def metrics(p):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'^ringws_broker_dropped_total\{reason="(\w+)"\} (\S+)',
                                                               text, re.M)}


def redis_away():
    rp, rport = redis()
    admin = port()
    a, ap = node("0", rport, admin=admin)
    samples = []
    try:
        time.sleep(0.5)
        lg = subprocess.Popen(["taskset", "-c", "1", f"{REL}/loadgen", "broadcast", f"ws://127.0.0.1:{ap}/", "-t", "1",
                               "-q", "-c", "10", "--senders", "1", "--rate", "100000", "-d", "23s", "-w", "1s"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        phase = "before"
        while lg.poll() is None:
            t = time.time() - t0
            if phase == "before" and t >= 5:
                os.kill(rp.pid, 19)  # SIGSTOP
                phase = "away"
            elif phase == "away" and t >= 20:
                os.kill(rp.pid, 18)  # SIGCONT
                phase = "after"
            samples.append((phase, t, rss_kib(a.pid)))
            time.sleep(0.25)
        out, err = lg.communicate()
        if lg.returncode:
            print(out, err, file=sys.stderr)
            raise RuntimeError("loadgen broadcast failed while Redis was away")
        dropped = metrics(admin)
    finally:
        stop(a)
        os.kill(rp.pid, 18)
        rp.kill()
        rp.wait()
    by = lambda ph: [kib for p, _, kib in samples if p == ph]
    # Resident memory 1, 5, 10 and 15 s into Redis's absence: flat once the
    # broker's pending bytes reach their bound (Redis::max_pending_bytes).
    away_at = {}
    for at in (1, 5, 10, 14.5):
        away_at[at] = next((kib for p, t, kib in samples if p == "away" and t >= 5 + at), None)
    return {"rss_kib_before": max(by("before")), "rss_kib_away_at": away_at,
            "rss_kib_away_peak": max(by("away")), "rss_kib_after": max(by("after")), "dropped": dropped}


def main():
    os.makedirs(OUT, exist_ok=True)
    loops, lat = closed_loop()
    print("cross-node fan-out, 1 publisher, %d subscribers (half on each node), 64 in flight, deliveries/s; "
          "target: two nodes at least 0.70x one" % SUBSCRIBERS)
    for name, r in loops.items():
        print("  %s:" % name)
        for single, cross in r["pairs"]:
            print("    one node %9.0f   two nodes through Redis %9.0f   %.2fx   Redis PUBLISH calls %d for %d "
                  "messages sent" % (single["deliveries_per_sec"], cross["deliveries_per_sec"],
                                     cross["deliveries_per_sec"] / single["deliveries_per_sec"],
                                     cross["redis_publish_calls"], cross["messages_sent"]))
        print("    median %.2fx" % r["median_ratio"], flush=True)
    print("  delivery latency across nodes at fixed rates (node A and Redis on core 0, node B and loadgen on "
          "core 1; from the intended send time):")
    for r in lat:
        print("    at %6d msgs/s: p50 %s p90 %s p99 %s p99.9 %s" % (
            r["rate"], r["p50"], r["p90"], r["p99"], r["p999"]), flush=True)
    cpu = broker_cpu()
    for side in ("publishing_node", "receiving_node"):
        print("  broker thread at 100,000 publishes/s, %s: %.1f%% of a core, %.1f%% of the process's CPU" % (
            side.replace("_", " "), 100 * cpu[side]["broker_core_share"], 100 * cpu[side]["broker_process_share"]))
    away = redis_away()
    print("  Redis stopped (SIGSTOP) for 15 s under 100,000 publishes/s: node's resident memory %d KiB before; "
          "away: %s; peak %d KiB; %d KiB after SIGCONT; broker drops: %s" % (
              away["rss_kib_before"],
              ", ".join("%d KiB at %gs" % (v, k) for k, v in away["rss_kib_away_at"].items() if v),
              away["rss_kib_away_peak"], away["rss_kib_after"],
              ", ".join("%s %d" % (k, v) for k, v in sorted(away["dropped"].items()) if v) or "none"), flush=True)
    cg = broker_instructions()
    print("  broker thread, user-space instructions per message (callgrind): %.0f publishing, %.0f relaying" % (
        cg["publishing_node_per_message"], cg["receiving_node_per_message"]))
    with open(os.path.join(OUT, "fanout-cross.json"), "w") as f:
        json.dump({"closed_loop": loops, "latency": lat, "broker_cpu": cpu, "redis_away": away,
                   "broker_instructions": cg}, f, indent=1)


if __name__ == "__main__":
    main()
