//! Connections and their traffic, one loop thread's share.
//!
//! * Throughput mode (closed loop): each connection keeps `in_flight`
//!   messages outstanding and sends the next one as each echo arrives.
//! * Rate mode (open loop): each connection sends on a fixed schedule,
//!   whatever the echoes do. Latency is taken from the *intended* send time
//!   (so a stalled server is charged for every message it delayed, as in
//!   wrk2) and from the actual one.
//!
//! Every echo is checked: length, content and order (each message carries
//! its sequence number). The payload is sent masked, as a client must.
//!
//! With `--deflate` each connection offers permessage-deflate; where the
//! server agrees, every message is compressed before it is framed (RSV1 on
//! its first frame), and compressed echoes are inflated before the check.
//!
//! The worker is a [`Handler`] of ringws's own loop, the one the server
//! runs on: every completion comes straight to it; frames are encoded
//! straight into the connection's write batch.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::IpAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ringws::proto::client::ClientHandshake;
use ringws::proto::compress::{Compressor, CompressorConfig};
use ringws::proto::deflate::ClientOffer;
use ringws::proto::mask::apply_mask;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};
use ringws::runtime::client::{Gone, Handler, InputBuf, Io, SockId};

use crate::stats::{Snapshot, Stats};
use crate::target::Target;

/// What one run does; shared by all worker threads.
pub struct Plan {
    /// Where to connect.
    pub target: Target,
    /// Connections in all.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Text or binary messages.
    pub kind: MessageKind,
    /// Frames per message.
    pub fragments: usize,
    /// Messages outstanding per connection (throughput mode).
    pub in_flight: usize,
    /// Messages each connection sends before it closes (throughput mode;
    /// `u64::MAX`: until the end of the run).
    pub per_connection: u64,
    /// Messages per second over all connections (rate mode), if any.
    pub rate: Option<f64>,
    /// When the run started.
    pub start: Instant,
    /// When the measured window starts (after the warm-up).
    pub measure_from: Instant,
    /// When sending stops.
    pub end: Instant,
    /// New connections per second (0: all at once).
    pub ramp: f64,
    /// Local addresses to connect from, round-robin.
    pub sources: Vec<IpAddr>,
    /// Time allowed for TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Time allowed, after sending stops, for the last echoes and the Close.
    pub drain: Duration,
    /// Plain TCP echo: no handshake, no framing; each message is `size`
    /// bytes, and the echo is read back by count (`--raw`).
    pub raw: bool,
    /// No progress lines (`--quiet`): their per-second latency is not kept.
    pub quiet: bool,
    /// What the messages carry.
    pub payload: PayloadStyle,
    /// Offer permessage-deflate and compress what is sent where agreed.
    pub deflate: bool,
}

/// What the messages carry (`--payload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadStyle {
    /// A fixed pattern of letters and digits (text) or bytes (binary).
    Pattern,
    /// Price-ticker JSON, different in every one of 256 messages in turn:
    /// compressible about as chatty application traffic is.
    Json,
}

/// zlib's settings for what loadgen sends: level 1 and the memory level
/// ringws's server uses by default, so both ends do like work.
const DEFLATE_LEVEL: u8 = 1;
const DEFLATE_MEM_LEVEL: u8 = 8;

/// Compression state and scratch space of one worker.
#[derive(Default)]
struct Deflating {
    /// The compressor every connection without context takeover uses.
    shared: Option<(CompressorConfig, Box<Compressor>)>,
    /// A message before compression.
    plain: Vec<u8>,
    /// After.
    packed: Vec<u8>,
}

/// In-flight bookkeeping: sequence number, intended and actual send time.
type Sent = VecDeque<(u64, Instant, Instant)>;

/// Where a connection is.
enum Phase {
    /// TCP connect under way.
    Connecting,
    /// Handshake sent; the response so far.
    Handshake(ClientHandshake, Vec<u8>),
    /// Exchanging messages.
    Open,
}

/// One connection's state.
struct Conn {
    id: SockId,
    /// Its number in the run (for the rate schedule and source address).
    i: usize,
    seed: u64,
    phase: Phase,
    ws: Connection,
    sent: Sent,
    /// The next sequence number to send.
    seq: u64,
    /// We sent our Close (raw mode: half-closed): the server's Close and
    /// EOF are expected.
    closing: bool,
    /// The connect started.
    t0: Instant,
    /// Raw mode: echo bytes not yet cut into messages.
    raw_buf: Vec<u8>,
    /// permessage-deflate was agreed: how to compress what this connection
    /// sends, and its own compressor when the window is kept (made at its
    /// first message).
    deflate: Option<CompressorConfig>,
    compressor: Option<Box<Compressor>>,
}

