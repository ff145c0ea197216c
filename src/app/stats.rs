//! What a server counts, for [`super::ServerHandle::stats`], `/metrics`
//! and the health checks (`/livez`, `/readyz`).
//!
//! Each worker owns one [`WorkerStats`] in [`super::Shared`], on cache
//! lines of its own. Two kinds of count, so that the per-message path pays
//! nothing new:
//! * hot counts (messages, bytes, writes) are plain integers in the
//!   worker's [`Counts`] and the loop's `IoCounts`, published with one
//!   relaxed store each per loop turn ([`WorkerStats::publish`]);
//! * cold counts (refused handshakes, closes, backpressure, drops,
//!   compression) are counted where they happen, straight into the shared
//!   atomics: only their worker writes them, so a load and a store, no
//!   locked read-modify-write.
//!
//! A scrape sums the workers' atomics ([`render`]): it takes no lock and
//! stops no loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::ctx::Counts;
use super::{ServerHandle, Shared};
use crate::metrics::{Exposition, MetricType, ProcessStats};
use crate::runtime::io::IoCounts;

/// The refusal statuses counted by name; others count as `other`.
const STATUSES: [u16; 12] = [400, 401, 403, 404, 405, 413, 426, 429, 431, 500, 501, 503];
const STATUS_NAMES: [&str; 13] = [
    "400", "401", "403", "404", "405", "413", "426", "429", "431", "500", "501", "503", "other",
];

/// Why a WebSocket ended, as `ringws_closes_total{reason}` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseClass {
    /// 1000.
    Normal,
    /// 1001 (a peer going away, or our shutdown).
    GoingAway,
    /// 1002, 1003, 1007: the peer broke the protocol.
    ProtocolError,
    /// 1009: a frame or message past the limits.
    TooBig,
    /// 1008: a policy (a send queue past its limit under `Close`).
    Policy,
    /// 1006: the TCP connection ended without a Close.
    Abnormal,
    /// Our 1001 after the idle timeout.
    IdleTimeout,
    /// 1011: a handler panicked, or an internal error.
    Internal,
    /// Any other code (1005 included: a Close without a code).
    Other,
}

const CLOSE_NAMES: [&str; 9] = [
    "normal",
    "going_away",
    "protocol_error",
    "too_big",
    "policy",
    "abnormal",
    "idle_timeout",
    "internal_error",
    "other",
];

impl CloseClass {
    /// The class of a connection that ended with `code`; `idle`: we closed
    /// it for silence.
    pub(crate) fn of(code: u16, idle: bool) -> CloseClass {
        if idle {
            return CloseClass::IdleTimeout;
        }
        match code {
            1000 => CloseClass::Normal,
            1001 => CloseClass::GoingAway,
            1002 | 1003 | 1007 => CloseClass::ProtocolError,
            1009 => CloseClass::TooBig,
            1008 => CloseClass::Policy,
            1006 => CloseClass::Abnormal,
            1011 => CloseClass::Internal,
            _ => CloseClass::Other,
        }
    }
}

/// One worker's counts where other threads read them.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct WorkerStats {
    // Hot: published once per turn from the worker's own counts.
    accepted: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    writes: AtomicU64,
    turns: AtomicU64,
    /// The loop's clock (10 ms ticks since `epoch`) at its last turn.
    last_turn: AtomicU64,
    /// The instant tick 0 stands for, set at the first turn.
    epoch: OnceLock<Instant>,
    /// When the worker was made: before its first turn (which ends after
    /// its first wait, up to a second), it counts as having turned then.
    created: OnceLock<Instant>,
    // Cold: counted where they happen, by this worker only.
    rejected: [AtomicU64; 13],
    closes: [AtomicU64; 9],
    upgrades: AtomicU64,
    backpressure: AtomicU64,
    dropped_sends: AtomicU64,
    deflate_in: AtomicU64,
    deflate_out: AtomicU64,
    /// TLS handshakes completed (1.3, 1.2) and TLS connections failed,
    /// published with the hot counts: the loop counts them.
    #[cfg(feature = "tls")]
    tls_handshakes: [AtomicU64; 2],
    #[cfg(feature = "tls")]
    tls_failed: AtomicU64,
}

