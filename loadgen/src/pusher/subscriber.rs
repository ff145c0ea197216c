//! The subscribers: a [`Handler`] of ringws's client loop per thread, each
//! client one WebSocket speaking the Pusher protocol as pusher-js does.
//!
//! ```text
//!  connect ─> upgrade (/app/KEY?protocol=7&client=js&version=8.4.0&flash=false)
//!    ─> pusher:connection_established (socket id)
//!    ─> pusher:subscribe {channel, auth for private-}
//!    ─> pusher_internal:subscription_succeeded          (subscribed: counted)
//!    ─> events, each checked; pusher:ping answered with pusher:pong
//!    ─> Close, once every event accepted for its channel is in
//! ```
//!
//! With `--client-events`, clients 0 to P-1 are also the publishers: each
//! sends `client-bench` events on its own channel on the rate's schedule
//! ([`Worker::publish_due`]), and every other subscriber of that channel
//! must get them (a server never sends a client event back to its
//! sender: one that comes back is counted as malformed).
//!
//! Publishing starts once every client is subscribed (or failed), so each
//! must get every event the API accepted for its channel. A delivery is
//! found by its marker ([`event::find`]) and checked: the right channel, a
//! known publisher, the padding whole, and its place in the publisher's
//! sequence ([`Order`]). What never arrives is counted at the end, from
//! what the publishers had accepted.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ringws::proto::client::ClientHandshake;
use ringws::proto::{Connection, Event, Limits, MessageKind, Payload};
use ringws::runtime::client::{Gone, Handler, InputBuf, Io, SockId};

use super::event::{self, Arrival, Order, Stamp};
use super::{Mode, Plan};
use crate::stats::{Snapshot, Stats};
use crate::worker::{nonce, random_seed, xorshift};

/// The delivery checks' counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checks {
    /// Accepted events that never reached a subscriber of their channel
    /// (summed over subscribers; counted at the end).
    pub missing: u64,
    /// Events a subscriber had already.
    pub duplicated: u64,
    /// Events that came after a later one of the same publisher.
    pub reordered: u64,
    /// Events not of this run's format, for another channel, or damaged.
    pub malformed: u64,
}

impl Checks {
    pub fn total(&self) -> u64 {
        self.missing + self.duplicated + self.reordered + self.malformed
    }

    pub fn add(&mut self, o: &Checks) {
        self.missing += o.missing;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.malformed += o.malformed;
    }
}

/// Where a client is.
enum Phase {
    /// TCP connect under way.
    Connecting,
    /// The upgrade request is sent; the response so far.
    Upgrading(ClientHandshake, Vec<u8>),
    /// Upgraded: waiting for `pusher:connection_established`.
    Welcome,
    /// `pusher:subscribe` sent.
    Subscribing,
    /// `subscription_succeeded` came: events are checked and counted.
    Subscribed,
}

/// One client.
struct Client {
    id: SockId,
    /// Its number in the run: it subscribes to channel `i mod K`.
    i: usize,
    channel: usize,
    seed: u64,
    phase: Phase,
    ws: Connection,
    order: Order,
    /// Events received once each (in order, or late).
    unique: u64,
    /// Client events it sent (`--client-events`): those it does not get.
    own: u64,
    /// Our Close is sent.
    closing: bool,
    t0: Instant,
}

impl Client {
    fn upgraded(&self) -> bool {
        matches!(
            self.phase,
            Phase::Welcome | Phase::Subscribing | Phase::Subscribed
        )
    }

    fn subscribed(&self) -> bool {
        matches!(self.phase, Phase::Subscribed)
    }

    fn received(&self) -> Received {
        Received {
            channel: self.channel,
            got: self.unique,
            own: self.own,
        }
    }
}

/// What a client that subscribed received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Received {
    pub channel: usize,
    /// Events received once each.
    pub got: u64,
    /// Client events it sent itself, which it must not get.
    pub own: u64,
}

/// Per client: its number, and what it received (None if it never
/// subscribed).
pub(super) type ReceivedBy = (usize, Option<Received>);

