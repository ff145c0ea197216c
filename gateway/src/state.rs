//! What the gateway knows across connections and threads: per app, its
//! open connections by socket id, signed-in users, and each channel's
//! subscription count, presence members and cached last event.
//!
//! Written on subscribe, unsubscribe, sign-in and close, and read by the
//! HTTP API; never on the per-message path (an event is a topic publish:
//! ringws fans it out without looking here). One lock per app for the
//! channels: a subscription is a few map operations under it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ringws::app::SocketRef;

use crate::config::{AppConfig, GatewayConfig};
use crate::webhook::{AppHooks, Webhooks};

/// The whole gateway: its apps, by key (connections) and by id (the HTTP
/// API), and its side of the cluster.
pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    by_key: HashMap<String, Arc<AppState>>,
    by_id: HashMap<String, Arc<AppState>>,
    /// Counts for `/metrics` that belong to no app.
    pub(crate) counts: GatewayCounts,
    /// The other nodes, with a broker.
    pub(crate) cluster: crate::cluster::Cluster,
    /// The webhook sender (its thread runs only if some app has an
    /// endpoint).
    pub(crate) webhooks: Webhooks,
}

/// Counts of the gateway as a whole, for `/metrics`.
#[derive(Default)]
pub(crate) struct GatewayCounts {
    /// Connections refused before any app: unknown key, bad protocol.
    pub(crate) unknown_app: AtomicU64,
    pub(crate) bad_protocol: AtomicU64,
    /// HTTP API answers by status, in [`API_STATUSES`] order (the last
    /// slot: any other).
    pub(crate) api: [AtomicU64; API_STATUSES.len() + 1],
}

/// The statuses the HTTP API answers with, each counted on its own.
pub(crate) const API_STATUSES: [u16; 7] = [200, 400, 401, 404, 405, 413, 500];

impl GatewayCounts {
    pub(crate) fn api_status(&self, status: u16) {
        let i = API_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(API_STATUSES.len());
        self.api[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// One app's counts, for `/metrics`.
#[derive(Default)]
pub(crate) struct AppCounts {
    /// Events published through the HTTP API (one per channel).
    pub(crate) api_events: AtomicU64,
    /// Client events relayed.
    pub(crate) client_events: AtomicU64,
    /// Client events refused past the rate limit.
    pub(crate) client_events_limited: AtomicU64,
    /// Messages from clients refused (bad JSON, unknown event, too large,
    /// client events where not allowed).
    pub(crate) refused_messages: AtomicU64,
    /// Subscriptions refused (bad signature, presence full or bad data).
    pub(crate) refused_subscriptions: AtomicU64,
    /// Connections refused over the app's quota.
    pub(crate) over_quota: AtomicU64,
    /// Subscriptions made.
    pub(crate) subscriptions: AtomicU64,
}

impl Gateway {
    /// The state for `cfg`'s apps (checked with [`GatewayConfig::validate`]).
    pub fn new(cfg: GatewayConfig) -> Result<Arc<Gateway>, String> {
        cfg.validate()?;
        let mut by_key = HashMap::new();
        let mut by_id = HashMap::new();
        for a in &cfg.apps {
            let s = Arc::new(AppState::new(a.clone()));
            by_key.insert(a.key.clone(), s.clone());
            by_id.insert(a.id.clone(), s);
        }
        let node = node_number();
        let cluster = crate::cluster::Cluster::new(node, cfg.cluster_interval);
        let hooks = cfg.apps.iter().map(|a| AppHooks {
            id: a.id.clone(),
            key: a.key.clone(),
            secret: a.secret.clone(),
            hooks: a.webhooks.clone(),
        });
        let webhooks = Webhooks::start(hooks).map_err(|e| format!("webhooks: {e}"))?;
        Ok(Arc::new(Gateway {
            cfg,
            by_key,
            by_id,
            counts: GatewayCounts::default(),
            cluster,
            webhooks,
        }))
    }

    /// The gateway's settings.
    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    /// The webhook sender: [`Webhooks::stop`] flushes what is queued when
    /// the server has stopped.
    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// The app clients connect to with `key`.
    pub fn app_by_key(&self, key: &str) -> Option<&Arc<AppState>> {
        self.by_key.get(key)
    }

    /// The app the HTTP API names `id`.
    pub fn app_by_id(&self, id: &str) -> Option<&Arc<AppState>> {
        self.by_id.get(id)
    }

    /// The apps, in no particular order.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<AppState>> {
        self.by_id.values()
    }
}

/// This node's id among the gateway nodes (in the cluster's messages):
/// the clock's nanoseconds and the process id through SipHash (std's
/// `RandomState` seeds it randomly too). It only has to differ between
/// nodes.
fn node_number() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(t.as_nanos());
    h.finish()
}

/// One app's live state.
pub struct AppState {
    pub(crate) cfg: AppConfig,
    /// Open connections (for `max_connections`).
    pub(crate) connections: AtomicUsize,
    /// Connections by socket id ([`AppState::sockets`]).
    sockets: Mutex<HashMap<String, SocketRef>>,
    /// Signed-in users' connections (socket id and handle), for
    /// terminating them.
    users: Mutex<HashMap<String, Vec<(String, SocketRef)>>>,
    channels: Mutex<Channels>,
    /// Cache channel events not kept because `max_cached_channels` was
    /// reached.
    pub(crate) cache_refused: AtomicU64,
    pub(crate) counts: AppCounts,
}

/// What the app's channels hold.
#[derive(Default)]
pub(crate) struct Channels {
    occupied: HashMap<String, Channel>,
    /// Cache channels' last event (the encoded message) and when it was
    /// kept; kept also while nobody is subscribed, until the TTL.
    cache: HashMap<String, (Instant, Arc<str>)>,
}

/// One occupied channel (at least one subscription).
#[derive(Default)]
pub struct Channel {
    /// Subscriptions (connections) on this node.
    pub subscriptions: usize,
    /// Presence channels: the members by user id, each with its
    /// connection count and `user_info` (raw JSON).
    pub members: HashMap<String, Member>,
}

/// A presence member: one user, however many connections.
pub struct Member {
    /// Connections of this user on the channel.
    pub connections: usize,
    /// The `user_info` JSON its first connection gave, if any.
    pub info: Option<Arc<str>>,
}

/// What a subscription changed, for the caller to announce.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Joined {
    /// The channel had no subscriber before (channel_occupied).
    pub(crate) occupied: bool,
    /// Presence: the user is new to the channel (member_added).
    pub(crate) member_added: bool,
}

