//! The loop on its io_uring code, with a script in the kernel's place
//! (`uring/script.rs`): each test writes what the kernel does, turn by
//! turn, and asserts every submission the loop makes and every callback
//! its handler gets. These are the paths a real socket reaches only by
//! luck or by sleeping: reads split anywhere, the buffer ring running dry,
//! short sends under backpressure, a close racing a shutdown, completions
//! that arrive for a slot already reused.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::proto::frame::FrameHeader;
use crate::runtime::uring::{Script, Sub, Uring};

/// Direct descriptors in the (assumed) file table: enough that accepts go
/// into it (`Io::new` wants more than the backlog's headroom).
const FILES: u32 = 256;
/// The listener: no descriptor at all (the script stands in for it), but
/// one `getsockname` fails on instead of asserting, as it would on -1.
const LISTENER: RawFd = i32::MAX;

/// What the loop told the handler.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Accepted(SockId),
    Data(SockId, Vec<u8>),
    Eof(SockId, Option<i32>),
    Gone(SockId, &'static str),
    Writable(SockId),
    Timer(SockId),
}

/// A handler that records; it keeps the read buffers it is given when
/// `hold` is set (so the pool runs dry), and drops them otherwise.
#[derive(Default)]
struct Rec {
    evs: Vec<Ev>,
    hold: bool,
    held: Vec<InputBuf>,
    /// Reads that came in buffers of their own (the pool was dry).
    heap_reads: usize,
}

impl Handler for Rec {
    fn accepted(&mut self, _io: &mut Io, id: SockId) {
        self.evs.push(Ev::Accepted(id));
    }
    fn data(&mut self, _io: &mut Io, id: SockId, buf: InputBuf) {
        self.evs.push(Ev::Data(id, buf.as_slice().to_vec()));
        if let InputBuf::Heap(_) = buf {
            self.heap_reads += 1;
        }
        if self.hold {
            self.held.push(buf);
        }
    }
    fn eof(&mut self, _io: &mut Io, id: SockId, err: Option<io::Error>) {
        self.evs
            .push(Ev::Eof(id, err.map(|e| e.raw_os_error().unwrap_or(-1))));
    }
    fn timer(&mut self, _io: &mut Io, id: SockId) {
        self.evs.push(Ev::Timer(id));
    }
    fn gone(&mut self, _io: &mut Io, id: SockId, why: Gone) {
        let why = match why {
            Gone::Closed => "closed",
            Gone::WriteTimeout => "write timeout",
            Gone::WriteError => "write error",
        };
        self.evs.push(Ev::Gone(id, why));
    }
    fn writable(&mut self, _io: &mut Io, id: SockId) {
        self.evs.push(Ev::Writable(id));
    }
    fn done(&self) -> bool {
        false
    }
}

/// A loop on a scripted ring, listening, and its handler.
struct T {
    io: Io,
    h: Rec,
    cqes: Vec<Cqe>,
}

impl T {
    /// A loop with `buffers` read buffers of `size` bytes, after its first
    /// turn: the multishot accept is in flight, the ring is lent buffers.
    fn new(buffers: u16, size: usize, max_backpressure: usize) -> T {
        let pool = Pool::new(size, buffers).unwrap();
        let ring = Uring::scripted(&pool, FILES);
        let cfg = IoConfig {
            max_backpressure,
            write_timeout: Duration::from_secs(60),
            backlog: 16,
        };
        let mut t = T {
            io: Io::new(Backend::Uring(Box::new(ring)), pool, cfg),
            h: Rec::default(),
            cqes: Vec::new(),
        };
        t.io.listen(LISTENER).unwrap();
        t.turn();
        assert_eq!(
            t.subs(),
            [Sub::Accept {
                fd: LISTENER,
                direct: true,
                ud: token(THREAD, 0, Op::Accept)
            }]
        );
        t
    }

    fn sc(&mut self) -> &mut Script {
        match &mut self.io.backend {
            Backend::Uring(u) => u.script(),
            Backend::Epoll(_) => unreachable!(),
        }
    }

