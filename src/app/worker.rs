//! One worker thread of an [`crate::app::App`]: the loop's
//! [`runtime::io::Handler`](crate::runtime::io::Handler). It dispatches
//! each socket by its [`Slot`] (handshake, deferred, open, lingering) to
//! the handshake code or to the route that holds the connection, takes
//! commands from other threads through its mailbox, and shuts down.
//!
//! Per socket slot the worker keeps a 16-byte [`Slot`]; an open connection
//! lives in its route's slab as a [`Conn`] with the route's user data type,
//! so that every callback is a direct (monomorphised) call, and the one
//! dynamic call per read is the route's.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::handshake::close_at_eof;
use super::Shared;
use super::{ctx::*, route::*};
use crate::log::conn_event;
use crate::proto::error::close_code;
use crate::runtime::buf::InputBuf;
use crate::runtime::io::{self, Gone, Io, SockId};
use crate::runtime::Waker;

/// What other threads ask of a worker.
pub(crate) enum Command {
    /// Stop accepting, close every connection with 1001, and cut what is
    /// still open after `grace`.
    Shutdown { grace: Duration },
    /// Send an encoded frame ([`crate::app::SocketRef::send`]).
    Send { id: SockId, frame: Bytes },
    /// Start the closing handshake ([`crate::app::SocketRef::close`]).
    Close {
        id: SockId,
        code: u16,
        reason: String,
    },
    /// Deliver an encoded frame to this thread's subscribers of `topic`;
    /// `z`, when some route compresses, its compressed form shared by the
    /// threads.
    Publish {
        topic: Arc<str>,
        frame: Bytes,
        z: Option<super::compressed::SharedZ>,
        /// A connection of this thread left out ([`SocketRef::publish`]).
        except: Option<SockId>,
    },
    /// A deferred upgrade was decided: a boxed `Resolution<D>` of the
    /// route's user data type.
    Resolve {
        id: SockId,
        route: u32,
        decision: Box<dyn Any + Send>,
    },
    /// A deferred upgrade's handle was dropped undecided.
    Abandoned { id: SockId, route: u32 },
    /// A deferred HTTP response ([`crate::app::HttpResponder`]); `None`:
    /// dropped unanswered.
    Respond {
        id: SockId,
        response: Option<Box<super::HttpResponse>>,
    },
    /// A reloaded TLS configuration, for the connections accepted from now.
    #[cfg(feature = "tls")]
    Tls(Arc<rustls::ServerConfig>),
}

