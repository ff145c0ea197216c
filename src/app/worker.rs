//! One worker thread of an [`crate::app::App`]: the loop's
//! [`runtime::io::Handler`](crate::runtime::io::Handler), which does the
//! opening handshake, routes each connection to its handler and feeds it
//! the connection's messages.
//!
//! Per socket slot the worker keeps a 16-byte [`Slot`]; an open connection
//! lives in its route's slab as a [`Conn`] with the route's user data type,
//! so that every callback is a direct (monomorphised) call, and the one
//! dynamic call per read is the route's.
//!
//! The zero-copy echo: a message that arrived whole in one read is handed
//! to the handler borrowed from the read buffer. If the handler sends that
//! very slice back on the same connection, [`InputView::queue`] recognises
//! it by its address and queues a range of the read buffer (which the
//! batch keeps until written) instead of a copy; the frame header goes over
//! the client's own header, just before the payload, so header and payload
//! leave as one piece. A message reassembled from fragments is moved into
//! the batch instead.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::socket::{Message, Socket};
use super::upgrade::{Accept, Deferred, Reject, Request, Resolution, Upgrade};
use super::{BackpressurePolicy, Handler, Shared};
use crate::log;
use crate::proto::compress::{Compressor, CompressorConfig};
use crate::proto::deflate::{self, Agreed};
use crate::proto::error::close_code;
use crate::proto::frame::{encode_frame, FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::proto::handshake::{
    is_header_safe, parse_request, refusal, write_refusal, write_switching, Accepted,
};
use crate::proto::{Connection, Event, Received};
use crate::runtime::buf::InputBuf;
use crate::runtime::io::{self, Gone, Io, SockId};
use crate::runtime::outbox::Outbox;
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
    /// Deliver an encoded frame to this thread's subscribers of `topic`.
    Publish { topic: Arc<str>, frame: Bytes },
    /// A deferred upgrade was decided: a boxed `Resolution<D>` of the
    /// route's user data type.
    Resolve {
        id: SockId,
        route: u32,
        decision: Box<dyn Any + Send>,
    },
    /// A deferred upgrade's handle was dropped undecided.
    Abandoned { id: SockId, route: u32 },
}

/// How long a refused or failed connection may keep sending after our
/// last bytes before it is cut: time for the peer to read them, without a
/// reset destroying them (closing with unread input sends one).
const LINGER: Duration = Duration::from_secs(1);

/// A route's limits, resolved from its options and the [`crate::Config`].
#[derive(Debug, Clone)]
pub(crate) struct RouteCfg {
    pub(crate) max_backpressure: usize,
    pub(crate) policy: BackpressurePolicy,
    /// Silence allowed before the connection is closed (zero: no idle
    /// timeout).
    pub(crate) idle_timeout: Duration,
    /// Send a Ping once half of it has passed in silence.
    pub(crate) send_pings: bool,
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

/// A connection's state as the worker sees it, by socket slot.
enum Slot {
    Empty,
    /// Waiting for the request head; the part received so far when it came
    /// in pieces.
    #[expect(clippy::box_collection, reason = "8 bytes per idle slot, not 24")]
    Handshake(Option<Box<Vec<u8>>>),
    /// The upgrade hook deferred its decision.
    Deferred(Box<Pending>),
    /// A WebSocket, at `conn` in route `route`'s slab; `z`: its
    /// permessage-deflate (0, [`DEFLATE_SHARED`] or [`DEFLATE_OWN`]), for
    /// publishes.
    Open {
        route: u32,
        conn: u32,
        z: u8,
    },
    /// Our last bytes are queued (an HTTP error, or a Close after framing
    /// was lost); what the peer still sends is dropped until it closes or
    /// the linger time is up.
    Lingering,
}

/// A deferred upgrade, waiting for its decision.
pub(crate) struct Pending {
    route: u32,
    accept: [u8; 28],
    protocols: Vec<String>,
    /// Bytes that came after the request head.
    rest: Vec<u8>,
    /// permessage-deflate, as negotiated when the request came.
    deflate: Option<Agreed>,
}

// Conn flags.
const PINGED: u8 = 1; // an idle Ping is out, no answer yet
const DRAIN: u8 = 1 << 1; // the handler waits for `drain`
const TOLD: u8 = 1 << 2; // `close` ran; the user data is gone
const TERMINATED: u8 = 1 << 3; // the socket is being closed without a handshake
/// permessage-deflate for what we send: with the thread's compressor (no
/// context takeover, a 15-bit window)...
pub(crate) const DEFLATE_SHARED: u8 = 1 << 4;
/// ... or with the connection's own (context takeover, or a window the
/// client limited), its settings and, once made, itself in [`Ctx::own_z`].
pub(crate) const DEFLATE_OWN: u8 = 1 << 5;
pub(crate) const DEFLATE: u8 = DEFLATE_SHARED | DEFLATE_OWN;

/// A connection's state for its route's handler.
pub(crate) struct Conn<D> {
    pub(crate) id: SockId,
    proto: Connection,
    /// Until [`Handler::close`] takes it.
    pub(crate) data: Option<D>,
    /// Topics and the handle flag, allocated only for connections that use
    /// them.
    pub(crate) ext: Option<Box<Extras>>,
    /// When the peer last sent anything, in loop ticks.
    last_rx: u32,
    /// The code of the Close we sent (0: none).
    sent_code: u16,
    pub(crate) flags: u8,
}

/// What a connection needs once it subscribes or hands out a handle.
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) topics: Vec<u32>,
    pub(crate) alive: Option<Arc<AtomicBool>>,
}