/// `a += n` for a counter only one thread writes: no locked instruction.
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl WorkerStats {
    /// Publishes the worker's hot counts, at the end of a loop turn whose
    /// clock read `tick` (ticks since `epoch`).
    #[inline]
    pub(crate) fn publish(&self, c: &Counts, io: &IoCounts, tick: u32, epoch: Instant) {
        self.epoch.get_or_init(|| epoch);
        let r = Ordering::Relaxed;
        self.accepted.store(c.accepted, r);
        self.messages_in.store(c.messages, r);
        self.messages_out.store(c.frames, r);
        self.bytes_in.store(io.bytes_in, r);
        self.bytes_out.store(io.bytes, r);
        self.writes.store(io.writes, r);
        self.turns.store(c.turns, r);
        #[cfg(feature = "tls")]
        {
            self.tls_handshakes[0].store(io.tls_handshakes[0], r);
            self.tls_handshakes[1].store(io.tls_handshakes[1], r);
            self.tls_failed.store(io.tls_failed, r);
        }
        self.last_turn.store(u64::from(tick), r);
    }

    /// A handshake (or request) refused with `status`.
    pub(crate) fn rejected(&self, status: u16) {
        let i = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        bump(&self.rejected[i], 1);
    }

    /// A WebSocket opened.
    pub(crate) fn upgraded(&self) {
        bump(&self.upgrades, 1);
    }

    /// A WebSocket ended (its `close` callback ran).
    pub(crate) fn closed(&self, class: CloseClass) {
        bump(&self.closes[class as usize], 1);
    }

    /// A send found its queue past the limit, or left it past it.
    pub(crate) fn backpressure(&self) {
        bump(&self.backpressure, 1);
    }

    /// A send (or a publish's delivery) was dropped.
    pub(crate) fn dropped(&self) {
        bump(&self.dropped_sends, 1);
    }

    /// A message of `input` bytes compressed to `output`.
    pub(crate) fn deflated(&self, input: usize, output: usize) {
        bump(&self.deflate_in, input as u64);
        bump(&self.deflate_out, output as u64);
    }

    /// Adds this worker's counts to `t` ([`super::ServerHandle::stats`]).
    pub(crate) fn add_to(&self, t: &mut super::ServerStats) {
        t.accepted += get(&self.accepted);
        t.messages_received += get(&self.messages_in);
        t.messages_sent += get(&self.messages_out);
        t.writes += get(&self.writes);
        t.bytes_written += get(&self.bytes_out);
        t.bytes_read += get(&self.bytes_in);
    }

    /// The worker is made, about to run its loop.
    pub(crate) fn created(&self, now: Instant) {
        let _ = self.created.set(now);
    }

    /// How long ago the loop last turned (`None` before the worker is
    /// made).
    fn since_turn(&self, now: Instant) -> Option<Duration> {
        let at = match self.epoch.get() {
            Some(&epoch) => epoch + Duration::from_millis(get(&self.last_turn) * 10),
            None => *self.created.get()?,
        };
        Some(now.saturating_duration_since(at))
    }
}

/// A health check's answer: each check, passed or not, with a word on why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Every check passed.
    pub ok: bool,
    /// Each check: its name, whether it passed, and a detail.
    pub checks: Vec<(String, bool, String)>,
}

impl Health {
    fn of(checks: Vec<(String, bool, String)>) -> Health {
        Health {
            ok: checks.iter().all(|c| c.1),
            checks,
        }
    }

    /// The HTTP status to answer with: 200 or 503.
    pub fn status(&self) -> u16 {
        if self.ok {
            200
        } else {
            503
        }
    }

    /// The body: `ok` (or the failed checks), or with `verbose` every check
    /// on a line of its own, as Kubernetes' own endpoints print them.
    pub fn body(&self, name: &str, verbose: bool) -> String {
        let mut s = String::new();
        for (check, ok, detail) in &self.checks {
            if verbose || !ok {
                let mark = if *ok { '+' } else { '-' };
                s.push_str(&format!("[{mark}]{check} {detail}\n"));
            }
        }
        if self.ok {
            if verbose {
                s.push_str(&format!("{name} check passed\n"));
            } else {
                s.push_str("ok\n");
            }
        } else {
            s.push_str(&format!("{name} check failed\n"));
        }
        s
    }
}

