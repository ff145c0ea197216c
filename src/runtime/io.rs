//! The per-thread event loop: a slab of socket slots, one `match` per
//! completion, and a [`Handler`] (the server's or the load generator's)
//! called straight from it.
//!
//! Each turn: submit what is queued and wait once (for a completion, or
//! until the next timer), dispatch every completion to its slot, fire due
//! timers, then hand every batch of output the handlers queued in the turn
//! to the kernel: whatever a callback sends goes out with the rest of the
//! turn's sends in one submission.
//!
//! A socket, as this layer keeps it ([`Sock`]):
//! * reads: one multishot `RECV` on the buffer ring (io_uring), or reads
//!   into pool buffers while epoll says it is readable. Paused while more
//!   than `max_backpressure` bytes wait to be sent (a peer that sends but
//!   does not read cannot grow the queue without bound) and resumed once
//!   half of that is gone. An empty ring ends the multishot receive
//!   (`ENOBUFS`); the socket waits on the `starved` list until buffers come
//!   back, or reads into a buffer of its own if none will.
//! * writes: at most one batch in flight and one filling behind it; a short
//!   write resumes where it stopped; the write timeout runs while a batch is
//!   in flight and makes no progress.
//! * closing: `close` cancels the socket's ops and closes it; the slot is
//!   reused (with the next generation) only once every op has completed,
//!   so no completion can reach the wrong connection and no memory an op
//!   points into is freed early. Completions of an older generation are
//!   dropped (a buffer they carry goes back to the pool).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::backend::{token, untoken, Backend, Cqe, Fd, Op, THREAD};
use super::buf::{InputBuf, Pool, RingMark, WriteBatch};
use super::outbox::Outbox;
use super::wheel::Wheel;
use super::{epoll, uring};
use crate::log;

/// How long a timer tick is. Timeouts fire up to one tick late, never early.
const TICK: Duration = Duration::from_millis(10);
/// Reads per readable socket per turn (epoll), so one busy peer cannot
/// starve the others.
const READS_PER_TURN: usize = 8;

/// A socket's slot and generation. A handler keeps its per-connection
/// state in a vector indexed by [`SockId::index`]; the generation tells a
/// reused slot from the socket that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SockId {
    pub(crate) slot: u32,
    pub(crate) gen: u16,
}

impl SockId {
    /// The slot's index: small, dense, reused once the socket is gone.
    pub fn index(self) -> usize {
        self.slot as usize
    }

    fn tok(self, op: Op) -> u64 {
        token(self.slot, self.gen, op)
    }
}

/// Why a socket went away, for the handler.
#[derive(Debug)]
pub enum Gone {
    /// The handler closed it.
    Closed,
    /// A write made no progress within the write timeout.
    WriteTimeout,
    /// A write failed (the loop logged why).
    WriteError,
}

/// What the loop calls. Each callback gets the loop (`io`) to queue output
/// and arm timers with; per-connection state is the handler's own, indexed
/// by [`SockId::index`].
pub trait Handler {
    /// A connection was accepted (the server's listener).
    fn accepted(&mut self, _io: &mut Io, _id: SockId) {}
    /// A connection started with [`Io::connect`] is connected, or failed.
    fn connected(&mut self, _io: &mut Io, _id: SockId, _res: io::Result<()>) {}
    /// Bytes arrived.
    fn data(&mut self, io: &mut Io, id: SockId, buf: InputBuf);
    /// The peer closed its end (`None`), or reading failed.
    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<io::Error>);
    /// The deadline set with [`Io::set_deadline`] passed.
    fn timer(&mut self, _io: &mut Io, _id: SockId) {}
    /// The socket is gone: drop the state kept for it. Called exactly once
    /// per socket, after which its id is dead.
    fn gone(&mut self, io: &mut Io, id: SockId, why: Gone);
    /// Everything queued on `id` when the handler asked to be notified
    /// (`Io::notify_writable`) has been sent.
    fn writable(&mut self, _io: &mut Io, _id: SockId) {}
    /// Another thread woke this loop (through the eventfd given to
    /// `Io::watch_wake`).
    fn wake(&mut self, _io: &mut Io) {}
    /// The end of each turn, after every completion and timer.
    fn turn(&mut self, _io: &mut Io) {}
    /// The next precise deadline [`Handler::turn`] wants to run at.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// The loop ends once this is true (and every op has completed).
    fn done(&self) -> bool;
}

// Sock flags.
const READ_ARMED: u16 = 1; // a multishot recv (or heap recv) is in flight
const READ_PAUSED: u16 = 1 << 1; // backpressure: do not read
const READ_CANCELLING: u16 = 1 << 2; // a cancel of the recv is in flight
const READ_READY: u16 = 1 << 3; // epoll: readable, not yet read to EAGAIN
const READ_EOF: u16 = 1 << 4; // no more reads
const WRITE_BLOCKED: u16 = 1 << 5; // epoll: waiting for room to write
const CLOSE_AFTER_FLUSH: u16 = 1 << 6;
const SHUT_AFTER_FLUSH: u16 = 1 << 7;
const CLOSING: u16 = 1 << 8;
const GONE_TOLD: u16 = 1 << 9; // the handler's `gone` ran
const DIRTY: u16 = 1 << 10; // on the dirty list
const STARVED: u16 = 1 << 11; // on the starved list
const CONNECTING: u16 = 1 << 12;
const IN_USE: u16 = 1 << 13;
const NOTIFY_WRITABLE: u16 = 1 << 14; // tell the handler when a batch is sent
                                      // io_uring: a SHUTDOWN is in flight. The kernel always runs it on an io-wq
                                      // worker and looks the descriptor up only there, so a CLOSE issued behind
                                      // it can run first, free the descriptor (a direct one, or a plain number)
                                      // for the next accept, and let the shutdown hit that new connection. The
                                      // close waits for the shutdown to complete.
