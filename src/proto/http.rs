//! Plain HTTP/1.1 on the server side, for the routes that are not WebSocket
//! upgrades (health checks, REST calls, publishing): sans-IO like the rest
//! of [`crate::proto`].
//!
//! The caller owns the connection's input buffer and drives three steps:
//!
//! 1. [`parse_head`] on the bytes received so far: `Ok(None)` until the head
//!    is complete, then a [`RequestHead`] borrowing from the buffer, or the
//!    [`HttpError`] to answer with [`write_error`] before closing.
//! 2. If [`RequestHead::body`] is not [`BodyKind::None`], a [`BodyDecoder`]
//!    fed `buf[head_len..]` and every later read until
//!    [`BodyDecoder::is_done`]. It consumes only the body, so what it leaves
//!    is the next pipelined request.
//! 3. [`write_response`] appends the response; with
//!    [`RequestHead::keep_alive`] the next request is parsed from where the
//!    body ended, otherwise the connection closes once the response is sent.
//!
//! The framing rules are RFC 9112's (6.1 to 6.3), strictly: wherever two
//! parsers could disagree about where a body ends (both Content-Length and
//! Transfer-Encoding, differing Content-Lengths, codings other than
//! `chunked`), the request is refused, so that a proxy in front of the
//! server and the server cannot be made to see different requests (request
//! smuggling).

use std::fmt;
use std::io::Write as _;

use super::error::HttpError;
use super::handshake::{has_token, is_header_safe, reason_phrase};

/// Bounds on a request; past any one it is refused and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest request head, in bytes, including the final CRLF CRLF; also
    /// the bound on a chunked body's trailer section, and on its chunk
    /// extensions in total. Default 8 KiB. Stops a client that sends an
    /// endless head (or trailers, or extensions) to make the server buffer
    /// or scan without end (431, or 400 for extensions).
    pub max_head: usize,
    /// Most header lines. Default 64. Bounds the parser's header table,
    /// allocated per request, and the work of every header look-up (431).
    pub max_headers: usize,
    /// Largest request body, in bytes, after chunked decoding. Default
    /// 1 MiB. Stops a client from making the server hold an unbounded body:
    /// a larger Content-Length is refused before any of the body is read,
    /// a chunked body as soon as a chunk would pass it (413).
    pub max_body: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_head: 8 << 10,
            max_headers: 64,
            max_body: 1 << 20,
        }
    }
}

/// How the body of a request is framed (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither Content-Length nor Transfer-Encoding (6.3 item 7),
    /// or `Content-Length: 0`.
    None,
    /// Exactly this many bytes (1 or more, at most `max_body`).
    Length(u64),
    /// `Transfer-Encoding: chunked`, decoded by [`BodyDecoder`].
    Chunked,
}

/// The interim response a client waiting on `Expect: 100-continue` needs
/// before it sends the body (RFC 9110 10.1.1); see
/// [`RequestHead::expects_continue`].
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request head accepted by [`parse_head`], borrowing from the buffer it
/// was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method, as sent (methods are case-sensitive: `GET`, not `get`).
    pub method: &'a str,
    /// The request target as sent: origin form (`/a?b`), absolute form
    /// (`http://host/a?b`), `*` or an authority.
    pub target: &'a str,
    /// The path of the target without the query; for the absolute form,
    /// without the scheme and authority (`/` if it has no path).
    pub path: &'a str,
    /// The query of the target (after `?`), if any.
    pub query: Option<&'a str>,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Every header line, in order.
    pub headers: Vec<httparse::Header<'a>>,
    /// Length of the head in the buffer, including the final CRLF CRLF:
    /// the body (or the next pipelined request) starts at `buf[head_len..]`.
    pub head_len: usize,
    /// How the body is framed.
    pub body: BodyKind,
    /// May the connection carry another request after this one? HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection:
    /// keep-alive` (RFC 9112 9.3).
    pub keep_alive: bool,
}

impl<'a> RequestHead<'a> {
    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every value of the header `name` (any case), in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Is this a WebSocket upgrade (a GET with `Upgrade: websocket`), to be
    /// handed to [`super::handshake::parse_request`] instead?
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == "GET"
            && self
                .header_values("upgrade")
                .any(|v| has_token(v, "websocket"))
    }

    /// Does the client wait for [`CONTINUE`] before sending the body? Only
    /// HTTP/1.1 counts: "A server that receives a 100-continue expectation
    /// in an HTTP/1.0 request MUST ignore that expectation" (RFC 9110
    /// 10.1.1). A server that refuses the request answers with the final
    /// status instead and closes.
    pub fn expects_continue(&self) -> bool {
        self.version == 1
            && self
                .header_values("expect")
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
    }
}