    /// One turn as `Io::run` makes it (the handler is never done), then
    /// the check that the loop counts exactly the ops the script has in
    /// flight: none lost, none completed twice.
    fn turn(&mut self) {
        self.io.flush();
        self.io.refill();
        self.io
            .wait_and_dispatch(&mut self.h, &mut self.cqes)
            .unwrap();
        let ops = self.sc().in_flight().len();
        assert_eq!(self.io.ops_in_flight(), ops, "the loop's count of ops");
    }

    fn subs(&mut self) -> Vec<Sub> {
        self.sc().take()
    }

    fn evs(&mut self) -> Vec<Ev> {
        std::mem::take(&mut self.h.evs)
    }

    fn flags(&self, id: SockId) -> u32 {
        self.io.sock(id).expect("a live socket").flags
    }

    /// Accepts a connection into direct descriptor `idx` and learns its
    /// peer: the handler hears of it, a multishot receive is armed.
    fn accept(&mut self, idx: u32) -> SockId {
        self.sc().accept(idx as i32);
        self.turn();
        let [Ev::Accepted(id)] = self.evs()[..] else {
            panic!("one accept")
        };
        assert_eq!(
            self.subs(),
            [
                Sub::PeerName {
                    fd: idx,
                    ud: id.tok(Op::Peer)
                },
                Sub::Recv {
                    fd: Fd::Fixed(idx),
                    ud: id.tok(Op::Recv)
                },
            ]
        );
        let peer = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, idx as u8), 40000);
        self.sc().peer(id.tok(Op::Peer), peer);
        self.turn();
        assert_eq!(self.io.peer(id), Some(peer.into()));
        assert_eq!(self.flags(id), IN_USE | READ_ARMED | FRESH);
        id
    }

    /// Closes `id` and completes what the close cancels and closes: the
    /// slot is free again, its generation the next.
    fn close(&mut self, id: SockId, fd: Fd) {
        self.io.close(id);
        assert_eq!(
            self.subs(),
            [
                Sub::CancelFd {
                    fd,
                    ud: id.tok(Op::Cancel)
                },
                Sub::Close {
                    fd,
                    ud: id.tok(Op::Close)
                },
            ]
        );
        self.finish_close(id);
    }

    /// Completes a close in flight, as the kernel would: the socket's ops
    /// end cancelled, then the cancel and the close complete.
    fn finish_close(&mut self, id: SockId) {
        for op in [Op::Recv, Op::RecvHeap, Op::Send, Op::Peer] {
            if self.sc().in_flight().contains(&id.tok(op)) {
                self.sc().cancelled(id.tok(op));
            }
        }
        self.sc().complete(id.tok(Op::Cancel), 1);
        self.sc().complete(id.tok(Op::Close), 0);
        self.turn();
        assert_eq!(self.io.socks[id.slot as usize].gen, id.gen.wrapping_add(1));
        assert!(self.io.free.contains(&id.slot), "the slot is free");
    }

    /// Every pool buffer is free or lent to the ring: none leaked.
    fn pool_whole(&self) {
        let p = &self.io.pool;
        assert_eq!(p.free_count() + p.in_ring(), p.inner.count as usize);
    }
}

