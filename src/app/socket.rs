//! What a handler acts through: [`Socket`] inside callbacks, [`SocketRef`]
//! from anywhere else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::conn::{Conn, DEFLATE};
use super::ctx::Ctx;
use super::out::InputView;
use super::route::RouteCfg;
use super::worker::Command;
use super::{BackpressurePolicy, Reach, ServerHandle, Shared};
use crate::log::conn_event;
use crate::proto::close;
use crate::proto::error::close_code;
use crate::proto::frame::{encode_frame, FrameHeader, OpCode};
use crate::runtime::io::{Io, SockId};

/// A message, borrowed: text (always valid UTF-8) or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Is the payload empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }

    /// The whole frame a server sends for this message (unmasked), encoded
    /// once to be shared.
    pub(crate) fn frame(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.len() + 10);
        encode_frame(self.opcode(), None, self.as_bytes(), &mut v);
        Bytes::from(v)
    }
}

impl<'a> From<&'a str> for Message<'a> {
    fn from(s: &'a str) -> Self {
        Message::Text(s)
    }
}

impl<'a> From<&'a [u8]> for Message<'a> {
    fn from(b: &'a [u8]) -> Self {
        Message::Binary(b)
    }
}

/// The opcode and payload of `frame`, an unfragmented uncompressed data
/// frame as [`Message::frame`] encodes it, when the payload has at least
/// `min_size` bytes: a message to compress before it is sent.
pub(crate) fn data_payload(frame: &[u8], min_size: usize) -> Option<(OpCode, &[u8])> {
    let (h, n) = FrameHeader::decode(frame).ok().flatten()?;
    let payload = &frame[n..];
    (!h.opcode.is_control() && h.fin && h.rsv == 0 && payload.len() >= min_size)
        .then_some((h.opcode, payload))
}

/// What became of a send (as in uWebSockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; the connection's send queue is within its limit.
    Sent,
    /// Queued, but the queue is now past the route's `max_backpressure`:
    /// stop sending until [`crate::app::Handler::drain`].
    Backpressure,
    /// Not queued: the queue was already past the limit (policy `Drop`), or
    /// the connection is closing (or was closed for it, policy `Close`).
    Dropped,
}

/// A send from outside the connection's thread found it gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection is closed")
    }
}

impl std::error::Error for Gone {}

/// A connection inside a handler's callback, with its user data. Whatever
/// is sent through it in one callback (and in the rest of the loop's turn)
/// goes out in one write.
pub struct Socket<'a, D> {
    pub(crate) conn: &'a mut Conn<D>,
    pub(crate) io: &'a mut Io,
    pub(crate) ctx: &'a mut Ctx,
    pub(crate) cfg: &'a RouteCfg,
    pub(crate) view: &'a mut InputView,
}

