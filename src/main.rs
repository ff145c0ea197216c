//! The `ringws` binary: command line to [`ringws::Config`] to a running
//! echo server (the library's [`ringws::app::Echo`] on every path), and
//! nothing else.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringws::app::{App, Echo};
use ringws::log::{self, Level};
use ringws::{BackendKind, Config};

/// A WebSocket echo server on io_uring, one thread per core.
///
/// Every flag can also be set with the environment variable shown.
/// Sizes take K, M or G suffixes (powers of 1024); durations take ms or s
/// (seconds when bare).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "RINGWS_LISTEN", default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Worker threads [default: number of available cores].
    #[arg(long, env = "RINGWS_THREADS")]
    threads: Option<usize>,
    /// Pin worker i to core i.
    #[arg(long, env = "RINGWS_PIN")]
    pin: bool,
    /// Largest message, summed over its fragments (close 1009 past it).
    #[arg(long, env = "RINGWS_MAX_MESSAGE_SIZE", default_value = "64M", value_parser = size)]
    max_message_size: u64,
    /// Largest single frame payload (close 1009 past it).
    #[arg(long, env = "RINGWS_MAX_FRAME_SIZE", default_value = "64M", value_parser = size)]
    max_frame_size: u64,
    /// Largest HTTP request head (431 past it).
    #[arg(long, env = "RINGWS_MAX_HANDSHAKE_SIZE", default_value = "8K", value_parser = size)]
    max_handshake_size: u64,
    /// Most header lines in a request head (431 past it).
    #[arg(long, env = "RINGWS_MAX_HEADERS", default_value_t = 64)]
    max_headers: usize,
    /// Time allowed from accept to a complete request head.
    #[arg(long, env = "RINGWS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration)]
    handshake_timeout: Duration,
    /// Time allowed to write one batch of frames; a peer that stops reading
    /// is disconnected after it.
    #[arg(long, env = "RINGWS_WRITE_TIMEOUT", default_value = "30s", value_parser = duration)]
    write_timeout: Duration,
    /// Time to wait for the peer's Close after sending ours.
    #[arg(long, env = "RINGWS_CLOSE_TIMEOUT", default_value = "5s", value_parser = duration)]
    close_timeout: Duration,
    /// Most connections open at once, over all threads (503 past it).
    #[arg(long, env = "RINGWS_MAX_CONNECTIONS", default_value_t = 100_000)]
    max_connections: usize,
    /// Size of each pooled read buffer (1K to 1G).
    #[arg(long, env = "RINGWS_READ_BUFFER_SIZE", default_value = "32K", value_parser = size)]
    read_buffer_size: u64,
    /// Pooled read buffers per thread (1 to 32768).
    #[arg(long, env = "RINGWS_READ_BUFFERS", default_value_t = 2048)]
    read_buffers: usize,
    /// io_uring submission queue entries per thread.
    #[arg(long, env = "RINGWS_RING_ENTRIES", default_value_t = 1024)]
    ring_entries: u32,
    /// Listen backlog per thread.
    #[arg(long, env = "RINGWS_BACKLOG", default_value_t = 1024)]
    backlog: u32,
    /// Bytes queued to send on one connection past which reading from it
    /// pauses (until half are sent).
    #[arg(long, env = "RINGWS_MAX_BACKPRESSURE", default_value = "1M", value_parser = size)]
    max_backpressure: u64,
    /// Silence after which a connection is closed (1001), with a Ping sent
    /// halfway; 0 turns it off.
    #[arg(long, env = "RINGWS_IDLE_TIMEOUT", default_value = "120s", value_parser = duration)]
    idle_timeout: Duration,
    /// permessage-deflate: off, shared (no context takeover, one
    /// compressor per thread) or dedicated (context takeover, a compressor
    /// per connection).
    #[arg(long, env = "RINGWS_DEFLATE", default_value = "off")]
    deflate: ringws::config::DeflateMode,
    /// Dedicated deflate: the server's compression window, 8 to 15 bits.
    #[arg(long, env = "RINGWS_DEFLATE_WINDOW_BITS", default_value_t = 15)]
    deflate_window_bits: u8,
    /// Dedicated deflate: the window asked of clients, 8 to 15 bits.
    #[arg(long, env = "RINGWS_DEFLATE_CLIENT_WINDOW_BITS", default_value_t = 15)]
    deflate_client_window_bits: u8,
    /// Deflate memory level, 1 to 9 (compressor buffers of 7 x 2^(level + 6)
    /// bytes, beside a 128 KiB hash table at any level).
    #[arg(long, env = "RINGWS_DEFLATE_MEM_LEVEL", default_value_t = 8)]
    deflate_mem_level: u8,
    /// Deflate compression level, 0 to 9.
    #[arg(long, env = "RINGWS_DEFLATE_LEVEL", default_value_t = 1)]
    deflate_level: u8,
    /// Messages shorter than this are sent uncompressed.
    #[arg(long, env = "RINGWS_DEFLATE_MIN_SIZE", default_value = "64", value_parser = size)]
    deflate_min_size: u64,
    /// Log a line of counts (messages in and out, writes) this often; 0:
    /// never.
    #[arg(long, env = "RINGWS_STATS_INTERVAL", default_value = "0s", value_parser = duration)]
    stats_interval: Duration,
    /// Kernel interface: auto (io_uring where allowed, else epoll),
    /// io-uring or epoll.
    #[arg(long, env = "RINGWS_BACKEND", default_value = "auto")]
    backend: BackendKind,
    /// Let the kernel fill one read buffer with several reads (io_uring,
    /// Linux 6.12): less of the pool pinned by small messages, but large
    /// ones straddle buffers and are copied.
    #[arg(long, env = "RINGWS_INCREMENTAL_READS")]
    incremental_reads: bool,
    /// error, warn, info or debug.
    #[arg(long, env = "RINGWS_LOG", default_value = "info")]
    log_level: Level,
}

fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, true)
    } else {
        (s.strip_suffix('s').unwrap_or(s), false)
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("'{s}' is not a duration"));
    }
    Ok(Duration::from_secs_f64(if ms { n / 1000.0 } else { n }))
}

fn main() -> ExitCode {
    let a = Args::parse();
    log::set_level(a.log_level);
    let defaults = Config::default();
    let cfg = Config {
        listen: a.listen,
        threads: a.threads.unwrap_or(defaults.threads),
        pin: a.pin,
        max_frame_size: a.max_frame_size,
        max_message_size: a.max_message_size,
        max_handshake_size: usize::try_from(a.max_handshake_size).unwrap_or(usize::MAX),
        max_headers: a.max_headers,
        handshake_timeout: a.handshake_timeout,
        write_timeout: a.write_timeout,
        close_timeout: a.close_timeout,
        max_connections: a.max_connections,
        read_buffer_size: usize::try_from(a.read_buffer_size).unwrap_or(usize::MAX),
        read_buffers: a.read_buffers,
        ring_entries: a.ring_entries,
        backlog: a.backlog,
        max_backpressure: usize::try_from(a.max_backpressure).unwrap_or(usize::MAX),
        backend: a.backend,
        incremental_reads: a.incremental_reads,
        idle_timeout: a.idle_timeout,
        // Only sends from other threads use mailboxes; the echo has none.
        max_mailbox_bytes: defaults.max_mailbox_bytes,
        stats_interval: a.stats_interval,
        deflate: a.deflate,
        deflate_window_bits: a.deflate_window_bits,
        deflate_client_window_bits: a.deflate_client_window_bits,
        deflate_mem_level: a.deflate_mem_level,
        deflate_level: a.deflate_level,
        deflate_min_size: usize::try_from(a.deflate_min_size).unwrap_or(usize::MAX),
    };
    // The echo is one handler on the library's API, like any other.
    match App::new(cfg).route_prefix("/", Echo).run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ringws::log!(Error, "{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("8k"), Ok(8192));
        assert_eq!(size("100"), Ok(100));
        assert!(size("x").is_err());
        assert!(size("99999999999G").is_err());
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert!(duration("-1").is_err());
    }
}
