//! Plain HTTP routes beside the WebSocket ones: what a handler sees
//! ([`HttpRequest`]), what it answers ([`HttpReply`], [`HttpResponse`]),
//! and, for answers made on another thread, [`HttpResponder`]. Also the
//! HTTP route table and its look-up.
//!
//! The connection side (bodies, keep-alive, refusals) is in `handshake.rs`,
//! which reads every request head first.

use std::net::SocketAddr;
use std::sync::Arc;

use super::worker::Command;
use super::{path_score, ServerHandle, Shared};
use crate::proto::http::RequestHead;
use crate::runtime::io::SockId;

/// A plain HTTP request, as an HTTP route's handler sees it: borrowed from
/// the connection's buffers, so copy out what a deferred answer needs.
pub struct HttpRequest<'a> {
    pub(crate) head: &'a RequestHead<'a>,
    pub(crate) body: &'a [u8],
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) server: &'a ServerHandle,
}

impl<'a> HttpRequest<'a> {
    /// The method, as sent (`GET`, `POST`; `HEAD` also reaches `GET`
    /// routes, and its response body is not sent).
    pub fn method(&self) -> &'a str {
        self.head.method
    }

    /// The path of the request target, without the query (`/health`).
    pub fn path(&self) -> &'a str {
        self.head.path
    }

    /// The query of the request target, after `?` (`full=1&x`).
    pub fn query(&self) -> Option<&'a str> {
        self.head.query
    }

    /// The value of the query parameter `name` (as sent: not
    /// percent-decoded); `""` for a parameter without `=`.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// The value of the first header called `name` (any case), as bytes.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.head.header(name)
    }

    /// [`HttpRequest::header`] as text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header line, in order: name and value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let head: &'a RequestHead<'a> = self.head;
        head.headers.iter().map(|h| (h.name, h.value))
    }

    /// The body, whole (after chunked decoding), at most
    /// [`crate::Config::max_http_body`] bytes; empty if there was none.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The client's address, when known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The server, to publish to its topics or read its stats.
    pub fn server(&self) -> &'a ServerHandle {
        self.server
    }
}

/// An HTTP response: a status, header lines and a body. The framing
/// (Content-Length, Connection) is the server's: such headers given here
/// are dropped. A header name that is not a token, or a value with a
/// control byte, turns the response into a 500 (logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    /// `status` (200 to 999; a 1xx is not a final response and becomes a
    /// 500), no headers, an empty body.
    pub fn new(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `status` with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// `status` with an `application/json` body (already encoded).
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    /// Adds a header line.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }
}

/// An HTTP route handler's answer: a response now, or later from any
/// thread.
pub enum HttpReply {
    /// Send this response.
    Now(HttpResponse),
    /// Answer later: the function is called at once with the
    /// [`HttpResponder`] to answer with. The handshake timeout still runs:
    /// past it the connection is closed and the answer dropped.
    Defer(Box<dyn FnOnce(HttpResponder)>),
}

impl HttpReply {
    /// Defers the answer: `f` gets the [`HttpResponder`] at once and may
    /// send it to another thread or task.
    pub fn defer(f: impl FnOnce(HttpResponder) + 'static) -> HttpReply {
        HttpReply::Defer(Box::new(f))
    }
}

impl From<HttpResponse> for HttpReply {
    fn from(r: HttpResponse) -> Self {
        HttpReply::Now(r)
    }
}

/// The handle of a deferred HTTP answer: `Send`, to answer on any thread or
/// task, once. The response travels to the connection's worker through its
/// mailbox. Dropping it unanswered answers 500. If the handshake timeout
/// passed first, or the client left, the response is dropped.
pub struct HttpResponder {
    pub(crate) shared: Arc<Shared>,
    pub(crate) worker: usize,
    pub(crate) id: SockId,
    pub(crate) done: bool,
}

impl HttpResponder {
    /// Sends `response` as the request's answer.
    pub fn respond(mut self, response: HttpResponse) {
        self.done = true;
        self.send(Some(Box::new(response)));
    }

    fn send(&self, response: Option<Box<HttpResponse>>) {
        let cmd = Command::Respond {
            id: self.id,
            response,
        };
        self.shared.command(self.worker, cmd);
    }
}