const SHUTTING: u16 = 1 << 15;

/// One socket slot.
pub(crate) struct Sock {
    fd: Fd,
    /// The batch the kernel is sending.
    inflight: Option<Box<WriteBatch>>,
    /// The batch filling behind it.
    pending: Option<Box<WriteBatch>>,
    /// The handler's deadline, in ticks (0: none).
    user_due: u32,
    /// The write deadline, in ticks (0: none).
    write_due: u32,
    gen: u16,
    flags: u16,
    /// Ops in flight whose completions are still to come.
    ops: u8,
}

impl Sock {
    fn queued(&self) -> usize {
        self.inflight.as_ref().map_or(0, |b| b.bytes())
            + self.pending.as_ref().map_or(0, |b| b.bytes())
    }
}

/// A batch for a socket when no spare is left: cold, so that
/// [`Io::outbox`], on every send, stays small enough to inline.
#[cold]
fn new_batch() -> Box<WriteBatch> {
    Box::default()
}

/// Spare write batches a thread keeps. Every connection that is sending
/// holds one or two, so with fewer spares than concurrent senders each turn
/// frees and allocates batches again.
const MAX_SPARE_BATCHES: usize = 1024;
/// Of those, this many may be large (up to [`MAX_SPARE_LARGE_BYTES`] of
/// heap); the rest only if small. At most 64 x 256 KiB + 960 x 4 KiB,
/// about 20 MiB, per thread in the worst case.
const MAX_SPARE_LARGE: usize = 64;
const MAX_SPARE_LARGE_BYTES: usize = 256 << 10;
const MAX_SPARE_SMALL_BYTES: usize = 4 << 10;

/// Limits and knobs of one loop.
#[derive(Debug, Clone)]
pub(crate) struct IoConfig {
    pub max_backpressure: usize,
    pub write_timeout: Duration,
    /// The listen backlog: how many connections one accept may bring.
    pub backlog: u32,
}

/// One thread's loop: sockets, buffers, timers and the kernel interface;
/// what a [`Handler`] acts through.
pub struct Io {
    pub(crate) backend: Backend,
    pub(crate) pool: Pool,
    socks: Vec<Sock>,
    free: Vec<u32>,
    /// Sockets with output queued this turn.
    dirty: Vec<u32>,
    /// Sockets whose reads wait for buffers.
    starved: Vec<u32>,
    /// epoll: sockets still readable after their share of a turn.
    ready: Vec<u32>,
    /// Sockets closed whose handler has not been told yet.
    gone: Vec<(SockId, Gone)>,
    /// Sockets whose handler asked to hear of a sent batch, and has one.
    writable: Vec<SockId>,
    #[expect(
        clippy::vec_box,
        reason = "batches move between spares and sockets boxed: a socket keeps 8 bytes per batch slot, not 200"
    )]
    spares: Vec<Box<WriteBatch>>,
    wheel: Wheel,
    fired: Vec<u32>,
    epoch: Instant,
    now: Instant,
    /// `now` in ticks, rounded up.
    now_tick: u32,
    write_ticks: u32,
    cfg: IoConfig,
    /// How many ring buffers to keep lent (io_uring).
    ring_mark: RingMark,
    /// Heap buffers of reads in flight while the pool is dry, by slot.
    heap_rx: HashMap<u32, Vec<u8>>,
    /// `SO_PEERNAME` results in flight (direct descriptors), by slot.
    peer_bufs: HashMap<u32, Box<[u8; 32]>>,
    /// Peer addresses, by slot (learnt at accept or connect), IPv4 ones
    /// packed into 8 bytes; IPv6 ones in `peers_v6`.
    peers: Vec<PackedPeer>,
    peers_v6: HashMap<u32, SocketAddr>,
    /// Socket addresses of connects in flight, by slot.
    connect_addrs: HashMap<u32, Box<socket2::SockAddr>>,
    /// Thread ops in flight (accept, wake).
    thread_ops: usize,
    listener: Option<RawFd>,
    listener_v6: bool,
    accepting: bool,
    /// Accept into direct descriptors (io_uring, while the table has room).
    direct: bool,
    /// The size of the direct descriptor table (0: none), and how many of
    /// its entries are in use.
    files: u32,
    direct_in_use: u32,
    /// Entries kept free in the table: one multishot accept takes every
    /// connection waiting in the backlog at once, and a connection the
    /// kernel accepts into a full table is lost (`ENFILE`).
    headroom: u32,
    accept_retry: Option<Instant>,
    last_accept_warn: Option<Instant>,
    wake_fd: Option<RawFd>,
    /// What this loop has handed to the kernel to send, for the server's
    /// counters.
    pub(crate) counts: IoCounts,
}

/// Sends handed to the kernel by one loop: how well output is gathered
/// (many frames per write is the point of the per-turn write batch).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IoCounts {
    /// Send ops submitted (io_uring) or `sendmsg` calls made (epoll).
    pub(crate) writes: u64,
    /// Bytes in the batches handed over.
    pub(crate) bytes: u64,
}

impl Io {
    pub(crate) fn new(backend: Backend, pool: Pool, cfg: IoConfig) -> Io {
        let now = Instant::now();
        let write_ticks = ticks(cfg.write_timeout);
        let files = match &backend {
            Backend::Uring(u) => u.files,
            Backend::Epoll(_) => 0,
        };
        let headroom = cfg.backlog.saturating_add(64);
        let direct = files > headroom;
        let ring_mark = RingMark::new(pool.inner.count as usize);
        Io {
            backend,
            pool,
            socks: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            starved: Vec::new(),
            ready: Vec::new(),
            gone: Vec::new(),
            writable: Vec::new(),
            spares: Vec::new(),
            wheel: Wheel::new(),
            fired: Vec::new(),
            epoch: now,
            now,
            now_tick: 1,
            write_ticks,
            cfg,
            ring_mark,
            heap_rx: HashMap::new(),
            peer_bufs: HashMap::new(),
            peers: Vec::new(),
            peers_v6: HashMap::new(),
            connect_addrs: HashMap::new(),
            thread_ops: 0,
            listener: None,
            listener_v6: false,
            accepting: false,
            direct,
            files,
            direct_in_use: 0,
            headroom,
            accept_retry: None,
            last_accept_warn: None,
            wake_fd: None,
            counts: IoCounts::default(),
        }
    }

