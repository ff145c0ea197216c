//! Each request head on a worker (in one read or several, within the head
//! limits and the handshake timeout): routing it to a WebSocket route's
//! upgrade hook or to an HTTP route; an HTTP request's body, its handler's
//! response (now or deferred) and keep-alive; and refusals (an HTTP error,
//! then a linger so the peer can read it before the connection is cut).
//!
//! A connection starts in [`Slot::Handshake`], waiting for a head. A
//! WebSocket upgrade leaves it for good; an HTTP request goes through
//! [`Slot::Http`] while its body arrives or its answer is deferred, and
//! back to [`Slot::Handshake`] once answered (keep-alive), with the
//! handshake timeout started again. Pipelined requests are answered in
//! order: the bytes after one request are the next one's head.

use std::sync::Arc;
use std::time::Duration;

use super::conn::guard;
use super::http::{find, Found, HttpFn, HttpReply, HttpRequest, HttpResponder, HttpResponse};
use super::stats::WorkerStats;
use super::upgrade::Reject;
use super::{ctx::*, worker::*, ServerHandle};
use crate::log::conn_event;
use crate::proto::deflate::Agreed;
use crate::proto::error::{HandshakeError, HttpError};
use crate::proto::handshake::{is_header_safe, parse_request, refusal, write_refusal};
use crate::proto::http::{
    parse_head, write_error, write_response, BodyDecoder, RequestHead, ResponseOpts, CONTINUE,
};
use crate::runtime::buf::InputBuf;
use crate::runtime::io::{Io, SockId};

/// How long a refused or failed connection may keep sending after our
/// last bytes before it is cut: time for the peer to read them, without a
/// reset destroying them (closing with unread input sends one).
pub(super) const LINGER: Duration = Duration::from_secs(1);

/// A deferred upgrade, waiting for its decision.
pub(crate) struct Pending {
    pub(super) route: u32,
    pub(super) accept: [u8; 28],
    pub(super) protocols: Vec<String>,
    /// Bytes that came after the request head.
    pub(super) rest: Vec<u8>,
    /// permessage-deflate, as negotiated when the request came.
    pub(super) deflate: Option<Agreed>,
}

/// A plain HTTP request in progress ([`Slot::Http`]).
pub(crate) enum HttpConn {
    /// Its body is arriving.
    Body {
        /// The request head, to parse again once the body is whole.
        head: Vec<u8>,
        handler: Arc<HttpFn>,
        decoder: BodyDecoder,
        /// The body so far, decoded: at most `max_http_body`.
        body: Vec<u8>,
    },
    /// Its handler deferred the answer, which frames with `opts`.
    Waiting {
        opts: ResponseOpts,
        /// Bytes that came after the request (the next ones), within the
        /// head limit.
        rest: Vec<u8>,
    },
}

/// What came of one request head.
enum Step {
    /// Incomplete: keep the bytes and wait for more.
    Incomplete,
    /// An HTTP response is queued and the connection kept: the next head
    /// starts this many bytes on.
    Next(usize),
    /// The slot has moved on (refused, a body or an answer awaited); the
    /// bytes it needs are kept.
    Stop,
    /// A WebSocket route's hook decided on the upgrade; the head was this
    /// long.
    Upgraded(u32, usize, Outcome),
}

/// What an upgrade came to.
pub(crate) enum Outcome {
    /// Open, at this index of the route's slab: feed it the rest.
    Opened(u32),
    /// Refused: the response is queued.
    Refused,
    Deferred(Box<Pending>),
}

/// Refuses an upgrade with 500 after a handler's mistake, saying why in
/// the log.
pub(super) fn refuse_500(stats: &WorkerStats, io: &mut Io, id: SockId, why: &str) {
    stats.rejected(500);
    conn_event!(ERROR, io, id, "upgrade refused with 500: {why}");
    io.send_with(id, |out| {
        write_refusal(500, &[], b"internal server error\n", out)
    });
}

/// The peer's input ended: `clean`, an end of input (it may have only
/// shut its sending side, as `nc -N` does, and still read), so what this
/// turn queued for it (the answers to its last requests, an echo, an
/// error response) is sent before the connection closes; the write
/// timeout bounds a peer that reads no more. Else a read error: close now.
pub(super) fn close_at_eof(io: &mut Io, id: SockId, clean: bool) {
    if clean {
        io.close_after_flush(id);
    } else {
        io.close(id);
    }
}

/// Sends nothing more and cuts the connection after [`LINGER`].
pub(super) fn linger(io: &mut Io, ctx: &mut Ctx, id: SockId) {
    *ctx.slot(id) = Slot::Lingering;
    io.shutdown_after_flush(id);
    let at = io.now() + LINGER;
    io.set_deadline(id, Some(at));
}

