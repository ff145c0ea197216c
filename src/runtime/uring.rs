//! The io_uring backend: one ring per worker thread, set up with the
//! cheapest features the kernel offers, a registered provided-buffer ring
//! for reads, and one builder per operation the loop uses.
//!
//! Everything here only puts entries into the submission queue and copies
//! completions out; what they mean is decided in `io.rs`, which keeps alive
//! whatever memory an entry points to until its completion (send batches,
//! heap read buffers, socket addresses).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use super::backend::{Cqe, Fd};
use super::buf::{Pool, WriteBatch};

#[cfg(test)]
mod script;
#[cfg(test)]
pub(crate) use script::{Script, Sub};

/// The kernel's ring. In the crate's unit tests it may be a [`Script`]
/// instead, which takes the entries `push` makes and answers `wait` with
/// the completions a test wrote (see `uring/script.rs`).
#[cfg(not(test))]
type Ring = IoUring;
#[cfg(test)]
use script::Ring;

/// The longest single wait (see `Uring::wait`).
const MAX_WAIT: Duration = Duration::from_secs(1);

/// The buffer group of the read pool on every ring.
const GROUP: u16 = 0;
/// `IOU_PBUF_RING_INC` (Linux 6.12): the kernel fills a ring buffer over
/// several completions instead of using up one per completion.
const PBUF_RING_INC: u16 = 2;

/// The provided-buffer ring: `entries` slots of `io_uring_buf` (16 bytes),
/// shared with the kernel; the tail lives in the last two bytes of the first
/// slot.
struct BufRing {
    base: *mut u8,
    entries: u16,
    tail: u16,
    /// Slots written since the tail was last published.
    unpublished: bool,
}

impl BufRing {
    /// A ring (not yet registered) of a power of two of slots, at least as
    /// many as `pool` has buffers (at most 32768, which `Config::validate`
    /// ensures).
    fn for_pool(pool: &Pool) -> io::Result<BufRing> {
        let n = (pool.inner.count as usize).next_power_of_two().max(1) as u16;
        let mem = super::buf::map_anonymous(BufRing::bytes(n))?.as_ptr();
        Ok(BufRing {
            base: mem,
            entries: n,
            tail: 0,
            unpublished: false,
        })
    }

    fn bytes(entries: u16) -> usize {
        entries as usize * 16
    }

