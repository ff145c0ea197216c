//! RESP2 and RESP3, the Redis protocol, for the broker's connections to
//! Redis (one pipelined publishing connection and one subscribing
//! connection per instance): sans-IO like the rest of [`crate::proto`].
//!
//! Commands go out through the `encode_*` functions, which append to the
//! caller's `Vec<u8>` with no allocation of their own; a PUBLISH payload
//! (a WebSocket frame behind the broker's envelope) is copied once, into
//! that buffer.
//!
//! Replies and pushes come in through a [`Decoder`] over the connection's
//! input buffer, a [`BytesMut`] the caller owns and appends reads to:
//!
//! ```
//! use bytes::BytesMut;
//! use ringws::proto::resp::{encode_subscribe, Decoder, PubSub, RespLimits};
//!
//! let mut out = Vec::new();
//! encode_subscribe(&mut out, [&b"news"[..]]);
//! assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n");
//!
//! let mut dec = Decoder::new(RespLimits::default());
//! let mut input = BytesMut::from(&b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi"[..]);
//! assert_eq!(dec.decode(&mut input), Ok(None)); // the last CRLF is missing
//! input.extend_from_slice(b"\r\n");
//! let frame = dec.decode(&mut input).unwrap().unwrap();
//! let Ok(PubSub::Message { channel, payload }) = PubSub::from_frame(frame) else { panic!() };
//! assert_eq!((&channel[..], &payload[..]), (&b"news"[..], &b"hi"[..]));
//! ```
//!
//! Bulk payloads come out as [`Bytes`] split off the input buffer, never
//! copied: a pub/sub message's payload is the frame the broker fans out as
//! is.
//!
//! Unlike the HTTP and WebSocket parsers, which consume nothing until a
//! whole unit is there, the decoder takes each *element* out of the buffer
//! as soon as it is complete and holds the aggregates it is in the middle
//! of: a server that sends a large aggregate slowly cannot make every read
//! parse it again from the start, and a payload split off the buffer stays
//! where it is. What stays in the buffer after `Ok(None)` is at most one
//! incomplete element (a line, or a bulk string and its header).
//!
//! Both protocol versions decode through one [`Frame`] type: RESP2's null
//! bulk string and null array, and RESP3's null, are all [`Frame::Null`];
//! RESP3's error and bulk error are both [`Frame::Error`]. RESP3
//! attributes (`|`) are decoded within the limits and dropped, as the
//! protocol lets a client do; Redis sends none for the commands the broker
//! uses. RESP3's streamed strings and aggregates (`$?`, `*?`) are refused:
//! Redis never sends them.
//!
//! # Limits
//!
//! The server is trusted to speak RESP, not to be well behaved: a broken or
//! hostile one (or something else listening on the port) could declare
//! lengths of terabytes or nest without end. [`RespLimits`] bounds every
//! string, the elements and nesting of every frame and the bytes of every
//! frame; past one, [`Decoder::decode`] returns the [`RespError`] naming it
//! and the connection must be dropped. Memory is never reserved for a
//! declared length before its bytes have arrived.

use std::fmt;

use bytes::{Buf as _, Bytes, BytesMut};

mod encode;

pub use encode::{
    encode_auth, encode_client_setname, encode_command, encode_command_iter, encode_hello,
    encode_ping, encode_publish, encode_publish_parts, encode_publish_pieces,
    encode_sentinel_master_addr, encode_subscribe, encode_unsubscribe,
};

/// Bounds on what a server may send; past any one the connection is
/// broken ([`RespError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    /// Longest string, in bytes: bulk strings, bulk errors, verbatim
    /// strings, and the text of simple strings, errors, doubles and big
    /// numbers. Default 64 MiB, ringws's default largest message; the
    /// broker sets it to its largest envelope. Stops a declared length of
    /// terabytes, refused at its header, and a line that never ends.
    pub max_bulk: usize,
    /// Most elements in one frame, over all its aggregates (a map's or an
    /// attribute's entries count twice: key and value). Default 65,536;
    /// no reply the broker reads has more than a few dozen. Refused at the
    /// aggregate's header, so a declared count never sizes an allocation.
    pub max_elements: usize,
    /// Deepest nesting of aggregates in one frame (an attribute counts as a
    /// level). Default 16; Redis's deepest replies nest about 5. Bounds the
    /// decoder's stack of open aggregates, and the recursion of dropping,
    /// comparing or printing a [`Frame`].
    pub max_depth: usize,
    /// Most bytes one frame may take on the wire, its attributes included.
    /// Default 128 MiB. Bounds the memory one frame holds: without it,
    /// `max_elements` strings of `max_bulk` bytes each would be allowed.
    pub max_frame: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            max_bulk: 64 << 20,
            max_elements: 1 << 16,
            max_depth: 16,
            max_frame: 128 << 20,
        }
    }
}

