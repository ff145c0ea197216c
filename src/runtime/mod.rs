//! The io_uring runtime: the only part of ringws that knows tokio-uring.
//!
//! [`Server::start`] binds one SO_REUSEPORT listener per worker thread (so
//! the kernel spreads new connections over the threads and no thread hands a
//! connection to another), starts the threads, each with its own tokio-uring
//! runtime, read-buffer pool and write-batch pool, and returns once all are
//! serving or one has failed. Connections never leave their thread, and
//! nothing on a connection's path takes a lock: the only state shared
//! between threads is the open-connection counter, touched at accept and
//! close.

pub mod buf;
pub mod client;
pub mod deadline;
mod driver;
pub mod shutdown;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::log;
use buf::{BufPool, WriteBatch};
use shutdown::LocalShutdown;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is not usable.
    Config(String),
    /// The listening socket could not be set up (address in use, permission).
    Bind(SocketAddr, io::Error),
    /// io_uring could not be set up: an old kernel, `kernel.io_uring_disabled`,
    /// or a seccomp policy (as in default Docker profiles) that blocks it.
    IoUring(io::Error),
    /// A worker thread could not be started.
    Thread(io::Error),
    /// A worker's read buffers (`read_buffers` x `read_buffer_size`) could
    /// not be mapped.
    ReadPool(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(m) => write!(f, "invalid configuration: {m}"),
            StartError::Bind(a, e) if e.kind() == io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {a}: the address is already in use")
            }
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::IoUring(e) => write!(
                f,
                "io_uring is not available ({e}); ringws needs Linux 5.19 or later with io_uring \
                 enabled (check sysctl kernel.io_uring_disabled, and the seccomp policy of a \
                 container runtime)"
            ),
            StartError::Thread(e) => write!(f, "cannot start a worker thread: {e}"),
            StartError::ReadPool(e) => write!(f, "{e}; lower --read-buffers or --read-buffer-size"),
        }
    }
}

impl std::error::Error for StartError {}

/// State shared by all worker threads.
struct Shared {
    open: AtomicUsize,
}

/// A worker thread's state, shared by its connection tasks.
pub(crate) struct ThreadCtx {
    cfg: Arc<Config>,
    pool: BufPool,
    /// Write batches not in use, kept for their allocations.
    #[expect(
        clippy::vec_box,
        reason = "batches travel boxed through futures and ops; moving a Box is 8 bytes, a batch 136"
    )]
    batches: RefCell<Vec<Box<WriteBatch>>>,
    shutdown: Rc<LocalShutdown>,
    deadlines: Rc<deadline::Deadlines>,
    shared: Arc<Shared>,
    /// Connections open on this thread.
    open: Cell<usize>,
}

/// Spare batches a thread keeps. Every connection that is sending holds
/// one, so with fewer spares than concurrent senders each turn frees and
/// allocates batches again (five allocations each): at 100 connections and
/// 64 spares that was up to 500 instructions an echo, varying from run to
/// run with how many sends overlapped.
const MAX_SPARE_BATCHES: usize = 1024;
/// Of those, this many may be large (up to [`MAX_SPARE_LARGE_BYTES`] of
/// heap, such as a batch that echoed a pipelined burst of small messages);
/// the rest only if small. At most 64 × 256 KiB + 960 × 4 KiB, about
/// 20 MiB, per thread in the worst case; a few hundred KiB in practice.
const MAX_SPARE_LARGE: usize = 64;
const MAX_SPARE_LARGE_BYTES: usize = 256 << 10;
const MAX_SPARE_SMALL_BYTES: usize = 4 << 10;