/// One loop thread's connections and counts.
pub struct Worker {
    plan: Arc<Plan>,
    payloads: Payloads,
    zs: Deflating,
    stats: Stats,
    progress: mpsc::Sender<Snapshot>,
    /// The next progress second to report.
    second: u64,
    /// This thread's connection numbers not yet started, in order.
    to_start: std::iter::StepBy<std::ops::Range<usize>>,
    next_start: Option<usize>,
    conns: Vec<Option<Conn>>,
    open: usize,
    /// Rate mode: when each connection sends next.
    schedule: BinaryHeap<Reverse<(Instant, SockId)>>,
    /// The interval between one connection's messages (rate mode).
    interval: Duration,
    seed: u64,
    /// Past the hard stop, connections still open are cut.
    expired: bool,
}

impl Worker {
    /// Worker `idx`'s share of the run; starts what is due at once.
    pub fn new(
        idx: usize,
        plan: Arc<Plan>,
        progress: mpsc::Sender<Snapshot>,
        io: &mut Io,
    ) -> Worker {
        let mut to_start = (idx..plan.connections).step_by(plan.threads);
        let next_start = to_start.next();
        let interval = plan.rate.map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(plan.connections as f64 / r)
        });
        let mut w = Worker {
            payloads: Payloads::new(plan.size, plan.kind, plan.payload, plan.raw),
            zs: Deflating::default(),
            stats: Stats::default(),
            progress,
            second: 1,
            to_start,
            next_start,
            conns: Vec::new(),
            open: 0,
            schedule: BinaryHeap::new(),
            interval,
            seed: random_seed() ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            expired: false,
            plan,
        };
        w.start_due(io, Instant::now());
        w
    }

    /// This worker's counts, once the loop is done.
    pub fn into_stats(mut self) -> Stats {
        if self.plan.rate.is_none() {
            // See `record`.
            self.stats.latency_actual = self.stats.latency.clone();
        }
        self.stats
    }

    fn hard_stop(&self) -> Instant {
        self.plan.end + self.plan.drain
    }

    /// When connection `i` starts (the ramp).
    fn start_time(&self, i: usize) -> Instant {
        if self.plan.ramp > 0.0 {
            self.plan.start + Duration::from_secs_f64(i as f64 / self.plan.ramp)
        } else {
            self.plan.start
        }
    }

    /// Opens every connection whose start time has come.
    fn start_due(&mut self, io: &mut Io, now: Instant) {
        while let Some(i) = self.next_start {
            if self.start_time(i) > now || self.expired {
                return;
            }
            self.next_start = self.to_start.next();
            self.seed = xorshift(self.seed);
            let plan = &self.plan;
            let source = (!plan.sources.is_empty()).then(|| plan.sources[i % plan.sources.len()]);
            match plan.target.connect(io, source) {
                Ok(id) => {
                    let conn = Conn {
                        id,
                        i,
                        seed: self.seed,
                        phase: Phase::Connecting,
                        ws: Connection::client(Limits::default(), self.seed),
                        sent: VecDeque::new(),
                        seq: 0,
                        closing: false,
                        t0: now,
                        raw_buf: Vec::new(),
                        deflate: None,
                        compressor: None,
                    };
                    if self.conns.len() <= id.index() {
                        self.conns.resize_with(id.index() + 1, || None);
                    }
                    self.conns[id.index()] = Some(conn);
                    self.open += 1;
                    io.set_deadline(id, Some(now + self.plan.connect_timeout));
                }
                Err(e) => {
                    self.stats.errors.connect += 1;
                    self.stats
                        .sample(format!("connect to {} failed: {e}", self.plan.target.addr));
                }
            }
        }
    }

    /// The connection is open (handshake done, or raw): start its traffic.
    fn begin(&mut self, io: &mut Io, id: SockId, now: Instant) {
        io.set_deadline(id, None);
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        c.phase = Phase::Open;
        self.stats.connect.saturating_record(ns(now - c.t0));
        self.stats.connected += 1;
        match self.plan.rate {
            None => self.fill(io, id, self.plan.in_flight, now),
            Some(_) => {
                // Spread the connections' schedules over one interval, so
                // that they do not all send at the same instant.
                let phase = self
                    .interval
                    .mul_f64(c.i as f64 / self.plan.connections as f64);
                let at = now.max(self.plan.start) + phase;
                self.schedule.push(Reverse((at, id)));
            }
        }
    }

    /// Queues `n` messages sent now (closed loop), within the per-connection
    /// message budget.
    fn fill(&mut self, io: &mut Io, id: SockId, n: usize, now: Instant) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let (plan, payloads, zs, stats) =
            (&self.plan, &self.payloads, &mut self.zs, &mut self.stats);
        io.send_with(id, |out| {
            for _ in 0..n {
                if c.seq >= plan.per_connection
                    || !payloads.encode(c, zs, stats, plan.fragments, out)
                {
                    return;
                }
                c.sent.push_back((c.seq, now, now));
                c.seq += 1;
            }
        });
    }

    /// Sends our Close (in raw mode, half-closes instead).
    fn start_close(&mut self, io: &mut Io, id: SockId) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        if self.plan.raw {
            io.shutdown_after_flush(id);
            return;
        }
        c.ws.close(1000, "", io.now());
        let ws = &mut c.ws;
        io.send_with(id, |out| ws.take_control(out));
    }

    /// Rate mode: sends every message whose time has come.
    fn send_due(&mut self, io: &mut Io, now: Instant) {
        while let Some(&Reverse((at, id))) = self.schedule.peek() {
            if at > now {
                return;
            }
            self.schedule.pop();
            if !io.is_open(id) {
                continue;
            }
            let Some(c) = self.conns[id.index()].as_mut() else {
                continue;
            };
            if c.closing || c.ws.is_closed() {
                continue;
            }
            if at >= self.plan.end {
                self.start_close(io, id);
                continue;
            }
            let (plan, payloads, zs, stats) =
                (&self.plan, &self.payloads, &mut self.zs, &mut self.stats);
            let mut ok = true;
            io.send_with(id, |out| {
                ok = payloads.encode(c, zs, stats, plan.fragments, out);
            });
            if !ok {
                continue;
            }
            c.sent.push_back((c.seq, at, now));
            c.seq += 1;
            self.schedule.push(Reverse((at + self.interval, id)));
        }
    }

    fn handshake_data(&mut self, io: &mut Io, id: SockId, buf: &[u8], now: Instant) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let Phase::Handshake(hs, acc) = &mut c.phase else {
            return;
        };
        acc.extend_from_slice(buf);
        match hs.parse_response_deflate(acc, 16 << 10) {
            Ok(None) => {}
            Ok(Some((head, agreed))) => {
                let mut rest = acc.split_off(head);
                let limits = Limits {
                    max_frame_size: u64::MAX >> 1,
                    // Bounds what a compressed echo may inflate to; an echo
                    // is never larger than what was sent.
                    max_message_size: if self.plan.deflate {
                        self.plan.size as u64
                    } else {
                        u64::MAX >> 1
                    },
                    close_timeout: self.plan.drain,
                };
                c.ws = Connection::client(limits, c.seed);
                match agreed {
                    Some(a) => {
                        c.ws.enable_inflate(
                            a.server_max_window_bits,
                            !a.server_no_context_takeover,
                        );
                        c.deflate = Some(CompressorConfig {
                            level: DEFLATE_LEVEL,
                            window_bits: a.client_max_window_bits,
                            mem_level: DEFLATE_MEM_LEVEL,
                            takeover: !a.client_no_context_takeover,
                        });
                    }
                    None if self.plan.deflate => self.stats.deflate_declined += 1,
                    None => {}
                }
                self.begin(io, id, now);
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

    /// Echo bytes arrived on an open connection.
    fn frames(&mut self, io: &mut Io, id: SockId, buf: &mut [u8], now: Instant) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let plan = &*self.plan;
        self.stats.wire_in += buf.len() as u64;
        let echoes = if plan.raw {
            c.raw_buf.extend_from_slice(buf);
            absorb_raw(
                &mut c.raw_buf,
                &mut c.sent,
                plan,
                &mut self.stats,
                &self.payloads,
                now,
            )
        } else {
            let mut replies = Vec::new();
            let r = absorb(
                &mut c.ws,
                buf,
                &mut c.sent,
                plan,
                &mut self.stats,
                &self.payloads,
                now,
                &mut replies,
                c.closing,
            );
            if !replies.is_empty() {
                io.send(id, &replies);
            }
            r
        };
        let Some(echoes) = echoes else {
            // Failed: the Close the connection queued is on its way; wait
            // for the server to close.
            c.closing = true;
            if plan.raw {
                io.close(id);
            }
            return;
        };
        if plan.rate.is_none() && !c.closing {
            if now < plan.end && c.seq < plan.per_connection {
                self.fill(io, id, echoes, now);
            } else if c.sent.is_empty() {
                self.start_close(io, id);
            }
        }
    }

    /// Past the hard stop: whatever is still open is counted and cut.
    fn expire(&mut self, io: &mut Io) {
        self.expired = true;
        for slot in 0..self.conns.len() {
            let Some(c) = &self.conns[slot] else { continue };
            let id = c.id;
            self.stats.errors.io += 1;
            let lost = c.sent.len();
            self.stats.sample(if lost > 0 {
                format!("{lost} echoes did not arrive in time")
            } else if matches!(c.phase, Phase::Open) {
                "the server did not close the connection after the Close handshake".into()
            } else {
                "the connection did not open in time".into()
            });
            io.close(id);
        }
    }
}

