//! A scripted kernel behind one ring, for the loop's unit tests: the loop
//! runs its real io_uring code, and a test says what the kernel does
//! (quinn-proto's `Pair` drives its endpoints the same way).
//!
//! [`Script`] takes every entry `Uring::push` makes and decodes it as the
//! kernel would (opcode, descriptor, flags, user data) into a [`Sub`] the
//! test can compare; a send's bytes are gathered from its buffer or its
//! msghdr's iovecs right then, while the loop keeps them alive. The test
//! then scripts completions, which the next `Uring::wait` hands over:
//! data arriving on a socket goes into the next buffer of the loop's real
//! provided-buffer ring, read from the ring's shared memory and taken in
//! the order it was lent, as the kernel takes them; the ring running dry
//! ends the multishot receive with `ENOBUFS`; a short send, an accept, a
//! cancellation, a completion for user data nobody expects.
//!
//! It checks what a kernel would not: every completion it hands over (but
//! a deliberately stale one) belongs to an op in flight, so an op the loop
//! forgot, or completed twice, fails the test.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{opcode, squeue, IoUring};

use super::{BufRing, Uring, GROUP};
use crate::runtime::backend::{Cqe, Fd};
use crate::runtime::buf::Pool;

/// The kernel's ring, or a script in its place.
pub(crate) enum Ring {
    Kernel(IoUring),
    Script(Script),
}

/// For the kernel paths of `push` and `wait`, which a script never reaches
/// (both answer for it first).
impl Deref for Ring {
    type Target = IoUring;
    fn deref(&self) -> &IoUring {
        match self {
            Ring::Kernel(r) => r,
            Ring::Script(_) => unreachable!("a script has no kernel ring"),
        }
    }
}

impl DerefMut for Ring {
    fn deref_mut(&mut self) -> &mut IoUring {
        match self {
            Ring::Kernel(r) => r,
            Ring::Script(_) => unreachable!("a script has no kernel ring"),
        }
    }
}

// The kernel's ABI (include/uapi/linux/io_uring.h).
const IOSQE_FIXED_FILE: u8 = 1 << 0;
const IOSQE_BUFFER_SELECT: u8 = 1 << 5;
const IORING_ACCEPT_MULTISHOT: u16 = 1 << 0;
const IORING_RECV_MULTISHOT: u16 = 1 << 1;
const IORING_ASYNC_CANCEL_ALL: u32 = 1 << 0;
const IORING_ASYNC_CANCEL_FD: u32 = 1 << 1;
const IORING_ASYNC_CANCEL_ANY: u32 = 1 << 2;
const IORING_ASYNC_CANCEL_FD_FIXED: u32 = 1 << 3;
const SOCKET_URING_OP_GETSOCKOPT: u32 = 2;
/// A completion names the buffer in its top 16 bits.
pub(crate) const CQE_F_BUFFER: u32 = 1 << 0;
/// More completions of this (multishot) op follow.
pub(crate) const CQE_F_MORE: u32 = 1 << 1;

const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// One submission, as the kernel reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sub {
    /// Multishot accept on a listener, into direct descriptors if `direct`.
    Accept {
        fd: i32,
        direct: bool,
        ud: u64,
    },
    /// Multishot receive into buffers of the ring.
    Recv {
        fd: Fd,
        ud: u64,
    },
    /// One receive into a buffer of the loop's, of `len` bytes.
    RecvInto {
        fd: Fd,
        len: usize,
        ud: u64,
    },
    /// `SEND` of one piece.
    Send {
        fd: Fd,
        bytes: Vec<u8>,
        ud: u64,
    },
    /// `SENDMSG` of `pieces` iovecs.
    SendMsg {
        fd: Fd,
        bytes: Vec<u8>,
        pieces: usize,
        ud: u64,
    },
    /// Cancel the op with user data `target`.
    Cancel {
        target: u64,
        ud: u64,
    },
    /// Cancel every op on `fd`.
    CancelFd {
        fd: Fd,
        ud: u64,
    },
    /// Cancel every op in flight.
    CancelAny {
        ud: u64,
    },
    Close {
        fd: Fd,
        ud: u64,
    },
    Shutdown {
        fd: Fd,
        how: i32,
        ud: u64,
    },
    Connect {
        fd: i32,
        ud: u64,
    },
    /// `SO_PEERNAME` of a direct descriptor.
    PeerName {
        fd: u32,
        ud: u64,
    },
    /// The wake-up eventfd's counter.
    ReadWake {
        fd: i32,
        ud: u64,
    },
}

