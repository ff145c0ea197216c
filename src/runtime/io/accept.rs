//! New sockets: the listener's accepts (multishot on io_uring, into direct
//! descriptors while the table has room), back-off after a failed accept,
//! and outgoing connects for clients.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;

impl Io {
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

    pub(super) fn on_accept<H: Handler>(&mut self, c: Cqe, h: &mut H) {
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
                tracing::warn!("direct descriptor table full; accepting plain descriptors");
                self.direct = false;
            } else if c.res != -libc::ECANCELED {
                self.accept_failed(io::Error::from_raw_os_error(-c.res));
            }
            if !uring::cqe_more(c.flags) && self.accepting {
                if c.res < 0 && c.res != -libc::ENFILE && c.res != -libc::ECANCELED {
                    // Back off instead of spinning on an accept that fails.
                    self.accept_retry = Some(self.now() + Duration::from_millis(10));
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
                            self.accept_retry = Some(self.now() + Duration::from_millis(10));
                        }
                        return;
                    }
                }
            }
        }
    }

    pub(super) fn accept_failed(&mut self, e: io::Error) {
        // EMFILE and friends: say so, once a second.
        if self
            .last_accept_warn
            .is_none_or(|t| self.now().duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!("accept failed: {e}");
            self.last_accept_warn = Some(self.now());
        }
    }

    pub(super) fn retry_accept(&mut self) {
        let Some(at) = self.accept_retry else { return };
        if self.now() < at {
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
                    self.accept_retry = Some(self.now() + Duration::from_millis(10));
                }
            }
        }
    }

    pub(super) fn accept_one<H: Handler>(&mut self, fd: Fd, h: &mut H) {
        let id = self.alloc(fd);
        match (&mut self.backend, fd) {
            (Backend::Uring(u), Fd::Fixed(i)) => {
                self.direct_in_use += 1;
                if self.direct && self.direct_in_use + self.headroom >= self.files {
                    // Nearly full: plain descriptors until half is free.
                    tracing::info!(
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
                    tracing::warn!("cannot watch an accepted socket: {err}");
                    self.close(id);
                    return;
                }
            }
            _ => {}
        }
        #[cfg(feature = "tls")]
        if !self.start_tls(id) {
            return;
        }
        self.start_reads(id);
        h.accepted(self, id);
    }
}
