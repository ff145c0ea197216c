//! Buffers and the io_uring operations that move them: the only module of
//! the runtime with `unsafe`.
//!
//! # The read pool: provided buffers
//!
//! Each worker thread owns one [`BufPool`]: `read_buffers` buffers of
//! `read_buffer_size` bytes in one anonymous mapping (laid out as `stride`
//! explains), lent to the kernel as buffer
//! group 0 of that thread's ring (`IORING_OP_PROVIDE_BUFFERS`). Every
//! connection keeps one `RECV` with `IOSQE_BUFFER_SELECT` in flight; the
//! kernel picks a buffer from the group only when data arrives. An idle
//! connection therefore pins no read buffer at all, however many there are.
//!
//! Ownership of buffer `i`, in turn:
//! 1. the kernel, after it was provided: it may write into it at any time
//!    while a buffer-select op on this ring is in flight;
//! 2. a [`PooledBuf`], once a `RECV` completion names `i` (the kernel will not
//!    touch it again until it is provided again);
//! 3. the pool, when the `PooledBuf` drops; once every buffer of its chunk
//!    is back, the chunk is free (see `Lending`);
//! 4. the kernel again, when [`BufPool::maybe_replenish`] lends the chunk,
//!    which every [`recv`] may do before it submits.
//!
//! Memory safety rests on the allocation outliving every op that could write
//! into it: each in-flight `RECV` holds an `Rc` of the pool as its stable
//! data, which tokio-uring keeps until the op's completion arrives (also when
//! the future is dropped, and at runtime shutdown, where it cancels and
//! reaps every op). A completion for a dropped `RECV` would lose its buffer
//! id, so the driver never drops one in flight: it shuts the socket down and
//! awaits the completion instead.
//!
//! When every lent buffer is taken, `RECV` fails with `ENOBUFS`; [`recv`]
//! lends more and tries again, and if every buffer is out it falls back to
//! a read into a buffer allocated for that one read.
//!
//! # Writes
//!
//! [`send_all`] writes a [`WriteBatch`]: a gather list of frame headers and
//! payloads (borrowed from the read buffer or owned) with one `SENDMSG` per
//! attempt, so several frames go out in one submission and payloads are not
//! copied. A batch of one piece (an echo whose frame header the driver
//! wrote in place of the client's) goes out with `SEND`, which costs the
//! kernel less; so does a small batch of several pieces, copied into one
//! first (see `COALESCE_MAX`).

use std::cell::RefCell;
use std::io;
use std::ops::Range;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::rc::Rc;

use io_uring::{cqueue, opcode, squeue, types};
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

/// The buffer group id used on every worker's ring (one pool per ring).
const GROUP: u16 = 0;

/// The most iovecs one `sendmsg` takes (Linux `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// A batch of several pieces totalling at most this many bytes is copied
/// into one piece and sent with `SEND` instead of `SENDMSG`, whose kernel
/// path copies the msghdr and imports the iovecs on every call (about 4 %
/// of the server's time at 100 x 20 B, `perf`). Copying up to 2 KiB costs
/// less: 4 interleaved shared-core rounds served 2 % more echoes at
/// 100 x 20 B and 2.5 % more at 10 x 1 KiB (header and payload copied
/// together, before the driver learnt to put the header in place), and
/// 3 % more at 10 x 64 B with 8 in flight. Past a few KiB the copy would
/// cost more than it saves.
const COALESCE_MAX: usize = 2 << 10;

struct PoolInner {
    base: NonNull<u8>,
    /// The most bytes one `RECV` takes.
    buf_size: usize,
    /// Distance between the starts of two buffers: see [`stride`].
    stride: usize,
    count: u16,
    /// Which buffers are lent to the kernel, which are free.
    lending: RefCell<Lending>,
}