impl Handler for Worker {
    fn connected(&mut self, io: &mut Io, id: SockId, res: std::io::Result<()>) {
        if let Err(e) = res {
            self.stats.errors.connect += 1;
            self.stats
                .sample(format!("connect to {} failed: {e}", self.plan.target.addr));
            io.close(id);
            return;
        }
        let now = io.now();
        if self.plan.raw {
            self.begin(io, id, now);
            return;
        }
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        let hs = ClientHandshake::with_deflate(
            &self.plan.target.host,
            &self.plan.target.path,
            nonce(c.seed),
            self.plan.deflate.then(ClientOffer::default),
        );
        io.send(id, hs.request());
        c.phase = Phase::Handshake(hs, Vec::new());
    }

    fn data(&mut self, io: &mut Io, id: SockId, mut buf: InputBuf) {
        let now = io.now();
        match self
            .conns
            .get(id.index())
            .and_then(|c| c.as_ref())
            .map(|c| &c.phase)
        {
            Some(Phase::Handshake(..)) => self.handshake_data(io, id, buf.as_slice(), now),
            Some(Phase::Open) => self.frames(io, id, buf.as_mut_slice(), now),
            _ => {}
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<std::io::Error>) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        match (&c.phase, err) {
            (Phase::Handshake(..), _) => {
                self.stats.errors.handshake += 1;
                self.stats.sample(
                    "the server closed the connection during the handshake (not a WebSocket server?)"
                        .into(),
                );
            }
            (_, Some(e)) => {
                self.stats.errors.io += 1;
                self.stats.sample(format!("read failed: {e}"));
            }
            (_, None) => {
                if !(c.closing && (self.plan.raw || c.ws.is_closed())) {
                    self.stats.errors.unexpected_close += 1;
                    self.stats
                        .sample("the server closed the TCP connection".into());
                }
            }
        }
        io.close(id);
    }

