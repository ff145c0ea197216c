//! Webhooks: the gateway tells an app's servers when channels become
//! occupied or vacated, presence members come and go, and clients send
//! events, as Pusher does (<https://pusher.com/docs/channels/server_api/webhooks>).
//!
//! ```text
//!  ws.rs (worker loops) ── Webhooks::send ──> one bounded queue per endpoint
//!                          (never blocks;      │ (full: the event is dropped
//!                           no I/O)            │  and counted)
//!                                              v
//!        thread "ringws-webhooks": debounce, batch, sign, POST (ureq),
//!        retry with backoff, then give up and count
//! ```
//!
//! A request is a `POST` of `{"time_ms": …, "events": [ … ]}` with
//! `Content-Type: application/json`, `X-Pusher-Key: <app key>` and
//! `X-Pusher-Signature: hex(hmac_sha256(secret, body))`, which the server
//! SDKs check (`pusher.webhook(req).isValid()` in Node). Any 2xx answer is
//! a delivery; anything else, a timeout or a connection error is retried.
//!
//! # What bounds the cost of a slow or dead endpoint
//! - Memory: each endpoint holds at most [`WebhookConfig::max_queue`]
//!   events (queued, batched, held for debouncing or being retried);
//!   past that, new ones are dropped and counted.
//! - Time: only this module's thread does I/O; each attempt ends within
//!   [`WebhookConfig::timeout`]; a batch is tried at most
//!   `1 + max_retries` times, then dropped and counted, so the endpoint's
//!   next batches get their turn. Endpoints take turns, one request each,
//!   so a failing endpoint delays the others by at most one timeout per
//!   round; it cannot stop them.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};

mod debounce;
mod sender;

/// The kinds of webhook events, named as in Pusher's payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `channel_occupied`: a channel got its first subscriber.
    ChannelOccupied,
    /// `channel_vacated`: a channel lost its last subscriber.
    ChannelVacated,
    /// `member_added`: a user joined a presence channel (its first
    /// connection there).
    MemberAdded,
    /// `member_removed`: a user left a presence channel (its last
    /// connection there).
    MemberRemoved,
    /// `client_event`: a client sent a `client-*` event.
    ClientEvent,
}

impl Kind {
    /// Every kind: an endpoint's default.
    pub const ALL: [Kind; 5] = [
        Kind::ChannelOccupied,
        Kind::ChannelVacated,
        Kind::MemberAdded,
        Kind::MemberRemoved,
        Kind::ClientEvent,
    ];

    /// The event's `name` in a webhook.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ChannelOccupied => "channel_occupied",
            Kind::ChannelVacated => "channel_vacated",
            Kind::MemberAdded => "member_added",
            Kind::MemberRemoved => "member_removed",
            Kind::ClientEvent => "client_event",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One webhook endpoint of an app. In a `--config` file, an app's
/// `[[app.webhook]]` table: `url` and, optionally, the other fields
/// (the field names in kebab case, as every key of the file; durations in
/// milliseconds: `batch-delay-ms`, `timeout-ms`, `backoff-ms = [min, max]`,
/// `debounce-ms`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookConfig {
    /// Where the events are POSTed: an `http://` or `https://` URL.
    pub url: String,
    /// The kinds of events this endpoint receives. Default: all of them.
    #[serde(default = "defaults::kinds")]
    pub kinds: Vec<Kind>,
    /// Most events in one request. Default 20, Pusher's batch size.
    #[serde(default = "defaults::batch_max")]
    pub batch_max: usize,
    /// How long the first event of a batch waits for others to join it:
    /// fewer requests when events come in bursts, this much latency when
    /// they do not. Default 250 ms, Pusher's batch window.
    #[serde(
        default = "defaults::batch_delay",
        rename = "batch-delay-ms",
        deserialize_with = "millis"
    )]
    pub batch_delay: Duration,
    /// Longest one attempt may take, from the DNS lookup to the end of the
    /// answer. Default 5 s (Pusher asks endpoints to answer within 4 s):
    /// a stalled endpoint costs the webhook thread at most this per try.
    #[serde(
        default = "defaults::timeout",
        rename = "timeout-ms",
        deserialize_with = "millis"
    )]
    pub timeout: Duration,
    /// Retries of a failed batch before it is dropped (and counted), so a
    /// batch the endpoint keeps refusing cannot hold back the next ones.
    /// Default 5. (Pusher retries for 5 minutes; with the default backoff
    /// that is about 35 retries, at the price of a queue that fills and
    /// drops new events meanwhile.)
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// The wait before a retry: the first is `backoff.0`, each next one
    /// doubles, up to `backoff.1`; each is then drawn between half of
    /// that and all of it (jitter: endpoints coming back are not hit by
    /// every sender at once). Default 100 ms to 10 s.
    #[serde(
        default = "defaults::backoff",
        rename = "backoff-ms",
        deserialize_with = "millis_pair"
    )]
    pub backoff: (Duration, Duration),
    /// Most events held for this endpoint at once; past it new events are
    /// dropped and counted. Default 10 000: bounds the memory a slow or
    /// dead endpoint can take.
    #[serde(default = "defaults::max_queue")]
    pub max_queue: usize,
    /// How long `member_removed` and `channel_vacated` are held back: when
    /// the same member (channel) comes back within it, as on a page
    /// reload, neither event is sent. Pusher documents this for presence
    /// channels ("if a user disconnects and then reconnects within 3
    /// seconds, neither event will be delivered via webhook"); channel
    /// existence flaps on a reload the same way, so it is debounced alike.
    /// Default 3 s; 0 sends every event as it comes.
    #[serde(
        default = "defaults::debounce",
        rename = "debounce-ms",
        deserialize_with = "millis"
    )]
    pub debounce: Duration,
}