/// `/livez`: every worker's loop has turned within `Config::stall_timeout`.
pub(crate) fn livez(shared: &Shared) -> Health {
    let now = Instant::now();
    let limit = shared.cfg.stall_timeout;
    let checks = shared
        .stats
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let name = format!("worker-{i}");
            match w.since_turn(now) {
                Some(d) if d <= limit => (name, true, format!("turned {}ms ago", d.as_millis())),
                Some(d) => (
                    name,
                    false,
                    format!("stuck: no turn for {}ms", d.as_millis()),
                ),
                None => (name, false, "not started".to_owned()),
            }
        })
        .collect();
    Health::of(checks)
}

/// The TLS families, when the server has TLS.
#[cfg(feature = "tls")]
fn render_tls(e: &mut Exposition, shared: &Shared) {
    let Some(t) = shared.tls() else { return };
    let w = &shared.stats;
    e.family(
        "ringws_tls_handshakes_total",
        "TLS handshakes completed, by protocol version.",
        MetricType::Counter,
    );
    for (i, v) in ["1.3", "1.2"].iter().enumerate() {
        let n: u64 = w.iter().map(|s| get(&s.tls_handshakes[i])).sum();
        e.sample("ringws_tls_handshakes_total", &[("version", v)], n);
    }
    e.family(
        "ringws_tls_failures_total",
        "TLS connections ended by a TLS error: handshakes refused (no common version, cipher or ALPN protocol; not TLS at all) and bad records after.",
        MetricType::Counter,
    );
    let n: u64 = w.iter().map(|s| get(&s.tls_failed)).sum();
    e.sample("ringws_tls_failures_total", &[], n);
    e.family(
        "ringws_tls_reloads_total",
        "Reloads of the TLS certificates (SIGHUP, ServerHandle::reload_tls), by outcome; a failed one keeps the last good configuration.",
        MetricType::Counter,
    );
    e.sample(
        "ringws_tls_reloads_total",
        &[("outcome", "ok")],
        get(&t.reloads_ok),
    );
    e.sample(
        "ringws_tls_reloads_total",
        &[("outcome", "failed")],
        get(&t.reloads_failed),
    );
    if let Some(at) = t.not_after() {
        e.family(
            "ringws_tls_certificate_expiry_seconds",
            "When the first of the certificates in use expires (notAfter), in seconds since the Unix epoch.",
            MetricType::Gauge,
        );
        e.sample("ringws_tls_certificate_expiry_seconds", &[], at as f64);
    }
}

/// `/readyz`: listening and not draining (and with TLS, a certificate
/// loaded).
pub(crate) fn readyz(shared: &Shared) -> Health {
    let listening = shared.addr.get().is_some() && !shared.stopped();
    let draining = shared.draining();
    #[allow(unused_mut)]
    let mut extra = Vec::new();
    #[cfg(feature = "tls")]
    if shared.cfg.tls.is_some() {
        // The server does not start without one, and a failed reload keeps
        // the last: loaded whenever the listener is up.
        let loaded = shared.tls().is_some();
        extra.push((
            "tls".to_owned(),
            loaded,
            match shared.tls().and_then(|t| t.not_after()) {
                Some(at) => format!("certificate loaded, expires at {at} (Unix seconds)"),
                None if loaded => "certificate loaded".to_owned(),
                None => "no certificate loaded".to_owned(),
            },
        ));
    }
    if let Some(b) = &shared.broker {
        let (ready, status) = b.ready();
        extra.push(("broker".to_owned(), ready, status));
    }
    Health::of(
        vec![
            (
                "listening".to_owned(),
                listening,
                match shared.addr.get() {
                    Some(a) if listening => format!("on {a}"),
                    _ => "not listening".to_owned(),
                },
            ),
            (
                "not-draining".to_owned(),
                !draining,
                if draining {
                    "draining: shutting down".to_owned()
                } else {
                    "ok".to_owned()
                },
            ),
        ]
        .into_iter()
        .chain(extra)
        .collect(),
    )
}

