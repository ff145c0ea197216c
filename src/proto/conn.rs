//! The connection state machine: bytes in, events and bytes out.
//!
//! [`Connection::read`] takes the bytes of one read, *mutably*: payloads are
//! unmasked in place, and a message that arrived whole in this input is handed
//! out as a range of it ([`Payload::Input`]) with no copy. Anything cut by a
//! read boundary is copied once, into the header scratch (at most 14 bytes),
//! the control-frame scratch (at most 125) or the message [`Assembler`].
//! Because of that, the connection never holds on to the caller's buffer:
//! when `read` has consumed an input, the caller may reuse or release it.
//!
//! Replies the protocol requires (Pong for Ping, Close for Close, Close with
//! an error code for a violation) are queued inside and collected with
//! [`Connection::take_control`]. `read` returns after each event, so the
//! caller can interleave those replies with its own messages in order.
//!
//! Time comes in as `now` arguments; the connection reads no clock.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::close::{self, CloseState};
use super::compress::{self, Decompressor, InflateError};
use super::error::ProtocolError;
use super::frame::{
    encode_frame, FrameHeader, OpCode, RawHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use super::mask::apply_mask;
use super::message::{Assembler, MessageKind};
use super::utf8::{self, Utf8Validator};

/// Limits the protocol core enforces. See [`crate::config::Config`] for the
/// defaults and the attacks they stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest frame payload accepted, in bytes (1009 past it).
    pub max_frame_size: u64,
    /// Longest message accepted, summed over its fragments (1009 past it).
    pub max_message_size: u64,
    /// How long to wait for the peer's Close after sending ours.
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 64 << 20,
            max_message_size: 64 << 20,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// [`Limits`] as a connection keeps them: 8 bytes smaller, since every
/// connection carries a copy.
#[derive(Debug, Clone, Copy)]
struct PackedLimits {
    max_frame_size: u64,
    max_message_size: u64,
    close_timeout_ms: u32,
    /// Not a limit: the connection's permessage-deflate receiving state
    /// ([`Connection::enable_inflate`]), kept here in what would be this
    /// struct's padding, where it costs no byte of the connection's.
    inflate: u8,
}

impl PackedLimits {
    fn close_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.close_timeout_ms))
    }
}

/// A control frame's payload, taken from the connection's scratch (which
/// is not allocated when the payload is empty).
struct CtrlPayload(Option<Box<[u8; MAX_CONTROL_PAYLOAD]>>, usize);

impl CtrlPayload {
    fn bytes(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], |b| &b[..self.1])
    }

    /// The payload as a vector, reusing the scratch's allocation (none for
    /// an empty payload).
    fn into_vec(self) -> Vec<u8> {
        match self.0 {
            None => Vec::new(),
            Some(b) => {
                let mut v = (b as Box<[u8]>).into_vec();
                v.truncate(self.1);
                v
            }
        }
    }
}

/// The opcode of a data frame: the message's kind on its first frame,
/// `Continuation` (`None`) on the ones after.
fn data_opcode(first: Option<MessageKind>) -> OpCode {
    match first {
        Some(MessageKind::Text) => OpCode::Text,
        Some(MessageKind::Binary) => OpCode::Binary,
        None => OpCode::Continuation,
    }
}

/// Which end of the connection this is. It decides the masking rules (5.1):
/// clients mask every frame, servers none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts masked frames, sends unmasked ones.
    Server,
    /// Accepts unmasked frames, sends masked ones.
    Client,
}

/// Where a message's payload is.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload {
    /// In the input passed to this `read`, at this range, already unmasked.
    Input(Range<usize>),
    /// Reassembled from fragments or from several reads; now the caller's.
    Owned(Vec<u8>),
}

/// Something the peer did.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete, valid message.
    Message {
        /// Text (valid UTF-8) or binary.
        kind: MessageKind,
        /// The payload.
        payload: Payload,
    },
    /// A Ping, with its payload; its Pong is queued.
    Ping(Vec<u8>),
    /// A Pong, with its payload.
    Pong(Vec<u8>),
    /// The peer's Close arrived. Any reply is queued, and the state is
    /// [`CloseState::Closed`]: flush, then close the TCP connection.
    Closed {
        /// The peer's status code, if it sent one.
        code: Option<u16>,
        /// The peer's reason (valid UTF-8, at most 123 bytes; often empty).
        reason: String,
    },
}

/// What [`Connection::read_borrowed`] found: a message's data borrowed
/// from the input when it arrived whole, text already as `&str`.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'i> {
    /// A text message, wholly in the input.
    Text(&'i str),
    /// A binary message, wholly in the input.
    Binary(&'i [u8]),
    /// A text message reassembled from fragments or reads.
    TextOwned(String),
    /// A binary message reassembled from fragments or reads.
    BinaryOwned(Vec<u8>),
    /// Anything else the peer did.
    Other(Event),
}

/// Refusal to send: the closing handshake has begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOpen;

#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Offset of the next payload byte within the frame, modulo 4: all
    /// that unmasking needs to know of it.
    phase: u8,
    /// Drop the payload: the frame was rejected, or we are closing.
    skip: bool,
}

#[derive(Debug, Clone, Copy)]
enum Rx {
    /// Between frames. `hbuf[..hlen]` holds a header cut by a read boundary.
    Header,
    /// Inside a frame's payload.
    Payload(Frame),
    /// Frame boundaries are lost (a length that cannot be read); drop all.
    Lost,
}

/// One WebSocket connection after the handshake. Sans-IO: see the module docs.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    limits: PackedLimits,
    state: CloseState,
    rx: Rx,
    hbuf: [u8; MAX_HEADER_LEN],
    hlen: u8,
    /// A control frame's payload as it arrives. Allocated on its first
    /// byte and freed once the frame is handled: an idle connection keeps
    /// 8 bytes here rather than 125.
    ctrl: Option<Box<[u8; MAX_CONTROL_PAYLOAD]>>,
    ctrl_len: u8,
    asm: Assembler,
    /// The kind of the fragmented message being assembled, if any.
    asm_kind: Option<MessageKind>,
    utf8: Utf8Validator,
    /// Queued control frames, in order; allocated only while some are
    /// queued, so an idle connection keeps 8 bytes here.
    #[expect(
        clippy::box_collection,
        reason = "8 bytes in every idle connection where a Vec would take 24"
    )]
    out: Option<Box<Vec<u8>>>,
    /// The frame being read is a Close.
    peer_sent_close: bool,
    /// xorshift64 state for client mask keys (5.3 asks for unpredictable keys
    /// to defeat proxy cache poisoning; the caller seeds it from a CSPRNG).
    rng: u64,
}

