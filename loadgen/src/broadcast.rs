//! `loadgen broadcast`: fan-out load against a server that sends every
//! message to every client, the sender included (`examples/broadcast.rs`).
//!
//! * Closed loop (default): each sender keeps `--in-flight` of its own
//!   messages outstanding and sends the next as one of them comes back.
//! * Rate (`--rate`): the senders send on a fixed schedule, whatever the
//!   server does; delivery latency is taken from the intended send time
//!   (corrected for coordinated omission) and from the actual one.
//! * Rounds (`--rounds`), as uWebSockets' `benchmarks/broadcast_test.c`:
//!   each sender sends one message, then waits until it has the current
//!   round's message of every sender before it sends the next.
//!
//! Every client checks every delivery: from which sender, the sender's
//! sequence number (exactly the next one expected: nothing lost, repeated
//! or reordered), and the payload. Nobody sends until every connection is
//! open (so every client is subscribed to every message), and then not
//! before `--settle` has passed; at the end each client waits until it has
//! every message sent, and what never arrived is counted as lost.
//!
//! Several targets (nodes of one cluster, behind a broker) share the
//! clients round-robin: client k connects to target k mod n, senders
//! included. Client and sender numbers are global, so the checks above
//! hold across nodes unchanged: a client on one node must get every
//! message of a sender on another, exactly once and in order.
//!
//! A message is binary, at least 20 bytes: the sender's number (4 bytes),
//! its sequence number (4), the intended send time in nanoseconds since the
//! run started (8) and how late the actual send was (4), then a pattern.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Args;
use ringws::proto::client::ClientHandshake;
use ringws::proto::mask::apply_mask;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};
use ringws::runtime::client::{Gone, Handler, InputBuf, Io, LoopOptions, SockId};

use crate::stats::{Snapshot, Stats};
use crate::target::Target;
use crate::worker::{nonce, random_seed, xorshift};

/// The fixed part of every message: sender, sequence, intended send time,
/// lateness.
const HEAD: usize = 20;

/// Fan-out load: every client receives every client's messages.
#[derive(Args, Debug)]
pub struct BroadcastArgs {
    /// The servers, as ws://host:port/path (examples/broadcast.rs). With
    /// several (nodes sharing topics through a broker), client k connects
    /// to URL k mod n, senders included, and every client still checks
    /// every sender's messages. All ws:// or all wss://.
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,
    /// Certificate checks of a wss:// target.
    #[command(flatten)]
    tls: crate::target::TlsArgs,
    /// Connections, spread over the threads; all of them receive.
    #[arg(short, long, default_value_t = 320)]
    connections: usize,
    /// How many of the connections send [default: all].
    #[arg(long)]
    senders: Option<usize>,
    /// Worker threads, each with its own io_uring [default: number of cores].
    #[arg(short, long)]
    threads: Option<usize>,
    /// Pin worker i to core i.
    #[arg(long)]
    pin: bool,
    /// Payload bytes per message (at least 20).
    #[arg(short, long, default_value = "20", value_parser = crate::size)]
    size: usize,
    /// Rounds: each sender sends one message, then waits for the round's
    /// message of every sender.
    #[arg(long, conflicts_with_all = ["rate", "in_flight"])]
    rounds: bool,
    /// Open loop at this many messages per second over all senders.
    #[arg(long, conflicts_with = "in_flight")]
    rate: Option<f64>,
    /// Own messages outstanding per sender (closed loop).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    in_flight: u32,
    /// Each sender sends this many messages, then stops: an exact amount
    /// of work, for instruction counts. The run also stops at --duration.
    #[arg(long, conflicts_with = "rate")]
    messages: Option<u64>,
    /// Measured time (s or ms suffix).
    #[arg(short, long, default_value = "10s", value_parser = crate::duration)]
    duration: Duration,
    /// Time before the measured window, once every connection is open.
    #[arg(short, long, default_value = "1s", value_parser = crate::duration)]
    warmup: Duration,
    /// Once every connection is open, wait this long before anyone sends.
    /// With several nodes behind a broker, a node subscribes to a topic in
    /// the broker only after its first local subscriber arrives, and
    /// asynchronously: messages sent at once could miss the other nodes.
    /// 0: send at once (one server needs no more).
    #[arg(long, default_value = "0s", value_parser = crate::duration)]
    settle: Duration,
    /// Time allowed, after sending stops, for the last deliveries.
    #[arg(long, default_value = "5s", value_parser = crate::duration)]
    drain: Duration,
    /// Time allowed for every connection to open (TCP connect plus
    /// handshake).
    #[arg(long, default_value = "10s", value_parser = crate::duration)]
    connect_timeout: Duration,
    /// Local addresses to connect from, round-robin (as for the echo run).
    #[arg(long)]
    source_ips: Option<String>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// Kernel interface: auto, io-uring or epoll.
    #[arg(long, default_value = "auto")]
    backend: ringws::BackendKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Closed(u32),
    Rate(f64),
    Rounds,
}

