//! Read buffers and write batches: with `uring.rs`, the only part of the
//! runtime with `unsafe`.
//!
//! # The read pool
//!
//! Each worker thread owns one [`Pool`]: `read_buffers` buffers of
//! `read_buffer_size` bytes in one anonymous mapping (laid out as `stride`
//! explains). With io_uring, buffers are lent to the kernel through a
//! registered provided-buffer ring (`uring.rs` owns the ring); a multishot
//! `RECV` takes one only when data arrives, so an idle connection pins no
//! read buffer however many there are. With epoll the loop takes a buffer
//! from the pool itself when a socket is readable, reads into it, and the
//! rest is the same.
//!
//! Ownership of buffer `i`, in turn:
//! 1. the pool's free stack (most recently freed on top: warm in cache);
//! 2. the kernel, once it is in the ring (`lent`): it may write into it at
//!    any time while a buffer-select op is in flight. With incremental
//!    consumption (`IOU_PBUF_RING_INC`) the kernel fills one buffer over
//!    several completions, each the next part of it, and says which
//!    completion was its last (no `IORING_CQE_F_BUF_MORE`);
//! 3. one or more [`PooledBuf`]s, each holding the part one completion
//!    filled (the kernel no longer writes any part a completion named);
//! 4. the free stack again, once the kernel is done with it and the last
//!    `PooledBuf` is dropped.
//!
//! Memory safety rests on the mapping outliving every op that could write
//! into it: the loop drains every op before it drops its pool.
//!
//! # Writes
//!
//! A [`WriteBatch`] is a gather list of frame headers and payloads (borrowed
//! from read buffers or owned), sent with one `SEND` when it is one piece and
//! one `SENDMSG` otherwise. A connection has at most one batch in flight and
//! one filling behind it (see `io.rs`).

use std::cell::RefCell;
use std::io;
use std::ops::Range;
use std::ptr::NonNull;
use std::rc::Rc;

/// The most iovecs one `sendmsg` takes (Linux `UIO_MAXIOV`).
pub(crate) const IOV_MAX: usize = 1024;

/// A batch of several pieces totalling at most this many bytes is copied
/// into one piece and sent with `SEND` instead of `SENDMSG`, whose kernel
/// path copies the msghdr and imports the iovecs on every call (about 4 %
/// of the server's time at 100 x 20 B, `perf`). Past a few KiB the copy
/// would cost more than it saves.
pub(crate) const COALESCE_MAX: usize = 2 << 10;

/// Shared frames up to this size are copied into a batch rather than
/// referenced ([`WriteBatch::push_shared`]).
const SHARED_COPY_MAX: usize = 256;

pub(crate) struct PoolInner {
    base: NonNull<u8>,
    /// The most bytes one read takes.
    pub(crate) buf_size: usize,
    /// Distance between the starts of two buffers: see [`stride`].
    stride: usize,
    pub(crate) count: u16,
    pub(crate) state: RefCell<PoolState>,
}

/// Who holds which buffer.
pub(crate) struct PoolState {
    /// Per buffer: `PooledBuf`s alive that point into it.
    users: Vec<u16>,
    /// Per buffer: in the kernel's ring (or partly filled by it).
    lent: Vec<bool>,
    /// Per buffer: bytes the kernel has filled so far (incremental mode).
    filled: Vec<u32>,
    /// Buffers nobody holds, the most recently freed last.
    free: Vec<u16>,
    /// Buffers in the ring that the kernel has not finished.
    pub(crate) in_ring: usize,
}

impl PoolInner {
    pub(crate) fn buf_ptr(&self, id: u16) -> *mut u8 {
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
/// to a few dozen bytes past the source modulo 4 KiB ("4K aliasing"). With
/// every buffer at the same page offset, one unlucky offset slowed every
/// receive or every echo: at 10 connections x 16 KiB the two copies took
/// 24 % of the server's time against 9 % for a peer.
fn stride(buf_size: usize) -> usize {
    let lines = buf_size.max(1).div_ceil(64);
    (lines | 1) * 64
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: `base` and `len()` are the mapping made in `Pool::new`, and
        // this is the only place that unmaps it. The loop drops its pool only
        // after every op that could write into it has completed, and every
        // `PooledBuf` holds an `Rc` of this pool.
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len()) };
    }
}

