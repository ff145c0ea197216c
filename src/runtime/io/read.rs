//! The read path: multishot receives on the buffer ring (io_uring) or reads
//! into pool buffers while epoll says readable, a ring that ran dry
//! (`ENOBUFS`: the socket waits on the starved list, or reads into a buffer
//! of its own), and the end of input.

use std::io;

use super::*;

impl Io {
    /// Hands the `n` bytes read from `id` to the handler: the one place every
    /// read arrives, from all three read paths (the buffer ring, a heap
    /// read when the pool is dry, epoll's reads), and so where TLS will
    /// decrypt.
    #[inline]
    pub(super) fn deliver<H: Handler>(&mut self, id: SockId, input: InputBuf, n: usize, h: &mut H) {
        self.counts.bytes_in += n as u64;
        #[cfg(feature = "tls")]
        if self.socks[id.slot as usize].flags & TLS != 0 {
            return self.deliver_tls(id, input, h);
        }
        h.data(self, id, input);
    }

    /// Starts reading `id` (after accept or connect).
    pub(super) fn start_reads(&mut self, id: SockId) {
        let slot = id.slot as usize;
        match &mut self.backend {
            Backend::Uring(u) => {
                let s = &mut self.socks[slot];
                if s.flags & (READ_ARMED | READ_PAUSED | READ_EOF | CLOSING) != 0 {
                    return;
                }
                if self.pool.in_ring() == 0 && self.pool.free_count() == 0 {
                    // Nothing to lend: read into a buffer of its own.
                    let mut v = Vec::with_capacity(self.pool.inner.buf_size);
                    u.recv_into(s.fd, &mut v, id.tok(Op::RecvHeap));
                    self.heap_rx.insert(id.slot, v);
                } else {
                    u.recv(s.fd, id.tok(Op::Recv));
                }
                s.flags |= READ_ARMED;
                s.ops += 1;
            }
            Backend::Epoll(_) => {
                // Registered at accept or connect; reads happen when ready.
            }
        }
    }

    /// Lends ring buffers up to the low-water mark and restarts reads that
    /// waited for buffers.
    ///
    /// Sockets that have received nothing yet ([`FRESH`]) restart only
    /// while the ring has a buffer for each, oldest first; the rest wait
    /// for the next turn. Their dry reads do not raise the mark either
    /// (`on_recv`): 500 clients connecting at once would otherwise raise it
    /// to about 120 buffers a thread, and since the kernel takes ring
    /// buffers in the order they were lent, every one of them is written
    /// in turn and stays resident, 4 KiB each, while the connections sit
    /// idle (about 100 bytes per connection at 10,000 arriving 500 at a
    /// time, see docs/performance.md). A burst of handshakes is served a
    /// ring's worth per turn instead, from the same few warm buffers.
    pub(super) fn refill(&mut self) {
        if let Backend::Uring(u) = &mut self.backend {
            let want = self.ring_mark.next_turn(self.pool.in_ring());
            u.lend(&self.pool, want);
            self.ring_mark.lent(self.pool.in_ring());
        }
        if self.starved.is_empty() {
            return;
        }
        // An empty ring means an empty pool: `start_reads` reads into a
        // buffer of the socket's own, fresh or not.
        let mut room = self.pool.in_ring();
        let limit = room > 0;
        let starved = std::mem::take(&mut self.starved);
        for slot in starved {
            let s = &mut self.socks[slot as usize];
            if limit && room == 0 && s.flags & FRESH != 0 {
                self.starved.push(slot);
                continue;
            }
            room = room.saturating_sub(1);
            s.flags &= !STARVED;
            let id = SockId { slot, gen: s.gen };
            self.start_reads(id);
        }
    }

    pub(super) fn on_recv<H: Handler>(
        &mut self,
        id: SockId,
        c: Cqe,
        buf: Option<(u16, bool)>,
        h: &mut H,
    ) {
        let slot = id.slot;
        let more = uring::cqe_more(c.flags);
        let s = &mut self.socks[slot as usize];
        if !more {
            s.flags &= !READ_ARMED;
        }
        if c.res > 0 {
            s.flags &= !FRESH;
        }
        let closing = s.flags & CLOSING != 0;
        let input = match buf {
            Some((bid, bmore)) if c.res > 0 => Some(self.pool.taken(bid, c.res as usize, bmore)),
            Some((bid, bmore)) => {
                self.pool.returned(bid, bmore);
                None
            }
            None => None,
        };
        if closing {
            return;
        }
        match (c.res, input) {
            (_, Some(b)) => {
                self.deliver(id, InputBuf::Pooled(b), c.res as usize, h);
                self.after_read(id);
            }
            (0, None) => self.read_ended(id, None, h),
            (e, None) if e == -libc::ENOBUFS => {
                let s = &mut self.socks[slot as usize];
                if s.flags & FRESH == 0 {
                    self.ring_mark.ran_dry();
                }
                if s.flags & STARVED == 0 {
                    s.flags |= STARVED;
                    self.starved.push(slot);
                }
            }
            (e, None) if e == -libc::ECANCELED => {
                // Paused for backpressure; resumed since? Read again.
                self.after_read(id);
            }
            (e, None) if e < 0 => self.read_ended(id, Some(io::Error::from_raw_os_error(-e)), h),
            (n, None) => {
                tracing::warn!("recv returned {n} bytes without a buffer");
                self.after_read(id);
            }
        }
    }