/// The run, shared by the worker threads.
struct Plan {
    /// Client k connects to `targets[k % targets.len()]`.
    targets: Vec<Target>,
    connections: usize,
    senders: usize,
    threads: usize,
    size: usize,
    mode: Mode,
    /// Messages each sender sends at most.
    budget: u64,
    start: Instant,
    warmup: Duration,
    duration: Duration,
    drain: Duration,
    connect_timeout: Duration,
    settle: Duration,
    sources: Vec<IpAddr>,
    quiet: bool,
    /// Connections open, and those that failed to open: sending starts once
    /// they add up to `connections`.
    opened: AtomicUsize,
    failed: AtomicUsize,
    /// Senders that opened (the rounds wait for each of them).
    open_senders: AtomicUsize,
    /// When sending starts: `settle` after every connection is open or
    /// failed.
    go: OnceLock<Instant>,
    /// Messages each sender has sent so far.
    sent: Vec<AtomicU64>,
    /// Senders that have stopped sending for good.
    stopped: AtomicUsize,
}

impl Plan {
    /// Where client `i` connects.
    fn target(&self, i: usize) -> &Target {
        &self.targets[i % self.targets.len()]
    }

    fn measure_from(&self) -> Option<Instant> {
        self.go.get().map(|g| *g + self.warmup)
    }

    fn end(&self) -> Option<Instant> {
        self.measure_from().map(|m| m + self.duration)
    }

    /// Past it, whatever is still open is cut.
    fn hard_stop(&self) -> Instant {
        match self.end() {
            Some(e) => e + self.drain,
            None => self.start + self.connect_timeout + self.drain,
        }
    }
}

/// One connection.
struct Conn {
    id: SockId,
    /// Its number in the run; below `senders`, it sends.
    i: usize,
    seed: u64,
    hs: Option<(ClientHandshake, Vec<u8>)>,
    ws: Connection,
    open: bool,
    /// The next sequence number expected from each sender.
    next: Vec<u32>,
    /// Deliveries checked.
    received: u64,
    /// Sending: the next sequence number; own messages outstanding (closed
    /// loop); whether it has stopped for good.
    seq: u32,
    outstanding: u32,
    done_sending: bool,
    /// Rounds: messages in of the round waited for (`seq - 1`) and of the
    /// next one, by the round's parity: a sender that has all of this
    /// round may send the next before this client has it all, but no
    /// sender can be two ahead (it would need this client's message).
    have: [u32; 2],
    closing: bool,
    t0: Instant,
}

/// One thread's connections.
struct Worker {
    plan: Arc<Plan>,
    stats: Stats,
    progress: mpsc::Sender<Snapshot>,
    second: u64,
    to_start: Vec<usize>,
    conns: Vec<Option<Conn>>,
    open: usize,
    schedule: BinaryHeap<Reverse<(Instant, SockId)>>,
    interval: Duration,
    /// Every connection of this thread: deliveries checked (None: it never
    /// opened), for the count of lost ones at the end.
    received: Vec<(usize, Option<u64>)>,
    rounds: u64,
    reads: u64,
    started: bool,
    /// Past the end of the window: the senders have been stopped.
    ended: bool,
    expired: bool,
    /// The deliveries every client must get, once every sender stopped.
    expected: Option<u64>,
}

/// A worker's results.
struct Outcome {
    stats: Stats,
    received: Vec<(usize, Option<u64>)>,
    rounds: u64,
    reads: u64,
}

impl Worker {
    fn new(idx: usize, plan: Arc<Plan>, progress: mpsc::Sender<Snapshot>, io: &mut Io) -> Worker {
        let interval = match plan.mode {
            Mode::Rate(r) => Duration::from_secs_f64(plan.senders as f64 / r),
            _ => Duration::ZERO,
        };
        let mut w = Worker {
            to_start: (idx..plan.connections)
                .step_by(plan.threads)
                .rev()
                .collect(),
            stats: Stats::default(),
            progress,
            second: 1,
            conns: Vec::new(),
            open: 0,
            schedule: BinaryHeap::new(),
            interval,
            received: Vec::new(),
            rounds: 0,
            reads: 0,
            started: false,
            ended: false,
            expired: false,
            expected: None,
            plan,
        };
        w.connect_all(io, idx as u64);
        w
    }