    fn timer(&mut self, io: &mut Io, id: SockId) {
        let Some(c) = self.conns[id.index()].as_mut() else {
            return;
        };
        match c.phase {
            Phase::Connecting => {
                self.stats.errors.connect += 1;
                self.stats.sample(format!(
                    "connect to {} failed: timed out",
                    self.plan.target.addr
                ));
            }
            Phase::Handshake(..) => {
                self.stats.errors.handshake += 1;
                self.stats.sample("handshake: timed out".into());
            }
            Phase::Open => return,
        }
        io.close(id);
    }

    fn gone(&mut self, _io: &mut Io, id: SockId, why: Gone) {
        if let Some(c) = self.conns[id.index()].take() {
            self.open -= 1;
            if let (Gone::WriteError | Gone::WriteTimeout, false) =
                (&why, c.closing && c.ws.is_closed())
            {
                self.stats.errors.io += 1;
                self.stats.sample(format!("write failed: {why:?}"));
            }
        }
    }

    fn turn(&mut self, io: &mut Io) {
        let now = Instant::now();
        while now >= self.plan.start + Duration::from_secs(self.second) {
            let _ = self.progress.send(self.stats.snapshot(self.second));
            self.second += 1;
        }
        if !self.expired && now >= self.hard_stop() {
            self.expire(io);
            return;
        }
        self.start_due(io, now);
        self.send_due(io, now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t = self.plan.start + Duration::from_secs(self.second);
        if let Some(i) = self.next_start {
            t = t.min(self.start_time(i));
        }
        if let Some(Reverse((at, ..))) = self.schedule.peek() {
            t = t.min(*at);
        }
        if !self.expired {
            t = t.min(self.hard_stop());
        }
        Some(t)
    }

    fn done(&self) -> bool {
        self.open == 0 && (self.next_start.is_none() || self.expired)
    }
}

/// 64 random bits from the kernel, to seed handshake keys and mask keys
/// (RFC 6455 4.1 and 5.3 ask for both to be unpredictable).
pub(crate) fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_ne_bytes(b) | 1
}

