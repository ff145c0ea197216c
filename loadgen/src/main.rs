//! `loadgen`: a WebSocket load generator on io_uring, thread per core, with
//! latency histograms free of coordinated omission in rate mode. It speaks
//! WebSocket through ringws's own protocol core in the client role.

mod autobahn;
mod broadcast;
mod connect;
mod pusher;
mod report;
mod stats;
mod target;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use ringws::proto::MessageKind;

use report::{Machine, Params, RunResult};
use stats::{Snapshot, Stats};
use target::Target;

const EXIT_CODES: &str = "\
Exit codes:
  0  the run completed without errors
  1  the run completed, but errors were counted (see the table)
  2  bad command line
  3  no connection could be opened (refused, unreachable, not a WebSocket server)
  4  an output file could not be written, or io_uring is not available";

/// A WebSocket load generator with honest latency histograms.
///
/// Throughput mode (default): every connection keeps --in-flight messages
/// outstanding and sends the next as each echo arrives. Rate mode (--rate):
/// messages go out on a fixed schedule whatever the server does, and
/// latency is measured from the intended send time (corrected for
/// coordinated omission) as well as from the actual one. Every echo is
/// checked for length, content and order.
#[derive(Parser, Debug)]
#[command(version, after_help = EXIT_CODES, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: Bench,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Act as the client of Autobahn|Testsuite's fuzzing server
    /// (`wstest -m fuzzingserver`): run every case, echoing what it sends.
    Autobahn(autobahn::AutobahnArgs),
    /// Fan-out load against a server that sends every message to every
    /// client (examples/broadcast.rs), or against several nodes sharing
    /// topics (clients round-robin over the URLs): deliveries/s, delivery
    /// latency, and every delivery checked (exactly once, in order per
    /// sender, across nodes).
    Broadcast(broadcast::BroadcastArgs),
    /// Handshake load: new connections at a rate or as fast as a
    /// concurrency bound allows, each doing TCP connect, TLS (wss://), the
    /// upgrade, one echo and the close; handshakes/s and connect times.
    Connect(connect::ConnectArgs),
    /// Pusher Channels protocol load (ringws-gateway, sockudo): clients
    /// subscribed over WebSockets, publishers on the signed HTTP API;
    /// deliveries/s, delivery latency, and every delivery checked (exactly
    /// once, in order per publisher).
    Pusher(pusher::PusherArgs),
}

#[derive(Args, Debug)]
struct Bench {
    /// The server, as ws://host:port/path (or wss://, built with the `tls`
    /// feature).
    target: Option<String>,
    /// Certificate checks of a wss:// target.
    #[command(flatten)]
    tls: target::TlsArgs,
    /// Connections, spread over the threads.
    #[arg(short, long, default_value_t = 100)]
    connections: usize,
    /// Worker threads, each with its own io_uring [default: number of cores].
    #[arg(short, long)]
    threads: Option<usize>,
    /// Pin worker i to core i.
    #[arg(long)]
    pin: bool,
    /// Payload bytes per message (K and M suffixes: powers of 1024).
    #[arg(short, long, default_value = "20", value_parser = size)]
    size: usize,
    /// Send text messages (valid UTF-8).
    #[arg(long, conflicts_with = "binary")]
    text: bool,
    /// Send binary messages (the default).
    #[arg(long)]
    binary: bool,
    /// What messages carry: a fixed pattern, or price-ticker JSON (up to
    /// 256 different messages in turn, 1 MiB of them at most; text, valid
    /// JSON from about 64 bytes).
    #[arg(long, value_enum, default_value = "pattern")]
    payload: worker::PayloadStyle,
    /// Offer permessage-deflate (RFC 7692); where the server agrees,
    /// compress every message sent (zlib level 1) and inflate the echoes.
    /// Where the server keeps its context (dedicated mode), each connection
    /// has a compressor of its own: about 370 KiB per connection.
    #[arg(long, conflicts_with = "raw")]
    deflate: bool,
    /// Send each message as this many frames.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    fragments: u32,
    /// Measured time (s or ms suffix).
    #[arg(short, long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Time before the measured window, not counted.
    #[arg(short, long, default_value = "1s", value_parser = duration)]
    warmup: Duration,
    /// New connections per second while connecting (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Local addresses to connect from, round-robin: 127.0.0.1-127.0.0.32,
    /// or a comma-separated list. More addresses, more ephemeral ports: one
    /// address allows about 28,000 connections to one server port.
    #[arg(long)]
    source_ips: Option<String>,
    /// Messages outstanding per connection (throughput mode).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    in_flight: u32,
    /// Send this many messages in all (spread evenly over the connections),
    /// then close: an exact amount of work, for instruction counts. The run
    /// also ends at --duration, whichever comes first.
    #[arg(long, conflicts_with = "rate")]
    messages: Option<u64>,
    /// Open loop at this many messages per second in total; a list
    /// (10000,50000) runs each rate in turn and prints a row for each.
    #[arg(long, value_delimiter = ',')]
    rate: Vec<f64>,
    /// Time allowed for TCP connect plus handshake.
    #[arg(long, default_value = "5s", value_parser = duration)]
    connect_timeout: Duration,
    /// Write every number of the run, its parameters and the machine as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the latency distribution in HdrHistogram's percentile text
    /// format (of the last run, from intended send times).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Plain TCP echo instead of WebSocket: no handshake, no frames; each
    /// message is --size bytes, read back by count. For measuring a TCP echo
    /// server, the ceiling a WebSocket server can reach.
    #[arg(long, conflicts_with_all = ["text", "fragments"])]
    raw: bool,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// Kernel interface: auto (io_uring where allowed, else epoll),
    /// io-uring or epoll.
    #[arg(long, default_value = "auto")]
    backend: ringws::BackendKind,
}