/// Buffers are lent to the kernel a chunk of [`CHUNK`] consecutive ids at a
/// time (one `PROVIDE_BUFFERS` op), and only as many as it needs: the
/// kernel takes provided buffers oldest first, so with the whole pool lent
/// every read would land in the buffer used longest ago, cold in cache and
/// TLB (at 10 connections x 16 KiB the receive copy took 16 % of the
/// server's time with 2,048 buffers lent, 9 % with 64). A chunk whose
/// buffers have all come back goes on top of a stack, and the next chunk
/// lent is the one freed last: the warmest.
struct Lending {
    /// Per chunk: its buffers not yet back from the kernel or a connection.
    out: Vec<u8>,
    /// Chunks with every buffer back, the most recently freed last.
    free: Vec<u16>,
    /// Buffers lent and not yet taken by a `RECV`, as far as we know.
    avail: usize,
    /// Lend more once `avail` falls below this. Doubles when the kernel
    /// runs dry, decays slowly while it does not.
    low_water: usize,
    /// Chunks lent since the kernel last ran dry, or since the last decay.
    calm: u32,
}

/// Buffers per chunk: one op lends 32, where one op per buffer was once the
/// largest single cost of an echo (a submission, a completion to reap and
/// an allocation in tokio-uring).
const CHUNK: usize = 32;
/// The least `low_water`: two chunks.
const MIN_LOW_WATER: usize = 2 * CHUNK;
/// Chunks lent without the kernel running dry before `low_water` shrinks.
const DECAY_AFTER: u32 = 1024;

impl PoolInner {
    fn buf_ptr(&self, id: u16) -> *mut u8 {
        assert!(id < self.count, "buffer id {id} out of range");
        // SAFETY: `id < count`, so the offset stays inside the allocation of
        // `count * stride` bytes.
        unsafe { self.base.as_ptr().add(id as usize * self.stride) }
    }

    fn len(&self) -> usize {
        self.stride * self.count as usize
    }
}

/// The pool's buffers start 64-byte aligned, each one cache line further
/// into its page than the one before: the stride is `buf_size` rounded up
/// to an odd number of cache lines, so consecutive buffers take all 64 line
/// offsets of a page in turn.
///
/// Why: the kernel copies socket data with `rep movsb`, which on the CPUs
/// measured here runs many times slower when the destination is a few bytes
/// to a few dozen bytes past the source modulo 4 KiB (the loads alias the
/// stores just made: "4K aliasing"). Where a copy lands in the kernel's
/// socket buffers is not ours to choose. With every buffer at the same page
/// offset, as a plain allocation of `count * buf_size` gives, one unlucky
/// offset slowed every receive or every echo: at 10 connections x 16 KiB
/// the two copies took 24 % of the server's time against 9 % for a peer.
/// Spread over all line offsets, only a small share of copies can alias.
fn stride(buf_size: usize) -> usize {
    let lines = buf_size.max(1).div_ceil(64);
    (lines | 1) * 64
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: `base` and `len()` are the mapping made in `BufPool::new`,
        // and this is the only place that unmaps it. No op can write into it
        // any more: every buffer-select op held an `Rc` of this pool, and the
        // last one is gone.
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len()) };
    }
}

/// A worker thread's read buffers. Cheap to clone (an `Rc`).
#[derive(Clone)]
pub struct BufPool {
    inner: Rc<PoolInner>,
}

