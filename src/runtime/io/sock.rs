//! Socket slots: the state one socket keeps in the loop (its flags, its
//! batches, its deadlines), allocation and reuse by generation, peer
//! addresses, and closing: a slot is reused only once every op on it has
//! completed and the handler has been told.

use std::net::SocketAddr;

use super::*;

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

    pub(super) fn tok(self, op: Op) -> u64 {
        token(self.slot, self.gen, op)
    }
}

// Sock flags: 18 of 32 bits used, room for the state TLS and the HTTP
// path will add.
/// A multishot recv (or heap recv) is in flight.
pub(super) const READ_ARMED: u32 = 1;
/// Backpressure: do not read.
pub(super) const READ_PAUSED: u32 = 1 << 1;
/// A cancel of the recv is in flight.
pub(super) const READ_CANCELLING: u32 = 1 << 2;
/// epoll: readable, not yet read to EAGAIN.
pub(super) const READ_READY: u32 = 1 << 3;
/// No more reads.
pub(super) const READ_EOF: u32 = 1 << 4;
/// epoll: waiting for room to write.
pub(super) const WRITE_BLOCKED: u32 = 1 << 5;
pub(super) const CLOSE_AFTER_FLUSH: u32 = 1 << 6;
pub(super) const SHUT_AFTER_FLUSH: u32 = 1 << 7;
pub(super) const CLOSING: u32 = 1 << 8;
/// The handler's `gone` ran.
pub(super) const GONE_TOLD: u32 = 1 << 9;
/// On the dirty list.
pub(super) const DIRTY: u32 = 1 << 10;
/// On the starved list.
pub(super) const STARVED: u32 = 1 << 11;
pub(super) const CONNECTING: u32 = 1 << 12;
pub(super) const IN_USE: u32 = 1 << 13;
/// Tell the handler when a batch is sent.
pub(super) const NOTIFY_WRITABLE: u32 = 1 << 14;
/// io_uring: a SHUTDOWN is in flight. The kernel always runs it on an
/// io-wq worker and looks the descriptor up only there, so a CLOSE issued
/// behind it can run first, free the descriptor (a direct one, or a plain
/// number) for the next accept, and let the shutdown hit that new
/// connection. The close waits for the shutdown to complete.
pub(super) const SHUTTING: u32 = 1 << 15;
/// io_uring: nothing received yet. A burst of new connections is a burst
/// of first reads (a request head each), not of traffic: their reads that
/// find the ring dry neither raise the ring mark nor re-arm beyond the
/// buffers the ring holds (see `Io::refill`). The epoll backend has no
/// ring (it reads into the warmest free buffer) and never sets it.
pub(super) const FRESH: u32 = 1 << 16;
/// A TLS connection: its session is in `Io::tls_sessions` (a side table,
/// so that a plain connection's slot does not grow).
#[cfg(feature = "tls")]
pub(super) const TLS: u32 = 1 << 17;

/// One socket slot.
pub(crate) struct Sock {
    pub(super) fd: Fd,
    /// The batch the kernel is sending.
    pub(super) inflight: Option<Box<WriteBatch>>,
    /// The batch filling behind it.
    pub(super) pending: Option<Box<WriteBatch>>,
    /// The handler's deadline, in ticks (0: none).
    pub(super) user_due: u32,
    /// The write deadline, in ticks (0: none).
    pub(super) write_due: u32,
    pub(super) gen: u16,
    pub(super) flags: u32,
    /// Ops in flight whose completions are still to come.
    pub(super) ops: u8,
}

impl Sock {
    pub(super) fn queued(&self) -> usize {
        self.inflight.as_ref().map_or(0, |b| b.bytes())
            + self.pending.as_ref().map_or(0, |b| b.bytes())
    }
}

/// An IPv4 peer address in 8 bytes: address, port, and a marker in the
/// top bits that tells "none" and "IPv6, see the side table" apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PackedPeer(u64);

