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
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::envelope::{self, Malformed};
use super::interest::Interest;
use super::url::{self, Location, RedisUrl, UrlError};
use super::{shard, unix_ns, Broker, Gap, Link, Outgoing};
use crate::proto::resp::{self, Decoder, Frame, PubSub, RespLimits};
use crate::runtime::client::{spawn_loop, Gone, Handler, InputBuf, Io, LoopOptions, SockId};

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
}

/// Channels per SUBSCRIBE or UNSUBSCRIBE command.
const BATCH: usize = 1000;

/// How often the thread looks at its timers (backoffs, deadlines, linger,
/// probes).
const TICK: Duration = Duration::from_millis(20);

impl Thread {
    fn new(opts: Redis, link: Arc<Link>, rx: mpsc::Receiver<Outgoing>, now: Instant) -> Thread {
        let limits = RespLimits {
            max_bulk: opts.max_message.saturating_add(opts.prefix.len() + 4096),
            max_frame: opts.max_message.saturating_mul(2).saturating_add(1 << 16),
            ..RespLimits::default()
        };
        let names = opts.urls.iter().map(RedisUrl::shard_name).collect();
        let shards = opts
            .urls
            .iter()
            .map(|u| Shard {
                url: u.clone(),
                label: u.to_string(),
                target: None,
                publ: Conn::new(limits, now),
                sub: Conn::new(limits, now),
                sentinel: Conn::new(limits, now),
                next_sentinel: 0,
                last_error: "not connected yet".to_owned(),
                last_traffic: now,
                probe_sent: None,
                refused: 0,
            })
            .collect::<Vec<_>>();
        link.counts
            .instances
            .store(shards.len() as u64, Ordering::Relaxed);
        let probe_channel = format!("{}probe:{:016x}", opts.prefix, link.node).into_bytes();
        let mut interest = Interest::new(opts.linger);
        for t in link.listened() {
            interest.pin(t);
        }
        Thread {
            interest,
            prefix: opts.prefix.clone().into_bytes(),
            rng: link.node | 1,
            opts,
            link,
            rx,
            names,
            shards,
            socks: HashMap::new(),
            probe_channel,
            next_tick: now,
            stop_at: None,
            batch: Vec::new(),
            limits,
            ready: false,
        }
    }