impl Sub {
    pub(crate) fn ud(&self) -> u64 {
        match *self {
            Sub::Accept { ud, .. }
            | Sub::Recv { ud, .. }
            | Sub::RecvInto { ud, .. }
            | Sub::Send { ud, .. }
            | Sub::SendMsg { ud, .. }
            | Sub::Cancel { ud, .. }
            | Sub::CancelFd { ud, .. }
            | Sub::CancelAny { ud }
            | Sub::Close { ud, .. }
            | Sub::Shutdown { ud, .. }
            | Sub::Connect { ud, .. }
            | Sub::PeerName { ud, .. }
            | Sub::ReadWake { ud, .. } => ud,
        }
    }

    fn is_recv_on(&self, on: Fd) -> bool {
        matches!(*self, Sub::Recv { fd, .. } | Sub::RecvInto { fd, .. } if fd == on)
    }

    fn is_send_on(&self, on: Fd) -> bool {
        matches!(*self, Sub::Send { fd, .. } | Sub::SendMsg { fd, .. } if fd == on)
    }
}

/// An op the kernel has not finished, and where its completion writes.
struct Flight {
    sub: Sub,
    /// `RecvInto`: the buffer; `PeerName`: the address buffer.
    ptr: *mut u8,
    len: usize,
}

/// A completion a test wrote, handed over at the next wait.
enum Event {
    /// Bytes arrive for the receive `ud`.
    Data {
        ud: u64,
        bytes: Vec<u8>,
        stale: bool,
    },
    /// The peer of `ud`'s socket.
    Peer { ud: u64, addr: SocketAddrV4 },
    /// A completion as it is. `more`: a multishot op goes on.
    Done {
        ud: u64,
        res: i32,
        more: bool,
        stale: bool,
    },
}

/// The kernel side of a scripted ring.
#[derive(Default)]
pub(crate) struct Script {
    subs: Vec<Sub>,
    flights: Vec<Flight>,
    events: VecDeque<Event>,
    /// The kernel's head in the provided-buffer ring.
    head: u16,
}

impl Uring {
    /// A ring with a script where the kernel would be: its buffer ring is
    /// real memory, lent `pool`'s buffers as usual, and a file table of
    /// `files` direct descriptors is assumed.
    pub(crate) fn scripted(pool: &Pool, files: u32) -> Uring {
        Uring {
            ring: Ring::Script(Script::default()),
            bufs: BufRing::for_pool(pool).expect("a buffer ring mapping"),
            files,
            features: "script".into(),
            wake_buf: Box::new(0),
        }
    }

    /// The script of a scripted ring.
    pub(crate) fn script(&mut self) -> &mut Script {
        match &mut self.ring {
            Ring::Script(s) => s,
            Ring::Kernel(_) => panic!("not a scripted ring"),
        }
    }
}

/// Reads the `N` bytes at `off` of an entry.
fn field<const N: usize>(e: &[u8; 64], off: usize) -> [u8; N] {
    e[off..off + N].try_into().expect("inside the entry")
}

impl Script {
    /// The submissions made since the last call, in order.
    pub(crate) fn take(&mut self) -> Vec<Sub> {
        std::mem::take(&mut self.subs)
    }

    /// The user data of every op in flight, in the order submitted.
    pub(crate) fn in_flight(&self) -> Vec<u64> {
        self.flights.iter().map(|f| f.sub.ud()).collect()
    }

