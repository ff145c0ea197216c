//! [`Outbox`]: the one writer of a connection's outgoing bytes.
//!
//! Everything that leaves a connection (messages, published frames,
//! control frames, compressed frames, HTTP responses) is appended through
//! an `Outbox`, which [`super::io::Io::outbox`] hands out for a connection
//! that is open. Nothing else touches the connection's write batch: the
//! batch is sealed (turned into iovecs, and with TLS into records) by the
//! loop once per turn, in one place (`Io::start_send`), so that what is
//! written here never needs to know how it leaves.
//!
//! The backpressure the application sees (its send queue against a limit)
//! is [`Outbox::queued`]; the loop's own signal, which pauses reading from
//! a connection whose queue passed `max_backpressure` and resumes it below
//! half, is checked on the same counts when the turn's batches are handed
//! to the kernel (`Io::flush`).
//!
//! The zero-copy echo: while the loop delivers a read to the handler,
//! ranges of that read buffer may be queued ([`Outbox::put_input`]); the
//! batch keeps a place for the buffer at the first one and the loop fills
//! it once the delivery is over (`Io::keep_input`). The caller never holds
//! an index into the batch, so none can be wrong.

use std::ops::Range;

use bytes::Bytes;

use super::buf::WriteBatch;

/// A connection's send queue for this loop turn, borrowed from the loop.
pub(crate) struct Outbox<'a> {
    batch: &'a mut WriteBatch,
    /// Bytes of the batch in flight (handed to the kernel, not all sent).
    inflight: usize,
}

impl<'a> Outbox<'a> {
    #[inline]
    pub(super) fn new(batch: &'a mut WriteBatch, inflight: usize) -> Outbox<'a> {
        Outbox { batch, inflight }
    }

    /// Bytes queued on the connection and not yet sent: the batch in flight
    /// and this turn's.
    #[inline]
    pub(crate) fn queued(&self) -> usize {
        self.inflight + self.batch.bytes()
    }

    /// Queues a copy of `bytes`.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let h = self.batch.hdr.len();
        self.batch.hdr.extend_from_slice(bytes);
        self.batch.push_hdr_from(h);
    }

    /// Queues what `f` appends to the buffer it is given (a frame or a
    /// response encoded in place, no copy).
    #[inline]
    pub(crate) fn put_with<R>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let h = self.batch.hdr.len();
        let r = f(&mut self.batch.hdr);
        self.batch.push_hdr_from(h);
        r
    }

    /// Queues a frame shared with other connections' queues (a publish):
    /// referenced, or copied when small.
    #[inline]
    pub(crate) fn put_shared(&mut self, frame: &Bytes) {
        self.batch.push_shared(frame);
    }

    /// Queues `range` of the read buffer being delivered to this
    /// connection now, without a copy: the buffer stays with the batch
    /// until it is written.
    #[inline]
    pub(crate) fn put_input(&mut self, range: Range<usize>) {
        self.batch.push_cur_input(range);
    }

    /// Queues the `len` bytes of the message being delivered in a vector
    /// of its own (reassembled from fragments), which moves into the batch
    /// once the delivery is over (`Io::keep_owned`).
    #[inline]
    pub(crate) fn put_owned(&mut self, len: usize) {
        self.batch.push_cur_owned(len);
    }
}
