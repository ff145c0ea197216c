//! A connection as its route keeps it ([`Conn`]): the protocol state, the
//! user data until `close`, its flags, and running a callback with a panic
//! costing only this connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::socket::Socket;
use super::{ctx::*, out::*, route::*};
use crate::log::conn_event;
use crate::proto::error::close_code;
use crate::proto::Connection;
use crate::runtime::io::{Io, SockId};

// Conn flags.
pub(super) const PINGED: u8 = 1; // an idle Ping is out, no answer yet

pub(super) const DRAIN: u8 = 1 << 1; // the handler waits for `drain`

pub(super) const TOLD: u8 = 1 << 2; // `close` ran; the user data is gone

pub(super) const TERMINATED: u8 = 1 << 3; // the socket is being closed without a handshake

/// permessage-deflate for what we send: with the thread's compressor (no
/// context takeover, a 15-bit window)...
pub(crate) const DEFLATE_SHARED: u8 = 1 << 4;

/// ... or with the connection's own (context takeover, or a window the
/// client limited), its settings and, once made, itself in [`Ctx::own_z`].
pub(crate) const DEFLATE_OWN: u8 = 1 << 5;

pub(crate) const DEFLATE: u8 = DEFLATE_SHARED | DEFLATE_OWN;
/// We closed it for silence (the idle timeout), for the close counts.
pub(super) const IDLE_CLOSED: u8 = 1 << 6;

/// A connection's state for its route's handler.
pub(crate) struct Conn<D> {
    pub(crate) id: SockId,
    pub(super) proto: Connection,
    /// Until [`Handler::close`] takes it.
    pub(crate) data: Option<D>,
    /// Topics and the handle flag, allocated only for connections that use
    /// them.
    pub(crate) ext: Option<Box<Extras>>,
    /// When the peer last sent anything, in loop ticks.
    pub(super) last_rx: u32,
    /// The code of the Close we sent (0: none).
    pub(super) sent_code: u16,
    pub(crate) flags: u8,
}

/// What a connection needs once it subscribes or hands out a handle.
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) topics: Vec<u32>,
    pub(crate) alive: Option<Arc<AtomicBool>>,
}

impl<D> Conn<D> {
    /// May the application still send on it?
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.flags & (TOLD | TERMINATED) == 0
            && self.proto.state() == crate::proto::close::CloseState::Open
    }

    pub(crate) fn ext(&mut self) -> &mut Extras {
        self.ext.get_or_insert_with(Default::default)
    }

    pub(crate) fn want_drain(&mut self, io: &mut Io) {
        self.flags |= DRAIN;
        io.notify_writable(self.id);
    }

    /// Leaves every topic, marks handles closed and drops its compressor:
    /// nothing more is sent to a connection that is closing.
    pub(super) fn leave(&mut self, ctx: &mut Ctx) {
        if self.flags & DEFLATE_OWN != 0 {
            ctx.own_z.remove(&self.id.slot);
        }
        if let Some(e) = self.ext.as_deref_mut() {
            for t in e.topics.drain(..) {
                ctx.topics.remove(self.id, t);
            }
            if let Some(a) = &e.alive {
                a.store(false, Ordering::Release);
            }
        }
    }

    /// Queues the protocol's own frames (Pong, Close) behind what is queued.
    /// Inline: it runs after every frame, and there is seldom anything.
    #[inline]
    pub(super) fn flush_control(&mut self, io: &mut Io) {
        if self.proto.has_control() {
            self.queue_control(io);
        }
    }

    #[cold]
    pub(super) fn queue_control(&mut self, io: &mut Io) {
        if let Some(mut out) = io.outbox(self.id) {
            out.put_with(|b| self.proto.take_control(b));
        }
    }

    /// Sends our Close (`code` valid to send) and waits for the peer's.
    pub(crate) fn start_close(&mut self, io: &mut Io, ctx: &mut Ctx, code: u16, reason: &str) {
        if !self.is_open() {
            return;
        }
        self.proto.close(code, reason, io.now());
        self.sent_code = code;
        self.flush_control(io);
        io.set_deadline(self.id, self.proto.poll_timeout());
        self.leave(ctx);
    }

    /// Runs the callback `what` on a [`Socket`] of this connection outside
    /// any read, under [`guard`].
    pub(super) fn call(
        &mut self,
        io: &mut Io,
        ctx: &mut Ctx,
        cfg: &RouteCfg,
        what: &str,
        f: impl FnOnce(&mut Socket<'_, D>),
    ) {
        let mut view = InputView::NONE;
        let ok = guard(|| {
            f(&mut Socket {
                conn: self,
                io,
                ctx,
                cfg,
                view: &mut view,
            })
        });
        if !ok {
            self.panicked(io, ctx, what);
        }
    }

    /// The handler panicked in `what` (caught by [`guard`]): whatever it
    /// queued before stays queued; then Close 1011.
    #[cold]
    pub(super) fn panicked(&mut self, io: &mut Io, ctx: &mut Ctx, what: &str) {
        conn_event!(
            ERROR,
            io,
            self.id,
            "the handler panicked in `{what}`; closing with 1011"
        );
        self.start_close(io, ctx, close_code::INTERNAL_ERROR, "internal error");
    }

    pub(crate) fn terminate(&mut self, io: &mut Io, ctx: &mut Ctx) {
        self.flags |= TERMINATED;
        self.leave(ctx);
        io.close(self.id);
    }
}

/// Runs a handler callback, catching a panic in it. Unwinding on would end
/// the worker thread and every connection on it (with one thread, the
/// listener too); instead the caller closes just the connection the panic
/// came from (see [`Conn::panicked`]). The panic hook has printed the
/// message and where it was raised. False if `f` panicked.
#[inline]
pub(super) fn guard(f: impl FnOnce()) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok()
}
