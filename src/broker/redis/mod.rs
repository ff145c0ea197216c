//! [`Redis`]: the broker over Redis Pub/Sub, and its thread.
//!
//! Per Redis instance the thread keeps two connections: a publishing one,
//! pipelined (every PUBLISH of a loop turn leaves in one write, replies
//! are counted, never waited for), and a subscribing one, always read, so
//! that Redis never cuts it for a full output buffer. With a Sentinel URL a
//! third, short-lived connection asks the Sentinels for the current master,
//! and both connections check with `ROLE` that they reached it. That
//! connection stays, subscribed to the Sentinel's `+switch-master`
//! channel, so that a failover moves both connections to the new master at
//! once (the old one, now a replica, would otherwise go on relaying
//! publishes by replication, and stop when it goes away).
//!
//! A lost connection is made again with exponential backoff (with jitter,
//! so nodes do not return in step) and the subscribing one subscribes every
//! topic again; until then `/readyz` fails. A subscription can also die
//! silently (a failover to a master that never heard of it): after
//! [`Redis::probe_interval`] without a message, the node publishes to its
//! own probe channel, and a probe not back within
//! [`Redis::probe_timeout`] makes it reconnect.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::envelope::{self, Malformed};
use super::interest::Interest;
use super::resolve::Resolver;
use super::url::{self, Location, RedisUrl, UrlError};
use super::{shard, unix_ns, Broker, Gap, Link, Outgoing};
use crate::proto::resp::{self, Decoder, Frame, PubSub, RespLimits};
use crate::runtime::client::{spawn_loop, Gone, Handler, InputBuf, Io, LoopOptions, SockId};

mod connection;
mod handler;
mod traffic;

/// The Redis broker ([`App::broker`](crate::App::broker)): topics shared by
/// every node given the same Redis URLs.
///
/// ```no_run
/// use ringws::app::{App, Echo};
/// use ringws::broker::Redis;
/// use ringws::Config;
///
/// let redis = Redis::new(["redis://127.0.0.1:6379"])?;
/// App::new(Config::default())
///     .broker(redis)
///     .route("/", Echo)
///     .run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Several URLs shard the topics over several instances (every node must
/// be given the same list; the order does not matter). A
/// `redis+sentinel://host:26379,host2:26379/mymaster` URL follows the
/// master through failovers.
#[derive(Debug, Clone)]
pub struct Redis {
    urls: Vec<RedisUrl>,
    linger: Duration,
    probe_interval: Duration,
    probe_timeout: Duration,
    connect_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    max_queue_bytes: usize,
    max_pending_bytes: usize,
    max_message: usize,
    prefix: String,
}

impl Redis {
    /// A broker over the instances at `urls` (`redis://[[user]:password@]host[:port]`
    /// or `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master`),
    /// with the defaults below.
    pub fn new<I>(urls: I) -> Result<Redis, UrlError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let urls = urls
            .into_iter()
            .map(|u| url::parse(u.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(UrlError::none());
        }
        Ok(Redis {
            urls,
            linger: Duration::from_secs(1),
            probe_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_queue_bytes: 16 << 20,
            max_pending_bytes: 16 << 20,
            max_message: 64 << 20,
            prefix: "ringws:".to_owned(),
        })
    }

    /// How long a topic stays subscribed in Redis after its last local
    /// subscriber left. Default 1 s: a room that empties and fills again
    /// within it costs Redis no UNSUBSCRIBE and SUBSCRIBE.
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// Silence on a subscribing connection after which the node publishes
    /// to its own probe channel to check that its subscriptions still
    /// work. Default 30 s.
    pub fn probe_interval(mut self, d: Duration) -> Self {
        self.probe_interval = d;
        self
    }

    /// How long a probe may take to come back before the subscribing
    /// connection is made again. Default 10 s.
    pub fn probe_timeout(mut self, d: Duration) -> Self {
        self.probe_timeout = d;
        self
    }

    /// Time a connection may take to connect and finish its handshake
    /// (AUTH, ROLE, the subscriptions). Default 5 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The first and the longest wait before a lost connection is made
    /// again; the wait doubles with each failure in a row. Defaults 100 ms
    /// and 5 s.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Bytes of publishes that may wait for the broker thread; past it a
    /// publish is dropped and counted (`ringws_broker_dropped_total{reason="queue"}`).
    /// Default 16 MiB. Stops publishers that outrun the broker thread from
    /// growing memory without bound.
    pub fn max_queue_bytes(mut self, n: usize) -> Self {
        self.max_queue_bytes = n;
        self
    }

