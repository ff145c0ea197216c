//! The application API: [`App`] routes connections by path to a
//! [`Handler`], which sees each connection through a [`Socket`].
//!
//! The behaviour follows uWebSockets' `App` and `WebSocketBehavior`:
//!
//! * an upgrade hook per route ([`Handler::upgrade`]) that sees the request
//!   and accepts (with the connection's user data, a subprotocol, extra
//!   headers), rejects (an HTTP status and body), or defers the decision to
//!   any thread ([`Upgrade::defer`]);
//! * callbacks for `open`, `message`, `drain`, `ping`, `pong` and `close`,
//!   all on the connection's own worker thread, with nothing shared on the
//!   way;
//! * sends that return a [`SendStatus`], a send-queue limit per route
//!   (`max_backpressure`) with a policy, and `drain` once the queue is back
//!   below it;
//! * an implicit cork: everything sent during one loop turn leaves in one
//!   write per connection;
//! * topics: [`Socket::subscribe`], [`Socket::publish`] and
//!   [`ServerHandle::publish`] with frames encoded once and shared;
//! * [`SocketRef`] and [`ServerHandle`] to send, publish and close from any
//!   thread or async task;
//! * an idle timeout with automatic Pings;
//! * plain HTTP routes on the same listener ([`App::get`], [`App::post`],
//!   [`App::http`]): a request that is not a WebSocket upgrade goes to
//!   them, with keep-alive, bodies, and answers from any thread
//!   ([`HttpReply::defer`]).
//!
//! # Layout
//! * `mod.rs`: [`App`], [`Route`], the [`Handler`] trait, [`Closed`].
//! * `upgrade.rs`: [`Request`], [`Upgrade`], [`Accept`], [`Reject`],
//!   [`Deferred`].
//! * `http.rs`: [`HttpRequest`], [`HttpResponse`], [`HttpReply`],
//!   [`HttpResponder`]; the HTTP route table.
//! * `socket.rs`: [`Socket`], [`SocketRef`], [`Message`], [`SendStatus`].
//! * `topics.rs`: the per-thread subscription tables.
//! * `server.rs`: [`ServerHandle`] and [`ServerStats`].
//! * `stats.rs`: the counts behind `/metrics` and the health checks.
//! * `admin.rs`: the admin listener.
//! * `tls.rs`: the TLS configuration's loading and reloads (`tls`
//!   feature).
//! * `worker.rs`: each worker thread's side: the loop's handler, dispatch
//!   by socket slot, commands from other threads, shutdown.
//! * `handshake.rs`: the request head, routing (upgrade or plain HTTP),
//!   the upgrade hook's outcome, HTTP bodies, responses and keep-alive,
//!   refusals.
//! * `route.rs`: a route's state on one worker and the read path into the
//!   callbacks, timers, closing.
//! * `conn.rs`: a connection's state; callbacks run under a panic guard.
//! * `ctx.rs`: what every route may use: slots, topics, the local fan-out.
//! * `out.rs`: frames onto the runtime's `Outbox`, and the zero-copy echo.
//! * `compressed.rs`: permessage-deflate compressors and compressed frames.

mod admin;
mod compressed;
mod conn;
mod ctx;
mod handshake;
mod http;
mod out;
mod route;
mod server;
mod socket;
mod stats;
#[cfg(feature = "tls")]
mod tls;
mod topics;
mod upgrade;
mod worker;

pub use admin::MAX_ADMIN_CONNS;
pub use http::{HttpReply, HttpRequest, HttpResponder, HttpResponse};
pub use server::{ServerHandle, ServerStats};
pub(crate) use socket::data_payload;
pub use socket::{ConnId, Gone, Message, SendStatus, Socket, SocketRef};
pub use stats::Health;
pub use upgrade::{Accept, Deferred, Reject, Request, Upgrade};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::runtime::{self, Signal, StartError, StopSignals, Waker};
use route::{RouteCfg, RouteRt, RouteState};
use server::log_stats;
use worker::{Command, Worker};