fn size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1usize << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}' is not a size"))
}

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = match s.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    match num.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!("'{s}' is not a duration")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Autobahn(a)) => autobahn::run(a),
        Some(Command::Broadcast(a)) => broadcast::run(a),
        Some(Command::Connect(a)) => connect::run(a),
        Some(Command::Pusher(a)) => pusher::run(a),
        None => bench(cli.bench),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("loadgen: {msg}");
    ExitCode::from(2)
}

fn bench(b: Bench) -> ExitCode {
    let Some(url) = b.target.clone() else {
        return usage("no target given (for example: loadgen ws://127.0.0.1:9001)");
    };
    let target = match Target::parse(&url, &b.tls) {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    let sources = match b.source_ips.as_deref().map(target::parse_source_ips) {
        None => Vec::new(),
        Some(Ok(v)) => v,
        Some(Err(e)) => return usage(&e),
    };
    if b.binary && b.payload == worker::PayloadStyle::Json {
        return usage("--payload json sends text messages: drop --binary");
    }
    if b.connections == 0 {
        return usage("--connections must be at least 1");
    }
    if b.rate.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        return usage("--rate must be positive");
    }
    let threads = b
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, b.connections);
    let rates: Vec<Option<f64>> = if b.rate.is_empty() {
        vec![None]
    } else {
        b.rate.iter().map(|r| Some(*r)).collect()
    };
    let mut results = Vec::new();
    for rate in rates {
        let params = Params {
            url: url.clone(),
            connections: b.connections,
            threads,
            size: b.size,
            kind: if b.raw {
                "raw"
            } else if b.text || b.payload == worker::PayloadStyle::Json {
                "text"
            } else {
                "binary"
            },
            fragments: b.fragments as usize,
            in_flight: b.in_flight as usize,
            rate,
            duration: b.duration,
            warmup: b.warmup,
            payload: match b.payload {
                worker::PayloadStyle::Pattern => "pattern",
                worker::PayloadStyle::Json => "json",
            },
            deflate: b.deflate,
        };
        let (stats, window) = match run_once(&b, &target, &sources, &params) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("loadgen: {e}");
                return ExitCode::from(4);
            }
        };
        let r = RunResult {
            params: Params {
                duration: window,
                ..params
            },
            stats,
        };
        print!("{}", report::table(&r));
        results.push(r);
    }
    if results.len() > 1 {
        println!(
            "\n{:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "rate", "msgs/s", "p50", "p99", "p99.9", "max", "errors"
        );
        for r in &results {
            let h = &r.stats.latency;
            let q = |p: f64| {
                report::fmt_ns(if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(p)
                })
            };
            println!(
                "{:>12.0} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>8}",
                r.params.rate.unwrap_or(0.0),
                r.msgs_per_sec(),
                q(0.5),
                q(0.99),
                q(0.999),
                report::fmt_ns(h.max()),
                r.stats.errors.total()
            );
        }
    }
    if let Some(path) = &b.json {
        if let Err(e) = std::fs::write(path, report::json(&results, &Machine::probe())) {
            eprintln!("loadgen: cannot write {}: {e}", path.display());
            return ExitCode::from(4);
        }
    }
    if let Some(path) = &b.hgrm {
        let last = results.last().expect("at least one run");
        if let Err(e) = std::fs::write(path, report::hgrm(&last.stats.latency)) {
            eprintln!("loadgen: cannot write {}: {e}", path.display());
            return ExitCode::from(4);
        }
    }
    let connected: u64 = results.iter().map(|r| r.stats.connected).sum();
    if connected == 0 {
        eprintln!("loadgen: no connection could be opened to {url}");
        return ExitCode::from(3);
    }
    if results.iter().any(|r| r.stats.errors.total() > 0) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Prints one progress line per second, once every thread has reported