/// The permessage-deflate receiving state (`PackedLimits::inflate`): 0 when
/// not agreed; else the peer's window bits (8 to 15), with these flags. The
/// peer keeps its window across messages, so ours is kept too:
const TAKEOVER: u8 = 0x80;
/// The message in progress is compressed.
const INFLATING: u8 = 0x40;
const WINDOW_BITS: u8 = 0x0f;

fn inflate_error(e: InflateError, out: &[u8], max: u64) -> ProtocolError {
    match e {
        InflateError::TooBig => ProtocolError::MessageTooBig {
            len: out.len() as u64,
            max,
        },
        InflateError::Corrupt => ProtocolError::BadCompressedData,
    }
}

impl Connection {
    /// A server-side connection.
    pub fn server(limits: Limits) -> Connection {
        Connection::new(Role::Server, limits, 0)
    }

    /// A client-side connection; `seed` (non-zero, random) seeds mask keys.
    pub fn client(limits: Limits, seed: u64) -> Connection {
        Connection::new(Role::Client, limits, seed | 1)
    }

    fn new(role: Role, limits: Limits, rng: u64) -> Connection {
        Connection {
            role,
            limits: PackedLimits {
                max_frame_size: limits.max_frame_size,
                max_message_size: limits.max_message_size,
                // Milliseconds in a u32 reach 49 days; longer is saturated.
                close_timeout_ms: u32::try_from(limits.close_timeout.as_millis())
                    .unwrap_or(u32::MAX),
                inflate: 0,
            },
            state: CloseState::Open,
            rx: Rx::Header,
            hbuf: [0; MAX_HEADER_LEN],
            hlen: 0,
            ctrl: None,
            ctrl_len: 0,
            asm: Assembler::default(),
            asm_kind: None,
            utf8: Utf8Validator::default(),
            out: None,
            peer_sent_close: false,
            rng,
        }
    }

    /// permessage-deflate was agreed: the peer may compress messages
    /// (RSV1 on their first frame), with a window of `peer_window_bits`,
    /// kept across messages when `peer_takeover`. The message-size limit
    /// applies to the inflated size.
    pub fn enable_inflate(&mut self, peer_window_bits: u8, peer_takeover: bool) {
        self.limits.inflate =
            peer_window_bits.clamp(8, 15) | if peer_takeover { TAKEOVER } else { 0 };
    }

    /// Whether permessage-deflate was agreed ([`Connection::enable_inflate`]).
    pub fn inflates(&self) -> bool {
        self.limits.inflate != 0
    }

    fn inflating(&self) -> bool {
        self.limits.inflate & INFLATING != 0
    }

    /// A compressed message begins: a decompressor for it. With takeover,
    /// this connection's own, made at its first compressed message and
    /// kept (in the assembler); without, one lent by the thread's spares
    /// only while a compressed message is coming in, so that an idle
    /// connection holds nothing for the extension.
    fn start_inflating(&mut self) {
        self.limits.inflate |= INFLATING;
        let state = self.limits.inflate;
        let slot = self.asm.inflater();
        if slot.is_none() {
            *slot = Some(if state & TAKEOVER != 0 {
                Box::new(Decompressor::new(state & WINDOW_BITS, true))
            } else {
                compress::lend_decompressor()
            });
        }
    }

    /// The compressed message ended (or failed: `failed`, its data
    /// dropped, and with it any window).
    fn end_inflating(&mut self, failed: bool) {
        self.limits.inflate &= !INFLATING;
        let takeover = self.limits.inflate & TAKEOVER != 0;
        let slot = self.asm.inflater();
        if failed {
            if let Some(d) = slot.as_mut() {
                d.reset();
            }
        }
        if !takeover {
            if let Some(d) = slot.take() {
                compress::return_decompressor(d);
            }
        }
        self.asm.drop_if_empty();
    }

    /// Inflates a piece of the compressed message in progress onto the
    /// assembler, validating new text as it comes out.
    fn inflate_piece(&mut self, piece: &[u8], fin: bool) -> Result<(), ProtocolError> {
        let max = self.limits.max_message_size;
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        let (out, d) = self.asm.inflate_parts();
        let d = d.expect("a decompressor while inflating");
        let before = out.len();
        let mut r = d.feed(piece, out, limit);
        if r.is_ok() && fin {
            r = d.finish(out, limit);
        }
        if let Err(e) = r {
            return Err(inflate_error(e, out, max));
        }
        if self.asm_kind == Some(MessageKind::Text) && self.utf8.feed(&out[before..]).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(())
    }

    /// The closing-handshake state.
    #[inline]
    pub fn state(&self) -> CloseState {
        self.state
    }