/// The broker's families, when there is a broker.
fn render_broker(e: &mut Exposition, shared: &Shared) {
    let Some(b) = &shared.broker else { return };
    let c = &b.counts;
    let counter = |e: &mut Exposition, name: &str, help: &str, v: &AtomicU64| {
        e.family(name, help, MetricType::Counter);
        e.sample(name, &[], get(v));
    };
    counter(
        e,
        "ringws_broker_published_total",
        "Messages published to the broker for the other nodes.",
        &c.published,
    );
    counter(
        e,
        "ringws_broker_received_total",
        "Messages from other nodes handed to this node's workers.",
        &c.received,
    );
    e.family(
        "ringws_broker_dropped_total",
        "Messages the broker dropped, by reason: queue (the queue to the broker thread was full), disconnected (Redis was not connected), backpressure (Redis was not reading), refused (Redis answered an error), mailbox (a worker's mailbox was full), malformed (a payload that is no frame from a node).",
        MetricType::Counter,
    );
    for (reason, v) in [
        ("queue", &c.dropped_queue),
        ("disconnected", &c.dropped_disconnected),
        ("backpressure", &c.dropped_backpressure),
        ("refused", &c.dropped_refused),
        ("mailbox", &c.dropped_mailbox),
        ("malformed", &c.dropped_malformed),
    ] {
        e.sample("ringws_broker_dropped_total", &[("reason", reason)], get(v));
    }
    counter(
        e,
        "ringws_broker_reconnects_total",
        "Connections to the broker made again after one was lost.",
        &c.reconnects,
    );
    e.family(
        "ringws_broker_subscribed_topics",
        "Topics this node subscribes to in the broker (those with local subscribers, and those lingering after their last one left).",
        MetricType::Gauge,
    );
    e.sample("ringws_broker_subscribed_topics", &[], get(&c.topics));
    e.family(
        "ringws_broker_refused_topics",
        "Topics Redis refused to subscribe (an ACL on channels): their subscribers here get nothing from other nodes. Tried again at each reconnect.",
        MetricType::Gauge,
    );
    e.sample("ringws_broker_refused_topics", &[], get(&c.refused_topics));
    e.family(
        "ringws_broker_instances_up",
        "Broker instances whose publishing and subscribing connections are both up.",
        MetricType::Gauge,
    );
    e.sample("ringws_broker_instances_up", &[], get(&c.instances_up));
    e.family(
        "ringws_broker_instances",
        "Broker instances configured.",
        MetricType::Gauge,
    );
    e.sample("ringws_broker_instances", &[], get(&c.instances));
    e.family(
        "ringws_broker_probe_age_seconds",
        "Seconds since a probe of this node's subscriptions last came back (-1: none yet; a probe is sent after 30 s without traffic).",
        MetricType::Gauge,
    );
    let ok = get(&c.probe_ok_ns);
    let age = if ok == 0 {
        -1.0
    } else {
        crate::broker::unix_ns().saturating_sub(ok) as f64 / 1e9
    };
    e.sample("ringws_broker_probe_age_seconds", &[], age);
}

