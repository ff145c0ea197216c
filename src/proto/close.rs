//! Close frames (RFC 6455 sections 5.5.1 and 7.4) and the close state.
//!
//! The connection moves through these states; the server closes the TCP
//! connection itself as soon as the exchange is over, so that the client does
//! not have to (7.1.1: "the server SHOULD close it [the TCP connection] first").
//!
//! ```text
//!                      peer Close                 reply flushed
//!   +------+  ---------------------------------> +--------+ ---> TCP closed
//!   | Open |   (queue Close echoing its code)    | Closed |      by server
//!   +------+                                     +--------+
//!      |                                            ^  ^
//!      | we close, or the peer breaks the protocol  |  |
//!      | (queue Close with our code, arm timeout)   |  |
//!      v                                            |  |
//!  +-----------+   peer Close, EOF or bad framing   |  |
//!  | CloseSent | -----------------------------------+  |
//!  +-----------+   close timeout passes  --------------+
//! ```
//!
//! In `CloseSent` the peer's frames are still parsed, but only to find its
//! Close: data is dropped (7.1.2: after sending Close "the endpoint MUST NOT
//! send any more data frames"; what it receives is moot).

use super::error::ProtocolError;
use super::frame::{encode_frame, OpCode};
use std::time::Instant;

/// Where the connection is in the closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseState {
    /// Messages flow both ways.
    Open,
    /// We sent Close and wait for the peer's until `deadline`.
    CloseSent {
        /// When to give up waiting and close TCP anyway.
        deadline: Instant,
    },
    /// The exchange is over (or abandoned): flush what is queued, then close
    /// the TCP connection.
    Closed,
}

/// May `code` appear in a Close frame on the wire (7.4.1, 7.4.2)?
///
/// 1004-1006 and 1015 are reserved for reporting and MUST NOT be sent; 0-999,
/// 1016-2999 and 5000+ are not assigned; 3000-4999 are for libraries and
/// applications; 1012-1014 were registered with IANA after the RFC.
pub fn is_valid_code(code: u16) -> bool {
    // 1012-1014 (service restart, try again later, bad gateway) are in the
    // IANA registry that 7.4.2 defers to.
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a Close payload: `Ok(None)` for an empty one, else the code and
/// the reason, which "MUST be UTF-8" (5.5.1).
pub fn parse_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::CloseFrameTruncated),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = simdutf8::basic::from_utf8(&payload[2..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// `reason` cut to the 123 bytes a Close frame has room for, on a
/// character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    &reason[..cut]
}

/// Appends a Close frame with `code` (none for an empty payload) and a reason
/// cut to fit the 125-byte control frame limit on a character boundary.
pub fn encode(code: Option<u16>, reason: &str, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mut payload = [0u8; 125];
    let mut n = 0;
    if let Some(c) = code {
        payload[..2].copy_from_slice(&c.to_be_bytes());
        let reason = truncate_reason(reason);
        payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        n = 2 + reason.len();
    }
    encode_frame(OpCode::Close, mask, &payload[..n], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(is_valid_code(c), "{c}");
        }
        for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_code(c), "{c}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(b""), Ok(None));
        assert_eq!(
            parse_payload(b"\x03"),
            Err(ProtocolError::CloseFrameTruncated)
        );
        assert_eq!(parse_payload(b"\x03\xe8bye"), Ok(Some((1000, "bye"))));
        assert_eq!(
            parse_payload(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_payload(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn encoding_cuts_reason_on_char_boundary() {
        let mut out = Vec::new();
        encode(Some(1000), &"é".repeat(100), None, &mut out);
        assert_eq!(out[0], 0x88);
        let len = out[1] as usize;
        assert!(len <= 125);
        assert_eq!(parse_payload(&out[2..]).unwrap().unwrap().1, "é".repeat(61));
        out.clear();
        encode(None, "ignored", None, &mut out);
        assert_eq!(out, b"\x88\x00");
    }
}