    /// True once the TCP connection should be closed (after flushing).
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.state == CloseState::Closed
    }

    /// True when there are queued control frames to send.
    #[inline]
    pub fn has_control(&self) -> bool {
        self.out.is_some()
    }

    /// Appends the queued control frames (Pong, Close) to `dst`.
    pub fn take_control(&mut self, dst: &mut Vec<u8>) {
        // Control frames are rare: the memory goes back rather than stay
        // with a connection that may sit idle.
        if let Some(out) = self.out.take() {
            dst.extend_from_slice(&out);
        }
    }

    /// True once frame boundaries are lost (a length that cannot be read,
    /// or a frame too large to skip): nothing more can be read, so the
    /// caller should flush the queued Close and close the TCP connection
    /// instead of waiting for the peer's Close.
    #[inline]
    pub fn framing_lost(&self) -> bool {
        matches!(self.rx, Rx::Lost)
    }

    /// When [`Connection::handle_timeout`] should be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            CloseState::CloseSent { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Gives up on a peer that did not answer our Close in time.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let CloseState::CloseSent { deadline } = self.state {
            if now >= deadline {
                self.state = CloseState::Closed;
            }
        }
    }

    /// The peer closed its end of the TCP connection. Returns true if that
    /// was abrupt (no closing handshake had begun).
    pub fn handle_eof(&mut self) -> bool {
        let abrupt = self.state == CloseState::Open;
        self.state = CloseState::Closed;
        abrupt
    }

    /// Starts the closing handshake with `code` (a valid one, see
    /// [`close::is_valid_code`]). Does nothing once closing has begun.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        if self.state == CloseState::Open {
            debug_assert!(close::is_valid_code(code));
            let mask = self.next_mask();
            close::encode(Some(code), reason, mask, self.queue());
            self.state = CloseState::CloseSent {
                deadline: now + self.limits.close_timeout(),
            };
        }
    }

    /// Appends the header of an unfragmented data message of `len` bytes to
    /// `out`. For a client, returns the mask key the caller must apply to the
    /// payload (with [`apply_mask`], offset 0) before sending it.
    pub fn send_message(
        &mut self,
        kind: MessageKind,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<Option<[u8; 4]>, NotOpen> {
        self.send_fragment(Some(kind), true, len, out)
    }

    /// Appends a whole unfragmented data message, header and payload,
    /// masked when this is a client. Fails, as [`Connection::send_message`]
    /// does, once the connection is closing.
    pub fn write_message(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), NotOpen> {
        if self.state != CloseState::Open {
            return Err(NotOpen);
        }
        let mask = self.next_mask();
        encode_frame(data_opcode(Some(kind)), mask, payload, out);
        Ok(())
    }

    /// Appends the header of one fragment of a data message: `first` is the
    /// message's kind for its first fragment and `None` for the ones after
    /// (continuations); `fin` marks the last. Returns the mask key as
    /// [`Connection::send_message`] does. The caller keeps the order (5.4).
    pub fn send_fragment(
        &mut self,
        first: Option<MessageKind>,
        fin: bool,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<Option<[u8; 4]>, NotOpen> {
        self.data_header(first, fin, 0, len, out)
    }

    /// As [`Connection::send_fragment`], for a message the caller compressed
    /// with permessage-deflate: RSV1 is set on its first frame (RFC 7692 6),
    /// and `len` is the compressed length. Only once the extension was
    /// agreed.
    pub fn send_compressed_fragment(
        &mut self,
        first: Option<MessageKind>,
        fin: bool,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<Option<[u8; 4]>, NotOpen> {
        let rsv = if first.is_some() { 0b100 } else { 0 };
        self.data_header(first, fin, rsv, len, out)
    }

    fn data_header(
        &mut self,
        first: Option<MessageKind>,
        fin: bool,
        rsv: u8,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<Option<[u8; 4]>, NotOpen> {
        if self.state != CloseState::Open {
            return Err(NotOpen);
        }
        let mask = self.next_mask();
        FrameHeader {
            fin,
            rsv,
            opcode: data_opcode(first),
            mask,
            payload_len: len,
        }
        .encode_into(out);
        Ok(mask)
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Server => None,
            Role::Client => {
                let mut x = self.rng;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.rng = x;
                Some((x as u32).to_ne_bytes())
            }
        }
    }

    /// Processes `input`, returning how much of it was consumed and what,
    /// if anything, happened.
    ///
    /// Call it again with the unconsumed rest until all is consumed; it stops
    /// after each event so the caller can act in order. A [`Payload::Input`]
    /// range is relative to this call's `input`.
    ///
    /// On `Err` the connection has already begun to fail: a Close with the
    /// error's code is queued (see [`Connection::take_control`]) and the rest
    /// of the input is to be fed in as usual, so the peer's Close is found.
    pub fn read(
        &mut self,
        input: &mut [u8],
        now: Instant,
    ) -> (usize, Result<Option<Event>, ProtocolError>) {
        let mut off = 0;
        match self.step(input, &mut off) {
            Ok(ev) => (off, Ok(ev)),
            Err(e) => {
                if let ProtocolError::FrameTooBig { .. } = e {
                    // Too large to skip in search of the peer's Close: the
                    // frame boundaries are as good as lost.
                    self.rx = Rx::Lost;
                }
                self.fail(e, now);
                if self.peer_sent_close {
                    self.state = CloseState::Closed;
                }
                (off, Err(e))
            }
        }
    }

    /// [`Connection::read`], with a message's data handed out as borrowed
    /// (or owned) bytes and text, rather than as a range of `input`: text
    /// is validated once, here, and never again by the caller.
    #[inline]
    pub fn read_borrowed<'i>(
        &mut self,
        input: &'i mut [u8],
        now: Instant,
    ) -> (usize, Result<Option<Received<'i>>, ProtocolError>) {
        let (n, res) = self.read(input, now);
        let input: &'i [u8] = input;
        let res = res.map(|ev| {
            ev.map(|ev| match ev {
                Event::Message { kind, payload } => match (kind, payload) {
                    (MessageKind::Text, Payload::Input(r)) => {
                        // SAFETY: `read` validated exactly these bytes as
                        // UTF-8 (a text message is delivered only once it
                        // passed), and `input` has been borrowed since, so
                        // they are unchanged.
                        let text = unsafe { utf8::assume_valid(&input[r]) };
                        Received::Text(text)
                    }
                    (MessageKind::Binary, Payload::Input(r)) => Received::Binary(&input[r]),
                    (MessageKind::Text, Payload::Owned(v)) => {
                        // SAFETY: the streaming validator accepted every
                        // piece and the end of this message before `read`
                        // delivered it.
                        let text = unsafe { utf8::assume_valid_owned(v) };
                        Received::TextOwned(text)
                    }
                    (MessageKind::Binary, Payload::Owned(v)) => Received::BinaryOwned(v),
                },
                other => Received::Other(other),
            })
        });
        (n, res)
    }

    /// Reacts to a violation: queue our Close and stop accepting messages.
    fn fail(&mut self, err: ProtocolError, now: Instant) {
        self.reset_message();
        self.utf8.reset();
        match self.state {
            CloseState::Open => {
                let mask = self.next_mask();
                close::encode(Some(err.close_code()), &err.to_string(), mask, self.queue());
                self.state = CloseState::CloseSent {
                    deadline: now + self.limits.close_timeout(),
                };
            }
            // Already closing: nothing more to say.
            CloseState::CloseSent { .. } | CloseState::Closed => {}
        }
    }

    fn step(&mut self, input: &mut [u8], off: &mut usize) -> Result<Option<Event>, ProtocolError> {
        if let Some(ev) = self.whole_frame(input, off)? {
            return Ok(Some(ev));
        }
        loop {
            if self.state == CloseState::Closed {
                // 5.5.1: after the peer's Close "the endpoint MUST NOT" expect
                // more; anything that follows is dropped.
                *off = input.len();
                return Ok(None);
            }
            match self.rx {
                Rx::Lost => {
                    *off = input.len();
                    return Ok(None);
                }
                Rx::Header => {
                    if *off == input.len() {
                        return Ok(None);
                    }
                    let Some(raw) = self.decode_header(input, off)? else {
                        return Ok(None);
                    };
                    if let Some(ev) = self.begin_frame(raw, input, off)? {
                        return Ok(Some(ev));
                    }
                }
                Rx::Payload(mut f) => {
                    let avail = (input.len() - *off)
                        .min(usize::try_from(f.remaining).unwrap_or(usize::MAX));
                    if avail == 0 && f.remaining > 0 {
                        return Ok(None);
                    }
                    let chunk = &mut input[*off..*off + avail];
                    *off += avail;
                    f.remaining -= avail as u64;
                    if !f.skip {
                        if let Some(k) = f.mask {
                            apply_mask(chunk, k, usize::from(f.phase));
                        }
                        f.phase = ((usize::from(f.phase) + avail) & 3) as u8;
                        if f.opcode.is_control() {
                            let n = self.ctrl_len as usize;
                            let buf = self
                                .ctrl
                                .get_or_insert_with(|| Box::new([0; MAX_CONTROL_PAYLOAD]));
                            buf[n..n + avail].copy_from_slice(chunk);
                            self.ctrl_len += avail as u8;
                        } else if self.inflating() {
                            // The trailer and the last of the output wait for
                            // the end of the message (end_frame).
                            if let Err(e) = self.inflate_piece(chunk, false) {
                                self.rx = Rx::Payload(Frame { skip: true, ..f });
                                return Err(e);
                            }
                        } else {
                            if self.asm_kind == Some(MessageKind::Text) {
                                // Fail fast: judge the bytes as they arrive.
                                if self.utf8.feed(chunk).is_err() {
                                    self.rx = Rx::Payload(Frame { skip: true, ..f });
                                    return Err(ProtocolError::InvalidUtf8);
                                }
                            }
                            self.asm.push(chunk);
                        }
                    }
                    if f.remaining > 0 {
                        self.rx = Rx::Payload(f);
                        return Ok(None);
                    }
                    self.rx = Rx::Header;
                    if let Some(ev) = self.end_frame(f)? {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }

    /// The frame most reads start with, taken without the general path's
    /// steps (the header's scratch, `RawHeader`, `validate`, `begin_frame`):
    /// a whole text or binary message in one frame, without RSV bits, masked
    /// as the role requires, with a 7- or 16-bit length, all of it in
    /// `input`, while the connection is open and assembles no message, and
    /// within the limits. It is delivered exactly as `begin_frame`'s
    /// in-place path would deliver it. Anything else returns `Ok(None)`
    /// having changed nothing, for the general path to take or reject.
    #[inline]
    fn whole_frame(
        &mut self,
        input: &mut [u8],
        off: &mut usize,
    ) -> Result<Option<Event>, ProtocolError> {
        if !matches!(self.rx, Rx::Header)
            || self.hlen != 0
            || self.asm_kind.is_some()
            || !matches!(self.state, CloseState::Open)
        {
            return Ok(None);
        }
        let (kind, b1) = match *input {
            [0x81, b1, ..] => (MessageKind::Text, b1),
            [0x82, b1, ..] => (MessageKind::Binary, b1),
            _ => return Ok(None),
        };
        let masked = matches!(self.role, Role::Server);
        if (b1 & 0x80 != 0) != masked {
            return Ok(None);
        }
        let (len, ext) = match b1 & 0x7F {
            126 => match *input {
                [_, _, hi, lo, ..] => (usize::from(u16::from_be_bytes([hi, lo])), 2),
                _ => return Ok(None),
            },
            127 => return Ok(None),
            n => (usize::from(n), 0),
        };
        let start = 2 + ext + if masked { 4 } else { 0 };
        if input.len() < start + len || self.check_data_len(len as u64).is_err() {
            return Ok(None);
        }
        self.peer_sent_close = false;
        let range = start..start + len;
        *off = range.end;
        let (head, payload) = input[..range.end].split_at_mut(start);
        if masked {
            let key = head[start - 4..].try_into().expect("4 bytes");
            apply_mask(payload, key, 0);
        }
        if matches!(kind, MessageKind::Text) && utf8::validate(payload).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Some(Event::Message {
            kind,
            payload: Payload::Input(range),
        }))
    }

    /// Reads a header from the scratch plus `input[*off..]`; `Ok(None)` when
    /// the input ran out first (what there was is kept in the scratch).
    fn decode_header(
        &mut self,
        input: &[u8],
        off: &mut usize,
    ) -> Result<Option<RawHeader>, ProtocolError> {
        let rest = &input[*off..];
        let have = self.hlen as usize;
        let res = if have == 0 {
            RawHeader::decode(rest)
        } else {
            let take = (MAX_HEADER_LEN - have).min(rest.len());
            self.hbuf[have..have + take].copy_from_slice(&rest[..take]);
            RawHeader::decode(&self.hbuf[..have + take])
        };
        match res {
            Ok(Some(raw)) => {
                *off += raw.header_len - have;
                self.hlen = 0;
                Ok(Some(raw))
            }
            Ok(None) => {
                // Fewer than MAX_HEADER_LEN bytes in all, or decode would have
                // had enough: the whole rest fits in the scratch.
                if have == 0 {
                    self.hbuf[..rest.len()].copy_from_slice(rest);
                }
                self.hlen = (have + rest.len()) as u8;
                *off = input.len();
                Ok(None)
            }
            Err(e) => {
                self.rx = Rx::Lost;
                Err(e)
            }
        }
    }

    /// Judges a new frame's header and sets up reading its payload. A data
    /// frame that is a whole message and wholly in `input` is delivered at
    /// once, in place.
    fn begin_frame(
        &mut self,
        raw: RawHeader,
        input: &mut [u8],
        off: &mut usize,
    ) -> Result<Option<Event>, ProtocolError> {
        // Until judged, the frame is to be skipped: if a check below fails,
        // its payload is dropped and the next frame is found after it.
        let skip = Frame {
            opcode: OpCode::Binary,
            fin: true,
            mask: None,
            remaining: raw.payload_len,
            phase: 0,
            skip: true,
        };
        self.rx = Rx::Payload(skip);
        // A Close, even a malformed one (Autobahn 7.3.6: 126 bytes long), is
        // the peer's last word: if it is rejected, answer and close instead of
        // waiting for another.
        self.peer_sent_close = raw.b0 & 0x0F == OpCode::Close as u8;
        let h = raw.validate()?;
        // RFC 7692 6: with permessage-deflate, RSV1 on the first frame of a
        // data message marks it compressed; on anything else (a
        // continuation, a control frame) it is still an error.
        let compressed = h.rsv != 0;
        if compressed
            && !(h.rsv == 0b100
                && self.limits.inflate != 0
                && matches!(h.opcode, OpCode::Text | OpCode::Binary))
        {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        match (self.role, h.mask.is_some()) {
            // 5.1: "The server MUST close the connection upon receiving a frame
            // that is not masked." And the converse for clients.
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if self.state != CloseState::Open {
            // Closing: only the peer's Close matters now.
            if h.opcode == OpCode::Close {
                self.ctrl_len = 0;
                self.rx = Rx::Payload(Frame {
                    opcode: h.opcode,
                    fin: true,
                    mask: h.mask,
                    remaining: h.payload_len,
                    phase: 0,
                    skip: false,
                });
            }
            return Ok(None);
        }
        let len = h.payload_len;
        match h.opcode {
            OpCode::Continuation => {
                if self.asm_kind.is_none() {
                    return Err(ProtocolError::UnexpectedContinuation);
                }
                if self.inflating() {
                    self.check_frame_len(len)?;
                } else {
                    self.check_data_len(len)?;
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.asm_kind.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                let kind = if h.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                if compressed {
                    // Inflated as it arrives: the frame limit applies to the
                    // compressed frame, the message limit to what comes out.
                    self.check_frame_len(len)?;
                    self.asm_kind = Some(kind);
                    self.utf8.reset();
                    self.start_inflating();
                    self.rx = Rx::Payload(Frame {
                        opcode: h.opcode,
                        fin: h.fin,
                        mask: h.mask,
                        remaining: len,
                        phase: 0,
                        skip: false,
                    });
                    // An empty frame ends at once, in the step loop.
                    return Ok(None);
                }
                self.check_data_len(len)?;
                let avail = (input.len() - *off) as u64;
                if h.fin && len <= avail {
                    // The zero-copy path: one frame, one read.
                    let range = *off..*off + len as usize;
                    *off = range.end;
                    self.rx = Rx::Header;
                    let payload = &mut input[range.clone()];
                    if let Some(k) = h.mask {
                        apply_mask(payload, k, 0);
                    }
                    if kind == MessageKind::Text && utf8::validate(payload).is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    return Ok(Some(Event::Message {
                        kind,
                        payload: Payload::Input(range),
                    }));
                }
                self.asm_kind = Some(kind);
                self.utf8.reset();
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => self.ctrl_len = 0,
        }
        self.rx = Rx::Payload(Frame {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask,
            remaining: len,
            phase: 0,
            skip: false,
        });
        Ok(None)
    }

    fn check_data_len(&self, len: u64) -> Result<(), ProtocolError> {
        self.check_frame_len(len)?;
        self.asm.check_room(len, self.limits.max_message_size)
    }

    fn check_frame_len(&self, len: u64) -> Result<(), ProtocolError> {
        if len > self.limits.max_frame_size {
            return Err(ProtocolError::FrameTooBig {
                len,
                max: self.limits.max_frame_size,
            });
        }
        Ok(())
    }

    /// The last frame of a compressed message is in: the rest of its data
    /// comes out, and the message is delivered.
    fn end_compressed(&mut self, kind: MessageKind) -> Result<Option<Event>, ProtocolError> {
        self.inflate_piece(&[], true)?;
        if kind == MessageKind::Text && self.utf8.finish().is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        self.end_inflating(false);
        self.asm_kind = None;
        Ok(Some(Event::Message {
            kind,
            payload: Payload::Owned(self.asm.finish()),
        }))
    }

    /// Drops the message being assembled, if any, and its memory.
    fn reset_message(&mut self) {
        self.asm.reset();
        self.asm_kind = None;
        if self.inflating() {
            self.end_inflating(true);
        }
    }

    /// Takes the control payload gathered so far, freeing the scratch.
    fn take_ctrl(&mut self) -> CtrlPayload {
        let len = std::mem::take(&mut self.ctrl_len) as usize;
        CtrlPayload(self.ctrl.take(), len)
    }

    /// The queue of control frames to send, allocated when first needed.
    fn queue(&mut self) -> &mut Vec<u8> {
        self.out.get_or_insert_with(Default::default)
    }

    /// A frame's payload is complete.
    fn end_frame(&mut self, f: Frame) -> Result<Option<Event>, ProtocolError> {
        if f.skip {
            return Ok(None);
        }
        match f.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if !f.fin {
                    return Ok(None);
                }
                if self.inflating() {
                    let kind = self.asm_kind.expect("a message in progress");
                    return self.end_compressed(kind);
                }
                if self.asm_kind == Some(MessageKind::Text) && self.utf8.finish().is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                let kind = self.asm_kind.take().expect("a message in progress");
                let data = self.asm.finish();
                Ok(Some(Event::Message {
                    kind,
                    payload: Payload::Owned(data),
                }))
            }
            OpCode::Ping => {
                // 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a
                // Pong frame in response ... [with] identical Application data".
                let mask = self.next_mask();
                let ctrl = self.take_ctrl();
                encode_frame(OpCode::Pong, mask, ctrl.bytes(), self.queue());
                Ok(Some(Event::Ping(ctrl.into_vec())))
            }
            OpCode::Pong => Ok(Some(Event::Pong(self.take_ctrl().into_vec()))),
            OpCode::Close => self.peer_close(),
        }
    }

    fn peer_close(&mut self) -> Result<Option<Event>, ProtocolError> {
        let ctrl = self.take_ctrl();
        let parsed = close::parse_payload(ctrl.bytes());
        let was_open = self.state == CloseState::Open;
        // Either way the peer has said its last word: 7.1.1, the server
        // closes TCP once our Close (if any is due) is out.
        self.state = CloseState::Closed;
        match parsed {
            Ok(p) => {
                let code = p.map(|(c, _)| c);
                let reason = p.map_or_else(String::new, |(_, r)| r.to_owned());
                if was_open {
                    // 5.5.1: "the endpoint typically echos the status code it
                    // received"; an empty Close is answered with an empty one.
                    let mask = self.next_mask();
                    close::encode(code, "", mask, self.queue());
                }
                self.reset_message();
                Ok(Some(Event::Closed { code, reason }))
            }
            Err(e) => {
                if was_open {
                    let mask = self.next_mask();
                    close::encode(Some(e.close_code()), &e.to_string(), mask, self.queue());
                }
                self.reset_message();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::close::CloseState;

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// A client frame: masked with KEY.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let opcode = b0 & 0x0F;
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 7;
        // Encode by hand so reserved opcodes and RSV bits can be produced too.
        out.push((u8::from(fin) << 7) | (rsv << 4) | opcode);
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&KEY);
        let start = out.len();
        out.extend_from_slice(payload);
        crate::proto::mask::apply_mask_scalar(&mut out[start..], KEY, 0);
        out
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping,
        Pong,
        Closed(Option<u16>),
        Err(ProtocolError),
    }

    /// Feeds `wire` in pieces cut at `cuts`, collecting what happened and
    /// the control bytes sent, in order.
    fn drive(conn: &mut Connection, wire: &[u8], cuts: &[usize]) -> (Vec<Seen>, Vec<u8>) {
        let now = Instant::now();
        let mut seen = Vec::new();
        let mut sent = Vec::new();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < wire.len()));
        bounds.push(wire.len());
        for w in bounds.windows(2) {
            let mut piece = wire[w[0]..w[1]].to_vec();
            let mut off = 0;
            while off < piece.len() {
                let (n, r) = conn.read(&mut piece[off..], now);
                match r {
                    Ok(Some(Event::Message { kind, payload })) => {
                        let data = match payload {
                            Payload::Input(r) => piece[off + r.start..off + r.end].to_vec(),
                            Payload::Owned(v) => v,
                        };
                        seen.push(match kind {
                            MessageKind::Text => Seen::Text(data),
                            MessageKind::Binary => Seen::Binary(data),
                        });
                    }
                    Ok(Some(Event::Ping(_))) => seen.push(Seen::Ping),
                    Ok(Some(Event::Pong(_))) => seen.push(Seen::Pong),
                    Ok(Some(Event::Closed { code, .. })) => seen.push(Seen::Closed(code)),
                    Ok(None) => assert_eq!(off + n, piece.len(), "None before input ran out"),
                    Err(e) => seen.push(Seen::Err(e)),
                }
                conn.take_control(&mut sent);
                off += n;
            }
        }
        (seen, sent)
    }

    fn server() -> Connection {
        Connection::server(Limits::default())
    }

    fn every_cut(wire: &[u8], want: &[Seen], want_sent: &[u8]) {
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let mut c = server();
                let (seen, sent) = drive(&mut c, wire, &[a, b]);
                assert_eq!(seen, want, "cuts {a} {b}");
                assert_eq!(sent, want_sent, "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn whole_message_in_one_read_is_not_copied() {
        let mut c = server();
        let mut wire = frame(0x81, b"Hello");
        let (n, r) = c.read(&mut wire, Instant::now());
        assert_eq!(n, wire.len());
        let Ok(Some(Event::Message {
            kind: MessageKind::Text,
            payload: Payload::Input(r),
        })) = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(&wire[r], b"Hello");
    }

    #[test]
    fn whole_frames_read_as_the_general_path_reads_them() {
        // A frame whole in one read takes `whole_frame`; cut after its first
        // byte it takes the general path. Both must see and send the same,
        // at the limits and past them, for good and bad frames alike.
        let limits = Limits {
            max_frame_size: 1000,
            max_message_size: 1000,
            ..Limits::default()
        };
        let mut bad = "κόσμε".as_bytes().to_vec();
        bad.push(0xFF);
        let sizes = [0usize, 1, 5, 125, 126, 127, 999, 1000, 1001, 65535, 65536];
        for b0 in [0x81u8, 0x82, 0x01, 0xC1, 0x89, 0x83] {
            for &n in &sizes {
                for payload in [vec![b'a'; n], bad.clone()] {
                    let mut wire = frame(b0, &payload);
                    wire.extend(frame(0x82, b"after"));
                    let mut whole = Connection::server(limits);
                    let mut cut = Connection::server(limits);
                    let a = drive(&mut whole, &wire, &[]);
                    let b = drive(&mut cut, &wire, &[1]);
                    assert_eq!(a, b, "b0 {b0:#x}, {} bytes", payload.len());
                }
            }
        }
        // A client reads unmasked frames the same way, and refuses masked ones.
        for masked in [false, true] {
            for &n in &sizes {
                let mut wire = frame(0x82, &vec![7u8; n]);
                if !masked {
                    // Clear the MASK bit, drop the key, unmask the payload.
                    wire[1] &= 0x7F;
                    let key = match wire[1] {
                        126 => 4,
                        127 => 10,
                        _ => 2,
                    };
                    wire.drain(key..key + 4);
                    crate::proto::mask::apply_mask_scalar(&mut wire[key..], KEY, 0);
                }
                let mut whole = Connection::client(limits, 1);
                let mut cut = Connection::client(limits, 1);
                let a = drive(&mut whole, &wire, &[]);
                let b = drive(&mut cut, &wire, &[1]);
                assert_eq!(a, b, "client, masked {masked}, {n} bytes");
            }
        }
    }

    #[test]
    fn messages_survive_every_read_boundary() {
        let mut wire = frame(0x81, "κόσμε".as_bytes());
        wire.extend(frame(0x82, &[0u8; 130]));
        wire.extend(frame(0x82, b""));
        every_cut(
            &wire,
            &[
                Seen::Text("κόσμε".as_bytes().to_vec()),
                Seen::Binary(vec![0; 130]),
                Seen::Binary(vec![]),
            ],
            b"",
        );
    }

    #[test]
    fn fragments_with_a_ping_between_them() {
        // Autobahn 5.6: the Pong goes out before the message completes.
        let mut wire = frame(0x01, b"frag1");
        wire.extend(frame(0x89, b"ping!"));
        wire.extend(frame(0x00, b"frag2"));
        wire.extend(frame(0x80, b""));
        every_cut(
            &wire,
            &[Seen::Ping, Seen::Text(b"frag1frag2".to_vec())],
            b"\x8a\x05ping!",
        );
    }

    #[test]
    fn close_is_echoed_and_closes() {
        let wire = frame(0x88, b"\x03\xe8bye");
        every_cut(&wire, &[Seen::Closed(Some(1000))], b"\x88\x02\x03\xe8");
        let wire = frame(0x88, b"");
        every_cut(&wire, &[Seen::Closed(None)], b"\x88\x00");
        // Anything after the peer's Close is dropped.
        let mut wire = frame(0x88, b"\x0b\xb8");
        wire.extend(frame(0x81, b"late"));
        wire.extend(frame(0x89, b""));
        every_cut(&wire, &[Seen::Closed(Some(3000))], b"\x88\x02\x0b\xb8");
    }

    fn sent_close_code(sent: &[u8]) -> u16 {
        assert_eq!(sent[0], 0x88, "{sent:x?}");
        u16::from_be_bytes([sent[2], sent[3]])
    }

    /// A violation: the error, our Close with `code`, and the peer's Close
    /// reply still found behind the bad frame.
    fn fails_with(bad: &[u8], err: ProtocolError, code: u16) {
        let mut wire = bad.to_vec();
        wire.extend(frame(0x81, b"dropped"));
        wire.extend(frame(0x88, b"\x03\xe8"));
        for cut in 0..=wire.len() {
            let mut c = server();
            let (seen, sent) = drive(&mut c, &wire, &[cut]);
            assert_eq!(
                seen,
                [Seen::Err(err), Seen::Closed(Some(1000))],
                "cut {cut}"
            );
            assert_eq!(sent_close_code(&sent), code);
            assert!(c.is_closed());
        }
    }

    #[test]
    fn violations_fail_with_their_codes() {
        use ProtocolError::*;
        fails_with(&frame(0xC1, b"x"), ReservedBits(4), 1002);
        fails_with(&frame(0x83, b"xyz"), ReservedOpcode(3), 1002);
        fails_with(&frame(0x80, b"xyz"), UnexpectedContinuation, 1002);
        fails_with(&frame(0x09, b""), FragmentedControlFrame, 1002);
        fails_with(&frame(0x89, &[b'a'; 126]), ControlFrameTooLong(126), 1002);
        fails_with(&frame(0x81, b"\xce\xba\xff"), InvalidUtf8, 1007);
        let mut unmasked = b"\x81\x03abc".to_vec();
        unmasked.truncate(5);
        fails_with(&unmasked, UnmaskedFrame, 1002);
        let mut two = frame(0x01, b"a");
        two.extend(frame(0x81, b"b"));
        fails_with(&two, ExpectedContinuation, 1002);
    }

    #[test]
    fn invalid_utf8_fails_before_the_frame_ends() {
        // Autobahn 6.4.3: one frame, its bad bytes in the second of three chops.
        let wire = frame(
            0x81,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited",
        );
        let mut c = server();
        let (seen, _) = drive(&mut c, &wire[..17], &[]);
        assert_eq!(seen, []);
        let (seen, sent) = drive(&mut c, &wire[17..19], &[]);
        assert_eq!(seen, [Seen::Err(ProtocolError::InvalidUtf8)]);
        assert_eq!(sent_close_code(&sent), 1007);
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_frame_size: 8,
            max_message_size: 10,
            ..Limits::default()
        };
        let mut c = Connection::server(limits);
        let (seen, sent) = drive(&mut c, &frame(0x82, &[0; 9]), &[]);
        assert_eq!(
            seen,
            [Seen::Err(ProtocolError::FrameTooBig { len: 9, max: 8 })]
        );
        assert_eq!(sent_close_code(&sent), 1009);
        assert!(c.framing_lost(), "a frame over the limit is not skipped");

        let mut c = Connection::server(limits);
        let mut wire = frame(0x02, &[0; 6]);
        wire.extend(frame(0x80, &[0; 6]));
        let (seen, sent) = drive(&mut c, &wire, &[]);
        assert_eq!(
            seen,
            [Seen::Err(ProtocolError::MessageTooBig { len: 12, max: 10 })]
        );
        assert_eq!(sent_close_code(&sent), 1009);
    }

    #[test]
    fn bad_close_frames() {
        for (payload, err, code) in [
            (&b"\x03"[..], ProtocolError::CloseFrameTruncated, 1002),
            (b"\x03\xed", ProtocolError::InvalidCloseCode(1005), 1002),
            (b"\x03\xe8\xff", ProtocolError::InvalidUtf8, 1007),
            (
                &[b'a'; 126][..],
                ProtocolError::ControlFrameTooLong(126),
                1002,
            ),
        ] {
            let mut c = server();
            let (seen, sent) = drive(&mut c, &frame(0x88, payload), &[]);
            assert_eq!(seen, [Seen::Err(err)]);
            assert_eq!(sent_close_code(&sent), code);
            // The peer already sent its Close: nothing left to wait for.
            assert!(c.is_closed());
        }
    }

    #[test]
    fn close_timeout_and_eof() {
        let t0 = Instant::now();
        let mut c = server();
        c.close(1001, "shutting down", t0);
        let mut sent = Vec::new();
        c.take_control(&mut sent);
        assert_eq!(sent_close_code(&sent), 1001);
        let deadline = c.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + Limits::default().close_timeout);
        assert_eq!(
            c.send_message(MessageKind::Text, 1, &mut sent),
            Err(NotOpen)
        );
        c.handle_timeout(deadline - Duration::from_millis(1));
        assert!(matches!(c.state(), CloseState::CloseSent { .. }));
        c.handle_timeout(deadline);
        assert!(c.is_closed());

        let mut c = server();
        assert!(c.handle_eof());
        assert!(c.is_closed());
    }

    #[test]
    fn length_with_top_bit_loses_framing() {
        let mut c = server();
        let mut wire = b"\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x00".to_vec();
        wire.extend(frame(0x88, b""));
        let (seen, sent) = drive(&mut c, &wire, &[]);
        assert_eq!(seen, [Seen::Err(ProtocolError::LengthTopBitSet)]);
        assert_eq!(sent_close_code(&sent), 1002);
        // The Close behind it cannot be found: the caller closes at once.
        assert!(matches!(c.state(), CloseState::CloseSent { .. }));
        assert!(c.framing_lost());
    }

    #[test]
    fn client_masks_and_reads_unmasked() {
        let mut c = Connection::client(Limits::default(), 42);
        let mut out = Vec::new();
        let key = c
            .send_message(MessageKind::Binary, 3, &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(out[..2], [0x82, 0x83]);
        assert_eq!(out[2..6], key);
        let key2 = c
            .send_message(MessageKind::Binary, 3, &mut out)
            .unwrap()
            .unwrap();
        assert_ne!(key, key2);

        // A fragmented message from this client reads back at a server.
        let mut wire = Vec::new();
        for (i, part) in [&b"frag"[..], b"men", b"ted"].iter().enumerate() {
            let first = (i == 0).then_some(MessageKind::Text);
            let k = c
                .send_fragment(first, i == 2, part.len() as u64, &mut wire)
                .unwrap()
                .unwrap();
            let start = wire.len();
            wire.extend_from_slice(part);
            apply_mask(&mut wire[start..], k, 0);
        }
        let mut s = server();
        let (seen, _) = drive(&mut s, &wire, &[5]);
        assert_eq!(seen, [Seen::Text(b"fragmented".to_vec())]);

        // So does a whole one, written in one call, masked (a server
        // refuses an unmasked client frame).
        let mut wire = Vec::new();
        c.write_message(MessageKind::Binary, b"whole", &mut wire)
            .unwrap();
        assert_eq!(wire[1], 0x80 | 5);
        let mut s = server();
        let (seen, _) = drive(&mut s, &wire, &[]);
        assert_eq!(seen, [Seen::Binary(b"whole".to_vec())]);
        // A server writes it unmasked, and not at all once it closed.
        let mut out = Vec::new();
        s.write_message(MessageKind::Text, b"hi", &mut out).unwrap();
        assert_eq!(out, b"\x81\x02hi");
        s.close(1000, "", Instant::now());
        assert_eq!(
            s.write_message(MessageKind::Text, b"hi", &mut out),
            Err(NotOpen)
        );

        let mut wire = b"\x81\x02hi".to_vec();
        let (_, r) = c.read(&mut wire, Instant::now());
        assert!(matches!(r, Ok(Some(Event::Message { .. }))));
        let mut wire = frame(0x81, b"hi");
        let (_, r) = c.read(&mut wire, Instant::now());
        assert_eq!(r, Err(ProtocolError::MaskedFrame));
    }

    /// permessage-deflate payloads: `msgs` compressed in turn by one
    /// compressor (which keeps its window when `takeover`).
    fn deflated(msgs: &[&[u8]], takeover: bool) -> Vec<Vec<u8>> {
        let mut c = compress::Compressor::new(compress::CompressorConfig {
            level: 6,
            window_bits: 15,
            mem_level: 8,
            takeover,
        });
        msgs.iter()
            .map(|m| {
                let mut z = Vec::new();
                c.compress(m, &mut z);
                z
            })
            .collect()
    }

    fn inflating_server(takeover: bool) -> Connection {
        let mut c = server();
        c.enable_inflate(15, takeover);
        c
    }

    #[test]
    fn a_client_frames_compressed_fragments_with_rsv1_on_the_first() {
        let text = "compressed text, compressed text, compressed text".as_bytes();
        let z = &deflated(&[text], false)[0];
        let (p1, p2) = z.split_at(z.len() / 2);
        let mut client = Connection::client(Limits::default(), 7);
        let mut wire = Vec::new();
        for (first, fin, part) in [(Some(MessageKind::Text), false, p1), (None, true, p2)] {
            let at = wire.len();
            let mask = client
                .send_compressed_fragment(first, fin, part.len() as u64, &mut wire)
                .unwrap()
                .expect("a client masks");
            // FIN, RSV1 and the opcode: RSV1 on the first frame only.
            assert_eq!(wire[at], if fin { 0x80 } else { 0x41 });
            let start = wire.len();
            wire.extend_from_slice(part);
            apply_mask(&mut wire[start..], mask, 0);
        }
        let mut c = inflating_server(false);
        let (seen, _) = drive(&mut c, &wire, &[]);
        assert_eq!(seen, vec![Seen::Text(text.to_vec())]);
        client.close(1000, "", Instant::now());
        assert_eq!(
            client.send_compressed_fragment(Some(MessageKind::Text), true, 1, &mut wire),
            Err(NotOpen)
        );
    }

    #[test]
    fn compressed_messages_whole_and_fragmented_at_every_cut() {
        let text = "compressed text, compressed text, compressed text".as_bytes();
        let z = &deflated(&[text], false)[0];
        // Whole: RSV1 on a final text frame.
        let wire = frame(0xC1, z);
        for a in 0..=wire.len() {
            let mut c = inflating_server(false);
            let (seen, _) = drive(&mut c, &wire, &[a]);
            assert_eq!(seen, vec![Seen::Text(text.to_vec())], "cut {a}");
        }
        // Fragmented, RSV1 on the first frame only, a Ping in between.
        let (p1, p2) = z.split_at(z.len() / 2);
        let mut wire = frame(0x41, p1);
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x80, p2));
        wire.extend(frame(0xC2, &deflated(&[b""], false)[0]));
        for a in 0..=wire.len() {
            let mut c = inflating_server(false);
            let (seen, sent) = drive(&mut c, &wire, &[a]);
            assert_eq!(
                seen,
                vec![
                    Seen::Ping,
                    Seen::Text(text.to_vec()),
                    Seen::Binary(Vec::new())
                ],
                "cut {a}"
            );
            assert_eq!(sent, [0x8A, 0x01, b'p']);
            // Shared mode: the decompressor went back to the thread.
            assert_eq!(format!("{:?}", c.asm), "Assembler { buf: None }");
        }
        // Uncompressed messages still pass, zero-copy as before.
        let mut c = inflating_server(false);
        let mut plain = frame(0x81, b"plain");
        let (_, r) = c.read(&mut plain, Instant::now());
        assert!(matches!(
            r,
            Ok(Some(Event::Message {
                payload: Payload::Input(_),
                ..
            }))
        ));
    }

    #[test]
    fn context_takeover_keeps_the_window_across_messages() {
        let m = b"the same words again and again, the same words again";
        let zs = deflated(&[m, m, m], true);
        assert!(zs[1].len() < zs[0].len() / 2);
        let mut wire = Vec::new();
        for z in &zs {
            wire.extend(frame(0xC2, z));
        }
        let (seen, _) = drive(&mut inflating_server(true), &wire, &[]);
        let want: Vec<Seen> = (0..3).map(|_| Seen::Binary(m.to_vec())).collect();
        assert_eq!(seen, want);
        // Without takeover on our side the second message cannot be read.
        let (seen, sent) = drive(&mut inflating_server(false), &wire, &[]);
        assert_eq!(seen[0], Seen::Binary(m.to_vec()));
        assert_eq!(seen[1], Seen::Err(ProtocolError::BadCompressedData));
        assert_eq!(u16::from_be_bytes([sent[2], sent[3]]), 1007);
    }

    #[test]
    fn rsv1_is_an_error_anywhere_else() {
        let z = deflated(&[b"hello"], false).remove(0);
        let cases: Vec<(bool, Vec<u8>)> = vec![
            // Not negotiated.
            (false, frame(0xC1, &z)),
            // On a continuation.
            (true, [frame(0x01, b"a"), frame(0xC0, b"b")].concat()),
            // On a control frame.
            (true, frame(0xC9, b"")),
            // RSV2 and RSV3 stay reserved.
            (true, frame(0xA1, &z)),
            (true, frame(0x91, &z)),
        ];
        for (negotiated, wire) in cases {
            let mut c = if negotiated {
                inflating_server(false)
            } else {
                server()
            };
            let (seen, sent) = drive(&mut c, &wire, &[]);
            assert!(
                matches!(seen.last(), Some(Seen::Err(ProtocolError::ReservedBits(_)))),
                "{seen:?}"
            );
            assert_eq!(u16::from_be_bytes([sent[2], sent[3]]), 1002);
        }
    }

    #[test]
    fn inflated_size_is_limited_and_text_fails_fast() {
        // A deflate bomb: 16 MiB of zeros in a small message.
        let zeros = vec![0u8; 16 << 20];
        let z = deflated(&[&zeros], false).remove(0);
        assert!(z.len() < 64 << 10);
        let mut c = Connection::server(Limits {
            max_message_size: 1 << 20,
            ..Limits::default()
        });
        c.enable_inflate(15, false);
        let (seen, sent) = drive(&mut c, &frame(0xC2, &z), &[1000, 2000]);
        assert!(
            matches!(
                seen[..],
                [Seen::Err(ProtocolError::MessageTooBig {
                    max: 1_048_576,
                    ..
                })]
            ),
            "{seen:?}"
        );
        assert_eq!(u16::from_be_bytes([sent[2], sent[3]]), 1009);
        // Invalid UTF-8 inside a fragmented compressed text message fails
        // at the fragment that carries it, before the message ends.
        let mut bad = b"valid text, then ".to_vec();
        bad.extend_from_slice(&[0xC3, 0x28]);
        bad.extend_from_slice(&[b'x'; 2000]);
        let z = deflated(&[&bad], false).remove(0);
        let (p1, p2) = z.split_at(z.len() - 3);
        let mut c = inflating_server(false);
        let mut first = frame(0x41, p1);
        let (_, r) = c.read(&mut first, Instant::now());
        assert_eq!(r, Err(ProtocolError::InvalidUtf8));
        let mut rest = frame(0x80, p2);
        let (_, r) = c.read(&mut rest, Instant::now());
        assert_eq!(r, Ok(None), "the rest is dropped");
        // Garbage is 1007.
        let (seen, _) = drive(&mut inflating_server(false), &frame(0xC1, &[0xff; 8]), &[]);
        assert_eq!(seen, vec![Seen::Err(ProtocolError::BadCompressedData)]);
    }
}
