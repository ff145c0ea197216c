//! HTTP/1.1 responses on a client connection, sans-IO: bytes in, whole
//! responses out, in order (pipelined requests are answered in order, RFC
//! 9112 9.3.2). Bodies are framed by Content-Length or chunked, read by
//! ringws's own body decoder; interim 1xx responses are skipped.

use ringws::proto::http::{BodyDecoder, BodyKind, HttpLimits};

/// Longest response head read; a server sending more is broken.
const MAX_HEAD: usize = 64 << 10;

/// One response, once whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Response {
    pub status: u16,
    /// The server closes the connection after it.
    pub close: bool,
    /// The start of its body (for error messages).
    pub body: Vec<u8>,
}

/// A response head: status, how the body is framed, whether the
/// connection closes after it, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    body: BodyKind,
    close: bool,
    len: usize,
}

/// Parses a response head at the start of `buf` (RFC 9112 4 and 6.3):
/// `Ok(None)` until it is whole.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err("a response head over 64 KiB".into());
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "a response head not in UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let bad = || format!("a bad status line {status_line:?}");
    let (version, rest) = status_line.split_once(' ').ok_or_else(bad)?;
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(bad()),
    };
    let code = rest
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
    let status: u16 = code.and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let (mut length, mut chunked, mut close, mut keep_alive) = (None, false, http10, false);
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a bad header line {line:?}"))?;
        let (name, value) = (name.trim(), value.trim());
        let has = |token: &str| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| format!("a bad Content-Length {value:?}"))?;
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // "chunked" last: the only coding a client must read (7.1).
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            close |= has("close");
            keep_alive |= has("keep-alive");
        }
    }
    if http10 && keep_alive {
        close = false;
    }
    // 6.3: no body after 1xx, 204 and 304; chunked wins over a length.
    let body = if status < 200 || status == 204 || status == 304 {
        BodyKind::None
    } else if chunked {
        BodyKind::Chunked
    } else {
        match length {
            Some(0) => BodyKind::None,
            Some(n) => BodyKind::Length(n),
            None => return Err(format!("a {status} response without a length")),
        }
    };
    Ok(Some(Head {
        status,
        body,
        close,
        len: end + 4,
    }))
}

/// Cuts responses out of the bytes read from one connection, in order.
pub(super) struct ResponseReader {
    buf: Vec<u8>,
    /// The head and body decoder of the response being read.
    current: Option<(Head, BodyDecoder)>,
    body: Vec<u8>,
}

impl ResponseReader {
    pub fn new() -> ResponseReader {
        ResponseReader {
            buf: Vec::new(),
            current: None,
            body: Vec::new(),
        }
    }

    /// Bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole response, if there is one; interim (1xx) responses
    /// are skipped. After an error the connection is beyond use.
    pub fn next(&mut self) -> Result<Option<Response>, String> {
        loop {
            if self.current.is_none() {
                let Some(head) = parse_head(&self.buf)? else {
                    return Ok(None);
                };
                self.buf.drain(..head.len);
                let limits = HttpLimits {
                    max_body: 16 << 20,
                    ..HttpLimits::default()
                };
                self.body.clear();
                self.current = Some((head, BodyDecoder::new(head.body, &limits)));
            }
            let (head, decoder) = self.current.as_mut().expect("set above");
            let n = decoder
                .decode(&self.buf, &mut self.body)
                .map_err(|e| format!("a bad response body: {e}"))?;
            self.buf.drain(..n);
            if !decoder.is_done() {
                return Ok(None);
            }
            let head = *head;
            self.current = None;
            if head.status < 200 {
                continue;
            }
            self.body.truncate(200);
            return Ok(Some(Response {
                status: head.status,
                close: head.close,
                body: std::mem::take(&mut self.body),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(r: &mut ResponseReader) -> Vec<(u16, bool, String)> {
        let mut v = Vec::new();
        while let Some(x) = r.next().unwrap() {
            v.push((x.status, x.close, String::from_utf8(x.body).unwrap()));
        }
        v
    }

    #[test]
    fn pipelined_responses_byte_by_byte() {
        let wire: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n4\r\n sig\r\n0\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 200 OK\r\ncontent-length: 0\r\nConnection: close\r\n\r\n";
        let want = vec![
            (200, false, "{}".to_string()),
            (401, false, "bad sig".to_string()),
            (204, false, String::new()),
            (200, true, String::new()),
        ];
        let mut whole = ResponseReader::new();
        whole.feed(wire);
        assert_eq!(all(&mut whole), want);
        let mut bytes = ResponseReader::new();
        let mut got = Vec::new();
        for b in wire {
            bytes.feed(std::slice::from_ref(b));
            got.extend(all(&mut bytes));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn bad_responses_are_errors() {
        for wire in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            let mut r = ResponseReader::new();
            r.feed(wire);
            assert!(r.next().is_err(), "{}", String::from_utf8_lossy(wire));
        }
        let mut r = ResponseReader::new();
        r.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(r.next().unwrap().unwrap().close);
        r.feed(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert!(!r.next().unwrap().unwrap().close);
    }
}