impl BufPool {
    /// Maps `count` buffers of `buf_size` bytes and lends the first of them
    /// to the ring of the current tokio-uring runtime. Fails when the
    /// mapping cannot be made (the pool is larger than the system allows).
    pub fn new(buf_size: usize, count: u16) -> io::Result<BufPool> {
        assert!(count > 0, "a pool needs at least one buffer");
        let stride = stride(buf_size);
        let len = stride * count as usize;
        // An anonymous mapping rather than the allocator: page-aligned (see
        // `stride`), and its pages cost memory only once the kernel writes
        // them, where an aligned allocation would be zeroed by hand.
        // SAFETY: a fresh private anonymous mapping aliases nothing; the
        // arguments are valid for any `len > 0`.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot map {len} bytes of read buffers: {e}"),
            ));
        }
        let base = NonNull::new(mem as *mut u8).expect("mmap returned a non-null address");
        let pool = BufPool {
            inner: Rc::new(PoolInner {
                base,
                buf_size,
                stride,
                count,
                lending: RefCell::new(Lending {
                    out: vec![0; (count as usize).div_ceil(CHUNK)],
                    free: (0..(count as usize).div_ceil(CHUNK) as u16).rev().collect(),
                    avail: 0,
                    low_water: MIN_LOW_WATER.min(count as usize),
                    calm: 0,
                }),
            }),
        };
        pool.maybe_replenish();
        Ok(pool)
    }

    /// Lends free chunks, warmest first, until the kernel has `low_water`
    /// buffers it has not taken yet.
    pub fn maybe_replenish(&self) {
        let mut l = self.inner.lending.borrow_mut();
        while l.avail < l.low_water {
            let Some(c) = l.free.pop() else { break };
            let first = c as usize * CHUNK;
            let n = CHUNK.min(self.inner.count as usize - first);
            let addr = self.buf_ptr(first as u16);
            let sqe = opcode::ProvideBuffers::new(
                addr,
                self.inner.stride as i32,
                n as u16,
                GROUP,
                first as u16,
            )
            .build();
            // The op completes at once and nobody needs its result: drop the
            // in-flight handle; tokio-uring reaps the completion. The memory
            // it names lives as long as `inner`, which buffer-select ops hold.
            drop(UnsubmittedOneshot::new((), Ignore, sqe).submit());
            l.out[c as usize] = n as u8;
            l.avail += n;
            l.calm += 1;
            if l.calm >= DECAY_AFTER {
                l.calm = 0;
                l.low_water = (l.low_water - l.low_water / 4).max(MIN_LOW_WATER);
            }
        }
    }

    /// The kernel ran dry: lend twice as much from now on, and at once.
    /// Returns whether anything was lent.
    pub fn replenish(&self) -> bool {
        {
            let mut l = self.inner.lending.borrow_mut();
            l.avail = 0;
            l.calm = 0;
            l.low_water = (l.low_water * 2).min(self.inner.count as usize);
        }
        self.maybe_replenish();
        self.inner.lending.borrow().avail > 0
    }

    fn buf_ptr(&self, id: u16) -> *mut u8 {
        self.inner.buf_ptr(id)
    }
}

/// One read buffer taken from the kernel by a `RECV` completion, holding
/// `len` received bytes. Goes back to the pool when dropped.
pub struct PooledBuf {
    pool: Rc<PoolInner>,
    id: u16,
    len: usize,
}

impl PooledBuf {
    /// The received bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let ptr = self.pool.buf_ptr(self.id);
        // SAFETY: the completion that created this `PooledBuf` handed buffer
        // `id` to us; the kernel will not write it until it is provided again,
        // which happens only after this value drops. `len <= buf_size <= stride` (the
        // kernel wrote `len` bytes into a buffer of that size), so the slice
        // is inside the allocation, and `&mut self` makes it exclusive.
        unsafe { std::slice::from_raw_parts_mut(ptr, self.len) }
    }

    /// The received bytes.
    pub fn as_slice(&self) -> &[u8] {
        let ptr = self.pool.buf_ptr(self.id);
        // SAFETY: as in `as_mut_slice`; shared access through `&self`.
        unsafe { std::slice::from_raw_parts(ptr, self.len) }
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let mut l = self.pool.lending.borrow_mut();
        let c = self.id as usize / CHUNK;
        l.out[c] -= 1;
        if l.out[c] == 0 {
            l.free.push(c as u16);
        }
    }
}

/// Bytes received by one read: from the pool, or (when the pool is dry, or
/// during the handshake) from an allocation of their own.
pub enum InputBuf {
    /// A provided buffer.
    Pooled(PooledBuf),
    /// A plain allocation.
    Heap(Vec<u8>),
}

impl InputBuf {
    /// The received bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            InputBuf::Pooled(p) => p.as_mut_slice(),
            InputBuf::Heap(v) => v.as_mut_slice(),
        }
    }

    /// The received bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            InputBuf::Pooled(p) => p.as_slice(),
            InputBuf::Heap(v) => v.as_slice(),
        }
    }
}

struct Ignore;

impl OneshotOutputTransform for Ignore {
    type Output = ();
    type StoredData = ();
    fn transform_oneshot_output(self, _: (), _: cqueue::Entry) {}
}

/// What a [`recv`] brought.
pub enum Received {
    /// Bytes.
    Data(InputBuf),
    /// The peer closed its end (or the socket was shut down locally).
    Eof,
}

struct RecvSelect;

enum RecvOutcome {
    Buf(PooledBuf),
    Eof,
    NoBufs,
}

