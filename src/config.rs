//! Every limit and knob of the server, with its default and what it is for.
//!
//! The binary fills a [`Config`] from flags and environment variables
//! (`ringws --help`); embedders build one directly, starting from
//! `Config::default()`.

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::proto::deflate::Mode as DeflateMode;
use crate::proto::handshake::HandshakeLimits;
use crate::proto::http::HttpLimits;
use crate::proto::Limits;
use crate::runtime::{BackendKind, LoopConfig};

/// Server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:9001`.
    pub listen: SocketAddr,
    /// Worker threads, each with its own io_uring, listener (SO_REUSEPORT)
    /// and connections. Default: the number of available cores.
    pub threads: usize,
    /// Pin worker `i` to core `i % cores`. Default off.
    pub pin: bool,
    /// Longest frame payload accepted. Default 64 MiB. Stops a peer from
    /// declaring a huge frame that ties up memory; past it: close 1009.
    pub max_frame_size: u64,
    /// Longest message accepted, summed over all its fragments. Default
    /// 64 MiB. Stops memory exhaustion by endless fragments; past it: 1009.
    pub max_message_size: u64,
    /// Longest HTTP request head accepted. Default 8 KiB. Stops a client from
    /// making the server buffer headers without end; past it: 431.
    pub max_handshake_size: usize,
    /// Most header lines in a request head. Default 64. Past it: 431.
    pub max_headers: usize,
    /// Largest body of a plain HTTP request ([`crate::app::App::post`] and
    /// the other HTTP routes), in bytes, after chunked decoding. Default
    /// 1 MiB. Stops a client from making the server hold an unbounded body
    /// in memory: a larger Content-Length is refused before any of the body
    /// is read, a chunked body as soon as a chunk would pass it; 413.
    pub max_http_body: usize,
    /// Time allowed from accept to a complete request head. Default 10 s.
    /// Stops slowloris-style clients from holding connections open.
    pub handshake_timeout: Duration,
    /// Time allowed for one batch of frames to be written. Default 30 s. A
    /// peer that sends but stops reading would otherwise hold its
    /// connection, and the buffers of the pending write, forever.
    pub write_timeout: Duration,
    /// Time to wait for the peer's Close after sending ours. Default 5 s.
    /// Stops a peer that never answers from holding the connection.
    pub close_timeout: Duration,
    /// Most connections open at once, over all threads. Default 100,000.
    /// Past it new connections get a 503 and are closed, instead of the
    /// process running out of file descriptors or memory.
    pub max_connections: usize,
    /// Size of one read buffer in the per-thread pool. Default 32 KiB, at
    /// most [`MAX_READ_BUFFER_SIZE`]. A message that fits in one read (with
    /// its header) is echoed without a copy; a longer one is copied once.
    pub read_buffer_size: usize,
    /// Read buffers per thread, shared by all its connections and lent to
    /// the kernel through a provided-buffer ring, only as many as it takes,
    /// the most recently used first (at most [`MAX_READ_BUFFERS`]); one read
    /// takes one buffer unless `incremental_reads` is on. Default 2048: 64 MiB of
    /// address space at the default size, of which only the pages messages
    /// touch become resident. This is a ceiling for bursts and many busy
    /// connections, not what a quiet server touches. When all are
    /// in use, reads fall back to a buffer allocated for that read, which is
    /// slower: with 256, 1000 connections x 512 B ran 29 % slower.
    pub read_buffers: usize,
    /// Listen backlog of each thread's socket. Default 1024 (the kernel caps
    /// it at `net.core.somaxconn`).
    pub backlog: u32,
    /// Submission queue entries of each thread's io_uring. Default 1024.
    pub ring_entries: u32,
    /// Bytes queued to send on one connection past which the server stops
    /// reading from it, until half of them are sent. Default 1 MiB. A peer
    /// that sends but does not read (or reads slowly) would otherwise make
    /// the server queue its echoes without bound.
    pub max_backpressure: usize,
    /// Let the kernel fill one read buffer with several reads
    /// (`IOU_PBUF_RING_INC`, Linux 6.12). Default off. Small messages then
    /// share buffers, so connections whose echoes wait to be sent pin less of
    /// the pool; but a message often straddles two buffers and is copied to
    /// be reassembled: at 500 connections x 16 KiB it served 21,856 against
    /// 25,229 msgs/s without (4 interleaved shared-core rounds), and at
    /// 100 x 20 B and 1000 x 512 B it made no difference beyond the noise.
    pub incremental_reads: bool,
    /// Silence after which a WebSocket is closed with 1001, with a Ping
    /// sent halfway so that a live peer answers in time. Default 120 s; zero
    /// turns it off. A peer that vanishes without a FIN (a cable pulled, a
    /// NAT entry dropped) would otherwise keep its connection until the
    /// process ends. Routes may set their own ([`crate::app::Route`]).
    pub idle_timeout: Duration,
    /// Bytes of frames other threads may have waiting for one worker
    /// (`SocketRef::send`, publishes) before further ones are dropped
    /// (the send or publish says so). Default 64 MiB. A thread producing
    /// faster than a worker can send would otherwise grow that worker's
    /// mailbox without bound.
    pub max_mailbox_bytes: usize,
    /// [`crate::App::run`] logs a line of counts (connections, messages in
    /// and out, writes, bytes: [`crate::app::ServerStats`]) this often.
    /// Default zero: never. The counts are always kept (one store each per
    /// loop turn); `ServerHandle::stats` reads them.
    pub stats_interval: Duration,
    /// permessage-deflate (RFC 7692): `Off` (the default: every offer
    /// declined), `Shared` (no context takeover either way; one compressor
    /// per thread, nothing kept per connection) or `Dedicated` (context
    /// takeover where the client allows it; a compressor and decompressor
    /// per connection, made at its first compressed message). Routes may
    /// set their own ([`crate::app::Route::deflate`]). A publish is
    /// compressed once per node for all shared-mode subscribers (one thread
    /// compresses, the others share the frame), and for
    /// each dedicated-mode subscriber with its own compressor: a
    /// compression per subscriber per publish, the price of context
    /// takeover.
    pub deflate: DeflateMode,
    /// Dedicated mode: the server's compression window, 8 to 15 bits
    /// (4 x 2^bits bytes of each connection's compressor: the window twice
    /// and its chain links, beside the hash table). Default 15.
    pub deflate_window_bits: u8,
    /// Dedicated mode: the window asked of clients that allow a limit, 8 to
    /// 15 bits (2^bits bytes of decompression window per connection), and
    /// an offer that allows none is declined below 15. Default 15.
    pub deflate_client_window_bits: u8,
    /// zlib's memory level for compressors, 1 to 9: their symbol and
    /// output buffers, 7 x 2^(level + 6) bytes (112 KiB at 8, 896 bytes at
    /// 1; zlib-rs's hash table is 128 KiB at any level). Matters in
    /// dedicated mode, where each connection has a compressor. Default 8.
    pub deflate_mem_level: u8,
    /// Compression level, 0 to 9. Default 1, the fastest that compresses;
    /// higher levels cost more CPU for a few per cent.
    pub deflate_level: u8,
    /// Messages shorter than this are sent uncompressed (RSV1 clear, which
    /// the extension allows): compressing them costs more than it saves.
    /// Default 64 bytes.
    pub deflate_min_size: usize,
    /// Where to serve `/metrics`, `/livez` and `/readyz` as plain HTTP, on
    /// threads of their own (see [`crate::app::ServerHandle::metrics`]).
    /// Default `None`: no admin listener, so they are never public by
    /// accident; an application can serve them on its own routes too.
    pub admin_listen: Option<SocketAddr>,
    /// How long a worker's loop may go without a turn before `/livez`
    /// reports it stuck (503), so that an orchestrator restarts a process
    /// whose loop hangs (a handler that blocks, a deadlock). An idle loop
    /// turns at least once a second. Default 5 s.
    pub stall_timeout: Duration,
    /// On SIGTERM ([`crate::App::run`]), how long `/readyz` answers 503
    /// before the server stops accepting and closes every connection with
    /// 1001: time for a load balancer to take the node out of rotation.
    /// Default zero.
    pub drain_delay: Duration,
    /// The kernel interface: io_uring, epoll, or `Auto` (io_uring where the
    /// kernel allows it, else epoll, with a log line saying why). Default
    /// `Auto`.
    pub backend: BackendKind,
    /// TLS on the listener (`wss://`, and `https://` for the HTTP routes):
    /// PEM files ([`crate::tls::TlsFiles`]; `--tls-cert`, `--tls-key`,
    /// `--tls-sni`), or a rustls configuration the application built.
    /// Default `None`: plain TCP. Needs the `tls` feature; without it a
    /// server asked for TLS refuses to start. Bad files refuse to start,
    /// naming the file and the reason.
    pub tls: Option<crate::tls::Tls>,
}