/// Queues the response of a rejected upgrade (a status outside 400-599,
/// or an unsafe header, becomes a 500, logged).
pub(super) fn reject(stats: &WorkerStats, io: &mut Io, id: SockId, r: Reject) {
    if !(400..=599).contains(&r.status) {
        conn_event!(
            ERROR,
            io,
            id,
            "upgrade rejected with status {}, which is not an error; sending 500",
            r.status
        );
        return refuse_500(stats, io, id, "bad reject status");
    }
    if let Some((k, v)) = r.headers.iter().find(|(k, v)| !is_header_safe(k, v)) {
        let why = format!("unsafe response header {k:?}: {v:?}");
        return refuse_500(stats, io, id, &why);
    }
    conn_event!(INFO, io, id, "upgrade rejected with {}", r.status);
    stats.rejected(r.status);
    io.send_with(id, |out| write_refusal(r.status, &r.headers, &r.body, out));
}

impl Worker {
    /// Answers with `bytes`, a response of `status`, and lingers.
    pub(super) fn refuse(&mut self, io: &mut Io, id: SockId, status: u16, bytes: &[u8]) {
        self.ctx.stats().rejected(status);
        io.send(id, bytes);
        linger(io, &mut self.ctx, id);
    }

    pub(super) fn handshake(&mut self, io: &mut Io, id: SockId, input: InputBuf) {
        let Slot::Handshake(partial) = self.ctx.slot(id) else {
            return;
        };
        // The head so far: this read, after the part received before it.
        let input = match partial.take() {
            None => input,
            Some(mut acc) => {
                acc.extend_from_slice(input.as_slice());
                InputBuf::Heap(*acc)
            }
        };
        self.heads(io, id, input, 0);
    }

