//! The ceiling of ringws's own io_uring loop: a plain TCP echo written
//! straight on the io-uring crate, one thread, one ring, no WebSocket at all.
//! loadgen drives it with `--raw`; `peer-tcp-echo` is the same echo on
//! tokio-uring.
//!
//! Data path: one multishot accept on the listener; per connection one
//! multishot recv that takes buffers from a registered provided-buffer ring;
//! each received chunk goes back out with a plain send straight from the ring
//! buffer the kernel filled (no copy). At most one send is in flight per
//! connection and later chunks wait behind it, so the echo keeps the byte
//! order; a buffer returns to the ring when its last byte has been sent.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Submitter};
use socket2::{Domain, Socket, Type};

const SQ_ENTRIES: u32 = 4096;
/// Room for one recv and one send completion per connection at a thousand
/// connections and every buffer's recv completion on top, so the kernel's
/// overflow list (slower, not lossy) stays unused in the benchmark loads.
const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;
/// Read buffers; a power of two, because the buffer ring has one slot per
/// buffer and the kernel indexes it with `tail & (entries - 1)`.
const BUFS: u16 = 1024;
const BUF_LEN: usize = 32 << 10;
const GROUP: u16 = 0;
/// Completions a turn may handle need this much room in the submission
/// queue: a recv that ends its multishot re-arms and sends, an accept that
/// ends its multishot re-arms and starts a recv. Checking before each
/// completion means a push never finds the queue full.
const ROOM_PER_CQE: usize = 2;

/// `user_data` = connection slot << 2 | op kind. No generation is needed: a
/// slot is freed only once neither its recv nor its send is in flight, so no
/// completion can arrive for a slot after it has been reused.
const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;

fn ud(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 2) | kind
}

fn main() {
    let addr = ringws_peers::listen_addr();
    let listener = listen(addr).expect("bind");
    let mut ring = new_ring().expect("io_uring setup");
    let bufs = Bufs::new(&ring.submitter()).expect("provided-buffer ring");
    let mut echo = Echo {
        listener: listener.as_raw_fd(),
        accepting: false,
        accept_paused: false,
        conns: Vec::new(),
        free: Vec::new(),
        starved: VecDeque::new(),
        bufs,
    };
    let (submitter, mut sq, mut cq) = ring.split();
    echo.arm_accept(&mut sq);
    ringws_peers::ready("uring-echo (io-uring)", addr);
    loop {
        // Publish the new entries and the completions consumed last turn
        // (the kernel counts unconsumed ones as ready and would not block).
        sq.sync();
        cq.sync();
        // Completions left over for lack of submission room, or starved
        // reads that can be re-armed, are work now: do not block for more.
        let busy = !cq.is_empty() || (!echo.starved.is_empty() && echo.bufs.returned > 0);
        // At most a second: valgrind (scripts/bench.sh counts instructions
        // with it) holds its lock over io_uring_enter, so SIGINT is only
        // taken once the wait returns and the thread yields.
        let ts = io_uring::types::Timespec::new().sec(1);
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        match submitter.submit_with_args(if busy { 0 } else { 1 }, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => std::thread::yield_now(),
            // Interrupted, short of memory for now, or the kernel wants
            // completions reaped first: reap, then try again next turn.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        sq.sync();
        cq.sync();
        while sq.capacity() - sq.len() >= ROOM_PER_CQE {
            let Some(cqe) = cq.next() else { break };
            echo.complete(&mut sq, cqe.user_data(), cqe.result(), cqe.flags());
        }
        echo.bufs.publish();
        echo.rearm_starved(&mut sq);
    }
}

/// The cheapest setup first: one submitting thread whose completion work
/// runs only when it waits (no interrupts of user space), then a plain ring
/// for kernels that refuse it (before 6.1).
fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
        .or_else(|_| {
            IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)
        })
}

fn listen(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    // Linux copies TCP_NODELAY from the listener into every accepted socket,
    // which saves one setsockopt per connection.
    s.set_nodelay(true)?;
    s.bind(&addr.into())?;
    // tokio-uring's listener uses the same backlog.
    s.listen(1024)?;
    Ok(s)
}

