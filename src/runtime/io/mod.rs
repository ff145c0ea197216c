//! The per-thread event loop: a slab of socket slots, one `match` per
//! completion, and a [`Handler`] (the server's or the load generator's)
//! called straight from it.
//!
//! Each turn: submit what is queued and wait once (for a completion, or
//! until the next timer), dispatch every completion to its slot, fire due
//! timers, then hand every batch of output the handlers queued in the turn
//! to the kernel: whatever a callback sends goes out with the rest of the
//! turn's sends in one submission. On io_uring, when nothing else has
//! completed, that submission is made before the handler's turn, and the
//! sends that complete inside it are handled in the same turn
//! (`Io::send_early`).
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
//!
//! # Layout
//! * `mod.rs`: the [`Handler`] trait, [`Io`], the turn (`run`) and the one
//!   `match` per completion (`dispatch`).
//! * `sock.rs`: socket slots, their state flags, peer addresses, closing.
//! * `read.rs`: receives, the buffer ring running dry, end of input.
//! * `write.rs`: the [`Outbox`] handed out, flushes, short writes,
//!   backpressure pausing reads.
//! * `accept.rs`: accepts, direct descriptors, connects.
//! * `timers.rs`: ticks, deadlines, the wheel.
//! * `script_tests.rs`: the loop's io_uring paths driven by a scripted
//!   kernel (`uring/script.rs`), completion by completion.

mod accept;
mod read;
#[cfg(test)]
mod script_tests;
mod sock;
#[cfg(test)]
mod tests;
mod timers;
#[cfg(feature = "tls")]
mod tls;
mod write;

use sock::*;
pub use sock::{PeerName, SockId};
use timers::ticks;
pub(crate) use timers::ticks_of;

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

/// How long a timer tick is. Timeouts fire up to one tick late, never early.
const TICK: Duration = Duration::from_millis(10);
/// A deadline this far ahead needs no wait of its own (see
/// `Io::timer_wait`): twice the longest wait of either backend.
const FAR: Duration = Duration::from_secs(2);
/// Reads per readable socket per turn (epoll), so one busy peer cannot
/// starve the others.
const READS_PER_TURN: usize = 8;

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
    /// `epoch` on the monotonic clock ([`epoll::monotonic_ns`]), read just
    /// after it: `now()` is never ahead of `Instant::now()`.
    epoch_ns: u64,
    /// The turn's clock reading, in nanoseconds since `epoch`.
    now_ns: u64,
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
    /// The TLS configuration of new connections (see `tls.rs`).
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// TLS sessions by slot (sockets flagged `TLS`).
    #[cfg(feature = "tls")]
    tls_sessions: Vec<Option<Box<crate::tls::session::Session>>>,
    /// Scratch: a read's plaintext, on its way back into the read buffer.
    #[cfg(feature = "tls")]
    tls_plain: Vec<u8>,
    /// Scratch: small pieces gathered into one record.
    #[cfg(feature = "tls")]
    tls_stage: Vec<u8>,
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
    /// Bytes read.
    pub(crate) bytes_in: u64,
    /// TLS handshakes completed: TLS 1.3, TLS 1.2.
    #[cfg(feature = "tls")]
    pub(crate) tls_handshakes: [u64; 2],
    /// TLS connections that failed (a handshake refused, a bad record).
    #[cfg(feature = "tls")]
    pub(crate) tls_failed: u64,
}

impl Io {
    pub(crate) fn new(backend: Backend, pool: Pool, cfg: IoConfig) -> Io {
        let now = Instant::now();
        let epoch_ns = epoll::monotonic_ns();
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
            epoch_ns,
            now_ns: 0,
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
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_sessions: Vec::new(),
            #[cfg(feature = "tls")]
            tls_plain: Vec::new(),
            #[cfg(feature = "tls")]
            tls_stage: Vec::new(),
            counts: IoCounts::default(),
        }
    }

    /// The time at the start of this turn's dispatch.
    #[inline]
    pub fn now(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.now_ns)
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
                if c.res > 0 {
                    s.flags &= !FRESH;
                }
                let v = self.heap_rx.remove(&slot);
                if s.flags & CLOSING == 0 {
                    match (c.res, v) {
                        (n, Some(mut v)) if n > 0 => {
                            super::buf::set_len_received(&mut v, n as usize);
                            self.deliver(id, InputBuf::Heap(v), n as usize, h);
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
                    #[cfg(feature = "tls")]
                    self.tls_connected(id);
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

    /// How long the next wait may last.
    fn wait_time<H: Handler>(&self, h: &H) -> Option<Duration> {
        if !self.ready.is_empty() || !self.gone.is_empty() || !self.writable.is_empty() {
            return Some(Duration::ZERO);
        }
        self.timer_wait(h.next_deadline())
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
            self.wait_and_dispatch(h, &mut cqes)?;
        }
    }

    /// The rest of a turn, once its output is handed over and the ring
    /// refilled: waits, dispatches the completions (`cqes` is scratch
    /// space), then runs readable sockets (epoll), timers and the handler's
    /// turn.
    #[inline]
    fn wait_and_dispatch<H: Handler>(&mut self, h: &mut H, cqes: &mut Vec<Cqe>) -> io::Result<()> {
        let timeout = self.wait_time(h);
        match &mut self.backend {
            Backend::Uring(u) => u.wait(timeout, cqes)?,
            Backend::Epoll(e) => e.wait(timeout, cqes)?,
        }
        self.read_clock();
        // Twice at most: the second time for what `send_early` brought
        // (one loop, so that `dispatch` stays inlined in one place).
        let mut early = false;
        loop {
            for c in cqes.drain(..) {
                self.dispatch(c, h);
                self.tell_gone(h);
            }
            if early {
                break;
            }
            let ready = std::mem::take(&mut self.ready);
            for slot in ready {
                let s = &self.socks[slot as usize];
                let id = SockId { slot, gen: s.gen };
                if s.flags & IN_USE != 0 {
                    self.read_ready(id, h, false);
                }
                self.tell_gone(h);
            }
            self.fire_timers(h);
            self.retry_accept();
            early = true;
            if !self.send_early(cqes)? {
                break;
            }
        }
        h.turn(self);
        self.tell_gone(h);
        Ok(())
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