impl PackedPeer {
    pub(super) const NONE: PackedPeer = PackedPeer(0);
    pub(super) const V6: PackedPeer = PackedPeer(2 << 48);
    pub(super) const V4_TAG: u64 = 1 << 48;

    pub(super) fn from_v4(a: std::net::SocketAddrV4) -> PackedPeer {
        PackedPeer(Self::V4_TAG | (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()))
    }

    pub(super) fn v4(self) -> Option<SocketAddr> {
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

pub(super) fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
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

impl Io {
    pub(super) fn alloc(&mut self, fd: Fd) -> SockId {
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
        s.flags = match self.backend {
            Backend::Uring(_) => IN_USE | FRESH,
            Backend::Epoll(_) => IN_USE,
        };
        s.ops = 0;
        s.user_due = 0;
        s.write_due = 0;
        let gen = s.gen;
        self.set_peer(slot, None);
        SockId { slot, gen }
    }

    pub(super) fn sock(&self, id: SockId) -> Option<&Sock> {
        self.socks
            .get(id.slot as usize)
            .filter(|s| s.gen == id.gen && s.flags & IN_USE != 0)
    }

    pub(super) fn sock_mut(&mut self, id: SockId) -> Option<&mut Sock> {
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

    pub(super) fn get_peer(&self, slot: u32) -> Option<SocketAddr> {
        match self.peers[slot as usize] {
            PackedPeer::V6 => self.peers_v6.get(&slot).copied(),
            p => p.v4(),
        }
    }

    pub(super) fn set_peer(&mut self, slot: u32, a: Option<SocketAddr>) {
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

    /// Closes `id` once everything queued is sent (with TLS, after
    /// close_notify).
    pub fn close_after_flush(&mut self, id: SockId) {
        if self.sock(id).is_none() {
            return;
        }
        let more = self.tls_last_words(id.slot);
        let s = &mut self.socks[id.slot as usize];
        if s.queued() == 0 && !more {
            self.close(id);
        } else {
            s.flags |= CLOSE_AFTER_FLUSH;
        }
    }

    /// Shuts the sending direction down once everything queued is sent
    /// (with TLS, after close_notify); reads go on.
    pub fn shutdown_after_flush(&mut self, id: SockId) {
        if self.sock(id).is_none() {
            return;
        }
        let more = self.tls_last_words(id.slot);
        let s = &mut self.socks[id.slot as usize];
        if s.queued() == 0 && !more {
            self.shutdown_write(id);
        } else {
            s.flags |= SHUT_AFTER_FLUSH;
        }
    }

    /// A TLS socket about to end its output queues close_notify; true if
    /// it has records of its own still to send.
    #[inline]
    fn tls_last_words(&mut self, _slot: u32) -> bool {
        #[cfg(feature = "tls")]
        return self.tls_close_notify(_slot);
        #[cfg(not(feature = "tls"))]
        false
    }

    pub(super) fn shutdown_write(&mut self, id: SockId) {
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

    pub(super) fn close_for(&mut self, id: SockId, why: Gone) {
        let Some(s) = self.sock_mut(id) else { return };
        if s.flags & CLOSING != 0 {
            return;
        }
        s.flags |= CLOSING;
        s.user_due = 0;
        s.write_due = 0;
        let pending = s.pending.take();
        #[cfg(feature = "tls")]
        if s.flags & TLS != 0 {
            self.tls_sessions[id.slot as usize] = None;
        }
        let s = &mut self.socks[id.slot as usize];
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
    pub(super) fn maybe_release(&mut self, slot: u32) {
        let s = &self.socks[slot as usize];
        if s.flags & (CLOSING | GONE_TOLD) == CLOSING | GONE_TOLD && s.ops == 0 {
            self.release(slot);
        }
    }

    #[cold]
    pub(super) fn release(&mut self, slot: u32) {
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

    /// A printable name of the peer for log lines.
    pub fn peer_name(&mut self, id: SockId) -> PeerName {
        PeerName(self.peer(id), id.slot)
    }
}
