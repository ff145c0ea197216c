//! Several gateway nodes as one: what each node's channels hold
//! (subscriptions and presence members), and commands for the node that
//! holds a connection, told to the others through the broker
//! ([`App::on_remote_publish`](ringws::App::on_remote_publish) on one
//! topic). Events themselves need none of this: they are topics, which the
//! broker already carries.
//!
//! Each node keeps its own channels ([`crate::state`]) and a view of every
//! other node's, which it updates from their messages:
//! - `chan`: one channel's whole state on the sending node, after every
//!   change there (idempotent: it replaces what was known);
//! - `snap`: every channel of the sending node, every `interval`: renews
//!   them, and teaches nodes that started since (a starting node asks with
//!   `hello`). A node whose state is not renewed within three intervals is
//!   taken for dead and forgotten: its members leave within a bounded time.
//!   The live node with the lowest id tells the channels (`member_removed`).
//! - `term`: close a user's connections.
//!
//! `socket_id` exclusion needs none of this either: a socket id is its
//! connection's [`ConnId`](ringws::app::ConnId), which the broker's
//! envelope carries to the node that holds it.
//!
//! Presence announcements (`member_added`, `member_removed`) never cross
//! the broker: each node tells its own subscribers when a user becomes
//! new to a channel, or gone from it, in its own view (its members and the
//! other nodes' as last heard), whatever changed it: a local join or
//! leave, another node's state arriving, a silent node forgotten. Each
//! client's list thus follows its node's view, and the views agree once
//! the messages between the nodes have arrived: a user who joins (or
//! leaves) on two nodes at once is announced once on every node, never
//! twice or not at all, however the two changes cross. The decisions on a
//! node are taken one at a time (`Cluster::decide`).
//!
//! What it does not give: the `member_added` and `member_removed`
//! webhooks are sent by the node where the change happened, from its
//! view, so the same crossing (within the milliseconds a message takes
//! between nodes) may send them twice, or not at all; nothing is stored in
//! Redis, so state lives as long as the nodes that hold it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ringws::app::ServerHandle;
use serde::{Deserialize, Serialize};

use crate::protocol;
use crate::state::{Channel, Gateway};
use crate::webhook::{Event, Kind};
use crate::ws::{codes, topic};

/// The broker topic the nodes talk on.
pub const TOPIC: &str = "#ringws-gateway";

/// Most channels in one `snap` message: a node with many channels sends
/// several, so that no message grows with the node.
const SNAP_CHANNELS: usize = 500;

/// One channel's state on one node, as the nodes send it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ChanState {
    /// The app id.
    a: String,
    /// The channel.
    c: String,
    /// Subscriptions on the node.
    s: usize,
    /// Presence members on the node, each with its `user_info` (raw JSON).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    m: HashMap<String, Option<String>>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Msg {
    Chan {
        n: u64,
        #[serde(flatten)]
        ch: ChanState,
    },
    Snap {
        n: u64,
        ch: Vec<ChanState>,
    },
    Hello {
        n: u64,
    },
    Term {
        a: String,
        u: String,
    },
}

/// What one other node holds.
#[derive(Default)]
struct NodeView {
    /// By app, then channel.
    chans: HashMap<(String, String), (Instant, ChanState)>,
    seen: Option<Instant>,
}

/// This node's side of the cluster.
pub struct Cluster {
    pub(crate) node: u64,
    /// A broker is configured: there may be other nodes.
    on: std::sync::atomic::AtomicBool,
    interval: Duration,
    view: Mutex<HashMap<u64, NodeView>>,
    server: OnceLock<ServerHandle>,
    /// A node said hello: the ticker sends the snapshot at once. Set on
    /// the broker's thread, which must not build a snapshot of every
    /// channel itself (all traffic from other nodes waits behind it).
    hello: (Mutex<bool>, Condvar),
    /// Held while a presence change is decided and announced: see
    /// [`Cluster::decide`].
    decide: Mutex<()>,
}

impl Cluster {
    pub(crate) fn new(node: u64, interval: Duration) -> Cluster {
        Cluster {
            node,
            on: std::sync::atomic::AtomicBool::new(false),
            interval,
            view: Mutex::default(),
            server: OnceLock::new(),
            hello: (Mutex::new(false), Condvar::new()),
            decide: Mutex::new(()),
        }
    }