/// Parses the request head at the start of `buf`, within `limits`.
///
/// `Ok(None)` while the head is incomplete and shorter than
/// `limits.max_head`; nothing is consumed, call again with more bytes.
pub fn parse_head<'b>(
    buf: &'b [u8],
    limits: &HttpLimits,
) -> Result<Option<RequestHead<'b>>, HttpError> {
    // Once per request, sized by the configured limit, as for handshakes.
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(HttpError::Malformed),
    };
    if head_len > limits.max_head {
        return Err(HttpError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed);
    };
    let count = req.headers.len();
    headers.truncate(count);

    let mut hosts = 0;
    let (mut close, mut keep_alive_token) = (false, false);
    let mut length: Option<u64> = None;
    let mut codings: Option<Codings> = None;
    for h in &headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= has_token(h.value, "close");
            keep_alive_token |= has_token(h.value, "keep-alive");
        } else if name.eq_ignore_ascii_case("content-length") {
            // "Content-Length: 42, 42" or two lines of 42 are one length;
            // anything else is refused (RFC 9110 8.6 lets a recipient do so).
            for v in h.value.split(|&b| b == b',') {
                let n = parse_length(v.trim_ascii())?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Several lines are one list, in order (RFC 9110 5.3).
            codings.get_or_insert_with(Codings::default).add(h.value);
        }
    }
    // RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field
    // and to any request message that contains more than one Host header
    // field line".
    if hosts > 1 || (version == 1 && hosts == 0) {
        return Err(HttpError::BadHost);
    }
    let body = match (length, codings) {
        (None, None) | (Some(0), None) => BodyKind::None,
        (Some(n), None) if n > limits.max_body as u64 => return Err(HttpError::BodyTooLarge),
        (Some(n), None) => BodyKind::Length(n),
        // 6.1: "A server MAY reject a request that contains both
        // Content-Length and Transfer-Encoding or process such a request
        // in accordance with the Transfer-Encoding alone." Refused: a proxy
        // that chose the other length would see another request.
        (Some(_), Some(_)) => return Err(HttpError::LengthAndTransferEncoding),
        // 6.1: "A server or client that receives an HTTP/1.0 message
        // containing a Transfer-Encoding header field MUST treat the
        // message as if the framing is faulty".
        (None, Some(_)) if version == 0 => return Err(HttpError::TransferEncodingInHttp10),
        (None, Some(c)) => c.body_kind()?,
    };
    let keep_alive = !close && (version == 1 || keep_alive_token);
    let (path, query) = split_target(target);
    Ok(Some(RequestHead {
        method,
        target,
        path,
        query,
        version,
        headers,
        head_len,
        body,
        keep_alive,
    }))
}

/// The error for a request line whose version httparse refused: 505 for a
/// well-formed `HTTP/` version other than 1.0 and 1.1 (`HTTP/2.0`,
/// `HTTP/1.2`), 400 for anything else in its place.
fn version_error(buf: &[u8]) -> HttpError {
    // httparse skips empty lines before the request line (RFC 9112 2.2), and
    // reports Version only after a method and a target, each followed by
    // one space.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let version = buf[start..]
        .splitn(3, |&b| b == b' ')
        .nth(2)
        .unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', d, ..] if d.is_ascii_digit() => {
            HttpError::UnsupportedVersion
        }
        _ => HttpError::Malformed,
    }
}

/// One Content-Length value: 1*DIGIT (RFC 9110 8.6), so no sign, space or
/// empty value. A value past `u64::MAX` saturates: it is over any limit.
fn parse_length(v: &[u8]) -> Result<u64, HttpError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadContentLength);
    }
    Ok(v.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// The transfer codings of a request, over all its Transfer-Encoding lines.
#[derive(Debug, Clone, Copy, Default)]
struct Codings {
    /// How many codings, `chunked` or not.
    count: usize,
    /// Is the last one `chunked`?
    chunked_last: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) {
        // Empty list elements are allowed and not counted (RFC 9110 5.6.1).
        for c in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if !c.is_empty() {
                self.count += 1;
                self.chunked_last = c.eq_ignore_ascii_case(b"chunked");
            }
        }
    }

    fn body_kind(self) -> Result<BodyKind, HttpError> {
        if !self.chunked_last {
            // 6.3 item 4: "If a Transfer-Encoding header field is present in
            // a request and the chunked transfer coding is not the final
            // encoding, the message body length cannot be determined
            // reliably; the server MUST respond with the 400 (Bad Request)
            // status code and then close the connection."
            Err(HttpError::ChunkedNotFinal)
        } else if self.count > 1 {
            // 6.1: "A server that receives a request message with a
            // transfer coding it does not understand SHOULD respond with 501
            // (Not Implemented)." Only chunked is decoded here; `chunked,
            // chunked` is refused as well ("A sender MUST NOT apply the
            // chunked transfer coding more than once", 7.1).
            Err(HttpError::UnsupportedTransferCoding)
        } else {
            Ok(BodyKind::Chunked)
        }
    }
}

/// The path and query of a request target. The absolute form
/// (`http://host/p?q`), which a server "MUST accept" (RFC 9112 3.2.2), gives
/// the same path as the origin form (`/p?q`).
fn split_target(target: &str) -> (&str, Option<&str>) {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let after_scheme = ["http://", "https://"].iter().find_map(|s| {
        path.get(..s.len())
            .filter(|p| p.eq_ignore_ascii_case(s))
            .map(|_| &path[s.len()..])
    });
    match after_scheme {
        Some(rest) => (rest.find('/').map_or("/", |i| &rest[i..]), query),
        None => (path, query),
    }
}