/// A read that ends inside a frame header, and the rest in the next one:
/// two completions of the one multishot receive, delivered in order, each
/// in its own ring buffer; nothing is re-armed and nothing lost.
#[test]
fn a_read_split_inside_a_frame_header_arrives_in_order() {
    let mut t = T::new(8, 256, 1 << 20);
    let id = t.accept(3);
    let fd = Fd::Fixed(3);
    // A masked binary frame of 126 bytes: its header is 2 bytes, the
    // 16-bit length and the mask. The first read ends inside the length.
    let mut frame = vec![0x82, 0xfe, 0x00, 0x7e, 1, 2, 3, 4];
    frame.extend([0xaa; 126]);
    assert!(matches!(FrameHeader::decode(&frame[..3]), Ok(None)));
    t.sc().recv(fd, &frame[..3]);
    t.sc().recv(fd, &frame[3..]);
    t.turn();
    let evs = t.evs();
    assert_eq!(
        evs,
        [
            Ev::Data(id, frame[..3].to_vec()),
            Ev::Data(id, frame[3..].to_vec())
        ]
    );
    let joined: Vec<u8> = evs
        .into_iter()
        .flat_map(|e| match e {
            Ev::Data(_, b) => b,
            _ => unreachable!(),
        })
        .collect();
    let (h, len) = FrameHeader::decode(&joined).unwrap().unwrap();
    assert_eq!((h.payload_len, len), (126, 8));
    // The multishot receive goes on: no new submission, one op in flight.
    assert_eq!(t.subs(), []);
    assert_eq!(
        t.sc().in_flight(),
        [token(THREAD, 0, Op::Accept), id.tok(Op::Recv)]
    );
    assert_eq!(t.flags(id), IN_USE | READ_ARMED);
    t.pool_whole();

    // A read larger than a ring buffer fills the next ones, in the order
    // they were lent.
    let big: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    t.sc().recv(fd, &big);
    t.turn();
    assert_eq!(
        t.evs(),
        [
            Ev::Data(id, big[..256].to_vec()),
            Ev::Data(id, big[256..512].to_vec()),
            Ev::Data(id, big[512..].to_vec()),
        ]
    );
    assert_eq!(t.subs(), []);
}

/// The peer closes: the handler hears it once, and the receive, which
/// ended, is not re-armed.
#[test]
fn end_of_input_is_told_once_and_not_re_armed() {
    let mut t = T::new(8, 256, 1 << 20);
    let id = t.accept(3);
    t.sc().recv(Fd::Fixed(3), b"last");
    t.sc().recv_eof(Fd::Fixed(3));
    t.turn();
    assert_eq!(t.evs(), [Ev::Data(id, b"last".to_vec()), Ev::Eof(id, None)]);
    assert_eq!(t.subs(), []);
    assert_eq!(t.flags(id), IN_USE | READ_EOF);
    t.close(id, Fd::Fixed(3));
    // The close found no receive to cancel this time.
    assert_eq!(t.evs(), [Ev::Gone(id, "closed")]);
}

/// Fills the ring: `T::new` lends all 4 buffers, a read of 4 buffers'
/// worth and one byte more takes them (the handler keeps them) and ends
/// the multishot receive with `ENOBUFS`. Returns the socket, starved.
fn starve() -> (T, SockId) {
    let mut t = T::new(4, 64, 1 << 20);
    t.h.hold = true;
    let id = t.accept(3);
    assert_eq!(t.io.pool.in_ring(), 4);
    let bytes: Vec<u8> = (0..4 * 64 + 1).map(|i| i as u8).collect();
    t.sc().recv(Fd::Fixed(3), &bytes);
    t.turn();
    let evs = t.evs();
    assert_eq!(evs.len(), 4);
    assert_eq!(evs[3], Ev::Data(id, bytes[192..256].to_vec()));
    // Ended, not re-armed: the socket waits for buffers.
    assert_eq!(t.subs(), []);
    assert_eq!(t.sc().in_flight(), [token(THREAD, 0, Op::Accept)]);
    assert_eq!(t.io.starved, [id.slot]);
    assert_eq!(t.flags(id), IN_USE | STARVED);
    assert_eq!((t.io.pool.in_ring(), t.io.pool.free_count()), (0, 0));
    (t, id)
}