impl WebhookConfig {
    /// An endpoint at `url` for every kind of event, with the defaults.
    pub fn new(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.to_owned(),
            kinds: defaults::kinds(),
            batch_max: defaults::batch_max(),
            batch_delay: defaults::batch_delay(),
            timeout: defaults::timeout(),
            max_retries: defaults::max_retries(),
            backoff: defaults::backoff(),
            max_queue: defaults::max_queue(),
            debounce: defaults::debounce(),
        }
    }

    /// Checks what the sender relies on: a URL it can POST to, and limits
    /// that let events through.
    pub fn validate(&self) -> Result<(), String> {
        let uri = parse_url(&self.url)?;
        let url = redact(&uri);
        let bad = |what: &str| Err(format!("webhook {url}: {what}"));
        if self.kinds.is_empty() {
            return bad("kinds is empty: it would receive nothing");
        }
        if self.batch_max == 0 {
            return bad("batch_max must be at least 1");
        }
        if self.max_queue == 0 {
            return bad("max_queue must be at least 1");
        }
        if self.timeout.is_zero() {
            return bad("the timeout must be above 0");
        }
        if self.backoff.0.is_zero() || self.backoff.0 > self.backoff.1 {
            return bad("backoff must be (min, max) with 0 < min <= max");
        }
        Ok(())
    }
}

mod defaults {
    use std::time::Duration;

    use super::Kind;

    pub(super) fn kinds() -> Vec<Kind> {
        Kind::ALL.to_vec()
    }
    pub(super) fn batch_max() -> usize {
        20
    }
    pub(super) fn batch_delay() -> Duration {
        Duration::from_millis(250)
    }
    pub(super) fn timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn max_retries() -> u32 {
        5
    }
    pub(super) fn backoff() -> (Duration, Duration) {
        (Duration::from_millis(100), Duration::from_secs(10))
    }
    pub(super) fn max_queue() -> usize {
        10_000
    }
    pub(super) fn debounce() -> Duration {
        Duration::from_secs(3)
    }
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

fn millis_pair<'de, D: Deserializer<'de>>(d: D) -> Result<(Duration, Duration), D::Error> {
    let (a, b) = <(u64, u64)>::deserialize(d)?;
    Ok((Duration::from_millis(a), Duration::from_millis(b)))
}

/// What happened, for one webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The channel got its first subscriber.
    ChannelOccupied {
        /// The channel's name.
        channel: String,
    },
    /// The channel lost its last subscriber.
    ChannelVacated {
        /// The channel's name.
        channel: String,
    },
    /// A user's first connection joined the presence channel.
    MemberAdded {
        /// The channel's name.
        channel: String,
        /// The member's `user_id`.
        user_id: String,
    },
    /// A user's last connection left the presence channel.
    MemberRemoved {
        /// The channel's name.
        channel: String,
        /// The member's `user_id`.
        user_id: String,
    },
    /// A client sent a `client-*` event.
    ClientEvent {
        /// The channel it was sent on.
        channel: String,
        /// The event's name (`client-…`).
        event: String,
        /// The event's `data` as the client sent it: raw JSON text
        /// (`ClientMessage::Client`'s `data`). The webhook carries it as a
        /// string, as Pusher's does: a JSON string is sent as that string,
        /// anything else (what pusher-js sends for an object) as its JSON
        /// text.
        data: String,
        /// The sender's socket id.
        socket_id: String,
        /// The sender's user id on a presence channel; `None` elsewhere
        /// (Pusher sends it "only for presence channels").
        user_id: Option<String>,
    },
}