/// Queues `sqe`; the caller has checked the room (see `ROOM_PER_CQE`).
fn push(sq: &mut squeue::SubmissionQueue<'_>, sqe: &squeue::Entry) {
    // SAFETY: the entries built in this file are an accept and a recv that
    // point to no memory, and a send whose buffer lies in `Bufs::mem`, which
    // is never unmapped, and whose bytes are not given back to the kernel
    // before this send's completion (see `Echo::sent`).
    unsafe { sq.push(sqe) }.expect("submission room checked before each completion");
}

/// The read buffers and the ring through which the kernel takes them. Both
/// mappings live as long as the process: in-flight ops point into them, and
/// the loop never ends. No Rust reference is ever made into either; the
/// kernel writes the buffers and sends read them.
struct Bufs {
    /// `BUFS * BUF_LEN` bytes; buffer `bid` starts at `bid * BUF_LEN`.
    mem: *mut u8,
    /// `BUFS` slots of `io_uring_buf` (16 bytes: addr u64, len u32, bid u16,
    /// and 2 reserved bytes, which in slot 0 are the ring's tail).
    ring: *mut u8,
    /// Our tail, ahead of the published one until `publish`.
    tail: u16,
    dirty: bool,
    /// Buffers given back that no re-armed starved read has been counted
    /// against yet (see `Echo::rearm_starved`).
    returned: usize,
}

impl Bufs {
    fn new(submitter: &Submitter<'_>) -> io::Result<Bufs> {
        let ring = ringws_peers::map(BUFS as usize * 16)?;
        // SAFETY: `ring` is a page-aligned mapping of `BUFS` slots that is
        // never unmapped, so it outlives the registration; zeroed, so the
        // kernel starts at tail 0 with an empty ring.
        unsafe { submitter.register_buf_ring_with_flags(ring as u64, BUFS, GROUP, 0)? };
        let mut b = Bufs {
            mem: ringws_peers::map(BUFS as usize * BUF_LEN)?,
            ring,
            tail: 0,
            dirty: false,
            returned: 0,
        };
        for bid in 0..BUFS {
            b.give(bid);
        }
        b.publish();
        // The first fill is no return that a starved read could wait for.
        b.returned = 0;
        Ok(b)
    }

    /// Where byte `off` of buffer `bid` is.
    fn at(&self, bid: u16, off: u32) -> *const u8 {
        debug_assert!(bid < BUFS && (off as usize) < BUF_LEN);
        self.mem
            .wrapping_add(bid as usize * BUF_LEN + off as usize)
            .cast_const()
    }

    /// Puts buffer `bid` in the next ring slot; the kernel sees it after
    /// `publish`.
    fn give(&mut self, bid: u16) {
        let slot = (self.tail & (BUFS - 1)) as usize;
        // SAFETY: `slot < BUFS`, so the 16 bytes lie inside the ring mapping,
        // and the writes are aligned (the mapping is page-aligned, slots are
        // 16 bytes). The kernel reads only the slots between its head and
        // the published tail, at most `BUFS - 1` of them here because `bid`
        // has been taken out (a completion reported it, or it was never in),
        // so it is not reading this one. Bytes 14..16, the tail in slot 0,
        // are left alone.
        unsafe {
            let e = self.ring.add(slot * 16);
            e.cast::<u64>()
                .write(self.mem as u64 + bid as u64 * BUF_LEN as u64);
            e.add(8).cast::<u32>().write(BUF_LEN as u32);
            e.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        self.returned += 1;
        self.dirty = true;
    }

    /// Makes the buffers given since the last call visible to the kernel:
    /// one store per loop turn, not one per buffer.
    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        // SAFETY: the tail is the u16 at byte 14 of the ring mapping, which is
        // 2-aligned and lives forever; the kernel only reads it, with acquire
        // ordering, which pairs with this release store so that it sees the
        // slot writes of `give` before the tail that covers them.
        unsafe { AtomicU16::from_ptr(self.ring.add(14).cast()) }
            .store(self.tail, Ordering::Release);
    }
}

