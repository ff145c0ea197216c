//! Connections and their traffic, one worker thread's share.
//!
//! * Throughput mode (closed loop): each connection keeps `in_flight`
//!   messages outstanding and sends the next one as each echo arrives.
//! * Rate mode (open loop): each connection sends on a fixed schedule,
//!   whatever the echoes do, from a task of its own, while another reads.
//!   Latency is taken from the *intended* send time (so a stalled server is
//!   charged for every message it delayed, as in wrk2) and from the actual
//!   one.
//!
//! Every echo is checked: length, content and order (each message carries
//! its sequence number). The payload is sent masked, as a client must.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ringws::proto::client::ClientHandshake;
use ringws::proto::mask::apply_mask;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};
use ringws::runtime::client::{self as rt, ClientStream};

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
}

/// Runs worker `idx`'s connections and returns its counts. Sends a progress
/// snapshot to `progress` every second.
pub async fn run(idx: usize, plan: Arc<Plan>, progress: mpsc::Sender<Snapshot>) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let reporter = {
        let (stats, plan) = (stats.clone(), plan.clone());
        rt::spawn(async move {
            for second in 1.. {
                rt::sleep_until(plan.start + Duration::from_secs(second)).await;
                if progress.send(stats.borrow_mut().snapshot(second)).is_err() {
                    return;
                }
            }
        })
    };
    let mut seed = random_seed() ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let tasks: Vec<_> = (idx..plan.connections)
        .step_by(plan.threads)
        .map(|i| {
            seed = xorshift(seed);
            rt::spawn(connection(i, plan.clone(), stats.clone(), seed))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    reporter.abort();
    let _ = reporter.await;
    Rc::try_unwrap(stats)
        .ok()
        .expect("all tasks done")
        .into_inner()
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

fn xorshift(mut x: u64) -> u64 {
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

/// Payloads: a fixed pattern with the message's sequence number stamped at
/// the front, so reordered, lost or corrupted echoes are caught.
struct Payloads {
    template: Vec<u8>,
    kind: MessageKind,
    raw: bool,
}

impl Payloads {
    fn new(size: usize, kind: MessageKind, raw: bool) -> Payloads {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let template = match kind {
            MessageKind::Text => (0..size).map(|i| ALPHABET[i % ALPHABET.len()]).collect(),
            MessageKind::Binary => (0..size)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
                .collect(),
        };
        Payloads {
            template,
            kind,
            raw,
        }
    }

    /// The stamp for `seq`: 16 hex digits for text, 8 bytes for binary.
    fn stamp(&self, seq: u64) -> ([u8; 16], usize) {
        let mut s = [0u8; 16];
        let n = match self.kind {
            MessageKind::Text => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for (i, b) in s.iter_mut().enumerate() {
                    *b = HEX[((seq >> (60 - 4 * i)) & 0xF) as usize];
                }
                16
            }
            MessageKind::Binary => {
                s[..8].copy_from_slice(&seq.to_le_bytes());
                8
            }
        };
        (s, n.min(self.template.len()))
    }

    /// Appends message `seq`, framed as `fragments` frames and masked.
    fn encode(&self, conn: &mut Connection, seq: u64, fragments: usize, out: &mut Vec<u8>) -> bool {
        let (stamp, n) = self.stamp(seq);
        if self.raw {
            let start = out.len();
            out.extend_from_slice(&self.template);
            out[start..start + n].copy_from_slice(&stamp[..n]);
            return true;
        }
        let len = self.template.len();
        let parts = fragments.max(1);
        for p in 0..parts {
            let (a, b) = (len * p / parts, len * (p + 1) / parts);
            let first = (p == 0).then_some(self.kind);
            let Ok(mask) = conn.send_fragment(first, p + 1 == parts, (b - a) as u64, out) else {
                return false;
            };
            let start = out.len();
            out.extend_from_slice(&self.template[a..b]);
            // Stamp the bytes of this part that the stamp covers.
            for i in a..b.min(n) {
                out[start + i - a] = stamp[i];
            }
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
        if data.len() != self.template.len() {
            return Err(format!(
                "message {seq}: echo of {} bytes for {}",
                data.len(),
                self.template.len()
            ));
        }
        let (stamp, n) = self.stamp(seq);
        if data[..n] != stamp[..n] || data[n..] != self.template[n..] {
            return Err(format!(
                "message {seq}: the echo differs from what was sent"
            ));
        }
        Ok(())
    }
}

/// An open connection, after the handshake.
struct Conn {
    stream: Rc<ClientStream>,
    ws: Connection,
    /// Bytes after the handshake response: the first frames.
    rbuf: Vec<u8>,
}

async fn open(i: usize, plan: &Plan, seed: u64) -> Result<Conn, (bool, String)> {
    let source = (!plan.sources.is_empty()).then(|| plan.sources[i % plan.sources.len()]);
    let deadline = Instant::now() + plan.connect_timeout;
    let stream = ClientStream::connect(plan.target.addr, source, deadline)
        .await
        .map_err(|e| (true, format!("connect to {} failed: {e}", plan.target.addr)))?;
    if plan.raw {
        return Ok(Conn {
            stream: Rc::new(stream),
            ws: Connection::client(Limits::default(), seed),
            rbuf: Vec::new(),
        });
    }
    let hs = ClientHandshake::new(&plan.target.host, &plan.target.path, nonce(seed));
    let (res, _) = stream.write_all(hs.request().to_vec()).await;
    res.map_err(|e| (false, format!("sending the handshake failed: {e}")))?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let (res, b) = stream.read_more_by(buf, deadline).await;
        buf = b;
        match res {
            Ok(0) => return Err((
                false,
                "the server closed the connection during the handshake (not a WebSocket server?)"
                    .into(),
            )),
            Ok(_) => {}
            Err(e) => return Err((false, format!("handshake: {e}"))),
        }
        match hs.parse_response(&buf, 16 << 10) {
            Ok(None) => continue,
            Ok(Some(head)) => {
                buf.drain(..head);
                let limits = Limits {
                    max_frame_size: u64::MAX >> 1,
                    max_message_size: u64::MAX >> 1,
                    close_timeout: plan.drain,
                };
                return Ok(Conn {
                    stream: Rc::new(stream),
                    ws: Connection::client(limits, seed),
                    rbuf: buf,
                });
            }
            Err(e) => return Err((false, format!("handshake: {e}"))),
        }
    }
}

/// One connection: ramp, connect, handshake, traffic, close.
async fn connection(i: usize, plan: Arc<Plan>, stats: Rc<RefCell<Stats>>, seed: u64) {
    if plan.ramp > 0.0 {
        rt::sleep_until(plan.start + Duration::from_secs_f64(i as f64 / plan.ramp)).await;
    }
    let t0 = Instant::now();
    let conn = match open(i, &plan, seed).await {
        Ok(c) => c,
        Err((connect, msg)) => {
            let mut s = stats.borrow_mut();
            if connect {
                s.errors.connect += 1;
            } else {
                s.errors.handshake += 1;
            }
            s.sample(msg);
            return;
        }
    };
    {
        let mut s = stats.borrow_mut();
        s.connect.saturating_record(ns(t0.elapsed()));
        s.connected += 1;
    }
    // One watchdog per connection: at the hard stop, a connection that is
    // still waiting (a server that stopped answering) is shut down.
    let hard_stop = plan.end + plan.drain;
    let expired = Rc::new(std::cell::Cell::new(false));
    let watchdog = {
        let (stream, expired) = (conn.stream.clone(), expired.clone());
        rt::spawn(async move {
            rt::sleep_until(hard_stop).await;
            expired.set(true);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        })
    };
    let payloads = Payloads::new(plan.size, plan.kind, plan.raw);
    let Conn { stream, ws, rbuf } = conn;
    let shared = Rc::new(Shared {
        ws: RefCell::new(ws),
        sent: RefCell::new(VecDeque::new()),
        closing: std::cell::Cell::new(false),
        payloads,
    });
    match plan.rate {
        None => {
            let mut out = Vec::new();
            shared.fill(&plan, plan.in_flight, Instant::now(), &mut 0, &mut out);
            receive(&stream, &shared, &plan, &stats, rbuf, out, true, &expired).await;
        }
        Some(rate) => {
            let sender = rt::spawn(send_on_schedule(
                i,
                stream.clone(),
                shared.clone(),
                plan.clone(),
                stats.clone(),
                rate,
            ));
            receive(
                &stream,
                &shared,
                &plan,
                &stats,
                rbuf,
                Vec::new(),
                false,
                &expired,
            )
            .await;
            let _ = sender.await;
        }
    }
    watchdog.abort();
}

/// In-flight bookkeeping: sequence number, intended and actual send time.
type Sent = VecDeque<(u64, Instant, Instant)>;

/// A connection's state shared by its reader and (rate mode) its sender.
/// Borrowed only between awaits, never across one.
struct Shared {
    ws: RefCell<Connection>,
    sent: RefCell<Sent>,
    /// We sent our Close: the server's Close and EOF are expected.
    closing: std::cell::Cell<bool>,
    payloads: Payloads,
}

impl Shared {
    /// Queues `n` messages sent now (closed loop), within the per-connection
    /// message budget.
    fn fill(&self, plan: &Plan, n: usize, now: Instant, seq: &mut u64, out: &mut Vec<u8>) {
        let mut ws = self.ws.borrow_mut();
        let mut sent = self.sent.borrow_mut();
        for _ in 0..n {
            if *seq >= plan.per_connection {
                return;
            }
            if !self.payloads.encode(&mut ws, *seq, plan.fragments, out) {
                return;
            }
            sent.push_back((*seq, now, now));
            *seq += 1;
        }
    }

    /// Queues our Close (in raw mode the caller half-closes instead).
    fn start_close(&self, out: &mut Vec<u8>) {
        self.closing.set(true);
        if self.payloads.raw {
            return;
        }
        let mut ws = self.ws.borrow_mut();
        ws.close(1000, "", Instant::now());
        ws.take_control(out);
    }
}

/// Writes `out`, returning it emptied for reuse, or counts the error and
/// returns `None`.
async fn write(stream: &ClientStream, out: Vec<u8>, stats: &RefCell<Stats>) -> Option<Vec<u8>> {
    let (res, mut out) = stream.write_all(out).await;
    out.clear();
    match res {
        Ok(()) => Some(out),
        Err(e) => {
            let mut s = stats.borrow_mut();
            s.errors.io += 1;
            s.sample(format!("write failed: {e}"));
            None
        }
    }
}

/// Rate mode's sender: message `k` is due at `start + phase + k * interval`
/// and is sent then, or at once if the sender is behind. After the last one
/// it starts the closing handshake.
async fn send_on_schedule(
    i: usize,
    stream: Rc<ClientStream>,
    shared: Rc<Shared>,
    plan: Arc<Plan>,
    stats: Rc<RefCell<Stats>>,
    rate: f64,
) {
    let interval = Duration::from_secs_f64(plan.connections as f64 / rate);
    // Spread the connections' schedules over one interval, so that they do
    // not all send at the same instant.
    let phase = interval.mul_f64(i as f64 / plan.connections as f64);
    let mut next = Instant::now().max(plan.start) + phase;
    let mut out = Vec::with_capacity(plan.size + 64);
    let mut seq = 0u64;
    while next < plan.end && !shared.ws.borrow().is_closed() {
        rt::sleep_until(next).await;
        {
            let mut ws = shared.ws.borrow_mut();
            if !shared
                .payloads
                .encode(&mut ws, seq, plan.fragments, &mut out)
            {
                return;
            }
            shared
                .sent
                .borrow_mut()
                .push_back((seq, next, Instant::now()));
        }
        seq += 1;
        out = match write(&stream, out, &stats).await {
            Some(o) => o,
            None => return,
        };
        next += interval;
    }
    shared.start_close(&mut out);
    if plan.raw {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    } else {
        let _ = stream.write_all(out).await;
    }
}

/// Reads until the server closes the TCP connection: checks and records
/// every echo, answers the protocol, and in the closed loop (`refill`) sends
/// a new message for each echo and the Close at the end.
#[expect(
    clippy::too_many_arguments,
    reason = "the connection's parts, borrowed separately so none is held across an await"
)]
async fn receive(
    stream: &ClientStream,
    shared: &Shared,
    plan: &Plan,
    stats: &RefCell<Stats>,
    mut rbuf: Vec<u8>,
    mut out: Vec<u8>,
    refill: bool,
    expired: &std::cell::Cell<bool>,
) {
    let mut seq = shared.sent.borrow().len() as u64;
    rbuf.reserve(64 << 10);
    let mut pending = !rbuf.is_empty();
    let mut half_closed = false;
    loop {
        if !out.is_empty() {
            out = match write(stream, out, stats).await {
                Some(o) => o,
                None => return,
            };
        }
        if plan.raw && refill && shared.closing.get() && !half_closed {
            // The raw protocol's close: no more requests, then the server's EOF.
            half_closed = true;
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        if !pending {
            let (res, b) = stream.read_more(rbuf).await;
            rbuf = b;
            match res {
                Ok(n) if n > 0 && !expired.get() => {}
                Ok(_) | Err(_) if expired.get() => {
                    let mut s = stats.borrow_mut();
                    s.errors.io += 1;
                    let lost = shared.sent.borrow().len();
                    s.sample(if lost > 0 {
                        format!("{lost} echoes did not arrive in time")
                    } else {
                        "the server did not close the connection after the Close handshake".into()
                    });
                    return;
                }
                Ok(_) => {
                    if !(shared.closing.get() && (plan.raw || shared.ws.borrow().is_closed())) {
                        let mut s = stats.borrow_mut();
                        s.errors.unexpected_close += 1;
                        s.sample("the server closed the TCP connection".into());
                    }
                    return;
                }
                Err(e) => {
                    let mut s = stats.borrow_mut();
                    s.errors.io += 1;
                    s.sample(format!("read failed: {e}"));
                    return;
                }
            }
        }
        pending = false;
        let now = Instant::now();
        let echoes = {
            let mut ws = shared.ws.borrow_mut();
            let mut sent = shared.sent.borrow_mut();
            let mut st = stats.borrow_mut();
            match absorb(
                &mut ws,
                &mut rbuf,
                &mut sent,
                plan,
                &mut st,
                &shared.payloads,
                now,
                &mut out,
                shared.closing.get(),
            ) {
                Some(n) => n,
                None => {
                    // Failed: send the Close the connection queued, then
                    // wait for the server to close.
                    drop((ws, sent, st));
                    shared.closing.set(true);
                    continue;
                }
            }
        };
        if refill && !shared.closing.get() {
            if now < plan.end && seq < plan.per_connection {
                shared.fill(plan, echoes, now, &mut seq, &mut out);
            } else if shared.sent.borrow().is_empty() {
                shared.start_close(&mut out);
            }
        }
    }
}

/// Feeds `rbuf` to the connection: checks and records every echo, appends
/// protocol replies (Pong, Close) to `out`. Returns the number of echoes, or
/// `None` when the connection failed.
#[expect(
    clippy::too_many_arguments,
    reason = "split borrows of the connection's state and the run's counters"
)]
fn absorb(
    ws: &mut Connection,
    rbuf: &mut Vec<u8>,
    sent: &mut Sent,
    plan: &Plan,
    stats: &mut Stats,
    payloads: &Payloads,
    now: Instant,
    out: &mut Vec<u8>,
    closing: bool,
) -> Option<usize> {
    if payloads.raw {
        return absorb_raw(rbuf, sent, plan, stats, payloads, now);
    }
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
            Ok(Some(Event::Closed { code })) => {
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
    rbuf.clear();
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
    stats.interval_latency.saturating_record(lat);
    if now >= plan.measure_from && now < plan.end {
        stats.messages += 1;
        stats.last_echo = Some(now);
        stats.bytes += bytes as u64;
        stats.latency.saturating_record(lat);
        stats.latency_actual.saturating_record(ns(now - actual));
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
    let size = payloads.template.len().max(1);
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
    fn seeds_and_keys_do_not_repeat() {
        // The bug this guards against: a seed derived from the clock that
        // came out the same every time, so every session sent the same key.
        let seeds: Vec<u64> = (0..8).map(|_| random_seed()).collect();
        let keys: std::collections::HashSet<[u8; 16]> = seeds.iter().map(|s| nonce(*s)).collect();
        assert_eq!(keys.len(), seeds.len(), "{seeds:x?}");
    }
}