    fn into_outcome(mut self) -> Outcome {
        for c in self.conns.iter().flatten() {
            self.received.push((c.i, c.open.then_some(c.received)));
        }
        if !matches!(self.plan.mode, Mode::Rate(_)) {
            self.stats.latency_actual = self.stats.latency.clone();
        }
        Outcome {
            stats: self.stats,
            received: self.received,
            rounds: self.rounds,
            reads: self.reads,
        }
    }

    fn connect_all(&mut self, io: &mut Io, idx: u64) {
        let mut seed = random_seed() ^ idx.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let now = Instant::now();
        while let Some(i) = self.to_start.pop() {
            seed = xorshift(seed);
            let plan = &self.plan;
            let source = (!plan.sources.is_empty()).then(|| plan.sources[i % plan.sources.len()]);
            let target = plan.target(i);
            match target.connect(io, source) {
                Ok(id) => {
                    if self.conns.len() <= id.index() {
                        self.conns.resize_with(id.index() + 1, || None);
                    }
                    self.conns[id.index()] = Some(Conn {
                        id,
                        i,
                        seed,
                        hs: None,
                        ws: Connection::client(Limits::default(), seed),
                        open: false,
                        next: vec![0; plan.senders],
                        received: 0,
                        seq: 0,
                        outstanding: 0,
                        done_sending: i >= plan.senders,
                        have: [0; 2],
                        closing: false,
                        t0: now,
                    });
                    self.open += 1;
                    io.set_deadline(id, Some(now + plan.connect_timeout));
                }
                Err(e) => {
                    self.stats.errors.connect += 1;
                    let why = format!("connect to {} failed: {e}", target.addr);
                    self.failed(i, why);
                }
            }
        }
    }

    /// Connection `i` could not open.
    fn failed(&mut self, i: usize, why: String) {
        self.stats.sample(why);
        self.received.push((i, None));
        self.plan.failed.fetch_add(1, Ordering::Release);
        if i < self.plan.senders {
            // It will never send: it has stopped.
            self.plan.stopped.fetch_add(1, Ordering::Release);
        }
    }

    /// Sends message `seq` of sender `c` (intended at `at`).
    fn send(plan: &Plan, io: &mut Io, c: &mut Conn, at: Instant, now: Instant) -> bool {
        let (i, seq, ws) = (c.i, c.seq, &mut c.ws);
        let mut ok = false;
        io.send_with(c.id, |out| {
            let Ok(mask) = ws.send_fragment(Some(MessageKind::Binary), true, plan.size as u64, out)
            else {
                return;
            };
            let start = out.len();
            out.extend_from_slice(&(i as u32).to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&ns(at - plan.start).to_le_bytes());
            let late = u32::try_from(ns(now.saturating_duration_since(at))).unwrap_or(u32::MAX);
            out.extend_from_slice(&late.to_le_bytes());
            out.extend((HEAD..plan.size).map(pattern));
            if let Some(k) = mask {
                apply_mask(&mut out[start..], k, 0);
            }
            ok = true;
        });
        if ok {
            c.seq += 1;
            plan.sent[i].store(u64::from(c.seq), Ordering::Relaxed);
        }
        ok
    }

    /// Sender `c` sends no more.
    fn stop_sending(plan: &Plan, c: &mut Conn) {
        if !c.done_sending {
            c.done_sending = true;
            plan.stopped.fetch_add(1, Ordering::Release);
        }
    }