/// `ENOBUFS`: the socket waits on the starved list, and its multishot
/// receive is armed again in the turn that lends buffers again.
#[test]
fn a_dry_ring_starves_a_socket_until_buffers_are_lent_again() {
    let (mut t, id) = starve();
    t.h.held.clear();
    t.turn();
    assert_eq!(
        t.subs(),
        [Sub::Recv {
            fd: Fd::Fixed(3),
            ud: id.tok(Op::Recv)
        }]
    );
    assert!(t.io.starved.is_empty());
    assert_eq!(t.flags(id), IN_USE | READ_ARMED);
    assert_eq!(t.io.pool.in_ring(), 4);
    t.sc().recv(Fd::Fixed(3), b"again");
    t.turn();
    assert_eq!(t.evs(), [Ev::Data(id, b"again".to_vec())]);
    assert_eq!(t.h.heap_reads, 0);
}

/// An `ENOBUFS` while the pool still has buffers (other sockets emptied
/// the ring in the same moment): the next turn lends and re-arms at once.
#[test]
fn an_enobufs_with_buffers_to_lend_re_arms_next_turn() {
    let mut t = T::new(8, 256, 1 << 20);
    let id = t.accept(3);
    t.sc().recv_enobufs(Fd::Fixed(3));
    t.turn();
    assert_eq!(t.evs(), []);
    assert_eq!(t.subs(), []);
    assert_eq!(t.io.starved, [id.slot]);
    t.turn();
    assert_eq!(
        t.subs(),
        [Sub::Recv {
            fd: Fd::Fixed(3),
            ud: id.tok(Op::Recv)
        }]
    );
    assert_eq!(t.flags(id), IN_USE | READ_ARMED | FRESH);
}

/// A burst of new connections whose request heads all arrive at once: the
/// reads that find the ring dry wait, and restart a ring's worth per turn,
/// oldest first, without raising the ring mark (a raised mark would keep
/// that many buffers going round the ring, written and resident, after the
/// burst). A socket that has received before raises it as always.
#[test]
fn a_burst_of_first_reads_is_served_a_ring_at_a_time() {
    let mut t = T::new(64, 256, 1 << 20);
    let ids: Vec<SockId> = (0..10).map(|i| t.accept(10 + i)).collect();
    assert!(ids
        .iter()
        .all(|&id| t.flags(id) == IN_USE | READ_ARMED | FRESH));
    assert_eq!(t.io.pool.in_ring(), 4);
    let head = |i: usize| format!("GET /{i} HTTP/1.1\r\n\r\n").into_bytes();
    let fd = |i: usize| Fd::Fixed(10 + i as u32);
    for i in 0..10 {
        t.sc().recv(fd(i), &head(i));
    }
    t.turn();
    let got: Vec<Ev> = (0..4).map(|i| Ev::Data(ids[i], head(i))).collect();
    assert_eq!(t.evs(), got);
    assert_eq!(
        t.io.starved,
        ids[4..].iter().map(|id| id.slot).collect::<Vec<_>>()
    );
    // The ring gets its 4 buffers back, not more, and 4 of the 6 waiting
    // read again.
    t.turn();
    let recv = |i: usize| Sub::Recv {
        fd: fd(i),
        ud: ids[i].tok(Op::Recv),
    };
    assert_eq!(t.subs(), (4..8).map(recv).collect::<Vec<_>>());
    assert_eq!(t.io.pool.in_ring(), 4);
    assert_eq!(t.io.starved, [ids[8].slot, ids[9].slot]);
    for i in 4..8 {
        t.sc().recv(fd(i), &head(i));
    }
    t.turn();
    let got: Vec<Ev> = (4..8).map(|i| Ev::Data(ids[i], head(i))).collect();
    assert_eq!(t.evs(), got);
    assert_eq!(t.subs(), (8..10).map(recv).collect::<Vec<_>>());
    assert!(t.io.starved.is_empty());
    for i in 8..10 {
        t.sc().recv(fd(i), &head(i));
    }
    t.turn();
    assert_eq!(t.evs().len(), 2);
    assert!(ids.iter().all(|&id| t.flags(id) == IN_USE | READ_ARMED));
    t.turn();
    assert_eq!(t.io.pool.in_ring(), 4, "the mark never rose");
    // Now a socket that has read finds the ring dry: the mark doubles.
    t.sc().recv_enobufs(fd(0));
    t.turn();
    t.turn();
    assert_eq!(t.subs(), [recv(0)]);
    assert_eq!(t.io.pool.in_ring(), 8);
    t.pool_whole();
}