impl<D> Socket<'_, D> {
    /// Sends `msg`. A message this callback received is sent without a copy
    /// (it stays in the read buffer until written); anything else is copied
    /// into the send queue.
    #[inline]
    pub fn send<'m>(&mut self, msg: impl Into<Message<'m>>) -> SendStatus {
        let msg = msg.into();
        if !self.conn.is_open() {
            return SendStatus::Dropped;
        }
        let limit = self.cfg.max_backpressure;
        let Some(mut out) = self.io.outbox(self.conn.id) else {
            return SendStatus::Dropped;
        };
        if out.queued() > limit {
            return self.past_limit();
        }
        if self.conn.flags & DEFLATE != 0 && msg.as_bytes().len() >= self.cfg.deflate.min_size {
            self.ctx.queue_compressed(
                self.conn.flags,
                self.conn.id.slot,
                &self.cfg.deflate,
                msg.opcode(),
                msg.as_bytes(),
                &mut out,
            );
        } else {
            self.view.queue(&mut out, msg);
        }
        self.ctx.counts.frames += 1;
        if out.queued() > limit {
            self.left_past_limit()
        } else {
            SendStatus::Sent
        }
    }

    /// Sends a frame encoded elsewhere ([`SocketRef::send`]).
    pub(crate) fn send_frame(&mut self, frame: Bytes) -> SendStatus {
        if !self.conn.is_open() {
            return SendStatus::Dropped;
        }
        if let Some(s) = self.over_limit() {
            return s;
        }
        let Some(mut out) = self.io.outbox(self.conn.id) else {
            return SendStatus::Dropped;
        };
        match (self.conn.flags & DEFLATE != 0)
            .then(|| data_payload(&frame, self.cfg.deflate.min_size))
            .flatten()
        {
            Some((opcode, payload)) => self.ctx.queue_compressed(
                self.conn.flags,
                self.conn.id.slot,
                &self.cfg.deflate,
                opcode,
                payload,
                &mut out,
            ),
            None => out.put_shared(&frame),
        }
        self.ctx.counts.frames += 1;
        self.status()
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send(Message::Text(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> SendStatus {
        self.send(Message::Binary(data))
    }

    /// Sends a Ping with `payload` (at most 125 bytes; longer is cut).
    pub fn ping(&mut self, payload: &[u8]) -> SendStatus {
        if !self.conn.is_open() {
            return SendStatus::Dropped;
        }
        let p = &payload[..payload.len().min(125)];
        if !self
            .io
            .send_with(self.conn.id, |out| encode_frame(OpCode::Ping, None, p, out))
        {
            return SendStatus::Dropped;
        }
        self.status()
    }

    /// Past the limit before sending: apply the route's policy.
    fn over_limit(&mut self) -> Option<SendStatus> {
        if self.io.buffered(self.conn.id) <= self.cfg.max_backpressure {
            return None;
        }
        Some(self.past_limit())
    }

    #[cold]
    fn past_limit(&mut self) -> SendStatus {
        self.ctx.stats().backpressure();
        self.ctx.stats().dropped();
        match self.cfg.policy {
            BackpressurePolicy::Drop => {
                self.conn.want_drain(self.io);
                SendStatus::Dropped
            }
            BackpressurePolicy::Close => {
                conn_event!(
                    INFO,
                    self.io,
                    self.conn.id,
                    "send queue past max-backpressure ({} bytes); closing with 1008",
                    self.cfg.max_backpressure
                );
                self.close(close_code::POLICY_VIOLATION, "send queue full");
                SendStatus::Dropped
            }
        }
    }

    /// A send left the queue past the limit: `drain` will follow.
    #[cold]
    fn left_past_limit(&mut self) -> SendStatus {
        self.ctx.stats().backpressure();
        self.conn.want_drain(self.io);
        SendStatus::Backpressure
    }

    fn status(&mut self) -> SendStatus {
        if self.io.buffered(self.conn.id) > self.cfg.max_backpressure {
            self.left_past_limit()
        } else {
            SendStatus::Sent
        }
    }

    /// Bytes queued on this connection and not yet written to the kernel.
    pub fn buffered_amount(&self) -> usize {
        self.io.buffered(self.conn.id)
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123
    /// bytes; longer is cut at a character boundary). A code that may not
    /// be sent (1005, 1006, 1015, unassigned ones) becomes 1011, logged.
    /// [`crate::app::Handler::close`] runs once the peer answers (or the
    /// close timeout passes).
    pub fn close(&mut self, code: u16, reason: &str) {
        let code = if close::is_valid_code(code) {
            code
        } else {
            tracing::warn!("close code {code} may not be sent; using 1011");
            close_code::INTERNAL_ERROR
        };
        self.conn
            .start_close(self.io, self.ctx, code, close::truncate_reason(reason));
    }

    /// Closes the TCP connection now, without a closing handshake.
    /// [`crate::app::Handler::close`] runs with 1006.
    pub fn terminate(&mut self) {
        self.conn.terminate(self.io, self.ctx);
    }

    /// Subscribes to `topic` (on this thread's table). Returns false if
    /// already subscribed, or the connection is closing.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        if !self.conn.is_open() {
            return false;
        }
        match self.ctx.topics.subscribe(self.conn.id, topic) {
            Some(t) => {
                self.conn.ext().topics.push(t);
                true
            }
            None => false,
        }
    }

    /// Unsubscribes from `topic`. Returns false if not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let Some(t) = self.ctx.topics.unsubscribe(self.conn.id, topic) else {
            return false;
        };
        if let Some(e) = self.conn.ext.as_deref_mut() {
            e.topics.retain(|&x| x != t);
        }
        true
    }

    /// The connection's name across the nodes (see [`ConnId`]).
    pub fn conn_id(&self) -> ConnId {
        ConnId::new(self.ctx.shared.node, self.ctx.index, self.conn.id)
    }

    /// Is this connection subscribed to `topic`?
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.ctx.topics.is_subscribed(self.conn.id, topic)
    }

    /// Sends `msg` to every subscriber of `topic` on every thread but this
    /// connection. The frame is encoded once and its bytes shared. As
    /// [`ServerHandle::publish`], `Dropped` if another thread's mailbox was
    /// full.
    pub fn publish<'m>(&mut self, topic: &str, msg: impl Into<Message<'m>>) -> SendStatus {
        self.publish_to(topic, msg.into(), Reach::Nodes)
    }

    /// Sends `msg` to every subscriber of `topic` on this node's threads
    /// but this connection, never through the broker (see
    /// [`ServerHandle::publish_local`]).
    pub fn publish_local<'m>(&mut self, topic: &str, msg: impl Into<Message<'m>>) -> SendStatus {
        self.publish_to(topic, msg.into(), Reach::Node)
    }

    /// This thread's subscribers at once, the other threads' (and nodes')
    /// through their mailboxes (and the broker).
    fn publish_to(&mut self, topic: &str, msg: Message<'_>, reach: Reach) -> SendStatus {
        let frame = msg.frame();
        let z = self.ctx.shared.shared_z();
        let id = Some(self.conn.id);
        self.ctx
            .publish_local(self.io, topic, &frame, z.as_ref(), id);
        self.ctx
            .shared
            .publish(Some(self.ctx.index), topic, frame, z, None, reach)
    }

    /// The user data the upgrade hook made.
    pub fn data(&self) -> &D {
        self.conn.data.as_ref().expect("data lives until close")
    }

    /// The user data, to change.
    pub fn data_mut(&mut self) -> &mut D {
        self.conn.data.as_mut().expect("data lives until close")
    }

    /// The peer's address, when known.
    pub fn peer_addr(&mut self) -> Option<SocketAddr> {
        self.io.peer(self.conn.id)
    }

    /// A handle to this connection for other threads and later times.
    pub fn handle(&mut self) -> SocketRef {
        let alive = self
            .conn
            .ext()
            .alive
            .get_or_insert_with(|| Arc::new(AtomicBool::new(true)))
            .clone();
        SocketRef {
            shared: self.ctx.shared.clone(),
            worker: self.ctx.index,
            id: self.conn.id,
            alive,
        }
    }

    /// The server this connection belongs to: [`ServerHandle::publish`]
    /// reaches every subscriber, this connection included.
    pub fn server(&self) -> ServerHandle {
        ServerHandle {
            shared: self.ctx.shared.clone(),
        }
    }
}

