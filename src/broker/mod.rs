//! Topics across nodes: a broker carries every publish to the other nodes
//! of a deployment and brings theirs to this node's subscribers.
//!
//! ```text
//!  worker threads                     broker thread (its own loop)
//!  ---------------                    ----------------------------
//!  Socket::publish ----frame------->  queue (bounded, drops counted)
//!   (local fan-out first)                |  envelope + frame, PUBLISH
//!                                        v  (pipelined, one connection
//!  topic 0 -> 1 subscribers -------> interest   per Redis instance)
//!  topic 1 -> 0 (per worker, once       |  SUBSCRIBE / UNSUBSCRIBE after
//!   per loop turn)                      |  a linger, batched
//!                                        v
//!  mailbox <--- frame (a slice of --- subscribing connection, always read:
//!   (only workers with subscribers;     drops its own node's messages,
//!    bounded, drops counted)            checks every frame
//! ```
//!
//! What it guarantees: a message published on one node reaches the
//! subscribers of its topic on every node whose broker connection is up,
//! at most once, and messages from one publisher (a connection, or one
//! thread calling [`ServerHandle::publish`](crate::ServerHandle::publish))
//! to one topic arrive in the order published, those that leave out a
//! connection on another node
//! ([`ServerHandle::publish_except`](crate::ServerHandle::publish_except))
//! among them. What it does not: delivery
//! while a node's connection to Redis is down, or messages a full queue
//! dropped (both counted, and a reconnect is told to the application
//! through [`App::on_broker_gap`](crate::App::on_broker_gap)); no history
//! is kept. Redis Pub/Sub itself is at-most-once.
//!
//! [`Redis`] is the broker there is; [`Broker`] is the interface another
//! (NATS, say) would implement, with no change to handlers.
//!
//! # Layout
//! * `mod.rs`: [`Broker`], [`Link`] (between the workers and the broker
//!   thread), [`Gap`].
//! * `redis/`: [`Redis`], its options and its thread.
//! * `interest.rs`: which topics the node subscribes and which workers
//!   want each.
//! * `envelope.rs`: the head in front of each frame between nodes.
//! * `shard.rs`: which of several Redis instances carries a topic.
//! * `url.rs`: Redis URLs.

mod envelope;
mod interest;
mod redis;
mod resolve;
mod shard;
mod url;

pub use redis::Redis;
pub use url::UrlError;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use crate::app::{ConnId, ServerHandle, Shared};
use crate::runtime::{BackendKind, Waker};

/// A way to carry topics between nodes ([`App::broker`](crate::App::broker)).
/// Implemented by [`Redis`]; the workers talk to any broker only through
/// the [`Link`] it is started with.
pub trait Broker: Send + 'static {
    /// Starts the broker's thread for a server that is starting, and
    /// returns once it runs (connecting may go on after: `/readyz` says
    /// when it is done).
    fn start(self: Box<Self>, link: Arc<Link>) -> std::io::Result<JoinHandle<()>>;

    /// Bytes of publishes that may wait for the broker's thread (see
    /// [`Redis::max_queue_bytes`]).
    fn max_queue_bytes(&self) -> usize;
}

/// What the application hears after a broker connection came back
/// ([`App::on_broker_gap`](crate::App::on_broker_gap)): messages published
/// on other nodes while it was down are lost for this node's subscribers.
#[derive(Debug, Clone)]
pub struct Gap {
    /// The instance, as its URL without a password.
    pub instance: String,
    /// How long this node could not receive from it.
    pub down_for: Duration,
}

/// The callback of [`App::on_broker_gap`](crate::App::on_broker_gap).
pub(crate) type GapFn = Box<dyn Fn(&ServerHandle, &Gap) + Send + Sync>;

/// The application's callbacks for messages from other nodes, by topic
/// ([`App::on_remote_publish`](crate::App::on_remote_publish)).
pub(crate) type Listeners = HashMap<String, Vec<ListenFn>>;
pub(crate) type ListenFn = Box<dyn Fn(&ServerHandle, &[u8]) + Send + Sync>;