/// With the pool empty and nothing coming back, the starved socket reads
/// into a buffer of its own, one receive at a time, and goes back to the
/// ring once buffers return.
#[test]
fn a_socket_reads_into_its_own_buffer_while_the_pool_is_empty() {
    let (mut t, id) = starve();
    let (fd, heap) = (Fd::Fixed(3), id.tok(Op::RecvHeap));
    t.turn();
    let heap_recv = Sub::RecvInto {
        fd,
        len: 64,
        ud: heap,
    };
    assert_eq!(t.subs(), std::slice::from_ref(&heap_recv));
    assert!(t.io.starved.is_empty());
    t.sc().recv(fd, b"on the heap");
    t.turn();
    assert_eq!(t.evs(), [Ev::Data(id, b"on the heap".to_vec())]);
    assert_eq!(t.h.heap_reads, 1);
    // Still dry: the next read is on the heap too.
    assert_eq!(t.subs(), [heap_recv]);
    // Buffers come back while it is in flight; the ring is lent them, and
    // the read after it is the ring's again.
    t.h.held.clear();
    t.turn();
    assert_eq!(t.subs(), []);
    assert_eq!(t.io.pool.in_ring(), 4);
    t.sc().recv(fd, b"x");
    t.turn();
    assert_eq!(t.evs(), [Ev::Data(id, b"x".to_vec())]);
    assert_eq!(
        t.subs(),
        [Sub::Recv {
            fd,
            ud: id.tok(Op::Recv)
        }]
    );
    assert_eq!(t.h.heap_reads, 2);
    t.h.hold = false;
    t.h.held.clear();
    t.pool_whole();
}

/// A first read into a buffer of the socket's own (the pool was empty)
/// ends its `FRESH` state as one from the ring does.
#[test]
fn a_first_read_on_the_heap_ends_fresh() {
    let mut t = T::new(4, 64, 1 << 20);
    t.h.hold = true;
    let a = t.accept(3);
    let b = t.accept(4);
    t.sc().recv(Fd::Fixed(3), &[1; 4 * 64 + 1]);
    t.sc().recv_enobufs(Fd::Fixed(4));
    t.turn();
    assert_eq!(t.evs().len(), 4);
    assert_eq!(t.io.starved, [a.slot, b.slot]);
    assert_eq!(t.flags(b), IN_USE | STARVED | FRESH);
    // Nothing to lend: both restart, each into a buffer of its own.
    t.turn();
    let heap = |id: SockId, fd: u32| Sub::RecvInto {
        fd: Fd::Fixed(fd),
        len: 64,
        ud: id.tok(Op::RecvHeap),
    };
    assert_eq!(t.subs(), [heap(a, 3), heap(b, 4)]);
    t.sc().recv(Fd::Fixed(4), b"GET");
    t.turn();
    assert_eq!(t.evs(), [Ev::Data(b, b"GET".to_vec())]);
    assert_eq!(t.flags(b) & FRESH, 0);
    t.h.hold = false;
    t.h.held.clear();
}