    /// Every connection open (or failed): the senders start.
    fn go(&mut self, io: &mut Io, now: Instant) {
        self.started = true;
        let plan = self.plan.clone();
        let end = plan.end().expect("started");
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            if c.done_sending || !c.open {
                continue;
            }
            match plan.mode {
                Mode::Closed(n) => {
                    for _ in 0..n {
                        if u64::from(c.seq) >= plan.budget || !Self::send(&plan, io, c, now, now) {
                            break;
                        }
                        c.outstanding += 1;
                    }
                    if c.outstanding == 0 {
                        Self::stop_sending(&plan, c);
                    }
                }
                Mode::Rounds => {
                    if plan.budget == 0 || !Self::send(&plan, io, c, now, now) {
                        Self::stop_sending(&plan, c);
                    }
                }
                Mode::Rate(_) => {
                    // Spread the senders over one interval.
                    let phase = self.interval.mul_f64(c.i as f64 / plan.senders as f64);
                    let at = (now + phase).min(end);
                    self.schedule.push(Reverse((at, c.id)));
                }
            }
        }
    }

    /// Rate mode: sends what is due.
    fn send_due(&mut self, io: &mut Io, now: Instant) {
        let Some(end) = self.plan.end() else { return };
        while let Some(&Reverse((at, id))) = self.schedule.peek() {
            if at > now {
                return;
            }
            self.schedule.pop();
            let plan = &self.plan;
            let Some(c) = self.conns.get_mut(id.index()).and_then(|c| c.as_mut()) else {
                continue;
            };
            if c.id != id || c.done_sending {
                continue;
            }
            if at >= end || u64::from(c.seq) >= plan.budget || !Self::send(plan, io, c, at, now) {
                Self::stop_sending(plan, c);
                continue;
            }
            self.schedule.push(Reverse((at + self.interval, id)));
        }
    }

    fn handshake_data(&mut self, io: &mut Io, id: SockId, buf: &mut [u8], now: Instant) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let Some((hs, acc)) = c.hs.as_mut() else {
            return;
        };
        acc.extend_from_slice(buf);
        match hs.parse_response(acc, 16 << 10) {
            Ok(None) => {}
            Ok(Some(head)) => {
                let mut rest = acc.split_off(head);
                c.hs = None;
                let limits = Limits {
                    max_frame_size: 16 << 20,
                    max_message_size: 16 << 20,
                    close_timeout: self.plan.drain,
                };
                c.ws = Connection::client(limits, c.seed);
                c.open = true;
                io.set_deadline(id, None);
                self.stats.connect.saturating_record(ns(now - c.t0));
                self.stats.connected += 1;
                self.plan.opened.fetch_add(1, Ordering::Release);
                if c.i < self.plan.senders {
                    self.plan.open_senders.fetch_add(1, Ordering::Release);
                }
                if !rest.is_empty() {
                    self.frames(io, id, &mut rest, now);
                }
            }
            Err(e) => {
                self.stats.errors.handshake += 1;
                self.stats.sample(format!("handshake: {e}"));
                io.close(id);
            }
        }
    }

    /// Deliveries arrived.
    fn frames(&mut self, io: &mut Io, id: SockId, buf: &mut [u8], now: Instant) {
        let plan = &*self.plan;
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let (from, end) = match (plan.measure_from(), plan.end()) {
            (Some(m), Some(e)) => (m, e),
            _ => (now + Duration::from_secs(3600), now),
        };
        let in_window = now >= from && now < end;
        let mut off = 0;
        let mut own = 0u32;
        let mut failed = None;
        while off < buf.len() {
            let (n, r) = c.ws.read(&mut buf[off..], now);
            match r {
                Ok(Some(Event::Message { kind, payload })) => {
                    let data: &[u8] = match &payload {
                        Payload::Input(r) => &buf[off + r.start..off + r.end],
                        Payload::Owned(v) => v,
                    };
                    match check(plan, &mut c.next, kind, data) {
                        Ok((sender, seq, intended, late)) => {
                            c.received += 1;
                            self.stats.interval_messages += 1;
                            let lat = ns(now.saturating_duration_since(plan.start))
                                .saturating_sub(intended);
                            if !plan.quiet {
                                self.stats.interval_latency.saturating_record(lat);
                            }
                            if in_window {
                                self.stats.messages += 1;
                                self.stats.bytes += data.len() as u64;
                                self.stats.last_echo = Some(now);
                                self.stats.latency.saturating_record(lat);
                                if matches!(plan.mode, Mode::Rate(_)) {
                                    self.stats
                                        .latency_actual
                                        .saturating_record(lat.saturating_sub(late));
                                }
                            }
                            if sender == c.i {
                                own += 1;
                            }
                            if plan.mode == Mode::Rounds && !c.done_sending {
                                if seq > c.seq {
                                    failed = Some(format!(
                                        "client {}: message {seq} of client {sender} before round {} is over",
                                        c.i,
                                        c.seq.wrapping_sub(1)
                                    ));
                                }
                                c.have[(seq & 1) as usize] += 1;
                            }
                        }
                        Err(e) => failed = Some(format!("client {}: {e}", c.i)),
                    }
                }
                Ok(Some(Event::Closed { code, .. })) => {
                    if !c.closing {
                        self.stats.errors.unexpected_close += 1;
                        self.stats
                            .sample(format!("the server sent Close (code {code:?})"));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.errors.protocol += 1;
                    self.stats
                        .sample(format!("protocol error from the server: {e}"));
                    c.closing = true;
                    break;
                }
            }
            if failed.is_some() {
                break;
            }
            off += n;
        }
        if let Some(e) = failed {
            self.stats.errors.mismatch += 1;
            self.stats.sample(e);
            c.closing = true;
            c.ws.close(1002, "wrong delivery", now);
            Self::stop_sending(plan, c);
        }
        // Sending more.
        if !c.done_sending && !c.closing {
            match plan.mode {
                // Only its own deliveries move a sender on. Others' can
                // reach a sender whose thread has not started it yet
                // (another thread passed `go` first): with nothing
                // outstanding it would otherwise stop before its first send.
                Mode::Closed(_) if own > 0 => {
                    c.outstanding -= own.min(c.outstanding);
                    for _ in 0..own {
                        if now >= end
                            || u64::from(c.seq) >= plan.budget
                            || !Self::send(plan, io, c, now, now)
                        {
                            break;
                        }
                        c.outstanding += 1;
                    }
                    if c.outstanding == 0 {
                        Self::stop_sending(plan, c);
                    }
                }
                Mode::Rounds => {
                    let senders = plan.open_senders.load(Ordering::Acquire) as u32;
                    let round = (c.seq.wrapping_sub(1) & 1) as usize;
                    if c.seq > 0 && c.have[round] >= senders {
                        if in_window {
                            self.rounds += 1;
                        }
                        c.have[round] = 0;
                        if now >= end
                            || u64::from(c.seq) >= plan.budget
                            || !Self::send(plan, io, c, now, now)
                        {
                            Self::stop_sending(plan, c);
                        }
                    }
                }
                Mode::Closed(_) | Mode::Rate(_) => {}
            }
        }
        if c.ws.has_control() {
            let ws = &mut c.ws;
            io.send_with(id, |out| ws.take_control(out));
        }
        self.maybe_finish(io, id);
    }

    /// A client with every delivery there is sends its Close.
    fn maybe_finish(&mut self, io: &mut Io, id: SockId) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        if c.closing || !c.open || !c.done_sending {
            return;
        }
        let Some(expected) = self.expected else {
            return;
        };
        if c.received >= expected {
            c.closing = true;
            c.ws.close(1000, "", io.now());
            let ws = &mut c.ws;
            io.send_with(id, |out| ws.take_control(out));
        }
    }

    /// Once every sender has stopped: how many deliveries each client gets.
    fn learn_expected(&mut self, io: &mut Io) {
        let plan = &self.plan;
        if self.expected.is_some() || plan.stopped.load(Ordering::Acquire) < plan.senders {
            return;
        }
        self.expected = Some(plan.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum());
        for slot in 0..self.conns.len() {
            if let Some(c) = &self.conns[slot] {
                let id = c.id;
                self.maybe_finish(io, id);
            }
        }
    }

    fn expire(&mut self, io: &mut Io) {
        self.expired = true;
        for c in self.conns.iter().flatten() {
            if !c.open {
                self.stats.errors.connect += 1;
                self.stats
                    .sample("the connection did not open in time".into());
            } else if !c.closing {
                self.stats.errors.io += 1;
                self.stats
                    .sample("deliveries did not all arrive in time".into());
            } else {
                self.stats.errors.io += 1;
                self.stats.sample(
                    "the server did not close the connection after the Close handshake".into(),
                );
            }
            io.close(c.id);
        }
    }
}