/// What an unsubscription changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Left {
    /// The channel has no subscriber left (channel_vacated).
    pub(crate) vacated: bool,
    /// Presence: the user's last connection left (member_removed).
    pub(crate) member_removed: bool,
}

impl AppState {
    fn new(cfg: AppConfig) -> AppState {
        AppState {
            cfg,
            connections: AtomicUsize::new(0),
            sockets: Mutex::default(),
            users: Mutex::default(),
            channels: Mutex::default(),
            cache_refused: AtomicU64::new(0),
            counts: AppCounts::default(),
        }
    }

    /// The app's configuration.
    pub fn config(&self) -> &AppConfig {
        &self.cfg
    }

    /// Open connections on this node.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn channels(&self) -> MutexGuard<'_, Channels> {
        // A panic while holding the lock leaves maps that are still
        // consistent (each change is one insert or remove): keep serving.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add_socket(&self, socket_id: &str, r: SocketRef) {
        lock(&self.sockets).insert(socket_id.to_owned(), r);
    }

    pub(crate) fn remove_socket(&self, socket_id: &str) {
        lock(&self.sockets).remove(socket_id);
    }

    /// Every open connection on this node (to close them at a drain).
    pub fn sockets(&self) -> Vec<SocketRef> {
        lock(&self.sockets).values().cloned().collect()
    }

    pub(crate) fn add_user(&self, user: &str, socket_id: &str, r: SocketRef) {
        lock(&self.users)
            .entry(user.to_owned())
            .or_default()
            .push((socket_id.to_owned(), r));
    }

    pub(crate) fn remove_user(&self, user: &str, socket_id: &str) {
        let mut users = lock(&self.users);
        if let Some(v) = users.get_mut(user) {
            v.retain(|(s, _)| s != socket_id);
            if v.is_empty() {
                users.remove(user);
            }
        }
    }

    /// The connections `user` signed in on, on this node.
    pub(crate) fn user_sockets(&self, user: &str) -> Vec<SocketRef> {
        lock(&self.users)
            .get(user)
            .map(|v| v.iter().map(|(_, r)| r.clone()).collect())
            .unwrap_or_default()
    }
}

impl Channels {
    /// A connection subscribed to `name` (as `member`, with its info, on a
    /// presence channel).
    pub(crate) fn join(&mut self, name: &str, member: Option<(&str, Option<&str>)>) -> Joined {
        let c = self.occupied.entry(name.to_owned()).or_default();
        c.subscriptions += 1;
        let occupied = c.subscriptions == 1;
        let mut member_added = false;
        if let Some((user, info)) = member {
            let m = c.members.entry(user.to_owned()).or_insert_with(|| {
                member_added = true;
                Member {
                    connections: 0,
                    info: info.map(Arc::from),
                }
            });
            m.connections += 1;
        }
        Joined {
            occupied,
            member_added,
        }
    }