/// A publish on its way to the broker thread.
pub(crate) struct Outgoing {
    pub(crate) topic: Arc<str>,
    pub(crate) frame: Bytes,
    /// A connection on another node that node leaves out.
    pub(crate) except: Option<ConnId>,
}

/// The broker's counts, for `/metrics`.
#[derive(Default)]
pub(crate) struct Counts {
    /// Messages handed to the broker (PUBLISH sent).
    pub(crate) published: AtomicU64,
    /// Messages from other nodes handed to this node's workers.
    pub(crate) received: AtomicU64,
    /// Publishes dropped: the queue to the broker thread was full.
    pub(crate) dropped_queue: AtomicU64,
    /// Publishes dropped: the instance was not connected.
    pub(crate) dropped_disconnected: AtomicU64,
    /// Publishes dropped: the instance was not reading (its connection's
    /// queue past [`Redis::max_pending_bytes`]).
    pub(crate) dropped_backpressure: AtomicU64,
    /// Publishes Redis answered with an error.
    pub(crate) dropped_refused: AtomicU64,
    /// Received messages a worker's full mailbox dropped.
    pub(crate) dropped_mailbox: AtomicU64,
    /// Received payloads that were no envelope this node reads.
    pub(crate) dropped_malformed: AtomicU64,
    /// Connections to Redis made again after one was lost.
    pub(crate) reconnects: AtomicU64,
    /// Topics subscribed in Redis now.
    pub(crate) topics: AtomicU64,
    /// Topics Redis refused to subscribe (an ACL on channels).
    pub(crate) refused_topics: AtomicU64,
    /// When the last probe was answered (ns since the Unix epoch; 0: never).
    pub(crate) probe_ok_ns: AtomicU64,
    /// Instances whose both connections are up and subscribed.
    pub(crate) instances_up: AtomicU64,
    /// Instances configured.
    pub(crate) instances: AtomicU64,
}

/// Between a server's workers and its broker thread: the queue of
/// publishes, the workers' interest, delivery to the workers, readiness
/// and counts. Made by [`App::start`](crate::App::start); a broker gets it
/// in [`Broker::start`].
pub struct Link {
    /// This node's id, in every envelope it sends: its own messages come
    /// back from Redis and are dropped by it.
    pub(crate) node: u64,
    pub(crate) backend: BackendKind,
    tx: mpsc::Sender<Outgoing>,
    rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    queued: AtomicUsize,
    max_queued: usize,
    /// Interest changes not yet taken by the broker: the last word of each
    /// worker on each topic (bounded by the topics, however fast they
    /// churn).
    interest: Mutex<HashMap<(usize, Arc<str>), bool>>,
    pub(crate) waker: Arc<Waker>,
    server: OnceLock<Weak<Shared>>,
    ready: AtomicBool,
    /// Why not ready, for `/readyz?verbose`.
    status: Mutex<String>,
    stop: AtomicBool,
    pub(crate) gap: OnceLock<GapFn>,
    /// Set once at start: the topics the application listens to.
    pub(crate) listeners: OnceLock<Listeners>,
    pub(crate) counts: Counts,
}

impl Link {
    pub(crate) fn new(node: u64, max_queued: usize, backend: BackendKind) -> std::io::Result<Link> {
        let (tx, rx) = mpsc::channel();
        Ok(Link {
            node,
            backend,
            tx,
            rx: Mutex::new(Some(rx)),
            queued: AtomicUsize::new(0),
            max_queued,
            interest: Mutex::new(HashMap::new()),
            waker: Arc::new(Waker::new()?),
            server: OnceLock::new(),
            ready: AtomicBool::new(false),
            status: Mutex::new("not connected yet".to_owned()),
            stop: AtomicBool::new(false),
            gap: OnceLock::new(),
            listeners: OnceLock::new(),
            counts: Counts::default(),
        })
    }

    pub(crate) fn set_server(&self, s: &Arc<Shared>) {
        let _ = self.server.set(Arc::downgrade(s));
    }