    /// Decodes `sqe` as the kernel would and records it.
    pub(super) fn submit(&mut self, sqe: &squeue::Entry) {
        // SAFETY: `Entry` is `repr(C)` over the kernel's 64-byte
        // `io_uring_sqe` (size checked above), which has no padding; the
        // crate's builders start from a zeroed entry, so every byte is
        // initialised and reads as a `u8`.
        let e: [u8; 64] = unsafe { std::mem::transmute_copy(sqe) };
        let (code, flags) = (e[0], e[1]);
        let ioprio = u16::from_ne_bytes(field(&e, 2));
        let raw = i32::from_ne_bytes(field(&e, 4));
        let addr = u64::from_ne_bytes(field(&e, 16));
        let len = u32::from_ne_bytes(field(&e, 24));
        let op_flags = u32::from_ne_bytes(field(&e, 28));
        let ud = u64::from_ne_bytes(field(&e, 32));
        let group = u16::from_ne_bytes(field(&e, 40));
        let file_index = u32::from_ne_bytes(field(&e, 44));
        let fd = if flags & IOSQE_FIXED_FILE != 0 {
            Fd::Fixed(raw as u32)
        } else {
            Fd::Raw(raw)
        };
        let (mut ptr, mut buf_len) = (std::ptr::null_mut(), 0);
        let sub = match code {
            opcode::AcceptMulti::CODE => {
                assert!(ioprio & IORING_ACCEPT_MULTISHOT != 0, "a multishot accept");
                Sub::Accept {
                    fd: raw,
                    direct: file_index != 0,
                    ud,
                }
            }
            opcode::RecvMulti::CODE if ioprio & IORING_RECV_MULTISHOT != 0 => {
                assert!(
                    flags & IOSQE_BUFFER_SELECT != 0 && group == GROUP,
                    "a multishot receive selects from the pool's group"
                );
                Sub::Recv { fd, ud }
            }
            opcode::Recv::CODE => {
                (ptr, buf_len) = (addr as *mut u8, len as usize);
                Sub::RecvInto {
                    fd,
                    len: len as usize,
                    ud,
                }
            }
            opcode::Send::CODE => {
                assert!(op_flags as i32 & libc::MSG_NOSIGNAL != 0, "no SIGPIPE");
                // SAFETY: the loop keeps the batch the entry points into
                // alive and unchanged until the completion (`Uring::send`),
                // and the entry names `len` bytes of it.
                let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
                Sub::Send {
                    fd,
                    bytes: bytes.to_vec(),
                    ud,
                }
            }
            opcode::SendMsg::CODE => {
                assert!(op_flags as i32 & libc::MSG_NOSIGNAL != 0, "no SIGPIPE");
                let mut bytes = Vec::new();
                // SAFETY: `addr` is the batch's msghdr and its iovecs point
                // into the batch, all alive and unchanged until the
                // completion (`Uring::send`, `WriteBatch::msghdr`).
                let pieces = unsafe {
                    let m = &*(addr as *const libc::msghdr);
                    let iov = std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen as usize);
                    for v in iov {
                        bytes.extend_from_slice(std::slice::from_raw_parts(
                            v.iov_base as *const u8,
                            v.iov_len,
                        ));
                    }
                    iov.len()
                };
                Sub::SendMsg {
                    fd,
                    bytes,
                    pieces,
                    ud,
                }
            }
            opcode::AsyncCancel2::CODE if op_flags & IORING_ASYNC_CANCEL_ANY != 0 => {
                Sub::CancelAny { ud }
            }
            opcode::AsyncCancel2::CODE if op_flags & IORING_ASYNC_CANCEL_FD != 0 => {
                assert!(op_flags & IORING_ASYNC_CANCEL_ALL != 0, "every op on it");
                let fd = if op_flags & IORING_ASYNC_CANCEL_FD_FIXED != 0 {
                    Fd::Fixed(raw as u32)
                } else {
                    Fd::Raw(raw)
                };
                Sub::CancelFd { fd, ud }
            }
            opcode::AsyncCancel2::CODE => Sub::Cancel { target: addr, ud },
            opcode::Close::CODE => {
                let fd = match file_index {
                    0 => Fd::Raw(raw),
                    i => Fd::Fixed(i - 1),
                };
                Sub::Close { fd, ud }
            }
            opcode::Shutdown::CODE => Sub::Shutdown {
                fd,
                how: len as i32,
                ud,
            },
            opcode::Connect::CODE => Sub::Connect { fd: raw, ud },
            opcode::GetSockOpt::CODE => {
                let cmd = u32::from_ne_bytes(field(&e, 8));
                assert_eq!(cmd, SOCKET_URING_OP_GETSOCKOPT);
                let (level, name) = (
                    i32::from_ne_bytes(field(&e, 16)),
                    i32::from_ne_bytes(field(&e, 20)),
                );
                assert_eq!((level, name), (libc::SOL_SOCKET, libc::SO_PEERNAME));
                (ptr, buf_len) = (
                    u64::from_ne_bytes(field(&e, 48)) as *mut u8,
                    file_index as usize,
                );
                let Fd::Fixed(fd) = fd else {
                    panic!("SO_PEERNAME of a plain descriptor")
                };
                Sub::PeerName { fd, ud }
            }
            opcode::Read::CODE => Sub::ReadWake { fd: raw, ud },
            c => panic!("opcode {c} is not one the loop uses"),
        };
        self.subs.push(sub.clone());
        self.flights.push(Flight {
            sub,
            ptr,
            len: buf_len,
        });
    }

    /// The op in flight that `is` picks.
    fn find(&self, what: &str, is: impl Fn(&Sub) -> bool) -> u64 {
        match self.flights.iter().find(|f| is(&f.sub)) {
            Some(f) => f.sub.ud(),
            None => panic!("no {what} in flight (in flight: {:?})", self.in_flight()),
        }
    }

    /// The receive in flight on `fd` (multishot or not).
    pub(crate) fn recv_op(&self, fd: Fd) -> u64 {
        self.find("receive", |s| s.is_recv_on(fd))
    }

    /// `bytes` arrive on `fd`, for the receive in flight on it: one
    /// completion per ring buffer they fill, buffers taken in the order
    /// they were lent; the multishot receive ends with `ENOBUFS` if the
    /// ring runs dry (the bytes left are dropped).
    pub(crate) fn recv(&mut self, fd: Fd, bytes: &[u8]) {
        let ud = self.recv_op(fd);
        self.events.push_back(Event::Data {
            ud,
            bytes: bytes.to_vec(),
            stale: false,
        });
    }

    /// The ring had no buffer when data came: the multishot receive on `fd`
    /// ends.
    pub(crate) fn recv_enobufs(&mut self, fd: Fd) {
        let ud = self.recv_op(fd);
        self.done(ud, -libc::ENOBUFS, false);
    }

    /// The peer closed its end: the receive on `fd` ends with 0.
    pub(crate) fn recv_eof(&mut self, fd: Fd) {
        let ud = self.recv_op(fd);
        self.done(ud, 0, false);
    }

    /// The send in flight on `fd` sent `n` bytes (fewer than asked: a short
    /// send).
    pub(crate) fn send_done(&mut self, fd: Fd, n: usize) {
        let ud = self.find("send", |s| s.is_send_on(fd));
        self.done(ud, n as i32, false);
    }

    /// The multishot accept in flight took a connection: `fd` is its
    /// descriptor (or direct descriptor index). It goes on accepting.
    pub(crate) fn accept(&mut self, fd: i32) {
        let ud = self.find("accept", |s| matches!(s, Sub::Accept { .. }));
        self.done(ud, fd, true);
    }

    /// `SO_PEERNAME` of the op `ud` finds `addr`.
    pub(crate) fn peer(&mut self, ud: u64, addr: SocketAddrV4) {
        self.events.push_back(Event::Peer { ud, addr });
    }

    /// The op `ud` ends, cancelled.
    pub(crate) fn cancelled(&mut self, ud: u64) {
        self.done(ud, -libc::ECANCELED, false);
    }

    /// The op `ud` ends with `res` (a cancel's count, a close's 0, an error).
    pub(crate) fn complete(&mut self, ud: u64, res: i32) {
        self.done(ud, res, false);
    }

    /// A completion of `ud` that the loop does not expect: no op of that
    /// user data is in flight, as far as the script knows.
    pub(crate) fn stale(&mut self, ud: u64, res: i32) {
        self.events.push_back(Event::Done {
            ud,
            res,
            more: false,
            stale: true,
        });
    }

    /// A multishot receive's completion for `ud` with `bytes` in the next
    /// ring buffer, though no such op is in flight.
    pub(crate) fn stale_recv(&mut self, ud: u64, bytes: &[u8]) {
        self.events.push_back(Event::Data {
            ud,
            bytes: bytes.to_vec(),
            stale: true,
        });
    }

    fn done(&mut self, ud: u64, res: i32, more: bool) {
        self.events.push_back(Event::Done {
            ud,
            res,
            more,
            stale: false,
        });
    }

    /// Takes the next buffer the loop lent, as the kernel does: from the
    /// ring's head, up to the tail the loop published.
    fn take_buffer(&mut self, ring: &BufRing) -> Option<(u16, *mut u8, usize)> {
        // SAFETY: the tail is the u16 at byte 14 of the mapping, 2-aligned,
        // published with release ordering (`BufRing::publish`).
        let tail = unsafe { &*(ring.base.add(14) as *const AtomicU16) }.load(Ordering::Acquire);
        if self.head == tail {
            return None;
        }
        let slot = (self.head & (ring.entries - 1)) as usize;
        // SAFETY: `slot < entries`, inside the mapping; the entry lies
        // between the head and the published tail, so `BufRing::push` wrote
        // it (ordered before the tail by the acquire load) and does not
        // write it again before the head passes it.
        let (addr, len, bid) = unsafe {
            let e = ring.base.add(slot * 16);
            (
                (e as *const u64).read(),
                (e.add(8) as *const u32).read(),
                (e.add(12) as *const u16).read(),
            )
        };
        self.head = self.head.wrapping_add(1);
        Some((bid, addr as *mut u8, len as usize))
    }

    /// The op `ud` in flight (its index), or `None` for a stale one.
    fn flight(&self, ud: u64, stale: bool) -> Option<usize> {
        let i = self.flights.iter().position(|f| f.sub.ud() == ud);
        match (i, stale) {
            (Some(i), false) => Some(i),
            (None, true) => None,
            (Some(_), true) => panic!("stale completion for {ud:#x}, which is in flight"),
            (None, false) => panic!(
                "completion for {ud:#x}, not in flight (in flight: {:?})",
                self.in_flight()
            ),
        }
    }

    /// Hands every scripted completion over, as a wait on the ring would.
    pub(super) fn reap(&mut self, ring: &BufRing, out: &mut Vec<Cqe>) {
        while let Some(ev) = self.events.pop_front() {
            match ev {
                Event::Done {
                    ud,
                    res,
                    more,
                    stale,
                } => {
                    if let Some(i) = self.flight(ud, stale) {
                        if !more {
                            self.flights.remove(i);
                        }
                    }
                    let flags = if more { CQE_F_MORE } else { 0 };
                    out.push(Cqe { ud, res, flags });
                }
                Event::Peer { ud, addr } => {
                    let f = self
                        .flights
                        .remove(self.flight(ud, false).expect("in flight"));
                    assert!(f.len >= 16, "room for a sockaddr_in");
                    let mut sa = [0u8; 16];
                    sa[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                    sa[2..4].copy_from_slice(&addr.port().to_be_bytes());
                    sa[4..8].copy_from_slice(&addr.ip().octets());
                    // SAFETY: the loop keeps the `f.len`-byte buffer the
                    // entry named alive until this completion
                    // (`Uring::peer_name`), and 16 <= f.len.
                    unsafe { std::ptr::copy_nonoverlapping(sa.as_ptr(), f.ptr, 16) };
                    out.push(Cqe {
                        ud,
                        res: 16,
                        flags: 0,
                    });
                }
                Event::Data { ud, bytes, stale } => {
                    let i = self.flight(ud, stale);
                    if let Some(Sub::RecvInto { .. }) = i.map(|i| &self.flights[i].sub) {
                        let f = self.flights.remove(i.expect("in flight"));
                        assert!(bytes.len() <= f.len, "more bytes than the receive's buffer");
                        // SAFETY: the loop keeps the `f.len`-byte buffer the
                        // entry named alive and unused until this completion
                        // (`Uring::recv_into`), and the bytes fit in it.
                        unsafe {
                            std::ptr::copy_nonoverlapping(bytes.as_ptr(), f.ptr, bytes.len())
                        };
                        out.push(Cqe {
                            ud,
                            res: bytes.len() as i32,
                            flags: 0,
                        });
                        continue;
                    }
                    let mut rest = &bytes[..];
                    while !rest.is_empty() {
                        let Some((bid, addr, len)) = self.take_buffer(ring) else {
                            if let Some(i) = self.flight(ud, stale) {
                                self.flights.remove(i);
                            }
                            out.push(Cqe {
                                ud,
                                res: -libc::ENOBUFS,
                                flags: 0,
                            });
                            break;
                        };
                        let n = rest.len().min(len);
                        // SAFETY: `addr` is a pool buffer of `len` bytes the
                        // loop lent to the ring: the kernel's (this script's)
                        // to write until a completion names it, which the
                        // one below does; `n <= len`.
                        unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), addr, n) };
                        rest = &rest[n..];
                        out.push(Cqe {
                            ud,
                            res: n as i32,
                            flags: CQE_F_BUFFER | CQE_F_MORE | (u32::from(bid) << 16),
                        });
                    }
                }
            }
        }
    }
}