/// A received chunk still (partly) to be sent back.
#[derive(Clone, Copy)]
struct Chunk {
    bid: u16,
    /// Already sent bytes of the buffer (after short writes).
    off: u32,
    len: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The peer sent EOF: send back what is queued, then close.
    Eof,
    /// A read or send failed: drop what is queued, close when no op is left.
    Failed,
}

struct Conn {
    fd: RawFd,
    /// Chunks not yet fully sent, oldest first. While `sending`, the front
    /// one is in flight; otherwise the queue is empty (or `Failed`).
    out: VecDeque<Chunk>,
    sending: bool,
    /// The multishot recv is armed: a completion without F_MORE ends it.
    reading: bool,
    /// Listed in `Echo::starved`, waiting for buffers after -ENOBUFS.
    starved: bool,
    phase: Phase,
}

struct Echo {
    listener: RawFd,
    accepting: bool,
    /// Accept failed for lack of descriptors or memory: re-arming at once
    /// would fail again at once, so wait for a connection to close.
    accept_paused: bool,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Slots whose recv ended with -ENOBUFS, oldest first; entries whose
    /// connection is gone or no longer starved are skipped.
    starved: VecDeque<usize>,
    bufs: Bufs,
}

impl Echo {
    fn complete(&mut self, sq: &mut squeue::SubmissionQueue<'_>, ud: u64, res: i32, flags: u32) {
        let slot = (ud >> 2) as usize;
        match ud & 3 {
            ACCEPT => self.accepted(sq, res, flags),
            RECV => self.received(sq, slot, res, flags),
            SEND => self.sent(sq, slot, res),
            _ => unreachable!("user_data {ud:#x} was never submitted"),
        }
    }

    fn arm_accept(&mut self, sq: &mut squeue::SubmissionQueue<'_>) {
        let sqe = opcode::AcceptMulti::new(types::Fd(self.listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ud(0, ACCEPT));
        push(sq, &sqe);
        self.accepting = true;
    }

    fn arm_recv(sq: &mut squeue::SubmissionQueue<'_>, slot: usize, c: &mut Conn) {
        // len 0: each completion may fill a whole ring buffer.
        let sqe = opcode::RecvMulti::new(types::Fd(c.fd), GROUP)
            .build()
            .user_data(ud(slot, RECV));
        push(sq, &sqe);
        c.reading = true;
    }

    fn send_front(sq: &mut squeue::SubmissionQueue<'_>, slot: usize, c: &mut Conn, bufs: &Bufs) {
        let ch = *c.out.front().expect("a queued chunk to send");
        let sqe = opcode::Send::new(types::Fd(c.fd), bufs.at(ch.bid, ch.off), ch.len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud(slot, SEND));
        push(sq, &sqe);
        c.sending = true;
    }

    fn accepted(&mut self, sq: &mut squeue::SubmissionQueue<'_>, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accepting = false;
        }
        if res >= 0 {
            let mut c = Conn {
                fd: res,
                out: VecDeque::new(),
                sending: false,
                reading: false,
                starved: false,
                phase: Phase::Open,
            };
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            Self::arm_recv(sq, slot, &mut c);
            self.conns[slot] = Some(c);
        } else if matches!(
            -res,
            libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS
        ) {
            self.accept_paused = true;
        }
        if !self.accepting && !self.accept_paused {
            self.arm_accept(sq);
        }
    }

    fn received(
        &mut self,
        sq: &mut squeue::SubmissionQueue<'_>,
        slot: usize,
        res: i32,
        flags: u32,
    ) {
        let c = self.conns[slot]
            .as_mut()
            .expect("a recv in flight keeps its slot");
        let more = cqueue::more(flags);
        if !more {
            c.reading = false;
        }
        if res > 0 {
            let bid =
                cqueue::buffer_select(flags).expect("a recv with buffer select names its buffer");
            if c.phase == Phase::Failed {
                self.bufs.give(bid);
            } else {
                c.out.push_back(Chunk {
                    bid,
                    off: 0,
                    len: res as u32,
                });
                if !c.sending {
                    Self::send_front(sq, slot, c, &self.bufs);
                }
                // The multishot ended with data (say the completion queue
                // overflowed): the connection is still open, read on.
                if !more && c.phase == Phase::Open {
                    Self::arm_recv(sq, slot, c);
                }
            }
        } else if res == -libc::ENOBUFS {
            // Every buffer waits in some send queue. Re-arming now would
            // only fail again; `rearm_starved` does it once buffers are back.
            if !more && c.phase == Phase::Open && !c.starved {
                c.starved = true;
                self.starved.push_back(slot);
            }
        } else if res == 0 {
            if c.phase == Phase::Open {
                c.phase = Phase::Eof;
            }
        } else {
            Self::fail(c, &mut self.bufs);
        }
        self.close_if_done(sq, slot);
    }

