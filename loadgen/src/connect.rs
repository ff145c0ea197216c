//! `loadgen connect`: handshake load. Every connection is new and short:
//! TCP connect, TLS (for `wss://`), the WebSocket upgrade, one echo of a
//! small message, and the close handshake; then it is gone and another
//! takes its place.
//!
//! * Closed loop (default): `--concurrency` connections are in progress at
//!   all times; a new one starts as soon as one ends.
//! * Rate (`--rate`): connections start on a fixed schedule, whatever the
//!   server does, with at most `--concurrency` in progress. A start the
//!   bound holds back keeps its intended time, and its times are taken
//!   from there (corrected for coordinated omission, as the echo run's
//!   rate mode is); how many started late is reported.
//!
//! Two times per connection, from its (intended) start: until the `101`
//! (TCP, TLS and the upgrade) and until the echo. A connection that
//! gets its `101` in the measured window counts as one handshake; with
//! TLS, whether rustls resumed a session is counted too.
//!
//! Resumption uses rustls's in-memory cache, which keeps at most 8 TLS
//! 1.3 tickets per server: each connection takes one and leaves one, so
//! above `--concurrency 8` the tickets of connections still echoing and
//! closing overflow it, and some handshakes are full ones even with
//! resumption on (at 16, about half were, on one core). The table says how
//! many of each there were.
//!
//! Every connection ends exactly once: completed (the server's Close and
//! then its FIN) or with one error of one kind. So over the whole run,
//! `started = completed + errors`, which the tests check.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use ringws::proto::client::ClientHandshake;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};
use ringws::runtime::client::{Gone, Handler, InputBuf, Io, LoopOptions, SockId};

use crate::report::{humantime, js_hist, latency_rows, Machine};
use crate::stats::{histogram, Errors, Snapshot};
use crate::target::Target;
use crate::worker::{nonce, random_seed, xorshift};

/// Handshake load: new connections, each doing one echo.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The server, as ws://host:port/path (or wss://, built with the `tls`
    /// feature).
    target: String,
    /// Certificate checks of a wss:// target.
    #[command(flatten)]
    tls: crate::target::TlsArgs,
    /// Start connections at this many per second in total (open loop);
    /// without it, as fast as --concurrency allows.
    #[arg(long)]
    rate: Option<f64>,
    /// Connections in progress at most, spread over the threads. With TLS
    /// resumption, keep it at 8 or below to have every handshake resume:
    /// rustls's client keeps 8 tickets per server.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Worker threads, each with its own io_uring [default: number of
    /// cores, at most --concurrency].
    #[arg(short, long)]
    threads: Option<usize>,
    /// Pin worker i to core i.
    #[arg(long)]
    pin: bool,
    /// Payload bytes of the one binary message each connection echoes.
    #[arg(short, long, default_value = "20", value_parser = crate::size)]
    size: usize,
    /// Measured time (s or ms suffix).
    #[arg(short, long, default_value = "10s", value_parser = crate::duration)]
    duration: Duration,
    /// Time before the measured window, not counted.
    #[arg(short, long, default_value = "1s", value_parser = crate::duration)]
    warmup: Duration,
    /// Time allowed for one connection's whole life: connect, TLS,
    /// upgrade, echo and close.
    #[arg(long, default_value = "5s", value_parser = crate::duration)]
    timeout: Duration,
    /// Do not resume TLS sessions: every handshake a full one (wss://).
    #[arg(long)]
    no_resumption: bool,
    /// Local addresses to connect from, round-robin (as for the echo run).
    #[arg(long)]
    source_ips: Option<String>,
    /// Write every number of the run, its parameters and the machine as
    /// JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// Kernel interface: auto (io_uring where allowed, else epoll),
    /// io-uring or epoll.
    #[arg(long, default_value = "auto")]
    backend: ringws::BackendKind,
}

/// The run, shared by the worker threads.
struct Plan {
    target: Target,
    threads: usize,
    concurrency: usize,
    rate: Option<f64>,
    /// The message each connection sends and expects back.
    message: Vec<u8>,
    start: Instant,
    measure_from: Instant,
    /// No connection starts after this.
    end: Instant,
    timeout: Duration,
    sources: Vec<IpAddr>,
}

