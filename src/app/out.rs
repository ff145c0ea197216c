//! Frames onto a connection's [`Outbox`], and the zero-copy echo: a
//! message that arrived whole in one read is handed to the handler
//! borrowed from the read buffer. If the handler sends that very slice
//! back on the same connection, [`InputView::queue`] recognises it by its
//! address and queues a range of the read buffer (which the batch keeps
//! until written) instead of a copy; the frame header goes over the
//! client's own header, just before the payload, so header and payload
//! leave as one piece. A message reassembled from fragments is moved into
//! the batch instead.

use super::socket::Message;
use crate::proto::frame::{encode_frame, FrameHeader, MAX_HEADER_LEN};
use crate::runtime::io::{Io, SockId};
use crate::runtime::outbox::Outbox;

/// The frame header length a server uses for a payload of `len` bytes.
pub(super) fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The read being handled, as [`Socket::send`] needs to know it to send a
/// received message without copying it.
pub(crate) struct InputView {
    /// Address and length of the read buffer (0, 0: no read).
    pub(super) base: usize,
    pub(super) len: usize,
    /// Some range of the read buffer is queued: the batch must keep it.
    pub(super) used: bool,
    /// The current message's payload in the read buffer, and where its
    /// frame began in this read (its header lies in between).
    pub(super) msg: (usize, usize),
    pub(super) frame_start: usize,
    /// The header bytes may still be overwritten with ours.
    pub(super) spot: bool,
    /// Our header, to write over the client's once the callback is done
    /// with the buffer: where, the bytes, and how many (0: none).
    pub(super) trick_at: usize,
    pub(super) trick_hdr: [u8; MAX_HEADER_LEN],
    pub(super) trick_len: u8,
    /// The current message reassembled into its own vector: its address
    /// and length, and whether it is queued (the batch must keep it).
    pub(super) owned: (usize, usize),
    pub(super) owned_used: bool,
}

impl InputView {
    pub(super) const NONE: InputView = InputView {
        base: 0,
        len: 0,
        used: false,
        msg: (0, 0),
        frame_start: 0,
        spot: false,
        trick_at: 0,
        trick_hdr: [0; MAX_HEADER_LEN],
        trick_len: 0,
        owned: (0, 0),
        owned_used: false,
    };

    /// The current message is `bytes`, in the read buffer, in a frame that
    /// began at `frame_start`.
    #[inline]
    pub(super) fn borrowed(&mut self, frame_start: usize, bytes: &[u8]) {
        self.msg = (bytes.as_ptr() as usize - self.base, bytes.len());
        self.frame_start = frame_start;
        self.spot = true;
    }

    /// After the callback on a reassembled message: moves it into the
    /// batch if the callback sent it back.
    pub(super) fn hand_over(&mut self, io: &mut Io, id: SockId, data: Vec<u8>) {
        if std::mem::take(&mut self.owned_used) {
            io.keep_owned(id, data);
        }
        self.owned = (0, 0);
    }

    /// Queues `msg` on `out`, pointing into the read buffer or the
    /// reassembled message when that is where it is.
    #[inline]
    pub(crate) fn queue(&mut self, out: &mut Outbox<'_>, msg: Message<'_>) {
        let bytes = msg.as_bytes();
        let (p, n) = (bytes.as_ptr() as usize, bytes.len());
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: msg.opcode(),
            mask: None,
            payload_len: n as u64,
        };
        if n > 0 && p >= self.base && p + n <= self.base + self.len {
            self.used = true;
            let at = p - self.base;
            let hlen = header_len(n);
            if self.spot && (at, n) == self.msg && at - self.frame_start >= hlen {
                // The client's header, parsed and done with, lies just
                // before the payload and is longer than ours: ours goes
                // there (after the callback), so header and payload go out
                // as one piece. Only once: a second send of the same
                // message gets a header of its own.
                if n < 126 {
                    // The common case, without the general encoder.
                    self.trick_hdr[0] = 0x80 | msg.opcode() as u8;
                    self.trick_hdr[1] = n as u8;
                } else {
                    header.encode(&mut self.trick_hdr);
                }
                self.trick_at = at - hlen;
                self.trick_len = hlen as u8;
                self.spot = false;
                out.put_input(at - hlen..at + n);
            } else {
                out.put_with(|h| header.encode_into(h));
                out.put_input(at..at + n);
            }
        } else if n > 0 && (p, n) == self.owned {
            out.put_with(|h| header.encode_into(h));
            out.put_owned(n);
            self.owned_used = true;
        } else {
            out.put_with(|h| encode_frame(msg.opcode(), None, bytes, h));
        }
    }
}
