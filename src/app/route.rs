//! One route on one worker ([`RouteState`]): its handler, limits and
//! connections, and the read path from a read buffer through the protocol
//! core into the handler's callbacks, with the idle timer and the close.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use super::socket::{Message, Socket};
use super::stats::CloseClass;
use super::upgrade::{Accept, Deferred, Request, Resolution, Upgrade};
use super::{compressed::*, conn::*, ctx::*, handshake::*, out::*, worker::*};
use super::{BackpressurePolicy, Closed, Handler};
use crate::log::conn_event;
use crate::proto::compress::CompressorConfig;
use crate::proto::deflate::{self, Agreed};
use crate::proto::error::close_code;
use crate::proto::handshake::{is_header_safe, write_switching, Accepted};
use crate::proto::{Connection, Event, Received};
use crate::runtime::buf::InputBuf;
use crate::runtime::io::{Io, SockId};

/// A route's limits, resolved from its options and the [`crate::Config`].
#[derive(Debug, Clone)]
pub(crate) struct RouteCfg {
    pub(crate) max_backpressure: usize,
    pub(crate) policy: BackpressurePolicy,
    /// Silence allowed before the connection is closed (zero: no idle
    /// timeout).
    pub(crate) idle_timeout: Duration,
    /// Ask ([`super::Handler::idle`]: a Ping by default) once half of it
    /// has passed in silence.
    pub(crate) send_pings: bool,
    /// The Close code and reason at the idle timeout.
    pub(crate) idle_close: (u16, std::sync::Arc<str>),
    /// The Close code and reason at a shutdown.
    pub(crate) shutdown_close: (u16, std::sync::Arc<str>),
    /// permessage-deflate: what to agree to, and how to compress.
    pub(crate) deflate: DeflateCfg,
}

/// A route's permessage-deflate settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeflateCfg {
    pub(crate) policy: crate::proto::deflate::Policy,
    pub(crate) level: u8,
    pub(crate) mem_level: u8,
    pub(crate) min_size: usize,
}

/// A route's code, for one worker, with the user data type erased.
pub(crate) trait RouteRt {
    /// The request head is in: ask the hook. Returns what came of it.
    fn upgrade(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, head: &Accepted<'_>) -> Outcome;
    /// A deferred decision arrived (`None`: the handle was dropped).
    fn resolve(
        &mut self,
        io: &mut Io,
        ctx: &mut Ctx,
        id: SockId,
        pending: Box<Pending>,
        decision: Option<Box<dyn Any + Send>>,
    );
    fn data(
        &mut self,
        io: &mut Io,
        ctx: &mut Ctx,
        id: SockId,
        conn: u32,
        input: InputBuf,
        start: usize,
    );
    fn eof(
        &mut self,
        io: &mut Io,
        ctx: &mut Ctx,
        id: SockId,
        conn: u32,
        err: Option<std::io::Error>,
    );
    fn timer(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, conn: u32);
    fn gone(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, conn: u32);
    fn writable(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, conn: u32);
    fn command(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, conn: u32, cmd: Command);
    /// Close with `code` (shutdown, or a publish under the `Close` policy).
    fn close(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, conn: u32, code: u16, reason: &str);
}

/// One route on one worker: its handler, its limits, its connections.
pub(crate) struct RouteState<H: Handler> {
    pub(crate) handler: Arc<H>,
    pub(crate) cfg: RouteCfg,
    pub(crate) route: u32,
    pub(super) conns: Vec<Option<Conn<H::Data>>>,
    pub(super) free: Vec<u32>,
}

impl<H: Handler> RouteState<H> {
    /// permessage-deflate for this request under the route's policy: the
    /// first of the client's offers it can take, if any.
    pub(super) fn negotiate(&self, head: &Accepted<'_>) -> Option<Agreed> {
        deflate::negotiate(
            head.header_values("sec-websocket-extensions"),
            &self.cfg.deflate.policy,
        )
    }

