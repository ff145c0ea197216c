//! The client side of the runtime, for the load generator and tests: worker
//! threads, outgoing connections and precise sleeps, so that tokio-uring
//! stays behind this module's seam.
//!
//! Still on tokio-uring while the load generator moves to the loop in
//! `io.rs`; the server no longer uses it.

pub use super::buf::InputBuf;
pub use super::io::{Gone, Handler, Io, PeerName, SockId};
pub use super::BackendKind;

/// How each client loop is set up.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Pin loop `i` to core `i % cores`.
    pub pin: bool,
    /// Submission queue entries of each io_uring.
    pub ring_entries: u32,
    /// io_uring, epoll, or io_uring where the kernel allows it.
    pub backend: BackendKind,
    /// Size of one pooled read buffer.
    pub read_buffer_size: usize,
    /// Pooled read buffers per loop (at most 32768).
    pub read_buffers: u16,
    /// Bytes queued on one socket past which it stops reading.
    pub max_backpressure: usize,
    /// Time a write may make no progress before its socket is closed.
    pub write_timeout: std::time::Duration,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            pin: false,
            ring_entries: 4096,
            backend: BackendKind::Auto,
            read_buffer_size: 64 << 10,
            read_buffers: 1024,
            max_backpressure: 64 << 20,
            write_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Runs `threads` loops, each on a thread of its own: loop `i` runs the
/// handler `make(i, io)` returns until it is done, and `finish` turns the
/// handler into loop `i`'s result. Returns the results in order.
pub fn run_loops<H, T, M, F>(
    threads: usize,
    opts: LoopOptions,
    make: M,
    finish: F,
) -> io::Result<Vec<T>>
where
    H: Handler,
    T: Send + 'static,
    M: Fn(usize, &mut Io) -> H + Send + Sync + 'static,
    F: Fn(H) -> T + Send + Sync + 'static,
{
    let shared = std::sync::Arc::new((make, finish, opts));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("loop-{i}"))
                .spawn(move || -> io::Result<T> {
                    let (make, finish, opts) = &*shared;
                    if opts.pin {
                        core_affinity::set_for_current(core_affinity::CoreId { id: i % cores });
                    }
                    let pool = super::buf::Pool::new(opts.read_buffer_size, opts.read_buffers)?;
                    let backend = super::open_backend(opts.backend, opts.ring_entries, 0, &pool)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    let mut io = Io::new(
                        backend,
                        pool,
                        super::io::IoConfig {
                            max_backpressure: opts.max_backpressure,
                            write_timeout: opts.write_timeout,
                            backlog: 0,
                        },
                    );
                    let mut h = make(i, &mut io);
                    io.run(&mut h)?;
                    Ok(finish(h))
                })
        })
        .collect::<io::Result<_>>()?;
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| io::Error::other("a loop thread panicked"))?
        })
        .collect()
}

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use std::os::fd::RawFd;

use io_uring_06::{cqueue, opcode, squeue, types};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

/// Runs `f(i)` for `i` in `0..threads`, each on a thread of its own with its
/// own io_uring, and returns the results in order. With `pin`, thread `i`
/// runs on core `i % cores`.
pub fn run_workers<F, Fut>(
    threads: usize,
    pin: bool,
    ring_entries: u32,
    f: F,
) -> io::Result<Vec<Fut::Output>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let f = std::sync::Arc::new(f);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let f = f.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    if pin {
                        core_affinity::set_for_current(core_affinity::CoreId { id: i % cores });
                    }
                    let rt =
                        tokio_uring::Runtime::new(tokio_uring::builder().entries(ring_entries))?;
                    Ok(rt.block_on(f(i)))
                })
        })
        .collect::<io::Result<_>>()?;
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| io::Error::other("a worker thread panicked"))?
        })
        .collect()
}

/// Spawns a task on the current worker.
pub fn spawn<F: Future + 'static>(f: F) -> tokio::task::JoinHandle<F::Output> {
    tokio_uring::spawn(f)
}

/// Sleeps until `deadline` with microsecond precision (an io_uring
/// timeout), for open-loop schedules where a millisecond of timer slack
/// would be measured as latency.
pub async fn sleep_until(deadline: Instant) {
    sleep(deadline.saturating_duration_since(Instant::now())).await
}

/// Runs `op` to its end, calling `cut` if it is still pending at
/// `deadline`: an io_uring op is not dropped in flight, so `cut` must make
/// it complete (shutting its socket down does). Returns the op's output and
/// whether the deadline passed first.
async fn by_deadline<T>(
    op: impl Future<Output = T>,
    deadline: Instant,
    cut: impl FnOnce(),
) -> (T, bool) {
    let mut op = std::pin::pin!(op);
    let timer = std::pin::pin!(sleep_until(deadline));
    tokio::select! {
        biased;
        r = &mut op => return (r, false),
        _ = timer => {}
    }
    cut();
    (op.await, true)
}

/// An outgoing TCP connection.
pub struct ClientStream {
    inner: tokio_uring::net::TcpStream,
}

impl ClientStream {
    /// Connects to `addr`, from `source` when given (to spread connections
    /// over several local addresses: each has its own ephemeral ports),
    /// failing with `TimedOut` at `deadline`.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        deadline: Instant,
    ) -> io::Result<ClientStream> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if let Some(ip) = source {
            // Port 0: each source address has its own ephemeral port range.
            s.bind(&SocketAddr::new(ip, 0).into())?;
        }
        let (res, late) = by_deadline(connect(&s, addr), deadline, || {
            let _ = s.shutdown(std::net::Shutdown::Both);
        })
        .await;
        if late {
            return Err(io::ErrorKind::TimedOut.into());
        }
        res?;
        s.set_nodelay(true)?;
        Ok(ClientStream {
            inner: tokio_uring::net::TcpStream::from_std(s.into()),
        })
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.inner.write_all(buf).await
    }

    /// Reads into the spare capacity of `buf` (after its `len()`), growing it
    /// by the bytes read; `Ok(0)` is end of stream.
    pub async fn read_more(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        use std::os::fd::AsRawFd;
        recv_into(self.inner.as_raw_fd(), buf).await
    }

    /// [`ClientStream::read_more`], failing with `TimedOut` at `deadline`.
    /// The socket is shut down then (an io_uring read is not dropped in
    /// flight; the shutdown completes it), so it is of no further use.
    pub async fn read_more_by(
        &self,
        buf: Vec<u8>,
        deadline: Instant,
    ) -> (io::Result<usize>, Vec<u8>) {
        let ((res, buf), late) = by_deadline(self.read_more(buf), deadline, || {
            let _ = self.shutdown(std::net::Shutdown::Both);
        })
        .await;
        if late {
            return (Err(io::ErrorKind::TimedOut.into()), buf);
        }
        (res, buf)
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }
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
async fn connect(socket: &socket2::Socket, addr: std::net::SocketAddr) -> io::Result<()> {
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
async fn sleep(d: std::time::Duration) {
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
async fn recv_into(fd: RawFd, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
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
        super::buf::set_len_received(&mut buf, n);
    }
    (res, buf)
}
