"""The benchmark behind scripts/bench.sh (see there). Every server runs with
one thread; loadgen with one thread. Placements:

  shared  server and loadgen both on core 0. msgs/s is then about
          1 / (server cost + client cost), the client cost is the same for
          every server, and rounds agree within about 2 %: the ratios come
          from here.
  split   server on core 0, loadgen on core 1: absolute throughput, which on
          this guest jumps between levels from run to run.

Server CPU time per message is the server's user + system time over the
measured window (/proc/PID/stat) divided by the messages echoed in it.
User-space instructions per message come from callgrind: two runs of
--messages N1 and N2 against a fresh server each, (I1 - I2) / (N1 - N2), so
every per-connection cost cancels out.

--tls (with --quick: fewer loads, one round) measures wss:// instead: ringws
and the two TLS peers (tokio-websockets and fastwebsockets behind
tokio-rustls, on the same rustls and aws-lc-rs) in the shared placement at
every load, and ringws again over plain ws:// in the same run, so that
the difference in server ns/msg is what TLS costs per message. ringws and
loadgen come from target/tls (built with the tls features, see bench.sh);
the certificates are a throwaway CA and leaf (ECDSA P-256) made with
openssl in a temporary directory. Writes target/bench/results-tls.json and
report-tls.md.
"""
import json, os, re, socket, statistics, subprocess, sys, tempfile, time

QUICK = "--quick" in sys.argv
# Only the compressed-echo section.
DEFLATE_ONLY = "--deflate" in sys.argv
# Only the wss:// section.
TLS = "--tls" in sys.argv
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REL = os.path.join(ROOT, "target", "release")
# ringws and loadgen built with the tls features, apart from the plain
# build so that the plain figures keep coming from the binaries they always
# did (see bench.sh).
TLS_REL = os.path.join(ROOT, "target", "tls", "release")
OUT = os.path.join(ROOT, "target", "bench")
# Ports from a base of this process's own, so that two runs at once on the
# machine do not walk the same ports (see next_port); below the ephemeral
# range (32768 up), where a probe of a port nobody listens on yet can
# connect to itself.
PORT = 20000 + os.getpid() % 2000 * 5
HZ = os.sysconf("SC_CLK_TCK")

SERVERS = [
    ("ringws", [f"{REL}/ringws", "--listen", "{addr}", "--threads", "1", "--log-level", "warn"], False),
    ("ringws-epoll", [f"{REL}/ringws", "--listen", "{addr}", "--threads", "1", "--backend", "epoll",
                      "--log-level", "warn"], False),
    ("fastwebsockets", [f"{REL}/peer-fastwebsockets", "{addr}"], False),
    ("tokio-tungstenite", [f"{REL}/peer-tungstenite", "{addr}"], False),
    ("tokio-websockets", [f"{REL}/peer-tokio-websockets", "{addr}"], False),
    ("tcp-echo", [f"{REL}/peer-tcp-echo", "{addr}"], True),
    ("uring-echo", [f"{REL}/peer-uring-echo", "{addr}"], True),
]
# (connections, payload bytes, messages in flight per connection)
LOADS = [(100, 20, 1), (10, 1024, 1), (500, 16384, 1), (1000, 512, 1), (10, 1024, 64)]
if QUICK:
    LOADS = [(100, 20, 1), (10, 16384, 1), (10, 1024, 64)]