    /// After a read's data was handled: re-arm a multishot receive that
    /// ended, unless paused, closed or at EOF.
    pub(super) fn after_read(&mut self, id: SockId) {
        let Some(s) = self.sock(id) else { return };
        if s.flags & (READ_ARMED | READ_PAUSED | READ_EOF | CLOSING | STARVED) == 0 {
            if let Backend::Uring(_) = self.backend {
                self.start_reads(id);
            }
        }
    }

    pub(super) fn read_ended<H: Handler>(&mut self, id: SockId, err: Option<io::Error>, h: &mut H) {
        let s = &mut self.socks[id.slot as usize];
        if s.flags & READ_EOF != 0 {
            return;
        }
        s.flags |= READ_EOF;
        s.flags &= !READ_READY;
        h.eof(self, id, err);
    }

    /// epoll: readiness of a socket.
    pub(super) fn on_ready<H: Handler>(&mut self, id: SockId, events: i32, h: &mut H) {
        let slot = id.slot;
        let s = &mut self.socks[slot as usize];
        if s.flags & CLOSING != 0 {
            return;
        }
        if s.flags & CONNECTING != 0 {
            if !epoll::writable(events) {
                return;
            }
            s.flags &= !CONNECTING;
            let Fd::Raw(fd) = s.fd else { return };
            let res = epoll::take_error(fd);
            let ok = res.is_ok();
            #[cfg(feature = "tls")]
            if ok {
                self.tls_connected(id);
            }
            h.connected(self, id, res);
            if !ok || !self.is_open(id) {
                return;
            }
        }
        let s = &mut self.socks[slot as usize];
        if epoll::writable(events) && s.flags & WRITE_BLOCKED != 0 {
            s.flags &= !WRITE_BLOCKED;
            self.send_inflight(slot);
        }
        let Some(s) = self.sock_mut(id) else { return };
        if epoll::readable(events) && s.flags & (READ_EOF | CLOSING) == 0 {
            s.flags |= READ_READY;
            self.read_ready(id, h, !epoll::hung_up(events));
        }
    }

    /// epoll: reads a readable socket until it would block, a share per turn.
    ///
    /// `short_drains`: a read shorter than its buffer ends the socket's
    /// readiness without the read that would say `EAGAIN`. epoll(7): "if
    /// you call read(2) by asking to read a certain amount of data and
    /// read(2) returns a lower number of bytes, you can be sure of having
    /// exhausted the read I/O space for the file descriptor"; whatever
    /// arrives after it raises a new edge. Only for a fresh event without
    /// a hang-up: an end of input that came before the event was taken is
    /// reported in it and raises no new edge, so that socket reads on to
    /// the `0` that tells it.
    pub(super) fn read_ready<H: Handler>(&mut self, id: SockId, h: &mut H, short_drains: bool) {
        let Some(s) = self.sock(id) else { return };
        let Fd::Raw(fd) = s.fd else { return };
        for _ in 0..READS_PER_TURN {
            let Some(s) = self.sock(id) else { return };
            if s.flags & (READ_PAUSED | READ_EOF | CLOSING) != 0 || s.flags & READ_READY == 0 {
                return;
            }
            let mut buf = match self.pool.take_free() {
                Some(b) => InputBuf::Pooled(b),
                None => InputBuf::Heap(vec![0; self.pool.inner.buf_size]),
            };
            let cap = buf.as_slice().len();
            match epoll::recv(fd, buf.as_mut_slice()) {
                Ok(0) => return self.read_ended(id, None, h),
                Ok(n) => {
                    match &mut buf {
                        InputBuf::Pooled(p) => p.truncate(n),
                        InputBuf::Heap(v) => v.truncate(n),
                    }
                    self.deliver(id, buf, n, h);
                    // Output the handler queued goes out before the next
                    // read, so backpressure can pause it.
                    self.flush();
                    if short_drains && n < cap {
                        if let Some(s) = self.sock_mut(id) {
                            s.flags &= !READ_READY;
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(s) = self.sock_mut(id) {
                        s.flags &= !READ_READY;
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.read_ended(id, Some(e), h),
            }
        }
        // Its share is used up: more next turn.
        self.ready.push(id.slot);
    }
}