impl OneshotOutputTransform for RecvSelect {
    type Output = io::Result<RecvOutcome>;
    type StoredData = Rc<PoolInner>;

    fn transform_oneshot_output(self, pool: Rc<PoolInner>, cqe: cqueue::Entry) -> Self::Output {
        let res = cqe.result();
        // Take ownership of a selected buffer first, whatever the result, so
        // that it finds its way back to the pool.
        let buf = cqueue::buffer_select(cqe.flags()).map(|id| {
            let mut l = pool.lending.borrow_mut();
            l.avail = l.avail.saturating_sub(1);
            drop(l);
            PooledBuf {
                pool,
                id,
                len: res.max(0) as usize,
            }
        });
        match (res, buf) {
            (n, Some(b)) if n > 0 => Ok(RecvOutcome::Buf(b)),
            (0, _) => Ok(RecvOutcome::Eof),
            (e, _) if -e == libc::ENOBUFS => Ok(RecvOutcome::NoBufs),
            (e, _) if e < 0 => Err(io::Error::from_raw_os_error(-e)),
            (n, _) => Err(io::Error::other(format!(
                "recv returned {n} bytes without a buffer"
            ))),
        }
    }
}

/// Receives from `stream` into a buffer the kernel picks from `pool` when
/// data arrives. Falls back to a one-off allocation when the pool is dry.
///
/// Do not drop the returned future before it completes (see the module docs):
/// to stop waiting, shut the socket down and await it.
pub async fn recv(stream: &tokio_uring::net::TcpStream, pool: &BufPool) -> io::Result<Received> {
    use std::os::fd::AsRawFd;
    pool.maybe_replenish();
    let fd: RawFd = stream.as_raw_fd();
    let select = || {
        let sqe = opcode::Recv::new(
            types::Fd(fd),
            std::ptr::null_mut(),
            pool.inner.buf_size as u32,
        )
        .buf_group(GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT);
        UnsubmittedOneshot::new(pool.inner.clone(), RecvSelect, sqe).submit()
    };
    let mut outcome = select().await?;
    if let RecvOutcome::NoBufs = outcome {
        // The kernel ran dry: lend more (and more from now on), and try
        // once more. The PROVIDE_BUFFERS entries go into the submission
        // queue ahead of the RECV, and the kernel takes them in order.
        if pool.replenish() {
            outcome = select().await?;
        }
    }
    match outcome {
        RecvOutcome::Buf(b) => Ok(Received::Data(InputBuf::Pooled(b))),
        RecvOutcome::Eof => Ok(Received::Eof),
        // Boxed: this rare path would otherwise add its state to every
        // connection's future, idle or not.
        RecvOutcome::NoBufs => Box::pin(read_heap(stream, pool.inner.buf_size)).await,
    }
}

async fn read_heap(stream: &tokio_uring::net::TcpStream, size: usize) -> io::Result<Received> {
    let (res, mut v) = stream.read(Vec::with_capacity(size)).await;
    match res? {
        0 => Ok(Received::Eof),
        n => {
            v.truncate(n);
            Ok(Received::Data(InputBuf::Heap(v)))
        }
    }
}

/// One piece of a [`WriteBatch`].
#[derive(Debug, Clone)]
enum Seg {
    /// Bytes of the batch's header buffer.
    Hdr(Range<usize>),
    /// Bytes of the batch's input buffer.
    Input(Range<usize>),
    /// One of the batch's owned payloads.
    Owned(usize),
}