/// A violation of RESP by the server, or a limit passed. The stream cannot
/// be resynchronised after one: the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// A frame or element starts with a byte that is no RESP type.
    BadType(u8),
    /// A line ends in a CR or LF alone, or a string is not followed by
    /// CRLF where its length says it ends.
    MissingCrlf,
    /// A length or count that is not `-1` or decimal digits, that does not
    /// fit in `usize`, or `-1` where no null form exists (only `$-1` and
    /// `*-1` are null). Also `?`, RESP3's streamed strings and aggregates.
    BadLength,
    /// An integer that is not a decimal `i64` (an optional sign and 1 to 19
    /// digits, within range).
    BadInteger,
    /// A double that is not a decimal number, `inf`, `-inf` or `nan`.
    BadDouble,
    /// A boolean other than `#t` or `#f`.
    BadBoolean,
    /// A null (`_`) with something before its CRLF.
    BadNull,
    /// A big number that is not an optional sign and one or more digits.
    BadBigNumber,
    /// A verbatim string without its three-byte format and `:`.
    BadVerbatim,
    /// A bulk string, bulk error or verbatim string declared longer than
    /// [`RespLimits::max_bulk`].
    StringTooLong {
        /// The declared length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A simple string, error, double or big number whose text runs past
    /// [`RespLimits::max_bulk`] bytes without a CRLF.
    LineTooLong {
        /// The configured limit.
        max: usize,
    },
    /// More elements in one frame than [`RespLimits::max_elements`].
    TooManyElements {
        /// The configured limit.
        max: usize,
    },
    /// Aggregates nested deeper than [`RespLimits::max_depth`].
    TooDeep {
        /// The configured limit.
        max: usize,
    },
    /// A frame longer than [`RespLimits::max_frame`] bytes.
    FrameTooLarge {
        /// The configured limit.
        max: usize,
    },
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::BadType(b) => write!(f, "RESP: no type starts with byte 0x{b:02x}"),
            RespError::MissingCrlf => f.write_str("RESP: missing CRLF"),
            RespError::BadLength => f.write_str("RESP: bad length"),
            RespError::BadInteger => f.write_str("RESP: bad integer"),
            RespError::BadDouble => f.write_str("RESP: bad double"),
            RespError::BadBoolean => f.write_str("RESP: bad boolean"),
            RespError::BadNull => f.write_str("RESP: bad null"),
            RespError::BadBigNumber => f.write_str("RESP: bad big number"),
            RespError::BadVerbatim => f.write_str("RESP: bad verbatim string"),
            RespError::StringTooLong { len, max } => {
                write!(f, "RESP: string of {len} bytes, more than {max}")
            }
            RespError::LineTooLong { max } => {
                write!(f, "RESP: line of more than {max} bytes")
            }
            RespError::TooManyElements { max } => {
                write!(f, "RESP: more than {max} elements in one frame")
            }
            RespError::TooDeep { max } => write!(f, "RESP: aggregates nested deeper than {max}"),
            RespError::FrameTooLarge { max } => write!(f, "RESP: frame of more than {max} bytes"),
        }
    }
}

impl std::error::Error for RespError {}

/// One decoded reply or push, RESP2 or RESP3.
///
/// Strings are [`Bytes`] split off the decoder's input buffer, not copies.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+`: a simple string (`OK`, `PONG`).
    Simple(Bytes),
    /// `-` or RESP3's `!` (bulk error): an error reply, such as
    /// `ERR unknown command` or `NOAUTH Authentication required.`.
    Error(Bytes),
    /// `:`: a signed 64-bit integer.
    Integer(i64),
    /// `$`: a bulk string, any bytes.
    Bulk(Bytes),
    /// RESP2's null bulk string (`$-1`) and null array (`*-1`), RESP3's
    /// null (`_`).
    Null,
    /// RESP3 `#`.
    Boolean(bool),
    /// RESP3 `,`: a double, `inf`, `-inf` or `nan` included.
    Double(f64),
    /// RESP3 `(`: an integer of any size, as its decimal digits with an
    /// optional sign.
    BigNumber(Bytes),
    /// RESP3 `=`: a string with its format (`txt`, `mkd`).
    Verbatim {
        /// The three bytes before the `:`.
        format: [u8; 3],
        /// The string after the `:`.
        text: Bytes,
    },
    /// `*`: an array.
    Array(Vec<Frame>),
    /// RESP3 `%`: key-value pairs, in the order sent.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~`: a set, in the order sent.
    Set(Vec<Frame>),
    /// RESP3 `>`: out-of-band data such as a pub/sub message; see
    /// [`PubSub::from_frame`].
    Push(Vec<Frame>),
}