    /// The time at the start of this turn's dispatch.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Starts accepting on `listener` (non-blocking for epoll).
    pub(crate) fn listen(&mut self, listener: RawFd) -> io::Result<()> {
        self.listener = Some(listener);
        self.listener_v6 = epoll::local_addr(listener).is_some_and(|a| a.is_ipv6());
        self.accepting = true;
        match &mut self.backend {
            Backend::Uring(u) => {
                u.accept(listener, self.direct, token(THREAD, 0, Op::Accept));
                self.thread_ops += 1;
            }
            Backend::Epoll(e) => e.add(listener, token(THREAD, 0, Op::Accept), false)?,
        }
        Ok(())
    }

    /// Stops accepting new connections (the listener is the caller's to
    /// close, once [`Io::accept_ops_done`] says no accept is in flight).
    pub(crate) fn stop_accepting(&mut self) {
        if !self.accepting {
            return;
        }
        self.accepting = false;
        let Some(l) = self.listener else { return };
        match &mut self.backend {
            Backend::Uring(u) => {
                u.cancel(token(THREAD, 0, Op::Accept), token(THREAD, 0, Op::Cancel));
                self.thread_ops += 1;
            }
            Backend::Epoll(e) => e.remove(l),
        }
    }

    /// Watches `efd` (an eventfd) for wake-ups from other threads.
    pub(crate) fn watch_wake(&mut self, efd: RawFd) -> io::Result<()> {
        self.wake_fd = Some(efd);
        match &mut self.backend {
            Backend::Uring(u) => {
                u.read_wake(efd, token(THREAD, 0, Op::Wake));
                self.thread_ops += 1;
            }
            Backend::Epoll(e) => e.add(efd, token(THREAD, 0, Op::Wake), false)?,
        }
        Ok(())
    }