/// One worker thread's handler for the loop.
pub(crate) struct Worker {
    pub(super) ctx: Ctx,
    pub(super) routes: Vec<Box<dyn RouteRt>>,
    pub(super) mailbox: mpsc::Receiver<Command>,
    pub(super) waker: Arc<Waker>,
    /// Connections open on this thread.
    pub(super) open: usize,
    /// Set at shutdown: when to cut what is still open.
    pub(super) stopping: Option<Instant>,
    pub(super) done: bool,
    pub(super) last_warn: Option<Instant>,
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared>,
        routes: Vec<Box<dyn RouteRt>>,
        mailbox: mpsc::Receiver<Command>,
    ) -> Worker {
        let waker = shared.wakers[index].clone();
        shared.stats[index].created(Instant::now());
        let topics = if shared.broker.is_some() {
            super::topics::Topics::tracking()
        } else {
            Default::default()
        };
        Worker {
            ctx: Ctx {
                index,
                shared,
                slots: Vec::new(),
                topics,
                victims: Vec::new(),
                compressor: None,
                own_z: HashMap::new(),
                zbuf: Vec::new(),
                counts: Counts::default(),
            },
            routes,
            mailbox,
            waker,
            open: 0,
            stopping: None,
            done: false,
            last_warn: None,
        }
    }

    pub(super) fn start_shutdown(&mut self, io: &mut Io, grace: Duration) {
        if self.stopping.is_some() {
            return;
        }
        io.stop_accepting();
        self.stopping = Some(io.now() + grace);
        for slot in 0..self.ctx.slots.len() {
            let Some(id) = io.id_of(slot as u32) else {
                continue;
            };
            match &self.ctx.slots[slot] {
                &Slot::Open { route, conn, .. } => {
                    let (code, reason) = self.ctx.shared.routes[route as usize]
                        .cfg
                        .shutdown_close
                        .clone();
                    self.routes[route as usize].close(io, &mut self.ctx, id, conn, code, &reason);
                }
                Slot::Handshake(_) | Slot::Deferred(_) | Slot::Http(_) => io.close(id),
                Slot::Lingering | Slot::Empty => {}
            }
        }
    }

    /// Hands the broker the topics that gained their first or lost their
    /// last subscriber here (nothing to do without a broker, or changes).
    fn flush_interest(&mut self) {
        if let Some(changes) = self.ctx.topics.changes() {
            if let Some(b) = &self.ctx.shared.broker {
                b.interest(self.ctx.index, changes);
            }
        }
    }

    /// Closes the subscribers a publish found past their limit (policy
    /// `Close`).
    pub(super) fn close_victims(&mut self, io: &mut Io) {
        while let Some(id) = self.ctx.victims.pop() {
            if let Some(&Slot::Open { route, conn, .. }) = self.ctx.slots.get(id.index()) {
                if io.is_open(id) {
                    conn_event!(
                        INFO,
                        io,
                        id,
                        "send queue past max-backpressure at a publish; closing with 1008"
                    );
                    self.routes[route as usize].close(
                        io,
                        &mut self.ctx,
                        id,
                        conn,
                        close_code::POLICY_VIOLATION,
                        "send queue full",
                    );
                }
            }
        }
    }

    pub(super) fn command(&mut self, io: &mut Io, cmd: Command) {
        let id = match &cmd {
            Command::Shutdown { grace } => return self.start_shutdown(io, *grace),
            Command::Publish {
                topic,
                frame,
                z,
                except,
            } => {
                self.ctx
                    .publish_local(io, topic, frame, z.as_ref(), *except);
                return;
            }
            Command::Send { id, .. } | Command::Close { id, .. } => *id,
            Command::Resolve { id, .. } | Command::Abandoned { id, .. } => *id,
            Command::Respond { id, .. } => *id,
            #[cfg(feature = "tls")]
            Command::Tls(c) => {
                io.set_tls(Some(c.clone()));
                return;
            }
        };
        if io.id_of(id.slot) != Some(id) {
            // Gone since: the command is dropped (with any user data).
            return;
        }
        if let Command::Respond { response, .. } = cmd {
            return self.http_respond(io, id, response);
        }
        match (cmd, self.ctx.slot(id)) {
            (
                cmd @ (Command::Send { .. } | Command::Close { .. }),
                &mut Slot::Open { route, conn, .. },
            ) => {
                self.routes[route as usize].command(io, &mut self.ctx, id, conn, cmd);
            }
            (
                Command::Resolve {
                    route, decision, ..
                },
                slot @ Slot::Deferred(_),
            ) => {
                let Slot::Deferred(p) = std::mem::replace(slot, Slot::Empty) else {
                    unreachable!()
                };
                if p.route == route {
                    self.routes[route as usize].resolve(io, &mut self.ctx, id, p, Some(decision));
                }
            }
            (Command::Abandoned { route, .. }, slot @ Slot::Deferred(_)) => {
                let Slot::Deferred(p) = std::mem::replace(slot, Slot::Empty) else {
                    unreachable!()
                };
                if p.route == route {
                    self.routes[route as usize].resolve(io, &mut self.ctx, id, p, None);
                }
            }
            _ => {}
        }
    }
}