    /// The wait before attempt `failures + 1`: doubling from the minimum
    /// to the maximum, then 75 % to 100 % of it at random.
    fn backoff(&mut self, failures: u32) -> Duration {
        let d = self
            .opts
            .backoff_min
            .saturating_mul(1u32 << failures.min(20))
            .min(self.opts.backoff_max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        d.mul_f64(0.75 + (self.rng % 1000) as f64 / 4000.0)
    }

    fn conn(&mut self, s: usize, role: Role) -> &mut Conn {
        let sh = &mut self.shards[s];
        match role {
            Role::Pub => &mut sh.publ,
            Role::Sub => &mut sh.sub,
            Role::Sentinel => &mut sh.sentinel,
        }
    }

    /// Everything time-driven: connects due, deadlines, linger, probes.
    fn tick(&mut self, io: &mut Io) {
        let now = io.now();
        if let Some(at) = self.stop_at {
            if now >= at {
                for &id in self.socks.keys() {
                    io.close(id);
                }
            }
            return;
        }
        for s in 0..self.shards.len() {
            self.tick_shard(io, s, now);
        }
        self.interest.expire(now);
        self.send_interest(io);
        self.update_ready(io);
    }

    fn tick_shard(&mut self, io: &mut Io, s: usize, now: Instant) {
        let due = |c: &Conn| matches!(c.state, State::Down { retry_at } if now >= retry_at);
        // Find the master, when a connection is due to reconnect.
        let sh = &self.shards[s];
        let wanted = sh.target.is_none() && (due(&sh.publ) || due(&sh.sub));
        match sh.url.location.clone() {
            Location::Direct(a) if wanted => match resolve(&a) {
                Ok(addr) => self.shards[s].target = Some(addr),
                Err(e) => {
                    let why = format!("cannot resolve {a}: {e}");
                    self.fail_down(s, Role::Pub, now, &why);
                    self.fail_down(s, Role::Sub, now, &why);
                }
            },
            // The Sentinel connection is always kept: it finds the master
            // and hears of failovers.
            Location::Sentinel { sentinels, .. } if due(&sh.sentinel) => {
                let k = sh.next_sentinel % sentinels.len();
                self.shards[s].next_sentinel += 1;
                match resolve(&sentinels[k]) {
                    Ok(addr) => self.connect(io, s, Role::Sentinel, addr, now),
                    Err(e) => {
                        let why = format!("cannot resolve Sentinel {}: {e}", sentinels[k]);
                        self.fail_down(s, Role::Sentinel, now, &why);
                    }
                }
            }
            _ => {}
        }
        for role in [Role::Pub, Role::Sub, Role::Sentinel] {
            let target = self.shards[s].target;
            let c = self.conn(s, role);
            let (state_due, addr) = (due(c), c.addr);
            match c.state {
                State::Down { .. } => {
                    if let (true, Some(t), false) = (state_due, target, role == Role::Sentinel) {
                        self.connect(io, s, role, t, now);
                    }
                }
                State::Opening { id, until } if now >= until => {
                    let why = format!("no answer within {:?}", self.opts.connect_timeout);
                    self.note_error(s, role, &why);
                    io.close(id);
                }
                State::Opening { id, .. } | State::Ready { id } => {
                    // A failover moved the master: leave the old one.
                    let moved = role != Role::Sentinel && target.is_some() && addr != target;
                    if moved {
                        self.note_error(s, role, "the master moved");
                        self.conn(s, role).moving = true;
                        io.close(id);
                    }
                }
            }
        }
        // The probe: publish to our own channel after a silence, and
        // reconnect if it does not come back.
        let sh = &mut self.shards[s];
        if let (Some(sub), Some(publ)) = (sh.sub.ready(), sh.publ.ready()) {
            match sh.probe_sent {
                None if now.duration_since(sh.last_traffic) >= self.opts.probe_interval => {
                    let payload = self.link.node.to_le_bytes();
                    let ch = &self.probe_channel;
                    io.send_with(publ, |out| resp::encode_publish(out, ch, &payload));
                    sh.publ.expect.push_back(Expect::Publish);
                    sh.probe_sent = Some(now);
                }
                Some(at) if now.duration_since(at) >= self.opts.probe_timeout => {
                    tracing::warn!(
                        "broker: {}: the probe did not come back within {:?}; subscribing again",
                        sh.label,
                        self.opts.probe_timeout
                    );
                    sh.last_error = "a probe did not come back".to_owned();
                    io.close(sub);
                }
                _ => {}
            }
        }
    }

    fn connect(&mut self, io: &mut Io, s: usize, role: Role, addr: SocketAddr, now: Instant) {
        let until = now + self.opts.connect_timeout;
        let limits = self.limits;
        match io.connect(addr, None) {
            Ok(id) => {
                self.socks.insert(id, (s, role));
                if role == Role::Sub {
                    self.shards[s].refused = 0;
                }
                let c = self.conn(s, role);
                c.state = State::Opening { id, until };
                c.addr = Some(addr);
                c.input.clear();
                // The decoder keeps a half-read element and any error: a
                // new stream needs a new one.
                c.dec = Decoder::new(limits);
                c.expect.clear();
                c.batches.clear();
                c.initial = 0;
                c.hs_sent = false;
            }
            Err(e) => {
                let why = format!("cannot connect to {addr}: {e}");
                self.fail_down(s, role, now, &why);
            }
        }
    }

    fn note_error(&mut self, s: usize, role: Role, why: &str) {
        let sh = &mut self.shards[s];
        sh.last_error = format!("{} connection: {why}", role.name());
    }

    /// A connection attempt failed before it had a socket.
    fn fail_down(&mut self, s: usize, role: Role, now: Instant, why: &str) {
        let failures = self.conn(s, role).failures;
        let wait = self.backoff(failures);
        self.note_error(s, role, why);
        let label = self.shards[s].label.clone();
        let c = self.conn(s, role);
        c.failures = c.failures.saturating_add(1);
        c.state = State::Down {
            retry_at: now + wait,
        };
        log_failure(&label, role, c.failures, why, wait);
    }

    /// The connection is up at the TCP level: send its handshake.
    fn handshake(&mut self, io: &mut Io, s: usize, role: Role, id: SockId) {
        let node = self.link.node;
        let sh = &mut self.shards[s];
        let mut out = Vec::new();
        let c = match role {
            Role::Pub => &mut sh.publ,
            Role::Sub => &mut sh.sub,
            Role::Sentinel => &mut sh.sentinel,
        };
        if role == Role::Sentinel {
            let Location::Sentinel { master, .. } = &sh.url.location else {
                unreachable!("only Sentinel instances have a Sentinel connection")
            };
            resp::encode_sentinel_master_addr(&mut out, master.as_bytes());
            c.expect.push_back(Expect::MasterAddr);
            resp::encode_subscribe(&mut out, [SWITCH_MASTER]);
            io.send(id, &out);
            return;
        }
        if let Some(pass) = &sh.url.password {
            resp::encode_auth(
                &mut out,
                sh.url.user.as_deref().map(str::as_bytes),
                pass.as_bytes(),
            );
            c.expect.push_back(Expect::Auth);
        }
        let name = format!(
            "ringws-{node:016x}-{}",
            if role == Role::Pub { "pub" } else { "sub" }
        );
        resp::encode_client_setname(&mut out, name.as_bytes());
        c.expect.push_back(Expect::SetName);
        if matches!(sh.url.location, Location::Sentinel { .. }) {
            resp::encode_command(&mut out, &[b"ROLE"]);
            c.expect.push_back(Expect::Role);
        }
        io.send(id, &out);
        if role == Role::Sub {
            // Every topic of this instance, and our probe channel; the
            // connection is up once every confirmation is in.
            let mut chans = vec![self.probe_channel.clone()];
            for t in self.interest.subscribed() {
                if shard::pick(&self.names, t) == s {
                    chans.push(channel(&self.prefix, t));
                }
            }
            self.shards[s].sub.hs_sent = true;
            for chunk in chans.chunks(BATCH) {
                self.send_batch(io, s, id, chunk.to_vec(), true, true);
            }
        }
    }

    /// Sends a SUBSCRIBE (`subscribe`) or UNSUBSCRIBE of `chans` on the
    /// subscribing connection `id` of instance `s`, and waits for its
    /// confirmations.
    fn send_batch(
        &mut self,
        io: &mut Io,
        s: usize,
        id: SockId,
        chans: Vec<Vec<u8>>,
        subscribe: bool,
        initial: bool,
    ) {
        io.send_with(id, |out| {
            if subscribe {
                resp::encode_subscribe(out, chans.iter())
            } else {
                resp::encode_unsubscribe(out, chans.iter())
            }
        });
        let c = &mut self.shards[s].sub;
        if initial {
            c.initial += 1;
        }
        c.batches.push_back(Batch {
            left: chans.len(),
            chans,
            subscribe,
            initial,
        });
    }

    /// A confirmation (`subscribe`) or a refusal (`None`) of the batch at
    /// the front, on instance `s`'s subscribing connection.
    fn batch_answer(
        &mut self,
        io: &mut Io,
        s: usize,
        id: SockId,
        answer: Option<bool>,
        refusal: &str,
    ) -> Result<(), String> {
        let c = &mut self.shards[s].sub;
        let Some(b) = c.batches.front_mut() else {
            return Err(format!("an answer to no (un)subscribe: {refusal}"));
        };
        let done = match answer {
            Some(kind) if kind != b.subscribe => {
                return Err("confirmations out of order".to_owned());
            }
            Some(_) => {
                b.left -= 1;
                b.left == 0
            }
            None => true,
        };
        if !done {
            return Ok(());
        }
        let b = c.batches.pop_front().expect("just seen");
        if b.initial {
            c.initial -= 1;
        }
        if answer.is_none() && b.subscribe {
            if b.chans.len() > 1 {
                // One channel refused fails the whole command (an ACL on
                // channels): find which, one by one.
                for ch in b.chans {
                    self.send_batch(io, s, id, vec![ch], true, b.initial);
                }
            } else {
                let ch = String::from_utf8_lossy(&b.chans[0]).into_owned();
                let sh = &mut self.shards[s];
                sh.refused += 1;
                self.link
                    .counts
                    .refused_topics
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "broker: {}: Redis refused to subscribe {ch:?} ({refusal}); this node's subscribers of it get nothing from other nodes",
                    sh.label
                );
            }
        } else if answer.is_none() {
            tracing::warn!(
                "broker: {}: Redis refused an UNSUBSCRIBE: {refusal}",
                self.shards[s].label
            );
        }
        let c = &self.shards[s].sub;
        if c.initial == 0 && c.expect.is_empty() && c.ready().is_none() {
            self.up(io, s, Role::Sub, id);
        }
        Ok(())
    }

