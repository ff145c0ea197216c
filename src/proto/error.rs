//! Typed errors: one variant per protocol violation, each mapped to its close
//! code (frame layer) or HTTP status (handshake, HTTP routes) in exactly one
//! place, here.
//!
//! A normal close is not an error: it is [`crate::proto::conn::Event::Closed`].

use std::fmt;

/// Close status codes this crate sends (RFC 6455 section 7.4.1).
pub mod close_code {
    /// 1000: normal closure.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away (server shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1005: no status code was present (reported, never sent).
    pub const NO_STATUS: u16 = 1005;
    /// 1006: the connection ended without a Close (reported, never sent).
    pub const ABNORMAL: u16 = 1006;
    /// 1007: data inconsistent with the message type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: a policy was violated (a send queue past its limit).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1011: unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A violation of RFC 6455 by the peer, detected after the handshake.
///
/// Every variant fails the connection; [`ProtocolError::close_code`] says with
/// which code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV1-3 set while no extension defining them was negotiated (5.2).
    ReservedBits(u8),
    /// Opcode 0x3-0x7 or 0xB-0xF (5.2).
    ReservedOpcode(u8),
    /// A control frame with FIN clear (5.5: "Control frames ... MUST NOT be fragmented").
    FragmentedControlFrame,
    /// A control frame with a payload longer than 125 bytes (5.5).
    ControlFrameTooLong(u64),
    /// A 64-bit payload length with the most significant bit set (5.2).
    LengthTopBitSet,
    /// A client frame without the mask bit (5.1: the server MUST close).
    UnmaskedFrame,
    /// A server frame with the mask bit set (5.1: the client MUST close).
    MaskedFrame,
    /// A continuation frame with no message in progress (5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress (5.4).
    ExpectedContinuation,
    /// A frame whose payload is longer than `max_frame_size`.
    FrameTooBig {
        /// Declared payload length.
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message whose total payload would exceed `max_message_size`.
    MessageTooBig {
        /// Total size the message would reach (saturating).
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// A text message, or a close reason, that is not valid UTF-8 (8.1).
    InvalidUtf8,
    /// A close frame with a one-byte payload (5.5.1: the code is two bytes).
    CloseFrameTruncated,
    /// A close code that may not be sent on the wire (7.4).
    InvalidCloseCode(u16),
    /// A permessage-deflate message whose data does not inflate (RFC 7692
    /// 8: "the endpoint MUST _Fail the WebSocket Connection_"; 1007, as for
    /// data inconsistent with the message type).
    BadCompressedData,
}

impl ProtocolError {
    /// The status code of the close frame this error is answered with.
    pub fn close_code(&self) -> u16 {
        use ProtocolError::*;
        match self {
            InvalidUtf8 | BadCompressedData => close_code::INVALID_PAYLOAD,
            FrameTooBig { .. } | MessageTooBig { .. } => close_code::MESSAGE_TOO_BIG,
            ReservedBits(_)
            | ReservedOpcode(_)
            | FragmentedControlFrame
            | ControlFrameTooLong(_)
            | LengthTopBitSet
            | UnmaskedFrame
            | MaskedFrame
            | UnexpectedContinuation
            | ExpectedContinuation
            | CloseFrameTruncated
            | InvalidCloseCode(_) => close_code::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProtocolError::*;
        match self {
            ReservedBits(b) => write!(f, "reserved bits set (0x{b:x}) without an extension"),
            ReservedOpcode(o) => write!(f, "reserved opcode 0x{o:x}"),
            FragmentedControlFrame => f.write_str("fragmented control frame"),
            ControlFrameTooLong(n) => write!(f, "control frame payload of {n} bytes (max 125)"),
            LengthTopBitSet => f.write_str("64-bit payload length with the top bit set"),
            UnmaskedFrame => f.write_str("unmasked frame from a client"),
            MaskedFrame => f.write_str("masked frame from a server"),
            UnexpectedContinuation => f.write_str("continuation frame without a message"),
            ExpectedContinuation => f.write_str("new message before the previous one finished"),
            FrameTooBig { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            MessageTooBig { len, max } => {
                write!(f, "message of {len} bytes exceeds the {max}-byte limit")
            }
            InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            CloseFrameTruncated => f.write_str("close frame with a one-byte payload"),
            InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            BadCompressedData => f.write_str("compressed data that does not inflate"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why an opening handshake was refused. [`HandshakeError::status`] maps each to
/// the HTTP status the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The request head is longer than `max_handshake_size` (431).
    HeadTooLarge,
    /// More header lines than the parser accepts (431).
    TooManyHeaders,
    /// Not parseable as an HTTP/1.1 request head (400).
    Malformed,
    /// The method is not GET (400, RFC 6455 4.2.1 item 1).
    NotGet,
    /// The version is not HTTP/1.1 or later (400).
    BadHttpVersion,
    /// No Host header (400, 4.2.1 item 2).
    MissingHost,
    /// No `Upgrade: websocket` token (400, 4.2.1 item 3).
    MissingUpgrade,
    /// No `Connection: upgrade` token (400, 4.2.1 item 4).
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes (400, item 5).
    BadKey,
    /// `Sec-WebSocket-Version` missing (400, item 6).
    MissingVersion,
    /// `Sec-WebSocket-Version` is not 13 (426 with `Sec-WebSocket-Version: 13`, 4.4).
    UnsupportedVersion,
}

impl HandshakeError {
    /// The HTTP status code of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => 431,
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The one-line reason sent as the response body and logged.
    pub fn reason(&self) -> &'static str {
        use HandshakeError::*;
        match self {
            HeadTooLarge => "request head too large",
            TooManyHeaders => "too many header fields",
            Malformed => "malformed HTTP request",
            NotGet => "method must be GET",
            BadHttpVersion => "HTTP/1.1 or later required",
            MissingHost => "missing Host header",
            MissingUpgrade => "missing 'Upgrade: websocket' header",
            MissingConnectionUpgrade => "missing 'Connection: Upgrade' header",
            BadKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            MissingVersion => "missing Sec-WebSocket-Version header",
            UnsupportedVersion => "unsupported Sec-WebSocket-Version (13 required)",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HandshakeError {}

/// Why a plain HTTP request (a route that is not a WebSocket upgrade, see
/// [`crate::proto::http`]) is refused. [`HttpError::status`] maps each to the
/// status the server answers with; every one of them ends the connection,
/// since the framing of whatever follows is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The request head is longer than `max_head` (431).
    HeadTooLarge,
    /// More header lines than `max_headers` (431).
    TooManyHeaders,
    /// Not parseable as an HTTP/1.x request head (400).
    Malformed,
    /// An `HTTP/x.y` version other than 1.0 and 1.1 (505).
    UnsupportedVersion,
    /// An HTTP/1.1 request without a Host header, or any request with more
    /// than one (400, RFC 9112 3.2).
    BadHost,
    /// Both Content-Length and Transfer-Encoding (400, RFC 9112 6.1 and 6.3
    /// item 3: the classic request-smuggling ambiguity).
    LengthAndTransferEncoding,
    /// A Content-Length that is not all digits, or several that differ
    /// (400, RFC 9112 6.3 item 5).
    BadContentLength,
    /// A Transfer-Encoding whose final coding is not `chunked` (400, RFC
    /// 9112 6.3 item 4).
    ChunkedNotFinal,
    /// Transfer codings other than one `chunked` alone (501, RFC 9112 6.1).
    UnsupportedTransferCoding,
    /// Transfer-Encoding in an HTTP/1.0 request (400, RFC 9112 6.1: its
    /// framing "MUST" be treated "as faulty").
    TransferEncodingInHttp10,
    /// A body, declared or received, larger than `max_body` (413).
    BodyTooLarge,
    /// A chunk size that is not 1 to 16 hex digits (400, RFC 9112 7.1).
    BadChunkSize,
    /// A CRLF missing after a chunk-size line, chunk data or a trailer line
    /// (400).
    BadChunkFraming,
    /// Chunk extensions longer in total than `max_head` (400).
    ChunkExtensionsTooLong,
    /// A trailer section longer than `max_head` (431).
    TrailersTooLarge,
}

impl HttpError {
    /// The HTTP status code of the refusal.
    pub fn status(&self) -> u16 {
        use HttpError::*;
        match self {
            HeadTooLarge | TooManyHeaders | TrailersTooLarge => 431,
            UnsupportedVersion => 505,
            UnsupportedTransferCoding => 501,
            BodyTooLarge => 413,
            Malformed
            | BadHost
            | LengthAndTransferEncoding
            | BadContentLength
            | ChunkedNotFinal
            | TransferEncodingInHttp10
            | BadChunkSize
            | BadChunkFraming
            | ChunkExtensionsTooLong => 400,
        }
    }

    /// The one-line reason sent as the response body and logged.
    pub fn reason(&self) -> &'static str {
        use HttpError::*;
        match self {
            HeadTooLarge => "request head too large",
            TooManyHeaders => "too many header fields",
            Malformed => "malformed HTTP request",
            UnsupportedVersion => "HTTP/1.0 or HTTP/1.1 required",
            BadHost => "exactly one Host header required",
            LengthAndTransferEncoding => "both Content-Length and Transfer-Encoding",
            BadContentLength => "invalid Content-Length",
            ChunkedNotFinal => "Transfer-Encoding must end with chunked",
            UnsupportedTransferCoding => "only Transfer-Encoding: chunked is supported",
            TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            BodyTooLarge => "request body too large",
            BadChunkSize => "invalid chunk size",
            BadChunkFraming => "missing CRLF in chunked body",
            ChunkExtensionsTooLong => "chunk extensions too long",
            TrailersTooLarge => "trailer section too large",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(
            ProtocolError::FrameTooBig { len: 2, max: 1 }.close_code(),
            1009
        );
        assert_eq!(
            ProtocolError::MessageTooBig { len: 2, max: 1 }.close_code(),
            1009
        );
        assert_eq!(ProtocolError::ReservedOpcode(3).close_code(), 1002);
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
        assert_eq!(HandshakeError::BadKey.status(), 400);
    }
}