impl Event {
    /// The event's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Event::ChannelOccupied { .. } => Kind::ChannelOccupied,
            Event::ChannelVacated { .. } => Kind::ChannelVacated,
            Event::MemberAdded { .. } => Kind::MemberAdded,
            Event::MemberRemoved { .. } => Kind::MemberRemoved,
            Event::ClientEvent { .. } => Kind::ClientEvent,
        }
    }
}

/// One event as it is written in a webhook.
#[derive(Serialize)]
struct Wire<'a> {
    name: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

impl<'a> Wire<'a> {
    fn of(e: &'a Event) -> Wire<'a> {
        let mut w = Wire {
            name: e.kind().name(),
            channel: "",
            event: None,
            data: None,
            socket_id: None,
            user_id: None,
        };
        match e {
            Event::ChannelOccupied { channel } | Event::ChannelVacated { channel } => {
                w.channel = channel;
            }
            Event::MemberAdded { channel, user_id } | Event::MemberRemoved { channel, user_id } => {
                w.channel = channel;
                w.user_id = Some(user_id);
            }
            Event::ClientEvent {
                channel,
                event,
                data,
                socket_id,
                user_id,
            } => {
                w.channel = channel;
                w.event = Some(event);
                // `"text"` is sent as `text`; `{"a":1}` as `"{\"a\":1}"`.
                w.data =
                    Some(serde_json::from_str::<String>(data).unwrap_or_else(|_| data.clone()));
                w.socket_id = Some(socket_id);
                w.user_id = user_id.as_deref();
            }
        }
        w
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    time_ms: u64,
    events: Vec<Wire<'a>>,
}

/// A webhook's body: `{"time_ms":…,"events":[…]}`, the bytes that are
/// signed and sent.
pub fn encode<'a>(time_ms: u64, events: impl IntoIterator<Item = &'a Event>) -> Vec<u8> {
    let p = Payload {
        time_ms,
        events: events.into_iter().map(Wire::of).collect(),
    };
    serde_json::to_vec(&p).expect("strings and numbers always serialise")
}

/// One app's endpoints, for [`Webhooks::start`].
#[derive(Debug, Clone)]
pub struct AppHooks {
    /// The app id, as [`Webhooks::send`] names it.
    pub id: String,
    /// The app key (`X-Pusher-Key`).
    pub key: String,
    /// The app secret that signs (`X-Pusher-Signature`).
    pub secret: String,
    /// Its endpoints; none is fine (its events are then ignored).
    pub hooks: Vec<WebhookConfig>,
}

/// What the sender did, summed over every app and endpoint since start.
/// Events count once per endpoint: one sent to two endpoints counts twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookCounts {
    /// Requests answered with a 2xx status.
    pub requests_ok: u64,
    /// Attempts that failed (connection error, timeout, non-2xx answer);
    /// every retry that fails counts once.
    pub attempts_failed: u64,
    /// Batches given up: retried `max_retries` times, or still unsent when
    /// [`Webhooks::stop`]'s deadline came.
    pub batches_failed: u64,
    /// Events delivered (in requests answered 2xx).
    pub events_sent: u64,
    /// Events in the batches given up.
    pub events_failed: u64,
    /// Events never queued: the endpoint held `max_queue` already, or the
    /// sender had stopped.
    pub events_dropped: u64,
    /// Events not sent because debounced away: a removal and the return
    /// that followed it within `debounce`, two per pair.
    pub events_debounced: u64,
    /// Events held right now (queued, batched, debounced or retried).
    pub queued: u64,
}