impl io::Handler for Worker {
    fn accepted(&mut self, io: &mut Io, id: SockId) {
        self.ctx.counts.accepted += 1;
        let shared = &self.ctx.shared;
        let total = shared.open_total.fetch_add(1, Ordering::Relaxed);
        self.open += 1;
        if self.stopping.is_some() {
            io.close(id);
            *self.ctx.slot(id) = Slot::Lingering;
            return;
        }
        if total >= shared.cfg.max_connections {
            let now = io.now();
            if self
                .last_warn
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                conn_event!(
                    WARN,
                    io,
                    id,
                    "refused, {total} connections open (max-connections)"
                );
                self.last_warn = Some(now);
            }
            return self.refuse(
                io,
                id,
                503,
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
        let at = io.now() + shared.cfg.handshake_timeout;
        *self.ctx.slot(id) = Slot::Handshake(None);
        io.set_deadline(id, Some(at));
    }

    fn data(&mut self, io: &mut Io, id: SockId, buf: InputBuf) {
        if let Some(&Slot::Open { route, conn, .. }) = self.ctx.slots.get(id.index()) {
            self.routes[route as usize].data(io, &mut self.ctx, id, conn, buf, 0);
            if !self.ctx.victims.is_empty() {
                self.close_victims(io);
            }
            return;
        }
        let max = self.ctx.shared.cfg.max_handshake_size;
        match *self.ctx.slot(id) {
            Slot::Open { .. } => {}
            Slot::Handshake(_) => self.handshake(io, id, buf),
            Slot::Http(_) => self.http_data(io, id, buf),
            Slot::Deferred(ref mut p) => {
                // A client should wait for the 101, but what it sends early
                // is kept, within the head's limit.
                if p.rest.len() + buf.as_slice().len() > max {
                    conn_event!(INFO, io, id, "too much sent before the upgrade was decided");
                    io.close(id);
                } else {
                    p.rest.extend_from_slice(buf.as_slice());
                }
            }
            Slot::Lingering | Slot::Empty => {}
        }
        if !self.ctx.victims.is_empty() {
            self.close_victims(io);
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<std::io::Error>) {
        let clean = err.is_none();
        match *self.ctx.slot(id) {
            Slot::Open { route, conn, .. } => {
                self.routes[route as usize].eof(io, &mut self.ctx, id, conn, err)
            }
            Slot::Handshake(_) | Slot::Deferred(_) | Slot::Http(_) => {
                conn_event!(DEBUG, io, id, "closed during the handshake");
                close_at_eof(io, id, clean);
            }
            Slot::Lingering | Slot::Empty => close_at_eof(io, id, clean),
        }
    }

    fn timer(&mut self, io: &mut Io, id: SockId) {
        match *self.ctx.slot(id) {
            Slot::Open { route, conn, .. } => {
                self.routes[route as usize].timer(io, &mut self.ctx, id, conn)
            }
            Slot::Handshake(_) => {
                conn_event!(INFO, io, id, "handshake timed out");
                io.close(id);
            }
            Slot::Http(_) => self.http_timeout(io, id),
            Slot::Deferred(_) => {
                conn_event!(
                    INFO,
                    io,
                    id,
                    "the deferred upgrade was not decided within the handshake timeout"
                );
                io.close(id);
            }
            Slot::Lingering | Slot::Empty => io.close(id),
        }
    }

    fn gone(&mut self, io: &mut Io, id: SockId, _why: Gone) {
        let s = std::mem::replace(self.ctx.slot(id), Slot::Empty);
        if matches!(s, Slot::Empty) {
            return;
        }
        if let Slot::Open { route, conn, .. } = s {
            self.routes[route as usize].gone(io, &mut self.ctx, id, conn);
        }
        self.open -= 1;
        self.ctx.shared.open_total.fetch_sub(1, Ordering::Relaxed);
        // The loop tells of sockets gone after the turn's end: what they
        // left must not wait for the next turn (an idle worker may have
        // none for long).
        self.flush_interest();
    }

    fn writable(&mut self, io: &mut Io, id: SockId) {
        if let Slot::Open { route, conn, .. } = *self.ctx.slot(id) {
            self.routes[route as usize].writable(io, &mut self.ctx, id, conn);
        }
    }

    fn wake(&mut self, io: &mut Io) {
        self.waker.clear();
        while let Ok(cmd) = self.mailbox.try_recv() {
            if let Command::Send { frame, .. } | Command::Publish { frame, .. } = &cmd {
                self.ctx.shared.took(self.ctx.index, frame.len());
            }
            self.command(io, cmd);
        }
        self.close_victims(io);
    }

    fn turn(&mut self, io: &mut Io) {
        self.ctx.counts.turns += 1;
        self.flush_interest();
        self.ctx
            .stats()
            .publish(&self.ctx.counts, &io.counts, io.now_ticks(), io.epoch());
        if !self.ctx.victims.is_empty() {
            self.close_victims(io);
        }
        if let Some(until) = self.stopping {
            if self.open == 0 || io.now() >= until {
                self.done = true;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.stopping
    }

    fn done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    /// Every socket keeps one `Slot`, and an open connection one `Conn`
    /// (`scripts/idle-memory.sh` measures the whole cost).
    #[test]
    fn per_connection_state_stays_small() {
        let slot = std::mem::size_of::<crate::app::ctx::Slot>();
        let conn = std::mem::size_of::<Option<crate::app::conn::Conn<()>>>();
        eprintln!(
            "slot {slot} bytes, conn {conn} bytes, Connection {}",
            std::mem::size_of::<crate::proto::Connection>()
        );
        assert!(slot <= 16, "slot grew to {slot} bytes");
        assert!(
            slot + conn <= 176,
            "per-connection state grew to {} bytes",
            slot + conn
        );
    }
}