/// Frames to send in one go, and everything their bytes live in. Reused:
/// [`WriteBatch::clear`] keeps the allocations, drops the contents. Always
/// handled boxed, so that futures that carry one stay small.
pub struct WriteBatch {
    /// Encoded frame headers and control frames.
    pub hdr: Vec<u8>,
    segs: Vec<Seg>,
    owned: Vec<Vec<u8>>,
    input: Option<InputBuf>,
    iov: Vec<libc::iovec>,
    /// Boxed: the kernel reads it through a pointer while the batch moves.
    msg: Box<libc::msghdr>,
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch {
            hdr: Vec::new(),
            segs: Vec::new(),
            owned: Vec::new(),
            input: None,
            iov: Vec::new(),
            // SAFETY: msghdr is a plain C struct; all-zero is a valid empty
            // value (no name, no iovecs, no control data).
            msg: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

impl WriteBatch {
    /// Marks `hdr[start..]` (just appended) as the next piece to send.
    pub fn push_hdr_from(&mut self, start: usize) {
        if start < self.hdr.len() {
            // Merge with a header piece right before it: fewer iovecs.
            if let Some(Seg::Hdr(r)) = self.segs.last_mut() {
                if r.end == start {
                    r.end = self.hdr.len();
                    return;
                }
            }
            self.segs.push(Seg::Hdr(start..self.hdr.len()));
        }
    }

    /// Sends `range` of the input buffer next (see [`WriteBatch::set_input`]).
    pub fn push_input(&mut self, range: Range<usize>) {
        if !range.is_empty() {
            self.segs.push(Seg::Input(range));
        }
    }

    /// Sends `data` next.
    pub fn push_owned(&mut self, data: Vec<u8>) {
        if !data.is_empty() {
            self.segs.push(Seg::Owned(self.owned.len()));
            self.owned.push(data);
        }
    }

    /// The read buffer that `push_input` ranges refer to; kept until sent.
    pub fn set_input(&mut self, input: InputBuf) {
        debug_assert!(self.input.is_none());
        self.input = Some(input);
    }

    /// Nothing to send?
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The heap the batch's own allocations hold (not the payloads it
    /// carries), which bounds how many spare batches a thread keeps.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<WriteBatch>()
            + size_of::<libc::msghdr>()
            + self.hdr.capacity()
            + self.segs.capacity() * size_of::<Seg>()
            + self.owned.capacity() * size_of::<Vec<u8>>()
            + self.iov.capacity() * size_of::<libc::iovec>()
    }

    /// Drops the contents (returning the input buffer to its pool), keeping
    /// the allocations for the next batch.
    pub fn clear(&mut self) {
        self.hdr.clear();
        self.segs.clear();
        self.owned.clear();
        self.input = None;
        self.iov.clear();
    }

    /// Builds the iovecs. After this the batch's byte buffers must not change
    /// until the send is over.
    fn build_iov(&mut self) {
        self.iov.clear();
        if self.segs.len() > 1 {
            self.coalesce_small();
        }
        let input = self.input.as_ref().map(|i| i.as_slice());
        for s in &self.segs {
            let bytes: &[u8] = match s {
                Seg::Hdr(r) => &self.hdr[r.clone()],
                Seg::Input(r) => &input.expect("input set for input segments")[r.clone()],
                Seg::Owned(i) => &self.owned[*i],
            };
            self.iov.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
    }

    /// Copies the pieces, in order, to the end of the header buffer as one
    /// piece, if they total at most [`COALESCE_MAX`] bytes (see there).
    fn coalesce_small(&mut self) {
        let input = self.input.as_ref().map(|i| i.as_slice());
        let bytes = |s: &Seg| -> usize {
            match s {
                Seg::Hdr(r) | Seg::Input(r) => r.len(),
                Seg::Owned(i) => self.owned[*i].len(),
            }
        };
        let mut total = 0;
        for s in &self.segs {
            total += bytes(s);
            if total > COALESCE_MAX {
                return;
            }
        }
        let start = self.hdr.len();
        self.hdr.reserve_exact(total);
        for s in &self.segs {
            match s {
                Seg::Hdr(r) => self.hdr.extend_from_within(r.clone()),
                Seg::Input(r) => self
                    .hdr
                    .extend_from_slice(&input.expect("input set for input segments")[r.clone()]),
                Seg::Owned(i) => self.hdr.extend_from_slice(&self.owned[*i]),
            }
        }
        self.segs.clear();
        self.segs.push(Seg::Hdr(start..self.hdr.len()));
        // Nothing points into the read buffer any more: back to the pool
        // before the write, not after it.
        self.input = None;
    }
}

/// Writes every byte of `batch` to `stream`, resubmitting after short writes.
/// The batch comes back (for reuse) whatever the outcome.
pub async fn send_all(
    stream: &tokio_uring::net::TcpStream,
    mut batch: Box<WriteBatch>,
) -> (io::Result<()>, Box<WriteBatch>) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    batch.build_iov();
    let mut first = 0;
    while first < batch.iov.len() {
        let n_iov = (batch.iov.len() - first).min(IOV_MAX);
        // SAFETY: `first < iov.len()`, so the pointer is inside the vector.
        batch.msg.msg_iov = unsafe { batch.iov.as_mut_ptr().add(first) };
        batch.msg.msg_iovlen = n_iov as _;
        let sqe = if n_iov == 1 {
            // One piece: `SEND` skips the kernel's msghdr and iovec import.
            // A piece past 4 GiB goes in several sends, as a short write.
            let v = batch.iov[first];
            let len = v.iov_len.min(u32::MAX as usize) as u32;
            opcode::Send::new(types::Fd(fd), v.iov_base as *const u8, len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            opcode::SendMsg::new(types::Fd(fd), &*batch.msg as *const libc::msghdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
        // The msghdr (boxed), the iovecs (a Vec's heap buffer) and every byte
        // they point to are owned by `batch`, which the op keeps as stable
        // data until its completion: moving the batch moves none of them.
        let (res, b) = UnsubmittedOneshot::new(batch, Returning::new(), sqe)
            .submit()
            .await;
        batch = b;
        let mut n = match res {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), batch),
            Ok(n) => n,
            Err(e) => return (Err(e), batch),
        };
        // Skip what was written: whole iovecs, then part of the next.
        while n > 0 {
            let v = &mut batch.iov[first];
            if n >= v.iov_len {
                n -= v.iov_len;
                first += 1;
            } else {
                // SAFETY: `n < iov_len`, so the new base stays inside the
                // same buffer.
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut libc::c_void;
                v.iov_len -= n;
                n = 0;
            }
        }
    }
    (Ok(()), batch)
}

/// The transform of ops whose output is their result code (a byte count,
/// or the error), handing back their stable data `D`: whatever the SQE
/// points into, kept alive until the completion.
struct Returning<D>(std::marker::PhantomData<D>);

impl<D> Returning<D> {
    fn new() -> Self {
        Returning(std::marker::PhantomData)
    }
}

impl<D> OneshotOutputTransform for Returning<D> {
    type Output = (io::Result<usize>, D);
    type StoredData = D;

    fn transform_oneshot_output(self, data: D, cqe: cqueue::Entry) -> Self::Output {
        let r = cqe.result();
        let res = if r < 0 {
            Err(io::Error::from_raw_os_error(-r))
        } else {
            Ok(r as usize)
        };
        (res, data)
    }
}

/// Submits `sqe`, keeping `data` (whatever the SQE points into) alive
/// until the completion, and returns the result.
async fn run_op<D: Unpin + 'static>(data: D, sqe: squeue::Entry) -> io::Result<usize> {
    UnsubmittedOneshot::new(data, Returning::new(), sqe)
        .submit()
        .await
        .0
}

/// Connects `socket` to `addr` with `IORING_OP_CONNECT`, so that a socket
/// set up by hand (bound to a chosen source address) connects without
/// blocking the thread.
pub async fn connect(socket: &socket2::Socket, addr: std::net::SocketAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // Boxed, and kept by the op until its completion: the kernel reads the
    // address through this pointer.
    let sa = Box::new(socket2::SockAddr::from(addr));
    let sqe = opcode::Connect::new(
        types::Fd(socket.as_raw_fd()),
        sa.as_ptr() as *const _,
        sa.len(),
    )
    .build();
    run_op(sa, sqe).await.map(|_| ())
}

/// Sleeps for `d` with `IORING_OP_TIMEOUT`: microsecond precision, where
/// tokio's timer wheel rounds to milliseconds.
pub async fn sleep(d: std::time::Duration) {
    if d.is_zero() {
        return;
    }
    // Boxed, and kept by the op until its completion: the kernel reads the
    // timespec through this pointer.
    let ts = Box::new(types::Timespec::from(d));
    let sqe = opcode::Timeout::new(&*ts as *const types::Timespec).build();
    // -ETIME is the normal completion of a timeout.
    let _ = run_op(ts, sqe).await;
}

/// `IORING_OP_RECV` into the spare capacity of `buf` (after its `len()`),
/// which grows by the bytes received. For sockets it skips the VFS layer
/// that a READ goes through.
pub async fn recv_into(fd: RawFd, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    if buf.capacity() == buf.len() {
        buf.reserve(4096);
    }
    let spare = buf.spare_capacity_mut();
    let (ptr, len) = (spare.as_mut_ptr() as *mut u8, spare.len());
    // The Vec is the op's stable data: its heap buffer, where the kernel
    // writes, does not move when the Vec value does, and lives until the
    // completion.
    let sqe = opcode::Recv::new(types::Fd(fd), ptr, len.min(u32::MAX as usize) as u32).build();
    let (res, mut buf) = UnsubmittedOneshot::new(buf, Returning::new(), sqe)
        .submit()
        .await;
    if let Ok(n) = res {
        // SAFETY: the kernel initialised `n` bytes of the spare capacity
        // starting at `len` (the RECV was given exactly that region, so
        // `len + n <= capacity`).
        unsafe { buf.set_len(buf.len() + n) };
    }
    (res, buf)
}

/// A connection's peer address, for log lines. Looked up from the socket
/// when a line is written, rather than stored: 32 bytes per connection.
pub struct Peer<'a>(pub &'a tokio_uring::net::TcpStream);