/// A connection, from any thread or task: `Send + Sync + Clone`. What it
/// sends goes through the connection's thread's queue; it is sent in order
/// with everything else sent from the same thread.
#[derive(Clone)]
pub struct SocketRef {
    pub(crate) shared: Arc<Shared>,
    pub(crate) worker: usize,
    pub(crate) id: SockId,
    pub(crate) alive: Arc<AtomicBool>,
}

impl SocketRef {
    /// The connection's name across the nodes (see [`ConnId`]).
    pub fn conn_id(&self) -> ConnId {
        ConnId::new(self.shared.node, self.worker, self.id)
    }

    /// Queues `msg` to the connection: `Sent` once it is in the
    /// connection's thread's mailbox, `Dropped` if that mailbox already
    /// holds [`crate::Config::max_mailbox_bytes`] (the thread is behind).
    /// On arrival the route's backpressure policy applies as to any send.
    /// `Err(Gone)` once the connection has closed (a send racing with the
    /// close is dropped on arrival instead).
    pub fn send<'m>(&self, msg: impl Into<Message<'m>>) -> Result<SendStatus, Gone> {
        self.check()?;
        let frame = msg.into().frame();
        let (bytes, id) = (frame.len(), self.id);
        if self
            .shared
            .command_frame(self.worker, bytes, Command::Send { id, frame })
        {
            Ok(SendStatus::Sent)
        } else {
            Ok(SendStatus::Dropped)
        }
    }

    /// Sends `msg` to every subscriber of `topic` on every thread (and,
    /// with a broker, every node) but this connection, as
    /// [`Socket::publish`] does from the connection's own callbacks: for a
    /// message that arrived some other way on its behalf (a gateway's
    /// HTTP API excluding the sender's socket). A closed connection
    /// excludes nobody: the message still goes to everyone else.
    pub fn publish<'m>(&self, topic: &str, msg: impl Into<Message<'m>>) -> SendStatus {
        let z = self.shared.shared_z();
        let except = Some(self.conn_id());
        self.shared
            .publish(None, topic, msg.into().frame(), z, except, Reach::Nodes)
    }

    /// Starts the closing handshake (see [`Socket::close`]).
    pub fn close(&self, code: u16, reason: &str) -> Result<(), Gone> {
        self.check()?;
        let reason = close::truncate_reason(reason).to_owned();
        self.shared.command(
            self.worker,
            Command::Close {
                id: self.id,
                code,
                reason,
            },
        );
        Ok(())
    }

    /// Is the connection still open?
    pub fn is_open(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn check(&self) -> Result<(), Gone> {
        if self.is_open() {
            Ok(())
        } else {
            Err(Gone)
        }
    }
}

impl std::fmt::Debug for SocketRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketRef")
            .field("worker", &self.worker)
            .field("slot", &self.id.index())
            .field("open", &self.is_open())
            .finish()
    }
}

/// A connection's name across the nodes of a deployment: the node that
/// holds it ([`ServerHandle::node`]) and its place there (its thread and
/// slot). From [`Socket::conn_id`] or [`SocketRef::conn_id`]; given to
/// [`ServerHandle::publish_except`] on any node, it leaves that one
/// connection out wherever it is. Two numbers, so that an application can
/// carry it in its own ids (a Pusher socket id is `node.local`). A slot's
/// next connection gets a new `local` (a generation in it changes), so an
/// old id names no one, until that slot has held 65,536 connections.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnId {
    /// The node's id ([`ServerHandle::node`]).
    pub node: u64,
    /// The connection's place on its node: thread, generation and slot.
    pub local: u64,
}

impl ConnId {
    pub(crate) fn new(node: u64, worker: usize, id: SockId) -> ConnId {
        ConnId {
            node,
            local: (worker as u64) << 48 | u64::from(id.gen) << 32 | u64::from(id.slot),
        }
    }

    /// Its thread and socket on its node, if `workers` has that thread.
    pub(crate) fn place(self, workers: usize) -> Option<(usize, SockId)> {
        let worker = (self.local >> 48) as usize;
        (worker < workers).then_some((
            worker,
            SockId {
                slot: self.local as u32,
                gen: (self.local >> 32) as u16,
            },
        ))
    }
}