pub(crate) fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The 16 bytes of a `Sec-WebSocket-Key`, drawn from `seed`.
pub(crate) fn nonce(seed: u64) -> [u8; 16] {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&xorshift(seed).to_ne_bytes());
    nonce[8..].copy_from_slice(&xorshift(xorshift(seed)).to_ne_bytes());
    nonce
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Payloads: a template with the message's sequence number stamped into
/// it, so reordered, lost or corrupted echoes are caught. Message `seq` is
/// `templates[seq % templates.len()]` with its stamp at `stamp_at`.
struct Payloads {
    templates: Vec<Vec<u8>>,
    stamp_at: usize,
    kind: MessageKind,
    raw: bool,
}

impl Payloads {
    fn new(size: usize, kind: MessageKind, style: PayloadStyle, raw: bool) -> Payloads {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let (templates, stamp_at) = match (style, kind) {
            (PayloadStyle::Json, _) => json_templates(size),
            (PayloadStyle::Pattern, MessageKind::Text) => (
                vec![(0..size).map(|i| ALPHABET[i % ALPHABET.len()]).collect()],
                0,
            ),
            (PayloadStyle::Pattern, MessageKind::Binary) => (
                vec![(0..size)
                    .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
                    .collect()],
                0,
            ),
        };
        Payloads {
            templates,
            stamp_at,
            kind,
            raw,
        }
    }

    fn size(&self) -> usize {
        self.templates[0].len()
    }

