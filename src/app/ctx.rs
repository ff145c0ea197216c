//! The part of a worker every route's code may use ([`Ctx`]): the socket
//! slots, the topic tables and the local fan-out of a publish, the
//! compressors, the counts.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::stats::WorkerStats;
use super::{compressed::*, conn::*, handshake::*, route::*};
use super::{BackpressurePolicy, Shared};
use crate::proto::compress::Compressor;
use crate::proto::frame::{encode_frame, OpCode};
use crate::runtime::io::{Io, SockId};
use crate::runtime::outbox::Outbox;

/// A connection's state as the worker sees it, by socket slot.
pub(super) enum Slot {
    Empty,
    /// Waiting for the request head; the part received so far when it came
    /// in pieces.
    #[expect(clippy::box_collection, reason = "8 bytes per idle slot, not 24")]
    Handshake(Option<Box<Vec<u8>>>),
    /// The upgrade hook deferred its decision.
    Deferred(Box<Pending>),
    /// A plain HTTP request whose body is arriving or whose answer is
    /// deferred.
    Http(Box<HttpConn>),
    /// A WebSocket, at `conn` in route `route`'s slab; `z`: its
    /// permessage-deflate (0, [`DEFLATE_SHARED`] or [`DEFLATE_OWN`]), for
    /// publishes.
    Open {
        route: u32,
        conn: u32,
        z: u8,
    },
    /// Our last bytes are queued (an HTTP error, or a Close after framing
    /// was lost); what the peer still sends is dropped until it closes or
    /// the linger time is up.
    Lingering,
}

/// The part of a worker that every route's code may use.
pub(crate) struct Ctx {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    pub(super) slots: Vec<Slot>,
    pub(crate) topics: super::topics::Topics,
    /// Subscribers a publish found past their limit under the `Close`
    /// policy, closed once the publish is done.
    pub(super) victims: Vec<SockId>,
    /// Shared permessage-deflate: this thread's compressor (no context
    /// takeover, a 15-bit window), made when first needed.
    pub(super) compressor: Option<Box<Compressor>>,
    /// Dedicated-mode deflate: each connection's own compressor, by socket
    /// slot (only connections that agreed to it have an entry).
    pub(crate) own_z: HashMap<u32, OwnZ>,
    /// Where a message is compressed before it is framed.
    pub(crate) zbuf: Vec<u8>,
    /// This thread's counts, copied to [`Shared`] once per turn.
    pub(crate) counts: Counts,
}

/// One worker's counts of what its connections did (see
/// [`super::ServerStats`]): plain integers on the hot path, published with
/// one store each per loop turn.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) accepted: u64,
    pub(crate) messages: u64,
    pub(crate) frames: u64,
    /// Loop turns.
    pub(crate) turns: u64,
}

impl Ctx {
    /// This worker's shared counts (see [`super::stats`]).
    #[inline]
    pub(crate) fn stats(&self) -> &WorkerStats {
        &self.shared.stats[self.index]
    }

    pub(super) fn slot(&mut self, id: SockId) -> &mut Slot {
        let i = id.index();
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || Slot::Empty);
        }
        &mut self.slots[i]
    }

    /// Frames `bytes` compressed (RSV1 set, RFC 7692 6) onto `out`, with
    /// the connection's own compressor ([`DEFLATE_OWN`] in `flags`; in
    /// [`Ctx::own_z`] under its `slot`) or this thread's.
    #[cold]
    pub(crate) fn queue_compressed(
        &mut self,
        flags: u8,
        slot: u32,
        cfg: &DeflateCfg,
        opcode: OpCode,
        bytes: &[u8],
        out: &mut Outbox<'_>,
    ) {
        let c = if flags & DEFLATE_OWN != 0 {
            match self.own_z.get_mut(&slot) {
                Some(o) => o.compressor(),
                None => {
                    // Closing (its compressor is gone): nothing more goes
                    // out, but stay valid and send it plain.
                    out.put_with(|h| encode_frame(opcode, None, bytes, h));
                    return;
                }
            }
        } else {
            shared_compressor(&mut self.compressor, cfg)
        };
        let stats = &self.shared.stats[self.index];
        frame_compressed(c, &mut self.zbuf, opcode, bytes, out, stats);
    }

    /// Queues `frame` to every subscriber of `topic` here but `skip`.
    pub(crate) fn publish_local(
        &mut self,
        io: &mut Io,
        topic: &str,
        frame: &Bytes,
        shared_z: Option<&SharedZ>,
        skip: Option<SockId>,
    ) {
        // Shared-mode deflate: the frame compressed at the first subscriber
        // that takes it, then shared by all of them. Subscribers with their
        // own compressor (dedicated mode: context takeover, or a smaller
        // window) have it compressed for each of them, in their stream's
        // order.
        let mut zframe: Option<Option<Bytes>> = None;
        let mut payload: Option<Option<(OpCode, &[u8])>> = None;
        for &sub in self.topics.subscribers(topic) {
            if Some(sub) == skip {
                continue;
            }
            let Some(&Slot::Open { route, z, .. }) = self.slots.get(sub.index()) else {
                continue;
            };
            let cfg = &self.shared.routes[route as usize].cfg;
            // One look-up for the limit and the queue.
            let Some(mut out) = io.outbox(sub) else {
                continue;
            };
            let stats = &self.shared.stats[self.index];
            if out.queued() > cfg.max_backpressure {
                stats.dropped();
                if cfg.policy == BackpressurePolicy::Close {
                    self.victims.push(sub);
                }
                continue;
            }
            self.counts.frames += 1;
            if z == DEFLATE_SHARED {
                // (Subscribers of routes with different deflate settings:
                // the first one's decide, as any no-takeover 15-bit stream
                // is valid for every shared-mode peer.)
                let zf = zframe.get_or_insert_with(|| {
                    let mut compress = || {
                        compress_frame(
                            &mut self.compressor,
                            &mut self.zbuf,
                            &cfg.deflate,
                            frame,
                            stats,
                        )
                    };
                    match shared_z {
                        Some(z) => z.get_or_init(compress).clone(),
                        None => compress(),
                    }
                });
                out.put_shared(zf.as_ref().unwrap_or(frame));
                continue;
            }
            if z == DEFLATE_OWN {
                let p = payload.get_or_insert_with(|| super::socket::data_payload(frame, 0));
                if let (Some((opcode, data)), Some(o)) = (p, self.own_z.get_mut(&sub.slot)) {
                    if data.len() >= cfg.deflate.min_size {
                        let c = o.compressor();
                        frame_compressed(c, &mut self.zbuf, *opcode, data, &mut out, stats);
                        continue;
                    }
                }
            }
            out.put_shared(frame);
        }
    }
}