impl Drop for HttpResponder {
    fn drop(&mut self) {
        if !self.done {
            // Unanswered: the connection's thread answers 500.
            self.send(None);
        }
    }
}

/// An HTTP route handler, as the threads share it.
pub(crate) type HttpFn = dyn Fn(&HttpRequest<'_>) -> HttpReply + Send + Sync;

/// An HTTP route: a method, a path pattern, a handler.
pub(crate) struct HttpRoute {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) prefix: bool,
    pub(crate) handler: Arc<HttpFn>,
}

/// What the HTTP routes make of a request's method and path.
pub(crate) enum Found<'r> {
    Route(&'r HttpRoute),
    /// Routes take the path, but not with this method: the `Allow` value.
    WrongMethod(String),
    NoPath,
}

/// Does route method `m` take a request with `method`? HEAD is served by
/// GET routes (RFC 9110 9.3.2: "The HEAD method is identical to GET except
/// that the server MUST NOT send content in the response").
fn takes(m: &str, method: &str) -> Option<bool> {
    if m == method {
        Some(true)
    } else if method == "HEAD" && m == "GET" {
        Some(false)
    } else {
        None
    }
}

/// The route for `method` and `path`: among the routes that take both, an
/// exact path beats every prefix and the longest prefix wins (then a route
/// for the method itself beats a GET route serving HEAD).
pub(crate) fn find<'r>(routes: &'r [HttpRoute], method: &str, path: &str) -> Found<'r> {
    let mut best: Option<((usize, bool), &HttpRoute)> = None;
    let mut known = false;
    for r in routes {
        let Some(score) = path_score(&r.path, r.prefix, path) else {
            continue;
        };
        known = true;
        if let Some(own) = takes(&r.method, method) {
            if best.is_none_or(|(b, _)| (score, own) > b) {
                best = Some(((score, own), r));
            }
        }
    }
    match best {
        Some((_, r)) => Found::Route(r),
        None if known => {
            let mut allow: Vec<&str> = Vec::new();
            for r in routes {
                if path_score(&r.path, r.prefix, path).is_some() {
                    let m = r.method.as_str();
                    let extra = (m == "GET").then_some("HEAD");
                    for m in std::iter::once(m).chain(extra) {
                        if !allow.contains(&m) {
                            allow.push(m);
                        }
                    }
                }
            }
            Found::WrongMethod(allow.join(", "))
        }
        None => Found::NoPath,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str, prefix: bool) -> HttpRoute {
        HttpRoute {
            method: method.into(),
            path: path.into(),
            prefix,
            handler: Arc::new(|_| HttpResponse::new(204).into()),
        }
    }

    fn hit(routes: &[HttpRoute], method: &str, path: &str) -> String {
        match find(routes, method, path) {
            Found::Route(r) => {
                format!("{} {}{}", r.method, r.path, if r.prefix { "*" } else { "" })
            }
            Found::WrongMethod(allow) => format!("405 {allow}"),
            Found::NoPath => "404".into(),
        }
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let rs = [
            route("GET", "/", true),
            route("GET", "/api", true),
            route("GET", "/api/health", false),
            route("POST", "/api/items", false),
            route("HEAD", "/api/health", false),
        ];
        assert_eq!(hit(&rs, "GET", "/api/health"), "GET /api/health");
        assert_eq!(hit(&rs, "HEAD", "/api/health"), "HEAD /api/health");
        assert_eq!(hit(&rs, "GET", "/api/x"), "GET /api*");
        assert_eq!(hit(&rs, "HEAD", "/api/x"), "GET /api*");
        assert_eq!(hit(&rs, "GET", "/apix"), "GET /*");
        assert_eq!(hit(&rs, "POST", "/api/items"), "POST /api/items");
        // A GET for the POST-only path falls to the prefix that takes it.
        assert_eq!(hit(&rs, "GET", "/api/items"), "GET /api*");
        assert_eq!(hit(&rs, "DELETE", "/api/items"), "405 GET, HEAD, POST");
    }

    #[test]
    fn unknown_path_and_wrong_method() {
        let rs = [route("POST", "/echo", false), route("PUT", "/echo", false)];
        assert_eq!(hit(&rs, "GET", "/echo"), "405 POST, PUT");
        assert_eq!(hit(&rs, "POST", "/echo/x"), "404");
        assert_eq!(hit(&[], "GET", "/"), "404");
    }
}