impl ThreadCtx {
    #[cfg(test)]
    pub(crate) fn for_tests(cfg: Arc<Config>) -> Rc<ThreadCtx> {
        Rc::new(ThreadCtx {
            pool: BufPool::new(cfg.read_buffer_size, 4).expect("test pool"),
            deadlines: deadline::Deadlines::new(Duration::from_millis(10), cfg.write_timeout),
            cfg,
            batches: RefCell::new(Vec::new()),
            shutdown: Rc::new(LocalShutdown::default()),
            shared: Arc::new(Shared {
                open: AtomicUsize::new(0),
            }),
            open: Cell::new(0),
        })
    }

    fn take_batch(&self) -> Box<WriteBatch> {
        self.batches.borrow_mut().pop().unwrap_or_default()
    }

    fn put_batch(&self, mut b: Box<WriteBatch>) {
        b.clear();
        let mut spare = self.batches.borrow_mut();
        let bytes = b.heap_bytes();
        let keep = if spare.len() < MAX_SPARE_LARGE {
            bytes <= MAX_SPARE_LARGE_BYTES
        } else {
            spare.len() < MAX_SPARE_BATCHES && bytes <= MAX_SPARE_SMALL_BYTES
        };
        if keep {
            spare.push(b);
        }
    }
}

/// Counts a connection as open on its thread and globally until dropped.
struct OpenGuard(Rc<ThreadCtx>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running server. Dropping it without [`Server::shutdown`] leaves the
/// worker threads running.
pub struct Server {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds, starts `cfg.threads` workers and returns once every one of them
    /// is accepting connections.
    pub fn start(cfg: Config) -> Result<Server, StartError> {
        cfg.validate().map_err(StartError::Config)?;
        // Bind every listener here, so that "address in use" is reported
        // before any thread starts. With port 0 the first socket picks the
        // port and the others join it.
        let mut addr = cfg.listen;
        if addr.port() != 0 {
            probe(addr).map_err(|e| StartError::Bind(addr, e))?;
        }
        let mut listeners = Vec::with_capacity(cfg.threads);
        for _ in 0..cfg.threads {
            let l = bind(addr, cfg.backlog).map_err(|e| StartError::Bind(addr, e))?;
            addr = l.local_addr().map_err(|e| StartError::Bind(addr, e))?;
            listeners.push(l);
        }
        let cfg = Arc::new(cfg);
        let shared = Arc::new(Shared {
            open: AtomicUsize::new(0),
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let (cfg, shared, stop_rx, ready) = (
                cfg.clone(),
                shared.clone(),
                stop_rx.clone(),
                ready_tx.clone(),
            );
            let pin = cfg.pin.then_some(i % cores);
            let t = std::thread::Builder::new()
                .name(format!("ringws-{i}"))
                .spawn(move || worker(listener, cfg, shared, stop_rx, ready, pin))
                .map_err(StartError::Thread)?;
            threads.push(t);
        }
        drop(ready_tx);
        let server = Server {
            addr,
            stop,
            threads,
        };
        for _ in 0..server.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    server.shutdown();
                    return Err(e);
                }
                Err(_) => {
                    server.shutdown();
                    return Err(StartError::Thread(io::Error::other(
                        "worker exited during start",
                    )));
                }
            }
        }
        Ok(server)
    }

    /// The address the server listens on (with the real port when 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, sends every connection a Close (1001), waits up to
    /// the close timeout for them to end, and joins the workers.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Fails with `AddrInUse` if anything listens on `addr`, including another
/// ringws: SO_REUSEPORT would otherwise let a second server by the same user
/// join the port silently and take a share of its connections. The probe
/// has SO_REUSEADDR only, so old TIME_WAIT connections do not count.
fn probe(addr: SocketAddr) -> io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
}

fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s.into())
}