    /// Takes the request heads in `input[start..]`, one after another while
    /// HTTP requests are answered at once; the slot is
    /// [`Slot::Handshake`].
    fn heads(&mut self, io: &mut Io, id: SockId, input: InputBuf, mut start: usize) {
        let limits = self.ctx.shared.cfg.handshake_limits();
        loop {
            let bytes = &input.as_slice()[start..];
            if bytes.is_empty() {
                return;
            }
            // The upgrade's own checks first, so that a WebSocket's head is
            // parsed once; whatever they refuse may be plain HTTP.
            let step = match parse_request(bytes, limits) {
                Ok(None) => Step::Incomplete,
                Ok(Some(head)) => match self.ctx.shared.route_for(head.path()) {
                    Some(r) => {
                        let outcome = self.routes[r as usize].upgrade(io, &mut self.ctx, id, &head);
                        Step::Upgraded(r, head.head_len, outcome)
                    }
                    // No WebSocket route: the HTTP routes may take it (RFC
                    // 9110 7.8 lets a server ignore Upgrade).
                    None => self.http(io, id, bytes, None),
                },
                Err(e) => self.http(io, id, bytes, Some(e)),
            };
            match step {
                Step::Next(n) => start += n,
                Step::Stop => return,
                Step::Incomplete => {
                    // Keep what came, with room for the rest.
                    let max = limits.max_head;
                    let mut acc = match input {
                        InputBuf::Heap(mut v) if start == 0 || v.len() - start <= max => {
                            v.drain(..start);
                            v
                        }
                        other => other.as_slice()[start..].to_vec(),
                    };
                    acc.reserve(max.saturating_sub(acc.len()));
                    *self.ctx.slot(id) = Slot::Handshake(Some(Box::new(acc)));
                    return;
                }
                Step::Upgraded(r, head_len, outcome) => {
                    let end = start + head_len;
                    match outcome {
                        Outcome::Opened(i) => {
                            // The bytes after the head are the first frames.
                            if input.as_slice().len() > end && io.is_open(id) {
                                self.routes[r as usize].data(io, &mut self.ctx, id, i, input, end);
                            }
                        }
                        Outcome::Refused => linger(io, &mut self.ctx, id),
                        Outcome::Deferred(mut p) => {
                            p.rest = input.as_slice()[end..].to_vec();
                            *self.ctx.slot(id) = Slot::Deferred(p);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// A head that is not an upgrade to a WebSocket route (`ws_err`: why
    /// the upgrade checks refused it): routes it to an HTTP route and
    /// reads its body, or refuses it.
    fn http(
        &mut self,
        io: &mut Io,
        id: SockId,
        bytes: &[u8],
        ws_err: Option<HandshakeError>,
    ) -> Step {
        let shared = self.ctx.shared.clone();
        let limits = shared.cfg.http_limits();
        let head = match parse_head(bytes, &limits) {
            Ok(None) => return Step::Incomplete,
            Err(e) => {
                self.http_error(io, id, &e, &[]);
                return Step::Stop;
            }
            Ok(Some(h)) => h,
        };
        let found = find(&shared.http, head.method, head.path);
        if let Some(e) = ws_err {
            // A failed upgrade to a WebSocket route, or a request for a
            // path only a WebSocket route takes: refused as the upgrade
            // checks say.
            let upgrade = head.is_websocket_upgrade();
            if (upgrade || matches!(found, Found::NoPath)) && shared.route_for(head.path).is_some()
            {
                conn_event!(INFO, io, id, "refused handshake: {e}");
                self.refuse(io, id, e.status(), &refusal(e));
                return Step::Stop;
            }
        }
        let handler = match found {
            Found::Route(r) => r.handler.clone(),
            Found::NoPath => {
                let why = format!("no route for {:?}", head.path);
                self.http_refuse(io, id, 404, &[], b"no such path\n", &why);
                return Step::Stop;
            }
            Found::WrongMethod(allow) => {
                let why = format!("no {} route for {:?}", head.method, head.path);
                let allow = [("Allow".to_owned(), allow)];
                self.http_refuse(io, id, 405, &allow, b"method not allowed\n", &why);
                return Step::Stop;
            }
        };
        let mut decoder = BodyDecoder::new(head.body, &limits);
        let mut body = Vec::new();
        let n = match decoder.decode(&bytes[head.head_len..], &mut body) {
            Ok(n) => n,
            Err(e) => {
                self.http_error(io, id, &e, &[]);
                return Step::Stop;
            }
        };
        if !decoder.is_done() {
            // RFC 9110 10.1.1: "A server that receives a 100-continue
            // expectation in an HTTP/1.1 request [...] MUST send either an
            // immediate response with a final status code [...] or an
            // immediate 100 (Continue) response".
            if head.expects_continue() {
                io.send(id, CONTINUE);
            }
            let head = bytes[..head.head_len].to_vec();
            let c = HttpConn::Body {
                head,
                handler,
                decoder,
                body,
            };
            *self.ctx.slot(id) = Slot::Http(Box::new(c));
            return Step::Stop;
        }
        let used = head.head_len + n;
        match self.serve(io, id, &*handler, &head, &body, &bytes[used..]) {
            true => Step::Next(used),
            false => Step::Stop,
        }
    }

    /// Runs the handler on a whole request (`rest`: the bytes after it) and
    /// queues its answer, or awaits it. True if the connection is kept for
    /// the request in `rest`; the slot is then [`Slot::Handshake`].
    fn serve(
        &mut self,
        io: &mut Io,
        id: SockId,
        handler: &HttpFn,
        head: &RequestHead<'_>,
        body: &[u8],
        rest: &[u8],
    ) -> bool {
        let server = ServerHandle {
            shared: self.ctx.shared.clone(),
        };
        let req = HttpRequest {
            head,
            body,
            peer: io.peer(id),
            server: &server,
        };
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&req)));
        let opts = ResponseOpts::for_request(head);
        match reply {
            Err(_) => {
                self.http_500(io, id, "the handler panicked");
                false
            }
            Ok(HttpReply::Now(r)) => self.respond(io, id, r, opts),
            Ok(HttpReply::Defer(f)) => {
                let max = self.ctx.shared.cfg.max_handshake_size;
                if rest.len() > max {
                    conn_event!(INFO, io, id, "too much pipelined behind a deferred request");
                    io.close(id);
                    *self.ctx.slot(id) = Slot::Lingering;
                    return false;
                }
                let c = HttpConn::Waiting {
                    opts,
                    rest: rest.to_vec(),
                };
                *self.ctx.slot(id) = Slot::Http(Box::new(c));
                let responder = HttpResponder {
                    shared: self.ctx.shared.clone(),
                    worker: self.ctx.index,
                    id,
                    done: false,
                };
                // A panic drops the responder unanswered, which answers 500.
                if !guard(|| f(responder)) {
                    conn_event!(
                        ERROR,
                        io,
                        id,
                        "the handler panicked deferring an HTTP response"
                    );
                }
                false
            }
        }
    }

    /// Queues `r`, framed with `opts`. True if the connection is kept: the
    /// slot is [`Slot::Handshake`] again, under a new handshake timeout.
    fn respond(&mut self, io: &mut Io, id: SockId, r: HttpResponse, opts: ResponseOpts) -> bool {
        if !(200..=999).contains(&r.status) {
            let why = format!("response status {} is not a final status", r.status);
            self.http_500(io, id, &why);
            return false;
        }
        let mut res = Ok(());
        io.send_with(id, |out| {
            res = write_response(r.status, &r.headers, &r.body, opts, out);
        });
        if let Err(e) = res {
            let (k, v) = &r.headers[e.index];
            self.http_500(io, id, &format!("unsafe response header {k:?}: {v:?}"));
            return false;
        }
        if !opts.keep_alive {
            linger(io, &mut self.ctx, id);
            return false;
        }
        *self.ctx.slot(id) = Slot::Handshake(None);
        let at = io.now() + self.ctx.shared.cfg.handshake_timeout;
        io.set_deadline(id, Some(at));
        true
    }

    /// Bytes for a connection in [`Slot::Http`]: more of a body, or bytes
    /// sent while an answer is awaited.
    pub(super) fn http_data(&mut self, io: &mut Io, id: SockId, input: InputBuf) {
        let max = self.ctx.shared.cfg.max_handshake_size;
        let Slot::Http(c) = self.ctx.slot(id) else {
            return;
        };
        let n = match &mut **c {
            HttpConn::Waiting { rest, .. } => {
                // The next requests, kept within the head's limit until
                // this one is answered.
                if rest.len() + input.as_slice().len() > max {
                    conn_event!(INFO, io, id, "too much sent before the deferred response");
                    io.close(id);
                } else {
                    rest.extend_from_slice(input.as_slice());
                }
                return;
            }
            HttpConn::Body { decoder, body, .. } => match decoder.decode(input.as_slice(), body) {
                Err(e) => return self.http_error(io, id, &e, &[]),
                Ok(_) if !decoder.is_done() => return,
                Ok(n) => n,
            },
        };
        let Slot::Http(c) = std::mem::replace(self.ctx.slot(id), Slot::Empty) else {
            unreachable!()
        };
        let HttpConn::Body {
            head,
            handler,
            body,
            ..
        } = *c
        else {
            unreachable!()
        };
        let limits = self.ctx.shared.cfg.http_limits();
        let Ok(Some(h)) = parse_head(&head, &limits) else {
            return self.http_500(io, id, "a request head failed its second parse");
        };
        if self.serve(io, id, &*handler, &h, &body, &input.as_slice()[n..]) {
            self.heads(io, id, input, n);
        }
    }

    /// A deferred HTTP answer arrived (`None`: its responder was dropped).
    pub(super) fn http_respond(&mut self, io: &mut Io, id: SockId, r: Option<Box<HttpResponse>>) {
        let slot = self.ctx.slot(id);
        if !matches!(slot, Slot::Http(c) if matches!(**c, HttpConn::Waiting { .. })) {
            return;
        }
        let Slot::Http(c) = std::mem::replace(slot, Slot::Empty) else {
            unreachable!()
        };
        let HttpConn::Waiting { opts, rest } = *c else {
            unreachable!()
        };
        let kept = match r {
            Some(r) => self.respond(io, id, *r, opts),
            None => {
                self.http_500(io, id, "the deferred response was dropped unanswered");
                false
            }
        };
        if kept && !rest.is_empty() {
            self.heads(io, id, InputBuf::Heap(rest), 0);
        }
    }

    /// The handshake timeout passed in [`Slot::Http`].
    pub(super) fn http_timeout(&mut self, io: &mut Io, id: SockId) {
        let why = match self.ctx.slot(id) {
            Slot::Http(c) if matches!(**c, HttpConn::Body { .. }) => {
                "the request body did not arrive within the handshake timeout"
            }
            _ => "the deferred HTTP response was not given within the handshake timeout",
        };
        conn_event!(INFO, io, id, "{why}");
        io.close(id);
    }

    /// Refuses a request the codec refused, and closes.
    fn http_error(&mut self, io: &mut Io, id: SockId, e: &HttpError, headers: &[(String, String)]) {
        conn_event!(INFO, io, id, "refused HTTP request: {e}");
        self.ctx.stats().rejected(e.status());
        io.send_with(id, |out| {
            let _ = write_error(e, headers, out);
        });
        linger(io, &mut self.ctx, id);
    }

    /// Refuses a request with `status`, saying `why` in the log, and
    /// closes.
    fn http_refuse(
        &mut self,
        io: &mut Io,
        id: SockId,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        why: &str,
    ) {
        conn_event!(INFO, io, id, "{why}; {status}");
        self.ctx.stats().rejected(status);
        let mut all = vec![("Content-Type".to_owned(), "text/plain".to_owned())];
        all.extend_from_slice(headers);
        io.send_with(id, |out| {
            let _ = write_response(status, &all, body, ResponseOpts::default(), out);
        });
        linger(io, &mut self.ctx, id);
    }

    /// Answers 500 after a handler's mistake, saying why in the log, and
    /// closes.
    fn http_500(&mut self, io: &mut Io, id: SockId, why: &str) {
        conn_event!(ERROR, io, id, "HTTP request answered 500: {why}");
        self.ctx.stats().rejected(500);
        let plain = [("Content-Type".to_owned(), "text/plain".to_owned())];
        io.send_with(id, |out| {
            let body = b"internal server error\n";
            let _ = write_response(500, &plain, body, ResponseOpts::default(), out);
        });
        linger(io, &mut self.ctx, id);
    }
}