    /// Message `seq`: its template and its stamp (16 hex digits for text,
    /// 8 bytes for binary, cut to what fits), worked out once per message.
    #[inline]
    fn msg(&self, seq: u64) -> Msg<'_> {
        let t = match self.templates.len() {
            1 => &self.templates[0],
            n => &self.templates[(seq % n as u64) as usize],
        };
        let (stamp, n) = match self.kind {
            MessageKind::Text => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut s = [0u8; 16];
                for (i, b) in s.iter_mut().enumerate() {
                    *b = HEX[((seq >> (60 - 4 * i)) & 0xF) as usize];
                }
                (s, 16)
            }
            MessageKind::Binary => {
                let mut s = [0u8; 16];
                s[..8].copy_from_slice(&seq.to_le_bytes());
                (s, 8)
            }
        };
        Msg {
            t,
            stamp,
            at: self.stamp_at,
            n: n.min(t.len().saturating_sub(self.stamp_at)),
        }
    }

    /// Appends bytes `a..b` of message `seq` to `out`.
    #[cfg(test)]
    fn write(&self, seq: u64, a: usize, b: usize, out: &mut Vec<u8>) {
        self.msg(seq).write(a, b, out);
    }

    /// Appends connection `c`'s next message, framed as `fragments` frames,
    /// compressed where deflate was agreed, and masked.
    fn encode(
        &self,
        c: &mut Conn,
        zs: &mut Deflating,
        stats: &mut Stats,
        fragments: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let m = self.msg(c.seq);
        let len = self.size();
        let start = out.len();
        if self.raw {
            m.write(0, len, out);
            return true;
        }
        let ok = match c.deflate {
            None => self.frame(&mut c.ws, fragments, len, false, out, |a, b, out| {
                m.write(a, b, out)
            }),
            Some(cfg) => {
                zs.plain.clear();
                m.write(0, len, &mut zs.plain);
                zs.packed.clear();
                let z = if cfg.takeover {
                    c.compressor
                        .get_or_insert_with(|| Box::new(Compressor::new(cfg)))
                } else {
                    if zs.shared.as_ref().is_none_or(|(k, _)| *k != cfg) {
                        zs.shared = Some((cfg, Box::new(Compressor::new(cfg))));
                    }
                    &mut zs.shared.as_mut().expect("made above").1
                };
                z.compress(&zs.plain, &mut zs.packed);
                let packed = &zs.packed;
                self.frame(
                    &mut c.ws,
                    fragments,
                    packed.len(),
                    true,
                    out,
                    |a, b, out| out.extend_from_slice(&packed[a..b]),
                )
            }
        };
        stats.plain_out += len as u64;
        stats.wire_out += (out.len() - start) as u64;
        ok
    }

    /// Frames a payload of `len` bytes, which `body(a, b, out)` appends
    /// piece by piece, as `fragments` frames onto `out`, each masked.
    fn frame(
        &self,
        ws: &mut Connection,
        fragments: usize,
        len: usize,
        compressed: bool,
        out: &mut Vec<u8>,
        body: impl Fn(usize, usize, &mut Vec<u8>),
    ) -> bool {
        let parts = fragments.max(1);
        for p in 0..parts {
            let (a, b) = (len * p / parts, len * (p + 1) / parts);
            let first = (p == 0).then_some(self.kind);
            let fin = p + 1 == parts;
            let header = if compressed {
                ws.send_compressed_fragment(first, fin, (b - a) as u64, out)
            } else {
                ws.send_fragment(first, fin, (b - a) as u64, out)
            };
            let Ok(mask) = header else {
                return false;
            };
            let start = out.len();
            body(a, b, out);
            if let Some(k) = mask {
                apply_mask(&mut out[start..], k, 0);
            }
        }
        true
    }

    fn check(&self, seq: u64, kind: MessageKind, data: &[u8]) -> Result<(), String> {
        if kind != self.kind {
            return Err(format!(
                "message {seq}: a {kind:?} echo for a {:?} message",
                self.kind
            ));
        }
        if data.len() != self.size() {
            return Err(format!(
                "message {seq}: echo of {} bytes for {}",
                data.len(),
                self.size()
            ));
        }
        let m = self.msg(seq);
        let (at, n) = (m.at, m.n);
        if data[at..at + n] != m.stamp[..n]
            || (at > 0 && data[..at] != m.t[..at])
            || data[at + n..] != m.t[at + n..]
        {
            return Err(format!(
                "message {seq}: the echo differs from what was sent"
            ));
        }
        Ok(())
    }
}

/// One message's template and stamp ([`Payloads::msg`]).
struct Msg<'a> {
    t: &'a [u8],
    stamp: [u8; 16],
    /// Where the stamp goes, and how many of its bytes fit.
    at: usize,
    n: usize,
}

impl Msg<'_> {
    /// Appends bytes `a..b` of the message to `out`.
    #[inline]
    fn write(&self, a: usize, b: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.t[a..b]);
        // The part of the stamp inside a..b.
        let (s0, s1) = (self.at.max(a), (self.at + self.n).min(b));
        if s1 > s0 {
            out[start + s0 - a..start + s1 - a]
                .copy_from_slice(&self.stamp[s0 - self.at..s1 - self.at]);
        }
    }
}