fn worker(
    listener: std::net::TcpListener,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ready: mpsc::Sender<Result<(), StartError>>,
    pin: Option<usize>,
) {
    if let Some(core) = pin {
        pin_to_core(core);
    }
    let rt = match tokio_uring::Runtime::new(tokio_uring::builder().entries(cfg.ring_entries)) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(StartError::IoUring(e)));
            return;
        }
    };
    rt.block_on(async move {
        let listener = tokio_uring::net::TcpListener::from_std(listener);
        let pool = match BufPool::new(cfg.read_buffer_size, cfg.read_buffers as u16) {
            Ok(p) => p,
            Err(e) => {
                let _ = ready.send(Err(StartError::ReadPool(e)));
                return;
            }
        };
        let ctx = Rc::new(ThreadCtx {
            pool,
            cfg: cfg.clone(),
            batches: RefCell::new(Vec::new()),
            shutdown: Rc::new(LocalShutdown::default()),
            // A tenth of the write timeout: a write is cut between 1.0 and
            // 1.1 times the timeout after it started.
            deadlines: deadline::Deadlines::new(
                (cfg.write_timeout / 10).max(Duration::from_millis(1)),
                cfg.write_timeout,
            ),
            shared,
            open: Cell::new(0),
        });
        let ticker = {
            let d = ctx.deadlines.clone();
            tokio_uring::spawn(async move {
                let mut every = tokio::time::interval(d.resolution());
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    d.tick();
                }
            })
        };
        let _ = ready.send(Ok(()));
        let mut last_warn: Option<std::time::Instant> = None;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stop.changed() => break,
                r = listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: say so (once a second) and back off
                    // instead of spinning on an accept that keeps failing.
                    if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        log!(Warn, "accept failed: {e}");
                        last_warn = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let total = ctx.shared.open.fetch_add(1, Ordering::Relaxed);
            ctx.open.set(ctx.open.get() + 1);
            let guard = OpenGuard(ctx.clone());
            if total >= cfg.max_connections {
                if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    log!(Warn, "{peer}: refused, {} connections open (max-connections)", total);
                    last_warn = Some(std::time::Instant::now());
                }
                tokio_uring::spawn(async move {
                    driver::refuse(
                        &stream,
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec(),
                    )
                    .await;
                    drop(guard);
                });
                continue;
            }
            let c = ctx.clone();
            tokio_uring::spawn(async move {
                driver::serve(stream, peer, c).await;
                drop(guard);
            });
        }
        // Graceful shutdown: tell the connections, give them the close
        // timeout (and a little) to finish, then let the runtime drop the rest.
        drop(listener);
        ctx.shutdown.trip();
        let deadline = tokio::time::Instant::now() + cfg.close_timeout + Duration::from_millis(500);
        while ctx.open.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ticker.abort();
    });
}

fn pin_to_core(core: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        log!(Warn, "could not pin a worker to core {core}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As many connections as send at once must find a spare batch when the
    /// next turn comes, or every turn allocates again (see
    /// `MAX_SPARE_BATCHES`); large batches are kept only in small numbers.
    #[test]
    fn spare_batches_cover_concurrent_senders_and_bound_large_ones() {
        // The test pool registers with the io_uring driver.
        tokio_uring::start(async {
            let ctx = ThreadCtx::for_tests(Arc::new(Config::default()));
            let out: Vec<_> = (0..1000).map(|_| ctx.take_batch()).collect();
            for b in out {
                ctx.put_batch(b);
            }
            assert_eq!(ctx.batches.borrow().len(), 1000);

            let ctx = ThreadCtx::for_tests(Arc::new(Config::default()));
            let big = || {
                let mut b = ctx.take_batch();
                b.hdr.reserve(MAX_SPARE_SMALL_BYTES);
                b
            };
            let out: Vec<_> = (0..100).map(|_| big()).collect();
            for b in out {
                ctx.put_batch(b);
            }
            assert_eq!(ctx.batches.borrow().len(), MAX_SPARE_LARGE);
            let mut huge = ctx.take_batch();
            huge.hdr.reserve(MAX_SPARE_LARGE_BYTES);
            ctx.put_batch(huge);
            assert_eq!(ctx.batches.borrow().len(), MAX_SPARE_LARGE - 1);
        });
    }
}