/// One thread's counts.
struct Counts {
    /// Connections started, over the whole run.
    started: u64,
    /// Connections that went through the close handshake and the server's
    /// FIN, over the whole run.
    completed: u64,
    /// Errors, by kind, over the whole run (one per failed connection).
    errors: Errors,
    samples: Vec<String>,
    /// `101`s received in the measured window.
    handshakes: u64,
    /// Echoes checked in the measured window.
    echoes: u64,
    /// Of the window's TLS handshakes: full ones, and resumed ones.
    tls_full: u64,
    tls_resumed: u64,
    /// Rate mode: starts over 1 ms behind the schedule (the concurrency
    /// bound held them back, or the loop was late).
    late: u64,
    /// From the (intended) start until the `101`; and until the echo. For
    /// the window's handshakes.
    upgrade: Histogram<u64>,
    echo: Histogram<u64>,
    /// This second's handshakes and upgrade times, for the progress line.
    interval_handshakes: u64,
    interval_upgrade: Histogram<u64>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            started: 0,
            completed: 0,
            errors: Errors::default(),
            samples: Vec::new(),
            handshakes: 0,
            echoes: 0,
            tls_full: 0,
            tls_resumed: 0,
            late: 0,
            upgrade: histogram(),
            echo: histogram(),
            interval_handshakes: 0,
            interval_upgrade: histogram(),
        }
    }
}

impl Counts {
    fn sample(&mut self, msg: String) {
        if self.samples.len() < 5 && !self.samples.contains(&msg) {
            self.samples.push(msg);
        }
    }

    fn merge(&mut self, o: &Counts) {
        self.started += o.started;
        self.completed += o.completed;
        self.errors.add(&o.errors);
        for s in &o.samples {
            self.sample(s.clone());
        }
        self.handshakes += o.handshakes;
        self.echoes += o.echoes;
        self.tls_full += o.tls_full;
        self.tls_resumed += o.tls_resumed;
        self.late += o.late;
        self.upgrade.add(&o.upgrade).expect("same bounds");
        self.echo.add(&o.echo).expect("same bounds");
    }
}

/// Where a connection is.
enum Phase {
    Connecting,
    /// The upgrade request is sent; the response so far.
    Upgrading(ClientHandshake, Vec<u8>),
    /// The message is sent; its echo is awaited.
    Echo,
    /// Our Close is sent: the server's Close and its FIN are awaited.
    Closing,
}

/// Which error a failure counts as.
#[derive(Clone, Copy)]
enum Kind {
    Connect,
    Handshake,
    Protocol,
    Mismatch,
    UnexpectedClose,
    Io,
}

struct Conn {
    /// When it started (rate mode: was meant to).
    t0: Instant,
    phase: Phase,
    ws: Connection,
    /// It has ended, counted as completed or as one error.
    ended: bool,
    /// Its `101` came in the measured window: its echo time is recorded.
    in_window: bool,
}

/// One loop thread's share of the connections.
struct Worker {
    plan: Arc<Plan>,
    /// Connections in progress at most on this thread.
    share: usize,
    /// Rate mode: the time between this thread's starts, and the next.
    interval: Duration,
    next_at: Instant,
    conns: Vec<Option<Conn>>,
    open: usize,
    seed: u64,
    counts: Counts,
    progress: mpsc::Sender<Snapshot>,
    second: u64,
    /// Past the end: nothing more starts.
    stopped: bool,
    /// Round-robin position in the source addresses.
    next_source: usize,
}

