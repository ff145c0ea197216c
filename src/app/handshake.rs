//! The opening handshake on a worker: the request head (in one read or
//! several, within the head limits and the handshake timeout), routing it,
//! the route's upgrade hook, and refusals (an HTTP error, then a linger
//! so the peer can read it before the connection is cut).

use std::time::Duration;

use super::stats::WorkerStats;
use super::upgrade::Reject;
use super::{ctx::*, worker::*};
use crate::log;
use crate::proto::deflate::Agreed;
use crate::proto::handshake::{is_header_safe, parse_request, refusal, write_refusal};
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
    log!(
        Error,
        "{}: upgrade refused with 500: {why}",
        io.peer_name(id)
    );
    io.send_with(id, |out| {
        write_refusal(500, &[], b"internal server error\n", out)
    });
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
        log!(
            Error,
            "{}: upgrade rejected with status {}, which is not an error; sending 500",
            io.peer_name(id),
            r.status
        );
        return refuse_500(stats, io, id, "bad reject status");
    }
    if let Some((k, v)) = r.headers.iter().find(|(k, v)| !is_header_safe(k, v)) {
        let why = format!("unsafe response header {k:?}: {v:?}");
        return refuse_500(stats, io, id, &why);
    }
    log!(
        Info,
        "{}: upgrade rejected with {}",
        io.peer_name(id),
        r.status
    );
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
        let limits = self.ctx.shared.cfg.handshake_limits();
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
        let step = match parse_request(input.as_slice(), limits) {
            Ok(None) => None,
            Err(e) => {
                log!(Info, "{}: refused handshake: {e}", io.peer_name(id));
                return self.refuse(io, id, e.status(), &refusal(e));
            }
            Ok(Some(head)) => {
                let Some(r) = self.ctx.shared.route_for(head.path()) else {
                    log!(
                        Info,
                        "{}: no route for {:?}; 404",
                        io.peer_name(id),
                        head.path()
                    );
                    let mut out = Vec::new();
                    write_refusal(404, &[], b"no such path\n", &mut out);
                    return self.refuse(io, id, 404, &out);
                };
                let outcome = self.routes[r as usize].upgrade(io, &mut self.ctx, id, &head);
                Some((r, head.head_len, outcome))
            }
        };
        let Some((r, head_len, outcome)) = step else {
            // Incomplete: keep what came, with room for the rest.
            let mut acc = match input {
                InputBuf::Heap(v) => v,
                other => other.as_slice().to_vec(),
            };
            acc.reserve(limits.max_head.saturating_sub(acc.len()));
            *self.ctx.slot(id) = Slot::Handshake(Some(Box::new(acc)));
            return;
        };
        match outcome {
            Outcome::Opened(i) => {
                // The bytes after the head are the first frames.
                if input.as_slice().len() > head_len && io.is_open(id) {
                    self.routes[r as usize].data(io, &mut self.ctx, id, i, input, head_len);
                }
            }
            Outcome::Refused => linger(io, &mut self.ctx, id),
            Outcome::Deferred(mut p) => {
                p.rest = input.as_slice()[head_len..].to_vec();
                *self.ctx.slot(id) = Slot::Deferred(p);
            }
        }
    }
}