# Pipelined loads are measured with server and loadgen sharing a core only:
# their point is how much a server batches, which the split placement's
# noise would hide.
PIPELINED_PLACEMENTS = ("shared",)
ROUNDS = 1 if QUICK else 3
LATENCY_ROUNDS = 1 if QUICK else 5
DURATION = 1.5 if QUICK else 2.5
WARMUP = 0.5
PLACEMENTS = {"shared": "0", "split": "1"}
CALLGRIND_LOADS = [(100, 20, 20000, 10000), (10, 16384, 2000, 1000)]
# The same count with scripts/pingpong.py as the client: one message per
# write, strict ping-pong per connection, so a loop turn carries one message
# (one connection) or a few (100), and the cost of a turn shows; loadgen
# sends as fast as it can and a turn carries many. The last field is the
# client's think time (seconds between an echo and the connection's next
# message): under callgrind the server is some 50 times slower than
# natively, and without a pause the client's next message is often
# already there when the server reads again, which natively it never is
# (the counts then swing by a third from run to run on epoll). 100
# connections thinking 20 ms offer 5,000 messages a second.
PINGPONG_LOADS = [(1, 20, 2000, 1000, 0.001), (100, 20, 4000, 2000, 0.02)]
# permessage-deflate: ringws echoing 100 connections' 512 B price-ticker
# JSON, uncompressed and in both deflate modes; loadgen offers deflate every
# time (the `off` server declines it), server and loadgen sharing core 0.
DEFLATE_LOAD = (100, 512)
DEFLATE_MODES = ["off", "shared", "dedicated"]
DEFLATE_LOADGEN = ["--payload", "json", "--deflate"]
if QUICK:
    CALLGRIND_LOADS = [(100, 20, 8000, 4000), (10, 16384, 800, 400)]


def next_port():
    """The next port after the last one used that nothing listens on: a
    server of another run on the machine (two worktrees measuring at once)
    would otherwise answer our client while ours fails to bind."""
    global PORT
    while True:
        PORT += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", PORT))
                return PORT
            except OSError:
                continue


def wait_port(port, proc, timeout=30.0):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError("server exited: %s" % proc.args)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen: %s" % proc.args)