/// A fresh private anonymous mapping of `len > 0` bytes, readable and
/// writable, page-aligned, zero-filled on first touch. The caller unmaps it.
pub(crate) fn map_anonymous(len: usize) -> io::Result<NonNull<u8>> {
    assert!(len > 0, "an empty mapping");
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
        return Err(io::Error::last_os_error());
    }
    Ok(NonNull::new(mem as *mut u8).expect("mmap returned a non-null address"))
}

/// A worker thread's read buffers. Cheap to clone (an `Rc`).
#[derive(Clone)]
pub(crate) struct Pool {
    pub(crate) inner: Rc<PoolInner>,
}

impl Pool {
    /// Maps `count` buffers of `buf_size` bytes, all free. Fails when the
    /// mapping cannot be made (the pool is larger than the system allows).
    pub(crate) fn new(buf_size: usize, count: u16) -> io::Result<Pool> {
        assert!(count > 0, "a pool needs at least one buffer");
        let stride = stride(buf_size);
        let len = stride * count as usize;
        // An anonymous mapping rather than the allocator: page-aligned (see
        // `stride`), and its pages cost memory only once they are written.
        let base = map_anonymous(len).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot map {len} bytes of read buffers: {e}"),
            )
        })?;
        let n = count as usize;
        Ok(Pool {
            inner: Rc::new(PoolInner {
                base,
                buf_size,
                stride,
                count,
                state: RefCell::new(PoolState {
                    users: vec![0; n],
                    lent: vec![false; n],
                    filled: vec![0; n],
                    // Buffer 0 on top.
                    free: (0..count).rev().collect(),
                    in_ring: 0,
                }),
            }),
        })
    }

    /// Buffers nobody holds.
    pub(crate) fn free_count(&self) -> usize {
        self.inner.state.borrow().free.len()
    }

    /// Buffers in the kernel's ring, not yet finished by it.
    pub(crate) fn in_ring(&self) -> usize {
        self.inner.state.borrow().in_ring
    }

    /// Takes the warmest free buffer to lend to the kernel's ring; returns
    /// its id, address and length.
    pub(crate) fn lend(&self) -> Option<(u16, *mut u8, u32)> {
        let mut s = self.inner.state.borrow_mut();
        let id = s.free.pop()?;
        s.lent[id as usize] = true;
        s.filled[id as usize] = 0;
        s.in_ring += 1;
        Some((id, self.inner.buf_ptr(id), self.inner.buf_size as u32))
    }

    /// A completion named buffer `id`, with `len` bytes in it. `more`: the
    /// kernel keeps filling the buffer (incremental mode). Returns the part
    /// this completion filled.
    pub(crate) fn taken(&self, id: u16, len: usize, more: bool) -> PooledBuf {
        let mut s = self.inner.state.borrow_mut();
        let i = id as usize;
        let off = s.filled[i];
        s.filled[i] += len as u32;
        s.users[i] += 1;
        if !more {
            s.lent[i] = false;
            s.in_ring -= 1;
        }
        PooledBuf {
            pool: self.inner.clone(),
            id,
            off,
            len: len as u32,
        }
    }

    /// A completion named buffer `id` without data (an error or EOF): the
    /// kernel gave it back unfilled, or the rest of it.
    pub(crate) fn returned(&self, id: u16, more: bool) {
        if more {
            return;
        }
        let mut s = self.inner.state.borrow_mut();
        let i = id as usize;
        s.lent[i] = false;
        s.in_ring -= 1;
        if s.users[i] == 0 {
            s.free.push(id);
        }
    }

    /// A free buffer for a read the loop makes itself (epoll), whole.
    pub(crate) fn take_free(&self) -> Option<PooledBuf> {
        let mut s = self.inner.state.borrow_mut();
        let id = s.free.pop()?;
        s.users[id as usize] = 1;
        Some(PooledBuf {
            pool: self.inner.clone(),
            id,
            off: 0,
            len: self.inner.buf_size as u32,
        })
    }
}

/// The least number of ring buffers kept lent: what a quiet server keeps
/// resident (idle connections cost 210 bytes with 4, see
/// docs/performance.md).
const MIN_LOW_WATER: usize = 4;
/// Turns without the ring running dry before the mark is brought down to
/// the demand seen over them.
const DECAY_AFTER: u32 = 1024;