    /// One presence decision at a time on this node: a local join or
    /// leave, another node's state replacing what was known, silent nodes
    /// forgotten. Each reads the view and this node's channels, changes
    /// one of them and announces what changed for its members; two of them
    /// interleaved could both announce a user, or neither. Taken before
    /// the view's lock and any app's channels (never while holding them).
    /// Only presence changes take it: they are rare next to messages.
    pub(crate) fn decide(&self) -> MutexGuard<'_, ()> {
        self.decide.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is there possibly another node?
    pub(crate) fn on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// There may be other nodes (the app has a broker).
    pub(crate) fn enable(&self) {
        self.on.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn view(&self) -> std::sync::MutexGuard<'_, HashMap<u64, NodeView>> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server, once a connection or request has shown it: the first
    /// time, this node asks the others for their state.
    pub(crate) fn attach(&self, server: &ServerHandle) {
        if !self.on() || self.server.get().is_some() {
            return;
        }
        if self.server.set(server.clone()).is_ok() {
            self.send(server, &Msg::Hello { n: self.node });
        }
    }

    fn send(&self, server: &ServerHandle, m: &Msg) {
        match serde_json::to_string(m) {
            Ok(text) => {
                server.publish(TOPIC, text.as_str());
            }
            Err(e) => tracing::error!("cluster message not encoded: {e}"),
        }
    }

    /// Tells the other nodes `channel`'s state here after a change.
    pub(crate) fn announce(
        &self,
        server: &ServerHandle,
        app: &str,
        channel: &str,
        c: Option<&Channel>,
    ) {
        if !self.on() {
            return;
        }
        self.attach(server);
        let ch = state_of(app, channel, c);
        self.send(server, &Msg::Chan { n: self.node, ch });
    }

    /// Asks every other node to close `user`'s connections.
    pub(crate) fn terminate(&self, server: &ServerHandle, app: &str, user: &str) {
        if self.on() {
            self.send(
                server,
                &Msg::Term {
                    a: app.to_owned(),
                    u: user.to_owned(),
                },
            );
        }
    }

    /// Other nodes' presence members of `channel`, with their info.
    pub(crate) fn members(&self, app: &str, channel: &str) -> HashMap<String, Option<String>> {
        self.channel(app, channel).map(|c| c.1).unwrap_or_default()
    }

    /// `channel` on the other nodes, if any holds it: subscriptions and
    /// presence members (one look-up per node, whatever the channel count).
    pub(crate) fn channel(
        &self,
        app: &str,
        channel: &str,
    ) -> Option<(usize, HashMap<String, Option<String>>)> {
        let key = (app.to_owned(), channel.to_owned());
        let mut out: Option<(usize, HashMap<String, Option<String>>)> = None;
        for v in self.view().values() {
            if let Some((_, c)) = v.chans.get(&key) {
                let e = out.get_or_insert_with(Default::default);
                e.0 += c.s;
                for (u, i) in &c.m {
                    e.1.entry(u.clone()).or_insert_with(|| i.clone());
                }
            }
        }
        out
    }

    /// Has `channel` subscriptions on another node?
    pub(crate) fn occupied_elsewhere(&self, app: &str, channel: &str) -> bool {
        let key = (app.to_owned(), channel.to_owned());
        self.view().values().any(|v| v.chans.contains_key(&key))
    }

    /// Is `user` a member of `channel` on another node?
    pub(crate) fn has_member(&self, app: &str, channel: &str, user: &str) -> bool {
        let key = (app.to_owned(), channel.to_owned());
        self.view().values().any(|v| {
            v.chans
                .get(&key)
                .is_some_and(|(_, c)| c.m.contains_key(user))
        })
    }

    /// Other nodes' occupied channels of `app` starting with `prefix`:
    /// name, subscriptions, members.
    pub(crate) fn channels(
        &self,
        app: &str,
        prefix: &str,
    ) -> HashMap<String, (usize, HashMap<String, Option<String>>)> {
        let mut out: HashMap<String, (usize, HashMap<String, Option<String>>)> = HashMap::new();
        for v in self.view().values() {
            for ((a, name), (_, c)) in &v.chans {
                if a == app && name.starts_with(prefix) {
                    let e = out.entry(name.clone()).or_default();
                    e.0 += c.s;
                    for (u, i) in &c.m {
                        e.1.entry(u.clone()).or_insert_with(|| i.clone());
                    }
                }
            }
        }
        out
    }

    /// A message from another node (the broker's thread).
    pub(crate) fn receive(&self, gw: &Gateway, server: &ServerHandle, payload: &[u8]) {
        let m: Msg = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cluster message not understood: {e}");
                return;
            }
        };
        let now = Instant::now();
        match m {
            Msg::Chan { n, ch } => {
                let _d = self.decide();
                self.replace(gw, server, n, ch, now);
            }
            Msg::Snap { n, ch } => {
                let _d = self.decide();
                if ch.is_empty() {
                    self.view().entry(n).or_default().seen = Some(now);
                }
                for c in ch {
                    self.replace(gw, server, n, c, now);
                }
            }
            Msg::Hello { n } => {
                tracing::info!(
                    node = n,
                    "a gateway node started: sending it this node's channels"
                );
                self.attach(server);
                *lock(&self.hello.0) = true;
                self.hello.1.notify_one();
            }
            Msg::Term { a, u } => {
                if let Some(app) = gw.app_by_id(&a) {
                    crate::api::close_user(app, &u);
                }
            }
        }
    }

    /// Node `n`'s state of one channel replaces what was known of it. The
    /// members this makes new to the channel, or gone from it, across the
    /// nodes as this node sees them, are announced to this node's
    /// subscribers (see the module's doc). Under [`Cluster::decide`].
    fn replace(&self, gw: &Gateway, server: &ServerHandle, n: u64, ch: ChanState, now: Instant) {
        let (app, channel) = (ch.a.clone(), ch.c.clone());
        let key = (app.clone(), channel.clone());
        // (user, Some(info) if added, None if removed)
        let mut changes: Vec<(String, Option<Option<String>>)> = Vec::new();
        {
            let mut view = self.view();
            let v = view.entry(n).or_default();
            v.seen = Some(now);
            let old = v.chans.get(&key).map(|(_, c)| &c.m);
            for (u, info) in &ch.m {
                if old.is_none_or(|o| !o.contains_key(u)) {
                    changes.push((u.clone(), Some(info.clone())));
                }
            }
            for u in old.into_iter().flat_map(|o| o.keys()) {
                if !ch.m.contains_key(u) {
                    changes.push((u.clone(), None));
                }
            }
            if ch.s == 0 {
                v.chans.remove(&key);
            } else {
                v.chans.insert(key.clone(), (now, ch));
            }
            if changes.is_empty() {
                return;
            }
            // A member of another node's was there before and stays.
            changes.retain(|(u, _)| {
                !view.iter().any(|(&m, v)| {
                    m != n && v.chans.get(&key).is_some_and(|(_, c)| c.m.contains_key(u))
                })
            });
        }
        let Some(a) = gw.app_by_id(&app) else { return };
        {
            // And so does one of this node's.
            let reg = a.channels();
            let here = reg.get(&channel);
            changes.retain(|(u, _)| here.is_none_or(|c| !c.members.contains_key(u)));
        }
        let t = topic(&app, &channel);
        for (user, added) in changes {
            let m = match added {
                Some(info) => protocol::member_added(&channel, &user, info.as_deref()),
                None => protocol::member_removed(&channel, &user),
            };
            server.publish_local(&t, m.as_str());
        }
    }

    /// Sends every channel of this node, in messages of at most
    /// [`SNAP_CHANNELS`].
    fn snapshot(&self, gw: &Gateway, server: &ServerHandle) {
        let mut all = Vec::new();
        for app in gw.apps() {
            let reg = app.channels();
            for (name, c) in reg.occupied("") {
                all.push(state_of(&app.cfg.id, name, Some(c)));
            }
        }
        for part in all.chunks(SNAP_CHANNELS) {
            self.send(
                server,
                &Msg::Snap {
                    n: self.node,
                    ch: part.to_vec(),
                },
            );
        }
    }

    /// Every interval: this node's snapshot out, and the nodes (and
    /// channels) not renewed within three intervals forgotten. Their
    /// members that are nowhere else are announced gone to this node's
    /// subscribers (every node does so for its own); the live node with
    /// the lowest id sends the webhooks.
    pub(crate) fn tick(&self, gw: &Gateway) {
        let Some(server) = self.server.get() else {
            return;
        };
        self.snapshot(gw, server);
        let _d = self.decide();
        let now = Instant::now();
        let ttl = self.interval * 3;
        let mut gone: Vec<ChanState> = Vec::new();
        let leader;
        {
            let mut view = self.view();
            view.retain(|n, v| {
                let alive = v.seen.is_some_and(|t| now.duration_since(t) < ttl);
                if !alive {
                    tracing::info!(
                        node = n,
                        "a gateway node is silent: forgetting its channels"
                    );
                }
                v.chans.retain(|_, (t, c)| {
                    let keep = alive && now.duration_since(*t) < ttl;
                    if !keep {
                        gone.push(c.clone());
                    }
                    keep
                });
                alive
            });
            leader = view.keys().all(|&n| n > self.node);
        }
        let hooks = &gw.webhooks;
        // A user on two forgotten nodes leaves once.
        let mut told = HashSet::new();
        for c in gone {
            let Some(app) = gw.app_by_id(&c.a) else {
                continue;
            };
            for user in c.m.keys() {
                let here = app
                    .channels()
                    .get(&c.c)
                    .is_some_and(|ch| ch.members.contains_key(user));
                if !here
                    && !self.has_member(&c.a, &c.c, user)
                    && told.insert((c.a.clone(), c.c.clone(), user.clone()))
                {
                    let t = topic(&c.a, &c.c);
                    server.publish_local(&t, protocol::member_removed(&c.c, user).as_str());
                    if leader && hooks.wants(&c.a, Kind::MemberRemoved) {
                        let e = Event::MemberRemoved {
                            channel: c.c.clone(),
                            user_id: user.clone(),
                        };
                        hooks.send(&c.a, e);
                    }
                }
            }
            let here = app.channels().get(&c.c).is_some();
            if leader
                && !here
                && !self.occupied_elsewhere(&c.a, &c.c)
                && hooks.wants(&c.a, Kind::ChannelVacated)
            {
                hooks.send(
                    &c.a,
                    Event::ChannelVacated {
                        channel: c.c.clone(),
                    },
                );
            }
        }
    }
}