def start_server(cmd, port, prefix=()):
    args = list(prefix) + [a.replace("{addr}", "127.0.0.1:%d" % port) for a in cmd]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The probe connection above counts as a client for some servers; it is
    # closed at once and does not matter to the figures.
    wait_port(port, p, 60.0 if prefix else 10.0)
    return p


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def loadgen(port, conns, size, raw, core, extra, json_path, tls_ca=None, rel=REL):
    """loadgen from `rel`; wss:// trusting the CA file `tls_ca` if given.
    127.0.0.1 rather than localhost: the test leaf carries that address,
    and a name could resolve to ::1, where the servers do not listen."""
    url = "%s://127.0.0.1:%d/" % ("wss" if tls_ca else "ws", port)
    args = ["taskset", "-c", core, f"{rel}/loadgen", url, "--threads", "1",
            "--connections", str(conns), "--size", str(size), "--quiet", "--json", json_path]
    if raw:
        args.append("--raw")
    if tls_ca:
        args += ["--ca", tls_ca]
    return subprocess.Popen(args + extra, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def load_key(conns, size, in_flight):
    return "%d x %d B" % (conns, size) + (" x %d in flight" % in_flight if in_flight > 1 else "")


def throughput_run(name, cmd, raw, conns, size, placement, in_flight=1, lg_args=(), tls_ca=None, rel=REL,
                   warmup=WARMUP):
    next_port()
    server = start_server(["taskset", "-c", "0"] + cmd, PORT)
    with tempfile.NamedTemporaryFile(suffix=".json") as tf:
        lg = loadgen(PORT, conns, size, raw, PLACEMENTS[placement], ["--warmup", "%gs" % warmup,
                     "--duration", "%gs" % DURATION, "--in-flight", str(in_flight)] + list(lg_args), tf.name,
                     tls_ca, rel)
        # Sample inside the measured window (connections are made first).
        time.sleep(warmup + 0.3 + (conns / 4000.0))
        s0, c0, w0 = cpu_ticks(server.pid), cpu_ticks(lg.pid), time.time()
        time.sleep(max(0.3, DURATION - 0.6))
        s1, c1, w1 = cpu_ticks(server.pid), cpu_ticks(lg.pid), time.time()
        _, err = lg.communicate()
        stop(server)
        run = json.load(open(tf.name))["runs"][0]
    if run["errors"]["total"]:
        print("  %s: %d errors: %s" % (name, run["errors"]["total"], run["error_samples"]), file=sys.stderr)
    window = w1 - w0
    msgs = run["msgs_per_sec"] * window
    wire = run["wire"]
    return {
        # Bytes on the wire per payload byte, each way (frame headers in).
        "wire_out": wire["wire_out"] / wire["plain_out"] if wire["plain_out"] else None,
        "wire_in": wire["wire_in"] / wire["plain_in"] if wire["plain_in"] else None,
        "msgs_per_sec": run["msgs_per_sec"],
        "server_ns_per_msg": (s1 - s0) / HZ * 1e9 / msgs if msgs else None,
        "server_cpu": (s1 - s0) / HZ / window,
        "client_cpu": (c1 - c0) / HZ / window,
        "errors": run["errors"]["total"],
    }


def latency_run(name, cmd, raw, rate):
    next_port()
    server = start_server(["taskset", "-c", "0"] + cmd, PORT)
    with tempfile.NamedTemporaryFile(suffix=".json") as tf:
        lg = loadgen(PORT, 100, 20, raw, "1", ["--warmup", "0.5s", "--duration", "%gs" % (DURATION + 0.5),
                     "--rate", str(int(rate))], tf.name)
        lg.communicate()
        stop(server)
        run = json.load(open(tf.name))["runs"][0]
    lat = run["latency_ns"]
    return {"msgs_per_sec": run["msgs_per_sec"], "p50": lat["p50"], "p99": lat["p99"], "p99.9": lat["p99.9"],
            "max": lat["max"], "errors": run["errors"]["total"]}


def pingpong(port, conns, size, n, think=0.0):
    """scripts/pingpong.py's run of `n` messages: what loadgen's JSON says
    of a run, as far as `instructions` reads it."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "pingpong.py"), "127.0.0.1:%d" % port,
                        "--connections", str(conns), "--messages", str(n), "--size", str(size), "--think", str(think)],
                       capture_output=True, text=True)
    try:
        x = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        x = {"messages": 0, "errors": 1}
    return {"messages": x["messages"], "errors": {"total": x["errors"]}, "error_samples": r.stderr.strip()[-500:]}


def instructions(name, cmd, raw, conns, size, n1, n2, client="loadgen", think=0.0, tls_ca=None, rel=REL):
    """User-space instructions per echo: callgrind on the server, two runs
    of n1 and n2 messages. `client`: loadgen (as fast as it can, batching
    whatever is ready) or pingpong (scripts/pingpong.py: one message per
    write, strict ping-pong per connection, so a turn carries few; `think`
    seconds between an echo and the next message on a connection).
    `tls_ca`: loadgen (from `rel`) speaks wss:// and trusts this CA."""
    counts = {}
    for n in (n1, n2):
        next_port()
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "cg.out")
            # --fair-sched: valgrind runs one thread at a time, and its
            # default lock can hand itself straight back to a worker that
            # yields after an io_uring wait (which it does not know blocks),
            # so the thread that waits for SIGINT may never run.
            server = start_server(cmd, PORT, prefix=["valgrind", "--tool=callgrind", "--fair-sched=yes",
                                                     "--callgrind-out-file=" + out])
            if client == "pingpong":
                done = pingpong(PORT, conns, size, n, think)
            else:
                jf = os.path.join(d, "run.json")
                lg = loadgen(PORT, conns, size, raw, "1", ["--messages", str(n), "--warmup", "0s",
                             "--duration", "600s", "--connect-timeout", "30s"], jf, tls_ca, rel)
                lg.communicate()
                done = json.load(open(jf))["runs"][0]
            # SIGINT: ringws shuts down gracefully; the peers just exit.
            server.send_signal(2)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.terminate()
                server.wait()
            time.sleep(0.2)
            text = open(out).read()
            m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
            if done["messages"] != n or done["errors"]["total"]:
                raise RuntimeError("%s: %d of %d messages, errors %s" % (name, done["messages"], n, done["error_samples"]))
            counts[n] = int(m.group(1))
    return (counts[n1] - counts[n2]) / (n1 - n2)