/// The webhook sender: one thread for the whole gateway, started once,
/// and cheap handles to it (clones share the thread).
#[derive(Clone)]
pub struct Webhooks {
    owner: Arc<Owner>,
}

/// Owned by the handles alone: when the last one goes without
/// [`Webhooks::stop`], the thread is told to flush and end by itself.
struct Owner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the handles and the thread share.
struct Shared {
    apps: HashMap<String, Route>,
    inboxes: Vec<Inbox>,
    counters: Counters,
    thread: OnceLock<Thread>,
    /// Set by stop: flush until then, then end.
    stop_at: Mutex<Option<Instant>>,
    stopping: AtomicBool,
}

/// Which of the endpoints an app's events go to.
struct Route {
    /// The union of its endpoints' kinds.
    kinds: u8,
    inboxes: Vec<usize>,
}

/// One endpoint's queue, filled by the workers, emptied by the thread.
struct Inbox {
    queue: Mutex<VecDeque<Item>>,
    /// Events of this endpoint not yet sent or given up: in `queue` plus
    /// those the thread holds. At most `max`.
    held: AtomicUsize,
    max: usize,
    batch_max: usize,
    kinds: u8,
    /// The thread waits for a first event (it has no batch open): the
    /// next push wakes it.
    wake: AtomicBool,
}

#[derive(Clone)]
struct Item {
    at: Instant,
    event: Arc<Event>,
}

#[derive(Default)]
struct Counters {
    requests_ok: AtomicU64,
    attempts_failed: AtomicU64,
    batches_failed: AtomicU64,
    events_sent: AtomicU64,
    events_failed: AtomicU64,
    events_dropped: AtomicU64,
    events_debounced: AtomicU64,
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

/// How long [`Webhooks::stop`] flushes.
const STOP_FLUSH: Duration = Duration::from_secs(2);

impl Webhooks {
    /// Starts the thread `ringws-webhooks` for `apps`' endpoints (checked
    /// with [`WebhookConfig::validate`]: an invalid one is an
    /// `InvalidInput` error). With no endpoint at all no thread starts and
    /// [`Webhooks::send`] does nothing.
    pub fn start(apps: impl IntoIterator<Item = AppHooks>) -> io::Result<Webhooks> {
        let agent = sender::agent();
        let mut routes = HashMap::new();
        let mut inboxes = Vec::new();
        let mut senders = Vec::new();
        for app in apps {
            let key: Arc<str> = app.key.into();
            let secret: Arc<str> = app.secret.into();
            let id: Arc<str> = app.id.as_str().into();
            let mut route = Route {
                kinds: 0,
                inboxes: Vec::new(),
            };
            for cfg in app.hooks {
                cfg.validate()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let kinds = cfg.kinds.iter().fold(0, |k, kind| k | kind.bit());
                route.kinds |= kinds;
                route.inboxes.push(inboxes.len());
                inboxes.push(Inbox {
                    queue: Mutex::default(),
                    held: AtomicUsize::new(0),
                    max: cfg.max_queue,
                    batch_max: cfg.batch_max,
                    kinds,
                    wake: AtomicBool::new(true),
                });
                senders.push(sender::Sender::new(
                    senders.len(),
                    id.clone(),
                    key.clone(),
                    secret.clone(),
                    cfg,
                ));
            }
            if routes.insert(app.id.clone(), route).is_some() {
                let e = format!("app id {:?} twice", app.id);
                return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
            }
        }
        let shared = Arc::new(Shared {
            apps: routes,
            inboxes,
            counters: Counters::default(),
            thread: OnceLock::new(),
            stop_at: Mutex::new(None),
            stopping: AtomicBool::new(false),
        });
        let thread = if senders.is_empty() {
            None
        } else {
            let s = shared.clone();
            let h = thread::Builder::new()
                .name("ringws-webhooks".into())
                .spawn(move || sender::run(&s, senders, &agent))?;
            let _ = shared.thread.set(h.thread().clone());
            Some(h)
        };
        Ok(Webhooks {
            owner: Arc::new(Owner {
                shared,
                thread: Mutex::new(thread),
            }),
        })
    }