fn state_of(app: &str, channel: &str, c: Option<&Channel>) -> ChanState {
    ChanState {
        a: app.to_owned(),
        c: channel.to_owned(),
        s: c.map_or(0, |c| c.subscriptions),
        m: c.map(|c| {
            c.members
                .iter()
                .map(|(u, m)| (u.clone(), m.info.as_deref().map(str::to_owned)))
                .collect()
        })
        .unwrap_or_default(),
    }
}

/// Starts the thread that sends this node's snapshot and forgets silent
/// nodes, every `interval`; it ends with the gateway.
pub(crate) fn spawn_ticker(gw: &Arc<Gateway>) -> std::io::Result<()> {
    let weak = Arc::downgrade(gw);
    let interval = gw.cluster.interval;
    std::thread::Builder::new()
        .name("ringws-gw-cluster".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            loop {
                let Some(gw) = weak.upgrade() else { return };
                let c = &gw.cluster;
                let (mut said, _) = c
                    .hello
                    .1
                    .wait_timeout_while(
                        lock(&c.hello.0),
                        next.saturating_duration_since(Instant::now()),
                        |h| !*h,
                    )
                    .unwrap_or_else(|e| e.into_inner());
                let hello = std::mem::take(&mut *said);
                drop(said);
                if hello {
                    // A snapshot for the node that started; the silent
                    // ones are looked for on the interval.
                    if let Some(server) = c.server.get() {
                        c.snapshot(&gw, server);
                    }
                } else {
                    c.tick(&gw);
                    next = Instant::now() + interval;
                }
            }
        })?;
    Ok(())
}

fn lock(m: &Mutex<bool>) -> MutexGuard<'_, bool> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The close every terminated connection gets, here or on another node.
pub(crate) const TERMINATED: (u16, &str) =
    (codes::UNAUTHORIZED, "You got disconnected by the app.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut m = HashMap::new();
        m.insert("bob".to_owned(), Some("{\"n\":1}".to_owned()));
        m.insert("ann".to_owned(), None);
        let msgs = [
            Msg::Chan {
                n: 7,
                ch: ChanState {
                    a: "1".into(),
                    c: "presence-a".into(),
                    s: 3,
                    m,
                },
            },
            Msg::Snap {
                n: 7,
                ch: vec![ChanState {
                    a: "1".into(),
                    c: "x".into(),
                    s: 1,
                    m: HashMap::new(),
                }],
            },
            Msg::Hello { n: 9 },
            Msg::Term {
                a: "1".into(),
                u: "carol".into(),
            },
        ];
        for m in msgs {
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Msg>(&text).unwrap(), m, "{text}");
        }
    }
}