def versions():
    # The peers have a lock file of their own; io-uring is ringws's too.
    lock = open(os.path.join(ROOT, "benches", "peers", "Cargo.lock")).read()
    v = {}
    for name in ("fastwebsockets", "tokio-tungstenite", "tungstenite", "tokio-websockets", "tokio-uring", "io-uring", "hyper", "tokio"):
        found = re.findall(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), lock)
        v[name] = " and ".join(found) if found else None
    return v


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"kernel": os.uname().release, "cpu": cpu, "cores": os.cpu_count(),
            "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def make_certs(d):
    """A throwaway CA and a leaf for localhost and 127.0.0.1 (ECDSA P-256,
    two days) in `d`, as scripts/idle-memory.sh --tls makes them: (CA,
    leaf certificate, leaf key)."""
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)
    p = lambda f: os.path.join(d, f)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=bench-ca", "-keyout", p("ca.key"), "-out", p("ca.pem"))
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
            "-keyout", p("leaf.key"), "-out", p("leaf.csr"))
    open(p("leaf.ext"), "w").write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", p("leaf.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-set_serial", "1",
            "-days", "2", "-extfile", p("leaf.ext"), "-out", p("leaf.pem"))
    return p("ca.pem"), p("leaf.pem"), p("leaf.key")


# wss:// runs start loadgen's measured window this long after it starts:
# up to 1,000 TLS handshakes (certificate checks in loadgen, ECDSA
# signatures and key exchanges in the server) share core 0 with the echo,
# and must be done before the server's CPU time is sampled.
TLS_WARMUP = 1.5


def tls_servers(cert, key):
    """(name, command, is TLS) of the --tls section: ringws and the TLS
    peers over wss://, then ringws over ws:// from the same binary, so that
    the TLS transform is the only difference."""
    ringws = [f"{TLS_REL}/ringws", "--listen", "{addr}", "--threads", "1", "--log-level", "warn"]
    return [
        ("ringws", ringws + ["--tls-cert", cert, "--tls-key", key], True),
        ("fastwebsockets", [f"{REL}/peer-fastwebsockets-tls", "{addr}", cert, key], True),
        ("tokio-websockets", [f"{REL}/peer-tokio-websockets-tls", "{addr}", cert, key], True),
        ("ringws-plain", ringws, False),
    ]


def tls_versions():
    v = {k: x for k, x in versions().items() if k in ("fastwebsockets", "tokio-websockets", "hyper", "tokio")}
    lock = open(os.path.join(ROOT, "benches", "peers", "Cargo.lock")).read()
    ours = open(os.path.join(ROOT, "Cargo.lock")).read()
    for name in ("tokio-rustls", "rustls", "aws-lc-rs"):
        found = re.findall(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), lock)
        v[name] = " and ".join(found) if found else None
        if name != "tokio-rustls":
            # ringws's own: the comparison is only fair while they agree.
            mine = re.findall(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), ours)
            v["ringws " + name] = " and ".join(mine) if mine else None
    return v


def tls_main():
    os.makedirs(OUT, exist_ok=True)
    t_start = time.time()
    res = {"machine": machine(), "versions": tls_versions(), "quick": QUICK, "rounds": ROUNDS,
           "duration_s": DURATION, "warmup_s": TLS_WARMUP, "target_ratio": 1.15, "throughput": {}}
    runs = {}
    with tempfile.TemporaryDirectory() as d:
        ca, cert, key = make_certs(d)
        servers = tls_servers(cert, key)
        # Rounds interleaved, so drift hits every server alike.
        for r in range(ROUNDS):
            for conns, size, in_flight in LOADS:
                key_ = load_key(conns, size, in_flight)
                for name, cmd, tls in servers:
                    x = throughput_run(name, cmd, False, conns, size, "shared", in_flight, tls_ca=ca if tls else None,
                                       rel=TLS_REL, warmup=TLS_WARMUP)
                    runs.setdefault(key_, {}).setdefault(name, []).append(x)
                    print("round %d %-22s %-17s %9.0f msgs/s  server %5.0f ns/msg  cpu s %3.0f%% c %3.0f%%"
                          % (r + 1, key_, name, x["msgs_per_sec"], x["server_ns_per_msg"] or 0,
                             100 * x["server_cpu"], 100 * x["client_cpu"]), flush=True)
    peers = [n for n, _, tls in servers if tls and n != "ringws"]
    for key_, by_srv in runs.items():
        row = {name: {"msgs_per_sec": med([x["msgs_per_sec"] for x in xs]),
                      "min": min(x["msgs_per_sec"] for x in xs), "max": max(x["msgs_per_sec"] for x in xs),
                      "server_ns_per_msg": med([x["server_ns_per_msg"] for x in xs]),
                      "server_cpu": med([x["server_cpu"] for x in xs]), "client_cpu": med([x["client_cpu"] for x in xs]),
                      "errors": sum(x["errors"] for x in xs), "rounds": xs}
               for name, xs in by_srv.items()}
        best = max(peers, key=lambda n: row[n]["msgs_per_sec"] or 0)
        ours, plain = row["ringws"], row["ringws-plain"]
        res["throughput"][key_] = {
            "servers": row, "best_peer": best,
            "ratio_to_best_peer": ours["msgs_per_sec"] / row[best]["msgs_per_sec"] if row[best]["msgs_per_sec"] else None,
            # What TLS adds to ringws's CPU time per echoed message.
            "tls_ns_per_msg": (ours["server_ns_per_msg"] - plain["server_ns_per_msg"]
                               if ours["server_ns_per_msg"] and plain["server_ns_per_msg"] else None)}
    res["elapsed_s"] = time.time() - t_start
    report = render_tls(res, peers)
    print()
    print(report)
    json.dump(res, open(os.path.join(OUT, "results-tls.json"), "w"), indent=1)
    open(os.path.join(OUT, "report-tls.md"), "w").write(report)
    print("bench: wrote target/bench/results-tls.json, report-tls.md in %.0f s" % res["elapsed_s"])