/// The aggregate types; an attribute is one, but yields no element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Array,
    Map,
    Set,
    Push,
    Attribute,
}

/// An aggregate whose header has been read and whose elements are arriving.
#[derive(Debug)]
struct Open {
    kind: Aggregate,
    /// How many elements complete it (a map's entries count twice).
    len: usize,
    items: Vec<Frame>,
}

impl Open {
    /// The finished aggregate; `None` for an attribute, which is dropped.
    fn finish(self) -> Option<Frame> {
        Some(match self.kind {
            Aggregate::Array => Frame::Array(self.items),
            Aggregate::Set => Frame::Set(self.items),
            Aggregate::Push => Frame::Push(self.items),
            Aggregate::Map => {
                let mut it = self.items.into_iter();
                let mut pairs = Vec::with_capacity(self.len / 2);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Frame::Map(pairs)
            }
            Aggregate::Attribute => return None,
        })
    }
}

/// What one element header at the front of the buffer gave.
enum Step {
    /// Not all of the element is in the buffer yet; nothing consumed.
    More,
    /// A complete element, consumed.
    Value(Frame),
    /// An aggregate header, consumed: its elements follow (or an empty
    /// attribute, which is nothing).
    Opened,
}

/// Capacity reserved for an aggregate's elements before they arrive: a
/// declared count sizes no allocation beyond this, the vector grows as
/// elements are actually decoded.
const PREALLOC: usize = 8;

/// The longest line of a length or integer: `-9223372036854775808` is 20.
const MAX_NUMBER_LINE: usize = 20;

/// Decodes frames from a connection's input, incrementally: bytes may be
/// split anywhere, one at a time included.
///
/// One decoder per connection, fed the same buffer on every call. After an
/// error it returns that error again on every call.
#[derive(Debug)]
pub struct Decoder {
    limits: RespLimits,
    /// The aggregates open in the current frame, outermost first.
    stack: Vec<Open>,
    /// Elements declared so far in the current frame.
    elements: usize,
    /// Bytes consumed so far by the current frame.
    frame_bytes: usize,
    /// How much of the incomplete line at the front of the buffer has been
    /// searched for its CR already, so that a long line arriving in small
    /// reads is searched once, not once per read.
    scanned: usize,
    failed: Option<RespError>,
}

impl Decoder {
    /// A decoder within `limits`.
    pub fn new(limits: RespLimits) -> Decoder {
        Decoder {
            limits,
            stack: Vec::new(),
            elements: 0,
            frame_bytes: 0,
            scanned: 0,
            failed: None,
        }
    }

