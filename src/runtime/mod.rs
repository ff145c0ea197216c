//! The runtime: the only part of ringws that knows io_uring or epoll.
//!
//! `start_workers` binds one SO_REUSEPORT listener per worker thread (so
//! the kernel spreads new connections over the threads and no thread hands a
//! connection to another), starts the threads, each with its own event loop
//! (`io.rs`), read-buffer pool and write-batch spares, and returns once all
//! are serving or one has failed. Connections never leave their thread, and
//! nothing on a connection's path takes a lock: what threads share is the
//! open-connection counter, touched at accept and close, and each worker's
//! mailbox, which other threads fill and wake it for.
//!
//! # Layout
//! * `backend.rs`: the seam between the loop and the kernel interface, and
//!   the user data that names a slot, its generation and an op.
//! * `uring.rs`: the io_uring backend: setup, the provided-buffer ring, ops.
//!   `uring/script.rs` (unit tests only) stands in for the kernel behind it,
//!   so tests drive the loop's io_uring code completion by completion.
//! * `epoll.rs`: the epoll backend, for hosts where io_uring is blocked.
//! * `io/`: the loop: socket slots, reads, the write queue, backpressure,
//!   closing, timers, and the `Handler` trait it calls (its module docs
//!   list its files).
//! * `outbox.rs`: `Outbox`, the one writer of a connection's
//!   outgoing bytes.
//! * `wheel.rs`: the per-thread timing wheel.
//! * `buf.rs`: the read pool and write batches.
//! * [`client`]: the loop for clients (the load generator): the same
//!   [`client::Handler`] and [`client::Io`], with connects.

mod backend;
pub(crate) mod buf;
pub mod client;
mod epoll;
pub(crate) mod io;
pub(crate) mod outbox;
mod uring;
mod wheel;

pub use backend::BackendKind;

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