/// [`DEFLATE_OWN`]: how a connection compresses, and its compressor, made
/// at its first compressed message.
pub(crate) struct OwnZ {
    cfg: CompressorConfig,
    z: Option<Box<Compressor>>,
}

impl OwnZ {
    fn compressor(&mut self) -> &mut Compressor {
        let cfg = self.cfg;
        self.z.get_or_insert_with(|| Box::new(Compressor::new(cfg)))
    }
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
    fn leave(&mut self, ctx: &mut Ctx) {
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
    fn flush_control(&mut self, io: &mut Io) {
        if self.proto.has_control() {
            self.queue_control(io);
        }
    }

    #[cold]
    fn queue_control(&mut self, io: &mut Io) {
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
    fn call(
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
    fn panicked(&mut self, io: &mut Io, ctx: &mut Ctx, what: &str) {
        log!(
            Error,
            "{}: the handler panicked in `{what}`; closing with 1011",
            io.peer_name(self.id)
        );
        self.start_close(io, ctx, close_code::INTERNAL_ERROR, "internal error");
    }

    pub(crate) fn terminate(&mut self, io: &mut Io, ctx: &mut Ctx) {
        self.flags |= TERMINATED;
        self.leave(ctx);
        io.close(self.id);
    }
}

/// The frame header length a server uses for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The read being handled, as [`Socket::send`] needs to know it to send a
/// received message without copying it.
pub(crate) struct InputView {
    /// Address and length of the read buffer (0, 0: no read).
    base: usize,
    len: usize,
    /// Some range of the read buffer is queued: the batch must keep it.
    used: bool,
    /// The current message's payload in the read buffer, and where its
    /// frame began in this read (its header lies in between).
    msg: (usize, usize),
    frame_start: usize,
    /// The header bytes may still be overwritten with ours.
    spot: bool,
    /// Our header, to write over the client's once the callback is done
    /// with the buffer: where, the bytes, and how many (0: none).
    trick_at: usize,
    trick_hdr: [u8; MAX_HEADER_LEN],
    trick_len: u8,
    /// The current message reassembled into its own vector: its address
    /// and length, and whether it is queued (the batch must keep it).
    owned: (usize, usize),
    owned_used: bool,
}

impl InputView {
    const NONE: InputView = InputView {
        base: 0,
        len: 0,
        used: false,
        msg: (0, 0),
        frame_start: 0,
        spot: false,
        trick_at: 0,
        trick_hdr: [0; MAX_HEADER_LEN],
        trick_len: 0,
        owned: (0, 0),
        owned_used: false,
    };

    /// The current message is `bytes`, in the read buffer, in a frame that
    /// began at `frame_start`.
    #[inline]
    fn borrowed(&mut self, frame_start: usize, bytes: &[u8]) {
        self.msg = (bytes.as_ptr() as usize - self.base, bytes.len());
        self.frame_start = frame_start;
        self.spot = true;
    }

    /// After the callback on a reassembled message: moves it into the
    /// batch if the callback sent it back.
    fn hand_over(&mut self, io: &mut Io, id: SockId, data: Vec<u8>) {
        if std::mem::take(&mut self.owned_used) {
            io.keep_owned(id, data);
        }
        self.owned = (0, 0);
    }

    /// Queues `msg` on `out`, pointing into the read buffer or the
    /// reassembled message when that is where it is.
    #[inline]
    pub(crate) fn queue(&mut self, out: &mut Outbox<'_>, msg: Message<'_>) {
        let bytes = msg.as_bytes();
        let (p, n) = (bytes.as_ptr() as usize, bytes.len());
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: msg.opcode(),
            mask: None,
            payload_len: n as u64,
        };
        if n > 0 && p >= self.base && p + n <= self.base + self.len {
            self.used = true;
            let at = p - self.base;
            let hlen = header_len(n);
            if self.spot && (at, n) == self.msg && at - self.frame_start >= hlen {
                // The client's header, parsed and done with, lies just
                // before the payload and is longer than ours: ours goes
                // there (after the callback), so header and payload go out
                // as one piece. Only once: a second send of the same
                // message gets a header of its own.
                if n < 126 {
                    // The common case, without the general encoder.
                    self.trick_hdr[0] = 0x80 | msg.opcode() as u8;
                    self.trick_hdr[1] = n as u8;
                } else {
                    header.encode(&mut self.trick_hdr);
                }
                self.trick_at = at - hlen;
                self.trick_len = hlen as u8;
                self.spot = false;
                out.put_input(at - hlen..at + n);
            } else {
                out.put_with(|h| header.encode_into(h));
                out.put_input(at..at + n);
            }
        } else if n > 0 && (p, n) == self.owned {
            out.put_with(|h| header.encode_into(h));
            out.put_owned(n);
            self.owned_used = true;
        } else {
            out.put_with(|h| encode_frame(msg.opcode(), None, bytes, h));
        }
    }
}

/// The part of a worker that every route's code may use.
pub(crate) struct Ctx {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    slots: Vec<Slot>,
    pub(crate) topics: super::topics::Topics,
    /// Subscribers a publish found past their limit under the `Close`
    /// policy, closed once the publish is done.
    victims: Vec<SockId>,
    /// Shared permessage-deflate: this thread's compressor (no context
    /// takeover, a 15-bit window), made when first needed.
    compressor: Option<Box<Compressor>>,
    /// Dedicated-mode deflate: each connection's own compressor, by socket
    /// slot (only connections that agreed to it have an entry).
    pub(crate) own_z: HashMap<u32, OwnZ>,
    /// Where a message is compressed before it is framed.
    pub(crate) zbuf: Vec<u8>,
    /// This thread's counts, copied to [`Shared`] once per turn.
    pub(crate) counts: Counts,
}

/// One worker's counts of what its connections did (see
/// [`super::ServerStats`]): plain integers on the hot path, published with
/// one store each per loop turn.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) accepted: u64,
    pub(crate) messages: u64,
    pub(crate) frames: u64,
}

impl Ctx {
    fn slot(&mut self, id: SockId) -> &mut Slot {
        let i = id.index();
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || Slot::Empty);
        }
        &mut self.slots[i]
    }

    /// Frames `bytes` compressed (RSV1 set, RFC 7692 6) onto `out`, with
    /// the connection's own compressor ([`DEFLATE_OWN`] in `flags`; in
    /// [`Ctx::own_z`] under its `slot`) or this thread's.
    #[cold]
    pub(crate) fn queue_compressed(
        &mut self,
        flags: u8,
        slot: u32,
        cfg: &DeflateCfg,
        opcode: OpCode,
        bytes: &[u8],
        out: &mut Outbox<'_>,
    ) {
        let c = if flags & DEFLATE_OWN != 0 {
            match self.own_z.get_mut(&slot) {
                Some(o) => o.compressor(),
                None => {
                    // Closing (its compressor is gone): nothing more goes
                    // out, but stay valid and send it plain.
                    out.put_with(|h| encode_frame(opcode, None, bytes, h));
                    return;
                }
            }
        } else {
            shared_compressor(&mut self.compressor, cfg)
        };
        frame_compressed(c, &mut self.zbuf, opcode, bytes, out);
    }

    /// Queues `frame` to every subscriber of `topic` here but `skip`.
    pub(crate) fn publish_local(
        &mut self,
        io: &mut Io,
        topic: &str,
        frame: &Bytes,
        skip: Option<SockId>,
    ) {
        // Shared-mode deflate: the frame compressed at the first subscriber
        // that takes it, then shared by all of them. Subscribers with their
        // own compressor (dedicated mode: context takeover, or a smaller
        // window) have it compressed for each of them, in their stream's
        // order.
        let mut zframe: Option<Option<Bytes>> = None;
        let mut payload: Option<Option<(OpCode, &[u8])>> = None;
        for &sub in self.topics.subscribers(topic) {
            if Some(sub) == skip {
                continue;
            }
            let Some(&Slot::Open { route, z, .. }) = self.slots.get(sub.index()) else {
                continue;
            };
            let cfg = &self.shared.routes[route as usize].cfg;
            // One look-up for the limit and the queue.
            let Some(mut out) = io.outbox(sub) else {
                continue;
            };
            if out.queued() > cfg.max_backpressure {
                if cfg.policy == BackpressurePolicy::Close {
                    self.victims.push(sub);
                }
                continue;
            }
            self.counts.frames += 1;
            if z == DEFLATE_SHARED {
                // (Subscribers of routes with different deflate settings:
                // the first one's decide, as any no-takeover 15-bit stream
                // is valid for every shared-mode peer.)
                let zf = zframe.get_or_insert_with(|| {
                    compress_frame(&mut self.compressor, &mut self.zbuf, &cfg.deflate, frame)
                });
                out.put_shared(zf.as_ref().unwrap_or(frame));
                continue;
            }
            if z == DEFLATE_OWN {
                let p = payload.get_or_insert_with(|| super::socket::data_payload(frame, 0));
                if let (Some((opcode, data)), Some(o)) = (p, self.own_z.get_mut(&sub.slot)) {
                    if data.len() >= cfg.deflate.min_size {
                        frame_compressed(o.compressor(), &mut self.zbuf, *opcode, data, &mut out);
                        continue;
                    }
                }
            }
            out.put_shared(frame);
        }
    }
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