/// More than `max_backpressure` queued: reads pause (the receive is
/// cancelled); a short send resumes where it stopped; reads resume once
/// less than half is queued, and `writable` fires for the batch asked.
#[test]
fn a_short_send_under_backpressure_pauses_and_resumes_reads() {
    let mut t = T::new(8, 256, 64);
    let id = t.accept(3);
    let fd = Fd::Fixed(3);
    let first: Vec<u8> = (0..100).collect();
    assert!(t.io.send(id, &first));
    t.io.notify_writable(id);
    t.turn();
    assert_eq!(
        t.subs(),
        [
            Sub::Send {
                fd,
                bytes: first.clone(),
                ud: id.tok(Op::Send)
            },
            Sub::Cancel {
                target: id.tok(Op::Recv),
                ud: id.tok(Op::Cancel)
            },
        ]
    );
    assert_eq!(
        t.flags(id),
        IN_USE | READ_ARMED | READ_PAUSED | READ_CANCELLING | NOTIFY_WRITABLE | FRESH
    );

    // The receive ends cancelled and is not re-armed; 40 bytes go out.
    t.sc().cancelled(id.tok(Op::Recv));
    t.sc().complete(id.tok(Op::Cancel), 0);
    t.sc().send_done(fd, 40);
    t.turn();
    assert_eq!(
        t.subs(),
        [Sub::Send {
            fd,
            bytes: first[40..].to_vec(),
            ud: id.tok(Op::Send)
        }]
    );
    assert_eq!(t.evs(), []);
    assert_eq!(t.flags(id), IN_USE | READ_PAUSED | NOTIFY_WRITABLE | FRESH);

    // More queued behind the batch in flight: still past the limit.
    let second = [7u8; 20];
    assert!(t.io.send(id, &second));
    t.turn();
    assert_eq!(t.subs(), []);
    assert_eq!(t.io.buffered(id), 80);

    // The rest goes: the batch behind is sent, 20 bytes are left queued,
    // below half the limit, so reads resume.
    t.sc().send_done(fd, 60);
    t.turn();
    assert_eq!(
        t.subs(),
        [
            Sub::Send {
                fd,
                bytes: second.to_vec(),
                ud: id.tok(Op::Send)
            },
            Sub::Recv {
                fd,
                ud: id.tok(Op::Recv)
            },
        ]
    );
    assert_eq!(t.evs(), [Ev::Writable(id)]);
    assert_eq!(t.flags(id), IN_USE | READ_ARMED | FRESH);

    // Once per ask: the next batch sent tells nothing.
    t.sc().send_done(fd, 20);
    t.sc().recv(fd, b"hi");
    t.turn();
    assert_eq!(t.evs(), [Ev::Data(id, b"hi".to_vec())]);
    assert_eq!(t.io.buffered(id), 0);
}

/// A send that fails closes the socket (`Gone::WriteError`).
#[test]
fn a_failed_send_closes_the_socket() {
    let mut t = T::new(8, 256, 1 << 20);
    let id = t.accept(3);
    assert!(t.io.send(id, b"lost"));
    t.turn();
    assert_eq!(t.subs().len(), 1);
    t.sc().complete(id.tok(Op::Send), -libc::EPIPE);
    t.turn();
    assert_eq!(t.evs(), [Ev::Gone(id, "write error")]);
    assert_eq!(
        t.subs(),
        [
            Sub::CancelFd {
                fd: Fd::Fixed(3),
                ud: id.tok(Op::Cancel)
            },
            Sub::Close {
                fd: Fd::Fixed(3),
                ud: id.tok(Op::Close)
            },
        ]
    );
    t.finish_close(id);
}

/// A close while the SHUTDOWN is in flight waits for it (see SHUTTING):
/// the kernel looks the descriptor up only when the shutdown runs, so a
/// close ahead of it could free the descriptor for the next accept and
/// shut that connection down instead.
#[test]
fn a_close_waits_for_the_shutdown_in_flight() {
    let mut t = T::new(8, 256, 1 << 20);
    let id = t.accept(3);
    let fd = Fd::Fixed(3);
    assert!(t.io.send(id, b"bye"));
    t.io.shutdown_after_flush(id);
    t.turn();
    assert_eq!(
        t.subs(),
        [Sub::Send {
            fd,
            bytes: b"bye".to_vec(),
            ud: id.tok(Op::Send)
        }]
    );
    // Sent: the shutdown follows.
    t.sc().send_done(fd, 3);
    t.turn();
    assert_eq!(
        t.subs(),
        [Sub::Shutdown {
            fd,
            how: libc::SHUT_WR,
            ud: id.tok(Op::Shutdown)
        }]
    );
    assert_eq!(t.flags(id), IN_USE | READ_ARMED | SHUTTING | FRESH);

    // Closed while it is in flight: the handler is told, nothing is
    // submitted yet.
    t.io.close(id);
    assert_eq!(t.subs(), []);
    t.turn();
    assert_eq!(t.evs(), [Ev::Gone(id, "closed")]);
    assert_eq!(t.subs(), []);

    // The shutdown completes: now the cancel and the close.
    t.sc().complete(id.tok(Op::Shutdown), 0);
    t.turn();
    assert_eq!(
        t.subs(),
        [
            Sub::CancelFd {
                fd,
                ud: id.tok(Op::Cancel)
            },
            Sub::Close {
                fd,
                ud: id.tok(Op::Close)
            },
        ]
    );
    t.finish_close(id);
    assert_eq!(t.io.direct_in_use, 0);
    assert_eq!(t.evs(), []);
}