def render_tls(res, peers):
    m = res["machine"]
    L = ["# ringws benchmark: wss:// echo%s" % (" (quick)" if res["quick"] else ""), "",
         "Machine: %s, %d cores, Linux %s; %s." % (m["cpu"], m["cores"], m["kernel"], m["rustc"]),
         "Peers behind tokio-rustls: " + ", ".join("%s %s" % kv for kv in res["versions"].items() if kv[1]) + ".",
         "Every server one thread, loadgen one thread, both on core 0; TLS 1.3 (ECDSA P-256 leaf);"
         " %d round(s) of %.1f s per cell after %.1f s of warm-up, medians."
         % (res["rounds"], res["duration_s"], res["warmup_s"]),
         "Reproduce: `scripts/bench.sh --tls%s`." % (" --quick" if res["quick"] else ""), "",
         "## wss echo msgs/s (ringws's ratio to the best peer; target at least %.2f)" % res["target_ratio"], "",
         "| load | ringws | " + " | ".join(peers) + " | ringws / best peer |", "|---" * (len(peers) + 3) + "|"]
    for key, t in res["throughput"].items():
        row = t["servers"]
        L.append("| %s | " % key + " | ".join("%.0f" % row[n]["msgs_per_sec"] for n in ["ringws"] + peers)
                 + " | %s (%s)%s |" % (ratio(row["ringws"]["msgs_per_sec"], row[t["best_peer"]]["msgs_per_sec"]),
                                       t["best_peer"], "" if (t["ratio_to_best_peer"] or 0) >= res["target_ratio"] else " below target"))
    L += ["", "## Server CPU ns per message, wss (ratio to ringws)", "",
          "| load | ringws | " + " | ".join(peers) + " |", "|---" * (len(peers) + 2) + "|"]
    for key, t in res["throughput"].items():
        row = t["servers"]
        rs = row["ringws"]["server_ns_per_msg"]
        L.append("| %s | " % key + " | ".join("%.0f (%s)" % (row[n]["server_ns_per_msg"] or 0, ratio(row[n]["server_ns_per_msg"], rs))
                                              for n in ["ringws"] + peers) + " |")
    L += ["", "## What TLS costs ringws per message (the same binary over ws:// and wss://, same run)", "",
          "| load | plain ns/msg | TLS ns/msg | TLS adds ns/msg | plain msgs/s | TLS msgs/s |", "|---|---|---|---|---|---|"]
    for key, t in res["throughput"].items():
        p, s = t["servers"]["ringws-plain"], t["servers"]["ringws"]
        L.append("| %s | %.0f | %.0f | %s | %.0f | %.0f |" % (key, p["server_ns_per_msg"] or 0, s["server_ns_per_msg"] or 0,
                 "%.0f" % t["tls_ns_per_msg"] if t["tls_ns_per_msg"] is not None else "-", p["msgs_per_sec"], s["msgs_per_sec"]))
    errors = {}
    for t in res["throughput"].values():
        for n, x in t["servers"].items():
            errors[n] = errors.get(n, 0) + x["errors"]
    errors = {n: e for n, e in errors.items() if e}
    if errors:
        L += ["", "Errors: " + ", ".join("%s %d" % kv for kv in errors.items()) + "."]
    return "\n".join(L) + "\n"