/// Decodes a request body of a known [`BodyKind`], sans-IO: bytes go in,
/// the body comes out, in pieces split anywhere.
///
/// The decoder never consumes past the end of the body, so what
/// [`BodyDecoder::decode`] leaves is the next request. Chunk extensions are
/// skipped and trailers read and dropped (RFC 9112 7.1.1 and 7.1.2 let a
/// recipient ignore both). After an error the decoder returns that error
/// again on every call.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// Body bytes so far (chunked), against `max_body`.
    total: u64,
    max_body: u64,
    /// Chunk-extension bytes so far, against `max_head`.
    ext_len: usize,
    /// Trailer-section bytes so far, against `max_head`.
    trailer_len: usize,
    max_head: usize,
}

/// Where a [`BodyDecoder`] is in the body. For chunked bodies (RFC 9112
/// 7.1):
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
///
///   Size --hex--> Size --';' SP HTAB--> Ext --CR--> SizeLf --LF--> Data
///     \______________________CR______________________/       (size 0:
///   Data --n bytes--> DataCr --CR--> DataLf --LF--> Size      Trailer)
///   Trailer --CR--> TrailerLf --LF, empty line--> Done
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Content-Length: bytes still to come.
    Length(u64),
    /// In the hex digits of a chunk size.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the digits, in whitespace and extensions up to CR.
    Ext {
        size: u64,
    },
    /// After the CR of a size line.
    SizeLf {
        size: u64,
    },
    /// In chunk data: bytes still to come.
    Data(u64),
    /// After chunk data, before its CR.
    DataCr,
    /// After the CR that follows chunk data.
    DataLf,
    /// In the trailer section; `empty` while the current line has no byte.
    Trailer {
        empty: bool,
    },
    /// After a CR in the trailer section.
    TrailerLf {
        empty: bool,
    },
    Done,
    Failed(HttpError),
}

/// 16 hex digits hold any `u64`: a longer size either overflows or is
/// padded with zeros without end, and is refused either way.
const MAX_SIZE_DIGITS: u8 = 16;

impl BodyDecoder {
    /// A decoder for a body framed as `kind`, within `limits.max_body`
    /// (the body after decoding) and `limits.max_head` (trailers, and chunk
    /// extensions in total).
    pub fn new(kind: BodyKind, limits: &HttpLimits) -> BodyDecoder {
        let max_body = limits.max_body as u64;
        let state = match kind {
            BodyKind::None | BodyKind::Length(0) => State::Done,
            // parse_head refuses these already; a caller that builds the
            // kind itself gets the same answer.
            BodyKind::Length(n) if n > max_body => State::Failed(HttpError::BodyTooLarge),
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::Size { size: 0, digits: 0 },
        };
        BodyDecoder {
            state,
            total: 0,
            max_body,
            ext_len: 0,
            trailer_len: 0,
            max_head: limits.max_head,
        }
    }

    /// Has the whole body (and, if chunked, its trailers) been read?
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Appends the body bytes in `input` to `out` and returns how many bytes
    /// of `input` it consumed: all of them while the body goes on, fewer
    /// once it ends (the rest is the next request). Call again with the
    /// bytes after those consumed, plus any that arrive, until
    /// [`BodyDecoder::is_done`].
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() {
            let state = match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                // The only states that take more than one byte at a time.
                State::Length(left) | State::Data(left) => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::DataCr,
                        _ => State::Data(left),
                    }
                }
                s => {
                    let b = input[i];
                    i += 1;
                    match self.step(s, b) {
                        Ok(s) => s,
                        Err(e) => State::Failed(e),
                    }
                }
            };
            self.state = state;
        }
        match self.state {
            State::Failed(e) => Err(e),
            _ => Ok(i),
        }
    }

    /// The state after the framing byte `b` of a chunked body.
    fn step(&mut self, state: State, b: u8) -> Result<State, HttpError> {
        if matches!(state, State::Trailer { .. } | State::TrailerLf { .. }) {
            self.trailer_len += 1;
            if self.trailer_len > self.max_head {
                return Err(HttpError::TrailersTooLarge);
            }
        }
        Ok(match state {
            State::Size { size, digits } => match (b as char).to_digit(16) {
                Some(d) if digits < MAX_SIZE_DIGITS => State::Size {
                    size: (size << 4) | u64::from(d),
                    digits: digits + 1,
                },
                Some(_) => return Err(HttpError::BadChunkSize),
                None if digits == 0 => return Err(HttpError::BadChunkSize),
                None if b == b'\r' => State::SizeLf { size },
                // chunk-ext = *( BWS ";" BWS chunk-ext-name ... )
                None if matches!(b, b';' | b' ' | b'\t') => {
                    self.count_ext()?;
                    State::Ext { size }
                }
                None => return Err(HttpError::BadChunkSize),
            },
            State::Ext { size } => match b {
                b'\r' => State::SizeLf { size },
                b'\n' => return Err(HttpError::BadChunkFraming),
                _ => {
                    self.count_ext()?;
                    State::Ext { size }
                }
            },
            State::SizeLf { size } if b == b'\n' => {
                if size == 0 {
                    // last-chunk: the trailer section follows.
                    State::Trailer { empty: true }
                } else {
                    // Refused before the chunk is read, as a Content-Length
                    // is; the sum is checked, so it cannot wrap.
                    match self.total.checked_add(size) {
                        Some(t) if t <= self.max_body => self.total = t,
                        _ => return Err(HttpError::BodyTooLarge),
                    }
                    State::Data(size)
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0 },
            State::Trailer { empty } => match b {
                b'\r' => State::TrailerLf { empty },
                b'\n' => return Err(HttpError::BadChunkFraming),
                _ => State::Trailer { empty: false },
            },
            // The empty line ends the trailer section, and the body.
            State::TrailerLf { empty: true } if b == b'\n' => State::Done,
            State::TrailerLf { empty: false } if b == b'\n' => State::Trailer { empty: true },
            State::SizeLf { .. } | State::DataCr | State::DataLf | State::TrailerLf { .. } => {
                return Err(HttpError::BadChunkFraming)
            }
            State::Length(_) | State::Data(_) | State::Done | State::Failed(_) => {
                unreachable!("decode handles {state:?} itself")
            }
        })
    }

    fn count_ext(&mut self) -> Result<(), HttpError> {
        self.ext_len += 1;
        if self.ext_len > self.max_head {
            return Err(HttpError::ChunkExtensionsTooLong);
        }
        Ok(())
    }
}