use backend::Backend;
use buf::Pool;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is not usable.
    Config(String),
    /// The listening socket could not be set up (address in use, permission).
    Bind(SocketAddr, std::io::Error),
    /// io_uring could not be set up (`--backend io-uring`): an old kernel,
    /// `kernel.io_uring_disabled`, or a seccomp policy that blocks it.
    IoUring(std::io::Error),
    /// A worker thread, its epoll instance or its wake-up eventfd could not
    /// be set up.
    Thread(std::io::Error),
    /// A worker's read buffers (`read_buffers` x `read_buffer_size`) could
    /// not be mapped.
    ReadPool(std::io::Error),
    /// The broker's thread could not be started.
    Broker(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(m) => write!(f, "invalid configuration: {m}"),
            StartError::Bind(a, e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {a}: the address is already in use")
            }
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::IoUring(e) => write!(
                f,
                "io_uring is not available ({e}); use --backend auto or epoll, or check sysctl \
                 kernel.io_uring_disabled and the seccomp policy of a container runtime"
            ),
            StartError::Thread(e) => write!(f, "cannot start a worker thread: {e}"),
            StartError::ReadPool(e) => write!(f, "{e}; lower --read-buffers or --read-buffer-size"),
            StartError::Broker(e) => write!(f, "cannot start the broker: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Wakes one worker's loop from any thread: an eventfd the loop keeps a
/// read (io_uring) or a watch (epoll) on. Wake-ups while one is pending
/// cost no system call.
pub(crate) struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    pub(crate) fn new() -> std::io::Result<Waker> {
        Ok(Waker {
            fd: epoll::eventfd()?,
            pending: AtomicBool::new(false),
        })
    }

    /// Makes the loop run `Handler::wake` soon.
    pub(crate) fn wake(&self) {
        // The loop clears `pending` before it reads its mailbox, so a
        // message sent after that clear is either seen by that read or wakes
        // the loop again.
        if !self.pending.swap(true, Ordering::AcqRel) {
            epoll::write_eventfd(self.fd.as_raw_fd());
        }
    }

    /// The loop is about to read its mailbox.
    pub(crate) fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// A signal [`StopSignals`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C): stop.
    Interrupt,
    /// SIGTERM (an orchestrator, `systemctl stop`): drain, then stop.
    Terminate,
    /// SIGHUP (`systemctl reload`): reload what can be reloaded; never a
    /// reason to drop connections.
    Hangup,
}

impl Signal {
    fn from_raw(sig: i32) -> Signal {
        match sig {
            libc::SIGINT => Signal::Interrupt,
            libc::SIGHUP => Signal::Hangup,
            _ => Signal::Terminate,
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, blocked in every thread and taken by
/// [`StopSignals::next`]: no handler runs inside a worker, no signal
/// interrupts a wait, and SIGHUP's default action (ending the process
/// without a Close to anyone) never runs.
///
/// For an application that starts the server itself ([`crate::App::start`],
/// to keep the [`crate::ServerHandle`] for its own threads) and stops it on
/// a signal, as [`crate::App::run`] does:
///
/// ```no_run
/// use ringws::app::{App, Echo};
/// use ringws::runtime::{Signal, StopSignals};
/// use ringws::Config;
///
/// // Before any thread starts, so that every thread inherits the mask.
/// let signals = StopSignals::block().unwrap();
/// let server = App::new(Config::default()).route_prefix("/", Echo).start().unwrap();
/// // ... hand `server.clone()` to the threads that need it ...
/// while signals.next(None) == Some(Signal::Hangup) {}
/// server.shutdown(std::time::Duration::from_secs(5));
/// ```
pub struct StopSignals(libc::sigset_t);

impl StopSignals {
    /// Blocks the three signals in this thread and in the threads it starts
    /// after this; call it before [`crate::App::start`].
    pub fn block() -> std::io::Result<StopSignals> {
        epoll::block_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]).map(StopSignals)
    }

    /// Waits until SIGINT or SIGTERM arrives (a SIGHUP meanwhile is taken
    /// and ignored).
    pub fn wait(&self) {
        while self.next(None) == Some(Signal::Hangup) {}
    }

    /// Waits up to `d` for SIGINT or SIGTERM; whether one arrived (a SIGHUP
    /// meanwhile is taken and ignored).
    pub fn wait_for(&self, d: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.next(Some(left)) {
                Some(Signal::Hangup) => continue,
                Some(_) => return true,
                None => return false,
            }
        }
    }

    /// The next of the three to arrive, waiting up to `timeout` (forever
    /// when `None`); `None` when the time ran out.
    pub fn next(&self, timeout: Option<std::time::Duration>) -> Option<Signal> {
        match timeout {
            None => Some(Signal::from_raw(epoll::wait_signal(&self.0))),
            Some(d) => epoll::wait_signal_for(&self.0, d).map(Signal::from_raw),
        }
    }
}

/// What the server's loops need to know, and nothing else: the
/// user-facing [`crate::Config`] maps onto it
/// ([`crate::Config::loop_config`]), so the runtime does not depend on the
/// layers above it.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Address every worker's listener binds (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Worker threads, one loop each.
    pub threads: usize,
    /// Pin worker `i` to core `i % cores`.
    pub pin: bool,
    /// Listen backlog of each listener.
    pub backlog: u32,
    /// Submission queue entries of each io_uring.
    pub ring_entries: u32,
    /// Size of one pooled read buffer.
    pub read_buffer_size: usize,
    /// Pooled read buffers per worker (at most 32768).
    pub read_buffers: u16,
    /// `IOU_PBUF_RING_INC`: several reads share one ring buffer.
    pub incremental_reads: bool,
    /// io_uring, epoll, or io_uring where the kernel allows it.
    pub backend: BackendKind,
    /// Bytes queued to send on one connection past which its reads pause.
    pub max_backpressure: usize,
    /// Time a write may make no progress before its connection is cut.
    pub write_timeout: std::time::Duration,
    /// The TLS configuration every listener's connections start with
    /// (`None`: plain TCP); a reload hands the loops a new one.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Worker threads started by [`start_workers`].
pub(crate) struct Workers {
    /// The address the listeners are bound to (with the real port).
    pub(crate) addr: SocketAddr,
    /// The backend the workers run on, with the features in use.
    pub(crate) backend: String,
    pub(crate) threads: Vec<JoinHandle<()>>,
}

/// Binds `cfg.threads` listeners, starts one worker thread for each, with
/// the handler `make(i)` builds on that thread, and returns once every one
/// of them is accepting connections. If one fails, `stop` is called (to
/// tell the started ones to finish) and the threads are joined.
pub(crate) fn start_workers<H, F>(
    cfg: LoopConfig,
    wakers: &[Arc<Waker>],
    make: F,
    stop: &dyn Fn(),
) -> Result<Workers, StartError>
where
    H: io::Handler,
    F: Fn(usize) -> H + Send + Sync + 'static,
{
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
        addr = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| StartError::Bind(addr, std::io::Error::other("no local address")))?;
        listeners.push(l);
    }
    let make = Arc::new(make);
    let cfg = Arc::new(cfg);
    let (ready_tx, ready_rx) = mpsc::channel();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut workers = Workers {
        addr,
        backend: String::new(),
        threads: Vec::new(),
    };
    let fail = |workers: Workers, e: StartError| {
        stop();
        for t in workers.threads {
            let _ = t.join();
        }
        Err(e)
    };
    for (i, listener) in listeners.into_iter().enumerate() {
        let (cfg, ready, waker, make) = (
            cfg.clone(),
            ready_tx.clone(),
            wakers[i].clone(),
            make.clone(),
        );
        let pin = cfg.pin.then_some(i % cores);
        let spawned = std::thread::Builder::new()
            .name(format!("ringws-{i}"))
            .spawn(move || worker(listener, cfg, waker, ready, pin, || make(i)));
        match spawned {
            Ok(t) => workers.threads.push(t),
            Err(e) => return fail(workers, StartError::Thread(e)),
        }
    }
    drop(ready_tx);
    for _ in 0..workers.threads.len() {
        match ready_rx.recv() {
            Ok(Ok(desc)) => workers.backend = desc,
            Ok(Err(e)) => return fail(workers, e),
            Err(_) => {
                let e = std::io::Error::other("worker exited during start");
                return fail(workers, StartError::Thread(e));
            }
        }
    }
    Ok(workers)
}