    /// Writes buffer `bid` at `addr` of `len` bytes into the next slot.
    fn push(&mut self, bid: u16, addr: *mut u8, len: u32) {
        let slot = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: `slot < entries`, so the 16-byte entry lies inside the
        // mapping of `entries * 16` bytes made in `Uring::new`. The kernel
        // reads only slots between its head and the published tail, and this
        // one is past the tail until `publish`. The tail field (bytes 14..16
        // of slot 0) is not touched here: `resv` of slot 0 is the tail, so
        // slot 0's last two bytes are left alone.
        unsafe {
            let e = self.base.add(slot * 16);
            (e as *mut u64).write(addr as u64);
            (e.add(8) as *mut u32).write(len);
            (e.add(12) as *mut u16).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        self.unpublished = true;
    }

    /// Makes the slots written so far visible to the kernel.
    fn publish(&mut self) {
        if !self.unpublished {
            return;
        }
        self.unpublished = false;
        // SAFETY: the tail is the u16 at byte 14 of the mapping, 2-aligned;
        // the kernel reads it with acquire ordering, and the release store
        // orders the slot writes of `push` before it.
        unsafe {
            let tail = &*(self.base.add(14) as *const std::sync::atomic::AtomicU16);
            tail.store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Uring::new`, unmapped only here, after
        // the ring (declared first in `Uring`, so dropped first) is gone.
        unsafe { libc::munmap(self.base as *mut libc::c_void, Self::bytes(self.entries)) };
    }
}

/// One worker's ring.
pub(crate) struct Uring {
    // Field order is drop order: the ring goes before the buffer ring's
    // memory that it reads.
    ring: Ring,
    bufs: BufRing,
    /// Accepted sockets become direct descriptors (a sparse file table of
    /// this many entries was registered).
    pub(crate) files: u32,
    /// One line for the log: which features are in use.
    pub(crate) features: String,
    /// The eventfd's counter, read by the wake-up op.
    wake_buf: Box<u64>,
}

impl Uring {
    /// Sets up a ring with `entries` submission entries, a file table of
    /// `files` entries (0: none) and a buffer ring for `pool`.
    /// `incremental`: ask for `IOU_PBUF_RING_INC` (see
    /// `Config::incremental_reads`); without kernel support, plain.
    pub(crate) fn new(
        entries: u32,
        files: u32,
        pool: &Pool,
        incremental: bool,
    ) -> io::Result<Uring> {
        let mut feats = Vec::new();
        let ring = {
            // Cheapest first: a single issuer whose completion work runs only
            // when it asks for completions (bounded bursts, no interrupts),
            // without the SQ index array; then ever plainer setups. Each
            // with the task-run flag first (the kernel says in the SQ ring's
            // flags that completion work is pending, which `idle` reads),
            // then without it.
            type Setup = fn(&mut io_uring::Builder);
            let tries: [(&str, Setup); 7] = [
                (
                    "single-issuer, defer-taskrun, no-sqarray, taskrun-flag",
                    |b| {
                        b.setup_single_issuer()
                            .setup_defer_taskrun()
                            .setup_no_sqarray()
                            .setup_taskrun_flag();
                    },
                ),
                ("single-issuer, defer-taskrun, no-sqarray", |b| {
                    b.setup_single_issuer()
                        .setup_defer_taskrun()
                        .setup_no_sqarray();
                }),
                ("single-issuer, defer-taskrun, taskrun-flag", |b| {
                    b.setup_single_issuer()
                        .setup_defer_taskrun()
                        .setup_taskrun_flag();
                }),
                ("single-issuer, defer-taskrun", |b| {
                    b.setup_single_issuer().setup_defer_taskrun();
                }),
                ("coop-taskrun, taskrun-flag", |b| {
                    b.setup_coop_taskrun().setup_taskrun_flag();
                }),
                ("coop-taskrun", |b| {
                    b.setup_coop_taskrun();
                }),
                ("plain", |_| {}),
            ];
            let mut last = None;
            let mut got = None;
            for (name, set) in tries {
                let mut b = IoUring::builder();
                set(&mut b);
                b.setup_cqsize(entries.saturating_mul(4).max(64));
                match b.build(entries) {
                    Ok(r) => {
                        feats.push(name.to_string());
                        got = Some(r);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match got {
                Some(r) => r,
                None => return Err(last.expect("at least one setup tried")),
            }
        };
        if ring.submitter().register_ring_fd().is_ok() {
            feats.push("registered ring fd".into());
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (op, name) in [
            (opcode::RecvMulti::CODE, "recv"),
            (opcode::AcceptMulti::CODE, "accept"),
            (opcode::SendMsg::CODE, "sendmsg"),
            (opcode::AsyncCancel2::CODE, "async-cancel"),
        ] {
            if !probe.is_supported(op) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring lacks {name}"),
                ));
            }
        }
        let files = if files > 0 && ring.submitter().register_files_sparse(files).is_ok() {
            feats.push(format!("{files} direct descriptors"));
            files
        } else {
            0
        };
        let bufs = BufRing::for_pool(pool)?;
        let (mem, n) = (bufs.base, bufs.entries);
        let reg = |flags| {
            // SAFETY: the mapping of `n` slots lives in `bufs`, which
            // `Uring` drops after the ring.
            unsafe {
                ring.submitter()
                    .register_buf_ring_with_flags(mem as u64, n, GROUP, flags)
            }
        };
        let incremental = match incremental.then(|| reg(PBUF_RING_INC)) {
            Some(Ok(())) => true,
            _ => {
                reg(0)?;
                false
            }
        };
        feats.push(format!(
            "buffer ring of {n}{}",
            if incremental { ", incremental" } else { "" }
        ));
        #[cfg(test)]
        let ring = Ring::Kernel(ring);
        Ok(Uring {
            ring,
            bufs,
            files,
            features: feats.join(", "),
            wake_buf: Box::new(0),
        })
    }

    /// Queues `sqe`, submitting first if the queue is full.
    #[inline]
    fn push(&mut self, sqe: squeue::Entry) {
        #[cfg(test)]
        if let Ring::Script(s) = &mut self.ring {
            return s.submit(&sqe);
        }
        loop {
            // SAFETY: every entry built in this module points only to memory
            // that its caller in `io.rs` keeps alive until the completion
            // (see each builder), or to nothing.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel. An error here (such as
            // EBUSY with the completion queue full) leaves the entries
            // queued; the next wait reaps completions and submits again.
            if self.ring.submit().is_err() {
                let _ = self.ring.submit_and_wait(1);
            }
        }
    }

    /// Lends free pool buffers until the kernel has `want` it has not
    /// finished.
    pub(crate) fn lend(&mut self, pool: &Pool, want: usize) {
        while pool.inner.state.borrow().in_ring < want {
            let Some((id, addr, len)) = pool.lend() else {
                break;
            };
            self.bufs.push(id, addr, len);
        }
        self.bufs.publish();
    }

    /// Multishot accept on `listener`, into direct descriptors if `direct`.
    pub(crate) fn accept(&mut self, listener: RawFd, direct: bool, ud: u64) {
        // A direct descriptor has no close-on-exec (the kernel refuses the
        // flag with one).
        let flags = if direct { 0 } else { libc::SOCK_CLOEXEC };
        let sqe = opcode::AcceptMulti::new(types::Fd(listener))
            .allocate_file_index(direct)
            .flags(flags)
            .build()
            .user_data(ud);
        self.push(sqe);
    }

    /// Multishot receive into ring buffers.
    pub(crate) fn recv(&mut self, fd: Fd, ud: u64) {
        let sqe = match fd {
            Fd::Raw(f) => opcode::RecvMulti::new(types::Fd(f), GROUP).build(),
            Fd::Fixed(i) => opcode::RecvMulti::new(types::Fixed(i), GROUP).build(),
        };
        self.push(sqe.user_data(ud));
    }

    /// One receive into `buf`'s spare capacity (the pool is dry).
    ///
    /// The caller keeps `buf` unmoved in memory (its heap part) and unused
    /// until the completion.
    pub(crate) fn recv_into(&mut self, fd: Fd, buf: &mut Vec<u8>, ud: u64) {
        let spare = buf.spare_capacity_mut();
        let (ptr, len) = (
            spare.as_mut_ptr() as *mut u8,
            spare.len().min(u32::MAX as usize),
        );
        let sqe = match fd {
            Fd::Raw(f) => opcode::Recv::new(types::Fd(f), ptr, len as u32).build(),
            Fd::Fixed(i) => opcode::Recv::new(types::Fixed(i), ptr, len as u32).build(),
        };
        self.push(sqe.user_data(ud));
    }

    /// Sends what is left of `batch`: `SEND` for one piece, `SENDMSG` for
    /// several.
    ///
    /// The caller keeps `batch` (boxed, so its msghdr and iovecs do not move)
    /// unchanged until the completion.
    pub(super) fn send(&mut self, fd: Fd, batch: &mut WriteBatch, ud: u64) {
        let iov = batch.pending_iov();
        let sqe = if iov.len() == 1 {
            // One piece: `SEND` skips the kernel's msghdr and iovec import.
            // A piece past 4 GiB goes in several sends, as a short write.
            let v = iov[0];
            let len = v.iov_len.min(u32::MAX as usize) as u32;
            let p = v.iov_base as *const u8;
            match fd {
                Fd::Raw(f) => opcode::Send::new(types::Fd(f), p, len),
                Fd::Fixed(i) => opcode::Send::new(types::Fixed(i), p, len),
            }
            .flags(libc::MSG_NOSIGNAL)
            .build()
        } else {
            let m = batch.msghdr();
            match fd {
                Fd::Raw(f) => opcode::SendMsg::new(types::Fd(f), m),
                Fd::Fixed(i) => opcode::SendMsg::new(types::Fixed(i), m),
            }
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
        };
        self.push(sqe.user_data(ud));
    }

    /// Cancels the op with user data `target`.
    pub(crate) fn cancel(&mut self, target: u64, ud: u64) {
        let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(target))
            .build()
            .user_data(ud);
        self.push(sqe);
    }

    /// Cancels every op still in flight (at the end of the loop).
    pub(crate) fn cancel_any(&mut self, ud: u64) {
        let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(ud);
        self.push(sqe);
    }

    /// Cancels every op on `fd`, then closes it.
    pub(crate) fn close(&mut self, fd: Fd, cancel_ud: u64, close_ud: u64) {
        let (cancel, close) = match fd {
            Fd::Raw(f) => (
                types::CancelBuilder::fd(types::Fd(f)).all(),
                opcode::Close::new(types::Fd(f)).build(),
            ),
            Fd::Fixed(i) => (
                types::CancelBuilder::fd(types::Fixed(i)).all(),
                opcode::Close::new(types::Fixed(i)).build(),
            ),
        };
        self.push(
            opcode::AsyncCancel2::new(cancel)
                .build()
                .user_data(cancel_ud),
        );
        self.push(close.user_data(close_ud));
    }

    /// `shutdown(2)` of one or both directions.
    pub(crate) fn shutdown(&mut self, fd: Fd, how: i32, ud: u64) {
        let sqe = match fd {
            Fd::Raw(f) => opcode::Shutdown::new(types::Fd(f), how).build(),
            Fd::Fixed(i) => opcode::Shutdown::new(types::Fixed(i), how).build(),
        };
        self.push(sqe.user_data(ud));
    }

    /// Connects `fd` to `addr`.
    ///
    /// The caller keeps `addr` unmoved until the completion.
    pub(crate) fn connect(&mut self, fd: RawFd, addr: &socket2::SockAddr, ud: u64) {
        let sqe = opcode::Connect::new(types::Fd(fd), addr.as_ptr() as *const _, addr.len())
            .build()
            .user_data(ud);
        self.push(sqe);
    }

    /// The peer's address of a direct descriptor (`SO_PEERNAME`), written
    /// to `out`.
    ///
    /// The caller keeps `out` unmoved until the completion.
    pub(crate) fn peer_name(&mut self, fd: u32, out: &mut [u8], ud: u64) {
        let sqe = opcode::GetSockOpt::new(
            types::Fixed(fd),
            libc::SOL_SOCKET as u32,
            libc::SO_PEERNAME as u32,
            out.as_mut_ptr() as *mut libc::c_void,
            out.len() as u32,
        )
        .build()
        .user_data(ud);
        self.push(sqe);
    }

    /// Reads the wake-up eventfd's counter, completing when it is written.
    pub(crate) fn read_wake(&mut self, efd: RawFd, ud: u64) {
        let p = &mut *self.wake_buf as *mut u64 as *mut u8;
        // The buffer is a box owned by `self`, which outlives the ring's ops
        // (the loop drains them before dropping it).
        let sqe = opcode::Read::new(types::Fd(efd), p, 8)
            .build()
            .user_data(ud);
        self.push(sqe);
    }

    /// Submits what is queued and waits for at least one completion, or
    /// until `timeout`, then copies every completion into `out`.
    /// Nothing has completed since the last wait, and no completion work
    /// is pending (as far as the task-run flag tells, when the ring has
    /// it): the next wait would block. False for a script, whose
    /// completions come only when a test writes them.
    #[inline]
    pub(crate) fn idle(&mut self) -> bool {
        #[cfg(test)]
        if let Ring::Script(_) = &self.ring {
            return false;
        }
        self.ring.completion().is_empty() && !self.ring.submission().taskrun()
    }

    /// Hands what is queued to the kernel without waiting, and adds to
    /// `out` what completed inside the submission: a send the socket had
    /// room for completes there.
    pub(crate) fn submit_now(&mut self, out: &mut Vec<Cqe>) -> io::Result<()> {
        self.bufs.publish();
        match self.ring.submit() {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        for c in self.ring.completion() {
            out.push(Cqe {
                ud: c.user_data(),
                res: c.result(),
                flags: c.flags(),
            });
        }
        Ok(())
    }

    pub(crate) fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Cqe>) -> io::Result<()> {
        self.bufs.publish();
        #[cfg(test)]
        if let Ring::Script(s) = &mut self.ring {
            s.reap(&self.bufs, out);
            return Ok(());
        }
        // Never wait longer than a second: valgrind does not know that
        // io_uring_enter blocks and keeps its lock over the wait, so that no
        // other thread of the process (the one waiting for SIGINT) runs until
        // this one yields. Once a second per thread costs nothing measurable.
        let timeout = Some(timeout.map_or(MAX_WAIT, |d| d.min(MAX_WAIT)));
        let res = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match res {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        let before = out.len();
        for c in self.ring.completion() {
            out.push(Cqe {
                ud: c.user_data(),
                res: c.result(),
                flags: c.flags(),
            });
        }
        if out.len() == before {
            // A wait that timed out: under valgrind, the point where another
            // thread gets its turn (see MAX_WAIT). Idle, so it costs nothing.
            std::thread::yield_now();
        }
        Ok(())
    }
}

/// The buffer id a completion carries, and whether the kernel keeps filling
/// that buffer.
pub(crate) fn cqe_buffer(flags: u32) -> Option<(u16, bool)> {
    cqueue::buffer_select(flags).map(|id| (id, cqueue::buffer_more(flags)))
}

/// More completions will follow for this multishot op.
pub(crate) fn cqe_more(flags: u32) -> bool {
    cqueue::more(flags)
}