impl Worker {
    fn new(idx: usize, plan: Arc<Plan>, progress: mpsc::Sender<Snapshot>, io: &mut Io) -> Worker {
        let share =
            plan.concurrency / plan.threads + usize::from(idx < plan.concurrency % plan.threads);
        let interval = plan.rate.map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(plan.threads as f64 / r)
        });
        // The threads' schedules interleave: thread i starts i/rate in.
        let offset = plan
            .rate
            .map_or(Duration::ZERO, |r| Duration::from_secs_f64(idx as f64 / r));
        let mut w = Worker {
            share,
            interval,
            next_at: plan.start + offset,
            conns: Vec::new(),
            open: 0,
            seed: random_seed() ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            counts: Counts::default(),
            progress,
            second: 1,
            stopped: false,
            next_source: idx,
            plan,
        };
        w.start_due(io, Instant::now());
        w
    }

    /// Starts what is due: up to the share (closed loop), or every
    /// scheduled start that has come, within the share (rate).
    fn start_due(&mut self, io: &mut Io, now: Instant) {
        if now >= self.plan.end {
            self.stopped = true;
        }
        while !self.stopped && self.open < self.share {
            let t0 = match self.plan.rate {
                None => now,
                Some(_) if self.next_at > now => return,
                Some(_) => {
                    let at = self.next_at;
                    self.next_at += self.interval;
                    if now.saturating_duration_since(at) > Duration::from_millis(1) {
                        self.counts.late += 1;
                    }
                    at
                }
            };
            self.start(io, t0, now);
        }
    }

    fn start(&mut self, io: &mut Io, t0: Instant, now: Instant) {
        self.counts.started += 1;
        self.seed = xorshift(self.seed);
        let plan = &self.plan;
        let source = (!plan.sources.is_empty()).then(|| {
            self.next_source += plan.threads;
            plan.sources[self.next_source % plan.sources.len()]
        });
        match plan.target.connect(io, source) {
            Ok(id) => {
                if self.conns.len() <= id.index() {
                    self.conns.resize_with(id.index() + 1, || None);
                }
                self.conns[id.index()] = Some(Conn {
                    t0,
                    phase: Phase::Connecting,
                    ws: Connection::client(Limits::default(), self.seed),
                    ended: false,
                    in_window: false,
                });
                self.open += 1;
                io.set_deadline(id, Some(now + plan.timeout));
            }
            Err(e) => {
                self.counts.errors.connect += 1;
                self.counts
                    .sample(format!("connect to {} failed: {e}", plan.target.addr));
            }
        }
    }

    /// Ends `id` with an error of `kind` (the first one only) and closes it.
    fn fail(&mut self, io: &mut Io, id: SockId, kind: Kind, msg: String) {
        if let Some(c) = self.conns.get_mut(id.index()).and_then(Option::as_mut) {
            if !c.ended {
                c.ended = true;
                let e = &mut self.counts.errors;
                *match kind {
                    Kind::Connect => &mut e.connect,
                    Kind::Handshake => &mut e.handshake,
                    Kind::Protocol => &mut e.protocol,
                    Kind::Mismatch => &mut e.mismatch,
                    Kind::UnexpectedClose => &mut e.unexpected_close,
                    Kind::Io => &mut e.io,
                } += 1;
                self.counts.sample(msg);
            }
        }
        io.close(id);
    }

    fn upgrade_data(&mut self, io: &mut Io, id: SockId, buf: &[u8], now: Instant) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let Phase::Upgrading(hs, acc) = &mut c.phase else {
            return;
        };
        acc.extend_from_slice(buf);
        let head = match hs.parse_response(acc, 16 << 10) {
            Ok(None) => return,
            Ok(Some(head)) => head,
            Err(e) => return self.fail(io, id, Kind::Handshake, format!("handshake: {e}")),
        };
        let mut rest = acc.split_off(head);
        c.phase = Phase::Echo;
        let t = ns(now - c.t0);
        self.counts.interval_handshakes += 1;
        self.counts.interval_upgrade.saturating_record(t);
        if now >= self.plan.measure_from && now < self.plan.end {
            c.in_window = true;
            self.counts.handshakes += 1;
            self.counts.upgrade.saturating_record(t);
            #[cfg(feature = "tls")]
            let resumed = io.tls_resumed(id);
            #[cfg(not(feature = "tls"))]
            let resumed: Option<bool> = None;
            match resumed {
                Some(true) => self.counts.tls_resumed += 1,
                Some(false) => self.counts.tls_full += 1,
                None => {}
            }
        }
        let (ws, msg) = (&mut c.ws, &self.plan.message);
        io.send_with(id, |out| {
            // Open: writing cannot fail.
            let _ = ws.write_message(MessageKind::Binary, msg, out);
        });
        if !rest.is_empty() {
            self.frames(io, id, &mut rest, now);
        }
    }

    fn frames(&mut self, io: &mut Io, id: SockId, input: &mut [u8], now: Instant) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let mut failure = None;
        let mut off = 0;
        while off < input.len() && failure.is_none() {
            let (n, r) = c.ws.read(&mut input[off..], now);
            match r {
                Ok(Some(Event::Message { payload, .. })) => {
                    let data: &[u8] = match &payload {
                        Payload::Input(r) => &input[off + r.start..off + r.end],
                        Payload::Owned(v) => v,
                    };
                    if !matches!(c.phase, Phase::Echo) {
                        failure = Some((Kind::Mismatch, "a message beyond the echo".into()));
                    } else if data != self.plan.message.as_slice() {
                        failure =
                            Some((Kind::Mismatch, "the echo differs from the message".into()));
                    } else {
                        c.phase = Phase::Closing;
                        if c.in_window {
                            self.counts.echoes += 1;
                            self.counts.echo.saturating_record(ns(now - c.t0));
                        }
                        c.ws.close(1000, "", now);
                    }
                }
                Ok(Some(Event::Closed { code, .. })) => {
                    if !matches!(c.phase, Phase::Closing) {
                        failure = Some((
                            Kind::UnexpectedClose,
                            format!("the server sent Close (code {code:?}) before the echo"),
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failure = Some((
                        Kind::Protocol,
                        format!("protocol error from the server: {e}"),
                    ))
                }
            }
            off += n;
        }
        if c.ws.has_control() {
            let ws = &mut c.ws;
            io.send_with(id, |out| ws.take_control(out));
        }
        if let Some((kind, msg)) = failure {
            self.fail(io, id, kind, msg);
        }
    }

    fn into_counts(self) -> Counts {
        self.counts
    }
}

impl Handler for Worker {
    fn connected(&mut self, io: &mut Io, id: SockId, res: std::io::Result<()>) {
        if let Err(e) = res {
            let msg = format!("connect to {} failed: {e}", self.plan.target.addr);
            return self.fail(io, id, Kind::Connect, msg);
        }
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        self.seed = xorshift(self.seed);
        let hs = ClientHandshake::new(
            &self.plan.target.host,
            &self.plan.target.path,
            nonce(self.seed),
        );
        io.send(id, hs.request());
        c.phase = Phase::Upgrading(hs, Vec::new());
    }

    fn data(&mut self, io: &mut Io, id: SockId, mut buf: InputBuf) {
        let now = io.now();
        match self
            .conns
            .get(id.index())
            .and_then(Option::as_ref)
            .map(|c| &c.phase)
        {
            Some(Phase::Upgrading(..)) => self.upgrade_data(io, id, buf.as_slice(), now),
            Some(Phase::Echo | Phase::Closing) => self.frames(io, id, buf.as_mut_slice(), now),
            _ => {}
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<std::io::Error>) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let (kind, msg) = match (&c.phase, err) {
            (Phase::Closing, None) if c.ws.is_closed() => {
                if !c.ended {
                    c.ended = true;
                    self.counts.completed += 1;
                }
                io.close(id);
                return;
            }
            (Phase::Connecting | Phase::Upgrading(..), None) => (
                Kind::Handshake,
                "the server closed the connection during the handshake (TLS refused, or not a WebSocket server?)".into(),
            ),
            (_, Some(e)) => (Kind::Io, format!("read failed: {e}")),
            (_, None) => (
                Kind::UnexpectedClose,
                "the server closed the TCP connection before the close handshake".into(),
            ),
        };
        self.fail(io, id, kind, msg);
    }

    fn timer(&mut self, io: &mut Io, id: SockId) {
        let Some(c) = self.conns[id.index()].as_ref() else {
            return;
        };
        let (kind, what) = match c.phase {
            Phase::Connecting => (Kind::Connect, "connect"),
            Phase::Upgrading(..) => (Kind::Handshake, "handshake"),
            Phase::Echo => (Kind::Io, "echo"),
            Phase::Closing => (Kind::Io, "close handshake"),
        };
        self.fail(io, id, kind, format!("{what}: timed out"));
    }

    fn gone(&mut self, _io: &mut Io, id: SockId, why: Gone) {
        let Some(c) = self.conns.get_mut(id.index()).and_then(Option::take) else {
            return;
        };
        self.open -= 1;
        if !c.ended {
            // Closed by the loop itself: TLS failed (the handler hears
            // only this), or a write failed or stalled.
            match c.phase {
                Phase::Connecting | Phase::Upgrading(..) => {
                    self.counts.errors.handshake += 1;
                    self.counts.sample(format!(
                        "closed during the handshake (TLS failed?): {why:?}"
                    ));
                }
                Phase::Echo | Phase::Closing => {
                    self.counts.errors.io += 1;
                    self.counts.sample(format!("the connection ended: {why:?}"));
                }
            }
        }
    }

    fn turn(&mut self, io: &mut Io) {
        let now = Instant::now();
        while now >= self.plan.start + Duration::from_secs(self.second) {
            let c = &mut self.counts;
            let snap = Snapshot {
                second: self.second,
                messages: std::mem::take(&mut c.interval_handshakes),
                latency: std::mem::replace(&mut c.interval_upgrade, histogram()),
                errors: c.errors.total(),
                connected: self.open as u64,
            };
            let _ = self.progress.send(snap);
            self.second += 1;
        }
        self.start_due(io, now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t = self.plan.start + Duration::from_secs(self.second);
        if !self.stopped {
            t = t.min(self.plan.end);
            if self.plan.rate.is_some() && self.open < self.share {
                t = t.min(self.next_at);
            }
        }
        Some(t)
    }

    fn done(&self) -> bool {
        self.stopped && self.open == 0
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs `loadgen connect`.
pub fn run(a: ConnectArgs) -> ExitCode {
    let target = match Target::parse_with(&a.target, &a.tls, !a.no_resumption) {
        Ok(t) => t,
        Err(e) => return crate::usage(&e),
    };
    let sources = match a.source_ips.as_deref().map(crate::target::parse_source_ips) {
        None => Vec::new(),
        Some(Ok(v)) => v,
        Some(Err(e)) => return crate::usage(&e),
    };
    if a.concurrency == 0 {
        return crate::usage("--concurrency must be at least 1");
    }
    if a.rate.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        return crate::usage("--rate must be positive");
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, a.concurrency);
    let start = Instant::now();
    let plan = Arc::new(Plan {
        target,
        threads,
        concurrency: a.concurrency,
        rate: a.rate,
        message: (0..a.size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
            .collect(),
        start,
        measure_from: start + a.warmup,
        end: start + a.warmup + a.duration,
        timeout: a.timeout,
        sources,
    });
    let (tx, rx) = mpsc::channel::<Snapshot>();
    let opts = LoopOptions {
        pin: a.pin,
        backend: a.backend,
        ..Default::default()
    };
    let workers = {
        let plan = plan.clone();
        std::thread::spawn(move || {
            ringws::runtime::client::run_loops(
                threads,
                opts,
                move |i, io| Worker::new(i, plan.clone(), tx.clone(), io),
                Worker::into_counts,
            )
        })
    };
    let p = plan.clone();
    crate::progress(rx, threads, a.quiet, "handshakes/s", move |sec| {
        let at = p.start + Duration::from_secs(sec);
        if at <= p.measure_from {
            "warm-up"
        } else if at <= p.end {
            "measure"
        } else {
            "drain  "
        }
    });
    let per_thread = match workers.join() {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("loadgen: cannot start the workers (io_uring not available?): {e}");
            return ExitCode::from(4);
        }
        Err(_) => {
            eprintln!("loadgen: a worker thread panicked");
            return ExitCode::from(4);
        }
    };
    let mut total = Counts::default();
    for c in &per_thread {
        total.merge(c);
    }
    let r = Outcome {
        url: a.target.clone(),
        threads,
        args: &a,
        counts: total,
    };
    print!("{}", r.table());
    if let Some(path) = &a.json {
        if let Err(e) = std::fs::write(path, r.json(&Machine::probe())) {
            eprintln!("loadgen: cannot write {}: {e}", path.display());
            return ExitCode::from(4);
        }
    }
    if r.counts.completed == 0 && r.counts.handshakes == 0 {
        eprintln!("loadgen: no connection could be opened to {}", a.target);
        return ExitCode::from(3);
    }
    if r.counts.errors.total() > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// A finished run, for the table and the JSON.
struct Outcome<'a> {
    url: String,
    threads: usize,
    args: &'a ConnectArgs,
    counts: Counts,
}

impl Outcome<'_> {
    fn secs(&self) -> f64 {
        self.args.duration.as_secs_f64().max(1e-6)
    }

    fn mode(&self) -> String {
        match self.args.rate {
            Some(r) => format!(
                "open loop at {r:.0} connections/s, at most {} in progress",
                self.args.concurrency
            ),
            None => format!("{} in progress", self.args.concurrency),
        }
    }

    fn table(&self) -> String {
        use std::fmt::Write as _;
        let (a, c) = (self.args, &self.counts);
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nconnect: {}, {} threads, {} B echo, {} ({} warm-up){}",
            self.mode(),
            self.threads,
            a.size,
            humantime(a.duration),
            humantime(a.warmup),
            if a.no_resumption {
                ", TLS resumption off"
            } else {
                ""
            },
        );
        let _ = writeln!(
            t,
            "  handshakes/s {:>12.0}   (101s received in the window)",
            c.handshakes as f64 / self.secs()
        );
        let _ = writeln!(t, "  handshakes   {:>12}", c.handshakes);
        let _ = writeln!(t, "  echoes       {:>12}   (of those)", c.echoes);
        if c.tls_full + c.tls_resumed > 0 {
            let _ = writeln!(
                t,
                "  TLS          {:>12}   full, {} resumed",
                c.tls_full, c.tls_resumed
            );
        }
        let _ = writeln!(
            t,
            "  connections  {:>12}   started (whole run): {} completed, {} failed",
            c.started,
            c.completed,
            c.errors.total()
        );
        if c.late > 0 {
            let _ = writeln!(
                t,
                "  late starts  {:>12}   (over 1 ms behind the schedule: no free slot, or a late loop; timed from the schedule)",
                c.late
            );
        }
        t += &latency_rows(
            "time from start",
            &[("until the 101", &c.upgrade), ("until the echo", &c.echo)],
        );
        let stats = crate::stats::Stats {
            errors: c.errors,
            samples: c.samples.clone(),
            ..Default::default()
        };
        t += &crate::report::errors(&stats);
        t
    }

    fn json(&self, m: &Machine) -> String {
        let (a, c) = (self.args, &self.counts);
        let js = crate::report::js;
        let errors: String = c
            .errors
            .by_kind()
            .iter()
            .map(|(k, n)| format!(", {}: {n}", js(k)))
            .collect();
        let samples: Vec<String> = c.samples.iter().map(|s| js(s)).collect();
        format!(
            "{{\n  \"tool\": \"loadgen connect\",\n  \"version\": {},\n  \"machine\": {{\"kernel\": {}, \"cpu\": {}, \"cores\": {}}},\n  \"params\": {{\"url\": {}, \"threads\": {}, \"concurrency\": {}, \"rate\": {}, \"size\": {}, \"duration_s\": {}, \"warmup_s\": {}, \"resumption\": {}}},\n  \"handshakes\": {}, \"handshakes_per_sec\": {:.1}, \"echoes\": {},\n  \"tls\": {{\"full\": {}, \"resumed\": {}}},\n  \"started\": {}, \"completed\": {}, \"late\": {},\n  \"upgrade_ns\": {},\n  \"echo_ns\": {},\n  \"errors\": {{\"total\": {}{errors}}},\n  \"error_samples\": [{}]\n}}\n",
            js(env!("CARGO_PKG_VERSION")),
            js(&m.kernel),
            js(&m.cpu),
            m.cores,
            js(&self.url),
            self.threads,
            a.concurrency,
            a.rate.map_or("null".to_string(), |r| format!("{r}")),
            a.size,
            a.duration.as_secs_f64(),
            a.warmup.as_secs_f64(),
            !a.no_resumption,
            c.handshakes,
            c.handshakes as f64 / self.secs(),
            c.echoes,
            c.tls_full,
            c.tls_resumed,
            c.started,
            c.completed,
            c.late,
            js_hist(&c.upgrade),
            js_hist(&c.echo),
            c.errors.total(),
            samples.join(", "),
        )
    }
}