/// Fails with `AddrInUse` if anything listens on `addr`, including another
/// ringws: SO_REUSEPORT would otherwise let a second server by the same user
/// join the port silently and take a share of its connections. The probe
/// has SO_REUSEADDR only, so old TIME_WAIT connections do not count.
fn probe(addr: SocketAddr) -> std::io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
}

fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    // Accepted sockets inherit these from the listener: with direct
    // descriptors there is no descriptor to set them on afterwards.
    s.set_nodelay(true)?;
    s.set_keepalive(true)?;
    // For epoll's accept loop; io_uring does not mind.
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s)
}

/// Sets up the kernel interface `kind` asks for: io_uring, falling back
/// to epoll under `auto` (saying why). `files`: direct descriptors to
/// register (io_uring).
fn open_backend(
    kind: BackendKind,
    ring_entries: u32,
    files: u32,
    pool: &Pool,
    incremental: bool,
) -> Result<Backend, StartError> {
    if kind != BackendKind::Epoll {
        match uring::Uring::new(ring_entries, files, pool, incremental) {
            Ok(u) => return Ok(Backend::Uring(Box::new(u))),
            Err(e) if kind == BackendKind::IoUring => return Err(StartError::IoUring(e)),
            Err(e) => tracing::warn!("io_uring is not available ({e}); running on epoll"),
        }
    }
    epoll::Epoll::new()
        .map(Backend::Epoll)
        .map_err(StartError::Thread)
}

fn worker<H: io::Handler>(
    listener: Socket,
    cfg: Arc<LoopConfig>,
    waker: Arc<Waker>,
    ready: mpsc::Sender<Result<String, StartError>>,
    pin: Option<usize>,
    make: impl FnOnce() -> H,
) {
    if let Some(core) = pin {
        pin_to_core(core);
    }
    let pool = match Pool::new(cfg.read_buffer_size, cfg.read_buffers) {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(StartError::ReadPool(e)));
            return;
        }
    };
    // A direct descriptor per connection, as many as the descriptor limit
    // allows (the kernel applies it to the table's size); past that, plain
    // descriptors (see `io.rs`).
    let files = epoll::nofile_limit().min(1 << 20) as u32;
    let backend = match open_backend(
        cfg.backend,
        cfg.ring_entries,
        files,
        &pool,
        cfg.incremental_reads,
    ) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let desc = backend.describe();
    let mut io = io::Io::new(
        backend,
        pool,
        io::IoConfig {
            max_backpressure: cfg.max_backpressure,
            write_timeout: cfg.write_timeout,
            backlog: cfg.backlog,
        },
    );
    #[cfg(feature = "tls")]
    io.set_tls(cfg.tls.clone());
    if let Err(e) = io
        .listen(listener.as_raw_fd())
        .and_then(|()| io.watch_wake(waker.fd.as_raw_fd()))
    {
        let _ = ready.send(Err(StartError::Thread(e)));
        return;
    }
    let mut handler = make();
    let _ = ready.send(Ok(desc));
    if let Err(e) = io.run(&mut handler) {
        tracing::error!("worker loop failed: {e}");
    }
    // The listener closes here, after the loop has cancelled its accept.
    drop(listener);
}

fn pin_to_core(core: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        tracing::warn!("could not pin a worker to core {core}");
    }
}