    /// Whether some endpoint of `app_id` takes `kind`: check it before
    /// building an [`Event`], so that an app without webhooks pays nothing.
    pub fn wants(&self, app_id: &str, kind: Kind) -> bool {
        self.owner
            .shared
            .apps
            .get(app_id)
            .is_some_and(|r| r.kinds & kind.bit() != 0)
    }

    /// Queues `e` for `app_id`'s endpoints that take its kind. Never
    /// blocks and does no I/O (a short lock per endpoint): safe on a worker
    /// loop. An endpoint holding `max_queue` events already drops it (and
    /// counts it); an unknown app or an event no endpoint takes is ignored.
    pub fn send(&self, app_id: &str, e: Event) {
        let s = &*self.owner.shared;
        let Some(route) = s.apps.get(app_id) else {
            return;
        };
        let bit = e.kind().bit();
        if route.kinds & bit == 0 {
            return;
        }
        let item = Item {
            at: Instant::now(),
            event: Arc::new(e),
        };
        for &i in &route.inboxes {
            let inbox = &s.inboxes[i];
            if inbox.kinds & bit == 0 {
                continue;
            }
            if s.stopping.load(Ordering::Acquire) {
                add(&s.counters.events_dropped, 1);
                continue;
            }
            if inbox.held.fetch_add(1, Ordering::Relaxed) >= inbox.max {
                inbox.held.fetch_sub(1, Ordering::Relaxed);
                add(&s.counters.events_dropped, 1);
                continue;
            }
            let len = {
                let mut q = lock(&inbox.queue);
                q.push_back(item.clone());
                q.len()
            };
            // Wake the thread when it waits for a first event, or when a
            // batch is full: not on every push. The queue's lock orders
            // this with the thread's `wake = true; look at the queue`.
            let first =
                inbox.wake.load(Ordering::SeqCst) && inbox.wake.swap(false, Ordering::SeqCst);
            if first || len == inbox.batch_max {
                if let Some(t) = s.thread.get() {
                    t.unpark();
                }
            }
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> WebhookCounts {
        let s = &*self.owner.shared;
        let c = &s.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WebhookCounts {
            requests_ok: get(&c.requests_ok),
            attempts_failed: get(&c.attempts_failed),
            batches_failed: get(&c.batches_failed),
            events_sent: get(&c.events_sent),
            events_failed: get(&c.events_failed),
            events_dropped: get(&c.events_dropped),
            events_debounced: get(&c.events_debounced),
            queued: s
                .inboxes
                .iter()
                .map(|i| i.held.load(Ordering::Relaxed) as u64)
                .sum(),
        }
    }

    /// Stops: what is queued (debounced events included) is sent without
    /// waiting for batches to fill, for up to 2 s; what is left then is
    /// given up and counted; the thread ends before this returns. Events
    /// sent after this, through any clone, are dropped and counted.
    pub fn stop(self) {
        self.stop_within(STOP_FLUSH);
    }

    /// [`Webhooks::stop`] with a flush of at most `flush`.
    pub fn stop_within(self, flush: Duration) {
        self.owner.shared.stop(flush);
        let h = lock(&self.owner.thread).take();
        if let Some(h) = h {
            if h.join().is_err() {
                tracing::error!("the webhook thread panicked");
            }
        }
    }
}

impl Shared {
    fn stop(&self, flush: Duration) {
        {
            let mut at = lock(&self.stop_at);
            if at.is_none() {
                *at = Some(Instant::now() + flush);
            }
        }
        self.stopping.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // The last handle went without stop(): the thread flushes and
        // ends by itself, detached.
        self.shared.stop(STOP_FLUSH);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a push, a pop or a swap: a panic in
    // one leaves the data consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_url(url: &str) -> Result<ureq::http::Uri, String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("webhook URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(uri),
        _ => Err(format!(
            "webhook URL {:?}: must be http:// or https:// with a host",
            redact(&uri)
        )),
    }
}

/// The URL without user, password or query: what may be logged.
fn redact(uri: &ureq::http::Uri) -> String {
    let mut s = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.host().unwrap_or("")
    );
    if let Some(p) = uri.port_u16() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(uri.path());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(user: &str) -> Event {
        Event::MemberRemoved {
            channel: "presence-a".into(),
            user_id: user.into(),
        }
    }

    fn added(user: &str) -> Event {
        Event::MemberAdded {
            channel: "presence-a".into(),
            user_id: user.into(),
        }
    }

    #[test]
    fn encodes_each_kind_as_pusher_does() {
        let events = [
            Event::ChannelOccupied {
                channel: "private-a".into(),
            },
            Event::ChannelVacated {
                channel: "private-a".into(),
            },
            added("u1"),
            removed("u1"),
            Event::ClientEvent {
                channel: "private-a".into(),
                event: "client-x".into(),
                data: r#"{"data":1234}"#.into(),
                socket_id: "1.2".into(),
                user_id: None,
            },
            Event::ClientEvent {
                channel: "presence-a".into(),
                event: "client-y".into(),
                data: r#""already a string \u00e9""#.into(),
                socket_id: "1.3".into(),
                user_id: Some("u1".into()),
            },
        ];
        let body = encode(1396258618139, &events);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            concat!(
                r#"{"time_ms":1396258618139,"events":["#,
                r#"{"name":"channel_occupied","channel":"private-a"},"#,
                r#"{"name":"channel_vacated","channel":"private-a"},"#,
                r#"{"name":"member_added","channel":"presence-a","user_id":"u1"},"#,
                r#"{"name":"member_removed","channel":"presence-a","user_id":"u1"},"#,
                r#"{"name":"client_event","channel":"private-a","event":"client-x","#,
                r#""data":"{\"data\":1234}","socket_id":"1.2"},"#,
                r#"{"name":"client_event","channel":"presence-a","event":"client-y","#,
                r#""data":"already a string é","socket_id":"1.3","user_id":"u1"}]}"#,
            )
        );
        assert_eq!(encode(5, []), br#"{"time_ms":5,"events":[]}"#);
    }

    #[test]
    fn config_validation_and_toml() {
        assert!(WebhookConfig::new("https://example.com/hook")
            .validate()
            .is_ok());
        for bad in ["ftp://x/y", "/just/a/path", "not a url", "http://"] {
            assert!(WebhookConfig::new(bad).validate().is_err(), "{bad}");
        }
        let mut c = WebhookConfig::new("http://u:secret@h:8080/p?token=t");
        c.kinds.clear();
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("http://h:8080/p") && !e.contains("secret"),
            "{e}"
        );
        c.kinds = vec![Kind::ClientEvent];
        c.backoff = (Duration::from_secs(2), Duration::from_secs(1));
        assert!(c.validate().is_err());

        #[derive(Deserialize)]
        struct File {
            webhook: Vec<WebhookConfig>,
        }
        let f: File = toml::from_str(
            r#"
            [[webhook]]
            url = "https://example.com/a"
            [[webhook]]
            url = "http://127.0.0.1:9/b"
            kinds = ["member_added", "member_removed"]
            batch-max = 5
            batch-delay-ms = 10
            timeout-ms = 1500
            max-retries = 2
            backoff-ms = [50, 400]
            max-queue = 100
            debounce-ms = 0
            "#,
        )
        .unwrap();
        let d = &f.webhook[0];
        assert_eq!(d.kinds, Kind::ALL);
        assert_eq!(
            (d.batch_max, d.batch_delay),
            (20, Duration::from_millis(250))
        );
        assert_eq!(d.debounce, Duration::from_secs(3));
        let w = &f.webhook[1];
        assert_eq!(w.kinds, [Kind::MemberAdded, Kind::MemberRemoved]);
        assert_eq!(w.batch_delay, Duration::from_millis(10));
        assert_eq!(w.timeout, Duration::from_millis(1500));
        assert_eq!(
            w.backoff,
            (Duration::from_millis(50), Duration::from_millis(400))
        );
        assert_eq!((w.batch_max, w.max_retries, w.max_queue), (5, 2, 100));
        assert!(w.debounce.is_zero());
        let unknown = toml::from_str::<File>("[[webhook]]\nurl = \"http://h/\"\nretries = 1\n");
        assert!(unknown.is_err());
    }

    #[test]
    fn no_endpoint_no_thread() {
        let w = Webhooks::start([AppHooks {
            id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
            hooks: Vec::new(),
        }])
        .unwrap();
        assert!(lock(&w.owner.thread).is_none());
        assert!(!w.wants("1", Kind::ClientEvent));
        w.send("1", removed("a"));
        w.send("nope", removed("a"));
        assert_eq!(w.counts(), WebhookCounts::default());
        w.stop();
    }
}
