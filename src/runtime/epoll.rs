//! The epoll backend, for hosts where io_uring is blocked (container
//! seccomp profiles, `kernel.io_uring_disabled`, gVisor).
//!
//! Sockets are registered once, edge-triggered, for input and output; the
//! loop in `io.rs` reads a readable socket into pool buffers itself and
//! writes with plain non-blocking `send`/`sendmsg`, so the rest of the
//! runtime sees the same events as from io_uring: [`Cqe`]s with the same
//! user data, one `match` for both.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::backend::Cqe;

/// One worker's epoll instance.
pub(crate) struct Epoll {
    ep: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: plain system call, no pointers.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            ep,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    /// Watches `fd`, reporting readiness with user data `ud`. `edge`: for
    /// connected sockets (input, output and hang-up, edge-triggered);
    /// otherwise input only, level-triggered (listener, eventfd).
    pub(crate) fn add(&mut self, fd: RawFd, ud: u64, edge: bool) -> io::Result<()> {
        let events = if edge {
            libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET
        } else {
            libc::EPOLLIN
        };
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: ud,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (a listener that stops accepting).
    pub(crate) fn remove(&mut self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
        unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Waits up to `timeout`, and at most a second, as io_uring's wait: an
    /// idle loop still turns once a second, which is what the server's
    /// liveness check looks for, and reports every ready
    /// descriptor as a [`Cqe`] whose `res` holds the epoll event bits.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Cqe>) -> io::Result<()> {
        let ms = match timeout {
            None => 1000,
            // Round up: waking before a deadline only means waiting again.
            Some(d) => d.as_micros().div_ceil(1000).min(1000) as i32,
        };
        // SAFETY: `events` has room for `len` entries, which the kernel
        // fills; no signal mask (null), so its size is not read.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait,
                libc::c_long::from(self.ep),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_long,
                libc::c_long::from(ms),
                std::ptr::null::<libc::sigset_t>(),
                8 as libc::c_long,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        for ev in &self.events[..n as usize] {
            out.push(Cqe {
                ud: ev.u64,
                res: ev.events as i32,
                flags: 0,
            });
        }
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: `ep` is ours and closed only here.
        unsafe { libc::close(self.ep) };
    }
}

/// Readiness bits: input (or hang-up, or an error, which a read reports).
pub(crate) fn readable(events: i32) -> bool {
    events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0
}

/// Readiness bits: the peer's end of input, a hang-up or an error.
pub(crate) fn hung_up(events: i32) -> bool {
    events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0
}

/// Readiness bits: room to write (or an error, which a write reports).
pub(crate) fn writable(events: i32) -> bool {
    events & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) != 0
}

// The calls made on every message (`epoll_pwait`, `recvfrom`, `sendto`,
// `sendmsg`) go through `syscall(2)`, not their glibc wrappers: those are
// thread cancellation points, and each wraps the call in enabling and
// disabling asynchronous cancellation, about 30 instructions a call
// (callgrind, docs/performance.md). ringws never cancels a thread
// (`pthread_cancel`), so the kernel sees the same call either way.

/// A system call's result: the count, or the error from `errno`.
fn check(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Non-blocking `recv` into `buf`.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length for the call; no
    // source address is asked for (null).
    check(unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            libc::c_long::from(fd),
            buf.as_mut_ptr(),
            buf.len() as libc::c_long,
            libc::c_long::from(libc::MSG_DONTWAIT),
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    } as isize)
}

/// Non-blocking gather write of `iov` (one piece with `send`).
pub(crate) fn send(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    let flags = libc::c_long::from(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    let fd = libc::c_long::from(fd);
    let r = if iov.len() == 1 {
        // SAFETY: the iovec points into a buffer its batch keeps alive and
        // unchanged for the call; no destination address (null).
        unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd,
                iov[0].iov_base,
                iov[0].iov_len as libc::c_long,
                flags,
                std::ptr::null::<libc::sockaddr>(),
                0 as libc::c_long,
            )
        }
    } else {
        // SAFETY: msghdr is a plain C struct; zero is an empty one.
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_iov = iov.as_ptr() as *mut libc::iovec;
        m.msg_iovlen = iov.len() as _;
        // SAFETY: every iovec points into a buffer its batch keeps alive
        // and unchanged for the call; `m` lives across it.
        unsafe { libc::syscall(libc::SYS_sendmsg, fd, &m as *const libc::msghdr, flags) }
    };
    check(r as isize)
}

