//! The server side of the opening handshake (RFC 6455 section 4.2).
//!
//! [`parse_request`] looks at the bytes received so far. It returns `Ok(None)`
//! until the request head (up to the blank line) is complete, then either the
//! accepted request or the reason for refusing it. The response bytes come
//! from [`Accepted::response`] or [`refusal`]. Bytes after the head belong to
//! the WebSocket stream: a client may send its first frame in the same packet
//! as its handshake, so the caller must feed `buf[head_len..]` to the
//! connection.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::error::HandshakeError;

/// The GUID of 4.2.2 item 5.4, appended to the key before hashing.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bounds on a request head; past either one it is refused with 431, so a
/// client cannot make the server buffer or scan headers without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Longest request head, in bytes, including the final CRLF CRLF.
    pub max_head: usize,
    /// Most header lines.
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_head: 8 << 10,
            max_headers: 64,
        }
    }
}

/// A request that the server can accept, with its head still borrowed
/// from the bytes it was parsed from, for the application to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// Length of the request head, including the final CRLF CRLF.
    pub head_len: usize,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: [u8; 28],
    /// The request target: path and query (`/chat?room=1`).
    pub target: &'a str,
    /// Every header line, in order.
    pub headers: Vec<httparse::Header<'a>>,
}

impl Accepted<'_> {
    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The path of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`, over
    /// every such header, in order).
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// The 101 response, with no subprotocol and no extension (4.2.2 says
    /// to list only those the server selected).
    pub fn response(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(130);
        self.write_response(None, &[], &mut r);
        r
    }

    /// Appends the 101 response to `out`: with `protocol` as the selected
    /// subprotocol, and `extra` header lines (names and values the caller
    /// has checked, see [`is_header_safe`]).
    pub fn write_response(
        &self,
        protocol: Option<&str>,
        extra: &[(String, String)],
        out: &mut Vec<u8>,
    ) {
        write_switching(&self.accept, protocol, extra, out);
    }
}

/// Appends a 101 response with the `Sec-WebSocket-Accept` value `accept`,
/// as [`Accepted::write_response`] does, for a decision made after the
/// request's bytes are gone.
pub fn write_switching(
    accept: &[u8; 28],
    protocol: Option<&str>,
    extra: &[(String, String)],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (k, v) in extra {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Can `name: value` go into a response head as it is? A name is an HTTP
/// token; a value has no CR, LF or other control byte but tab. Anything else
/// would let application data split the response (header injection).
pub fn is_header_safe(name: &str, value: &str) -> bool {
    const TOKEN_EXTRA: &[u8] = b"!#$%&'*+-.^_`|~";
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TOKEN_EXTRA.contains(&b))
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Appends an HTTP response refusing a request: `status` with its reason
/// phrase, `extra` header lines (checked by the caller, see
/// [`is_header_safe`]), a plain-text `body`, and `Connection: close`.
pub fn write_refusal(status: u16, extra: &[(String, String)], body: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    let _ = write!(
        out,
        "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

/// The reason phrase of the statuses the server answers with, on its
/// WebSocket handshakes and its HTTP routes ([`super::http`]); "Error" for
/// any other, which is harmless: "A client SHOULD ignore the reason-phrase
/// content" (RFC 9112 4).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// `base64(sha1(key ++ GUID))`, the `Sec-WebSocket-Accept` value for `key`.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID);
    let digest = h.finalize();
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out)
        .expect("20 bytes encode to 28");
    debug_assert_eq!(n, 28);
    out
}

/// Does the comma-separated header value contain `token` (any case)?
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses the request head in `buf`, within `limits`.
pub fn parse_request(
    buf: &[u8],
    limits: HandshakeLimits,
) -> Result<Option<Accepted<'_>>, HandshakeError> {
    let max_head = limits.max_head;
    // Once per handshake attempt, sized by the configured limit.
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_head {
                Err(HandshakeError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    if head_len > max_head {
        return Err(HandshakeError::HeadTooLarge);
    }
    // 4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if req.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::BadHttpVersion);
    }
    let (mut host, mut upgrade, mut connection) = (false, false, false);
    let mut key: Option<&[u8]> = None;
    let mut key_count = 0;
    let mut version: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(h.value.trim_ascii());
            key_count += 1;
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            // A repeated header with another value still fails the check below.
            if version.is_none_or(|v| v == b"13") {
                version = Some(h.value.trim_ascii());
            }
        }
    }
    if !host {
        return Err(HandshakeError::MissingHost);
    }
    if !upgrade {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    // 4.2.1 item 6 before item 5: a client of another version gets 426 and the
    // version we speak, whatever its key looks like.
    match version {
        None => return Err(HandshakeError::MissingVersion),
        Some(v) if v != b"13" => return Err(HandshakeError::UnsupportedVersion),
        _ => {}
    }
    // 4.2.1 item 5: "a base64-encoded value that, when decoded, is 16 bytes".
    let key = match key {
        Some(k) if key_count == 1 => k,
        _ => return Err(HandshakeError::BadKey),
    };
    let mut decoded = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
        Ok(16) => {}
        _ => return Err(HandshakeError::BadKey),
    }
    let accept = accept_key(key);
    let (target, count) = (req.path.unwrap_or("/"), req.headers.len());
    headers.truncate(count);
    Ok(Some(Accepted {
        head_len,
        accept,
        target,
        headers,
    }))
}