def main():
    if TLS:
        return tls_main()
    os.makedirs(OUT, exist_ok=True)
    t_start = time.time()
    res = {"machine": machine(), "versions": versions(), "quick": QUICK, "rounds": ROUNDS,
           "latency_rounds": LATENCY_ROUNDS,
           "duration_s": DURATION, "throughput": {}, "latency": {}, "instructions": {}}
    # Throughput: rounds interleaved, so drift hits every server alike.
    runs = {}
    for r in range(0 if DEFLATE_ONLY else ROUNDS):
        for conns, size, in_flight in LOADS:
            for placement in PLACEMENTS:
                if in_flight > 1 and placement not in PIPELINED_PLACEMENTS:
                    continue
                for name, cmd, raw in SERVERS:
                    key = load_key(conns, size, in_flight)
                    x = throughput_run(name, cmd, raw, conns, size, placement, in_flight)
                    runs.setdefault(key, {}).setdefault(placement, {}).setdefault(name, []).append(x)
                    print("round %d %-14s %-6s %-18s %9.0f msgs/s  server %5.0f ns/msg  cpu s %3.0f%% c %3.0f%%"
                          % (r + 1, key, placement, name, x["msgs_per_sec"], x["server_ns_per_msg"] or 0,
                             100 * x["server_cpu"], 100 * x["client_cpu"]), flush=True)
    for key, by_pl in runs.items():
        res["throughput"][key] = {}
        for placement, by_srv in by_pl.items():
            res["throughput"][key][placement] = {
                name: {"msgs_per_sec": med([x["msgs_per_sec"] for x in xs]),
                       "min": min(x["msgs_per_sec"] for x in xs), "max": max(x["msgs_per_sec"] for x in xs),
                       "server_ns_per_msg": med([x["server_ns_per_msg"] for x in xs]),
                       "server_cpu": med([x["server_cpu"] for x in xs]), "client_cpu": med([x["client_cpu"] for x in xs]),
                       "errors": sum(x["errors"] for x in xs), "rounds": xs}
                for name, xs in by_srv.items()}
    # Compressed echo, rounds interleaved.
    conns, size = DEFLATE_LOAD
    ringws_cmd = dict((n, c) for n, c, _ in SERVERS)["ringws"]
    z_runs = {}
    for r in range(ROUNDS):
        for mode in DEFLATE_MODES:
            x = throughput_run("ringws", ringws_cmd + ["--deflate", mode], False, conns, size, "shared",
                               lg_args=DEFLATE_LOADGEN)
            z_runs.setdefault(mode, []).append(x)
            print("round %d deflate %-9s %9.0f msgs/s  server %5.0f ns/msg  wire/payload %.3f sent %.3f echoed"
                  % (r + 1, mode, x["msgs_per_sec"], x["server_ns_per_msg"] or 0, x["wire_out"] or 0,
                     x["wire_in"] or 0), flush=True)
    res["deflate"] = {"load": "%d x %d B JSON" % DEFLATE_LOAD, "modes": {
        mode: {k: med([x[k] for x in xs]) for k in ("msgs_per_sec", "server_ns_per_msg", "wire_out", "wire_in")}
        | {"errors": sum(x["errors"] for x in xs), "rounds": xs}
        for mode, xs in z_runs.items()}}
    # Latency at 50 % and 80 % of the slowest WebSocket peer's maximum at
    # 100 x 20 B (split placement, where loadgen has its own core).
    base = res["throughput"].get("100 x 20 B", {}).get("split", {})
    slowest = min((base[n]["msgs_per_sec"] for n, _, raw in SERVERS if base and not raw and not n.startswith("ringws")),
                  default=0)
    # Rounds interleaved, medians of each percentile: one round's p99 is
    # noise-dominated on this machine.
    lat_runs = {}
    for r in range(0 if DEFLATE_ONLY else LATENCY_ROUNDS):
        for frac in (0.5, 0.8):
            rate = slowest * frac
            key = "%d%% (%d msgs/s)" % (frac * 100, rate)
            for name, cmd, raw in SERVERS:
                x = latency_run(name, cmd, raw, rate)
                lat_runs.setdefault(key, {}).setdefault(name, []).append(x)
                print("latency round %d %-22s %-18s p50 %7.0f us  p99 %7.0f us  p99.9 %7.0f us  max %7.0f us"
                      % (r + 1, key, name, x["p50"] / 1e3, x["p99"] / 1e3, x["p99.9"] / 1e3, x["max"] / 1e3), flush=True)
    for key, by_srv in lat_runs.items():
        res["latency"][key] = {
            name: dict({q: med([x[q] for x in xs]) for q in ("msgs_per_sec", "p50", "p99", "p99.9", "max")},
                       errors=sum(x["errors"] for x in xs), rounds=xs)
            for name, xs in by_srv.items()}
    # User-space instructions per echoed message.
    for conns, size, n1, n2 in [] if DEFLATE_ONLY else CALLGRIND_LOADS:
        key = "%d x %d B" % (conns, size)
        res["instructions"][key] = {}
        for name, cmd, raw in SERVERS:
            ins = instructions(name, cmd, raw, conns, size, n1, n2)
            res["instructions"][key][name] = ins
            print("instructions %-14s %-18s %8.0f per message" % (key, name, ins), flush=True)
    res["elapsed_s"] = time.time() - t_start
    report = render(res)
    print()
    print(report)
    if DEFLATE_ONLY:
        # Beside a full run's files, not over them.
        json.dump(res, open(os.path.join(OUT, "deflate.json"), "w"), indent=1)
        open(os.path.join(OUT, "deflate.md"), "w").write(report)
        print("bench: wrote target/bench/deflate.json, deflate.md in %.0f s" % res["elapsed_s"])
        return
    json.dump(res, open(os.path.join(OUT, "results.json"), "w"), indent=1)
    open(os.path.join(OUT, "report.md"), "w").write(report)
    open(os.path.join(OUT, "chart.svg"), "w").write(chart(res))
    print("bench: wrote target/bench/results.json, report.md, chart.svg in %.0f s" % res["elapsed_s"])


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def render(res):
    names = [n for n, _, _ in SERVERS]
    m = res["machine"]
    L = ["# ringws benchmark%s" % (" (quick)" if res["quick"] else ""), "",
         "Machine: %s, %d cores, Linux %s; %s." % (m["cpu"], m["cores"], m["kernel"], m["rustc"]),
         "Peers: " + ", ".join("%s %s" % kv for kv in res["versions"].items() if kv[1]) + ".",
         "Every server one thread; loadgen one thread; %d round(s) of %.1f s per cell, medians;"
         " latency: %d interleaved round(s), medians of each percentile."
         % (res["rounds"], res["duration_s"], res.get("latency_rounds", 1)),
         "Reproduce: `scripts/bench.sh%s`." % (" --quick" if res["quick"] else " --deflate" if DEFLATE_ONLY else ""), ""]
    L += ["## Throughput, server and loadgen sharing core 0 (ratios to ringws)", "",
          "| load | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, by_pl in res["throughput"].items():
        row = by_pl["shared"]
        r = row["ringws"]["msgs_per_sec"]
        L.append("| %s msgs/s | " % key + " | ".join("%.0f (%s)" % (row[n]["msgs_per_sec"], ratio(row[n]["msgs_per_sec"], r)) for n in names) + " |")
        rs = row["ringws"]["server_ns_per_msg"]
        L.append("| %s server ns/msg | " % key + " | ".join("%.0f (%s)" % (row[n]["server_ns_per_msg"] or 0, ratio(row[n]["server_ns_per_msg"], rs)) for n in names) + " |")
    L += ["", "## Throughput, server on core 0, loadgen on core 1 (median, min-max; CPU use server/loadgen)", "",
          "| load | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, by_pl in res["throughput"].items():
        if "split" not in by_pl:
            continue
        row = by_pl["split"]
        L.append("| %s | " % key + " | ".join("%.0f (%.0f-%.0f; %.0f%%/%.0f%%)" % (row[n]["msgs_per_sec"], row[n]["min"], row[n]["max"],
                 100 * row[n]["server_cpu"], 100 * row[n]["client_cpu"]) for n in names) + " |")
    L += ["", "## Latency at fixed rates (100 connections, 20 B, corrected for coordinated omission; microseconds p50 / p99 / p99.9 / max)", "",
          "| rate | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, row in res["latency"].items():
        L.append("| %s | " % key + " | ".join("%.0f / %.0f / %.0f / %.0f" % (row[n]["p50"] / 1e3, row[n]["p99"] / 1e3, row[n]["p99.9"] / 1e3, row[n]["max"] / 1e3) for n in names) + " |")
    if "deflate" in res:
        z = res["deflate"]["modes"]
        off = z["off"]["msgs_per_sec"]
        L += ["", "## permessage-deflate: ringws echoing %s, server and loadgen sharing core 0" % res["deflate"]["load"], "",
              "| `--deflate` | msgs/s (ratio to off) | server ns/msg | wire bytes per payload byte, sent / echoed |",
              "|---|---|---|---|"]
        for mode, x in z.items():
            L.append("| %s | %.0f (%s) | %.0f | %.3f / %.3f |" % (mode, x["msgs_per_sec"], ratio(x["msgs_per_sec"], off),
                     x["server_ns_per_msg"] or 0, x["wire_out"] or 0, x["wire_in"] or 0))
    L += ["", "## User-space instructions per echoed message (callgrind; ratio to ringws)", "",
          "| load | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, row in res["instructions"].items():
        L.append("| %s | " % key + " | ".join("%.0f (%s)" % (row[n], ratio(row[n], row["ringws"])) for n in names) + " |")
    return "\n".join(L) + "\n"


def chart(res):
    names = [n for n, _, _ in SERVERS]
    colors = ["#d62728", "#ff9896", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f", "#bcbd22"]
    loads = list(res["throughput"].keys())
    W, H, top, left, gh = 900, 360 + 40 * len(names), 40, 70, 260
    group_w = (W - left - 20) / len(loads)
    bar_w = group_w * 0.8 / len(names)
    peak = max(res["throughput"][k]["shared"][n]["msgs_per_sec"] for k in loads for n in names) or 1
    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
         '<text x="%d" y="20" font-size="15">Echo throughput, msgs/s (server and loadgen sharing one core)</text>' % left]
    for i, k in enumerate(loads):
        for j, n in enumerate(names):
            v = res["throughput"][k]["shared"][n]["msgs_per_sec"]
            h = gh * v / peak
            x = left + i * group_w + group_w * 0.1 + j * bar_w
            s.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.0f</title></rect>'
                     % (x, top + gh - h, bar_w - 2, h, colors[j], n, k, v))
        s.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (left + i * group_w + group_w / 2, top + gh + 16, k))
    s.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (left, top + gh, W - 20, top + gh))
    s.append('<text x="5" y="%d">%.0f</text>' % (top + 10, peak))
    y = top + gh + 40
    s.append('<text x="%d" y="%d" font-size="15">p99 latency at fixed rates, microseconds</text>' % (left, y))
    lat = res["latency"]
    lpeak = max(lat[k][n]["p99"] for k in lat for n in names) or 1
    for i, k in enumerate(lat):
        for j, n in enumerate(names):
            v = lat[k][n]["p99"]
            w = (W - left - 280) * v / lpeak
            yy = y + 14 + (i * (len(names) + 1) + j) * 12
            s.append('<rect x="%d" y="%d" width="%.1f" height="10" fill="%s"/><text x="%.1f" y="%d" font-size="10">%s %s: %.0f</text>'
                     % (left, yy, w, colors[j], left + w + 4, yy + 9, n, k, v / 1e3))
    s.append("</svg>")
    return "\n".join(s) + "\n"


if __name__ == "__main__":
    main()