impl Handler for Worker {
    fn connected(&mut self, io: &mut Io, id: SockId, res: std::io::Result<()>) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let target = self.plan.target(c.i);
        if let Err(e) = res {
            self.stats.errors.connect += 1;
            let why = format!("connect to {} failed: {e}", target.addr);
            self.stats.sample(why);
            io.close(id);
            return;
        }
        let hs = ClientHandshake::new(&target.host, &target.path, nonce(c.seed));
        io.send(id, hs.request());
        c.hs = Some((hs, Vec::new()));
    }

    fn data(&mut self, io: &mut Io, id: SockId, mut buf: InputBuf) {
        let now = io.now();
        self.reads += 1;
        match self.conns.get(id.index()).and_then(|c| c.as_ref()) {
            Some(c) if c.open => self.frames(io, id, buf.as_mut_slice(), now),
            Some(_) => self.handshake_data(io, id, buf.as_mut_slice(), now),
            None => {}
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<std::io::Error>) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        match err {
            _ if !c.open => {
                self.stats.errors.handshake += 1;
                self.stats
                    .sample("the server closed the connection during the handshake".into());
            }
            Some(e) => {
                self.stats.errors.io += 1;
                self.stats.sample(format!("read failed: {e}"));
            }
            None if !(c.closing && c.ws.is_closed()) => {
                self.stats.errors.unexpected_close += 1;
                self.stats
                    .sample("the server closed the TCP connection".into());
            }
            None => {}
        }
        io.close(id);
    }

    fn timer(&mut self, io: &mut Io, id: SockId) {
        if let Some(c) = self.conns[id.index()].as_ref() {
            if !c.open {
                self.stats.errors.connect += 1;
                self.stats.sample("connect and handshake: timed out".into());
                io.close(id);
            }
        }
    }

    fn gone(&mut self, _io: &mut Io, id: SockId, why: Gone) {
        let Some(mut c) = self.conns[id.index()].take() else {
            return;
        };
        self.open -= 1;
        if !c.open {
            self.failed(c.i, format!("connection {} did not open", c.i));
            return;
        }
        if let (Gone::WriteError | Gone::WriteTimeout, false) =
            (&why, c.closing && c.ws.is_closed())
        {
            self.stats.errors.io += 1;
            self.stats.sample(format!("write failed: {why:?}"));
        }
        Self::stop_sending(&self.plan, &mut c);
        self.received.push((c.i, Some(c.received)));
    }

    fn turn(&mut self, io: &mut Io) {
        let now = Instant::now();
        let plan = self.plan.clone();
        if !self.started
            && plan.opened.load(Ordering::Acquire) + plan.failed.load(Ordering::Acquire)
                >= plan.connections
        {
            // The first thread to see every connection open or failed
            // fixes the start for all of them, --settle later; each starts
            // its senders once there.
            let go = *plan.go.get_or_init(|| now + plan.settle);
            if now >= go {
                self.go(io, now);
            }
        }
        if let Some(from) = plan.go.get() {
            while now >= *from + Duration::from_secs(self.second) {
                let _ = self.progress.send(self.stats.snapshot(self.second));
                self.second += 1;
            }
        }
        if !self.expired && now >= plan.hard_stop() {
            self.expire(io);
            return;
        }
        self.send_due(io, now);
        if !self.ended && plan.end().is_some_and(|e| now >= e) {
            // A sender whose round others ended by stopping would wait for
            // it forever; and a closed loop stops here too.
            self.ended = true;
            for c in self.conns.iter_mut().flatten() {
                Self::stop_sending(&plan, c);
            }
        }
        self.learn_expected(io);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let Some(go) = self.plan.go.get() else {
            // Waiting for the other threads' connections.
            return Some(now + Duration::from_millis(1));
        };
        let mut t = (*go + Duration::from_secs(self.second)).min(self.plan.hard_stop());
        if !self.started {
            // Settling: the senders start at `go`.
            t = t.min(*go);
        }
        if let Some(Reverse((at, _))) = self.schedule.peek() {
            t = t.min(*at);
        }
        if self.expected.is_none() {
            // Until every sender has stopped, other threads' included.
            t = t.min(now + Duration::from_millis(5));
        }
        Some(t)
    }

    fn done(&self) -> bool {
        self.open == 0 && self.to_start.is_empty()
    }
}