/// How a response is framed for the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseOpts {
    /// Keep the connection for another request; otherwise the response says
    /// `Connection: close` and the caller closes once it is sent.
    pub keep_alive: bool,
    /// The request was HEAD: the head says the body's Content-Length, but
    /// no body bytes follow (RFC 9110 9.3.2).
    pub head: bool,
    /// The request was HTTP/1.0: keeping its connection takes an explicit
    /// `Connection: keep-alive` (RFC 9112 9.3, C.2.2).
    pub http10: bool,
}

impl ResponseOpts {
    /// The framing that answers `req`: its keep-alive, its method and its
    /// version.
    pub fn for_request(req: &RequestHead<'_>) -> ResponseOpts {
        ResponseOpts {
            keep_alive: req.keep_alive,
            head: req.method == "HEAD",
            http10: req.version == 0,
        }
    }
}

/// A response header that [`write_response`] refused to write: a name that
/// is not a token, or a value with CR, LF or another control byte, which
/// would let application data split the response (header injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsafeHeader {
    /// The header's index in the slice passed.
    pub index: usize,
}

impl fmt::Display for UnsafeHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "response header {} is not a token or has a control byte",
            self.index
        )
    }
}

impl std::error::Error for UnsafeHeader {}

/// Is `name` one of the headers that frame the response, which
/// [`write_response`] writes itself?
fn is_framing(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
}