/// that second, until the workers hang up; `phase` names the phase a second
/// is in.
pub(crate) fn progress(
    rx: mpsc::Receiver<Snapshot>,
    threads: usize,
    quiet: bool,
    unit: &str,
    phase: impl Fn(u64) -> &'static str,
) {
    let mut pending: std::collections::BTreeMap<u64, Vec<Snapshot>> = Default::default();
    for snap in rx {
        let sec = snap.second;
        let group = pending.entry(sec).or_default();
        group.push(snap);
        if group.len() < threads {
            continue;
        }
        let group = pending.remove(&sec).expect("present");
        if quiet {
            continue;
        }
        let msgs: u64 = group.iter().map(|s| s.messages).sum();
        let errors: u64 = group.iter().map(|s| s.errors).sum();
        let connected: u64 = group.iter().map(|s| s.connected).sum();
        let mut h = stats::histogram();
        for s in &group {
            h.add(&s.latency).expect("same bounds");
        }
        let p99 = if h.is_empty() {
            "-".to_string()
        } else {
            report::fmt_ns(h.value_at_quantile(0.99))
        };
        eprintln!(
            "[{sec:>4}s {}] {msgs:>10} {unit}  p99 {p99:>9}  connections {connected:>6}  errors {errors}",
            phase(sec)
        );
    }
}

/// One run: connect, warm up, measure, close; progress lines meanwhile.
/// Returns the merged counts and the measured window: the duration, or
/// less when a --messages budget ran out first.
fn run_once(
    b: &Bench,
    target: &Target,
    sources: &[std::net::IpAddr],
    params: &Params,
) -> Result<(Stats, Duration), String> {
    let start = Instant::now();
    let ramp_time = if b.ramp > 0.0 {
        Duration::from_secs_f64(b.connections as f64 / b.ramp)
    } else {
        Duration::ZERO
    };
    let measure_from = start + ramp_time + b.warmup;
    let plan = Arc::new(worker::Plan {
        target: target.clone(),
        connections: b.connections,
        threads: params.threads,
        size: b.size,
        kind: if b.text || b.payload == worker::PayloadStyle::Json {
            MessageKind::Text
        } else {
            MessageKind::Binary
        },
        fragments: params.fragments,
        in_flight: params.in_flight,
        per_connection: b
            .messages
            .map_or(u64::MAX, |m| m.div_ceil(b.connections as u64)),
        rate: params.rate,
        start,
        measure_from,
        end: measure_from + b.duration,
        ramp: b.ramp,
        sources: sources.to_vec(),
        connect_timeout: b.connect_timeout,
        drain: Duration::from_secs(2),
        raw: b.raw,
        quiet: b.quiet,
        payload: b.payload,
        deflate: b.deflate,
    });
    let (tx, rx) = mpsc::channel::<Snapshot>();
    let threads = params.threads;
    let opts = ringws::runtime::client::LoopOptions {
        pin: b.pin,
        backend: b.backend,
        ..Default::default()
    };
    let workers = {
        let plan = plan.clone();
        std::thread::spawn(move || {
            ringws::runtime::client::run_loops(
                threads,
                opts,
                move |i, io| worker::Worker::new(i, plan.clone(), tx.clone(), io),
                worker::Worker::into_stats,
            )
        })
    };
    progress(rx, threads, b.quiet, "msgs/s", |sec| {
        let at = start + Duration::from_secs(sec);
        if at <= plan.measure_from {
            "warm-up"
        } else if at <= plan.end {
            "measure"
        } else {
            "drain  "
        }
    });
    let per_thread = workers
        .join()
        .map_err(|_| "a worker thread panicked".to_string())?
        .map_err(|e| format!("cannot start the workers (io_uring not available?): {e}"))?;
    let mut total = Stats::default();
    for s in &per_thread {
        total.merge(s);
    }
    let window = match (b.messages, total.last_echo) {
        (Some(_), Some(last)) => last
            .min(plan.end)
            .saturating_duration_since(plan.measure_from),
        _ => b.duration,
    };
    Ok((total, window.max(Duration::from_micros(1))))
}