/// The most read buffers per thread: io_uring's provided-buffer ring holds
/// at most 32768.
pub const MAX_READ_BUFFERS: usize = 1 << 15;

/// The largest read buffer: the kernel takes a provided buffer's length as
/// an `i32`, and the pool rounds each buffer up by up to two cache lines.
pub const MAX_READ_BUFFER_SIZE: usize = 1 << 30;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: false,
            max_frame_size: 64 << 20,
            max_message_size: 64 << 20,
            max_handshake_size: 8 << 10,
            max_headers: 64,
            max_http_body: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            max_connections: 100_000,
            read_buffer_size: 32 << 10,
            read_buffers: 2048,
            ring_entries: 1024,
            backlog: 1024,
            max_backpressure: 1 << 20,
            incremental_reads: false,
            idle_timeout: Duration::from_secs(120),
            max_mailbox_bytes: 64 << 20,
            stats_interval: Duration::ZERO,
            deflate: DeflateMode::Off,
            deflate_window_bits: 15,
            deflate_client_window_bits: 15,
            deflate_mem_level: 8,
            deflate_level: 1,
            deflate_min_size: 64,
            backend: BackendKind::Auto,
            admin_listen: None,
            stall_timeout: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            tls: None,
        }
    }
}

impl Config {
    /// The limits the protocol core enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
            close_timeout: self.close_timeout,
        }
    }

    /// What the runtime's loops take of it. Call after
    /// [`Config::validate`] (which bounds `read_buffers` to a `u16`).
    pub fn loop_config(&self) -> LoopConfig {
        LoopConfig {
            listen: self.listen,
            threads: self.threads,
            pin: self.pin,
            backlog: self.backlog,
            ring_entries: self.ring_entries,
            read_buffer_size: self.read_buffer_size,
            read_buffers: u16::try_from(self.read_buffers).unwrap_or(u16::MAX),
            incremental_reads: self.incremental_reads,
            backend: self.backend,
            max_backpressure: self.max_backpressure,
            write_timeout: self.write_timeout,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The limits on a request head.
    pub fn handshake_limits(&self) -> HandshakeLimits {
        HandshakeLimits {
            max_head: self.max_handshake_size,
            max_headers: self.max_headers,
        }
    }

    /// The limits on a plain HTTP request: the head's, and
    /// [`Config::max_http_body`].
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_head: self.max_handshake_size,
            max_headers: self.max_headers,
            max_body: self.max_http_body,
        }
    }

    /// Rejects settings the server cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        #[cfg(not(feature = "tls"))]
        if self.tls.is_some() {
            return Err("TLS needs ringws built with the `tls` feature \
                        (cargo build --release --features tls)"
                .into());
        }
        if self.threads == 0 {
            return Err("threads must be at least 1".into());
        }
        if self.read_buffers == 0 || self.read_buffers > MAX_READ_BUFFERS {
            return Err(format!("read-buffers must be 1..={MAX_READ_BUFFERS}"));
        }
        if self.max_mailbox_bytes == 0 {
            return Err("max-mailbox-bytes must be at least 1".into());
        }
        if self.max_backpressure == 0 {
            return Err("max-backpressure must be at least 1".into());
        }
        if !(1024..=MAX_READ_BUFFER_SIZE).contains(&self.read_buffer_size) {
            return Err(format!(
                "read-buffer-size must be 1024..={MAX_READ_BUFFER_SIZE}"
            ));
        }
        if self.max_handshake_size < 256 {
            return Err("max-handshake-size must be at least 256".into());
        }
        if self.max_headers < 8 {
            return Err("max-headers must be at least 8".into());
        }
        if self.max_connections == 0 {
            return Err("max-connections must be at least 1".into());
        }
        for (name, bits) in [
            ("deflate-window-bits", self.deflate_window_bits),
            (
                "deflate-client-window-bits",
                self.deflate_client_window_bits,
            ),
        ] {
            if !(8..=15).contains(&bits) {
                return Err(format!("{name} must be 8..=15"));
            }
        }
        if !(1..=9).contains(&self.deflate_mem_level) {
            return Err("deflate-mem-level must be 1..=9".into());
        }
        if self.deflate_level > 9 {
            return Err("deflate-level must be 0..=9".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, MAX_READ_BUFFER_SIZE};

    /// The pool hands each buffer's length (rounded up by up to two cache
    /// lines) to the kernel as an `i32`: a larger size must be refused here
    /// rather than wrap there.
    #[test]
    fn read_buffer_size_is_bounded() {
        let with = |n| Config {
            read_buffer_size: n,
            ..Config::default()
        };
        assert!(with(MAX_READ_BUFFER_SIZE).validate().is_ok());
        assert!(with(MAX_READ_BUFFER_SIZE + 1).validate().is_err());
        assert!(with(1023).validate().is_err());
        assert!(MAX_READ_BUFFER_SIZE + 128 <= i32::MAX as usize);
    }
}