/// Appends a response to `out`: the status line, `headers`, the framing and
/// `body`.
///
/// The framing is this function's alone: a Content-Length, Transfer-Encoding
/// or Connection among `headers` is dropped, and it writes `Content-Length`
/// (the body's length, also for HEAD), `Connection: close` unless
/// `opts.keep_alive`, and `Connection: keep-alive` to keep an HTTP/1.0
/// connection. 1xx, 204 and 304 responses get neither Content-Length nor
/// body (RFC 9110 6.4.1, 8.6); an interim 100 is [`CONTINUE`]. The caller
/// adds Content-Type, Date (the codec has no clock) and the rest.
///
/// If any header fails [`is_header_safe`], nothing is written and the
/// caller gets its index: a response missing a header it was meant to have
/// is a bug to report (with a 500, say), not to send.
pub fn write_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    opts: ResponseOpts,
    out: &mut Vec<u8>,
) -> Result<(), UnsafeHeader> {
    if let Some(index) = headers.iter().position(|(k, v)| !is_header_safe(k, v)) {
        return Err(UnsafeHeader { index });
    }
    debug_assert!((100..1000).contains(&status), "status {status}");
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (k, v) in headers.iter().filter(|(k, _)| !is_framing(k)) {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    // "A server MUST NOT send a Content-Length header field in any response
    // with a status code of 1xx (Informational) or 204 (No Content)"
    // (RFC 9110 8.6); a 304 has no content (15.4.5).
    let bodiless = status < 200 || status == 204 || status == 304;
    if !bodiless {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    if !opts.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if opts.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless && !opts.head {
        out.extend_from_slice(body);
    }
    Ok(())
}

/// Appends the response refusing a request for `err`: its status, `headers`
/// (an `Allow` for a 405, a `Retry-After`), a one-line plain-text body with
/// the reason, and `Connection: close`, since after any [`HttpError`] the
/// framing of the bytes that follow is unknown. The body is written even
/// for a HEAD request: the method may be what failed to parse, and the
/// connection closes after it anyway.
pub fn write_error(
    err: &HttpError,
    headers: &[(String, String)],
    out: &mut Vec<u8>,
) -> Result<(), UnsafeHeader> {
    let mut all = Vec::with_capacity(headers.len() + 1);
    all.push(("Content-Type".to_owned(), "text/plain".to_owned()));
    all.extend_from_slice(headers);
    let body = format!("{}\n", err.reason());
    write_response(
        err.status(),
        &all,
        body.as_bytes(),
        ResponseOpts::default(),
        out,
    )
    // The caller's headers are at index 1 on, in `all`.
    .map_err(|e| UnsafeHeader { index: e.index - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> HttpLimits {
        HttpLimits::default()
    }

    fn parse(req: &[u8]) -> Result<Option<RequestHead<'_>>, HttpError> {
        parse_head(req, &lim())
    }

    fn err(req: &[u8]) -> HttpError {
        parse(req).expect_err(&String::from_utf8_lossy(req))
    }

    const GET: &[u8] =
        b"GET /health?full=1&x HTTP/1.1\r\nHost: a\r\nX-Test: one\r\nx-test: two\r\n\r\n";

    #[test]
    fn get_head() {
        let h = parse(GET).unwrap().unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/health?full=1&x");
        assert_eq!(h.path, "/health");
        assert_eq!(h.query, Some("full=1&x"));
        assert_eq!(h.version, 1);
        assert_eq!(h.head_len, GET.len());
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
        assert_eq!(h.header("X-TEST"), Some(&b"one"[..]));
        assert_eq!(h.header_values("x-test").count(), 2);
        assert_eq!(h.header("missing"), None);
        assert_eq!(h.headers.len(), 3);
        assert!(!h.is_websocket_upgrade());
        assert!(!h.expects_continue());
    }

    #[test]
    fn incomplete_needs_more() {
        for n in 0..GET.len() {
            assert_eq!(parse(&GET[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn targets() {
        let h = parse(b"GET http://example.com/a/b?q HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.path, h.query), ("/a/b", Some("q")));
        let h = parse(b"GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.path, h.query), ("/", None));
        let h = parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.method, h.path, h.query), ("OPTIONS", "*", None));
        // Empty lines before the request line are skipped (RFC 9112 2.2).
        let h = parse(b"\r\nGET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.path, h.head_len), ("/", 20));
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
        ];
        for &(req, want) in cases {
            let h = parse(req).unwrap().unwrap();
            assert_eq!(h.keep_alive, want, "{}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn upgrade_and_continue() {
        let ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: foo, WebSocket\r\nConnection: Upgrade\r\n\r\n";
        assert!(parse(ws).unwrap().unwrap().is_websocket_upgrade());
        let post = b"POST /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
        assert!(!parse(post).unwrap().unwrap().is_websocket_upgrade());
        let h2c = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n";
        assert!(!parse(h2c).unwrap().unwrap().is_websocket_upgrade());

        let cont =
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
        assert!(parse(cont).unwrap().unwrap().expects_continue());
        let cont10 = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        assert!(!parse(cont10).unwrap().unwrap().expects_continue());
    }

    #[test]
    fn pipelined_heads() {
        let mut buf = GET.to_vec();
        buf.extend_from_slice(b"POST /pub HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c");
        let first = parse(&buf).unwrap().unwrap();
        assert_eq!(first.path, "/health");
        let rest = &buf[first.head_len..];
        let second = parse(rest).unwrap().unwrap();
        assert_eq!((second.method, second.body), ("POST", BodyKind::Length(5)));
        let mut dec = BodyDecoder::new(second.body, &lim());
        let mut body = Vec::new();
        let used = dec.decode(&rest[second.head_len..], &mut body).unwrap();
        assert!(dec.is_done());
        assert_eq!(body, b"hello");
        let rest = &rest[second.head_len + used..];
        let third = parse(rest).unwrap().unwrap();
        assert_eq!(third.path, "/b");
        assert_eq!(parse(&rest[third.head_len..]), Ok(None));
    }

    #[test]
    fn lengths() {
        let kind = |req: &[u8]| parse(req).unwrap().unwrap().body;
        let post = |cl: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{cl}\r\n\r\n").into_bytes();
        assert_eq!(kind(&post("Content-Length: 0")), BodyKind::None);
        assert_eq!(kind(&post("Content-Length: 12")), BodyKind::Length(12));
        assert_eq!(kind(&post("Content-Length: 012")), BodyKind::Length(12));
        assert_eq!(kind(&post("Content-Length: 7, 7")), BodyKind::Length(7));
        assert_eq!(
            kind(&post("Content-Length: 7\r\ncontent-length: 7")),
            BodyKind::Length(7)
        );
        assert_eq!(
            kind(&post("Content-Length: 1048576")),
            BodyKind::Length(1 << 20)
        );
        for bad in [
            "Content-Length: 7, 8",
            "Content-Length: 7\r\nContent-Length: 8",
            "Content-Length: +7",
            "Content-Length: -1",
            "Content-Length: 0x10",
            "Content-Length: 1 2",
            "Content-Length: ",
            "Content-Length: 7,",
        ] {
            assert_eq!(err(&post(bad)), HttpError::BadContentLength, "{bad}");
        }
        // Declared too large: refused before any of the body arrives.
        assert_eq!(
            err(&post("Content-Length: 1048577")),
            HttpError::BodyTooLarge
        );
        assert_eq!(
            err(&post("Content-Length: 99999999999999999999999999")),
            HttpError::BodyTooLarge
        );
    }

    #[test]
    fn transfer_encodings() {
        let kind = |req: &[u8]| parse(req).unwrap().unwrap().body;
        let post = |te: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{te}\r\n\r\n").into_bytes();
        assert_eq!(kind(&post("Transfer-Encoding: chunked")), BodyKind::Chunked);
        assert_eq!(kind(&post("transfer-encoding: ChUnKeD")), BodyKind::Chunked);
        assert_eq!(
            kind(&post("Transfer-Encoding: , chunked")),
            BodyKind::Chunked
        );
        let cases = [
            ("Transfer-Encoding: gzip", HttpError::ChunkedNotFinal),
            (
                "Transfer-Encoding: chunked, gzip",
                HttpError::ChunkedNotFinal,
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
                HttpError::ChunkedNotFinal,
            ),
            ("Transfer-Encoding: identity", HttpError::ChunkedNotFinal),
            ("Transfer-Encoding: ", HttpError::ChunkedNotFinal),
            ("Transfer-Encoding: chunkedx", HttpError::ChunkedNotFinal),
            (
                "Transfer-Encoding: gzip, chunked",
                HttpError::UnsupportedTransferCoding,
            ),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
                HttpError::UnsupportedTransferCoding,
            ),
            (
                "Transfer-Encoding: chunked, chunked",
                HttpError::UnsupportedTransferCoding,
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5",
                HttpError::LengthAndTransferEncoding,
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: gzip",
                HttpError::LengthAndTransferEncoding,
            ),
        ];
        for (te, want) in cases {
            assert_eq!(err(&post(te)), want, "{te}");
        }
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::TransferEncodingInHttp10
        );
    }

    #[test]
    fn head_errors() {
        assert_eq!(
            err(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            HttpError::UnsupportedVersion
        );
        assert_eq!(
            err(b"GET / HTTP/1.2\r\n\r\n"),
            HttpError::UnsupportedVersion
        );
        // Known as soon as the version starts wrong, before the line ends.
        assert_eq!(err(b"\r\nGET / HTTP/3"), HttpError::UnsupportedVersion);
        assert_eq!(err(b"GET / HTTQ/1.1\r\n\r\n"), HttpError::Malformed);
        assert_eq!(err(b"GET /a b HTTP/1.1\r\n\r\n"), HttpError::Malformed);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost a\r\n\r\n"),
            HttpError::Malformed
        );
        // No space between a header name and its colon (RFC 9112 5.1).
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            HttpError::Malformed
        );
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HttpError::BadHost);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            HttpError::BadHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
            HttpError::BadHost
        );

        let small = HttpLimits {
            max_head: 40,
            max_headers: 2,
            ..lim()
        };
        let long = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaa\r\n\r\n";
        assert_eq!(parse_head(long, &small), Err(HttpError::HeadTooLarge));
        // An endless head is refused once the limit is reached.
        assert_eq!(parse_head(&long[..39], &small), Ok(None));
        assert_eq!(
            parse_head(&long[..40], &small),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(
            parse_head(&[b'\n'; 40], &small),
            Err(HttpError::HeadTooLarge)
        );
        let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        let wide = HttpLimits {
            max_head: 1000,
            ..small
        };
        assert_eq!(parse_head(many, &wide), Err(HttpError::TooManyHeaders));
    }

    /// Decodes `pieces` one after the other, as reads would deliver them,
    /// and returns the body and the bytes consumed in all.
    fn decode_pieces(
        kind: BodyKind,
        limits: &HttpLimits,
        pieces: &[&[u8]],
    ) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut dec = BodyDecoder::new(kind, limits);
        let (mut body, mut used) = (Vec::new(), 0);
        for p in pieces {
            let n = dec.decode(p, &mut body)?;
            assert!(n <= p.len());
            used += n;
            if n < p.len() {
                assert!(dec.is_done(), "stopped early without being done");
                break;
            }
        }
        Ok((body, used, dec.is_done()))
    }

    const CHUNKED: &[u8] = b"5;name=value; x\r\nhello\r\n1A \t;ext\r\nabcdefghijklmnopqrstuvwxyz\r\n000\r\nTrailer: t\r\nOther: u\r\n\r\n";

    #[test]
    fn chunked_at_every_split() {
        let want = b"helloabcdefghijklmnopqrstuvwxyz";
        let mut input = CHUNKED.to_vec();
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        let whole = decode_pieces(BodyKind::Chunked, &lim(), &[&input]).unwrap();
        assert_eq!(whole, (want.to_vec(), CHUNKED.len(), true));
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            let got = decode_pieces(BodyKind::Chunked, &lim(), &[a, b]).unwrap();
            assert_eq!(got, whole, "split at {at}");
        }
        // One byte at a time: each piece is consumed until the end.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            decode_pieces(BodyKind::Chunked, &lim(), &bytes).unwrap(),
            whole
        );
        // Every prefix short of the end needs more.
        for n in 0..CHUNKED.len() {
            let (body, used, done) =
                decode_pieces(BodyKind::Chunked, &lim(), &[&CHUNKED[..n]]).unwrap();
            assert_eq!((used, done), (n, false), "prefix {n}");
            assert!(want.starts_with(&body));
        }
    }

    #[test]
    fn chunked_empty_and_no_trailers() {
        let got = decode_pieces(BodyKind::Chunked, &lim(), &[b"0\r\n\r\nX"]).unwrap();
        assert_eq!(got, (Vec::new(), 5, true));
        let got = decode_pieces(BodyKind::Chunked, &lim(), &[b"3\r\nabc\r\n0\r\n\r\n"]).unwrap();
        assert_eq!(got, (b"abc".to_vec(), 13, true));
    }

    #[test]
    fn chunked_errors() {
        let cases: &[(&[u8], HttpError)] = &[
            (b"\r\n", HttpError::BadChunkSize),
            (b";x\r\n", HttpError::BadChunkSize),
            (b"g\r\n", HttpError::BadChunkSize),
            (b"-1\r\n", HttpError::BadChunkSize),
            (b"5x\r\n", HttpError::BadChunkSize),
            (b"00000000000000001\r\n", HttpError::BadChunkSize),
            (b"10000000000000000\r\n", HttpError::BadChunkSize),
            (b"5\n", HttpError::BadChunkSize),
            (b"5\rx", HttpError::BadChunkFraming),
            (b"5;a\nb", HttpError::BadChunkFraming),
            (b"3\r\nabcd", HttpError::BadChunkFraming),
            (b"3\r\nabc\rx", HttpError::BadChunkFraming),
            (b"3\r\nabc\n", HttpError::BadChunkFraming),
            (b"0\r\n\n", HttpError::BadChunkFraming),
            (b"0\r\nT: x\n", HttpError::BadChunkFraming),
            (b"0\r\nT: x\r\r", HttpError::BadChunkFraming),
        ];
        for &(input, want) in cases {
            let got = decode_pieces(BodyKind::Chunked, &lim(), &[input]);
            assert_eq!(got, Err(want), "{}", String::from_utf8_lossy(input));
        }
        // The error sticks.
        let mut dec = BodyDecoder::new(BodyKind::Chunked, &lim());
        assert_eq!(
            dec.decode(b"x", &mut Vec::new()),
            Err(HttpError::BadChunkSize)
        );
        assert_eq!(
            dec.decode(b"0\r\n\r\n", &mut Vec::new()),
            Err(HttpError::BadChunkSize)
        );
        assert!(!dec.is_done());
    }

    #[test]
    fn chunked_bounds() {
        let small = HttpLimits {
            max_head: 16,
            max_headers: 4,
            max_body: 10,
        };
        let ok = |i: &[u8]| decode_pieces(BodyKind::Chunked, &small, &[i]).map(|r| r.2);
        // max_body is the decoded size, over all chunks.
        assert_eq!(ok(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), Ok(true));
        // Past it: refused at the size line, before the chunk's data.
        assert_eq!(ok(b"5\r\nhello\r\n6\r\n"), Err(HttpError::BodyTooLarge));
        assert_eq!(ok(b"ffffffffffffffff\r\n"), Err(HttpError::BodyTooLarge));
        // Extensions: 16 bytes in total pass, 17 do not.
        assert_eq!(ok(b"1;123456\r\na\r\n0;12345678\r\n\r\n"), Ok(true));
        assert_eq!(
            ok(b"1;1234567\r\na\r\n0;12345678\r\n\r\n"),
            Err(HttpError::ChunkExtensionsTooLong)
        );
        // Trailers: 16 bytes including every CRLF pass, 17 do not.
        assert_eq!(ok(b"0\r\nA: 1\r\nB: 234\r\n\r\n"), Ok(true));
        assert_eq!(
            ok(b"0\r\nA: 1\r\nB: 2345\r\n\r\n"),
            Err(HttpError::TrailersTooLarge)
        );
    }

    #[test]
    fn length_bodies() {
        let l = lim();
        let got = decode_pieces(BodyKind::Length(5), &l, &[b"he", b"llo", b"NEXT"]).unwrap();
        assert_eq!(got, (b"hello".to_vec(), 5, true));
        let got = decode_pieces(BodyKind::Length(5), &l, &[b"hel"]).unwrap();
        assert_eq!(got, (b"hel".to_vec(), 3, false));
        assert!(BodyDecoder::new(BodyKind::None, &l).is_done());
        let mut dec = BodyDecoder::new(BodyKind::None, &l);
        assert_eq!(dec.decode(b"GET", &mut Vec::new()), Ok(0));
        let big = BodyKind::Length(l.max_body as u64 + 1);
        assert_eq!(
            decode_pieces(big, &l, &[b"x"]),
            Err(HttpError::BodyTooLarge)
        );
    }

    fn hdrs(h: &[(&str, &str)]) -> Vec<(String, String)> {
        h.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn response(status: u16, h: &[(&str, &str)], body: &[u8], opts: ResponseOpts) -> String {
        let mut out = Vec::new();
        write_response(status, &hdrs(h), body, opts, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn responses() {
        let keep = ResponseOpts {
            keep_alive: true,
            ..ResponseOpts::default()
        };
        assert_eq!(
            response(200, &[("Content-Type", "text/plain")], b"ok\n", keep),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
        );
        assert_eq!(
            response(404, &[], b"", ResponseOpts::default()),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let keep10 = ResponseOpts {
            http10: true,
            ..keep
        };
        assert_eq!(
            response(200, &[], b"x", keep10),
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx"
        );
        // HEAD: the length of the body that a GET would get, and no body.
        let head = ResponseOpts { head: true, ..keep };
        assert_eq!(
            response(200, &[], b"hello", head),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        );
        assert_eq!(
            response(204, &[], b"ignored", keep),
            "HTTP/1.1 204 No Content\r\n\r\n"
        );
        assert_eq!(
            response(304, &[("ETag", "\"1\"")], b"", keep),
            "HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\n\r\n"
        );
        // The framing headers are the writer's own.
        assert_eq!(
            response(
                200,
                &[
                    ("content-length", "99"),
                    ("Transfer-Encoding", "chunked"),
                    ("Connection", "keep-alive"),
                    ("X-A", "b"),
                ],
                b"ab",
                ResponseOpts::default(),
            ),
            "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab"
        );
        assert_eq!(
            response(505, &[], b"", ResponseOpts::default()),
            "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn options_for_request() {
        let req = parse(b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            ResponseOpts::for_request(&req),
            ResponseOpts {
                keep_alive: true,
                head: true,
                http10: true
            }
        );
        let req = parse(GET).unwrap().unwrap();
        assert_eq!(
            ResponseOpts::for_request(&req),
            ResponseOpts {
                keep_alive: true,
                head: false,
                http10: false
            }
        );
    }

    #[test]
    fn header_injection_refused() {
        for (i, bad) in [
            ("X-A", "b\r\nSet-Cookie: evil"),
            ("X-A", "b\nc"),
            ("X-A\r\nEvil", "b"),
            ("X A", "b"),
            ("", "b"),
        ]
        .iter()
        .enumerate()
        {
            let mut out = b"before".to_vec();
            let h = hdrs(&[("Ok", "fine"), *bad]);
            assert_eq!(
                write_response(200, &h, b"", ResponseOpts::default(), &mut out),
                Err(UnsafeHeader { index: 1 }),
                "case {i}"
            );
            assert_eq!(
                write_error(&HttpError::Malformed, &h, &mut out),
                Err(UnsafeHeader { index: 1 })
            );
            assert_eq!(out, b"before", "nothing written");
        }
        // A tab is allowed in a value.
        assert!(response(200, &[("X-A", "a\tb")], b"", ResponseOpts::default()).contains("a\tb"));
    }

    #[test]
    fn errors_respond_and_close() {
        use HttpError::*;
        let all = [
            (HeadTooLarge, 431),
            (TooManyHeaders, 431),
            (Malformed, 400),
            (UnsupportedVersion, 505),
            (BadHost, 400),
            (LengthAndTransferEncoding, 400),
            (BadContentLength, 400),
            (ChunkedNotFinal, 400),
            (UnsupportedTransferCoding, 501),
            (TransferEncodingInHttp10, 400),
            (BodyTooLarge, 413),
            (BadChunkSize, 400),
            (BadChunkFraming, 400),
            (ChunkExtensionsTooLong, 400),
            (TrailersTooLarge, 431),
        ];
        for (e, status) in all {
            assert_eq!(e.status(), status, "{e:?}");
            assert!(!e.reason().is_empty() && !e.reason().contains('\n'));
            assert_eq!(e.to_string(), format!("{status} {}", e.reason()));
            let mut out = Vec::new();
            write_error(&e, &[], &mut out).unwrap();
            let body = format!("{}\n", e.reason());
            let want = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason_phrase(status),
                body.len()
            );
            assert_eq!(String::from_utf8(out).unwrap(), want);
            assert_ne!(reason_phrase(status), "Error");
        }
        // A 405 names the allowed methods through the caller's headers.
        let mut out = Vec::new();
        let allow = hdrs(&[("Allow", "GET, HEAD")]);
        let mut plain = Vec::new();
        write_response(
            405,
            &[
                ("Content-Type".into(), "text/plain".into()),
                allow[0].clone(),
            ],
            b"method not allowed\n",
            ResponseOpts::default(),
            &mut plain,
        )
        .unwrap();
        write_error(&Malformed, &allow, &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(String::from_utf8(plain).unwrap().starts_with(
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nAllow: GET, HEAD\r\n"
        ));
    }
}