    /// The handshake's last reply (and confirmation) is in.
    fn up(&mut self, io: &mut Io, s: usize, role: Role, id: SockId) {
        let now = io.now();
        let sh = &mut self.shards[s];
        let c = match role {
            Role::Pub => &mut sh.publ,
            Role::Sub => &mut sh.sub,
            Role::Sentinel => return,
        };
        c.state = State::Ready { id };
        c.up_since = Some(now);
        let down_for = c.down_since.take().map(|t| now.duration_since(t));
        let again = c.was_up;
        c.was_up = true;
        if role == Role::Pub && c.held_n > 0 {
            let held = std::mem::take(&mut c.held);
            io.send(id, &held);
            for _ in 0..c.held_n {
                c.expect.push_back(Expect::Publish);
            }
            self.link
                .counts
                .published
                .fetch_add(c.held_n as u64, Ordering::Relaxed);
            c.held_n = 0;
        }
        if role == Role::Sub {
            sh.last_traffic = now;
            sh.probe_sent = None;
        }
        let label = sh.label.clone();
        let addr = c.addr;
        if again {
            self.link.counts.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        match (role, addr) {
            (Role::Sub, Some(a)) => tracing::info!(
                "broker: {label} ({a}): subscribed to {} topics",
                self.interest.len()
            ),
            (_, Some(a)) => tracing::info!("broker: {label} ({a}): publishing connection up"),
            _ => {}
        }
        if let (Role::Sub, true, Some(down_for)) = (role, again, down_for) {
            // Messages published elsewhere while this node was away are
            // lost for its subscribers: tell the application.
            if let (Some(f), Some(server)) = (self.link.gap.get(), self.link.server()) {
                let gap = Gap {
                    instance: label,
                    down_for,
                };
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&server, &gap)))
                    .is_err()
                {
                    tracing::error!("broker: the gap callback panicked");
                }
            }
        }
    }

    /// Takes the workers' interest changes and the queued publishes.
    fn take_work(&mut self, io: &mut Io) {
        let now = io.now();
        for ((w, t), on) in self.link.take_interest() {
            self.interest.change(w, &t, on, now);
        }
        self.send_interest(io);
        let head = envelope::head(self.link.node, unix_ns());
        while let Ok(o) = self.rx.try_recv() {
            self.link.took(o.frame.len());
            let s = shard::pick(&self.names, &o.topic);
            self.publish(io, s, &o, &head);
        }
    }

    fn publish(&mut self, io: &mut Io, s: usize, o: &Outgoing, head: &[u8]) {
        let counts = &self.link.counts;
        let prefix = &self.prefix[..];
        let c = &mut self.shards[s].publ;
        let encode = |out: &mut Vec<u8>| {
            resp::encode_publish_pieces(out, &[prefix, o.topic.as_bytes()], &[head, &o.frame]);
        };
        match c.state {
            State::Ready { id } => {
                if io.buffered(id) > self.opts.max_pending_bytes {
                    counts.dropped_backpressure.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if io.send_with(id, encode) {
                    c.expect.push_back(Expect::Publish);
                    counts.published.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.dropped_disconnected.fetch_add(1, Ordering::Relaxed);
                }
            }
            State::Opening { .. } => {
                // Counted as published once sent (`up`), or as dropped if
                // the handshake fails.
                if c.held.len() > self.opts.max_pending_bytes {
                    counts.dropped_backpressure.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                encode(&mut c.held);
                c.held_n += 1;
            }
            State::Down { .. } => {
                counts.dropped_disconnected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends the (un)subscribes decided since the last call, batched per
    /// instance, on the subscribing connections that have a socket (one
    /// still connecting subscribes everything once connected).
    fn send_interest(&mut self, io: &mut Io) {
        let (subs, unsubs) = self.interest.take_batches();
        self.link
            .counts
            .topics
            .store(self.interest.len() as u64, Ordering::Relaxed);
        for (list, on) in [(subs, true), (unsubs, false)] {
            if list.is_empty() {
                continue;
            }
            self.batch.resize_with(self.shards.len(), Vec::new);
            for t in &list {
                self.batch[shard::pick(&self.names, t)].push(channel(&self.prefix, t));
            }
            for s in 0..self.shards.len() {
                let chans = std::mem::take(&mut self.batch[s]);
                let c = &self.shards[s].sub;
                // Connected but still in its handshake: the SUBSCRIBE it
                // sent was made from the table before this batch. Not yet
                // connected: the handshake will subscribe the table.
                if let (true, Some(id), false) = (c.hs_sent, c.id(), chans.is_empty()) {
                    for chunk in chans.chunks(BATCH) {
                        self.send_batch(io, s, id, chunk.to_vec(), on, false);
                    }
                }
            }
        }
    }

    /// `/readyz`: every instance's two connections up.
    fn update_ready(&mut self, _io: &mut Io) {
        let mut up = 0;
        let mut why = Vec::new();
        for sh in &self.shards {
            if sh.publ.ready().is_some() && sh.sub.ready().is_some() {
                up += 1;
            } else {
                why.push(format!("{}: {}", sh.label, sh.last_error));
            }
        }
        let ready = up == self.shards.len();
        let refused: usize = self.shards.iter().map(|sh| sh.refused).sum();
        self.link
            .counts
            .refused_topics
            .store(refused as u64, Ordering::Relaxed);
        self.link
            .counts
            .instances_up
            .store(up as u64, Ordering::Relaxed);
        let status = if ready {
            format!("{up} Redis instance(s) connected and subscribed")
        } else {
            why.join("; ")
        };
        self.ready = ready;
        self.link.set_ready(ready, status);
    }

    /// A whole frame from connection (`s`, `role`).
    fn frame(
        &mut self,
        io: &mut Io,
        s: usize,
        role: Role,
        id: SockId,
        f: Frame,
    ) -> Result<(), String> {
        // Replies to the handshake (and to publishes) come first, in order.
        let c = self.conn(s, role);
        if let Some(e) = c.expect.pop_front() {
            return self.reply(io, s, role, id, e, f);
        }
        if role == Role::Sentinel {
            return self.sentinel_event(io, s, f);
        }
        if role != Role::Sub {
            return Err(format!("an unexpected reply: {f:?}"));
        }
        match PubSub::from_frame(f) {
            Ok(PubSub::Message { channel, payload }) => {
                let now = io.now();
                let sh = &mut self.shards[s];
                sh.last_traffic = now;
                if channel[..] == self.probe_channel[..] {
                    sh.probe_sent = None;
                    self.link
                        .counts
                        .probe_ok_ns
                        .store(unix_ns(), Ordering::Relaxed);
                    return Ok(());
                }
                self.relay(&channel, payload);
                Ok(())
            }
            Ok(PubSub::Subscribed { .. }) => self.batch_answer(io, s, id, Some(true), ""),
            Ok(PubSub::Unsubscribed { .. }) => self.batch_answer(io, s, id, Some(false), ""),
            Ok(PubSub::Pong(_)) => Ok(()),
            Err(Frame::Error(e)) => {
                let e = String::from_utf8_lossy(&e).into_owned();
                self.batch_answer(io, s, id, None, &e)
            }
            Err(f) => Err(format!("an unexpected frame: {f:?}")),
        }
    }

    /// A push on the Sentinel connection: `+switch-master <name> <old ip>
    /// <old port> <new ip> <new port>` moves the instance to the new master.
    fn sentinel_event(&mut self, _io: &mut Io, s: usize, f: Frame) -> Result<(), String> {
        let Location::Sentinel { master, .. } = &self.shards[s].url.location else {
            unreachable!("only Sentinel instances have a Sentinel connection")
        };
        match PubSub::from_frame(f) {
            Ok(PubSub::Message { payload, .. }) => {
                let text = String::from_utf8_lossy(&payload);
                let parts: Vec<&str> = text.split(' ').collect();
                if let [name, _, _, ip, port] = parts.as_slice() {
                    if name == master {
                        let hp = host_port(ip.as_bytes(), port.as_bytes());
                        let addr = resolve(&hp)
                            .map_err(|e| format!("cannot resolve the new master {hp}: {e}"))?;
                        let sh = &mut self.shards[s];
                        tracing::info!("broker: {}: failover, the master is now {addr}", sh.label);
                        sh.target = Some(addr);
                    }
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(f) => Err(format!("an unexpected Sentinel frame: {f:?}")),
        }
    }

    /// Hands a message from another node to the workers that want it.
    fn relay(&mut self, channel: &[u8], payload: bytes::Bytes) {
        let counts = &self.link.counts;
        let Some(topic) = channel
            .strip_prefix(&self.prefix[..])
            .and_then(|t| std::str::from_utf8(t).ok())
        else {
            return;
        };
        let listeners = self.link.listeners(topic);
        let workers = self.interest.workers(topic);
        if listeners.is_none() && workers.is_none() {
            // Lingering, or raced an unsubscribe: nobody here wants it.
            return;
        }
        let env = match envelope::open(payload) {
            Ok(e) => e,
            Err(m) => {
                counts.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                log_malformed(topic, m);
                return;
            }
        };
        if env.origin == self.link.node {
            return;
        }
        counts.received.fetch_add(1, Ordering::Relaxed);
        if let (Some(fs), Some(server)) = (listeners, self.link.server()) {
            match crate::app::data_payload(&env.frame, 0) {
                Some((_, p)) => {
                    for f in fs {
                        f(&server, p);
                    }
                }
                None => {
                    counts.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let Some((topic, workers)) = workers else {
            return;
        };
        let dropped = self.link.deliver(topic, &env.frame, workers.iter());
        if dropped > 0 {
            counts
                .dropped_mailbox
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    fn reply(
        &mut self,
        io: &mut Io,
        s: usize,
        role: Role,
        id: SockId,
        e: Expect,
        f: Frame,
    ) -> Result<(), String> {
        let refused = |f: &Frame| match f {
            Frame::Error(m) => Some(String::from_utf8_lossy(m).into_owned()),
            _ => None,
        };
        match e {
            Expect::Publish => {
                if let Some(m) = refused(&f) {
                    self.link
                        .counts
                        .dropped_refused
                        .fetch_add(1, Ordering::Relaxed);
                    log_refused(&self.shards[s].label, &m);
                }
                Ok(())
            }
            // A name is a convenience that an old Redis may not know; any
            // other error (maxclients, NOAUTH) is the connection failing.
            Expect::SetName => match refused(&f) {
                Some(m) if !m.to_ascii_lowercase().contains("unknown") => {
                    Err(format!("refused: {m}"))
                }
                _ => self.maybe_up(io, s, role, id),
            },
            Expect::Auth => match refused(&f) {
                Some(m) => Err(format!("AUTH refused: {m}")),
                None => self.maybe_up(io, s, role, id),
            },
            Expect::Role => match &f {
                Frame::Array(items) | Frame::Push(items) => match items.first() {
                    Some(Frame::Bulk(r)) if r[..] == *b"master" => self.maybe_up(io, s, role, id),
                    Some(Frame::Bulk(r)) => Err(format!(
                        "{} is a {}, not the master (a failover in progress?)",
                        self.conn(s, role)
                            .addr
                            .map_or("?".into(), |a| a.to_string()),
                        String::from_utf8_lossy(r)
                    )),
                    _ => Err(format!("an unexpected ROLE reply: {f:?}")),
                },
                _ => Err(format!("ROLE refused: {f:?}")),
            },
            Expect::MasterAddr => {
                let addr = match &f {
                    Frame::Array(items) => match items.as_slice() {
                        [Frame::Bulk(h), Frame::Bulk(p)] => {
                            let hp = host_port(h, p);
                            resolve(&hp)
                                .map_err(|e| format!("cannot resolve the master {hp}: {e}"))?
                        }
                        _ => return Err(format!("an unexpected Sentinel reply: {f:?}")),
                    },
                    Frame::Null => return Err("the Sentinel knows no such master".to_owned()),
                    _ => return Err(format!("the Sentinel refused: {f:?}")),
                };
                let sh = &mut self.shards[s];
                if sh.target != Some(addr) {
                    tracing::info!("broker: {}: the master is at {addr}", sh.label);
                }
                sh.target = Some(addr);
                sh.sentinel.failures = 0;
                sh.sentinel.state = State::Ready { id };
                sh.sentinel.up_since = Some(io.now());
                Ok(())
            }
        }
    }

    /// After a handshake reply: up once nothing more is due.
    fn maybe_up(&mut self, io: &mut Io, s: usize, role: Role, id: SockId) -> Result<(), String> {
        let c = self.conn(s, role);
        if c.expect.is_empty() && c.initial == 0 && c.ready().is_none() {
            self.up(io, s, role, id);
        }
        Ok(())
    }
}

impl Handler for Thread {
    fn connected(&mut self, io: &mut Io, id: SockId, res: std::io::Result<()>) {
        let Some(&(s, role)) = self.socks.get(&id) else {
            return io.close(id);
        };
        match res {
            Ok(()) => self.handshake(io, s, role, id),
            Err(e) => {
                let addr = self.conn(s, role).addr;
                let why = format!(
                    "cannot connect to {}: {e}",
                    addr.map_or("?".into(), |a| a.to_string())
                );
                self.note_error(s, role, &why);
                io.close(id);
            }
        }
    }

    fn data(&mut self, io: &mut Io, id: SockId, buf: InputBuf) {
        let Some(&(s, role)) = self.socks.get(&id) else {
            return;
        };
        self.conn(s, role).input.extend_from_slice(buf.as_slice());
        drop(buf);
        loop {
            let c = self.conn(s, role);
            let f = match c.dec.decode(&mut c.input) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.note_error(s, role, &format!("a protocol error: {e:?}"));
                    io.close(id);
                    return;
                }
            };
            if let Err(why) = self.frame(io, s, role, id, f) {
                self.note_error(s, role, &why);
                io.close(id);
                return;
            }
            if !self.socks.contains_key(&id) || !io.is_open(id) {
                return;
            }
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<std::io::Error>) {
        if let Some(&(s, role)) = self.socks.get(&id) {
            let why = match err {
                Some(e) => format!("lost: {e}"),
                None if role == Role::Sentinel => "closed by the Sentinel".to_owned(),
                None => "closed by Redis".to_owned(),
            };
            self.note_error(s, role, &why);
        }
        io.close(id);
    }

    fn gone(&mut self, io: &mut Io, id: SockId, _why: Gone) {
        let Some((s, role)) = self.socks.remove(&id) else {
            return;
        };
        let now = io.now();
        let c = self.conn(s, role);
        let was_ready = c.ready().is_some();
        let stable = was_ready && c.up_since.is_some_and(|t| now.duration_since(t) >= STABLE);
        if stable {
            c.failures = 0;
        }
        let failures = c.failures;
        let wait = if stable {
            // A first retry at once: most losses are a restart or a
            // failover, over before the backoff would matter.
            Duration::ZERO
        } else {
            self.backoff(failures)
        };
        let sh = &mut self.shards[s];
        let why = sh.last_error.clone();
        let label = sh.label.clone();
        let sentinel = matches!(sh.url.location, Location::Sentinel { .. });
        let c = match role {
            Role::Pub => &mut sh.publ,
            Role::Sub => &mut sh.sub,
            Role::Sentinel => &mut sh.sentinel,
        };
        let moving = std::mem::take(&mut c.moving);
        if !stable {
            c.failures = c.failures.saturating_add(1);
        }
        c.state = State::Down {
            retry_at: now + wait,
        };
        c.down_since.get_or_insert(now);
        let dropped = c.held_n;
        c.held.clear();
        c.held_n = 0;
        c.expect.clear();
        c.batches.clear();
        c.initial = 0;
        c.hs_sent = false;
        c.input.clear();
        // Anything pipelined and unanswered may or may not have been
        // published: at most once.
        if dropped > 0 {
            self.link
                .counts
                .dropped_disconnected
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if role != Role::Sentinel {
            // A probe in flight on either connection is void.
            sh.probe_sent = None;
        }
        if role != Role::Sentinel && !moving && !sentinel {
            // Resolve the name again: its address may have changed.
            sh.target = None;
        }
        if sentinel && role != Role::Sentinel && !moving {
            // Ask the Sentinels again: the master may have moved and the
            // announcement been missed. A new Sentinel connection asks.
            sh.target = None;
            if let Some(id) = sh.sentinel.id() {
                io.close(id);
            }
        }
        if stable {
            tracing::warn!(
                "broker: {label}: {} connection {why}; connecting again",
                role.name()
            );
        } else {
            log_failure(&label, role, failures + 1, &why, wait);
        }
        self.update_ready(io);
    }

    fn wake(&mut self, io: &mut Io) {
        self.link.waker.clear();
        if self.link.stopping() && self.stop_at.is_none() {
            // Send what is queued, then go.
            self.take_work(io);
            self.stop_at = Some(io.now() + Duration::from_secs(1));
            for &id in self.socks.keys() {
                io.close_after_flush(id);
            }
            return;
        }
        if self.stop_at.is_none() {
            self.take_work(io);
        }
    }

    fn turn(&mut self, io: &mut Io) {
        let now = io.now();
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(io);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    fn done(&self) -> bool {
        self.stop_at.is_some() && self.socks.is_empty()
    }
}

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
fn resolve(hp: &str) -> std::io::Result<SocketAddr> {
    if let Ok(a) = hp.parse() {
        return Ok(a);
    }
    hp.to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))
}

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