/// Checks one delivery and moves its sender's expected sequence on:
/// `(sender, seq, intended send time, lateness)`.
fn check(
    plan: &Plan,
    next: &mut [u32],
    kind: MessageKind,
    d: &[u8],
) -> Result<(usize, u32, u64, u64), String> {
    if kind != MessageKind::Binary || d.len() != plan.size {
        return Err(format!(
            "a {kind:?} message of {} bytes, not a binary one of {}",
            d.len(),
            plan.size
        ));
    }
    let word = |a: usize| u32::from_le_bytes(d[a..a + 4].try_into().expect("4 bytes"));
    let (sender, seq) = (word(0) as usize, word(4));
    let intended = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
    let late = u64::from(word(16));
    let Some(want) = next.get_mut(sender) else {
        return Err(format!("a message from client {sender}, who does not send"));
    };
    if seq != *want {
        let what = if seq < *want {
            "again, or out of order"
        } else {
            "with messages before it missing"
        };
        return Err(format!(
            "message {seq} of client {sender} arrived {what} (expected {want})"
        ));
    }
    if !d[HEAD..]
        .iter()
        .enumerate()
        .all(|(k, b)| *b == pattern(HEAD + k))
    {
        return Err(format!("message {seq} of client {sender} was corrupted"));
    }
    *want += 1;
    Ok((sender, seq, intended, late))
}

