//! The write path: the [`Outbox`] a handler appends to, the turn's flush
//! into send ops, short writes, the write timeout's progress, spare batches,
//! and the backpressure signal that pauses a connection's reads while more
//! than `max_backpressure` bytes wait and resumes them below half.

use std::io;

use super::*;
use crate::log::conn_event;

/// A batch for a socket when no spare is left: cold, so that
/// [`Io::outbox`], on every send, stays small enough to inline.
#[cold]
pub(super) fn new_batch() -> Box<WriteBatch> {
    Box::default()
}

/// Spare write batches a thread keeps. Every connection that is sending
/// holds one or two, so with fewer spares than concurrent senders each turn
/// frees and allocates batches again.
pub(super) const MAX_SPARE_BATCHES: usize = 1024;
/// Of those, this many may be large (up to [`MAX_SPARE_LARGE_BYTES`] of
/// heap); the rest only if small. At most 64 x 256 KiB + 960 x 4 KiB,
/// about 20 MiB, per thread in the worst case.
pub(super) const MAX_SPARE_LARGE: usize = 64;
pub(super) const MAX_SPARE_LARGE_BYTES: usize = 256 << 10;
pub(super) const MAX_SPARE_SMALL_BYTES: usize = 4 << 10;

impl Io {
    /// The send queue of `id`, to append its next bytes to; they go out at
    /// the end of the turn. `None` if the socket is closing.
    #[inline]
    pub(crate) fn outbox(&mut self, id: SockId) -> Option<Outbox<'_>> {
        let slot = id.slot as usize;
        let s = self.socks.get_mut(slot)?;
        if s.gen != id.gen || s.flags & (IN_USE | CLOSING) != IN_USE {
            return None;
        }
        if s.flags & DIRTY == 0 {
            s.flags |= DIRTY;
            self.dirty.push(id.slot);
        }
        if s.pending.is_none() {
            s.pending = Some(self.spares.pop().unwrap_or_else(new_batch));
        }
        let inflight = s.inflight.as_ref().map_or(0, |b| b.bytes());
        s.pending.as_deref_mut().map(|b| Outbox::new(b, inflight))
    }

    /// The delivery of `input` to `id` is over: the batch keeps it if
    /// ranges of it were queued ([`Outbox::put_input`]), else it goes
    /// back to its pool here, before the write. Dropped too if the socket
    /// has closed since: its batch went with it.
    #[inline]
    pub(crate) fn keep_input(&mut self, id: SockId, input: InputBuf) {
        if let Some(b) = self.pending_of(id) {
            b.keep_input(input);
        }
    }

    /// The same for a reassembled message ([`Outbox::put_owned`]).
    pub(crate) fn keep_owned(&mut self, id: SockId, data: Vec<u8>) {
        if let Some(b) = self.pending_of(id) {
            b.keep_owned(data);
        }
    }

    #[inline]
    pub(super) fn pending_of(&mut self, id: SockId) -> Option<&mut WriteBatch> {
        let s = self.socks.get_mut(id.slot as usize)?;
        if s.gen != id.gen || s.flags & (IN_USE | CLOSING) != IN_USE {
            return None;
        }
        s.pending.as_deref_mut()
    }

    #[inline]
    pub(super) fn put_batch(&mut self, mut b: Box<WriteBatch>) {
        b.clear();
        let bytes = b.heap_bytes();
        let keep = if self.spares.len() < MAX_SPARE_LARGE {
            bytes <= MAX_SPARE_LARGE_BYTES
        } else {
            self.spares.len() < MAX_SPARE_BATCHES && bytes <= MAX_SPARE_SMALL_BYTES
        };
        if keep {
            self.spares.push(b);
        }
    }

    /// Bytes queued on `id` and not yet sent (0 for a socket that is gone).
    pub(crate) fn buffered(&self, id: SockId) -> usize {
        self.sock(id).map_or(0, Sock::queued)
    }

    /// Calls [`Handler::writable`] for `id` once the next batch in flight
    /// (or the one queued this turn) has been sent. Once per call.
    pub(crate) fn notify_writable(&mut self, id: SockId) {
        if let Some(s) = self.sock_mut(id) {
            s.flags |= NOTIFY_WRITABLE;
        }
    }

    /// Queues `bytes` to send on `id` (copied), with the rest of the turn's
    /// output. Returns false if the socket is closing.
    pub fn send(&mut self, id: SockId, bytes: &[u8]) -> bool {
        let Some(mut o) = self.outbox(id) else {
            return false;
        };
        o.put(bytes);
        true
    }

    /// Queues what `f` appends to the buffer it is given (frames encoded in
    /// place, no copy) to send on `id`. Returns false, without calling `f`,
    /// if the socket is closing.
    pub fn send_with(&mut self, id: SockId, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        let Some(mut o) = self.outbox(id) else {
            return false;
        };
        o.put_with(f);
        true
    }

    /// Backpressure: pauses reads past the limit, resumes them below half.
    #[inline]
    pub(super) fn check_pressure(&mut self, slot: u32) {
        let s = &self.socks[slot as usize];
        // Checked after every send and every queued turn: the common case,
        // nothing to change, stays inline.
        if s.flags & (CLOSING | READ_PAUSED) == 0 && s.queued() <= self.cfg.max_backpressure {
            return;
        }
        self.pressure_changed(slot);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn pressure_changed(&mut self, slot: u32) {
        let s = &mut self.socks[slot as usize];
        if s.flags & CLOSING != 0 {
            return;
        }
        let q = s.queued();
        let id = SockId { slot, gen: s.gen };
        if s.flags & READ_PAUSED == 0 && q > self.cfg.max_backpressure {
            s.flags |= READ_PAUSED;
            if let Backend::Uring(u) = &mut self.backend {
                if s.flags & READ_ARMED != 0 && s.flags & READ_CANCELLING == 0 {
                    u.cancel(id.tok(Op::Recv), id.tok(Op::Cancel));
                    s.flags |= READ_CANCELLING;
                    s.ops += 1;
                }
            }
        } else if s.flags & READ_PAUSED != 0 && q <= self.cfg.max_backpressure / 2 {
            s.flags &= !READ_PAUSED;
            let ready = s.flags & READ_READY != 0;
            match self.backend {
                Backend::Uring(_) => self.start_reads(id),
                Backend::Epoll(_) if ready => self.ready.push(slot),
                Backend::Epoll(_) => {}
            }
        }
    }

    /// Hands every batch queued this turn to the kernel.
    #[inline(always)]
    pub(super) fn flush(&mut self) {
        while let Some(slot) = self.dirty.pop() {
            let s = &mut self.socks[slot as usize];
            s.flags &= !DIRTY;
            if s.flags & CLOSING != 0 {
                continue;
            }
            if s.inflight.is_none() {
                self.start_send(slot);
            }
            self.check_pressure(slot);
        }
    }

    /// io_uring: hands the turn's output to the kernel before the turn
    /// ends, if nothing else has completed meanwhile, and puts what
    /// completed inside that submission (sends the socket had room for) in
    /// `cqes`, for this turn to handle; true if it submitted. Otherwise the next wait would submit them, return at once with
    /// their completions, and a whole turn (clock, timers, the handler's
    /// turn, about 200 instructions, callgrind) would go to handing their
    /// batches back: at one connection in ping-pong, every other turn.
    /// With completions already waiting, or completion work pending (the
    /// task-run flag: under load, peers' data), the next wait returns at
    /// once anyway, with the sends' completions among the rest; then the
    /// turn's output waits for it, in one submission as before, rather
    /// than cost a system call of its own.
    #[inline]
    pub(super) fn send_early(&mut self, cqes: &mut Vec<Cqe>) -> io::Result<bool> {
        if self.dirty.is_empty() {
            return Ok(false);
        }
        let Backend::Uring(u) = &mut self.backend else {
            return Ok(false);
        };
        if !u.idle() {
            return Ok(false);
        }
        self.flush();
        if let Backend::Uring(u) = &mut self.backend {
            u.submit_now(cqes)?;
        }
        Ok(true)
    }

    /// Moves the pending batch in flight, if there is nothing in flight.
    #[inline]
    pub(super) fn start_send(&mut self, slot: u32) {
        let s = &mut self.socks[slot as usize];
        #[cfg(feature = "tls")]
        if s.flags & TLS != 0 {
            return self.start_send_tls(slot);
        }
        let Some(mut b) = s.pending.take() else {
            return;
        };
        if b.is_empty() {
            self.put_batch(b);
            return;
        }
        b.seal();
        self.counts.bytes += b.bytes() as u64;
        s.inflight = Some(b);
        if s.write_due == 0 {
            s.write_due = self.wheel.now() + self.write_ticks + 1;
            self.rearm(slot);
        }
        self.send_inflight(slot);
    }

    #[inline]
    pub(super) fn send_inflight(&mut self, slot: u32) {
        let s = &mut self.socks[slot as usize];
        let id = SockId { slot, gen: s.gen };
        let b = s.inflight.as_deref_mut().expect("a batch in flight");
        self.counts.writes += 1;
        if let Backend::Uring(u) = &mut self.backend {
            u.send(s.fd, b, id.tok(Op::Send));
            s.ops += 1;
            return;
        }
        self.write_now(slot);
    }

    /// epoll: writes the batch in flight until done or the socket is full.
    pub(super) fn write_now(&mut self, slot: u32) {
        let s = &mut self.socks[slot as usize];
        let b = s.inflight.as_deref_mut().expect("a batch in flight");
        let Fd::Raw(fd) = s.fd else {
            unreachable!("epoll has no direct descriptors")
        };
        let mut progress = false;
        let res = loop {
            match epoll::send(fd, b.pending_iov()) {
                Ok(n) => {
                    if progress {
                        // A short write resumed: one more call.
                        self.counts.writes += 1;
                    }
                    progress = true;
                    if b.advance(n) {
                        break Some(Ok(()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(Err(e)),
            }
        };
        match res {
            Some(r) => self.sent(slot, r),
            None => {
                let s = &mut self.socks[slot as usize];
                s.flags |= WRITE_BLOCKED;
                if progress {
                    // Progress resets the write timeout.
                    s.write_due = self.wheel.now() + self.write_ticks + 1;
                    self.rearm(slot);
                }
            }
        }
    }

    /// The batch in flight is sent (or failed).
    #[inline]
    pub(super) fn sent(&mut self, slot: u32, res: io::Result<()>) {
        let id = SockId {
            slot,
            gen: self.socks[slot as usize].gen,
        };
        if let Err(e) = res {
            conn_event!(DEBUG, self, id, "write error: {e}");
            self.close_for(id, Gone::WriteError);
            return;
        }
        let b = self.socks[slot as usize]
            .inflight
            .take()
            .expect("a batch in flight");
        self.put_batch(b);
        let s = &mut self.socks[slot as usize];
        s.write_due = 0;
        if s.flags & NOTIFY_WRITABLE != 0 {
            s.flags &= !NOTIFY_WRITABLE;
            self.writable.push(id);
        }
        #[cfg(feature = "tls")]
        let more = self.tls_output(slot);
        #[cfg(not(feature = "tls"))]
        let more = false;
        let s = &mut self.socks[slot as usize];
        if more || s.pending.as_ref().is_some_and(|p| !p.is_empty()) {
            self.start_send(slot);
        } else {
            if s.flags & CLOSE_AFTER_FLUSH != 0 {
                self.close(id);
                return;
            }
            if s.flags & SHUT_AFTER_FLUSH != 0 {
                s.flags &= !SHUT_AFTER_FLUSH;
                self.shutdown_write(id);
            }
        }
        self.check_pressure(slot);
    }
}