    pub(crate) fn new(handler: Arc<H>, cfg: RouteCfg, route: u32) -> Self {
        RouteState {
            handler,
            cfg,
            route,
            conns: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Checks an accept, queues the 101 and opens the connection, or
    /// refuses with 500 when the accept says what it must not.
    #[expect(
        clippy::too_many_arguments,
        reason = "what the request offered, in the two forms its callers have it"
    )]
    pub(super) fn open(
        &mut self,
        io: &mut Io,
        ctx: &mut Ctx,
        id: SockId,
        accept_key: &[u8; 28],
        offered: &dyn Fn(&str) -> bool,
        mut a: Accept<H::Data>,
        agreed: Option<Agreed>,
    ) -> Outcome {
        if let Some(p) = &a.protocol {
            if !offered(p) {
                refuse_500(
                    ctx.stats(),
                    io,
                    id,
                    &format!("subprotocol {p:?} was not offered"),
                );
                return Outcome::Refused;
            }
        }
        if let Some((k, v)) = a.headers.iter().find(|(k, v)| !is_header_safe(k, v)) {
            refuse_500(
                ctx.stats(),
                io,
                id,
                &format!("unsafe response header {k:?}: {v:?}"),
            );
            return Outcome::Refused;
        }
        let mut proto = Connection::server(ctx.shared.cfg.limits());
        let mut flags = 0;
        if let Some(ag) = agreed {
            a.headers
                .push(("Sec-WebSocket-Extensions".into(), ag.answer()));
            proto.enable_inflate(ag.client_max_window_bits, !ag.client_no_context_takeover);
            let takeover = !ag.server_no_context_takeover;
            if takeover || ag.server_max_window_bits < 15 {
                // Settings of its own, kept with the connection; the
                // compressor itself only once it sends a compressed message.
                flags = DEFLATE_OWN;
                let cfg = CompressorConfig {
                    level: self.cfg.deflate.level,
                    window_bits: ag.server_max_window_bits,
                    mem_level: self.cfg.deflate.mem_level,
                    takeover,
                };
                ctx.own_z.insert(id.slot, OwnZ { cfg, z: None });
            } else {
                flags = DEFLATE_SHARED;
            }
        }
        io.send_with(id, |out| {
            write_switching(accept_key, a.protocol.as_deref(), &a.headers, out)
        });
        let now = io.now();
        let conn = Conn {
            id,
            proto,
            data: Some(a.data),
            ext: None,
            last_rx: io.now_ticks(),
            sent_code: 0,
            flags,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.conns[i as usize] = Some(conn);
                i
            }
            None => {
                self.conns.push(Some(conn));
                (self.conns.len() - 1) as u32
            }
        };
        *ctx.slot(id) = Slot::Open {
            route: self.route,
            conn: i,
            z: flags & DEFLATE,
        };
        // The handshake timeout is over; the idle timeout starts.
        let idle = (!self.cfg.idle_timeout.is_zero()).then(|| now + self.cfg.idle_timeout / 2);
        io.set_deadline(id, idle);
        ctx.stats().upgraded();
        let c = self.conns[i as usize].as_mut().expect("just made");
        let handler = &*self.handler;
        c.call(io, ctx, &self.cfg, "open", |ws| handler.open(ws));
        Outcome::Opened(i)
    }

    /// Runs [`Handler::close`] once, handing it the user data.
    pub(super) fn tell(handler: &H, c: &mut Conn<H::Data>, ctx: &mut Ctx, code: u16, reason: &str) {
        if c.flags & TOLD != 0 {
            return;
        }
        c.flags |= TOLD;
        c.leave(ctx);
        ctx.stats()
            .closed(CloseClass::of(code, c.flags & IDLE_CLOSED != 0));
        if let Some(d) = c.data.take() {
            let closed = Closed {
                code,
                reason,
                shared: &ctx.shared,
            };
            if !guard(|| handler.close(d, &closed)) {
                tracing::error!("the handler panicked in `close` (code {code})");
            }
        }
    }

    /// Frees the connection at `i` (after telling the handler).
    pub(super) fn remove(&mut self, ctx: &mut Ctx, i: u32) {
        if let Some(mut c) = self.conns[i as usize].take() {
            let code = if c.sent_code != 0 {
                c.sent_code
            } else {
                close_code::ABNORMAL
            };
            Self::tell(&self.handler, &mut c, ctx, code, "");
            self.free.push(i);
        }
    }