/// Non-blocking `accept4`: a new socket, non-blocking and close-on-exec.
pub(crate) fn accept(listener: RawFd) -> io::Result<RawFd> {
    // SAFETY: null address pointers are allowed (the peer is not wanted).
    let r = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    check(r as isize).map(|fd| fd as RawFd)
}

/// A borrowed socket, for a socket option or an address look-up.
fn with_sock<T>(fd: RawFd, f: impl FnOnce(socket2::SockRef<'_>) -> T) -> T {
    // SAFETY: callers pass a descriptor the loop holds open for the whole
    // call (it closes one only in `close`, after which its slot is dead).
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    f(socket2::SockRef::from(&b))
}

/// The peer's address of a connected socket.
pub(crate) fn peer_addr(fd: RawFd) -> Option<std::net::SocketAddr> {
    with_sock(fd, |s| s.peer_addr().ok().and_then(|a| a.as_socket()))
}

/// The local address of a socket.
pub(crate) fn local_addr(fd: RawFd) -> Option<std::net::SocketAddr> {
    with_sock(fd, |s| s.local_addr().ok().and_then(|a| a.as_socket()))
}

/// `shutdown(SHUT_WR)`.
pub(crate) fn shutdown_write(fd: RawFd) {
    let _ = with_sock(fd, |s| s.shutdown(std::net::Shutdown::Write));
}

/// The pending error of a socket (`SO_ERROR`): how a connect ended.
pub(crate) fn take_error(fd: RawFd) -> io::Result<()> {
    match with_sock(fd, |s| s.take_error()) {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(e),
    }
}

/// Closes a descriptor the loop owns.
pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// Empties an eventfd's counter.
pub(crate) fn read_eventfd(fd: RawFd) {
    let mut v = 0u64;
    // SAFETY: reads at most 8 bytes into `v`.
    unsafe { libc::read(fd, &mut v as *mut u64 as *mut libc::c_void, 8) };
}

/// Starts a non-blocking connect; its end is reported as writability.
pub(crate) fn connect(fd: RawFd, addr: &socket2::SockAddr) -> io::Result<()> {
    // SAFETY: `addr` is a valid socket address of `addr.len()` bytes.
    let r = unsafe { libc::connect(fd, addr.as_ptr() as *const _, addr.len()) };
    let err = io::Error::last_os_error();
    if r < 0 && err.raw_os_error() != Some(libc::EINPROGRESS) {
        return Err(err);
    }
    Ok(())
}

/// A new non-blocking eventfd, for wake-ups from other threads.
pub(crate) fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call, no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's counter, waking whoever waits on it.
pub(crate) fn write_eventfd(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes the 8 bytes of `one`.
    unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads on Linux,
/// without `Instant`'s checked `timespec` arithmetic (about 100
/// instructions a reading with `saturating_duration_since`, callgrind).
#[inline]
pub(crate) fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is valid for writes for the call; CLOCK_MONOTONIC always
    // exists, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// The process's descriptor limit (`RLIMIT_NOFILE`, soft).
pub(crate) fn nofile_limit() -> usize {
    // SAFETY: rlimit is a plain C struct; zero is a valid value.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is valid for writes for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    usize::try_from(r.rlim_cur).unwrap_or(usize::MAX)
}

/// Blocks `signals` in the calling thread (and the threads it starts after
/// this); returns the set, for [`wait_signal`].
pub(crate) fn block_signals(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is a plain C struct, initialised by sigemptyset before
    // any other use; every pointer is to a local that outlives its call.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(set)
    }
}

/// Waits for one of the (blocked) signals in `set`; returns it.
pub(crate) fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is a valid, initialised signal set; `sig` outlives the
    // call. sigwait only fails for an invalid set, which this is not.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// Waits up to `d` for one of the (blocked) signals in `set`; the one that
/// arrived, if any.
pub(crate) fn wait_signal_for(set: &libc::sigset_t, d: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `set` is a valid, initialised signal set and `ts` a local
        // that outlives the call; a null siginfo pointer is allowed.
        let r = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
        if r > 0 {
            return Some(r);
        }
        // EAGAIN: the time is up. EINTR (another signal): wait on.
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}