/// The HTTP response refusing a handshake: status line, a one-line plain
/// text body with the reason, and `Connection: close`. A 426 also names the
/// version the server speaks (4.4).
pub fn refusal(err: HandshakeError) -> Vec<u8> {
    let extra = if err.status() == 426 {
        vec![("Sec-WebSocket-Version".to_owned(), "13".to_owned())]
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(200);
    write_refusal(
        err.status(),
        &extra,
        format!("{}\n", err.reason()).as_bytes(),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(max_head: usize) -> HandshakeLimits {
        HandshakeLimits {
            max_head,
            ..HandshakeLimits::default()
        }
    }

    const RFC_REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_example_key() {
        // 1.3: the accept value for "dGhlIHNhbXBsZSBub25jZQ==".
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accepts_rfc_request_and_keeps_trailing_bytes() {
        let mut buf = RFC_REQ.to_vec();
        buf.extend_from_slice(b"\x81\x80abcd");
        let a = parse_request(&buf, lim(8192)).unwrap().unwrap();
        assert_eq!(a.head_len, RFC_REQ.len());
        let resp = a.response();
        assert_eq!(
            resp,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        // The subprotocol the client offered is not echoed.
        assert!(!String::from_utf8_lossy(&resp).contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn incomplete_needs_more() {
        for n in 0..RFC_REQ.len() {
            assert_eq!(
                parse_request(&RFC_REQ[..n], lim(8192)),
                Ok(None),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn token_lists_any_case() {
        let req = b"GET / HTTP/1.1\r\nhost: x\r\nUPGRADE: foo, WebSocket\r\nconnection: keep-alive, UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
        assert!(parse_request(req, lim(8192)).unwrap().is_some());
    }

    fn with(replace: &str, by: &str) -> Vec<u8> {
        String::from_utf8(RFC_REQ.to_vec())
            .unwrap()
            .replace(replace, by)
            .into_bytes()
    }

    #[test]
    fn refusals() {
        use HandshakeError::*;
        let cases: Vec<(Vec<u8>, HandshakeError)> = vec![
            (with("GET", "POST"), NotGet),
            (with("HTTP/1.1", "HTTP/1.0"), BadHttpVersion),
            (with("Host: server.example.com\r\n", ""), MissingHost),
            (with("Upgrade: websocket", "Upgrade: h2c"), MissingUpgrade),
            (
                with("Connection: Upgrade", "Connection: keep-alive"),
                MissingConnectionUpgrade,
            ),
            (with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="), BadKey),
            (
                with("dGhlIHNhbXBsZSBub25jZQ==", "!!notbase64!!!!!!!!!!!!"),
                BadKey,
            ),
            (
                with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                BadKey,
            ),
            (with("Sec-WebSocket-Version: 13\r\n", ""), MissingVersion),
            (with("Version: 13", "Version: 8"), UnsupportedVersion),
            (b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec(), Malformed),
        ];
        for (req, want) in cases {
            assert_eq!(
                parse_request(&req, lim(8192)),
                Err(want),
                "{}",
                String::from_utf8_lossy(&req)
            );
        }
        let twice = with(
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13",
        );
        assert_eq!(parse_request(&twice, lim(8192)), Err(BadKey));
    }

    #[test]
    fn head_limit() {
        assert_eq!(
            parse_request(RFC_REQ, lim(64)),
            Err(HandshakeError::HeadTooLarge)
        );
        // An endless header line is refused once the limit is reached.
        let mut endless = b"GET / HTTP/1.1\r\nX: ".to_vec();
        endless.resize(100, b'a');
        assert_eq!(
            parse_request(&endless, lim(100)),
            Err(HandshakeError::HeadTooLarge)
        );
        assert_eq!(parse_request(&endless, lim(101)), Ok(None));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(
                &many,
                HandshakeLimits {
                    max_head: 1 << 20,
                    max_headers: 64
                }
            ),
            Err(HandshakeError::TooManyHeaders)
        );
        // With one more allowed, the 65 lines parse and the missing Host is
        // what fails.
        let limits = HandshakeLimits {
            max_head: 1 << 20,
            max_headers: 65,
        };
        assert_eq!(
            parse_request(&many, limits),
            Err(HandshakeError::MissingHost)
        );
    }

    #[test]
    fn refusal_bytes() {
        let r = String::from_utf8(refusal(HandshakeError::UnsupportedVersion)).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(r.ends_with("\r\n\r\nunsupported Sec-WebSocket-Version (13 required)\n"));
        let r = String::from_utf8(refusal(HandshakeError::HeadTooLarge)).unwrap();
        assert!(r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }
}