fn pattern(i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(7)
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Parses the targets: one or more URLs, all ws:// or all wss://.
fn parse_targets(urls: &[String], tls: &crate::target::TlsArgs) -> Result<Vec<Target>, String> {
    // Checked on the text, before `Target::parse`: a mix is refused for
    // what it is, even where wss:// alone would fail for another reason
    // (a loadgen built without TLS). One scheme because one set of TLS
    // flags (--ca, --insecure) and one run's figures should not half
    // apply. Other schemes are left to `Target::parse` to name.
    let secure = |u: &String| match u.split_once("://") {
        Some(("ws", _)) => Some(false),
        Some(("wss", _)) => Some(true),
        _ => None,
    };
    let mut known = urls.iter().filter(|u| secure(u).is_some());
    if let Some(first) = known.next() {
        if let Some(other) = known.find(|u| secure(u) != secure(first)) {
            return Err(format!(
                "the targets must share their scheme (all ws:// or all wss://): {first} and {other} differ"
            ));
        }
    }
    urls.iter().map(|u| Target::parse(u, tls)).collect()
}

/// Per target: connections assigned and opened, deliveries received over
/// the whole run, and those that never arrived.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PerTarget {
    connections: usize,
    opened: usize,
    delivered: u64,
    lost: u64,
}

/// Sums `received` (client number, deliveries it checked or None if it
/// never opened) by target: client k is on target k mod `n`. `expected` is
/// what every open client should have had.
fn per_target<'a>(
    n: usize,
    connections: usize,
    expected: u64,
    received: impl IntoIterator<Item = &'a (usize, Option<u64>)>,
) -> Vec<PerTarget> {
    let mut t = vec![PerTarget::default(); n];
    for i in 0..connections {
        t[i % n].connections += 1;
    }
    for (i, got) in received {
        if let Some(got) = got {
            let p = &mut t[i % n];
            p.opened += 1;
            p.delivered += got;
            p.lost += expected.saturating_sub(*got);
        }
    }
    t
}