/// `--payload json`: different messages of exactly `size` bytes, each a
/// price-ticker update (`{"type":"ticker","seq":"…","data":[{…},…]}`,
/// valid JSON from about 64 bytes up; padded with spaces to the size), and
/// where the sequence stamp goes. 256 of them up to 4 KiB, fewer above so
/// that they take at most 1 MiB (or two messages' worth), always spanning
/// more than a 15-bit window: a compressor keeping its window across
/// messages cannot just point back at the same message sent before.
fn json_templates(size: usize) -> (Vec<Vec<u8>>, usize) {
    const SYMBOLS: [(&str, f64); 12] = [
        ("BTC-USD", 43_125.0),
        ("ETH-USD", 2_281.0),
        ("SOL-USD", 61.4),
        ("DOGE-USD", 0.0923),
        ("AAPL", 191.2),
        ("MSFT", 374.5),
        ("NVDA", 467.7),
        ("AMZN", 146.9),
        ("EUR-USD", 1.0841),
        ("GBP-USD", 1.2633),
        ("XAU-USD", 2_036.5),
        ("TSLA", 238.8),
    ];
    const HEAD: &str = "{\"type\":\"ticker\",\"seq\":\"";
    const STAMP: &str = "0000000000000000";
    const MID: &str = "\",\"data\":[";
    const TAIL: &str = "]}";
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    let mut unit = || {
        rng = xorshift(rng);
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let count = ((1 << 20) / size.max(1)).clamp(2, 256) as u64;
    let templates = (0..count)
        .map(|m| {
            let mut msg = format!("{HEAD}{STAMP}{MID}");
            let mut first = true;
            let mut k = m as usize;
            loop {
                let (sym, base) = SYMBOLS[k % SYMBOLS.len()];
                k += 5;
                let bid = base * (1.0 + (unit() - 0.5) * 0.004);
                let ask = bid * (1.0 + unit() * 0.0004);
                let obj = format!(
                    "{}{{\"s\":\"{sym}\",\"bid\":{bid:.4},\"ask\":{ask:.4},\"vol\":{:.3},\"t\":{}}}",
                    if first { "" } else { "," },
                    unit() * 5_000.0,
                    1_764_633_600_000 + m * 137 + (unit() * 100.0) as u64,
                );
                if msg.len() + obj.len() + TAIL.len() > size {
                    break;
                }
                msg.push_str(&obj);
                first = false;
            }
            let mut b = msg.into_bytes();
            if b.len() + TAIL.len() <= size {
                b.resize(size - TAIL.len(), b' ');
                b.extend_from_slice(TAIL.as_bytes());
            } else {
                // Too small for JSON: its first `size` bytes.
                b.resize(size, b' ');
            }
            b
        })
        .collect();
    // Where the stamp fits whole; too small for JSON, at the front.
    let stamp_at = if size >= HEAD.len() + STAMP.len() {
        HEAD.len()
    } else {
        0
    };
    (templates, stamp_at)
}

/// Feeds one read to the connection: checks and records every echo, appends
/// protocol replies (Pong, Close) to `out`. Returns the number of echoes, or
/// `None` when the connection failed.
#[expect(
    clippy::too_many_arguments,
    reason = "split borrows of the connection's state and the run's counters"
)]
fn absorb(
    ws: &mut Connection,
    rbuf: &mut [u8],
    sent: &mut Sent,
    plan: &Plan,
    stats: &mut Stats,
    payloads: &Payloads,
    now: Instant,
    out: &mut Vec<u8>,
    closing: bool,
) -> Option<usize> {
    let mut echoes = 0;
    let mut ok = true;
    let mut off = 0;
    while off < rbuf.len() {
        let (n, r) = ws.read(&mut rbuf[off..], now);
        match r {
            Ok(Some(Event::Message { kind, payload })) => {
                let data: &[u8] = match &payload {
                    Payload::Input(r) => &rbuf[off + r.start..off + r.end],
                    Payload::Owned(v) => v,
                };
                let Some((seq, intended, actual)) = sent.pop_front() else {
                    stats.errors.mismatch += 1;
                    stats.sample("an echo of a message that was never sent".into());
                    ws.close(1002, "unexpected message", now);
                    ok = false;
                    break;
                };
                if let Err(e) = payloads.check(seq, kind, data) {
                    stats.errors.mismatch += 1;
                    stats.sample(e);
                    ws.close(1002, "wrong echo", now);
                    ok = false;
                    break;
                }
                echoes += 1;
                record(stats, plan, now, intended, actual, data.len());
            }
            Ok(Some(Event::Closed { code, .. })) => {
                if !closing {
                    stats.errors.unexpected_close += 1;
                    stats.sample(format!("the server sent Close (code {code:?})"));
                }
            }
            Ok(_) => {}
            Err(e) => {
                stats.errors.protocol += 1;
                stats.sample(format!("protocol error from the server: {e}"));
                ok = false;
            }
        }
        off += n;
    }
    if ws.has_control() {
        ws.take_control(out);
    }
    ok.then_some(echoes)
}

