//! [`ServerHandle`], a running server from any thread: its address, its
//! counts and metrics, health, publishing, draining and stopping; and
//! [`ServerStats`], the counts it sums.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::stats;
use super::worker::Command;
use super::{ConnId, Health, Message, Reach, SendStatus, Shared};

/// What a server has done since it started, over all its threads
/// ([`ServerHandle::stats`]). Each worker publishes its counts once per
/// loop turn, so they may lag by one turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections open now.
    pub connections: u64,
    /// TCP connections accepted.
    pub accepted: u64,
    /// Messages received (whole, after reassembly).
    pub messages_received: u64,
    /// Messages queued to connections: every send, and one per subscriber
    /// a publish reached (deliveries).
    pub messages_sent: u64,
    /// Writes handed to the kernel: io_uring send ops, or `sendmsg` calls
    /// on epoll. Everything queued to one connection in one loop turn goes
    /// in one, so `messages_sent / writes` says how well output gathers.
    pub writes: u64,
    /// Bytes handed to the kernel to send (frames and HTTP responses).
    pub bytes_written: u64,
    /// Bytes read from connections.
    pub bytes_read: u64,
}

impl ServerStats {
    /// The counts since `earlier` (connections: as of now).
    pub fn since(&self, earlier: &ServerStats) -> ServerStats {
        ServerStats {
            connections: self.connections,
            accepted: self.accepted.saturating_sub(earlier.accepted),
            messages_received: self
                .messages_received
                .saturating_sub(earlier.messages_received),
            messages_sent: self.messages_sent.saturating_sub(earlier.messages_sent),
            writes: self.writes.saturating_sub(earlier.writes),
            bytes_written: self.bytes_written.saturating_sub(earlier.bytes_written),
            bytes_read: self.bytes_read.saturating_sub(earlier.bytes_read),
        }
    }
}

/// The log line of [`Config::stats_interval`](crate::Config::stats_interval): rates over `dt`.
pub(super) fn log_stats(d: &ServerStats, dt: Duration) {
    let per_s = |n: u64| n as f64 / dt.as_secs_f64().max(1e-9);
    tracing::info!("stats: {} connections, {:.0} accepted/s, {:.0} msgs/s in, {:.0} msgs/s out in {:.0} writes/s ({:.1} msgs per write), {:.1} MB/s out", d.connections, per_s(d.accepted), per_s(d.messages_received), per_s(d.messages_sent), per_s(d.writes), d.messages_sent as f64 / d.writes.max(1) as f64, per_s(d.bytes_written) / 1e6);
}