/// The Prometheus text exposition (format 0.0.4) of `server`: every
/// worker's counts summed, per-worker loop figures, and the process's.
pub(crate) fn render(server: &ServerHandle) -> String {
    let shared = &*server.shared;
    let w = &shared.stats;
    let sum = |f: fn(&WorkerStats) -> &AtomicU64| w.iter().map(|s| get(f(s))).sum::<u64>();
    let mut e = Exposition::with_capacity(8 << 10);
    let counter = |e: &mut Exposition, name: &str, help: &str, v: u64| {
        e.family(name, help, MetricType::Counter);
        e.sample(name, &[], v);
    };
    e.family(
        "ringws_build_info",
        "The ringws version and the kernel interface its loops run on.",
        MetricType::Gauge,
    );
    e.sample(
        "ringws_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("backend", server.backend()),
        ],
        1u64,
    );
    e.family(
        "ringws_connections",
        "Connections open now (WebSockets and requests in progress).",
        MetricType::Gauge,
    );
    e.sample("ringws_connections", &[], server.connections() as u64);
    e.family(
        "ringws_handshakes_rejected_total",
        "Requests refused, by HTTP status (handshake errors, no route, the connection limit, rejects by the application).",
        MetricType::Counter,
    );
    for (i, name) in STATUS_NAMES.iter().enumerate() {
        let v: u64 = w.iter().map(|s| get(&s.rejected[i])).sum();
        e.sample("ringws_handshakes_rejected_total", &[("status", name)], v);
    }
    e.family(
        "ringws_closes_total",
        "WebSockets ended, by reason: the close code's class, abnormal (no Close), or our idle timeout.",
        MetricType::Counter,
    );
    for (i, name) in CLOSE_NAMES.iter().enumerate() {
        let v: u64 = w.iter().map(|s| get(&s.closes[i])).sum();
        e.sample("ringws_closes_total", &[("reason", name)], v);
    }
    // The plain counters, each the sum over the workers.
    type Field = fn(&WorkerStats) -> &AtomicU64;
    let sums: [(&str, &str, Field); 11] = [
        ("ringws_messages_received_total", "WebSocket messages received (whole, after reassembly).", |s| &s.messages_in),
        ("ringws_messages_sent_total", "WebSocket messages queued to connections: every send, and each subscriber a publish reached.", |s| &s.messages_out),
        ("ringws_read_bytes_total", "Bytes read from connections.", |s| &s.bytes_in),
        ("ringws_written_bytes_total", "Bytes handed to the kernel to send.", |s| &s.bytes_out),
        ("ringws_writes_total", "Writes handed to the kernel (io_uring sends or sendmsg calls): everything one connection queues in one loop turn goes in one.", |s| &s.writes),
        ("ringws_backpressure_total", "Sends that found or left a connection's queue past its max_backpressure.", |s| &s.backpressure),
        ("ringws_dropped_sends_total", "Sends and publish deliveries dropped because the connection's queue was past its max_backpressure.", |s| &s.dropped_sends),
        ("ringws_deflate_input_bytes_total", "Bytes of messages compressed (permessage-deflate), before compression.", |s| &s.deflate_in),
        ("ringws_deflate_output_bytes_total", "Bytes of messages compressed (permessage-deflate), after compression.", |s| &s.deflate_out),
        ("ringws_accepted_total", "TCP connections accepted.", |s| &s.accepted),
        ("ringws_upgrades_total", "WebSocket handshakes completed (101 sent).", |s| &s.upgrades),
    ];
    for (name, help, field) in sums {
        counter(&mut e, name, help, sum(field));
    }
    counter(
        &mut e,
        "ringws_mailbox_dropped_total",
        "Frames from other threads (SocketRef sends, publishes) dropped because a worker's mailbox held max_mailbox_bytes.",
        shared.mailbox_drops.load(Ordering::Relaxed),
    );
    #[cfg(feature = "tls")]
    render_tls(&mut e, shared);
    render_broker(&mut e, shared);
    e.family(
        "ringws_loop_turns_total",
        "Turns of each worker's event loop.",
        MetricType::Counter,
    );
    let names: Vec<String> = (0..w.len()).map(|i| i.to_string()).collect();
    for (s, n) in w.iter().zip(&names) {
        e.sample("ringws_loop_turns_total", &[("worker", n)], get(&s.turns));
    }
    e.family(
        "ringws_loop_last_turn_age_seconds",
        "Time since each worker's loop last turned (an idle loop turns once a second; /livez fails past stall_timeout).",
        MetricType::Gauge,
    );
    let now = Instant::now();
    for (s, n) in w.iter().zip(&names) {
        let age = s.since_turn(now).map_or(f64::INFINITY, |d| d.as_secs_f64());
        e.sample("ringws_loop_last_turn_age_seconds", &[("worker", n)], age);
    }
    e.family(
        "ringws_ready",
        "1 while /readyz passes (listening, not draining), else 0.",
        MetricType::Gauge,
    );
    e.sample("ringws_ready", &[], u64::from(readyz(shared).ok));
    match ProcessStats::read() {
        Ok(p) => p.write_process(&mut e),
        Err(err) => tracing::warn!("metrics: cannot read the process's figures: {err}"),
    }
    if let Some(f) = &shared.metrics {
        f(&mut e);
    }
    e.into_string()
}