/// How many buffers to keep in the kernel's ring: enough that one turn's
/// reads do not find it empty, and not many more.
///
/// Why not many more: the kernel takes ring buffers in the order they were
/// lent, so every buffer in the ring is written once per pass through it,
/// and the ring's size is the working set the reads go through. At 500
/// connections x 16 KiB a mark left at the whole pool (2,048 buffers, from
/// a burst of reads at start) made the kernel's copy into the buffers and
/// the unmasking twice as slow per byte as the epoll backend's, which reads
/// into the warmest free buffer (`perf`, see docs/performance.md); a turn
/// there took at most 41 buffers.
///
/// So the mark follows the demand: a turn that ran dry raises it to at
/// least 1.5x what that turn asked for (and at least doubles it); after
/// `DECAY_AFTER` turns without running dry it comes down to 1.5x the most
/// any of them took.
pub(crate) struct RingMark {
    mark: usize,
    max: usize,
    /// Buffers in the ring right after the last lend.
    after_lend: usize,
    /// Reads that found the ring empty this turn.
    dry: usize,
    /// The most buffers a turn asked for since the last decay.
    peak: usize,
    calm: u32,
}

impl RingMark {
    /// A mark for a pool of `max` buffers.
    pub(crate) fn new(max: usize) -> RingMark {
        RingMark {
            mark: MIN_LOW_WATER.min(max),
            max,
            after_lend: 0,
            dry: 0,
            peak: 0,
            calm: 0,
        }
    }

    /// A read found the ring empty (`ENOBUFS`).
    pub(crate) fn ran_dry(&mut self) {
        self.dry += 1;
    }

    /// Once a turn, before lending: `in_ring` is what the kernel has left
    /// of what was lent. Returns how many buffers the ring should hold.
    pub(crate) fn next_turn(&mut self, in_ring: usize) -> usize {
        let demand = self.after_lend.saturating_sub(in_ring) + self.dry;
        self.peak = self.peak.max(demand);
        if self.dry > 0 {
            self.dry = 0;
            self.calm = 0;
            self.mark = (self.mark * 2).max(demand + demand / 2).min(self.max);
        } else {
            self.calm += 1;
            if self.calm >= DECAY_AFTER {
                self.calm = 0;
                let want = (self.peak + self.peak / 2).clamp(MIN_LOW_WATER.min(self.max), self.max);
                self.mark = self.mark.min(want);
                self.peak = 0;
            }
        }
        self.mark
    }

    /// The ring holds `in_ring` buffers after lending.
    pub(crate) fn lent(&mut self, in_ring: usize) {
        self.after_lend = in_ring;
    }
}

/// Part of one read buffer, holding bytes received. Gives the buffer back
/// when the last part of it drops and the kernel is done with it.
pub(crate) struct PooledBuf {
    pool: Rc<PoolInner>,
    id: u16,
    off: u32,
    len: u32,
}

impl PooledBuf {
    /// Keeps the first `len` bytes (after a read of fewer bytes than room).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len as u32);
    }

    /// The received bytes.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        let ptr = self.pool.buf_ptr(self.id);
        // SAFETY: the completion that made this `PooledBuf` handed
        // `off..off + len` of buffer `id` to us: the kernel does not write
        // what a completion named (in incremental mode it fills only what
        // follows), and no other `PooledBuf` names the same bytes. The range
        // lies inside the buffer (`off + len <= buf_size <= stride`), and
        // `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(ptr.add(self.off as usize), self.len as usize) }
    }

    /// The received bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        let ptr = self.pool.buf_ptr(self.id);
        // SAFETY: as in `as_mut_slice`; shared access through `&self`.
        unsafe { std::slice::from_raw_parts(ptr.add(self.off as usize), self.len as usize) }
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let mut s = self.pool.state.borrow_mut();
        let i = self.id as usize;
        s.users[i] -= 1;
        if s.users[i] == 0 && !s.lent[i] {
            s.free.push(self.id);
        }
    }
}

/// Bytes received by one read: part of a pooled buffer, or (when the pool
/// is dry) an allocation of their own. Dropping it gives a pooled buffer
/// back.
pub enum InputBuf {
    /// Part of a pooled buffer.
    #[allow(private_interfaces)]
    Pooled(PooledBuf),
    /// A plain allocation.
    Heap(Vec<u8>),
}