    /// Bytes a publishing connection may hold that Redis has not taken yet
    /// (a stopped or slow Redis); past it a publish is dropped and counted
    /// (`reason="backpressure"`). Default 16 MiB.
    pub fn max_pending_bytes(mut self, n: usize) -> Self {
        self.max_pending_bytes = n;
        self
    }

    /// The largest message taken from Redis (its envelope included); a
    /// larger one breaks the connection, which is made again. Default
    /// 64 MiB. Stops a broken or hostile server from making the node
    /// buffer without bound.
    pub fn max_message(mut self, n: usize) -> Self {
        self.max_message = n;
        self
    }

    /// What every Redis channel name starts with: a topic `news` is the
    /// channel `ringws:news` by default. Separates the deployments (or the
    /// applications) sharing one Redis.
    pub fn channel_prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = p.into();
        self
    }
}

impl Broker for Redis {
    fn start(self: Box<Self>, link: Arc<Link>) -> std::io::Result<JoinHandle<()>> {
        let rx = link
            .take_queue()
            .ok_or_else(|| std::io::Error::other("the broker was started twice"))?;
        let opts = LoopOptions {
            backend: link.backend,
            ring_entries: 256,
            read_buffer_size: 64 << 10,
            read_buffers: 64,
            // The broker bounds its own queues (max_pending_bytes); a
            // publishing connection must go on reading replies however
            // much it has queued.
            max_backpressure: usize::MAX / 2,
            write_timeout: Duration::from_secs(3600),
            pin: false,
        };
        let waker = link.waker.clone();
        spawn_loop("ringws-broker".to_owned(), opts, waker, move |io| {
            Thread::new(*self, link, rx, io.now())
        })
    }

    fn max_queue_bytes(&self) -> usize {
        self.max_queue_bytes
    }
}

/// Which of an instance's connections a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Pub,
    Sub,
    Sentinel,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Pub => "publishing",
            Role::Sub => "subscribing",
            Role::Sentinel => "Sentinel",
        }
    }
}

/// A reply a connection waits for, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Auth,
    SetName,
    Role,
    MasterAddr,
    Publish,
}

#[derive(Debug)]
enum State {
    /// Not connected; try again at `retry_at`.
    Down {
        retry_at: Instant,
    },
    /// Connecting, or connected and waiting for the handshake's replies
    /// (and, subscribing, the confirmations); cut at `until`.
    Opening {
        id: SockId,
        until: Instant,
    },
    Ready {
        id: SockId,
    },
}

/// One connection to Redis (or to a Sentinel).
struct Conn {
    state: State,
    /// Where it connected.
    addr: Option<SocketAddr>,
    input: BytesMut,
    dec: Decoder,
    expect: VecDeque<Expect>,
    /// Failures in a row (the backoff's exponent).
    failures: u32,
    /// Subscribing: (un)subscribe commands sent and not yet wholly
    /// confirmed, in order: an error answers the one at the front.
    batches: VecDeque<Batch>,
    /// Subscribing: batches of the handshake still unanswered (it counts
    /// as up once none is).
    initial: usize,
    /// The handshake is sent: later (un)subscribes go on this socket.
    hs_sent: bool,
    /// When it last became ready.
    up_since: Option<Instant>,
    /// Publishing: publishes encoded while the handshake runs, sent once
    /// it is done, and how many.
    held: Vec<u8>,
    held_n: usize,
    /// Has it ever been up (a later connect is a reconnect)?
    was_up: bool,
    /// Closed by us because the master moved: no failure, and the new
    /// address stands.
    moving: bool,
    /// When it was lost (while down).
    down_since: Option<Instant>,
}

impl Conn {
    fn new(limits: RespLimits, now: Instant) -> Conn {
        Conn {
            state: State::Down { retry_at: now },
            addr: None,
            input: BytesMut::new(),
            dec: Decoder::new(limits),
            expect: VecDeque::new(),
            failures: 0,
            batches: VecDeque::new(),
            initial: 0,
            hs_sent: false,
            up_since: None,
            held: Vec::new(),
            held_n: 0,
            was_up: false,
            moving: false,
            down_since: Some(now),
        }
    }

    fn id(&self) -> Option<SockId> {
        match self.state {
            State::Opening { id, .. } | State::Ready { id } => Some(id),
            State::Down { .. } => None,
        }
    }

    fn ready(&self) -> Option<SockId> {
        match self.state {
            State::Ready { id } => Some(id),
            _ => None,
        }
    }
}

