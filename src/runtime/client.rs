//! The client side of the runtime, for the load generator and tests: the
//! server's own loop, one per thread, with outgoing connections.
//!
//! A client implements [`Handler`]: completions come to it straight from
//! the loop, and it acts through [`Io`] ([`Io::connect`], [`Io::send_with`],
//! [`Io::close`]). Precise timers (an open-loop schedule) go through
//! [`Handler::next_deadline`], which bounds the loop's wait, and
//! [`Handler::turn`], which runs after every wait; [`Io::set_deadline`] is
//! the coarse per-connection timeout (10 ms ticks).

pub use super::buf::InputBuf;
pub use super::io::{Gone, Handler, Io, PeerName, SockId};
pub use super::BackendKind;

use std::io;

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
                    let backend =
                        super::open_backend(opts.backend, opts.ring_entries, 0, &pool, false)
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

/// Starts one loop on a thread of its own named `name`, woken through
/// `waker` (its [`Handler::wake`] runs after each
/// [`Waker::wake`](super::Waker::wake)): the loop of a side thread, such as
/// the broker's. Returns once the loop is set up, or why it could not be.
pub(crate) fn spawn_loop<H, M>(
    name: String,
    opts: LoopOptions,
    waker: std::sync::Arc<super::Waker>,
    make: M,
) -> io::Result<std::thread::JoinHandle<()>>
where
    H: Handler,
    M: FnOnce(&mut Io) -> H + Send + 'static,
{
    use std::os::fd::AsRawFd;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread_name = name.clone();
    let t = std::thread::Builder::new().name(name).spawn(move || {
        let setup = || -> io::Result<Io> {
            let pool = super::buf::Pool::new(opts.read_buffer_size, opts.read_buffers)?;
            let backend = super::open_backend(opts.backend, opts.ring_entries, 0, &pool, false)
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
            io.watch_wake(waker.fd.as_raw_fd())?;
            Ok(io)
        };
        let mut io = match setup() {
            Ok(io) => io,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let mut h = make(&mut io);
        let _ = ready_tx.send(Ok(()));
        if let Err(e) = io.run(&mut h) {
            tracing::error!("{thread_name}: the loop failed: {e}");
        }
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(t),
        Ok(Err(e)) => {
            let _ = t.join();
            Err(e)
        }
        Err(_) => Err(io::Error::other("the loop thread panicked while starting")),
    }
}