/// With nothing queued, the shutdown goes at once, and a close after its
/// completion goes at once too.
#[test]
fn a_shutdown_with_nothing_queued_goes_at_once() {
    let mut t = T::new(8, 256, 1 << 20);
    let id = t.accept(3);
    t.io.shutdown_after_flush(id);
    assert_eq!(
        t.subs(),
        [Sub::Shutdown {
            fd: Fd::Fixed(3),
            how: libc::SHUT_WR,
            ud: id.tok(Op::Shutdown)
        }]
    );
    t.sc().complete(id.tok(Op::Shutdown), 0);
    t.turn();
    assert_eq!(t.flags(id), IN_USE | READ_ARMED | FRESH);
    t.close(id, Fd::Fixed(3));
}

/// A completion that carries the generation of a socket closed since,
/// whose slot a new connection took: dropped, a buffer it carries given
/// back to the pool, the new socket untouched. So is user data that no
/// token made.
#[test]
fn a_late_completion_for_a_reused_slot_is_dropped() {
    let mut t = T::new(8, 256, 1 << 20);
    let old = t.accept(3);
    t.close(old, Fd::Fixed(3));
    assert_eq!(t.evs(), [Ev::Gone(old, "closed")]);
    let new = t.accept(4);
    assert_eq!(
        new,
        SockId {
            slot: old.slot,
            gen: old.gen + 1
        }
    );
    t.pool_whole();
    let (ring, free) = (t.io.pool.in_ring(), t.io.pool.free_count());

    t.sc().stale_recv(old.tok(Op::Recv), b"late");
    t.sc().stale(old.tok(Op::Send), 4);
    t.sc().stale(old.tok(Op::Shutdown), 0);
    t.sc().stale(old.tok(Op::Close), 0);
    t.sc().stale(0, 0);
    t.turn();
    assert_eq!(t.evs(), []);
    assert_eq!(t.subs(), []);
    // The buffer the late receive took from the ring is free again.
    assert_eq!(
        (t.io.pool.in_ring(), t.io.pool.free_count()),
        (ring - 1, free + 1)
    );
    t.pool_whole();
    let s = &t.io.socks[new.slot as usize];
    assert_eq!(
        (s.gen, s.flags, s.ops),
        (new.gen, IN_USE | READ_ARMED | FRESH, 1)
    );
    assert_eq!(t.io.direct_in_use, 1);
    assert!(t.io.sock(new).unwrap().inflight.is_none());

    // And the new connection reads as before.
    t.sc().recv(Fd::Fixed(4), b"new");
    t.turn();
    assert_eq!(t.evs(), [Ev::Data(new, b"new".to_vec())]);
}

/// A multishot accept that ends (no `F_MORE`) is submitted again.
#[test]
fn an_accept_that_ends_is_armed_again() {
    let mut t = T::new(8, 256, 1 << 20);
    let accept = token(THREAD, 0, Op::Accept);
    t.sc().complete(accept, -libc::ECANCELED);
    t.turn();
    assert_eq!(
        t.subs(),
        [Sub::Accept {
            fd: LISTENER,
            direct: true,
            ud: accept
        }]
    );
    assert_eq!(t.evs(), []);
}