/// Counts one checked echo.
fn record(
    stats: &mut Stats,
    plan: &Plan,
    now: Instant,
    intended: Instant,
    actual: Instant,
    bytes: usize,
) {
    let lat = ns(now - intended);
    stats.interval_messages += 1;
    stats.plain_in += bytes as u64;
    // Only the progress lines use it: not worth a record per message when
    // they are not printed.
    if !plan.quiet {
        stats.interval_latency.saturating_record(lat);
    }
    if now >= plan.measure_from && now < plan.end {
        stats.messages += 1;
        stats.last_echo = Some(now);
        stats.bytes += bytes as u64;
        stats.latency.saturating_record(lat);
        // In the closed loop a message goes out when it is due, so both
        // latencies are the same: `into_stats` copies the histogram.
        if plan.rate.is_some() {
            stats.latency_actual.saturating_record(ns(now - actual));
        }
    }
}

/// [`absorb`] for `--raw`: echoes are cut from the byte stream by size.
fn absorb_raw(
    rbuf: &mut Vec<u8>,
    sent: &mut Sent,
    plan: &Plan,
    stats: &mut Stats,
    payloads: &Payloads,
    now: Instant,
) -> Option<usize> {
    let size = payloads.size().max(1);
    let mut echoes = 0;
    let mut off = 0;
    while rbuf.len() - off >= size {
        let data = &rbuf[off..off + size];
        let Some((seq, intended, actual)) = sent.pop_front() else {
            stats.errors.mismatch += 1;
            stats.sample("bytes beyond what was sent".into());
            return None;
        };
        if let Err(e) = payloads.check(seq, payloads.kind, data) {
            stats.errors.mismatch += 1;
            stats.sample(e);
            return None;
        }
        record(stats, plan, now, intended, actual, size);
        echoes += 1;
        off += size;
    }
    rbuf.drain(..off);
    Some(echoes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_json_of_the_size_and_stamped() {
        for size in [64, 128, 512, 4096] {
            let p = Payloads::new(size, MessageKind::Text, PayloadStyle::Json, false);
            assert_eq!(p.templates.len(), 256);
            // With a few ticker objects each (about 80 bytes), all different.
            let distinct: std::collections::HashSet<&Vec<u8>> = p.templates.iter().collect();
            if size >= 512 {
                assert_eq!(distinct.len(), 256, "size {size}");
            }
            for seq in [0u64, 1, 255, 256, 0x1234_5678_9abc_def0] {
                let mut m = Vec::new();
                p.write(seq, 0, size, &mut m);
                assert_eq!(m.len(), size);
                let v: serde_json::Value = serde_json::from_slice(&m)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&m)));
                assert_eq!(v["seq"].as_str().unwrap(), format!("{seq:016x}"));
                if size >= 512 {
                    assert!(v["data"].as_array().unwrap().len() >= 4, "{v}");
                }
                p.check(seq, MessageKind::Text, &m).unwrap();
                // Written in pieces, the same bytes.
                let mut pieces = Vec::new();
                for (a, b) in [(0, 20), (20, 21), (21, size)] {
                    p.write(seq, a, b, &mut pieces);
                }
                assert_eq!(pieces, m);
                // One byte off anywhere, or the next message's echo, fails.
                for i in [0, 20, size / 2, size - 1] {
                    let mut bad = m.clone();
                    bad[i] ^= 1;
                    assert!(p.check(seq, MessageKind::Text, &bad).is_err(), "byte {i}");
                }
                assert!(p.check(seq + 1, MessageKind::Text, &m).is_err());
            }
        }
        // Too small for JSON: still exactly the size, still checked.
        let p = Payloads::new(20, MessageKind::Text, PayloadStyle::Json, false);
        let mut m = Vec::new();
        p.write(7, 0, 20, &mut m);
        assert_eq!(m.len(), 20);
        p.check(7, MessageKind::Text, &m).unwrap();
        assert!(p.check(8, MessageKind::Text, &m).is_err());
    }

    #[test]
    fn seeds_and_keys_do_not_repeat() {
        // The bug this guards against: a seed derived from the clock that
        // came out the same every time, so every session sent the same key.
        let seeds: Vec<u64> = (0..8).map(|_| random_seed()).collect();
        let keys: std::collections::HashSet<[u8; 16]> = seeds.iter().map(|s| nonce(*s)).collect();
        assert_eq!(keys.len(), seeds.len(), "{seeds:x?}");
    }
}