/// A running server, from any thread: `Send + Sync + Clone`.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        *self.shared.addr.get().expect("set at start")
    }

    /// The admin listener's address (`Config::admin_listen`, with the real
    /// port when 0 was asked for), if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        let a = self.shared.admin.lock().expect("not poisoned");
        a.as_ref().map(|a| a.addr)
    }

    /// The backend the workers run on, with the features in use.
    pub fn backend(&self) -> &str {
        self.shared.backend.get().map_or("", String::as_str)
    }

    /// Connections open now, over all threads.
    pub fn connections(&self) -> usize {
        self.shared.open_total.load(Ordering::Relaxed)
    }

    /// What the server has done since it started, summed over its threads.
    pub fn stats(&self) -> ServerStats {
        let mut t = ServerStats {
            connections: self.connections() as u64,
            ..ServerStats::default()
        };
        for w in &self.shared.stats {
            w.add_to(&mut t);
        }
        t
    }

    /// The server's metrics in Prometheus's text format (0.0.4), what
    /// `/metrics` serves: connections, handshakes refused by status, closes
    /// by reason, messages and bytes each way, writes, backpressure and
    /// drops, compression, each worker's loop turns, and the process's
    /// memory, descriptors and CPU time. Summed from each worker's counts
    /// as they are now: no loop stops for it. Serve it wherever you like,
    /// with `Content-Type: text/plain; version=0.0.4`.
    pub fn metrics(&self) -> String {
        stats::render(self)
    }

    /// The liveness check (`/livez`): every worker's loop has turned within
    /// [`Config::stall_timeout`](crate::Config::stall_timeout); a stuck worker fails it.
    pub fn livez(&self) -> Health {
        stats::livez(&self.shared)
    }

    /// The readiness check (`/readyz`): listening, and not draining.
    pub fn readyz(&self) -> Health {
        stats::readyz(&self.shared)
    }

    /// Starts draining without stopping: `/readyz` fails from now on, so a
    /// load balancer stops sending new connections, while everything open
    /// goes on until [`ServerHandle::shutdown`]. What `App::run` does at
    /// SIGTERM before `Config::drain_delay` and the shutdown.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
    }

    /// Sends `msg` to every subscriber of `topic` on every thread: one
    /// message per thread, the frame encoded once. Messages published from
    /// one thread arrive in the order published. `Dropped` if a thread's
    /// mailbox held [`Config::max_mailbox_bytes`](crate::Config::max_mailbox_bytes) already (that thread's
    /// subscribers miss this message).
    pub fn publish<'m>(&self, topic: &str, msg: impl Into<Message<'m>>) -> SendStatus {
        let z = self.shared.shared_z();
        self.shared
            .publish(None, topic, msg.into().frame(), z, None, Reach::Nodes)
    }

    /// Sends `msg` to every subscriber of `topic` on every thread and every
    /// node but the connection `except` names, wherever it is: on this
    /// node it is left out here, on another the envelope tells that node
    /// to leave it out. For a message sent on a connection's behalf by
    /// whatever node took it (a gateway's HTTP API excluding the sender's
    /// socket), in the same order as the publisher's other messages: no
    /// detour through the node that holds the connection. An id that names
    /// no open connection leaves no one out.
    pub fn publish_except<'m>(
        &self,
        topic: &str,
        msg: impl Into<Message<'m>>,
        except: ConnId,
    ) -> SendStatus {
        let z = self.shared.shared_z();
        let frame = msg.into().frame();
        self.shared
            .publish(None, topic, frame, z, Some(except), Reach::Nodes)
    }

    /// This node's id: the `node` of its connections' [`ConnId`]s, and in
    /// the envelope of everything its broker publishes. Random, different
    /// for every server started, so never shared by two nodes.
    pub fn node(&self) -> u64 {
        self.shared.node
    }

    /// Sends `msg` to every subscriber of `topic` on this node's threads
    /// only, never through the broker: for what every node works out for
    /// its own subscribers from state the nodes share (a gateway's
    /// presence announcements, each node's from its own view), which would
    /// arrive twice if each node also told the others. Without a broker it
    /// is [`ServerHandle::publish`].
    pub fn publish_local<'m>(&self, topic: &str, msg: impl Into<Message<'m>>) -> SendStatus {
        let z = self.shared.shared_z();
        self.shared
            .publish(None, topic, msg.into().frame(), z, None, Reach::Node)
    }

    /// SIGHUP under [`App::run`](super::App::run): reloads what can be
    /// reloaded (the TLS files); every connection stays open.
    pub(crate) fn hangup(&self) {
        #[cfg(feature = "tls")]
        if self.shared.cfg.tls.is_some() {
            tracing::info!("SIGHUP: reloading the TLS certificates");
            // A failure is logged and counted by reload_tls.
            let _ = self.reload_tls();
            return;
        }
        tracing::info!("SIGHUP: nothing to reload; every connection stays open");
    }

    /// Stops accepting, sends every connection a Close (1001), waits up to
    /// `grace` for the closing handshakes, cuts what is left, and joins the
    /// workers. Later calls (from any clone) return at once.
    pub fn shutdown(&self, grace: Duration) {
        self.drain();
        for i in 0..self.shared.mailboxes.len() {
            self.shared.command(i, Command::Shutdown { grace });
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().expect("not poisoned"));
        for t in threads {
            let _ = t.join();
        }
        self.shared.stop_broker();
        self.shared.stopped.store(true, Ordering::Relaxed);
        if let Some(mut a) = self.shared.admin.lock().expect("not poisoned").take() {
            a.stop();
        }
    }
}