impl std::fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: the descriptor belongs to the stream, which is borrowed for
        // the whole of this call, so it stays open while the borrow lives.
        let fd = unsafe { BorrowedFd::borrow_raw(self.0.as_raw_fd()) };
        match socket2::SockRef::from(&fd)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
        {
            Some(a) => write!(f, "{a}"),
            None => write!(f, "fd {}", self.0.as_raw_fd()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{stride, InputBuf, WriteBatch, COALESCE_MAX};

    /// The bytes the batch's iovecs point to, in order, and how many iovecs.
    fn gathered(b: &mut WriteBatch) -> (Vec<u8>, usize) {
        b.build_iov();
        let mut out = Vec::new();
        for v in &b.iov {
            // SAFETY: `build_iov` points every iovec into a buffer the batch
            // owns, which lives, unchanged, as long as `b` is borrowed.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
            });
        }
        (out, b.iov.len())
    }

    /// A batch of header, input and owned pieces: its bytes in order.
    fn batch(payload: usize) -> (Box<WriteBatch>, Vec<u8>) {
        let mut b = Box::<WriteBatch>::default();
        let input: Vec<u8> = (0..payload + 6).map(|i| i as u8).collect();
        b.hdr.extend_from_slice(&[0x82, 0x7e]);
        b.push_hdr_from(0);
        b.set_input(InputBuf::Heap(input.clone()));
        b.push_input(6..payload + 6);
        b.hdr.extend_from_slice(&[0x8a, 0x00]);
        b.push_hdr_from(2);
        b.push_owned(vec![7, 8, 9]);
        let mut want = vec![0x82, 0x7e];
        want.extend_from_slice(&input[6..]);
        want.extend_from_slice(&[0x8a, 0x00, 7, 8, 9]);
        (b, want)
    }

    /// Small batches go out as one piece, larger ones as they are; either
    /// way the same bytes in the same order.
    #[test]
    fn small_batches_coalesce_into_one_piece() {
        let (mut b, want) = batch(20);
        assert_eq!(gathered(&mut b), (want, 1));
        assert!(
            b.input.is_none(),
            "the read buffer goes back before the write"
        );

        let (mut b, want) = batch(COALESCE_MAX - 7);
        assert_eq!(gathered(&mut b), (want, 1));

        let (mut b, want) = batch(COALESCE_MAX - 6);
        assert_eq!(gathered(&mut b), (want, 4));
        assert!(b.input.is_some());
    }

    /// Consecutive buffers must start at every cache-line offset of a page
    /// in turn, whatever the buffer size, or one unlucky offset can slow
    /// every copy again (see `stride`).
    #[test]
    fn buffers_take_every_line_offset_of_a_page() {
        for size in [1, 64, 100, 1000, 4096, 16384, 32768, 65536, 65535] {
            let st = stride(size);
            assert!(st >= size && st % 64 == 0, "size {size}: stride {st}");
            let mut offsets: Vec<usize> = (0..64).map(|i| (i * st) % 4096 / 64).collect();
            offsets.sort_unstable();
            offsets.dedup();
            assert_eq!(offsets.len(), 64, "size {size}: stride {st}");
        }
    }
}
