//! The client side of the opening handshake (RFC 6455 sections 4.1 and 4.2.2).
//!
//! [`ClientHandshake::new`] builds the request for a random key supplied by
//! the caller (the core has no randomness of its own), and
//! [`ClientHandshake::parse_response`] checks the server's answer as 4.1
//! requires: status 101, `Upgrade: websocket`, `Connection: Upgrade`, the
//! right `Sec-WebSocket-Accept`, and no extension or subprotocol that was
//! not asked for. Like the server side it returns `Ok(None)` until the
//! response head is complete, and the bytes after the head are WebSocket
//! frames.

use base64::Engine as _;
use std::fmt;

use super::deflate::{Agreed, ClientOffer};
use super::handshake::accept_key;

/// Why a server's handshake response was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHandshakeError {
    /// Not an HTTP/1.1 response head.
    Malformed,
    /// The response head is longer than the limit.
    HeadTooLarge,
    /// A status other than 101: the server refused (the status line is kept
    /// to show the user).
    Status(u16, String),
    /// No `Upgrade: websocket` (4.1, item 2 of the client's checks).
    MissingUpgrade,
    /// No `Connection: Upgrade` (item 3).
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` missing or wrong (item 4).
    BadAccept,
    /// An extension or subprotocol the client did not offer (items 5, 6).
    UnrequestedExtension,
    /// The permessage-deflate answer breaks the offer or RFC 7692 (the
    /// client "MUST _Fail the WebSocket Connection_").
    BadDeflateAnswer(String),
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ClientHandshakeError::*;
        match self {
            Malformed => f.write_str("the response is not HTTP/1.1"),
            HeadTooLarge => f.write_str("the response head is too large"),
            Status(code, line) => write!(f, "the server answered {code}: {line}"),
            MissingUpgrade => f.write_str("the response lacks 'Upgrade: websocket'"),
            MissingConnectionUpgrade => f.write_str("the response lacks 'Connection: Upgrade'"),
            BadAccept => f.write_str("wrong or missing Sec-WebSocket-Accept"),
            UnrequestedExtension => {
                f.write_str("the server chose an extension or subprotocol not offered")
            }
            BadDeflateAnswer(why) => write!(f, "bad permessage-deflate answer: {why}"),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

/// A client handshake in progress.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    accept: [u8; 28],
    request: Vec<u8>,
    /// What was offered of permessage-deflate, if anything.
    deflate: Option<ClientOffer>,
}

impl ClientHandshake {
    /// The request for `host` (as sent in the Host header, with the port when
    /// it is not 80) and `path` (with any query), keyed by 16 random bytes.
    pub fn new(host: &str, path: &str, nonce: [u8; 16]) -> ClientHandshake {
        ClientHandshake::with_deflate(host, path, nonce, None)
    }

    /// [`ClientHandshake::new`], offering permessage-deflate as `deflate`
    /// says, if at all.
    pub fn with_deflate(
        host: &str,
        path: &str,
        nonce: [u8; 16],
        deflate: Option<ClientOffer>,
    ) -> ClientHandshake {
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let ext = deflate.map_or(String::new(), |o| {
            format!("Sec-WebSocket-Extensions: {}\r\n", o.header())
        });
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        )
        .into_bytes();
        ClientHandshake {
            accept: accept_key(key.as_bytes()),
            request,
            deflate,
        }
    }

    /// The request bytes to send.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Checks the response in `buf`: `Ok(None)` until the head is complete,
    /// then the length of the head.
    pub fn parse_response(
        &self,
        buf: &[u8],
        max_head: usize,
    ) -> Result<Option<usize>, ClientHandshakeError> {
        Ok(self.parse_response_deflate(buf, max_head)?.map(|(n, _)| n))
    }

    /// [`ClientHandshake::parse_response`], with what permessage-deflate
    /// the server agreed to (when it was offered and accepted).
    pub fn parse_response_deflate(
        &self,
        buf: &[u8],
        max_head: usize,
    ) -> Result<Option<(usize, Option<Agreed>)>, ClientHandshakeError> {
        use ClientHandshakeError::*;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= max_head => n,
            Ok(httparse::Status::Complete(_)) => return Err(HeadTooLarge),
            Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Malformed),
        };
        let code = resp.code.unwrap_or(0);
        if code != 101 {
            let line = format!("{} {}", code, resp.reason.unwrap_or(""));
            return Err(Status(code, line));
        }
        let (mut upgrade, mut connection, mut accept_ok) = (false, false, false);
        let mut extensions: Vec<&[u8]> = Vec::new();
        for h in resp.headers.iter() {
            let has = |t: &str| {
                h.value
                    .split(|&b| b == b',')
                    .any(|v| v.trim_ascii().eq_ignore_ascii_case(t.as_bytes()))
            };
            if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade |= has("websocket");
            } else if h.name.eq_ignore_ascii_case("connection") {
                connection |= has("upgrade");
            } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
                accept_ok = h.value.trim_ascii() == self.accept;
            } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
                if self.deflate.is_none() {
                    // We offered none, so the server may select none (4.1).
                    return Err(UnrequestedExtension);
                }
                extensions.push(h.value);
            } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
                return Err(UnrequestedExtension);
            }
        }
        if !upgrade {
            return Err(MissingUpgrade);
        }
        if !connection {
            return Err(MissingConnectionUpgrade);
        }
        if !accept_ok {
            return Err(BadAccept);
        }
        let agreed = match &self.deflate {
            None => None,
            Some(offer) => offer
                .check_answer(extensions)
                .map_err(|e| BadDeflateAnswer(e.to_string()))?,
        };
        Ok(Some((head_len, agreed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::{parse_request, HandshakeLimits};

    const NONCE: [u8; 16] = *b"the sample nonce";

    #[test]
    fn request_is_what_the_server_accepts() {
        let c = ClientHandshake::new("example.com:9001", "/chat?x=1", NONCE);
        let req = String::from_utf8(c.request().to_vec()).unwrap();
        assert!(req.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: example.com:9001\r\n"));
        // RFC 6455 1.3's example key is this nonce.
        assert!(req.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        let accepted = parse_request(c.request(), HandshakeLimits::default())
            .unwrap()
            .unwrap();
        let resp = accepted.response();
        assert_eq!(c.parse_response(&resp, 4096), Ok(Some(resp.len())));
        for n in 0..resp.len() {
            assert_eq!(c.parse_response(&resp[..n], 4096), Ok(None));
        }
    }

    #[test]
    fn bad_responses() {
        use ClientHandshakeError::*;
        let c = ClientHandshake::new("h", "/", NONCE);
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(c.parse_response(ok.as_bytes(), 4096), Ok(Some(ok.len())));
        let cases = [
            (
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                Status(404, "404 Not Found".into()),
            ),
            (ok.replace("Upgrade: websocket\r\n", ""), MissingUpgrade),
            (
                ok.replace("Connection: Upgrade", "Connection: close"),
                MissingConnectionUpgrade,
            ),
            (
                ok.replace(
                    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                ),
                BadAccept,
            ),
            (
                ok.replace(
                    "\r\n\r\n",
                    "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                ),
                UnrequestedExtension,
            ),
            ("SSH-2.0-OpenSSH\r\n\r\n".to_string(), Malformed),
        ];
        for (resp, want) in cases {
            assert_eq!(
                c.parse_response(resp.as_bytes(), 4096),
                Err(want),
                "{resp:?}"
            );
        }
        let mut endless = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
        endless.resize(100, b'a');
        assert_eq!(c.parse_response(&endless, 100), Err(HeadTooLarge));
        assert_eq!(c.parse_response(&endless, 101), Ok(None));
    }

    #[test]
    fn a_deflate_offer_and_its_answer() {
        let offer = ClientOffer::default();
        let c = ClientHandshake::with_deflate("h", "/", NONCE, Some(offer));
        let req = String::from_utf8(c.request().to_vec()).unwrap();
        assert!(
            req.contains(
                "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ),
            "{req}"
        );
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        // Declined: no header.
        let plain = format!("{ok}\r\n");
        assert_eq!(
            c.parse_response_deflate(plain.as_bytes(), 4096),
            Ok(Some((plain.len(), None)))
        );
        // Accepted, with a limit on our window.
        let yes = format!(
            "{ok}Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n"
        );
        let (n, agreed) = c
            .parse_response_deflate(yes.as_bytes(), 4096)
            .unwrap()
            .unwrap();
        assert_eq!(n, yes.len());
        assert_eq!(agreed.unwrap().client_max_window_bits, 10);
        // Broken answers fail the connection.
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; no_such_thing",
            "x-webkit-deflate-frame",
        ] {
            let r = format!("{ok}Sec-WebSocket-Extensions: {bad}\r\n\r\n");
            assert!(
                matches!(
                    c.parse_response_deflate(r.as_bytes(), 4096),
                    Err(ClientHandshakeError::BadDeflateAnswer(_))
                ),
                "{bad}"
            );
        }
    }
}