/// What a route does with its connections. Every method but
/// [`Handler::upgrade`] has a default that does nothing; all run on the
/// connection's worker thread, so the handler is shared (`Sync`) and keeps
/// per-connection state in [`Handler::Data`].
///
/// A panic in a callback is caught and logged and costs only its own
/// connection: what the callback queued before it panicked is sent, then
/// Close 1011 (a panic in [`Handler::upgrade`], or in a deferred decision,
/// is answered with 500). The worker thread and its other connections go
/// on. (Unless the program is built with `panic = "abort"`.)
pub trait Handler: Send + Sync + 'static {
    /// The user data of each connection, made by the upgrade hook and
    /// handed to [`Handler::close`] (and so dropped) exactly once.
    type Data: 'static;

    /// Decides on an upgrade request to this route.
    fn upgrade(&self, req: &Request<'_>) -> Upgrade<Self::Data>;

    /// The connection is open (the 101 is queued ahead of anything sent
    /// here).
    fn open(&self, _ws: &mut Socket<'_, Self::Data>) {}

    /// A whole message arrived: borrowed from the read buffer when it came
    /// in one piece, so that sending it back ([`Socket::send`]) copies
    /// nothing.
    fn message(&self, _ws: &mut Socket<'_, Self::Data>, _msg: Message<'_>) {}

    /// The send queue, past `max_backpressure` at a send, is back within it.
    fn drain(&self, _ws: &mut Socket<'_, Self::Data>) {}

    /// Half the route's idle timeout has passed in silence (and
    /// [`Route::send_pings`] is on): by default sends a Ping, which a live
    /// peer answers. Override to ask at the application's level instead
    /// (Pusher's `pusher:ping`): anything the peer sends keeps the
    /// connection; silence for the rest of the timeout closes it with
    /// [`Route::idle_close`]'s code.
    fn idle(&self, ws: &mut Socket<'_, Self::Data>) {
        ws.ping(b"");
    }

    /// A Ping arrived (its Pong is already queued).
    fn ping(&self, _ws: &mut Socket<'_, Self::Data>, _payload: &[u8]) {}

    /// A Pong arrived.
    fn pong(&self, _ws: &mut Socket<'_, Self::Data>, _payload: &[u8]) {}

    /// The connection has ended (or can no longer be sent to), with its
    /// user data: [`Closed::code`] is the peer's close code, 1005 if its
    /// Close had none, our own code if the peer never answered ours, or
    /// 1006 if the TCP connection ended without a closing handshake. Runs
    /// exactly once per opened connection. [`Closed::publish`] tells the
    /// others (a chat's "left" line) without keeping a server handle.
    fn close(&self, _data: Self::Data, _closed: &Closed<'_>) {}
}

/// How a connection ended, for [`Handler::close`].
pub struct Closed<'a> {
    /// The close code (see [`Handler::close`]).
    pub code: u16,
    /// The close reason (empty if none).
    pub reason: &'a str,
    pub(crate) shared: &'a Arc<Shared>,
}

impl Closed<'_> {
    /// Sends `msg` to every subscriber of `topic` on every thread, as
    /// [`ServerHandle::publish`] (this connection has left its topics).
    pub fn publish<'m>(&self, topic: &str, msg: impl Into<Message<'m>>) -> SendStatus {
        let z = self.shared.shared_z();
        self.shared
            .publish(None, topic, msg.into().frame(), z, None, Reach::Nodes)
    }

    /// The server, for anything else.
    pub fn server(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }
}

/// What a send does when the connection's queue is already past the
/// route's `max_backpressure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackpressurePolicy {
    /// Drop the message: the send returns [`SendStatus::Dropped`] and
    /// [`Handler::drain`] follows once the queue is back within the limit.
    Drop,
    /// Close the connection with 1008 (logged): a consumer this slow is
    /// not wanted.
    Close,
}

/// A route: a path pattern, its handler and its limits.
pub struct Route<H: Handler> {
    path: String,
    prefix: bool,
    handler: Arc<H>,
    max_backpressure: Option<usize>,
    policy: BackpressurePolicy,
    idle_timeout: Option<Duration>,
    send_pings: bool,
    idle_close: (u16, Arc<str>),
    shutdown_close: (u16, Arc<str>),
    deflate: Option<crate::config::DeflateMode>,
}

impl<H: Handler> Route<H> {
    /// Requests for exactly `path` (the query aside).
    pub fn exact(path: impl Into<String>, handler: H) -> Route<H> {
        Route::new(path.into(), false, handler)
    }

    /// Requests for `prefix` and everything below it: `/api` takes `/api`
    /// and `/api/x` but not `/apix`; `/` takes every path. The longest
    /// matching prefix wins, and an exact route beats every prefix.
    pub fn prefix(prefix: impl Into<String>, handler: H) -> Route<H> {
        Route::new(prefix.into(), true, handler)
    }

    fn new(path: String, prefix: bool, handler: H) -> Route<H> {
        Route {
            path,
            prefix,
            handler: Arc::new(handler),
            max_backpressure: None,
            policy: BackpressurePolicy::Drop,
            idle_timeout: None,
            send_pings: true,
            idle_close: (1001, Arc::from("idle timeout")),
            shutdown_close: (1001, Arc::from("server shutting down")),
            deflate: None,
        }
    }

    /// permessage-deflate on this route: off, shared or dedicated (see
    /// [`Config::deflate`]). Default: [`Config::deflate`].
    pub fn deflate(mut self, mode: crate::config::DeflateMode) -> Self {
        self.deflate = Some(mode);
        self
    }

    /// Bytes a connection's send queue may hold before sends report
    /// [`SendStatus::Backpressure`] and then apply the policy. Default:
    /// [`Config::max_backpressure`].
    pub fn max_backpressure(mut self, bytes: usize) -> Self {
        self.max_backpressure = Some(bytes);
        self
    }

    /// What a send past the limit does. Default [`BackpressurePolicy::Drop`].
    pub fn on_backpressure(mut self, policy: BackpressurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Silence after which a connection is closed with 1001 (zero: never).
    /// Default: [`Config::idle_timeout`].
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = Some(t);
        self
    }

    /// Send a Ping after half the idle timeout in silence, so a live peer
    /// answers and keeps the connection. Default on.
    pub fn send_pings(mut self, on: bool) -> Self {
        self.send_pings = on;
        self
    }

    /// The Close code and reason when the idle timeout passes. Default
    /// 1001 "idle timeout"; a protocol on top may have its own (Pusher's
    /// 4201 "Pong reply not received").
    pub fn idle_close(mut self, code: u16, reason: impl Into<String>) -> Self {
        self.idle_close = (code, Arc::from(reason.into()));
        self
    }

    /// The Close code and reason this route's connections get when the
    /// server shuts down. Default 1001 "server shutting down"; a protocol
    /// on top may have its own (Pusher's 4200, "reconnect now").
    pub fn shutdown_close(mut self, code: u16, reason: impl Into<String>) -> Self {
        self.shutdown_close = (code, Arc::from(reason.into()));
        self
    }
}

/// A route as the threads share it.
struct RouteEntry {
    path: String,
    prefix: bool,
    cfg: RouteCfg,
    /// Makes the route's per-thread state.
    make: Box<dyn Fn(u32) -> Box<dyn RouteRt> + Send + Sync>,
}

/// What every thread of a server shares: read-only but for the counter,
/// the mailboxes and the join handles.
pub(crate) struct Shared {
    cfg: Arc<Config>,
    routes: Vec<RouteEntry>,
    http: Vec<http::HttpRoute>,
    mailboxes: Vec<mpsc::Sender<Command>>,
    /// Bytes of frames waiting in each worker's mailbox, bounded by
    /// [`Config::max_mailbox_bytes`].
    queued: Vec<AtomicUsize>,
    wakers: Vec<Arc<Waker>>,
    /// Each worker's counts (see [`stats`]).
    pub(crate) stats: Vec<stats::WorkerStats>,
    /// Frames dropped at full mailboxes, from any thread.
    mailbox_drops: AtomicU64,
    /// Set when the server starts to shut down: `/readyz` fails from then.
    draining: AtomicBool,
    /// Set once the workers are stopped.
    stopped: AtomicBool,
    open_total: AtomicUsize,
    addr: OnceLock<SocketAddr>,
    backend: OnceLock<String>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The admin listener, when `Config::admin_listen` asks for one.
    admin: Mutex<Option<admin::Admin>>,
    /// TLS, when `Config::tls` asks for it.
    #[cfg(feature = "tls")]
    tls: Option<tls::TlsState>,
    /// This node's id: in every envelope its broker sends, and in its
    /// connections' [`ConnId`]s.
    pub(crate) node: u64,
    /// The broker, when [`App::broker`] gave one, and its thread.
    pub(crate) broker: Option<Arc<crate::broker::Link>>,
    broker_thread: Mutex<Option<JoinHandle<()>>>,
    /// Some route may compress (permessage-deflate): publishes carry a
    /// cell for their compressed form ([`Shared::shared_z`]).
    deflates: bool,
    /// The application's own `/metrics` families.
    pub(crate) metrics: Option<MetricsFn>,
}

impl Shared {
    /// The TLS state, when the server has TLS.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(&self) -> Option<&tls::TlsState> {
        self.tls.as_ref()
    }

    /// Puts `cmd` in worker `i`'s mailbox and wakes it.
    pub(crate) fn command(&self, i: usize, cmd: Command) {
        if self.mailboxes[i].send(cmd).is_ok() {
            self.wakers[i].wake();
        }
    }

    /// Puts `cmd`, which carries a frame of `bytes`, in worker `i`'s
    /// mailbox, unless the frames already waiting there reach
    /// [`Config::max_mailbox_bytes`]: a thread that produces faster than
    /// the worker sends cannot grow its memory without bound. Returns
    /// whether it was queued.
    pub(crate) fn command_frame(&self, i: usize, bytes: usize, cmd: Command) -> bool {
        let q = &self.queued[i];
        if q.fetch_add(bytes, Ordering::Relaxed) >= self.cfg.max_mailbox_bytes {
            q.fetch_sub(bytes, Ordering::Relaxed);
            self.mailbox_drops.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.command(i, cmd);
        true
    }

    /// The worker threads.
    pub(crate) fn threads(&self) -> usize {
        self.mailboxes.len()
    }

    /// Worker `i` took a frame of `bytes` from its mailbox.
    pub(crate) fn took(&self, i: usize, bytes: usize) {
        self.queued[i].fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Sends `frame` to `topic`'s subscribers on every thread but `skip`:
    /// one mailbox message per thread. `Dropped` if some thread's mailbox
    /// was full (its subscribers miss this one).
    /// With a broker and [`Reach::Nodes`], `frame` goes to the other nodes
    /// too. `z` is the frame's compressed form shared by the threads (from
    /// [`Shared::shared_z`]); `except` a connection left out, on this node
    /// or (told in the envelope) on the node that holds it.
    pub(crate) fn publish(
        &self,
        skip: Option<usize>,
        topic: &str,
        frame: Bytes,
        z: Option<compressed::SharedZ>,
        except: Option<ConnId>,
        reach: Reach,
    ) -> SendStatus {
        let n = self.mailboxes.len();
        let broker = self.broker.as_ref().filter(|_| reach == Reach::Nodes);
        if n == 1 && skip == Some(0) && broker.is_none() {
            return SendStatus::Sent;
        }
        let (here, there) = match except {
            Some(c) if c.node == self.node => (c.place(n), None),
            other => (None, other),
        };
        let topic: Arc<str> = Arc::from(topic);
        let mut status = SendStatus::Sent;
        if let Some(b) = broker {
            if !b.publish(topic.clone(), frame.clone(), there) {
                status = SendStatus::Dropped;
            }
        }
        for i in (0..n).filter(|&i| Some(i) != skip) {
            let cmd = Command::Publish {
                topic: topic.clone(),
                frame: frame.clone(),
                z: z.clone(),
                except: here.filter(|&(w, _)| w == i).map(|(_, id)| id),
            };
            if !self.command_frame(i, frame.len(), cmd) {
                status = SendStatus::Dropped;
            }
        }
        status
    }

    /// A cell for one published frame's compressed form, shared by the
    /// threads; `None` when no route compresses (nothing to share, nothing
    /// allocated).
    pub(crate) fn shared_z(&self) -> Option<compressed::SharedZ> {
        self.deflates.then(compressed::SharedZ::default)
    }

    /// Stops the broker's thread, once the workers are done.
    fn stop_broker(&self) {
        if let Some(b) = &self.broker {
            b.stop();
        }
        if let Some(t) = self.broker_thread.lock().expect("not poisoned").take() {
            let _ = t.join();
        }
    }

    /// Is the server shutting down (`/readyz` failing)?
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Have the workers stopped?
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// The route for `path`: an exact one, else the longest prefix.
    fn route_for(&self, path: &str) -> Option<u32> {
        let mut best: Option<(usize, u32)> = None;
        for (i, r) in self.routes.iter().enumerate() {
            let Some(score) = path_score(&r.path, r.prefix, path) else {
                continue;
            };
            if score == usize::MAX {
                return Some(i as u32);
            }
            if best.is_none_or(|(l, _)| score > l) {
                best = Some((score, i as u32));
            }
        }
        best.map(|(_, i)| i)
    }
}

/// The mailbox message that hands a frame from the broker to a worker's
/// subscribers of `topic`; `z` as [`Shared::publish`] takes it.
/// How far a publish goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reach {
    /// Every thread, and with a broker every node.
    Nodes,
    /// This node's threads only: what each node works out for itself
    /// (a gateway's presence announcements) and must not hear twice.
    Node,
}

pub(crate) fn publish_command(
    topic: Arc<str>,
    frame: Bytes,
    z: Option<compressed::SharedZ>,
    except: Option<crate::runtime::io::SockId>,
) -> Command {
    Command::Publish {
        topic,
        frame,
        z,
        except,
    }
}

/// How well the pattern `pattern` (a `prefix` or not) matches `path`:
/// `None` if it does not, `usize::MAX` for an exact route, else the
/// prefix's length (the longest wins). A prefix `/api` takes `/api` and
/// `/api/x` but not `/apix`.
fn path_score(pattern: &str, prefix: bool, path: &str) -> Option<usize> {
    if !prefix {
        return (pattern == path).then_some(usize::MAX);
    }
    let p = pattern.trim_end_matches('/');
    let hit = path == p || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/'));
    hit.then_some(p.len())
}

/// A server's routes and configuration, to start.
///
/// ```no_run
/// use ringws::app::{App, Echo, HttpResponse};
/// use ringws::Config;
///
/// App::new(Config::default())
///     .route_prefix("/", Echo)
///     .get("/health", |_req| HttpResponse::text(200, "ok\n"))
///     .run()
///     .unwrap();
/// ```
///
/// A request is routed by its head: a GET with `Upgrade: websocket` to
/// the WebSocket route for its path (if there is one), anything else to the
/// HTTP routes. A path no route takes is answered 404; a path the HTTP
/// routes take, but not with the request's method, 405 with `Allow`. A
/// request that is not an upgrade, for a path only a WebSocket route
/// takes, is refused as the upgrade check refuses it (400 with the reason,
/// such as a missing `Upgrade` header). Every refusal closes the
/// connection; a response keeps it for the next request unless the client
/// said otherwise.
pub struct App {
    cfg: Config,
    routes: Vec<RouteEntry>,
    http: Vec<http::HttpRoute>,
    broker: Option<Box<dyn crate::broker::Broker>>,
    gap: Option<crate::broker::GapFn>,
    metrics: Option<MetricsFn>,
    remote: crate::broker::Listeners,
}

/// An application's own `/metrics` families ([`App::metrics`]).
pub(crate) type MetricsFn = Box<dyn Fn(&mut crate::metrics::Exposition) + Send + Sync>;

impl App {
    /// An app with no routes yet: every request is answered 404.
    pub fn new(cfg: Config) -> App {
        App {
            cfg,
            routes: Vec::new(),
            http: Vec::new(),
            broker: None,
            gap: None,
            metrics: None,
            remote: crate::broker::Listeners::new(),
        }
    }

    /// Calls `f` on the broker's thread with the payload of each message
    /// another node publishes to `topic` ([`ServerHandle::publish`] or
    /// [`Socket::publish`] there), whether or not this node has
    /// subscribers for it: how nodes of one application tell each other
    /// things (a gateway's presence members, a command for the node that
    /// holds a connection). The node subscribes to `topic` in the broker
    /// from the start and for good. Messages this node publishes do not
    /// come back to it. Without [`App::broker`] there are no other nodes
    /// and `f` is never called. Keep `f` short: the broker's thread (all of
    /// this node's traffic from other nodes) waits for it.
    pub fn on_remote_publish<F>(mut self, topic: impl Into<String>, f: F) -> App
    where
        F: Fn(&ServerHandle, &[u8]) + Send + Sync + 'static,
    {
        self.remote
            .entry(topic.into())
            .or_default()
            .push(Box::new(f));
        self
    }

    /// Adds the application's own families to `/metrics` (on the admin
    /// listener and [`App::admin_routes`]): `f` runs at each scrape, on the
    /// thread that answers it, after ringws's families, and writes with
    /// [`Exposition::family`](crate::metrics::Exposition::family) and
    /// [`sample`](crate::metrics::Exposition::sample). Name the families
    /// with a prefix of the application's own, and keep `f` to reading
    /// counters: a scrape waits for it.
    pub fn metrics<F>(mut self, f: F) -> App
    where
        F: Fn(&mut crate::metrics::Exposition) + Send + Sync + 'static,
    {
        self.metrics = Some(Box::new(f));
        self
    }

    /// Shares topics with the other nodes through `broker` (a
    /// [`Redis`](crate::broker::Redis)): [`Socket::publish`] and
    /// [`ServerHandle::publish`] reach the subscribers on every node given
    /// the same broker, at most once, in order per publisher; the
    /// [`broker`](crate::broker) module says what is and is not
    /// guaranteed. `/readyz` fails until the broker is connected and
    /// subscribed, and `/metrics` gains the `ringws_broker_*` families.
    pub fn broker(mut self, broker: impl crate::broker::Broker) -> App {
        self.broker = Some(Box::new(broker));
        self
    }

    /// Calls `f` on the broker's thread each time a broker connection comes
    /// back after it was lost: messages published on other nodes meanwhile
    /// never reached this node's subscribers, and the application may want
    /// to tell them (a "reload" message) or fill the gap from its own
    /// store. Keep it short: the broker waits for it.
    pub fn on_broker_gap<F>(mut self, f: F) -> App
    where
        F: Fn(&ServerHandle, &crate::broker::Gap) + Send + Sync + 'static,
    {
        self.gap = Some(Box::new(f));
        self
    }

    /// Serves GET (and HEAD, without the body) requests for exactly `path`
    /// with `f`, on the listener's plain HTTP side.
    pub fn get<F, R>(self, path: impl Into<String>, f: F) -> App
    where
        F: Fn(&HttpRequest<'_>) -> R + Send + Sync + 'static,
        R: Into<HttpReply>,
    {
        self.http("GET", path, f)
    }

    /// Serves `/metrics`, `/livez` and `/readyz` on this listener, as the
    /// admin listener ([`Config::admin_listen`]) does on its own: for an
    /// application whose listener is private already, or that guards them
    /// itself. Paths taken by routes added before this keep their routes.
    pub fn admin_routes(self) -> App {
        let mut app = self;
        for path in ["/metrics", "/livez", "/readyz"] {
            app = app.get(path, move |req: &HttpRequest<'_>| {
                let (status, ctype, body) =
                    admin::answer(req.server(), path, req.query()).expect("one of the three");
                HttpResponse::new(status)
                    .header("Content-Type", ctype)
                    .body(body)
            });
        }
        app
    }

    /// Serves POST requests for exactly `path` with `f`; the body, at most
    /// [`Config::max_http_body`], is in [`HttpRequest::body`].
    pub fn post<F, R>(self, path: impl Into<String>, f: F) -> App
    where
        F: Fn(&HttpRequest<'_>) -> R + Send + Sync + 'static,
        R: Into<HttpReply>,
    {
        self.http("POST", path, f)
    }

    /// Serves `method` requests (case-sensitive: `"PUT"`) for exactly
    /// `path` with `f`. A `"GET"` route also serves HEAD, unless a `"HEAD"`
    /// route takes the path too.
    pub fn http<F, R>(self, method: impl Into<String>, path: impl Into<String>, f: F) -> App
    where
        F: Fn(&HttpRequest<'_>) -> R + Send + Sync + 'static,
        R: Into<HttpReply>,
    {
        self.add_http(method.into(), path.into(), false, f)
    }

    /// Serves `method` requests for `prefix` and the paths below it, as
    /// [`Route::prefix`] matches: among the HTTP routes for the method, an
    /// exact path beats every prefix and the longest prefix wins.
    pub fn http_prefix<F, R>(
        self,
        method: impl Into<String>,
        prefix: impl Into<String>,
        f: F,
    ) -> App
    where
        F: Fn(&HttpRequest<'_>) -> R + Send + Sync + 'static,
        R: Into<HttpReply>,
    {
        self.add_http(method.into(), prefix.into(), true, f)
    }

    fn add_http<F, R>(mut self, method: String, path: String, prefix: bool, f: F) -> App
    where
        F: Fn(&HttpRequest<'_>) -> R + Send + Sync + 'static,
        R: Into<HttpReply>,
    {
        self.http.push(http::HttpRoute {
            method,
            path,
            prefix,
            handler: Arc::new(move |req: &HttpRequest<'_>| f(req).into()),
        });
        self
    }

    /// Adds `handler` for exactly `path`, with the configuration's limits.
    pub fn route<H: Handler>(self, path: impl Into<String>, handler: H) -> App {
        self.with_route(Route::exact(path, handler))
    }

    /// Adds `handler` for `prefix` and the paths below it (see
    /// [`Route::prefix`]).
    pub fn route_prefix<H: Handler>(self, prefix: impl Into<String>, handler: H) -> App {
        self.with_route(Route::prefix(prefix, handler))
    }

    /// Adds a route with limits of its own.
    pub fn with_route<H: Handler>(mut self, r: Route<H>) -> App {
        let idle = r.idle_timeout.unwrap_or(self.cfg.idle_timeout);
        let cfg = RouteCfg {
            max_backpressure: r.max_backpressure.unwrap_or(self.cfg.max_backpressure),
            policy: r.policy,
            idle_timeout: idle,
            send_pings: r.send_pings,
            idle_close: r.idle_close,
            shutdown_close: r.shutdown_close,
            deflate: route::DeflateCfg {
                policy: crate::proto::deflate::Policy {
                    mode: r.deflate.unwrap_or(self.cfg.deflate),
                    window_bits: self.cfg.deflate_window_bits,
                    client_window_bits: self.cfg.deflate_client_window_bits,
                },
                level: self.cfg.deflate_level,
                mem_level: self.cfg.deflate_mem_level,
                min_size: self.cfg.deflate_min_size,
            },
        };
        let (handler, c) = (r.handler, cfg.clone());
        self.routes.push(RouteEntry {
            path: r.path,
            prefix: r.prefix,
            cfg,
            make: Box::new(move |i| Box::new(RouteState::new(handler.clone(), c.clone(), i))),
        });
        self
    }

    /// Binds, starts the worker threads and returns once every one of them
    /// is accepting connections, with the [`ServerHandle`] to publish,
    /// count and stop from any thread. [`App::run`] is this plus waiting
    /// for SIGINT or SIGTERM; to do both yourself (a feed thread started at
    /// launch, say), block the signals with
    /// [`StopSignals::block`](crate::runtime::StopSignals::block) before
    /// this, and wait on them after: `examples/ticker.rs` shows it.
    pub fn start(self) -> Result<ServerHandle, StartError> {
        self.cfg.validate().map_err(StartError::Config)?;
        let threads = self.cfg.threads;
        let mut wakers = Vec::with_capacity(threads);
        let mut mailboxes = Vec::with_capacity(threads);
        let mut receivers = Vec::with_capacity(threads);
        for _ in 0..threads {
            wakers.push(Arc::new(Waker::new().map_err(StartError::Thread)?));
            let (tx, rx) = mpsc::channel();
            mailboxes.push(tx);
            receivers.push(Some(rx));
        }
        #[cfg(feature = "tls")]
        let (tls, tls_config) = match &self.cfg.tls {
            Some(t) => {
                let (state, config) = tls::TlsState::start(t)?;
                (Some(state), Some(config))
            }
            None => (None, None),
        };
        let node = crate::broker::node_id();
        let link = match &self.broker {
            Some(b) => Some(Arc::new(
                crate::broker::Link::new(node, b.max_queue_bytes(), self.cfg.backend)
                    .map_err(StartError::Thread)?,
            )),
            None => None,
        };
        if let (Some(l), Some(f)) = (&link, self.gap) {
            let _ = l.gap.set(f);
        }
        if let Some(l) = &link {
            let _ = l.listeners.set(self.remote);
        }
        let cfg = Arc::new(self.cfg);
        let deflates = (self.routes.iter())
            .any(|r| r.cfg.deflate.policy.mode != crate::proto::deflate::Mode::Off);
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            deflates,
            routes: self.routes,
            http: self.http,
            mailboxes,
            queued: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            wakers: wakers.clone(),
            stats: (0..threads).map(|_| Default::default()).collect(),
            mailbox_drops: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            open_total: AtomicUsize::new(0),
            addr: OnceLock::new(),
            backend: OnceLock::new(),
            threads: Mutex::new(Vec::new()),
            admin: Mutex::new(None),
            #[cfg(feature = "tls")]
            tls,
            node,
            broker: link.clone(),
            broker_thread: Mutex::new(None),
            metrics: self.metrics,
        });
        let receivers = Mutex::new(receivers);
        let s = shared.clone();
        let make = move |i: usize| {
            let rx = receivers.lock().expect("not poisoned")[i]
                .take()
                .expect("one worker per mailbox");
            let routes = (0..s.routes.len())
                .map(|r| (s.routes[r].make)(r as u32))
                .collect();
            Worker::new(i, s.clone(), routes, rx)
        };
        let stop = || {
            for i in 0..threads {
                shared.command(
                    i,
                    Command::Shutdown {
                        grace: Duration::ZERO,
                    },
                );
            }
        };
        #[allow(unused_mut)]
        let mut lc = cfg.loop_config();
        #[cfg(feature = "tls")]
        {
            lc.tls = tls_config;
        }
        let w = runtime::start_workers(lc, &wakers, make, &stop)?;
        let _ = shared.addr.set(w.addr);
        let _ = shared.backend.set(w.backend);
        *shared.threads.lock().expect("not poisoned") = w.threads;
        let server = ServerHandle { shared };
        if let (Some(b), Some(link)) = (self.broker, link) {
            link.set_server(&server.shared);
            match b.start(link) {
                Ok(t) => *server.shared.broker_thread.lock().expect("not poisoned") = Some(t),
                Err(e) => {
                    server.shutdown(Duration::ZERO);
                    return Err(StartError::Broker(e));
                }
            }
        }
        if let Some(addr) = cfg.admin_listen {
            match admin::Admin::start(addr, server.clone(), cfg.handshake_timeout) {
                Ok(a) => *server.shared.admin.lock().expect("not poisoned") = Some(a),
                Err(e) => {
                    server.shutdown(Duration::ZERO);
                    return Err(StartError::Bind(addr, e));
                }
            }
        }
        Ok(server)
    }

    /// Starts, serves until SIGINT or SIGTERM, then shuts down with the
    /// close timeout as the grace period.
    pub fn run(self) -> Result<(), StartError> {
        // Before any worker starts, so that every thread inherits the mask.
        let signals = StopSignals::block().map_err(StartError::Thread)?;
        let grace = self.cfg.close_timeout;
        let drain_delay = self.cfg.drain_delay;
        let server = self.start()?;
        let scheme = if server.shared.cfg.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        tracing::info!(
            "ringws {} listening on {scheme}://{} ({} threads, {})",
            env!("CARGO_PKG_VERSION"),
            server.local_addr(),
            server.shared.mailboxes.len(),
            server.backend()
        );
        if let Some(a) = server.admin_addr() {
            tracing::info!("admin endpoints on http://{a} (/metrics, /livez, /readyz)");
        }
        let every = server.shared.cfg.stats_interval;
        let mut last = (Instant::now(), server.stats());
        let signal = loop {
            match signals.next((!every.is_zero()).then_some(every)) {
                None => {
                    let (now, stats) = (Instant::now(), server.stats());
                    log_stats(&stats.since(&last.1), now - last.0);
                    last = (now, stats);
                }
                Some(Signal::Hangup) => server.hangup(),
                Some(s) => break s,
            }
        };
        // /readyz fails from here on, so that a load balancer stops sending
        // new connections before they would be refused.
        server.drain();
        if signal == Signal::Terminate && !drain_delay.is_zero() {
            tracing::info!(
                "SIGTERM: draining (/readyz answers 503); closing connections in {drain_delay:?}"
            );
            // A second SIGINT or SIGTERM cuts the wait short.
            signals.wait_for(drain_delay);
        }
        tracing::info!("shutting down: closing connections (1001, or the route's shutdown code)");
        server.shutdown(grace);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Sends every message back as it came: the `ringws` binary's server, and
/// the smallest handler there is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    type Data = ();

    fn upgrade(&self, _req: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn message(&self, ws: &mut Socket<'_, ()>, msg: Message<'_>) {
        ws.send(msg);
    }
}