/// A worker's results.
pub(super) struct Outcome {
    pub stats: Stats,
    pub checks: Checks,
    /// Per client of this thread.
    pub received: Vec<ReceivedBy>,
    /// Client events sent (`--client-events`), whole run and those
    /// intended in the window.
    pub sent: u64,
    pub sent_window: u64,
}

/// One publishing client's schedule (`--client-events`).
struct Schedule {
    /// The publisher's number, which is its client's.
    p: usize,
    /// Its client's slot, if it connected.
    slot: Option<usize>,
    /// Events sent: the next one's sequence number.
    n: u64,
}

impl Schedule {
    /// When event `n` of publisher `p` is due: the publishers spread over
    /// one interval, `every` apart each.
    fn due(&self, go: Instant, every: f64, publishers: usize) -> Instant {
        go + Duration::from_secs_f64(every * (self.n as f64 + self.p as f64 / publishers as f64))
    }
}

/// One thread's clients.
pub(super) struct Worker {
    plan: Arc<Plan>,
    stats: Stats,
    checks: Checks,
    progress: mpsc::Sender<Snapshot>,
    second: u64,
    clients: Vec<Option<Client>>,
    open: usize,
    received: Vec<ReceivedBy>,
    expired: bool,
    /// Per channel, the events every subscriber must get, once every
    /// publisher is done.
    expected: Option<Vec<u64>>,
    /// `--client-events`: this thread's publishing clients, how many there
    /// are (connected or not), and whether they are counted done.
    schedules: Vec<Schedule>,
    publishers: usize,
    publishers_done: bool,
    sent: u64,
    sent_window: u64,
    /// A client event's message, reused.
    msg: Vec<u8>,
}