/// What an upgrade came to.
pub(crate) enum Outcome {
    /// Open, at this index of the route's slab: feed it the rest.
    Opened(u32),
    /// Refused: the response is queued.
    Refused,
    Deferred(Box<Pending>),
}

/// One route on one worker: its handler, its limits, its connections.
pub(crate) struct RouteState<H: Handler> {
    pub(crate) handler: Arc<H>,
    pub(crate) cfg: RouteCfg,
    pub(crate) route: u32,
    conns: Vec<Option<Conn<H::Data>>>,
    free: Vec<u32>,
}

impl<H: Handler> RouteState<H> {
    /// permessage-deflate for this request under the route's policy: the
    /// first of the client's offers it can take, if any.
    fn negotiate(&self, head: &Accepted<'_>) -> Option<Agreed> {
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
    fn open(
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
                refuse_500(io, id, &format!("subprotocol {p:?} was not offered"));
                return Outcome::Refused;
            }
        }
        if let Some((k, v)) = a.headers.iter().find(|(k, v)| !is_header_safe(k, v)) {
            refuse_500(io, id, &format!("unsafe response header {k:?}: {v:?}"));
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
        let c = self.conns[i as usize].as_mut().expect("just made");
        let handler = &*self.handler;
        c.call(io, ctx, &self.cfg, "open", |ws| handler.open(ws));
        Outcome::Opened(i)
    }