    /// Queues a publish for the other nodes; false if the queue was full
    /// (dropped and counted).
    pub(crate) fn publish(&self, topic: Arc<str>, frame: Bytes, except: Option<ConnId>) -> bool {
        let n = frame.len();
        if self.queued.fetch_add(n, Ordering::Relaxed) >= self.max_queued {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.counts.dropped_queue.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let sent = self
            .tx
            .send(Outgoing {
                topic,
                frame,
                except,
            })
            .is_ok();
        if sent {
            self.waker.wake();
        }
        sent
    }

    /// The broker thread's end of the publish queue (taken once).
    pub(crate) fn take_queue(&self) -> Option<mpsc::Receiver<Outgoing>> {
        self.rx.lock().expect("not poisoned").take()
    }

    /// The broker thread took a publish of `bytes` off the queue.
    pub(crate) fn took(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Worker `worker`'s topics that gained their first local subscriber
    /// (`true`) or lost their last (`false`), in order.
    pub(crate) fn interest(&self, worker: usize, changes: &mut Vec<(Arc<str>, bool)>) {
        {
            let mut m = self.interest.lock().expect("not poisoned");
            for (t, on) in changes.drain(..) {
                m.insert((worker, t), on);
            }
        }
        self.waker.wake();
    }

    /// The interest changes since the last call.
    pub(crate) fn take_interest(&self) -> HashMap<(usize, Arc<str>), bool> {
        std::mem::take(&mut *self.interest.lock().expect("not poisoned"))
    }

    /// Hands `frame` to the subscribers of `topic` on `workers`; how many
    /// workers' mailboxes were full (their subscribers miss it).
    pub(crate) fn deliver(
        &self,
        topic: &Arc<str>,
        frame: &Bytes,
        workers: impl Iterator<Item = usize>,
        except: Option<ConnId>,
    ) -> usize {
        let Some(s) = self.server.get().and_then(Weak::upgrade) else {
            return 0;
        };
        let mut dropped = 0;
        // One compressed form for the whole node (encode once).
        let z = s.shared_z();
        // A connection of this node left out, on its own thread.
        let except = except
            .filter(|c| c.node == self.node)
            .and_then(|c| c.place(s.threads()));
        for i in workers {
            let skip = except.filter(|&(w, _)| w == i).map(|(_, id)| id);
            let cmd = crate::app::publish_command(topic.clone(), frame.clone(), z.clone(), skip);
            if !s.command_frame(i, frame.len(), cmd) {
                dropped += 1;
            }
        }
        dropped
    }

    /// The application's callbacks for `topic`, if it listens to it.
    pub(crate) fn listeners(&self, topic: &str) -> Option<&[ListenFn]> {
        self.listeners.get()?.get(topic).map(Vec::as_slice)
    }

    /// Every topic the application listens to (subscribed for good).
    pub(crate) fn listened(&self) -> impl Iterator<Item = &String> {
        self.listeners.get().into_iter().flat_map(|l| l.keys())
    }

    /// The server, for the gap callback (`None` once it is gone).
    pub(crate) fn server(&self) -> Option<ServerHandle> {
        self.server
            .get()
            .and_then(Weak::upgrade)
            .map(|shared| ServerHandle { shared })
    }

    /// Every instance connected and subscribed (`/readyz`), with why not.
    pub(crate) fn set_ready(&self, ready: bool, status: String) {
        self.ready.store(ready, Ordering::Relaxed);
        *self.status.lock().expect("not poisoned") = status;
    }

    pub(crate) fn ready(&self) -> (bool, String) {
        (
            self.ready.load(Ordering::Relaxed),
            self.status.lock().expect("not poisoned").clone(),
        )
    }

    /// Asks the broker thread to stop.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake();
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A random node id: two nodes (or two servers in one process) never share
/// one, so each drops exactly its own messages.
pub(crate) fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // RandomState's keys come from the OS's random source, once per
    // process, and differ per instance after that.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