/// Whether client `c` can send publisher `p`'s client events: it is that
/// publisher's client, subscribed and not closing.
fn can_publish(c: &Client, p: usize) -> bool {
    c.i == p && c.subscribed() && !c.closing
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Worker {
    /// Worker `idx` of the run: starts its share of the clients.
    pub fn new(
        idx: usize,
        plan: Arc<Plan>,
        progress: mpsc::Sender<Snapshot>,
        io: &mut Io,
    ) -> Worker {
        let mut w = Worker {
            stats: Stats::default(),
            checks: Checks::default(),
            progress,
            second: 1,
            clients: Vec::new(),
            open: 0,
            received: Vec::new(),
            expired: false,
            expected: None,
            schedules: Vec::new(),
            publishers: 0,
            publishers_done: false,
            sent: 0,
            sent_window: 0,
            msg: Vec::new(),
            plan,
        };
        w.connect_all(io, idx);
        w
    }

    pub fn into_outcome(mut self) -> Outcome {
        for c in self.clients.iter().flatten() {
            self.received
                .push((c.i, c.subscribed().then(|| c.received())));
        }
        if !matches!(self.plan.mode, Mode::Rate(_)) {
            // Intended and actual send times are one in a closed loop.
            self.stats.latency_actual = self.stats.latency.clone();
        }
        Outcome {
            stats: self.stats,
            checks: self.checks,
            received: self.received,
            sent: self.sent,
            sent_window: self.sent_window,
        }
    }

    fn connect_all(&mut self, io: &mut Io, idx: usize) {
        let plan = self.plan.clone();
        let mut seed = random_seed() ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let now = Instant::now();
        for i in (idx..plan.clients).step_by(plan.threads) {
            seed = xorshift(seed);
            let source: Option<IpAddr> =
                (!plan.sources.is_empty()).then(|| plan.sources[i % plan.sources.len()]);
            let target = plan.ws_target(i);
            let publishes = plan.client_events && i < plan.publishers;
            if publishes {
                self.publishers += 1;
                self.schedules.push(Schedule {
                    p: i,
                    slot: None,
                    n: 0,
                });
            }
            match target.connect(io, source) {
                Ok(id) => {
                    if publishes {
                        if let Some(s) = self.schedules.last_mut() {
                            s.slot = Some(id.index());
                        }
                    }
                    if self.clients.len() <= id.index() {
                        self.clients.resize_with(id.index() + 1, || None);
                    }
                    self.clients[id.index()] = Some(Client {
                        id,
                        i,
                        channel: i % plan.channels,
                        seed,
                        phase: Phase::Connecting,
                        ws: Connection::client(Limits::default(), seed),
                        order: Order::new(plan.publishers),
                        unique: 0,
                        own: 0,
                        closing: false,
                        t0: now,
                    });
                    self.open += 1;
                    // Connect, upgrade and subscribe, all within it.
                    io.set_deadline(id, Some(now + plan.connect_timeout));
                }
                Err(e) => {
                    self.stats.errors.connect += 1;
                    self.failed(i, format!("connect to {} failed: {e}", target.addr));
                }
            }
        }
    }

    /// Client `i` will never subscribe.
    fn failed(&mut self, i: usize, why: String) {
        self.stats.sample(why);
        self.received.push((i, None));
        self.plan.failed.fetch_add(1, Ordering::Release);
    }

    fn handshake_data(&mut self, io: &mut Io, id: SockId, buf: &mut [u8], now: Instant) {
        let Some(c) = self.clients[id.index()].as_mut() else {
            return;
        };
        let Phase::Upgrading(hs, acc) = &mut c.phase else {
            return;
        };
        acc.extend_from_slice(buf);
        match hs.parse_response(acc, 16 << 10) {
            Ok(None) => {}
            Ok(Some(head)) => {
                let mut rest = acc.split_off(head);
                let limits = Limits {
                    max_frame_size: 16 << 20,
                    max_message_size: 16 << 20,
                    close_timeout: self.plan.drain,
                };
                c.ws = Connection::client(limits, c.seed);
                c.phase = Phase::Welcome;
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

    /// Messages arrived on an upgraded connection.
    fn frames(&mut self, io: &mut Io, id: SockId, buf: &mut [u8], now: Instant) {
        let plan = &*self.plan;
        let Some(c) = self.clients[id.index()].as_mut() else {
            return;
        };
        let (from, end) = match (plan.measure_from(), plan.end()) {
            (Some(m), Some(e)) => (m, e),
            _ => (now + Duration::from_secs(3600), now),
        };
        let in_window = now >= from && now < end;
        let at_ns = ns(now.saturating_duration_since(plan.start));
        let rate = matches!(plan.mode, Mode::Rate(_));
        let mut off = 0;
        while off < buf.len() {
            let (n, r) = c.ws.read(&mut buf[off..], now);
            match r {
                Ok(Some(Event::Message { kind, payload })) => {
                    let data: &[u8] = match &payload {
                        Payload::Input(r) => &buf[off + r.start..off + r.end],
                        Payload::Owned(v) => v,
                    };
                    if kind != MessageKind::Text {
                        self.stats.errors.protocol += 1;
                        self.stats
                            .sample("a binary message: not part of the protocol".into());
                    } else if let Some(at) = event::find(data) {
                        // The hot path: one event, checked without a
                        // JSON parse.
                        let stamp = match event::parse(data, at, &plan.template) {
                            Ok(s)
                                if s.channel as usize == c.channel
                                    && usize::from(s.publisher) < plan.publishers
                                    && !(plan.client_events && usize::from(s.publisher) == c.i) =>
                            {
                                s
                            }
                            r => {
                                self.checks.malformed += 1;
                                self.stats.sample(format!(
                                    "client {} on {}: a bad event ({r:?}): {}",
                                    c.i,
                                    plan.channel_name(c.channel),
                                    String::from_utf8_lossy(&data[..data.len().min(160)])
                                ));
                                off += n;
                                continue;
                            }
                        };
                        let expected = c.order.expected(stamp.publisher);
                        match c.order.arrive(stamp.publisher, stamp.seq) {
                            Arrival::Duplicate => {
                                self.checks.duplicated += 1;
                                self.stats.sample(format!(
                                    "client {}: event {} of publisher {} on {} arrived again (next expected {expected})",
                                    c.i, stamp.seq, stamp.publisher, plan.channel_name(c.channel)
                                ));
                                off += n;
                                continue;
                            }
                            Arrival::Late => {
                                self.checks.reordered += 1;
                                self.stats.sample(format!(
                                    "client {}: event {} of publisher {} on {} arrived after later ones (next expected {expected})",
                                    c.i, stamp.seq, stamp.publisher, plan.channel_name(c.channel)
                                ));
                            }
                            Arrival::New => {}
                        }
                        c.unique += 1;
                        self.stats.interval_messages += 1;
                        let lat = at_ns.saturating_sub(stamp.intended);
                        if !plan.quiet {
                            self.stats.interval_latency.saturating_record(lat);
                        }
                        if in_window {
                            self.stats.messages += 1;
                            self.stats.bytes += plan.template.len() as u64;
                            self.stats.last_echo = Some(now);
                            self.stats.latency.saturating_record(lat);
                            if rate {
                                self.stats
                                    .latency_actual
                                    .saturating_record(at_ns.saturating_sub(stamp.actual));
                            }
                        }
                    } else {
                        Self::control(plan, &mut self.stats, io, c, data, now);
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
            off += n;
        }
        if c.ws.has_control() {
            let ws = &mut c.ws;
            io.send_with(id, |out| ws.take_control(out));
        }
        self.maybe_finish(io, id);
    }

    /// A message of the protocol itself (not a benchmark event).
    fn control(
        plan: &Plan,
        stats: &mut Stats,
        io: &mut Io,
        c: &mut Client,
        data: &[u8],
        now: Instant,
    ) {
        let id = c.id;
        let send = |io: &mut Io, ws: &mut Connection, msg: &[u8]| {
            io.send_with(id, |out| {
                let _ = ws.write_message(MessageKind::Text, msg, out);
            });
        };
        match event::event_name(data) {
            Some(b"pusher:connection_established") if matches!(c.phase, Phase::Welcome) => {
                let channel = plan.channel_name(c.channel);
                let msg = if plan.private {
                    let Some(socket_id) = event::socket_id(data) else {
                        stats.errors.handshake += 1;
                        stats.sample(format!("no socket id in {}", String::from_utf8_lossy(data)));
                        io.close(id);
                        return;
                    };
                    let auth = ringws_gateway::sign::channel_auth(
                        &plan.app_key,
                        &plan.app_secret,
                        socket_id,
                        channel,
                        None,
                    );
                    format!(
                        "{{\"event\":\"pusher:subscribe\",\"data\":{{\"auth\":\"{auth}\",\"channel\":\"{channel}\"}}}}"
                    )
                } else {
                    format!(
                        "{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":\"{channel}\"}}}}"
                    )
                };
                send(io, &mut c.ws, msg.as_bytes());
                c.phase = Phase::Subscribing;
            }
            Some(b"pusher_internal:subscription_succeeded")
                if matches!(c.phase, Phase::Subscribing) =>
            {
                c.phase = Phase::Subscribed;
                io.set_deadline(id, None);
                stats
                    .connect
                    .saturating_record(ns(now.saturating_duration_since(c.t0)));
                stats.connected += 1;
                plan.subscribed.fetch_add(1, Ordering::Release);
            }
            Some(b"pusher:ping") => {
                send(io, &mut c.ws, b"{\"event\":\"pusher:pong\",\"data\":{}}");
            }
            Some(name @ (b"pusher:error" | b"pusher:subscription_error")) => {
                stats.errors.protocol += 1;
                stats.sample(format!(
                    "the server sent {}: {}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(&data[..data.len().min(200)])
                ));
                if !c.subscribed() {
                    io.close(id);
                }
            }
            // subscription_count, cache_miss and the like.
            _ => {}
        }
    }

    /// A client with every event accepted for its channel sends its Close.
    fn maybe_finish(&mut self, io: &mut Io, id: SockId) {
        let Some(c) = self.clients[id.index()].as_mut() else {
            return;
        };
        let Some(expected) = &self.expected else {
            return;
        };
        if c.closing || !c.subscribed() || c.unique + c.own < expected[c.channel] {
            return;
        }
        c.closing = true;
        c.ws.close(1000, "", io.now());
        let ws = &mut c.ws;
        io.send_with(id, |out| ws.take_control(out));
    }

    /// Once every publisher is done: what each channel's subscribers get.
    fn learn_expected(&mut self, io: &mut Io) {
        let plan = &self.plan;
        if self.expected.is_some() || plan.publishers_done.load(Ordering::Acquire) < plan.publishers
        {
            return;
        }
        self.expected = Some(
            plan.accepted
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
        );
        for slot in 0..self.clients.len() {
            if let Some(c) = &self.clients[slot] {
                let id = c.id;
                self.maybe_finish(io, id);
            }
        }
    }

    /// `--client-events`: each publishing client of this thread sends the
    /// client events due by now (those its schedule puts before the end
    /// of the window), each stamped with its intended time, so a client
    /// that falls behind catches up and latency still counts from the
    /// schedule. Past the end, this thread's publishers count as done.
    fn publish_due(&mut self, io: &mut Io, now: Instant) {
        let plan = self.plan.clone();
        let (Some(&go), Some(from), Some(end), Mode::Rate(rate)) =
            (plan.go.get(), plan.measure_from(), plan.end(), plan.mode)
        else {
            return;
        };
        if self.publishers_done {
            return;
        }
        let every = plan.publishers as f64 / rate;
        for s in &mut self.schedules {
            let Some(c) = s
                .slot
                .and_then(|slot| self.clients[slot].as_mut())
                .filter(|c| can_publish(c, s.p))
            else {
                continue;
            };
            loop {
                let due = s.due(go, every, plan.publishers);
                if due > now || due >= end {
                    break;
                }
                let stamp = Stamp {
                    channel: c.channel as u32,
                    publisher: s.p as u16,
                    seq: s.n as u32,
                    intended: ns(due.saturating_duration_since(plan.start)),
                    actual: ns(now.saturating_duration_since(plan.start)),
                };
                self.msg.clear();
                self.msg
                    .extend_from_slice(b"{\"event\":\"client-bench\",\"channel\":\"");
                self.msg
                    .extend_from_slice(plan.channel_name(c.channel).as_bytes());
                self.msg.extend_from_slice(b"\",\"data\":\"");
                event::encode(&stamp, &plan.template, &mut self.msg);
                self.msg.extend_from_slice(b"\"}");
                let (ws, msg) = (&mut c.ws, &self.msg);
                io.send_with(c.id, |out| {
                    let _ = ws.write_message(MessageKind::Text, msg, out);
                });
                s.n += 1;
                c.own += 1;
                plan.accepted[c.channel].fetch_add(1, Ordering::Relaxed);
                self.sent += 1;
                if due >= from {
                    self.sent_window += 1;
                }
            }
        }
        if now >= end {
            // Every event this thread will send is counted in `accepted`
            // before the others can read it (Release, and Acquire there).
            self.publishers_done = true;
            plan.publishers_done
                .fetch_add(self.publishers, Ordering::Release);
        }
    }

    /// When this thread's next client event is due, if one is.
    fn next_due(&self) -> Option<Instant> {
        let plan = &*self.plan;
        let (Some(&go), Some(end), Mode::Rate(rate)) = (plan.go.get(), plan.end(), plan.mode)
        else {
            return None;
        };
        if self.publishers_done {
            return None;
        }
        let every = plan.publishers as f64 / rate;
        let next = self
            .schedules
            .iter()
            .filter(|s| {
                s.slot
                    .and_then(|slot| self.clients[slot].as_ref())
                    .is_some_and(|c| can_publish(c, s.p))
            })
            .map(|s| s.due(go, every, plan.publishers))
            .min();
        Some(next.map_or(end, |n| n.min(end)))
    }

    fn expire(&mut self, io: &mut Io) {
        self.expired = true;
        for c in self.clients.iter().flatten() {
            if !c.subscribed() {
                self.stats.errors.connect += 1;
                self.stats
                    .sample("the client did not subscribe in time".into());
            } else if c.closing {
                self.stats.errors.io += 1;
                self.stats.sample(
                    "the server did not close the connection after the Close handshake".into(),
                );
            } else if self.expected.is_none() {
                self.stats.errors.io += 1;
                self.stats
                    .sample("the publishers did not finish in time".into());
            }
            // Else events are missing: counted at the end.
            io.close(c.id);
        }
    }
}

impl Handler for Worker {
    fn connected(&mut self, io: &mut Io, id: SockId, res: std::io::Result<()>) {
        let Some(c) = self.clients[id.index()].as_mut() else {
            return;
        };
        let target = self.plan.ws_target(c.i);
        if let Err(e) = res {
            self.stats.errors.connect += 1;
            self.stats
                .sample(format!("connect to {} failed: {e}", target.addr));
            io.close(id);
            return;
        }
        let hs = ClientHandshake::new(&target.host, &target.path, nonce(c.seed));
        io.send(id, hs.request());
        c.phase = Phase::Upgrading(hs, Vec::new());
    }

    fn data(&mut self, io: &mut Io, id: SockId, mut buf: InputBuf) {
        let now = io.now();
        match self.clients.get(id.index()).and_then(|c| c.as_ref()) {
            Some(c) if c.upgraded() => self.frames(io, id, buf.as_mut_slice(), now),
            Some(_) => self.handshake_data(io, id, buf.as_mut_slice(), now),
            None => {}
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<std::io::Error>) {
        let Some(c) = self.clients[id.index()].as_mut() else {
            return;
        };
        match err {
            _ if !c.upgraded() => {
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
        if let Some(c) = self.clients[id.index()].as_ref() {
            if !c.subscribed() {
                self.stats.errors.connect += 1;
                self.stats
                    .sample("connect, upgrade and subscribe: timed out".into());
                io.close(id);
            }
        }
    }

    fn gone(&mut self, _io: &mut Io, id: SockId, why: Gone) {
        let Some(c) = self.clients[id.index()].take() else {
            return;
        };
        self.open -= 1;
        if !c.subscribed() {
            self.failed(c.i, format!("client {} did not subscribe", c.i));
            return;
        }
        if let (Gone::WriteError | Gone::WriteTimeout, false) =
            (&why, c.closing && c.ws.is_closed())
        {
            self.stats.errors.io += 1;
            self.stats.sample(format!("write failed: {why:?}"));
        }
        self.received.push((c.i, Some(c.received())));
    }

    fn turn(&mut self, io: &mut Io) {
        let now = Instant::now();
        let plan = self.plan.clone();
        if plan.go.get().is_none()
            && plan.subscribed.load(Ordering::Acquire) + plan.failed.load(Ordering::Acquire)
                >= plan.clients
        {
            // The first thread to see every client subscribed or failed
            // fixes the start, --settle later, for the publishers.
            plan.go.get_or_init(|| now + plan.settle);
        }
        if let Some(go) = plan.go.get() {
            while now >= *go + Duration::from_secs(self.second) {
                let _ = self.progress.send(self.stats.snapshot(self.second));
                self.second += 1;
            }
        }
        if !self.expired && now >= plan.hard_stop() {
            self.expire(io);
            return;
        }
        if plan.client_events {
            self.publish_due(io, now);
        }
        self.learn_expected(io);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let Some(go) = self.plan.go.get() else {
            // Waiting for the other threads' clients.
            return Some(now + Duration::from_millis(1));
        };
        let mut t = (*go + Duration::from_secs(self.second)).min(self.plan.hard_stop());
        if self.expected.is_none() {
            // Until every publisher is done.
            t = t.min(now + Duration::from_millis(5));
        }
        if let Some(due) = self.next_due() {
            t = t.min(due);
        }
        Some(t)
    }

    fn done(&self) -> bool {
        self.open == 0
    }
}