impl InputBuf {
    /// The received bytes.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            InputBuf::Pooled(p) => p.as_mut_slice(),
            InputBuf::Heap(v) => v.as_mut_slice(),
        }
    }

    /// The received bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            InputBuf::Pooled(p) => p.as_slice(),
            InputBuf::Heap(v) => v.as_slice(),
        }
    }
}

/// Exposes `n` bytes a receive wrote into `v`'s spare capacity.
///
/// `n` must be what the kernel reported for a receive into exactly
/// `v.spare_capacity_mut()`.
pub(crate) fn set_len_received(v: &mut Vec<u8>, n: usize) {
    assert!(
        n <= v.capacity() - v.len(),
        "a receive wrote past its buffer"
    );
    // SAFETY: the kernel initialised `n` bytes of the spare capacity
    // starting at `len` (the receive was given exactly that region, and `n`
    // fits in it, as checked above).
    unsafe { v.set_len(v.len() + n) };
}

/// Output written by code that fills a `&mut [u8]` it is lent (rustls
/// encrypts records into the room it is given) rather than appending to a
/// vector. Its vector keeps the length of the most it has held, so the
/// bytes past [`SealBuf::len`] are earlier output, initialized: making
/// room again costs nothing, where `Vec::resize` would first zero it (a
/// memset of 16 KiB per 16 KiB wss:// echo, callgrind). Only room past
/// that mark is zeroed, once.
#[derive(Debug, Default)]
pub(crate) struct SealBuf {
    buf: Vec<u8>,
    /// Bytes of `buf` that are content; the rest is room.
    len: usize,
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
impl SealBuf {
    /// The content.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The heap it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// `n` bytes after the content to write into (whatever they held:
    /// not zeros); [`SealBuf::commit`] then says how many became content.
    pub(crate) fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.len..end]
    }

    /// The first `n` bytes of the last [`SealBuf::room`] are content now.
    pub(crate) fn commit(&mut self, n: usize) {
        assert!(self.len + n <= self.buf.len(), "committed past the room");
        self.len += n;
    }

    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.room(bytes.len()).copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// No content; the room stays.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

/// One piece of a [`WriteBatch`].
#[derive(Debug, Clone)]
enum Seg {
    /// Bytes of the batch's header buffer.
    Hdr(Range<usize>),
    /// The batch's [`WriteBatch::sealed`] content, whole (TLS records).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Sealed,
    /// Bytes of one of the batch's input buffers.
    Input(u32, Range<usize>),
    /// One of the batch's owned payloads.
    Owned(usize),
    /// One of the batch's shared frames (a publish: the same bytes in the
    /// batch of every subscriber).
    Shared(usize),
}