    /// The next complete frame in `buf`, taken out of it; `Ok(None)` if
    /// there is none yet: append what the connection reads next to `buf`
    /// and call again. Call until `Ok(None)` after each read: one read may
    /// bring several frames.
    ///
    /// `buf` must be the same buffer on every call, with bytes only ever
    /// appended: the elements of a frame in progress have been taken out of
    /// it already, and the decoder holds them. A new connection takes a new
    /// decoder and an empty buffer. Bulk strings in the frame
    /// are split off `buf` ([`BytesMut::split_to`]); `buf` keeps its spare
    /// capacity for the next reads, and its allocation is freed once the
    /// last of those strings is dropped.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, RespError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.run(buf).inspect_err(|&e| {
            self.failed = Some(e);
            // What was held can never be completed.
            self.stack = Vec::new();
        })
    }

    fn run(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, RespError> {
        loop {
            let mut done = match self.step(buf)? {
                Step::More => return Ok(None),
                Step::Opened => continue,
                Step::Value(f) => f,
            };
            // Hand the element to the aggregate it is in, and every
            // aggregate it completes to the one around it.
            loop {
                let Some(top) = self.stack.last_mut() else {
                    self.elements = 0;
                    self.frame_bytes = 0;
                    return Ok(Some(done));
                };
                top.items.push(done);
                if top.items.len() < top.len {
                    break;
                }
                let Some(full) = self.stack.pop() else { break };
                match full.finish() {
                    Some(f) => done = f,
                    // An attribute is not an element of the aggregate
                    // around it: that one still waits for its element.
                    None => break,
                }
            }
        }
    }

    /// Reads the element that starts at the front of `buf`.
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, RespError> {
        let Some(&ty) = buf.first() else {
            return Ok(Step::More);
        };
        let (cap, too_long) = match ty {
            b'+' | b'-' | b',' | b'(' => (
                self.limits.max_bulk,
                RespError::LineTooLong {
                    max: self.limits.max_bulk,
                },
            ),
            b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'>' | b'|' => {
                (MAX_NUMBER_LINE, RespError::BadLength)
            }
            b':' => (MAX_NUMBER_LINE, RespError::BadInteger),
            b'#' => (1, RespError::BadBoolean),
            b'_' => (0, RespError::BadNull),
            other => return Err(RespError::BadType(other)),
        };
        let Some(cr) = self.find_line(buf, cap, too_long)? else {
            return Ok(Step::More);
        };
        let line = &buf[1..cr];
        let line_len = cr + 2;
        let value = match ty {
            b'+' | b'-' | b'(' => {
                if ty == b'(' && !is_big_number(line) {
                    return Err(RespError::BadBigNumber);
                }
                self.count_bytes(line_len)?;
                buf.advance(1);
                let s = buf.split_to(cr - 1).freeze();
                buf.advance(2);
                match ty {
                    b'+' => Frame::Simple(s),
                    b'-' => Frame::Error(s),
                    _ => Frame::BigNumber(s),
                }
            }
            b':' => {
                let n = parse_i64(line).ok_or(RespError::BadInteger)?;
                self.consume(buf, line_len)?;
                Frame::Integer(n)
            }
            b',' => {
                let d = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .ok_or(RespError::BadDouble)?;
                self.consume(buf, line_len)?;
                Frame::Double(d)
            }
            b'#' => {
                let b = match line {
                    b"t" => true,
                    b"f" => false,
                    _ => return Err(RespError::BadBoolean),
                };
                self.consume(buf, line_len)?;
                Frame::Boolean(b)
            }
            b'_' => {
                self.consume(buf, line_len)?;
                Frame::Null
            }
            b'$' | b'!' | b'=' => {
                let Some(len) = parse_length(line)? else {
                    if ty != b'$' {
                        return Err(RespError::BadLength);
                    }
                    self.consume(buf, line_len)?;
                    return Ok(Step::Value(Frame::Null));
                };
                return self.bulk(buf, ty, line_len, len);
            }
            _ => {
                let kind = match ty {
                    b'*' => Aggregate::Array,
                    b'%' => Aggregate::Map,
                    b'~' => Aggregate::Set,
                    b'>' => Aggregate::Push,
                    _ => Aggregate::Attribute,
                };
                let Some(count) = parse_length(line)? else {
                    if kind != Aggregate::Array {
                        return Err(RespError::BadLength);
                    }
                    self.consume(buf, line_len)?;
                    return Ok(Step::Value(Frame::Null));
                };
                return self.open(buf, kind, line_len, count);
            }
        };
        Ok(Step::Value(value))
    }

    /// The index of the CR that ends the line at the front of `buf`, once
    /// the LF after it is there too. A line whose text passes `cap` bytes
    /// is refused with `too_long` as soon as that many bytes are in.
    fn find_line(
        &mut self,
        buf: &[u8],
        cap: usize,
        too_long: RespError,
    ) -> Result<Option<usize>, RespError> {
        let from = self.scanned.max(1);
        let Some(at) = buf[from..].iter().position(|&b| b == b'\r' || b == b'\n') else {
            self.scanned = buf.len();
            return if buf.len() - 1 > cap {
                Err(too_long)
            } else {
                Ok(None)
            };
        };
        let cr = from + at;
        // The length first: whether the bytes after the limit have arrived
        // yet must not change the error.
        if cr - 1 > cap {
            return Err(too_long);
        }
        // RESP lines carry no CR or LF: a lone one is a framing error.
        if buf[cr] == b'\n' {
            return Err(RespError::MissingCrlf);
        }
        match buf.get(cr + 1) {
            None => {
                self.scanned = cr;
                Ok(None)
            }
            Some(b'\n') => Ok(Some(cr)),
            Some(_) => Err(RespError::MissingCrlf),
        }
    }

    /// A bulk string, bulk error or verbatim string of `len` bytes after a
    /// header of `line_len` bytes: all of it, or nothing yet.
    fn bulk(
        &mut self,
        buf: &mut BytesMut,
        ty: u8,
        line_len: usize,
        len: usize,
    ) -> Result<Step, RespError> {
        if len > self.limits.max_bulk {
            return Err(RespError::StringTooLong {
                len: len as u64,
                max: self.limits.max_bulk,
            });
        }
        // Cannot overflow: len <= max_bulk <= usize::MAX, but the sum can.
        let total = line_len
            .checked_add(len)
            .and_then(|n| n.checked_add(2))
            .ok_or(RespError::FrameTooLarge {
                max: self.limits.max_frame,
            })?;
        // Refused now rather than after max_frame bytes have been buffered.
        self.check_frame(total)?;
        if buf.len() < total {
            // No reserve(total): the length is only a claim until the
            // bytes arrive. The header is read again next time, which
            // costs a few bytes' scan.
            return Ok(Step::More);
        }
        if &buf[total - 2..total] != b"\r\n" {
            return Err(RespError::MissingCrlf);
        }
        let value = match ty {
            b'=' => {
                let body = &buf[line_len..line_len + len];
                let [a, b, c, b':', ..] = *body else {
                    return Err(RespError::BadVerbatim);
                };
                self.count_bytes(total)?;
                buf.advance(line_len + 4);
                let text = buf.split_to(len - 4).freeze();
                buf.advance(2);
                return Ok(Step::Value(Frame::Verbatim {
                    format: [a, b, c],
                    text,
                }));
            }
            _ => {
                self.count_bytes(total)?;
                buf.advance(line_len);
                buf.split_to(len).freeze()
            }
        };
        buf.advance(2);
        Ok(Step::Value(match ty {
            b'$' => Frame::Bulk(value),
            _ => Frame::Error(value),
        }))
    }

    /// An aggregate header declaring `count` elements (entries, for maps
    /// and attributes).
    fn open(
        &mut self,
        buf: &mut BytesMut,
        kind: Aggregate,
        line_len: usize,
        count: usize,
    ) -> Result<Step, RespError> {
        let max = self.limits.max_elements;
        let len = match kind {
            Aggregate::Map | Aggregate::Attribute => count.checked_mul(2),
            _ => Some(count),
        };
        // Overflow-safe: a count near usize::MAX must not wrap under max.
        let elements = len.and_then(|n| n.checked_add(self.elements));
        let (Some(len), Some(elements)) = (len, elements) else {
            return Err(RespError::TooManyElements { max });
        };
        if elements > max {
            return Err(RespError::TooManyElements { max });
        }
        if len > 0 && self.stack.len() >= self.limits.max_depth {
            return Err(RespError::TooDeep {
                max: self.limits.max_depth,
            });
        }
        self.consume(buf, line_len)?;
        self.elements = elements;
        if len == 0 {
            let empty = Open {
                kind,
                len,
                items: Vec::new(),
            };
            return Ok(match empty.finish() {
                Some(f) => Step::Value(f),
                None => Step::Opened,
            });
        }
        self.stack.push(Open {
            kind,
            len,
            items: Vec::with_capacity(len.min(PREALLOC)),
        });
        Ok(Step::Opened)
    }

    /// Takes `n` bytes of framing off the front of `buf`.
    fn consume(&mut self, buf: &mut BytesMut, n: usize) -> Result<(), RespError> {
        self.count_bytes(n)?;
        buf.advance(n);
        Ok(())
    }

    /// Counts `n` more bytes against the current frame; the line search
    /// starts over at the next element.
    fn count_bytes(&mut self, n: usize) -> Result<(), RespError> {
        self.check_frame(n)?;
        self.frame_bytes += n;
        self.scanned = 0;
        Ok(())
    }

    fn check_frame(&self, n: usize) -> Result<(), RespError> {
        let max = self.limits.max_frame;
        match self.frame_bytes.checked_add(n) {
            Some(total) if total <= max => Ok(()),
            _ => Err(RespError::FrameTooLarge { max }),
        }
    }
}

