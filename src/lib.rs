//! ringws: a WebSocket (RFC 6455) server for Linux on io_uring, one thread
//! per core.
//!
//! Two halves with one seam between them:
//!
//! * [`proto`], the protocol core, is sans-IO: it never touches a socket, a
//!   runtime or a clock. Bytes go in, events and bytes come out, and time is
//!   an argument, so the whole protocol is tested and fuzzed with byte
//!   literals alone.
//! * [`runtime`] is the only code that knows tokio-uring: it accepts
//!   connections, moves bytes between the kernel and pooled buffers, and
//!   feeds the core.
//!
//! # The data path of one echoed message
//!
//! ```text
//!            worker thread i (one per core, nothing shared on this path)
//!  kernel   +-----------------------------------------------------------+
//!  ------   |                                                           |
//!  socket --+-> RECV, buffer select ---> pool buffer k (PooledBuf)      |
//!  (SO_REUSEPORT|   (no buffer pinned        |                          |
//!   listener i) |    while idle)             v                          |
//!           |                    proto::Connection::read(&mut buf)      |
//!           |                      unmask in place (SIMD), UTF-8 check  |
//!           |                      (SIMD, streaming), close/ping logic  |
//!           |                            |                              |
//!           |          Event::Message { Payload::Input(range) }         |
//!           |          (or Payload::Owned: fragments, copied once)      |
//!           |                            v                              |
//!           |          WriteBatch: [hdr][buf k range][hdr][...]         |
//!  socket <-+--------- one SENDMSG (gather, no payload copy) ------------+
//!           |                            |                              |
//!           |          buffer k -> returned list -> PROVIDE_BUFFERS      |
//!           +-----------------------------------------------------------+
//! ```
//!
//! # Layout
//!
//! * [`proto::handshake`]: the HTTP/1.1 upgrade (4.2): 101, 400, 426, 431.
//! * [`proto::frame`]: frame headers: raw decode, validation, encode.
//! * [`proto::mask`]: (un)masking, AVX2/SSE2/NEON and a scalar reference.
//! * [`proto::utf8`]: streaming UTF-8 validation that fails fast.
//! * [`proto::message`]: reassembly of fragments within a size limit.
//! * [`proto::close`]: close codes, Close frames, the close state diagram.
//! * [`proto::conn`]: the connection state machine tying these together.
//! * [`proto::error`]: one error per violation, mapped to its close code or
//!   HTTP status.
//! * [`runtime`]: threads, listeners, accept loop, connection limit.
//! * [`runtime::buf`]: the provided-buffer pool, RECV and SENDMSG ops (the
//!   runtime's only `unsafe`).
//! * `runtime::driver`: the per-connection loop (handshake, read, echo,
//!   close).
//! * [`runtime::shutdown`]: graceful shutdown, lock-free per thread.
//! * [`config`]: every limit, its default and what it guards against.
//! * `main.rs`: command line to [`Config`] to [`Server`], nothing else.

pub mod config;
pub mod log;
pub mod proto;
pub mod runtime;

pub use config::Config;
pub use runtime::{Server, StartError};