    /// Runs [`Handler::close`] once, handing it the user data.
    fn tell(handler: &H, c: &mut Conn<H::Data>, ctx: &mut Ctx, code: u16, reason: &str) {
        if c.flags & TOLD != 0 {
            return;
        }
        c.flags |= TOLD;
        c.leave(ctx);
        if let Some(d) = c.data.take() {
            if !guard(|| handler.close(d, code, reason)) {
                log!(Error, "the handler panicked in `close` (code {code})");
            }
        }
    }

    /// Frees the connection at `i` (after telling the handler).
    fn remove(&mut self, ctx: &mut Ctx, i: u32) {
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
    fn settle(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, i: u32) {
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

/// Refuses an upgrade with 500 after a handler's mistake, saying why in
/// the log.
fn refuse_500(io: &mut Io, id: SockId, why: &str) {
    log!(
        Error,
        "{}: upgrade refused with 500: {why}",
        io.peer_name(id)
    );
    io.send_with(id, |out| {
        write_refusal(500, &[], b"internal server error\n", out)
    });
}

/// Runs a handler callback, catching a panic in it. Unwinding on would end
/// the worker thread and every connection on it (with one thread, the
/// listener too); instead the caller closes just the connection the panic
/// came from (see [`Conn::panicked`]). The panic hook has printed the
/// message and where it was raised. False if `f` panicked.
#[inline]
fn guard(f: impl FnOnce()) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok()
}

/// Sends nothing more and cuts the connection after [`LINGER`].
fn linger(io: &mut Io, ctx: &mut Ctx, id: SockId) {
    *ctx.slot(id) = Slot::Lingering;
    io.shutdown_after_flush(id);
    let at = io.now() + LINGER;
    io.set_deadline(id, Some(at));
}

impl<H: Handler> RouteRt for RouteState<H> {
    fn upgrade(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, head: &Accepted<'_>) -> Outcome {
        let peer = io.peer(id);
        let handler = &*self.handler;
        let decision = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.upgrade(&Request { head, peer })
        }));
        let Ok(decision) = decision else {
            refuse_500(io, id, "the handler panicked in `upgrade`");
            return Outcome::Refused;
        };
        match decision {
            Upgrade::Accept(a) => {
                let offered = |p: &str| head.protocols().any(|o| o == p);
                let agreed = self.negotiate(head);
                self.open(io, ctx, id, &head.accept, &offered, a, agreed)
            }
            Upgrade::Reject(r) => {
                reject(io, id, r);
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
                    log!(
                        Error,
                        "{}: the handler panicked deferring an upgrade",
                        io.peer_name(id)
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
                    reject(io, id, r);
                    linger(io, ctx, id);
                }
            },
            Some(Err(_)) => {
                refuse_500(io, id, "a deferred decision of another route's type");
                linger(io, ctx, id);
            }
            None => {
                refuse_500(io, id, "the deferred upgrade was dropped undecided");
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
                    log!(Debug, "{}: closed by peer ({code:?})", io.peer_name(id));
                    let code = code.unwrap_or(close_code::NO_STATUS);
                    c.flush_control(io);
                    Self::tell(handler, c, ctx, code, &reason);
                }
                Ok(_) => {}
                Err(e) => {
                    if error.is_none() {
                        log!(
                            Info,
                            "{}: protocol error: {e}; closing with {}",
                            io.peer_name(id),
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
        if let Some(c) = self.conns[i as usize].as_mut() {
            match err {
                Some(e) => log!(Debug, "{}: read error: {e}", io.peer_name(id)),
                None => {
                    if c.proto.handle_eof() {
                        log!(
                            Debug,
                            "{}: connection closed without a Close frame",
                            io.peer_name(id)
                        );
                    }
                }
            }
            c.leave(ctx);
        }
        io.close(id);
    }

    fn timer(&mut self, io: &mut Io, ctx: &mut Ctx, id: SockId, i: u32) {
        let Some(c) = self.conns[i as usize].as_mut() else {
            io.close(id);
            return;
        };
        if !c.is_open() {
            // Our Close got no answer in time.
            c.proto.handle_timeout(io.now());
            log!(
                Debug,
                "{}: no Close from the peer in time",
                io.peer_name(id)
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
            log!(
                Info,
                "{}: silent for {:?} (idle timeout); closing with 1001",
                io.peer_name(id),
                self.cfg.idle_timeout
            );
            c.start_close(io, ctx, close_code::GOING_AWAY, "idle timeout");
        } else if silent >= half && c.flags & PINGED == 0 && self.cfg.send_pings {
            c.flags |= PINGED;
            io.send_with(id, |out| encode_frame(OpCode::Ping, None, b"", out));
            let at = io.instant_of(c.last_rx.saturating_add(idle));
            io.set_deadline(id, Some(at));
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

/// Frames `bytes` compressed by `c` onto `out`, `scratch` as the
/// compressor's output.
fn frame_compressed(
    c: &mut Compressor,
    scratch: &mut Vec<u8>,
    opcode: OpCode,
    bytes: &[u8],
    out: &mut Outbox<'_>,
) {
    out.put_with(|h| encode_compressed(c, scratch, opcode, bytes, h));
}

/// Appends `bytes` compressed by `c` to `out` as one frame (RSV1 set, RFC
/// 7692 6), `scratch` as the compressor's output: the header's length
/// depends on the compressed one. The scratch buffer is kept for the next
/// message, unless a large one made it large.
fn encode_compressed(
    c: &mut Compressor,
    scratch: &mut Vec<u8>,
    opcode: OpCode,
    bytes: &[u8],
    out: &mut Vec<u8>,
) {
    scratch.clear();
    c.compress(bytes, scratch);
    FrameHeader {
        fin: true,
        rsv: 0b100,
        opcode,
        mask: None,
        payload_len: scratch.len() as u64,
    }
    .encode_into(out);
    out.extend_from_slice(scratch);
    if scratch.capacity() > 256 << 10 {
        *scratch = Vec::new();
    }
}

/// This thread's shared-mode compressor (no context takeover, a 15-bit
/// window), made at its first use with `cfg`'s level and memory level.
fn shared_compressor<'a>(
    slot: &'a mut Option<Box<Compressor>>,
    cfg: &DeflateCfg,
) -> &'a mut Compressor {
    slot.get_or_insert_with(|| {
        Box::new(Compressor::new(CompressorConfig {
            level: cfg.level,
            window_bits: 15,
            mem_level: cfg.mem_level,
            takeover: false,
        }))
    })
}

/// `frame` (an unfragmented data frame as [`Message::frame`] encodes it)
/// with its payload compressed by the shared-mode compressor, `z` as
/// scratch; `None` for anything else, and for payloads below
/// `cfg.min_size`.
fn compress_frame(
    slot: &mut Option<Box<Compressor>>,
    z: &mut Vec<u8>,
    cfg: &DeflateCfg,
    frame: &[u8],
) -> Option<Bytes> {
    let (opcode, payload) = super::socket::data_payload(frame, cfg.min_size)?;
    let mut out = Vec::new();
    encode_compressed(shared_compressor(slot, cfg), z, opcode, payload, &mut out);
    Some(Bytes::from(out))
}

/// Queues the response of a rejected upgrade (a status outside 400-599,
/// or an unsafe header, becomes a 500, logged).
fn reject(io: &mut Io, id: SockId, r: Reject) {
    if !(400..=599).contains(&r.status) {
        log!(
            Error,
            "{}: upgrade rejected with status {}, which is not an error; sending 500",
            io.peer_name(id),
            r.status
        );
        return refuse_500(io, id, "bad reject status");
    }
    if let Some((k, v)) = r.headers.iter().find(|(k, v)| !is_header_safe(k, v)) {
        let why = format!("unsafe response header {k:?}: {v:?}");
        return refuse_500(io, id, &why);
    }
    log!(
        Info,
        "{}: upgrade rejected with {}",
        io.peer_name(id),
        r.status
    );
    io.send_with(id, |out| write_refusal(r.status, &r.headers, &r.body, out));
}

/// One worker thread's handler for the loop.
pub(crate) struct Worker {
    ctx: Ctx,
    routes: Vec<Box<dyn RouteRt>>,
    mailbox: mpsc::Receiver<Command>,
    waker: Arc<Waker>,
    /// Connections open on this thread.
    open: usize,
    /// Set at shutdown: when to cut what is still open.
    stopping: Option<Instant>,
    done: bool,
    last_warn: Option<Instant>,
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared>,
        routes: Vec<Box<dyn RouteRt>>,
        mailbox: mpsc::Receiver<Command>,
    ) -> Worker {
        let waker = shared.wakers[index].clone();
        Worker {
            ctx: Ctx {
                index,
                shared,
                slots: Vec::new(),
                topics: Default::default(),
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

    fn refuse(&mut self, io: &mut Io, id: SockId, bytes: &[u8]) {
        io.send(id, bytes);
        linger(io, &mut self.ctx, id);
    }

    fn handshake(&mut self, io: &mut Io, id: SockId, input: InputBuf) {
        let limits = self.ctx.shared.cfg.handshake_limits();
        let Slot::Handshake(partial) = self.ctx.slot(id) else {
            return;
        };
        // The head so far: this read, after the part received before it.
        let input = match partial.take() {
            None => input,
            Some(mut acc) => {
                acc.extend_from_slice(input.as_slice());
                InputBuf::Heap(*acc)
            }
        };
        let step = match parse_request(input.as_slice(), limits) {
            Ok(None) => None,
            Err(e) => {
                log!(Info, "{}: refused handshake: {e}", io.peer_name(id));
                return self.refuse(io, id, &refusal(e));
            }
            Ok(Some(head)) => {
                let Some(r) = self.ctx.shared.route_for(head.path()) else {
                    log!(
                        Info,
                        "{}: no route for {:?}; 404",
                        io.peer_name(id),
                        head.path()
                    );
                    let mut out = Vec::new();
                    write_refusal(404, &[], b"no such path\n", &mut out);
                    return self.refuse(io, id, &out);
                };
                let outcome = self.routes[r as usize].upgrade(io, &mut self.ctx, id, &head);
                Some((r, head.head_len, outcome))
            }
        };
        let Some((r, head_len, outcome)) = step else {
            // Incomplete: keep what came, with room for the rest.
            let mut acc = match input {
                InputBuf::Heap(v) => v,
                other => other.as_slice().to_vec(),
            };
            acc.reserve(limits.max_head.saturating_sub(acc.len()));
            *self.ctx.slot(id) = Slot::Handshake(Some(Box::new(acc)));
            return;
        };
        match outcome {
            Outcome::Opened(i) => {
                // The bytes after the head are the first frames.
                if input.as_slice().len() > head_len && io.is_open(id) {
                    self.routes[r as usize].data(io, &mut self.ctx, id, i, input, head_len);
                }
            }
            Outcome::Refused => linger(io, &mut self.ctx, id),
            Outcome::Deferred(mut p) => {
                p.rest = input.as_slice()[head_len..].to_vec();
                *self.ctx.slot(id) = Slot::Deferred(p);
            }
        }
    }

    fn start_shutdown(&mut self, io: &mut Io, grace: Duration) {
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
                    self.routes[route as usize].close(
                        io,
                        &mut self.ctx,
                        id,
                        conn,
                        close_code::GOING_AWAY,
                        "server shutting down",
                    );
                }
                Slot::Handshake(_) | Slot::Deferred(_) => io.close(id),
                Slot::Lingering | Slot::Empty => {}
            }
        }
    }

    /// Closes the subscribers a publish found past their limit (policy
    /// `Close`).
    fn close_victims(&mut self, io: &mut Io) {
        while let Some(id) = self.ctx.victims.pop() {
            if let Some(&Slot::Open { route, conn, .. }) = self.ctx.slots.get(id.index()) {
                if io.is_open(id) {
                    log!(
                        Info,
                        "{}: send queue past max-backpressure at a publish; closing with 1008",
                        io.peer_name(id)
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

    fn command(&mut self, io: &mut Io, cmd: Command) {
        let id = match &cmd {
            Command::Shutdown { grace } => return self.start_shutdown(io, *grace),
            Command::Publish { topic, frame } => {
                self.ctx.publish_local(io, topic, frame, None);
                return;
            }
            Command::Send { id, .. } | Command::Close { id, .. } => *id,
            Command::Resolve { id, .. } | Command::Abandoned { id, .. } => *id,
        };
        if io.id_of(id.slot) != Some(id) {
            // Gone since: the command is dropped (with any user data).
            return;
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
                log!(
                    Warn,
                    "{}: refused, {total} connections open (max-connections)",
                    io.peer_name(id)
                );
                self.last_warn = Some(now);
            }
            return self.refuse(
                io,
                id,
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
            Slot::Deferred(ref mut p) => {
                // A client should wait for the 101, but what it sends early
                // is kept, within the head's limit.
                if p.rest.len() + buf.as_slice().len() > max {
                    log!(
                        Info,
                        "{}: too much sent before the upgrade was decided",
                        io.peer_name(id)
                    );
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
        match *self.ctx.slot(id) {
            Slot::Open { route, conn, .. } => {
                self.routes[route as usize].eof(io, &mut self.ctx, id, conn, err)
            }
            Slot::Handshake(_) | Slot::Deferred(_) => {
                log!(Debug, "{}: closed during the handshake", io.peer_name(id));
                io.close(id);
            }
            Slot::Lingering | Slot::Empty => io.close(id),
        }
    }

    fn timer(&mut self, io: &mut Io, id: SockId) {
        match *self.ctx.slot(id) {
            Slot::Open { route, conn, .. } => {
                self.routes[route as usize].timer(io, &mut self.ctx, id, conn)
            }
            Slot::Handshake(_) => {
                log!(Info, "{}: handshake timed out", io.peer_name(id));
                io.close(id);
            }
            Slot::Deferred(_) => {
                log!(
                    Info,
                    "{}: the deferred upgrade was not decided within the handshake timeout",
                    io.peer_name(id)
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
        self.ctx.shared.counters[self.ctx.index].store(&self.ctx.counts, &io.counts);
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
        let slot = std::mem::size_of::<super::Slot>();
        let conn = std::mem::size_of::<Option<super::Conn<()>>>();
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