    /// After input or a callback: act on the protocol's state.
    pub(super) fn settle(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, i: u32) {
        let Some(c) = self.conns[i as usize].as_mut() else {
            return;
        };
        if c.flags & TERMINATED != 0 {
            return;
        }
        if c.proto.framing_lost() {
            // Frame boundaries are gone: nothing more can be read, so close
            // now rather than wait for a Close that cannot be found.
            self.remove(ctx, i);
            linger(io, ctx, id);
        } else if c.proto.is_closed() {
            // 7.1.1: the server closes the TCP connection first, once its
            // last frames are out.
            let code = if c.sent_code != 0 {
                c.sent_code
            } else {
                close_code::ABNORMAL
            };
            Self::tell(&self.handler, c, ctx, code, "");
            io.close_after_flush(id);
        }
    }
}

impl<H: Handler> RouteRt for RouteState<H> {
    fn upgrade(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, head: &Accepted<'_>) -> Outcome {
        let peer = io.peer(id);
        let handler = &*self.handler;
        let decision = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.upgrade(&Request { head, peer })
        }));
        let Ok(decision) = decision else {
            refuse_500(ctx.stats(), io, id, "the handler panicked in `upgrade`");
            return Outcome::Refused;
        };
        match decision {
            Upgrade::Accept(a) => {
                let offered = |p: &str| head.protocols().any(|o| o == p);
                let agreed = self.negotiate(head);
                self.open(io, ctx, id, &head.accept, &offered, a, agreed)
            }
            Upgrade::Reject(r) => {
                reject(ctx.stats(), io, id, r);
                Outcome::Refused
            }
            Upgrade::Defer(f) => {
                let pending = Box::new(Pending {
                    route: self.route,
                    accept: head.accept,
                    protocols: head.protocols().map(str::to_owned).collect(),
                    rest: Vec::new(),
                    deflate: self.negotiate(head),
                });
                let deferred = Deferred {
                    shared: ctx.shared.clone(),
                    worker: ctx.index,
                    id,
                    route: self.route,
                    done: false,
                    _data: std::marker::PhantomData,
                };
                // A panic drops the `Deferred` undecided, which answers 500.
                if !guard(|| f(deferred)) {
                    conn_event!(
                        ERROR,
                        io,
                        id,
                        route = ctx.shared.routes[self.route as usize].path,
                        "the handler panicked deferring an upgrade"
                    );
                }
                Outcome::Deferred(pending)
            }
        }
    }

    fn resolve(
        &mut self,
        io: &mut Io,
        ctx: &mut Ctx,
        id: SockId,
        pending: Box<Pending>,
        decision: Option<Box<dyn Any + Send>>,
    ) {
        let res = decision.map(|d| d.downcast::<Resolution<H::Data>>());
        match res {
            Some(Ok(r)) => match *r {
                Ok(a) => {
                    let Pending {
                        accept,
                        protocols,
                        rest,
                        deflate,
                        ..
                    } = *pending;
                    let offered = |p: &str| protocols.iter().any(|o| o == p);
                    if let Outcome::Opened(i) =
                        self.open(io, ctx, id, &accept, &offered, a, deflate)
                    {
                        if !rest.is_empty() {
                            self.data(io, ctx, id, i, InputBuf::Heap(rest), 0);
                        }
                    } else {
                        linger(io, ctx, id);
                    }
                }
                Err(r) => {
                    reject(ctx.stats(), io, id, r);
                    linger(io, ctx, id);
                }
            },
            Some(Err(_)) => {
                refuse_500(
                    ctx.stats(),
                    io,
                    id,
                    "a deferred decision of another route's type",
                );
                linger(io, ctx, id);
            }
            None => {
                refuse_500(
                    ctx.stats(),
                    io,
                    id,
                    "the deferred upgrade was dropped undecided",
                );
                linger(io, ctx, id);
            }
        }
    }

    fn data(
        &mut self,
        io: &mut Io,
        ctx: &mut Ctx,
        id: SockId,
        i: u32,
        mut input: InputBuf,
        start: usize,
    ) {
        let now = io.now();
        let tick = io.now_ticks();
        let Some(c) = self.conns[i as usize].as_mut() else {
            return;
        };
        c.last_rx = tick;
        c.flags &= !PINGED;
        let buf = input.as_mut_slice();
        let (base, len) = (buf.as_ptr() as usize, buf.len());
        let mut view = InputView {
            base,
            len,
            ..InputView::NONE
        };
        let mut off = start;
        let mut error = None;
        let (handler, cfg) = (&*self.handler, &self.cfg);
        // The connection as a callback sees it.
        macro_rules! socket {
            () => {
                &mut Socket {
                    conn: c,
                    io,
                    ctx,
                    cfg,
                    view: &mut view,
                }
            };
        }
        let mut panicked = None;
        while off < len {
            if c.flags & TERMINATED != 0 {
                break;
            }
            let (n, res) = c.proto.read_borrowed(&mut buf[off..], now);
            let told = c.flags & TOLD != 0;
            match res {
                Ok(Some(Received::Text(s))) if !told => {
                    ctx.counts.messages += 1;
                    view.borrowed(off, s.as_bytes());
                    if !guard(|| handler.message(socket!(), Message::Text(s))) {
                        panicked = Some("message");
                    }
                }
                Ok(Some(Received::Binary(b))) if !told => {
                    ctx.counts.messages += 1;
                    view.borrowed(off, b);
                    if !guard(|| handler.message(socket!(), Message::Binary(b))) {
                        panicked = Some("message");
                    }
                }
                Ok(Some(Received::TextOwned(s))) if !told => {
                    ctx.counts.messages += 1;
                    view.owned = (s.as_ptr() as usize, s.len());
                    if !guard(|| handler.message(socket!(), Message::Text(&s))) {
                        panicked = Some("message");
                    }
                    view.hand_over(io, id, s.into_bytes());
                }
                Ok(Some(Received::BinaryOwned(v))) if !told => {
                    ctx.counts.messages += 1;
                    view.owned = (v.as_ptr() as usize, v.len());
                    if !guard(|| handler.message(socket!(), Message::Binary(&v))) {
                        panicked = Some("message");
                    }
                    view.hand_over(io, id, v);
                }
                Ok(Some(Received::Other(Event::Ping(p)))) if !told => {
                    c.flush_control(io);
                    if !guard(|| handler.ping(socket!(), &p)) {
                        panicked = Some("ping");
                    }
                }
                Ok(Some(Received::Other(Event::Pong(p)))) if !told => {
                    if !guard(|| handler.pong(socket!(), &p)) {
                        panicked = Some("pong");
                    }
                }
                Ok(Some(Received::Other(Event::Closed { code, reason }))) => {
                    conn_event!(
                        DEBUG,
                        io,
                        id,
                        route = ctx.shared.routes[self.route as usize].path,
                        "closed by peer ({code:?})"
                    );
                    let code = code.unwrap_or(close_code::NO_STATUS);
                    c.flush_control(io);
                    Self::tell(handler, c, ctx, code, &reason);
                }
                Ok(_) => {}
                Err(e) => {
                    if error.is_none() {
                        conn_event!(
                            INFO,
                            io,
                            id,
                            route = ctx.shared.routes[self.route as usize].path,
                            "protocol error: {e}; closing with {}",
                            e.close_code()
                        );
                        c.sent_code = e.close_code();
                        c.leave(ctx);
                        io.set_deadline(id, c.proto.poll_timeout());
                    }
                    error = Some(e);
                }
            }
            c.flush_control(io);
            if view.trick_len > 0 {
                let (at, n) = (view.trick_at, usize::from(view.trick_len));
                if n == 2 {
                    // Messages under 126 bytes: two stores, not a memcpy call.
                    buf[at..at + 2].copy_from_slice(&view.trick_hdr[..2]);
                } else {
                    buf[at..at + n].copy_from_slice(&view.trick_hdr[..n]);
                }
                view.trick_len = 0;
            }
            if let Some(what) = panicked.take() {
                // After the header swap: an echo queued before the panic
                // goes out whole, then the Close.
                c.panicked(io, ctx, what);
            }
            off += n;
        }
        if view.used {
            io.keep_input(id, input);
        }
        // Else the buffer goes back to the pool here, before the write.
        if c.flags & TERMINATED != 0 || c.proto.framing_lost() || c.proto.is_closed() {
            self.settle(io, ctx, id, i);
        }
    }

    fn eof(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, i: u32, err: Option<std::io::Error>) {
        let clean = err.is_none();
        if let Some(c) = self.conns[i as usize].as_mut() {
            match err {
                Some(e) => conn_event!(
                    DEBUG,
                    io,
                    id,
                    route = ctx.shared.routes[self.route as usize].path,
                    "read error: {e}"
                ),
                None => {
                    if c.proto.handle_eof() {
                        conn_event!(
                            DEBUG,
                            io,
                            id,
                            route = ctx.shared.routes[self.route as usize].path,
                            "connection closed without a Close frame"
                        );
                    }
                }
            }
            c.leave(ctx);
        }
        close_at_eof(io, id, clean);
    }

    fn timer(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, i: u32) {
        let Some(c) = self.conns[i as usize].as_mut() else {
            io.close(id);
            return;
        };
        if !c.is_open() {
            // Our Close got no answer in time.
            c.proto.handle_timeout(io.now());
            conn_event!(
                DEBUG,
                io,
                id,
                route = ctx.shared.routes[self.route as usize].path,
                "no Close from the peer in time"
            );
            io.close(id);
            return;
        }
        if self.cfg.idle_timeout.is_zero() {
            return;
        }
        let idle = crate::runtime::io::ticks_of(self.cfg.idle_timeout);
        let silent = io.now_ticks().saturating_sub(c.last_rx);
        let half = idle / 2;
        if silent >= idle && (c.flags & PINGED != 0 || !self.cfg.send_pings) {
            conn_event!(
                INFO,
                io,
                id,
                route = ctx.shared.routes[self.route as usize].path,
                "silent for {:?} (idle timeout); closing with {}",
                self.cfg.idle_timeout,
                self.cfg.idle_close.0
            );
            c.flags |= IDLE_CLOSED;
            let (code, reason) = &self.cfg.idle_close;
            c.start_close(io, ctx, *code, reason);
            if self.cfg.send_pings {
                // It answered no Ping in the whole idle timeout: it has
                // shown it is gone, and waiting the close timeout for a
                // Close it will not send would only hold the connection
                // (and its memory) longer. Cut it once our Close is out.
                io.close_after_flush(id);
            }
        } else if silent >= half && c.flags & PINGED == 0 && self.cfg.send_pings {
            c.flags |= PINGED;
            let handler = &*self.handler;
            c.call(io, ctx, &self.cfg, "idle", |ws| handler.idle(ws));
            if c.is_open() {
                let at = io.instant_of(c.last_rx.saturating_add(idle));
                io.set_deadline(id, Some(at));
            }
            self.settle(io, ctx, id, i);
        } else {
            let due = if silent >= half { idle } else { half };
            let at = io.instant_of(c.last_rx.saturating_add(due));
            io.set_deadline(id, Some(at));
        }
    }

    fn gone(&mut self, _io: &mut Io, ctx: &mut Ctx, _id: SockId, i: u32) {
        self.remove(ctx, i);
    }

    fn writable(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, i: u32) {
        let Some(c) = self.conns[i as usize].as_mut() else {
            return;
        };
        if c.flags & DRAIN == 0 || !c.is_open() {
            return;
        }
        if io.buffered(id) > self.cfg.max_backpressure {
            io.notify_writable(id);
            return;
        }
        c.flags &= !DRAIN;
        let handler = &*self.handler;
        c.call(io, ctx, &self.cfg, "drain", |ws| handler.drain(ws));
        self.settle(io, ctx, id, i);
    }

    fn command(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, i: u32, cmd: Command) {
        let Some(c) = self.conns[i as usize].as_mut() else {
            return;
        };
        let mut view = InputView::NONE;
        let mut ws = Socket {
            conn: c,
            io,
            ctx,
            cfg: &self.cfg,
            view: &mut view,
        };
        match cmd {
            Command::Send { frame, .. } => {
                ws.send_frame(frame);
            }
            Command::Close { code, reason, .. } => ws.close(code, &reason),
            _ => {}
        }
        self.settle(io, ctx, id, i);
    }

    fn close(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, i: u32, code: u16, reason: &str) {
        if let Some(c) = self.conns[i as usize].as_mut() {
            c.start_close(io, ctx, code, reason);
        }
        self.settle(io, ctx, id, i);
    }
}