    fn alloc(&mut self, fd: Fd) -> SockId {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.socks.push(Sock {
                    fd,
                    inflight: None,
                    pending: None,
                    user_due: 0,
                    write_due: 0,
                    gen: 0,
                    flags: 0,
                    ops: 0,
                });
                self.peers.push(PackedPeer::NONE);
                (self.socks.len() - 1) as u32
            }
        };
        let s = &mut self.socks[slot as usize];
        s.fd = fd;
        s.flags = IN_USE;
        s.ops = 0;
        s.user_due = 0;
        s.write_due = 0;
        let gen = s.gen;
        self.set_peer(slot, None);
        SockId { slot, gen }
    }

    fn sock(&self, id: SockId) -> Option<&Sock> {
        self.socks
            .get(id.slot as usize)
            .filter(|s| s.gen == id.gen && s.flags & IN_USE != 0)
    }

    fn sock_mut(&mut self, id: SockId) -> Option<&mut Sock> {
        self.socks
            .get_mut(id.slot as usize)
            .filter(|s| s.gen == id.gen && s.flags & IN_USE != 0)
    }

    /// The live socket in `slot`, if any.
    pub(crate) fn id_of(&self, slot: u32) -> Option<SockId> {
        let s = self.socks.get(slot as usize)?;
        (s.flags & IN_USE != 0).then_some(SockId { slot, gen: s.gen })
    }

    /// Is `id` a live socket that is not closing?
    pub fn is_open(&self, id: SockId) -> bool {
        self.sock(id).is_some_and(|s| s.flags & CLOSING == 0)
    }

    /// The peer's address, if known.
    pub fn peer(&mut self, id: SockId) -> Option<SocketAddr> {
        let s = self.sock(id)?;
        let fd = s.fd;
        if let Some(p) = self.get_peer(id.slot) {
            return Some(p);
        }
        let Fd::Raw(fd) = fd else { return None };
        let p = epoll::peer_addr(fd);
        self.set_peer(id.slot, p);
        p
    }

    fn get_peer(&self, slot: u32) -> Option<SocketAddr> {
        match self.peers[slot as usize] {
            PackedPeer::V6 => self.peers_v6.get(&slot).copied(),
            p => p.v4(),
        }
    }

    fn set_peer(&mut self, slot: u32, a: Option<SocketAddr>) {
        let p = match a {
            None => PackedPeer::NONE,
            Some(SocketAddr::V4(v4)) => PackedPeer::from_v4(v4),
            Some(v6) => {
                self.peers_v6.insert(slot, v6);
                PackedPeer::V6
            }
        };
        if self.peers[slot as usize] == PackedPeer::V6 && p != PackedPeer::V6 {
            self.peers_v6.remove(&slot);
        }
        self.peers[slot as usize] = p;
    }

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
    fn pending_of(&mut self, id: SockId) -> Option<&mut WriteBatch> {
        let s = self.socks.get_mut(id.slot as usize)?;
        if s.gen != id.gen || s.flags & (IN_USE | CLOSING) != IN_USE {
            return None;
        }
        s.pending.as_deref_mut()
    }

    #[inline]
    fn put_batch(&mut self, mut b: Box<WriteBatch>) {
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

    /// The loop's clock in ticks (10 ms), for handlers that keep a time per
    /// connection in 4 bytes.
    pub(crate) fn now_ticks(&self) -> u32 {
        self.now_tick
    }

    /// The instant `ticks` stands for (see [`Io::now_ticks`]).
    pub(crate) fn instant_of(&self, ticks: u32) -> Instant {
        self.epoch + TICK * ticks
    }

    /// Sets (or clears) the deadline at which [`Handler::timer`] runs for
    /// `id`. Coarse: it fires up to one tick (10 ms) late, never early.
    pub fn set_deadline(&mut self, id: SockId, at: Option<Instant>) {
        let due = at.map_or(0, |t| self.tick_of(t));
        if let Some(s) = self.sock_mut(id) {
            if s.user_due != due {
                s.user_due = due;
                self.rearm(id.slot);
            }
        }
    }

    fn tick_of(&self, t: Instant) -> u32 {
        // Round up, so a deadline never fires early; 0 means none.
        let d = t.saturating_duration_since(self.epoch);
        u32::try_from(d.as_nanos().div_ceil(TICK.as_nanos()))
            .unwrap_or(u32::MAX - 1)
            .max(1)
    }

    /// Makes sure the wheel wakes `slot` no later than its earliest
    /// deadline. Lazy: an entry due earlier is left in place (when it fires,
    /// `fire_timers` finds nothing due and arms the real deadline), and a
    /// cleared deadline is not cancelled. So the write deadline, set on
    /// every send and cleared on every completion, costs the wheel nothing
    /// while the entry armed for an earlier send is still ahead.
    #[inline]
    fn rearm(&mut self, slot: u32) {
        let s = &self.socks[slot as usize];
        let due = match (s.user_due, s.write_due) {
            (0, 0) => return,
            (0, w) => w,
            (u, 0) => u,
            (u, w) => u.min(w),
        };
        if self.wheel.due(slot).is_none_or(|d| d > due) {
            self.wheel.arm(slot, due);
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

    /// Closes `id` once everything queued is sent.
    pub fn close_after_flush(&mut self, id: SockId) {
        let Some(s) = self.sock_mut(id) else { return };
        if s.queued() == 0 {
            self.close(id);
        } else {
            s.flags |= CLOSE_AFTER_FLUSH;
        }
    }

    /// Shuts the sending direction down once everything queued is sent;
    /// reads go on.
    pub fn shutdown_after_flush(&mut self, id: SockId) {
        let Some(s) = self.sock_mut(id) else { return };
        if s.queued() == 0 {
            self.shutdown_write(id);
        } else {
            s.flags |= SHUT_AFTER_FLUSH;
        }
    }

    fn shutdown_write(&mut self, id: SockId) {
        let slot = id.slot as usize;
        let fd = self.socks[slot].fd;
        match (&mut self.backend, fd) {
            (Backend::Uring(u), fd) => {
                u.shutdown(fd, libc::SHUT_WR, id.tok(Op::Shutdown));
                self.socks[slot].ops += 1;
                self.socks[slot].flags |= SHUTTING;
            }
            (Backend::Epoll(_), Fd::Raw(f)) => epoll::shutdown_write(f),
            (Backend::Epoll(_), Fd::Fixed(_)) => unreachable!("epoll has no direct descriptors"),
        }
    }

    /// Closes `id` now: what is queued is dropped, ops are cancelled. The
    /// handler's [`Handler::gone`] follows.
    pub fn close(&mut self, id: SockId) {
        self.close_for(id, Gone::Closed);
    }

    fn close_for(&mut self, id: SockId, why: Gone) {
        let Some(s) = self.sock_mut(id) else { return };
        if s.flags & CLOSING != 0 {
            return;
        }
        s.flags |= CLOSING;
        s.user_due = 0;
        s.write_due = 0;
        let pending = s.pending.take();
        let fd = s.fd;
        if let Some(b) = pending {
            self.put_batch(b);
        }
        self.wheel.cancel(id.slot);
        match &mut self.backend {
            Backend::Uring(_) if self.socks[id.slot as usize].flags & SHUTTING != 0 => {
                // Closed once the shutdown completes (see SHUTTING).
            }
            Backend::Uring(u) => {
                u.close(fd, id.tok(Op::Cancel), id.tok(Op::Close));
                self.socks[id.slot as usize].ops += 2;
            }
            Backend::Epoll(_) => {
                let s = &mut self.socks[id.slot as usize];
                let inflight = s.inflight.take();
                if let Fd::Raw(f) = fd {
                    // Closed once: CLOSING is set above.
                    epoll::close(f);
                }
                if let Some(b) = inflight {
                    self.put_batch(b);
                }
            }
        }
        self.gone.push((id, why));
    }

    /// Frees the slot once the handler knows and every op is back.
    #[inline]
    fn maybe_release(&mut self, slot: u32) {
        let s = &self.socks[slot as usize];
        if s.flags & (CLOSING | GONE_TOLD) == CLOSING | GONE_TOLD && s.ops == 0 {
            self.release(slot);
        }
    }

    #[cold]
    fn release(&mut self, slot: u32) {
        let s = &mut self.socks[slot as usize];
        s.flags = 0;
        s.gen = s.gen.wrapping_add(1);
        let inflight = s.inflight.take();
        if let Some(b) = inflight {
            self.put_batch(b);
        }
        self.heap_rx.remove(&slot);
        self.peer_bufs.remove(&slot);
        self.connect_addrs.remove(&slot);
        self.free.push(slot);
    }

    /// Connects to `addr` (from `source`, when given), non-blocking; the
    /// result comes to [`Handler::connected`].
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        source: Option<std::net::IpAddr>,
    ) -> io::Result<SockId> {
        use socket2::{Domain, Protocol, Socket, Type};
        use std::os::fd::IntoRawFd;
        let s = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        if let Some(ip) = source {
            // Port 0: each source address has its own ephemeral port range.
            s.bind(&SocketAddr::new(ip, 0).into())?;
        }
        s.set_nodelay(true)?;
        let epoll = matches!(self.backend, Backend::Epoll(_));
        if epoll {
            s.set_nonblocking(true)?;
        }
        let fd = s.into_raw_fd();
        let id = self.alloc(Fd::Raw(fd));
        self.socks[id.slot as usize].flags |= CONNECTING;
        self.set_peer(id.slot, Some(addr));
        let sa = Box::new(socket2::SockAddr::from(addr));
        match &mut self.backend {
            Backend::Uring(u) => {
                u.connect(fd, &sa, id.tok(Op::Connect));
                self.socks[id.slot as usize].ops += 1;
                self.connect_addrs.insert(id.slot, sa);
            }
            Backend::Epoll(e) => {
                // Watched only once connecting: an unconnected socket reads
                // as writable (and hung up). The edge-triggered watch still
                // reports a connect that ended in between.
                let res = epoll::connect(fd, &sa).and_then(|()| e.add(fd, id.tok(Op::Ready), true));
                if let Err(err) = res {
                    self.close(id);
                    return Err(err);
                }
            }
        }
        Ok(id)
    }

    /// Starts reading `id` (after accept or connect).
    fn start_reads(&mut self, id: SockId) {
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

    /// Backpressure: pauses reads past the limit, resumes them below half.
    #[inline]
    fn check_pressure(&mut self, slot: u32) {
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
    fn pressure_changed(&mut self, slot: u32) {
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
    fn flush(&mut self) {
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

    /// Moves the pending batch in flight, if there is nothing in flight.
    #[inline]
    fn start_send(&mut self, slot: u32) {
        let s = &mut self.socks[slot as usize];
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
    fn send_inflight(&mut self, slot: u32) {
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
    fn write_now(&mut self, slot: u32) {
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
    fn sent(&mut self, slot: u32, res: io::Result<()>) {
        let id = SockId {
            slot,
            gen: self.socks[slot as usize].gen,
        };
        if let Err(e) = res {
            log!(Debug, "{}: write error: {e}", self.peer_name(id));
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
        let s = &mut self.socks[slot as usize];
        if s.pending.as_ref().is_some_and(|p| !p.is_empty()) {
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

    /// A printable name of the peer for log lines.
    pub fn peer_name(&mut self, id: SockId) -> PeerName {
        PeerName(self.peer(id), id.slot)
    }

    /// Lends ring buffers up to the low-water mark and restarts reads that
    /// waited for buffers.
    fn refill(&mut self) {
        if let Backend::Uring(u) = &mut self.backend {
            let want = self.ring_mark.next_turn(self.pool.in_ring());
            u.lend(&self.pool, want);
            self.ring_mark.lent(self.pool.in_ring());
        }
        if self.starved.is_empty() {
            return;
        }
        let starved = std::mem::take(&mut self.starved);
        for slot in starved {
            let s = &mut self.socks[slot as usize];
            s.flags &= !STARVED;
            let id = SockId { slot, gen: s.gen };
            self.start_reads(id);
        }
    }

    /// Handles one completion.
    fn dispatch<H: Handler>(&mut self, c: Cqe, h: &mut H) {
        let Some((slot, gen, op)) = untoken(c.ud) else {
            return;
        };
        if slot == THREAD {
            return self.dispatch_thread(c, op, h);
        }
        let Some(s) = self.socks.get_mut(slot as usize) else {
            return;
        };
        // A buffer this completion carries goes back whatever happens.
        let buf = match op {
            Op::Recv => uring::cqe_buffer(c.flags),
            _ => None,
        };
        let current = s.gen == gen && s.flags & IN_USE != 0;
        let id = SockId { slot, gen };
        if op != Op::Ready && current {
            // Every io_uring op but a multishot recv with more to come is
            // done with this completion.
            if !(op == Op::Recv && uring::cqe_more(c.flags)) {
                s.ops -= 1;
            }
        }
        if !current {
            if let Some((bid, more)) = buf {
                if c.res > 0 {
                    drop(self.pool.taken(bid, c.res as usize, more));
                } else {
                    self.pool.returned(bid, more);
                }
            }
            return;
        }
        match op {
            Op::Recv => self.on_recv(id, c, buf, h),
            Op::RecvHeap => {
                let s = &mut self.socks[slot as usize];
                s.flags &= !READ_ARMED;
                let v = self.heap_rx.remove(&slot);
                if s.flags & CLOSING == 0 {
                    match (c.res, v) {
                        (n, Some(mut v)) if n > 0 => {
                            super::buf::set_len_received(&mut v, n as usize);
                            h.data(self, id, InputBuf::Heap(v));
                            self.after_read(id);
                        }
                        (0, _) => self.read_ended(id, None, h),
                        (e, _) => self.read_ended(id, Some(io::Error::from_raw_os_error(-e)), h),
                    }
                }
            }
            Op::Send => {
                let s = &mut self.socks[slot as usize];
                if s.flags & CLOSING != 0 {
                    // Cancelled, or done after all: either way no more.
                } else if c.res < 0 {
                    self.sent(slot, Err(io::Error::from_raw_os_error(-c.res)));
                } else if c.res == 0 {
                    self.sent(slot, Err(io::ErrorKind::WriteZero.into()));
                } else {
                    let b = s.inflight.as_deref_mut().expect("a batch in flight");
                    if b.advance(c.res as usize) {
                        self.sent(slot, Ok(()));
                    } else {
                        // Short write: progress resets the write timeout.
                        s.write_due = self.wheel.now() + self.write_ticks + 1;
                        self.rearm(slot);
                        self.send_inflight(slot);
                    }
                }
            }
            Op::Cancel => {
                let s = &mut self.socks[slot as usize];
                s.flags &= !READ_CANCELLING;
            }
            Op::Close => {
                if let Fd::Fixed(_) = self.socks[slot as usize].fd {
                    self.direct_in_use -= 1;
                    if !self.direct && self.files > 0 && self.direct_in_use < self.files / 2 {
                        // Room again: back to direct descriptors.
                        self.direct = true;
                        if let (Backend::Uring(u), true) = (&mut self.backend, self.accepting) {
                            u.cancel(token(THREAD, 0, Op::Accept), token(THREAD, 0, Op::Cancel));
                            self.thread_ops += 1;
                        }
                    }
                }
            }
            Op::Shutdown => {
                let s = &mut self.socks[slot as usize];
                s.flags &= !SHUTTING;
                if s.flags & CLOSING != 0 {
                    // The close that waited for it (see SHUTTING).
                    let fd = s.fd;
                    if let Backend::Uring(u) = &mut self.backend {
                        u.close(fd, id.tok(Op::Cancel), id.tok(Op::Close));
                        self.socks[slot as usize].ops += 2;
                    }
                }
            }
            Op::Connect => {
                let s = &mut self.socks[slot as usize];
                s.flags &= !CONNECTING;
                self.connect_addrs.remove(&slot);
                if s.flags & CLOSING != 0 {
                } else if c.res < 0 {
                    h.connected(self, id, Err(io::Error::from_raw_os_error(-c.res)));
                } else {
                    self.start_reads(id);
                    h.connected(self, id, Ok(()));
                }
            }
            Op::Peer => {
                if let Some(b) = self.peer_bufs.remove(&slot) {
                    if c.res > 0 {
                        let p = parse_sockaddr(&b[..c.res as usize]);
                        self.set_peer(slot, p);
                    }
                }
            }
            Op::Ready => self.on_ready(id, c.res, h),
            Op::Accept | Op::Wake => {}
        }
        self.maybe_release(slot);
    }

    fn on_recv<H: Handler>(&mut self, id: SockId, c: Cqe, buf: Option<(u16, bool)>, h: &mut H) {
        let slot = id.slot;
        let more = uring::cqe_more(c.flags);
        let s = &mut self.socks[slot as usize];
        if !more {
            s.flags &= !READ_ARMED;
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
                h.data(self, id, InputBuf::Pooled(b));
                self.after_read(id);
            }
            (0, None) => self.read_ended(id, None, h),
            (e, None) if e == -libc::ENOBUFS => {
                self.ring_mark.ran_dry();
                let s = &mut self.socks[slot as usize];
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
                log!(Warn, "recv returned {n} bytes without a buffer");
                self.after_read(id);
            }
        }
    }

    /// After a read's data was handled: re-arm a multishot receive that
    /// ended, unless paused, closed or at EOF.
    fn after_read(&mut self, id: SockId) {
        let Some(s) = self.sock(id) else { return };
        if s.flags & (READ_ARMED | READ_PAUSED | READ_EOF | CLOSING | STARVED) == 0 {
            if let Backend::Uring(_) = self.backend {
                self.start_reads(id);
            }
        }
    }

    fn read_ended<H: Handler>(&mut self, id: SockId, err: Option<io::Error>, h: &mut H) {
        let s = &mut self.socks[id.slot as usize];
        if s.flags & READ_EOF != 0 {
            return;
        }
        s.flags |= READ_EOF;
        s.flags &= !READ_READY;
        h.eof(self, id, err);
    }

    /// epoll: readiness of a socket.
    fn on_ready<H: Handler>(&mut self, id: SockId, events: i32, h: &mut H) {
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
            self.read_ready(id, h);
        }
    }

    /// epoll: reads a readable socket until it would block, a share per turn.
    fn read_ready<H: Handler>(&mut self, id: SockId, h: &mut H) {
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
            match epoll::recv(fd, buf.as_mut_slice()) {
                Ok(0) => return self.read_ended(id, None, h),
                Ok(n) => {
                    match &mut buf {
                        InputBuf::Pooled(p) => p.truncate(n),
                        InputBuf::Heap(v) => v.truncate(n),
                    }
                    h.data(self, id, buf);
                    // Output the handler queued goes out before the next
                    // read, so backpressure can pause it.
                    self.flush();
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

    fn dispatch_thread<H: Handler>(&mut self, c: Cqe, op: Op, h: &mut H) {
        match op {
            Op::Accept => self.on_accept(c, h),
            Op::Wake => {
                if let Backend::Uring(u) = &mut self.backend {
                    self.thread_ops -= 1;
                    if let Some(efd) = self.wake_fd {
                        if !h.done() {
                            u.read_wake(efd, token(THREAD, 0, Op::Wake));
                            self.thread_ops += 1;
                        }
                    }
                } else if let Some(efd) = self.wake_fd {
                    epoll::read_eventfd(efd);
                }
                h.wake(self);
            }
            Op::Cancel => self.thread_ops -= 1,
            _ => {}
        }
    }

    fn on_accept<H: Handler>(&mut self, c: Cqe, h: &mut H) {
        let uring = matches!(self.backend, Backend::Uring(_));
        if uring && !uring::cqe_more(c.flags) {
            self.thread_ops -= 1;
        }
        let Some(listener) = self.listener else {
            return;
        };
        if uring {
            if c.res >= 0 {
                let fd = if self.direct {
                    Fd::Fixed(c.res as u32)
                } else {
                    Fd::Raw(c.res)
                };
                self.accept_one(fd, h);
            } else if c.res == -libc::ENFILE && self.direct {
                // The file table is full after all (the kernel dropped that
                // connection): plain descriptors until half is free.
                log!(
                    Warn,
                    "direct descriptor table full; accepting plain descriptors"
                );
                self.direct = false;
            } else if c.res != -libc::ECANCELED {
                self.accept_failed(io::Error::from_raw_os_error(-c.res));
            }
            if !uring::cqe_more(c.flags) && self.accepting {
                if c.res < 0 && c.res != -libc::ENFILE && c.res != -libc::ECANCELED {
                    // Back off instead of spinning on an accept that fails.
                    self.accept_retry = Some(self.now + Duration::from_millis(10));
                } else if let Backend::Uring(u) = &mut self.backend {
                    u.accept(listener, self.direct, token(THREAD, 0, Op::Accept));
                    self.thread_ops += 1;
                }
            }
        } else {
            // epoll: level-triggered; accept a bounded batch per turn.
            for _ in 0..64 {
                if !self.accepting {
                    return;
                }
                match epoll::accept(listener) {
                    Ok(fd) => self.accept_one(Fd::Raw(fd), h),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.accept_failed(e);
                        if let (Backend::Epoll(ep), true) = (&mut self.backend, self.accepting) {
                            ep.remove(listener);
                            self.accept_retry = Some(self.now + Duration::from_millis(10));
                        }
                        return;
                    }
                }
            }
        }
    }

    fn accept_failed(&mut self, e: io::Error) {
        // EMFILE and friends: say so, once a second.
        if self
            .last_accept_warn
            .is_none_or(|t| self.now.duration_since(t) >= Duration::from_secs(1))
        {
            log!(Warn, "accept failed: {e}");
            self.last_accept_warn = Some(self.now);
        }
    }

    fn retry_accept(&mut self) {
        let Some(at) = self.accept_retry else { return };
        if self.now < at {
            return;
        }
        self.accept_retry = None;
        let Some(l) = self.listener else { return };
        if !self.accepting {
            return;
        }
        match &mut self.backend {
            Backend::Uring(u) => {
                u.accept(l, self.direct, token(THREAD, 0, Op::Accept));
                self.thread_ops += 1;
            }
            Backend::Epoll(e) => {
                if e.add(l, token(THREAD, 0, Op::Accept), false).is_err() {
                    self.accept_retry = Some(self.now + Duration::from_millis(10));
                }
            }
        }
    }

    fn accept_one<H: Handler>(&mut self, fd: Fd, h: &mut H) {
        let id = self.alloc(fd);
        match (&mut self.backend, fd) {
            (Backend::Uring(u), Fd::Fixed(i)) => {
                self.direct_in_use += 1;
                if self.direct && self.direct_in_use + self.headroom >= self.files {
                    // Nearly full: plain descriptors until half is free.
                    log!(
                        Info,
                        "direct descriptor table nearly full; accepting plain descriptors"
                    );
                    self.direct = false;
                    u.cancel(token(THREAD, 0, Op::Accept), token(THREAD, 0, Op::Cancel));
                    self.thread_ops += 1;
                }
                // Direct descriptors have no fd for getpeername: ask the ring.
                let mut b = Box::new([0u8; 32]);
                // SO_PEERNAME fails unless the length fits the family.
                let len = if self.listener_v6 { 28 } else { 16 };
                u.peer_name(i, &mut b[..len], id.tok(Op::Peer));
                self.peer_bufs.insert(id.slot, b);
                self.socks[id.slot as usize].ops += 1;
            }
            (Backend::Epoll(e), Fd::Raw(f)) => {
                if let Err(err) = e.add(f, id.tok(Op::Ready), true) {
                    log!(Warn, "cannot watch an accepted socket: {err}");
                    self.close(id);
                    return;
                }
            }
            _ => {}
        }
        self.start_reads(id);
        h.accepted(self, id);
    }

    /// Ops in flight, the thread's included.
    fn ops_in_flight(&self) -> usize {
        self.thread_ops + self.socks.iter().map(|s| s.ops as usize).sum::<usize>()
    }

    /// Tells handlers of sockets that went away, and of sent batches they
    /// asked to hear of. Runs after every completion: the usual nothing
    /// to tell costs two comparisons.
    #[inline]
    fn tell_gone<H: Handler>(&mut self, h: &mut H) {
        if !self.gone.is_empty() || !self.writable.is_empty() {
            self.tell_gone_slow(h);
        }
    }

    #[cold]
    fn tell_gone_slow<H: Handler>(&mut self, h: &mut H) {
        loop {
            if let Some((id, why)) = self.gone.pop() {
                if let Some(s) = self.socks.get_mut(id.slot as usize) {
                    s.flags |= GONE_TOLD;
                }
                h.gone(self, id, why);
                self.maybe_release(id.slot);
            } else if let Some(id) = self.writable.pop() {
                if self.is_open(id) {
                    h.writable(self, id);
                }
            } else {
                return;
            }
        }
    }

    fn fire_timers<H: Handler>(&mut self, h: &mut H) {
        let now_tick = self.tick_of(self.now).saturating_sub(1);
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.advance(now_tick, &mut fired);
        for &slot in &fired {
            let s = &mut self.socks[slot as usize];
            if s.flags & (IN_USE | CLOSING) != IN_USE {
                continue;
            }
            let id = SockId { slot, gen: s.gen };
            let (write_due, user_due) = (s.write_due, s.user_due);
            if write_due != 0 && write_due <= now_tick {
                log!(
                    Info,
                    "{}: write timed out after {:?} (the peer is not reading); closed",
                    self.peer_name(id),
                    self.cfg.write_timeout
                );
                self.close_for(id, Gone::WriteTimeout);
            } else if user_due != 0 && user_due <= now_tick {
                self.socks[slot as usize].user_due = 0;
                self.rearm(slot);
                h.timer(self, id);
            } else {
                self.rearm(slot);
            }
        }
        fired.clear();
        self.fired = fired;
    }

    /// How long the next wait may last.
    fn wait_time<H: Handler>(&self, h: &H) -> Option<Duration> {
        if !self.ready.is_empty() || !self.gone.is_empty() || !self.writable.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut until: Option<Instant> = self.wheel.next_due().map(|t| self.epoch + TICK * t);
        for t in [h.next_deadline(), self.accept_retry].into_iter().flatten() {
            until = Some(until.map_or(t, |u| u.min(t)));
        }
        until.map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Runs the loop until the handler is done and every op is back.
    pub fn run<H: Handler>(&mut self, h: &mut H) -> io::Result<()> {
        let mut cqes = Vec::with_capacity(256);
        let mut cancelled_all = false;
        loop {
            self.flush();
            self.refill();
            if h.done() {
                if !cancelled_all {
                    cancelled_all = true;
                    self.cancel_everything();
                    // epoll closes at once: the handlers hear of it now.
                    self.tell_gone(h);
                }
                if self.ops_in_flight() == 0 {
                    return Ok(());
                }
            }
            let timeout = self.wait_time(h);
            match &mut self.backend {
                Backend::Uring(u) => u.wait(timeout, &mut cqes)?,
                Backend::Epoll(e) => e.wait(timeout, &mut cqes)?,
            }
            self.now = Instant::now();
            self.now_tick = self.tick_of(self.now);
            for c in cqes.drain(..) {
                self.dispatch(c, h);
                self.tell_gone(h);
            }
            let ready = std::mem::take(&mut self.ready);
            for slot in ready {
                let s = &self.socks[slot as usize];
                let id = SockId { slot, gen: s.gen };
                if s.flags & IN_USE != 0 {
                    self.read_ready(id, h);
                }
                self.tell_gone(h);
            }
            self.fire_timers(h);
            self.retry_accept();
            h.turn(self);
            self.tell_gone(h);
        }
    }

    /// At the end: closes every socket still open, which cancels its ops.
    fn cancel_everything(&mut self) {
        self.stop_accepting();
        for slot in 0..self.socks.len() as u32 {
            let s = &self.socks[slot as usize];
            if s.flags & IN_USE != 0 {
                let id = SockId { slot, gen: s.gen };
                self.close(id);
            }
        }
        if let Backend::Uring(u) = &mut self.backend {
            if self.thread_ops > 0 {
                // The wake-up read and anything else of the thread's.
                u.cancel_any(token(THREAD, 0, Op::Cancel));
                self.thread_ops += 1;
            }
        }
    }
}

/// An IPv4 peer address in 8 bytes: address, port, and a marker in the
/// top bits that tells "none" and "IPv6, see the side table" apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedPeer(u64);

impl PackedPeer {
    const NONE: PackedPeer = PackedPeer(0);
    const V6: PackedPeer = PackedPeer(2 << 48);
    const V4_TAG: u64 = 1 << 48;

    fn from_v4(a: std::net::SocketAddrV4) -> PackedPeer {
        PackedPeer(Self::V4_TAG | (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()))
    }

    fn v4(self) -> Option<SocketAddr> {
        (self.0 >> 48 == 1).then(|| {
            let ip = std::net::Ipv4Addr::from((self.0 >> 16) as u32);
            SocketAddr::from((ip, self.0 as u16))
        })
    }
}

/// A peer's address for a log line, or the slot when unknown.
pub struct PeerName(Option<SocketAddr>, u32);

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => write!(f, "connection {}", self.1),
        }
    }
}

/// `d` in loop ticks (10 ms), rounded up.
pub(crate) fn ticks_of(d: Duration) -> u32 {
    ticks(d)
}

fn ticks(d: Duration) -> u32 {
    u32::try_from(d.as_nanos().div_ceil(TICK.as_nanos())).unwrap_or(u32::MAX / 2)
}

fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as i32;
    match family {
        libc::AF_INET if b.len() >= 8 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            Some(SocketAddr::from(([b[4], b[5], b[6], b[7]], port)))
        }
        libc::AF_INET6 if b.len() >= 24 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip: [u8; 16] = b[8..24].try_into().ok()?;
            Some(SocketAddr::from((ip, port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_io() -> Io {
        let pool = Pool::new(1024, 4).unwrap();
        let backend = Backend::Epoll(epoll::Epoll::new().unwrap());
        let cfg = IoConfig {
            max_backpressure: 1 << 20,
            write_timeout: Duration::from_secs(1),
            backlog: 16,
        };
        Io::new(backend, pool, cfg)
    }

    /// As many connections as send at once must find a spare batch when the
    /// next turn comes, or every turn allocates again (see
    /// `MAX_SPARE_BATCHES`); large batches are kept only in small numbers.
    #[test]
    fn spare_batches_cover_concurrent_senders_and_bound_large_ones() {
        let mut io = new_io();
        for _ in 0..1000 {
            io.put_batch(Box::default());
        }
        assert_eq!(io.spares.len(), 1000);

        let mut io = new_io();
        for _ in 0..100 {
            let mut b = Box::<WriteBatch>::default();
            b.hdr.reserve(MAX_SPARE_SMALL_BYTES);
            io.put_batch(b);
        }
        assert_eq!(io.spares.len(), MAX_SPARE_LARGE);
        let mut huge = Box::<WriteBatch>::default();
        huge.hdr.reserve(MAX_SPARE_LARGE_BYTES);
        io.spares.pop();
        io.put_batch(huge);
        assert_eq!(io.spares.len(), MAX_SPARE_LARGE - 1);
    }

    #[test]
    fn peer_addresses_pack_and_unpack() {
        let mut io = new_io();
        let id = io.alloc(Fd::Raw(-1));
        for a in [
            "1.2.3.4:5",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "[::1]:9",
            "[fe80::1]:65535",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            io.set_peer(id.slot, Some(a));
            assert_eq!(io.get_peer(id.slot), Some(a));
        }
        io.set_peer(id.slot, None);
        assert_eq!(io.get_peer(id.slot), None);
        assert!(io.peers_v6.is_empty());
    }

    /// What an idle connection costs this layer: its slot, its timer node
    /// and its peer address (`scripts/idle-memory.sh` measures the whole).
    #[test]
    fn a_socket_slot_stays_small() {
        let slot = std::mem::size_of::<Sock>() + std::mem::size_of::<PackedPeer>();
        eprintln!("socket slot {slot} bytes");
        assert!(slot <= 48, "socket slot grew to {slot} bytes");
    }
}
