//! Compressed frames (permessage-deflate, RFC 7692): the thread's shared
//! compressor, a connection's own, and framing what they produce.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::route::*;
use super::stats::WorkerStats;
use crate::proto::compress::{Compressor, CompressorConfig};
use crate::proto::frame::{FrameHeader, OpCode};
use crate::runtime::outbox::Outbox;

/// [`DEFLATE_OWN`]: how a connection compresses, and its compressor, made
/// at its first compressed message.
pub(crate) struct OwnZ {
    pub(super) cfg: CompressorConfig,
    pub(super) z: Option<Box<Compressor>>,
}

impl OwnZ {
    pub(super) fn compressor(&mut self) -> &mut Compressor {
        let cfg = self.cfg;
        self.z.get_or_insert_with(|| Box::new(Compressor::new(cfg)))
    }
}

/// Frames `bytes` compressed by `c` onto `out`, `scratch` as the
/// compressor's output, counting both sizes in `stats`.
pub(super) fn frame_compressed(
    c: &mut Compressor,
    scratch: &mut Vec<u8>,
    opcode: OpCode,
    bytes: &[u8],
    out: &mut Outbox<'_>,
    stats: &WorkerStats,
) {
    let n = out.put_with(|h| encode_compressed(c, scratch, opcode, bytes, h));
    stats.deflated(bytes.len(), n);
}

/// Appends `bytes` compressed by `c` to `out` as one frame (RSV1 set, RFC
/// 7692 6), `scratch` as the compressor's output: the header's length
/// depends on the compressed one. The scratch buffer is kept for the next
/// message, unless a large one made it large. Returns the compressed
/// payload's length.
pub(super) fn encode_compressed(
    c: &mut Compressor,
    scratch: &mut Vec<u8>,
    opcode: OpCode,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> usize {
    scratch.clear();
    c.compress(bytes, scratch);
    FrameHeader {
        fin: true,
        rsv: 0b100,
        opcode,
        mask: None,
        payload_len: scratch.len() as u64,
    }
    .encode_into(out);
    out.extend_from_slice(scratch);
    let n = scratch.len();
    if scratch.capacity() > 256 << 10 {
        *scratch = Vec::new();
    }
    n
}

/// This thread's shared-mode compressor (no context takeover, a 15-bit
/// window), made at its first use with `cfg`'s level and memory level.
pub(super) fn shared_compressor<'a>(
    slot: &'a mut Option<Box<Compressor>>,
    cfg: &DeflateCfg,
) -> &'a mut Compressor {
    slot.get_or_insert_with(|| {
        Box::new(Compressor::new(CompressorConfig {
            level: cfg.level,
            window_bits: 15,
            mem_level: cfg.mem_level,
            takeover: false,
        }))
    })
}

/// A published frame's shared-mode compressed form (`None` inside: it does
/// not compress, being below the size limit or not a data frame), made by
/// the first worker that has a shared-mode subscriber for it and used by
/// every other: a publish is compressed once per node, not once per worker.
/// A worker that needs it while another is compressing it waits for that
/// one (`OnceLock::get_or_init`), which is never longer than compressing it
/// itself would take, and keeps the count of compressed bytes exact.
pub(crate) type SharedZ = Arc<OnceLock<Option<Bytes>>>;

/// `frame` (an unfragmented data frame as [`Message::frame`] encodes it)
/// with its payload compressed by the shared-mode compressor, `z` as
/// scratch; `None` for anything else, and for payloads below
/// `cfg.min_size`.
pub(super) fn compress_frame(
    slot: &mut Option<Box<Compressor>>,
    z: &mut Vec<u8>,
    cfg: &DeflateCfg,
    frame: &[u8],
    stats: &WorkerStats,
) -> Option<Bytes> {
    let (opcode, payload) = super::socket::data_payload(frame, cfg.min_size)?;
    let mut out = Vec::new();
    let n = encode_compressed(shared_compressor(slot, cfg), z, opcode, payload, &mut out);
    stats.deflated(payload.len(), n);
    Some(Bytes::from(out))
}