    /// A connection left `name` (as `member` of a presence channel).
    pub(crate) fn leave(&mut self, name: &str, member: Option<&str>) -> Left {
        let mut left = Left {
            vacated: false,
            member_removed: false,
        };
        let Some(c) = self.occupied.get_mut(name) else {
            return left;
        };
        c.subscriptions = c.subscriptions.saturating_sub(1);
        if let Some(user) = member {
            if let Some(m) = c.members.get_mut(user) {
                m.connections -= 1;
                if m.connections == 0 {
                    c.members.remove(user);
                    left.member_removed = true;
                }
            }
        }
        if c.subscriptions == 0 {
            self.occupied.remove(name);
            left.vacated = true;
        }
        left
    }

    /// The occupied channel `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Channel> {
        self.occupied.get(name)
    }

    /// Occupied channels, subscriptions and presence members, summed.
    pub(crate) fn totals(&self) -> (usize, usize, usize) {
        let subs = self.occupied.values().map(|c| c.subscriptions).sum();
        let members = self.occupied.values().map(|c| c.members.len()).sum();
        (self.occupied.len(), subs, members)
    }

    /// Occupied channels whose names start with `prefix`.
    pub(crate) fn occupied<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Channel)> {
        self.occupied
            .iter()
            .filter(move |(n, _)| n.starts_with(prefix))
    }

    /// Would `user` be a new member of presence channel `name`, and how
    /// many members has it?
    pub(crate) fn members(&self, name: &str) -> (usize, Option<&Channel>) {
        let c = self.occupied.get(name);
        (c.map_or(0, |c| c.members.len()), c)
    }

    /// Keeps `message` as `name`'s last event, unless `max` channels hold
    /// one already (expired ones are dropped first). Returns whether kept.
    pub(crate) fn cache(
        &mut self,
        name: &str,
        message: Arc<str>,
        now: Instant,
        ttl: Duration,
        max: usize,
    ) -> bool {
        if self.cache.len() >= max && !self.cache.contains_key(name) {
            self.cache
                .retain(|_, (at, _)| now.duration_since(*at) < ttl);
            if self.cache.len() >= max {
                return false;
            }
        }
        self.cache.insert(name.to_owned(), (now, message));
        true
    }

    /// `name`'s last event, if kept and not older than `ttl`.
    pub(crate) fn cached(&mut self, name: &str, now: Instant, ttl: Duration) -> Option<Arc<str>> {
        match self.cache.get(name) {
            Some((at, m)) if now.duration_since(*at) < ttl => Some(m.clone()),
            Some(_) => {
                self.cache.remove(name);
                None
            }
            None => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_counts_users_not_connections() {
        let mut c = Channels::default();
        let j = c.join("presence-a", Some(("bob", Some("{\"n\":1}"))));
        assert_eq!((j.occupied, j.member_added), (true, true));
        let j = c.join("presence-a", Some(("bob", None)));
        assert_eq!((j.occupied, j.member_added), (false, false));
        let j = c.join("presence-a", Some(("ann", None)));
        assert_eq!((j.occupied, j.member_added), (false, true));
        assert_eq!(c.get("presence-a").unwrap().subscriptions, 3);
        assert_eq!(c.members("presence-a").0, 2);
        // The first connection's info stays.
        let info = c.get("presence-a").unwrap().members["bob"].info.clone();
        assert_eq!(info.as_deref(), Some("{\"n\":1}"));
        let l = c.leave("presence-a", Some("bob"));
        assert_eq!((l.vacated, l.member_removed), (false, false));
        let l = c.leave("presence-a", Some("bob"));
        assert_eq!((l.vacated, l.member_removed), (false, true));
        let l = c.leave("presence-a", Some("ann"));
        assert_eq!((l.vacated, l.member_removed), (true, true));
        assert!(c.get("presence-a").is_none());
        // Leaving what was never joined changes nothing.
        let l = c.leave("presence-a", Some("ann"));
        assert_eq!((l.vacated, l.member_removed), (false, false));
    }

    #[test]
    fn the_cache_is_bounded_and_expires() {
        let mut c = Channels::default();
        let t = Instant::now();
        let ttl = Duration::from_secs(10);
        assert!(c.cache("cache-a", "1".into(), t, ttl, 2));
        assert!(c.cache("cache-b", "2".into(), t, ttl, 2));
        assert!(!c.cache("cache-c", "3".into(), t, ttl, 2), "full");
        assert!(
            c.cache("cache-a", "4".into(), t, ttl, 2),
            "replacing is fine"
        );
        assert_eq!(c.cached("cache-a", t, ttl).as_deref(), Some("4"));
        let later = t + ttl;
        assert_eq!(c.cached("cache-a", later, ttl), None, "expired");
        // b expired too: room for c once it is pruned.
        assert!(c.cache("cache-c", "3".into(), later, ttl, 2));
    }
}