    fn sent(&mut self, sq: &mut squeue::SubmissionQueue<'_>, slot: usize, res: i32) {
        let c = self.conns[slot]
            .as_mut()
            .expect("a send in flight keeps its slot");
        c.sending = false;
        // A send of at least one byte to a stream socket sends at least one
        // byte or fails; 0 is taken as failure so that it cannot loop. After
        // a failure the rest of this chunk is dropped, not sent.
        if res <= 0 || c.phase == Phase::Failed {
            Self::fail(c, &mut self.bufs);
        } else {
            let front = c.out.front_mut().expect("a send in flight keeps its chunk");
            let n = res as u32;
            front.off += n;
            front.len -= n;
            if front.len == 0 {
                // The kernel is done reading this buffer: only now may it be
                // filled again.
                let bid = front.bid;
                c.out.pop_front();
                self.bufs.give(bid);
            }
            // The rest of a short write, or the next chunk; none after a
            // failure (`fail` emptied the queue).
            if !c.out.is_empty() {
                Self::send_front(sq, slot, c, &self.bufs);
            }
        }
        self.close_if_done(sq, slot);
    }

    /// Drops what is queued (except the chunk of a send in flight, which
    /// still reads its buffer) and ends the read, so that the connection
    /// closes once its last op completes.
    fn fail(c: &mut Conn, bufs: &mut Bufs) {
        c.phase = Phase::Failed;
        let keep = usize::from(c.sending);
        for ch in c.out.drain(keep..) {
            bufs.give(ch.bid);
        }
        if c.reading {
            // The recv would otherwise stay armed until the peer acts: a
            // shutdown makes it complete with EOF now.
            // SAFETY: `fd` is this connection's open socket; shutdown takes
            // no memory and does not release the descriptor.
            unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
        }
    }

    fn close_if_done(&mut self, sq: &mut squeue::SubmissionQueue<'_>, slot: usize) {
        let Some(c) = self.conns[slot].as_ref() else {
            return;
        };
        if c.phase == Phase::Open || c.reading || c.sending || !c.out.is_empty() {
            return;
        }
        // SAFETY: `fd` was accepted for this slot and only this slot uses it;
        // neither a recv nor a send on it is in flight, and the slot is
        // cleared right after, so the number is never used again.
        unsafe { libc::close(c.fd) };
        self.conns[slot] = None;
        self.free.push(slot);
        if self.accept_paused {
            self.accept_paused = false;
            if !self.accepting {
                self.arm_accept(sq);
            }
        }
    }

    /// Re-arms the reads that ran out of buffers, one per buffer given back
    /// since: a read re-armed with none in the ring would only fail again,
    /// and the kernel's count of taken buffers runs ahead of the completions
    /// read so far, so it cannot tell. Each re-arm spends a returned buffer
    /// and each return needs a completed send, so starved reads never spin;
    /// an unspent count is kept while anyone is starved (a re-arm that found
    /// no room is done next turn), so no starved read is forgotten.
    fn rearm_starved(&mut self, sq: &mut squeue::SubmissionQueue<'_>) {
        while self.bufs.returned > 0 && sq.len() < sq.capacity() {
            let Some(slot) = self.starved.pop_front() else {
                break;
            };
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            if !c.starved {
                continue;
            }
            c.starved = false;
            if c.phase == Phase::Open {
                Self::arm_recv(sq, slot, c);
                self.bufs.returned -= 1;
            }
        }
        if self.starved.is_empty() {
            // Returns while nobody starved are no budget for later.
            self.bufs.returned = 0;
        }
    }
}