/// Frames to send in one go, and everything their bytes live in. Reused:
/// [`WriteBatch::clear`] keeps the allocations, drops the contents.
///
/// Only [`super::outbox::Outbox`] appends to a batch; the loop seals and
/// sends it.
pub(super) struct WriteBatch {
    /// Encoded frame headers and control frames.
    pub(super) hdr: Vec<u8>,
    /// A TLS socket's records: everything its batch in flight sends.
    pub(super) sealed: SealBuf,
    segs: Vec<Seg>,
    owned: Vec<Vec<u8>>,
    shared: Vec<bytes::Bytes>,
    inputs: Vec<InputBuf>,
    /// Ranges of the read being delivered are queued: its buffer goes into
    /// `inputs`, at the index they name, when the delivery is over
    /// ([`WriteBatch::keep_input`]). Kept here, not by the caller, so that
    /// no caller holds an index that could be wrong.
    cur_input: bool,
    /// The same for a message reassembled into a vector of its own.
    cur_owned: bool,
    /// Bytes in the batch not yet sent.
    bytes: usize,
    iov: Vec<libc::iovec>,
    /// The first iovec not yet wholly sent.
    first: usize,
    /// Boxed: the kernel reads it through a pointer while the batch moves.
    msg: Box<libc::msghdr>,
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch {
            hdr: Vec::new(),
            sealed: SealBuf::default(),
            segs: Vec::new(),
            owned: Vec::new(),
            shared: Vec::new(),
            inputs: Vec::new(),
            cur_input: false,
            cur_owned: false,
            bytes: 0,
            iov: Vec::new(),
            first: 0,
            // SAFETY: msghdr is a plain C struct; all-zero is a valid empty
            // value (no name, no iovecs, no control data).
            msg: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

impl WriteBatch {
    /// Marks `hdr[start..]` (just appended) as the next piece to send.
    #[inline]
    pub(super) fn push_hdr_from(&mut self, start: usize) {
        if start < self.hdr.len() {
            self.bytes += self.hdr.len() - start;
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

    /// Sends the [`WriteBatch::sealed`] content next, as one piece.
    #[cfg(feature = "tls")]
    pub(super) fn push_sealed(&mut self) {
        if !self.sealed.is_empty() {
            self.bytes += self.sealed.len();
            self.segs.push(Seg::Sealed);
        }
    }

    /// Sends `range` of the read being delivered next. The read buffer
    /// itself comes with [`WriteBatch::keep_input`] once the delivery is
    /// over. `keep_input` is the only code that grows `inputs`, so the
    /// buffer's index there is the length now, for every range of it.
    #[inline]
    pub(super) fn push_cur_input(&mut self, range: Range<usize>) {
        if !range.is_empty() {
            self.cur_input = true;
            self.bytes += range.len();
            self.segs.push(Seg::Input(self.inputs.len() as u32, range));
        }
    }

    /// The read whose ranges were queued with
    /// [`WriteBatch::push_cur_input`]: kept until the batch is sent.
    /// Dropped (back to its pool) if none was.
    #[inline]
    pub(super) fn keep_input(&mut self, input: InputBuf) {
        if std::mem::take(&mut self.cur_input) {
            self.inputs.push(input);
        }
    }

    /// Sends the `len` bytes of the reassembled message being delivered
    /// next; the vector itself comes with [`WriteBatch::keep_owned`], the
    /// only code that grows `owned`.
    #[inline]
    pub(super) fn push_cur_owned(&mut self, len: usize) {
        if len > 0 {
            self.cur_owned = true;
            self.bytes += len;
            self.segs.push(Seg::Owned(self.owned.len()));
        }
    }

    /// The message queued with [`WriteBatch::push_cur_owned`]; dropped if
    /// none was.
    pub(super) fn keep_owned(&mut self, data: Vec<u8>) {
        if std::mem::take(&mut self.cur_owned) {
            self.owned.push(data);
        }
    }

    /// Sends `data` next: bytes shared with other batches, not copied
    /// (unless small).
    #[inline]
    pub(super) fn push_shared(&mut self, data: &bytes::Bytes) {
        if data.len() <= SHARED_COPY_MAX {
            // Copying a small frame costs less than sharing it: no
            // reference count to raise and drop (an atomic each), no piece
            // of its own, and it joins the header bytes around it in one
            // iovec. A publish to many subscribers is mostly small frames.
            let h = self.hdr.len();
            self.hdr.extend_from_slice(data);
            self.push_hdr_from(h);
            return;
        }
        self.bytes += data.len();
        self.segs.push(Seg::Shared(self.shared.len()));
        self.shared.push(data.clone());
    }

    /// The bytes queued, in order (what TLS encrypts; the batch is not
    /// sealed).
    #[cfg(feature = "tls")]
    pub(super) fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.segs.iter().map(|s| match s {
            Seg::Hdr(r) => &self.hdr[r.clone()],
            Seg::Sealed => self.sealed.as_slice(),
            Seg::Input(i, r) => &self.inputs[*i as usize].as_slice()[r.clone()],
            Seg::Owned(i) => &self.owned[*i][..],
            Seg::Shared(i) => &self.shared[*i][..],
        })
    }

    /// Nothing to send?
    pub(super) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Bytes not yet sent.
    #[inline]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The heap the batch's own allocations hold (not the payloads it
    /// carries), which bounds how many spare batches a thread keeps.
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<WriteBatch>()
            + size_of::<libc::msghdr>()
            + self.hdr.capacity()
            + self.sealed.capacity()
            + self.segs.capacity() * size_of::<Seg>()
            + self.owned.capacity() * size_of::<Vec<u8>>()
            + self.shared.capacity() * size_of::<bytes::Bytes>()
            + self.inputs.capacity() * size_of::<InputBuf>()
            + self.iov.capacity() * size_of::<libc::iovec>()
    }

    /// Drops the contents (returning input buffers to their pool), keeping
    /// the allocations for the next batch.
    pub(super) fn clear(&mut self) {
        self.hdr.clear();
        self.sealed.clear();
        self.segs.clear();
        self.owned.clear();
        self.shared.clear();
        self.inputs.clear();
        self.cur_input = false;
        self.cur_owned = false;
        self.iov.clear();
        self.bytes = 0;
        self.first = 0;
    }

    /// Builds the iovecs. After this the batch's byte buffers must not
    /// change until it is sent.
    pub(super) fn seal(&mut self) {
        // A delivery still open would leave ranges naming a buffer not
        // yet in `inputs`: the loop seals only between deliveries.
        debug_assert!(!self.cur_input && !self.cur_owned);
        self.iov.clear();
        self.first = 0;
        if self.segs.len() > 1 {
            self.coalesce_small();
        }
        for s in &self.segs {
            let bytes: &[u8] = match s {
                Seg::Hdr(r) => &self.hdr[r.clone()],
                Seg::Sealed => self.sealed.as_slice(),
                Seg::Input(i, r) => &self.inputs[*i as usize].as_slice()[r.clone()],
                Seg::Owned(i) => &self.owned[*i],
                Seg::Shared(i) => &self.shared[*i],
            };
            self.iov.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
    }

    /// Copies the pieces, in order, to the end of the header buffer as one
    /// piece, if they total at most [`COALESCE_MAX`] bytes.
    fn coalesce_small(&mut self) {
        if self.bytes > COALESCE_MAX {
            return;
        }
        let start = self.hdr.len();
        self.hdr.reserve_exact(self.bytes);
        for s in &self.segs {
            match s {
                Seg::Hdr(r) => self.hdr.extend_from_within(r.clone()),
                Seg::Sealed => self.hdr.extend_from_slice(self.sealed.as_slice()),
                Seg::Input(i, r) => self
                    .hdr
                    .extend_from_slice(&self.inputs[*i as usize].as_slice()[r.clone()]),
                Seg::Owned(i) => self.hdr.extend_from_slice(&self.owned[*i]),
                Seg::Shared(i) => self.hdr.extend_from_slice(&self.shared[*i]),
            }
        }
        self.segs.clear();
        self.segs.push(Seg::Hdr(start..self.hdr.len()));
        // Nothing points into the read buffers any more: back to the pool
        // before the write, not after it.
        self.inputs.clear();
        self.owned.clear();
        self.shared.clear();
    }

    /// The iovecs still to send, at most [`IOV_MAX`] of them.
    pub(super) fn pending_iov(&mut self) -> &mut [libc::iovec] {
        let end = self.iov.len().min(self.first + IOV_MAX);
        &mut self.iov[self.first..end]
    }

    /// A `msghdr` over [`WriteBatch::pending_iov`], for `SENDMSG`. Its
    /// pointers stay valid while the batch is neither changed nor dropped
    /// (moving the box moves none of what they point to).
    pub(super) fn msghdr(&mut self) -> *const libc::msghdr {
        let end = self.iov.len().min(self.first + IOV_MAX);
        // SAFETY: `first <= end <= iov.len()`, so the pointer is inside the
        // vector or one past its end (with a length of zero).
        self.msg.msg_iov = unsafe { self.iov.as_mut_ptr().add(self.first) };
        self.msg.msg_iovlen = (end - self.first) as _;
        &*self.msg
    }

    /// `n` more bytes went out: skips whole iovecs, then part of the next.
    /// Returns true when everything is sent.
    pub(super) fn advance(&mut self, mut n: usize) -> bool {
        if n >= self.bytes {
            // All of it, the usual case: no iovec to walk.
            self.bytes = 0;
            self.first = self.iov.len();
            return true;
        }
        self.bytes -= n;
        while n > 0 && self.first < self.iov.len() {
            let v = &mut self.iov[self.first];
            if n >= v.iov_len {
                n -= v.iov_len;
                self.first += 1;
            } else {
                // SAFETY: `n < iov_len`, so the new base stays inside the
                // same buffer.
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut libc::c_void;
                v.iov_len -= n;
                n = 0;
            }
        }
        self.first >= self.iov.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_buffer_lends_its_old_room_again_without_zeroing_it() {
        let mut b = SealBuf::default();
        b.room(8).copy_from_slice(b"abcdefgh");
        b.commit(5);
        assert_eq!(b.as_slice(), b"abcde");
        // Room after the content is what was written there before.
        assert_eq!(b.room(3), b"fgh");
        // Past the high-water mark it is zeroed, once.
        assert_eq!(b.room(4), b"fgh\0");
        b.extend_from_slice(b"XY");
        assert_eq!(b.as_slice(), b"abcdeXY");
        let cap = b.capacity();
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.room(9), b"abcdeXYh\0");
        assert_eq!(b.capacity(), cap);
    }

    #[test]
    #[should_panic(expected = "committed past the room")]
    fn a_seal_buffer_refuses_content_it_was_not_lent() {
        let mut b = SealBuf::default();
        b.room(4);
        b.commit(5);
    }

    /// One turn of a ring that had `lent` buffers and whose reads took
    /// `took` of them, `dry` more finding it empty; returns the new mark.
    fn turn(m: &mut RingMark, lent: usize, took: usize, dry: usize) -> usize {
        m.lent(lent);
        for _ in 0..dry {
            m.ran_dry();
        }
        m.next_turn(lent - took)
    }

    #[test]
    fn a_burst_raises_the_ring_mark_to_what_the_turn_asked_for() {
        let mut m = RingMark::new(2048);
        assert_eq!(m.next_turn(0), MIN_LOW_WATER);
        // 500 connections' first reads in one turn: 4 buffers, 496 dry.
        assert_eq!(turn(&mut m, 4, 4, 496), 750);
        // Running dry again at least doubles it, up to the pool.
        assert_eq!(turn(&mut m, 750, 750, 10), 1500);
        assert_eq!(turn(&mut m, 1500, 1500, 10), 2048);
    }

    #[test]
    fn a_calm_ring_comes_down_to_the_demand_it_sees() {
        let mut m = RingMark::new(2048);
        m.next_turn(0);
        assert_eq!(turn(&mut m, 4, 4, 2000), 2048);
        // The turns after the burst take at most 40 buffers each: the mark
        // keeps the burst's demand for one window, then comes down to 1.5x
        // the window's peak.
        let mut mark = 2048;
        for i in 0..DECAY_AFTER * 2 {
            mark = turn(&mut m, mark, 30 + (i % 11) as usize, 0);
        }
        assert_eq!(mark, 60);
        // Quiet: it comes down to the minimum, and no lower.
        for _ in 0..DECAY_AFTER * 2 {
            mark = turn(&mut m, mark, 0, 0);
        }
        assert_eq!(mark, MIN_LOW_WATER);
    }

    #[test]
    fn the_ring_mark_never_exceeds_a_small_pool() {
        let mut m = RingMark::new(2);
        assert_eq!(m.next_turn(0), 2);
        assert_eq!(turn(&mut m, 2, 2, 100), 2);
        for _ in 0..DECAY_AFTER {
            turn(&mut m, 2, 0, 0);
        }
        assert_eq!(m.next_turn(2), 2);
    }

    /// The bytes the batch's iovecs point to, in order, and how many iovecs.
    fn gathered(b: &mut WriteBatch) -> (Vec<u8>, usize) {
        b.seal();
        let mut out = Vec::new();
        for v in b.pending_iov() {
            // SAFETY: `seal` points every iovec into a buffer the batch
            // owns, which lives, unchanged, as long as `b` is borrowed.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
            });
        }
        let n = b.pending_iov().len();
        (out, n)
    }

    /// A batch of header, input and owned pieces: its bytes in order.
    fn batch(payload: usize) -> (WriteBatch, Vec<u8>) {
        let mut b = WriteBatch::default();
        let input: Vec<u8> = (0..payload + 6).map(|i| i as u8).collect();
        b.hdr.extend_from_slice(&[0x82, 0x7e]);
        b.push_hdr_from(0);
        // A range of the read being delivered, queued before the read
        // buffer is handed over.
        b.push_cur_input(6..payload + 6);
        b.keep_input(InputBuf::Heap(input.clone()));
        b.hdr.extend_from_slice(&[0x8a, 0x00]);
        b.push_hdr_from(2);
        // An owned payload pushed (twice) before it is handed over, and one
        // shared frame.
        b.push_cur_owned(3);
        b.push_cur_owned(3);
        b.keep_owned(vec![7, 8, 9]);
        b.push_shared(&bytes::Bytes::from_static(&[1, 2]));
        let mut want = vec![0x82, 0x7e];
        want.extend_from_slice(&input[6..]);
        want.extend_from_slice(&[0x8a, 0x00, 7, 8, 9, 7, 8, 9, 1, 2]);
        (b, want)
    }

    /// Small shared frames are copied in beside the header bytes (one
    /// piece for many of them); large ones are referenced, not copied.
    #[test]
    fn small_shared_frames_are_copied_large_ones_shared() {
        let small = bytes::Bytes::from(vec![5u8; SHARED_COPY_MAX]);
        let large = bytes::Bytes::from(vec![6u8; COALESCE_MAX + 1]);
        let mut b = WriteBatch::default();
        for _ in 0..3 {
            b.push_shared(&small);
        }
        assert!(b.shared.is_empty());
        b.push_shared(&large);
        b.push_shared(&small);
        let mut want = vec![5u8; 3 * SHARED_COPY_MAX];
        want.extend_from_slice(&large);
        want.extend_from_slice(&small);
        assert_eq!(b.bytes(), want.len());
        let (got, pieces) = gathered(&mut b);
        assert_eq!(got, want);
        assert_eq!(pieces, 3, "small ones, the large one, a small one");
        assert_eq!(
            b.shared[0].as_ptr(),
            large.as_ptr(),
            "the large frame is the publisher's bytes"
        );
    }

    /// Small batches go out as one piece, larger ones as they are; either
    /// way the same bytes in the same order.
    #[test]
    fn small_batches_coalesce_into_one_piece() {
        let (mut b, want) = batch(20);
        assert_eq!(b.bytes(), want.len());
        assert_eq!(gathered(&mut b), (want, 1));
        assert!(
            b.inputs.is_empty(),
            "the read buffer goes back before the write"
        );

        let (mut b, want) = batch(COALESCE_MAX - 12);
        assert_eq!(gathered(&mut b), (want, 1));

        let (mut b, want) = batch(COALESCE_MAX - 11);
        assert_eq!(gathered(&mut b), (want, 6));
        assert!(!b.inputs.is_empty());
    }

    /// Short writes resume exactly where they stopped, inside an iovec and
    /// across several.
    #[test]
    fn advance_resumes_short_writes() {
        let (mut b, want) = batch(COALESCE_MAX);
        b.seal();
        let total = want.len();
        let mut sent = Vec::new();
        for step in [1, 2, 3000, 1, 100] {
            let (bytes, _) = {
                let mut out = Vec::new();
                for v in b.pending_iov() {
                    // SAFETY: as in `gathered`.
                    out.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
                    });
                }
                (out, 0)
            };
            let n = step.min(bytes.len());
            sent.extend_from_slice(&bytes[..n]);
            if b.advance(n) {
                break;
            }
        }
        assert_eq!(sent.len(), total);
        assert_eq!(sent, want);
        assert_eq!(b.bytes(), 0);
    }

    /// Parts of one buffer filled by successive completions (incremental
    /// mode) are separate and the buffer comes back only once the kernel is
    /// done with it and every part has dropped.
    #[test]
    fn incremental_parts_return_the_buffer_once() {
        let pool = Pool::new(1024, 2).unwrap();
        let (id, _, _) = pool.lend().unwrap();
        let mut a = pool.taken(id, 10, true);
        let mut b = pool.taken(id, 20, true);
        a.as_mut_slice().fill(1);
        b.as_mut_slice().fill(2);
        assert_eq!(a.as_slice(), &[1; 10]);
        assert_eq!(b.as_slice(), &[2; 20]);
        assert_eq!(pool.free_count(), 1);
        drop(a);
        let c = pool.taken(id, 5, false);
        drop(b);
        assert_eq!(pool.free_count(), 1, "still held by the last part");
        drop(c);
        assert_eq!(pool.free_count(), 2);
        assert_eq!(pool.inner.state.borrow().in_ring, 0);
    }

    /// Consecutive buffers must start at every cache-line offset of a page
    /// in turn, whatever the buffer size (see `stride`).
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