/// A SUBSCRIBE or UNSUBSCRIBE sent on a subscribing connection.
struct Batch {
    chans: Vec<Vec<u8>>,
    /// Confirmations still due (one per channel).
    left: usize,
    subscribe: bool,
    /// Sent by the handshake.
    initial: bool,
}

/// A connection lost after it was up this long is made again at once,
/// and its failures forgotten; sooner, it backs off (a Redis that accepts
/// and then drops every connection is not hammered).
const STABLE: Duration = Duration::from_secs(1);

/// One Redis instance (a shard): where it is and its connections.
struct Shard {
    url: RedisUrl,
    label: String,
    /// The address to connect to; `None` until resolved (a Sentinel
    /// instance resolves again after every loss).
    target: Option<SocketAddr>,
    /// The master's `host:port` as a Sentinel named it, while its lookup
    /// runs (`target` is set from it when it ends).
    announced: Option<String>,
    publ: Conn,
    sub: Conn,
    sentinel: Conn,
    /// The next Sentinel to ask.
    next_sentinel: usize,
    /// The last thing that went wrong, for `/readyz?verbose`.
    last_error: String,
    /// The subscribing connection's last message (probes included).
    last_traffic: Instant,
    /// When the pending probe was sent.
    probe_sent: Option<Instant>,
    /// Topics Redis refused to subscribe (an ACL on channels), since the
    /// subscribing connection was made.
    refused: usize,
}

/// The broker thread: the loop's handler.
struct Thread {
    opts: Redis,
    link: Arc<Link>,
    rx: mpsc::Receiver<Outgoing>,
    interest: Interest,
    names: Vec<String>,
    shards: Vec<Shard>,
    socks: HashMap<SockId, (usize, Role)>,
    /// This node's probe channel (the same name on every instance).
    probe_channel: Vec<u8>,
    prefix: Vec<u8>,
    next_tick: Instant,
    /// Set once stopping: when to cut what is still open.
    stop_at: Option<Instant>,
    rng: u64,
    /// Scratch for (un)subscribe batches.
    batch: Vec<Vec<Vec<u8>>>,
    limits: RespLimits,
    ready: bool,
    /// Name lookups, off this thread.
    resolver: Resolver,
}

/// Channels per SUBSCRIBE or UNSUBSCRIBE command.
const BATCH: usize = 1000;

/// How often the thread looks at its timers (backoffs, deadlines, linger,
/// probes).
const TICK: Duration = Duration::from_millis(20);

/// The Sentinel channel that announces failovers.
const SWITCH_MASTER: &[u8] = b"+switch-master";

/// `host:port` from a Sentinel's host and port (an IPv6 host in brackets).
fn host_port(h: &[u8], p: &[u8]) -> String {
    let (h, p) = (String::from_utf8_lossy(h), String::from_utf8_lossy(p));
    if h.contains(':') {
        format!("[{h}]:{p}")
    } else {
        format!("{h}:{p}")
    }
}

/// The Redis channel of `topic`.
fn channel(prefix: &[u8], topic: &str) -> Vec<u8> {
    [prefix, topic.as_bytes()].concat()
}

/// `host:port` to an address (the first one). Blocks on DNS for a name:
/// on the broker thread only, and only when (re)connecting.
/// A failed attempt: a warning for the first in a row and then one in ten
/// (the backoff already spaces them), the rest at debug.
fn log_failure(label: &str, role: Role, failures: u32, why: &str, wait: Duration) {
    if failures <= 1 || failures % 10 == 0 {
        tracing::warn!(
            "broker: {label}: {} connection failed ({failures} in a row): {why}; next attempt in {wait:?}",
            role.name()
        );
    } else {
        tracing::debug!(
            "broker: {label}: {} connection failed ({failures} in a row): {why}; next attempt in {wait:?}",
            role.name()
        );
    }
}

/// At most one line a second for a stream of bad payloads.
fn log_malformed(topic: &str, m: Malformed) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if rate_ok(&LAST) {
        tracing::warn!("broker: dropped a message on topic {topic:?}: {m} (counted in ringws_broker_dropped_total{{reason=\"malformed\"}})");
    }
}

fn log_refused(label: &str, m: &str) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if rate_ok(&LAST) {
        tracing::warn!("broker: {label} refused a PUBLISH: {m}");
    }
}

fn rate_ok(last: &std::sync::atomic::AtomicU64) -> bool {
    let now = unix_ns() / 1_000_000_000;
    last.swap(now, Ordering::Relaxed) != now
}