/// A length or count: `Ok(None)` for `-1` (null), digits within `usize`,
/// anything else refused (`-2`, `+1`, `1.5`, `?`, the empty line).
fn parse_length(line: &[u8]) -> Result<Option<usize>, RespError> {
    if line == b"-1" {
        return Ok(None);
    }
    if line.is_empty() {
        return Err(RespError::BadLength);
    }
    line.iter()
        .try_fold(0usize, |n, &d| {
            if d.is_ascii_digit() {
                n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
            } else {
                None
            }
        })
        .map(Some)
        .ok_or(RespError::BadLength)
}

/// A RESP integer: an optional sign, then digits, within `i64`.
fn parse_i64(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated as a negative number, which reaches i64::MIN.
    let n = digits.iter().try_fold(0i64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))
        } else {
            None
        }
    })?;
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

fn is_big_number(line: &[u8]) -> bool {
    let digits = match line {
        [b'-' | b'+', rest @ ..] => rest,
        _ => line,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// A pub/sub message or (un)subscription confirmation, as Redis sends it
/// to a subscribed connection: a push (`>`) in RESP3, an array in RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSub {
    /// A PUBLISH to a channel the connection subscribes to.
    Message {
        /// The channel.
        channel: Bytes,
        /// The published payload, as it came off the input buffer.
        payload: Bytes,
    },
    /// SUBSCRIBE's confirmation: one per channel, in the order given.
    Subscribed {
        /// The channel now subscribed.
        channel: Bytes,
        /// How many channels the connection subscribes to now.
        count: i64,
    },
    /// UNSUBSCRIBE's confirmation: one per channel, in the order given.
    Unsubscribed {
        /// The channel left; `None` when UNSUBSCRIBE without channels found
        /// none to leave.
        channel: Option<Bytes>,
        /// How many channels the connection subscribes to now; 0 means it
        /// has left subscribed mode (RESP2).
        count: i64,
    },
    /// The answer to a PING: in RESP2's subscribed mode an array
    /// (`pong`, the PING's argument or empty); in RESP3 a plain `+PONG`
    /// (empty here). A RESP3 PING with an argument is answered with that
    /// argument as a bulk string, which cannot be told from other replies
    /// and is not recognised.
    Pong(Bytes),
}

impl PubSub {
    /// The pub/sub event `frame` is, or `frame` back if it is none (an
    /// ordinary reply, or an error).
    pub fn from_frame(frame: Frame) -> Result<PubSub, Frame> {
        match frame {
            Frame::Push(items) => PubSub::from_items(items).map_err(Frame::Push),
            Frame::Array(items) => PubSub::from_items(items).map_err(Frame::Array),
            Frame::Simple(s) if s[..] == *b"PONG" => Ok(PubSub::Pong(Bytes::new())),
            other => Err(other),
        }
    }

    fn from_items(mut items: Vec<Frame>) -> Result<PubSub, Vec<Frame>> {
        // The strings are taken out of the matched items (leaving empty
        // ones, no allocation); the rest of the vector is dropped.
        let take = std::mem::take::<Bytes>;
        Ok(match items.as_mut_slice() {
            [Frame::Bulk(kind), Frame::Bulk(channel), Frame::Bulk(payload)]
                if kind[..] == *b"message" =>
            {
                PubSub::Message {
                    channel: take(channel),
                    payload: take(payload),
                }
            }
            [Frame::Bulk(kind), Frame::Bulk(channel), Frame::Integer(count)]
                if kind[..] == *b"subscribe" =>
            {
                PubSub::Subscribed {
                    channel: take(channel),
                    count: *count,
                }
            }
            [Frame::Bulk(kind), Frame::Bulk(channel), Frame::Integer(count)]
                if kind[..] == *b"unsubscribe" =>
            {
                PubSub::Unsubscribed {
                    channel: Some(take(channel)),
                    count: *count,
                }
            }
            [Frame::Bulk(kind), Frame::Null, Frame::Integer(count)]
                if kind[..] == *b"unsubscribe" =>
            {
                PubSub::Unsubscribed {
                    channel: None,
                    count: *count,
                }
            }
            [Frame::Bulk(kind), Frame::Bulk(payload)] if kind[..] == *b"pong" => {
                PubSub::Pong(take(payload))
            }
            _ => return Err(items),
        })
    }
}

#[cfg(test)]
mod tests;
