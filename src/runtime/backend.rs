//! The seam between the loop and the kernel interface under it: io_uring
//! or epoll, chosen once per process (`--backend`).
//!
//! Both report what happened as [`Cqe`]s: io_uring's completions as they
//! are, epoll's readiness as completions of a `Ready` op. The user data of
//! each names the connection slot, its generation and the op (see
//! [`token`]), so `io.rs` dispatches both with one `match`.

use std::fmt;

use super::epoll::Epoll;
use super::uring::Uring;

/// Which kernel interface the loop runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// io_uring where the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    /// io_uring or nothing.
    IoUring,
    /// epoll, even where io_uring works.
    Epoll,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendKind::Auto),
            "io-uring" | "io_uring" | "uring" => Ok(BackendKind::IoUring),
            "epoll" => Ok(BackendKind::Epoll),
            _ => Err(format!("'{s}': expected auto, io-uring or epoll")),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Auto => "auto",
            BackendKind::IoUring => "io-uring",
            BackendKind::Epoll => "epoll",
        })
    }
}

/// A socket as the kernel interface names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fd {
    /// A file descriptor.
    Raw(i32),
    /// An io_uring direct descriptor: an index into the ring's file table.
    Fixed(u32),
}

/// One completion (or, from epoll, one readiness report: `res` holds the
/// event bits).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cqe {
    pub ud: u64,
    pub res: i32,
    pub flags: u32,
}

/// The ops whose completions the loop tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    Accept = 1,
    Wake,
    Recv,
    RecvHeap,
    Send,
    Cancel,
    Close,
    Shutdown,
    Connect,
    Peer,
    /// epoll: the socket is ready.
    Ready,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        use Op::*;
        Some(match v {
            1 => Accept,
            2 => Wake,
            3 => Recv,
            4 => RecvHeap,
            5 => Send,
            6 => Cancel,
            7 => Close,
            8 => Shutdown,
            9 => Connect,
            10 => Peer,
            11 => Ready,
            _ => return None,
        })
    }
}

/// The slot index for ops that belong to the thread, not a connection.
pub(crate) const THREAD: u32 = u32::MAX;

/// User data: slot index (bits 24..56), generation (8..24), op (0..8).
pub(crate) fn token(slot: u32, gen: u16, op: Op) -> u64 {
    (u64::from(slot) << 24) | (u64::from(gen) << 8) | op as u64
}

/// The parts of a [`token`]; `None` for user data no token made.
pub(crate) fn untoken(ud: u64) -> Option<(u32, u16, Op)> {
    let op = Op::from_u8(ud as u8)?;
    Some(((ud >> 24) as u32, (ud >> 8) as u16, op))
}

/// The kernel interface of one worker.
pub(crate) enum Backend {
    Uring(Box<Uring>),
    Epoll(Epoll),
}

impl Backend {
    /// For the log line at start.
    pub(crate) fn describe(&self) -> String {
        match self {
            Backend::Uring(u) => format!("io_uring ({})", u.features),
            Backend::Epoll(_) => "epoll".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for (slot, gen, op) in [
            (0, 0, Op::Recv),
            (THREAD, u16::MAX, Op::Wake),
            (12345, 7, Op::Ready),
        ] {
            assert_eq!(untoken(token(slot, gen, op)), Some((slot, gen, op)));
        }
        assert_eq!(untoken(0), None);
    }
}