/// Runs `loadgen broadcast`.
pub fn run(a: BroadcastArgs) -> ExitCode {
    let targets = match parse_targets(&a.targets, &a.tls) {
        Ok(t) => t,
        Err(e) => return crate::usage(&e),
    };
    let sources = match a.source_ips.as_deref().map(crate::target::parse_source_ips) {
        None => Vec::new(),
        Some(Ok(v)) => v,
        Some(Err(e)) => return crate::usage(&e),
    };
    let senders = a.senders.unwrap_or(a.connections);
    if a.connections == 0 || senders == 0 || senders > a.connections {
        return crate::usage(
            "--connections and --senders must be at least 1, senders at most connections",
        );
    }
    if a.size < HEAD {
        return crate::usage("--size must be at least 20 (sender, sequence and send time)");
    }
    let mode = match (a.rounds, a.rate) {
        (true, _) => Mode::Rounds,
        (_, Some(r)) if r.is_finite() && r > 0.0 => Mode::Rate(r),
        (_, Some(_)) => return crate::usage("--rate must be positive"),
        _ => Mode::Closed(a.in_flight),
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, a.connections);
    let plan = Arc::new(Plan {
        targets,
        connections: a.connections,
        senders,
        threads,
        size: a.size,
        mode,
        budget: a.messages.unwrap_or(u64::MAX).min(u64::from(u32::MAX)),
        start: Instant::now(),
        warmup: a.warmup,
        duration: a.duration,
        drain: a.drain,
        connect_timeout: a.connect_timeout,
        settle: a.settle,
        sources,
        quiet: a.quiet,
        opened: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        open_senders: AtomicUsize::new(0),
        go: OnceLock::new(),
        sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
        stopped: AtomicUsize::new(0),
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
                Worker::into_outcome,
            )
        })
    };
    let p = plan.clone();
    crate::progress(rx, threads, a.quiet, "deliveries/s", move |sec| {
        let at = Duration::from_secs(sec);
        if at <= p.warmup {
            "warm-up"
        } else if at <= p.warmup + p.duration {
            "measure"
        } else {
            "drain  "
        }
    });
    let outcomes = match workers.join() {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            eprintln!("loadgen: cannot start the workers: {e}");
            return ExitCode::from(4);
        }
        Err(_) => {
            eprintln!("loadgen: a worker thread panicked");
            return ExitCode::from(4);
        }
    };
    let mut total = Stats::default();
    let (mut rounds, mut reads, mut delivered) = (0, 0, 0);
    let expected: u64 = plan.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    for o in &outcomes {
        total.merge(&o.stats);
        rounds += o.rounds;
        reads += o.reads;
    }
    let targets = per_target(
        a.targets.len(),
        plan.connections,
        expected,
        outcomes.iter().flat_map(|o| &o.received),
    );
    for t in &targets {
        total.errors.lost += t.lost;
        delivered += t.delivered;
    }
    let window = match (a.messages, total.last_echo, plan.measure_from()) {
        (Some(_), Some(last), Some(from)) => last
            .min(plan.end().expect("started"))
            .saturating_duration_since(from),
        _ => a.duration,
    }
    .max(Duration::from_micros(1));
    print!(
        "{}",
        table(
            &plan,
            &total,
            window,
            [expected, delivered, rounds, reads],
            &targets,
            &a
        )
    );
    if total.connected == 0 {
        eprintln!(
            "loadgen: no connection could be opened to {}",
            a.targets.join(" or ")
        );
        return ExitCode::from(3);
    }
    if total.errors.total() > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn table(
    plan: &Plan,
    s: &Stats,
    window: Duration,
    [sent, delivered, rounds, reads]: [u64; 4],
    targets: &[PerTarget],
    a: &BroadcastArgs,
) -> String {
    use std::fmt::Write as _;
    let secs = window.as_secs_f64();
    let mode = match plan.mode {
        Mode::Closed(n) => format!("{n} in flight per sender"),
        Mode::Rate(r) => format!("open loop at {r:.0} msg/s"),
        Mode::Rounds => "rounds".into(),
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nbroadcast: {} connections ({} sending), {} threads, {} B messages, {mode}, {} ({} warm-up)",
        plan.connections,
        plan.senders,
        plan.threads,
        plan.size,
        crate::report::humantime(window),
        crate::report::humantime(a.warmup),
    );
    let _ = writeln!(t, "  deliveries/s {:>12.0}", s.messages as f64 / secs);
    if plan.mode == Mode::Rounds {
        let _ = writeln!(
            t,
            "  rounds/s     {:>12.1}   (each sender's, averaged)",
            rounds as f64 / plan.senders as f64 / secs
        );
    }
    let _ = writeln!(t, "  deliveries   {:>12}   (in the window)", s.messages);
    let _ = writeln!(t, "  messages sent{:>12}   (whole run)", sent);
    let _ = writeln!(
        t,
        "  per read     {:>12.1}   (deliveries per client read, whole run)",
        delivered as f64 / reads.max(1) as f64
    );
    let mut rows = Vec::new();
    if matches!(plan.mode, Mode::Rate(_)) {
        rows.push(("from intended send", &s.latency));
        rows.push(("from actual send", &s.latency_actual));
    } else {
        rows.push(("send to receive", &s.latency));
    }
    rows.push(("connect + handshake", &s.connect));
    t += &crate::report::latency_rows("delivery latency", &rows);
    // After the lines scripts/fanout.py and the tests read, and worded so
    // that none of them starts with one of their labels or reads
    // "lost 0" (what a clean run's errors line says).
    let _ = writeln!(
        t,
        "  {:<22}{:>12}{:>12}{:>12}   (deliveries: whole run)",
        "per target", "connections", "deliveries", "lost"
    );
    for (url, p) in a.targets.iter().zip(targets) {
        let _ = writeln!(
            t,
            "  {:<22}{:>12}{:>12}{:>12}",
            url,
            format!("{}/{}", p.opened, p.connections),
            p.delivered,
            p.lost
        );
    }
    t += &crate::report::errors(s);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_on_target_k_mod_n() {
        // Five clients on two targets: 0, 2, 4 on the first, 1 and 3 on
        // the second; client 3 never opened. Every open one should have 7.
        let received = [
            (0, Some(7)),
            (1, Some(7)),
            (2, Some(5)),
            (3, None),
            (4, Some(7)),
        ];
        let t = per_target(2, 5, 7, &received);
        let first = PerTarget {
            connections: 3,
            opened: 3,
            delivered: 19,
            lost: 2,
        };
        let second = PerTarget {
            connections: 2,
            opened: 1,
            delivered: 7,
            lost: 0,
        };
        assert_eq!(t, [first, second]);
    }

    #[test]
    fn targets_share_one_scheme() {
        let tls = crate::target::TlsArgs::default();
        let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = parse_targets(&urls(&["ws://127.0.0.1:1/", "ws://127.0.0.1:2/x"]), &tls).unwrap();
        assert_eq!((t[1].addr.port(), t[1].path.as_str()), (2, "/x"));
        let e = parse_targets(&urls(&["ws://127.0.0.1:1/", "wss://127.0.0.1:2/"]), &tls)
            .err()
            .unwrap();
        assert!(e.contains("share their scheme"), "{e}");
        let e = parse_targets(&urls(&["ws://127.0.0.1:1/", "http://x/"]), &tls)
            .err()
            .unwrap();
        assert!(e.contains("must start with ws:// or wss://"), "{e}");
    }
}
