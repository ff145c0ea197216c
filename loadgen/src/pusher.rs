//! `loadgen pusher`: load on a Pusher Channels (protocol 7) server, such as
//! ringws-gateway or sockudo, through its two doors: subscribers on
//! WebSockets, publishers on the signed HTTP API.
//!
//! ```text
//!  publisher p ──POST /apps/ID/events (signed; keep-alive, pipelined)──┐
//!   (a thread each, std socket)                                        v
//!                                                                  the server
//!  client i ──ws /app/KEY?protocol=7… ── subscribed to bench-(i mod K) ─┘
//!   (ringws's client loop, a thread per core)   <── every event, checked
//! ```
//!
//! * Closed loop (default): each publisher keeps `--in-flight` requests
//!   outstanding and sends the next as each response arrives.
//! * Rate (`--rate`): events go out on a fixed schedule whatever the
//!   server does; delivery latency is taken from the intended send time
//!   (corrected for coordinated omission) and from the actual one.
//! * Client events (`--client-events`, at a `--rate`): no HTTP API; the
//!   first `--publishers` clients publish, each a `client-bench` event on
//!   its own (private) channel, which the server relays to the channel's
//!   other subscribers.
//!
//! Nobody publishes until every client is subscribed (or has failed), and
//! then not before `--settle`: every subscriber of a channel must get
//! every event the API accepted for it, exactly once and, per publisher,
//! in order. What is missing, duplicated, reordered or malformed is
//! counted, and any of it makes the exit code 1.
//!
//! Several `--url`s (nodes of one cluster): client i connects to URL
//! i mod n and publisher p to URL p mod n, and the checks hold across
//! nodes unchanged.
//!
//! # Layout
//! - [`event`]: what an event's data carries, finding it in a delivery
//!   without a JSON parse, and the sequence checks.
//! - [`publisher`]: the HTTP API publishers, a thread each.
//! - [`http`]: their response reader, sans-IO.
//! - [`subscriber`]: the clients, a handler of ringws's client loop.

mod event;
mod http;
mod publisher;
mod subscriber;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Args;
use ringws::runtime::client::LoopOptions;

use crate::report::{humantime, js, js_hist, latency_rows, Machine};
use crate::stats::{Snapshot, Stats};
use crate::target::{Target, TlsArgs};
use publisher::ApiCounts;
use subscriber::{Checks, ReceivedBy};

/// Pusher protocol load: subscribers on WebSockets, publishers on the
/// HTTP API.
#[derive(Args, Debug)]
pub struct PusherArgs {
    /// The server's base URL, ws://host:port. Repeat it for the nodes of
    /// a cluster: client i connects to URL i mod n, publisher p to URL
    /// p mod n (its HTTP API on the same host and port).
    #[arg(long = "url", required = true, value_name = "URL")]
    urls: Vec<String>,
    /// The app's id (the HTTP API's /apps/{id}/).
    #[arg(long)]
    app_id: String,
    /// The app's key (the WebSocket path /app/{key}, and the API's
    /// auth_key).
    #[arg(long)]
    app_key: String,
    /// The app's secret: signs the API requests and, with --private, the
    /// channel authorisations.
    #[arg(long)]
    app_secret: String,
    /// WebSocket clients, spread over the threads.
    #[arg(short, long, default_value_t = 100)]
    clients: usize,
    /// Channels: client i subscribes to bench-(i mod K).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Private channels (private-bench-k): each subscription is
    /// authorised with a signature over the client's socket id.
    #[arg(long)]
    private: bool,
    /// Publisher threads, each with its own keep-alive HTTP/1.1
    /// connection; publisher p sends its n-th event to channel
    /// (p + n) mod K.
    #[arg(short, long, default_value_t = 1)]
    publishers: usize,
    /// Open loop at this many events per second over all publishers
    /// [default: closed loop].
    #[arg(long)]
    rate: Option<f64>,
    /// Requests outstanding per publisher in the closed loop (pipelined).
    #[arg(long, default_value_t = 1, conflicts_with = "rate", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    in_flight: u32,
    /// Publish with POST /batch_events, this many events per request (on
    /// consecutive channels). Pusher takes at most 10.
    #[arg(long)]
    batch: Option<usize>,
    /// Publish client events instead of using the HTTP API: client p
    /// (p < --publishers) sends `client-bench` events on its own channel,
    /// at --rate over all of them, and every other subscriber of that
    /// channel must get them. Makes the channels private (client events
    /// need it); the server must allow client events at that rate per
    /// connection.
    #[arg(long, requires = "rate", conflicts_with = "batch")]
    client_events: bool,
    /// Bytes of each event's data (at least 56; padded).
    #[arg(short, long, default_value = "100", value_parser = crate::size)]
    size: usize,
    /// Measured time (s or ms suffix).
    #[arg(short, long, default_value = "10s", value_parser = crate::duration)]
    duration: Duration,
    /// Time before the measured window, once every client is subscribed.
    #[arg(short, long, default_value = "1s", value_parser = crate::duration)]
    warmup: Duration,
    /// Once every client is subscribed, wait this long before publishing:
    /// with several nodes behind a broker, a node may subscribe to a
    /// channel in the broker only after its first local subscriber.
    #[arg(long, default_value = "0s", value_parser = crate::duration)]
    settle: Duration,
    /// Time allowed, after publishing stops, for the last API responses
    /// (the first half) and the last deliveries.
    #[arg(long, default_value = "5s", value_parser = crate::duration)]
    drain: Duration,
    /// Time allowed for each client to connect, upgrade and subscribe,
    /// and for each publisher to connect.
    #[arg(long, default_value = "10s", value_parser = crate::duration)]
    connect_timeout: Duration,
    /// Client threads, each with its own io_uring [default: number of
    /// cores]. The publishers are threads of their own besides.
    #[arg(short, long)]
    threads: Option<usize>,
    /// Pin client thread i to core i.
    #[arg(long)]
    pin: bool,
    /// Local addresses the clients connect from, round-robin (as for the
    /// echo run).
    #[arg(long)]
    source_ips: Option<String>,
    /// Write every number of the run, its parameters and the machine as
    /// JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// Kernel interface of the clients: auto, io-uring or epoll.
    #[arg(long, default_value = "auto")]
    backend: ringws::BackendKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Requests outstanding per publisher.
    Closed(u32),
    /// Events per second over all publishers.
    Rate(f64),
}

/// The run, shared by the client threads and the publishers.
struct Plan {
    /// Per URL: the WebSocket target (path /app/KEY?…), and the HTTP API's.
    ws_targets: Vec<Target>,
    api_targets: Vec<Target>,
    app_id: String,
    app_key: String,
    app_secret: String,
    clients: usize,
    channels: usize,
    channel_names: Vec<String>,
    private: bool,
    /// The publishers are clients 0..publishers, sending client events.
    client_events: bool,
    publishers: usize,
    threads: usize,
    mode: Mode,
    batch: Option<usize>,
    /// An event's data, padding included ([`event::template`]).
    template: Vec<u8>,
    start: Instant,
    warmup: Duration,
    duration: Duration,
    drain: Duration,
    settle: Duration,
    connect_timeout: Duration,
    sources: Vec<IpAddr>,
    quiet: bool,
    /// Clients subscribed, and those that never will be: publishing
    /// starts once they add up to `clients`.
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    /// When publishing starts.
    go: OnceLock<Instant>,
    /// Per channel, events the API accepted (2xx), whole run.
    accepted: Vec<AtomicU64>,
    /// Publishers whose last response is in (or who gave up).
    publishers_done: AtomicUsize,
    /// The client threads could not start: the publishers stop waiting.
    abort: AtomicBool,
}

impl Plan {
    fn ws_target(&self, client: usize) -> &Target {
        &self.ws_targets[client % self.ws_targets.len()]
    }

    fn api_target(&self, publisher: usize) -> &Target {
        &self.api_targets[publisher % self.api_targets.len()]
    }

    fn channel_name(&self, k: usize) -> &str {
        &self.channel_names[k]
    }

    fn measure_from(&self) -> Option<Instant> {
        self.go.get().map(|g| *g + self.warmup)
    }

    fn end(&self) -> Option<Instant> {
        self.measure_from().map(|m| m + self.duration)
    }

    /// Past it, whatever is still open is cut.
    fn hard_stop(&self) -> Instant {
        match self.end() {
            Some(e) => e + self.drain,
            None => self.start + self.connect_timeout + self.drain,
        }
    }
}

/// The WebSocket and HTTP targets of each base URL.
fn parse_urls(urls: &[String], key: &str) -> Result<(Vec<Target>, Vec<Target>), String> {
    let mut ws = Vec::new();
    let mut api = Vec::new();
    for u in urls {
        if u.starts_with("wss://") {
            return Err(format!(
                "{u}: loadgen pusher speaks ws:// only (its publishers use plain HTTP)"
            ));
        }
        let t = Target::parse(u, &TlsArgs::default())?;
        if t.path != "/" {
            return Err(format!(
                "{u}: give the server's base URL, ws://host:port, without a path"
            ));
        }
        let mut w = t.clone();
        // What pusher-js 8 asks for.
        w.path = format!("/app/{key}?protocol=7&client=js&version=8.4.0&flash=false");
        ws.push(w);
        api.push(t);
    }
    Ok((ws, api))
}

/// Runs `loadgen pusher`.
pub fn run(a: PusherArgs) -> ExitCode {
    let (ws_targets, api_targets) = match parse_urls(&a.urls, &a.app_key) {
        Ok(t) => t,
        Err(e) => return crate::usage(&e),
    };
    let sources = match a.source_ips.as_deref().map(crate::target::parse_source_ips) {
        None => Vec::new(),
        Some(Ok(v)) => v,
        Some(Err(e)) => return crate::usage(&e),
    };
    if a.clients == 0 || a.channels == 0 {
        return crate::usage("--clients and --channels must be at least 1");
    }
    if a.channels > u32::MAX as usize {
        return crate::usage("--channels is too large");
    }
    if a.publishers == 0 || a.publishers > usize::from(u16::MAX) + 1 {
        return crate::usage("--publishers must be 1 to 65536");
    }
    if a.size < event::HEAD {
        return crate::usage(&format!(
            "--size must be at least {} (channel, publisher, sequence and times)",
            event::HEAD
        ));
    }
    if a.client_events && a.publishers > a.clients {
        return crate::usage("--client-events: --publishers are clients, so at most --clients");
    }
    if a.client_events && a.in_flight != 1 {
        return crate::usage("--client-events publishes at a --rate; --in-flight does not apply");
    }
    if a.batch == Some(0) {
        return crate::usage("--batch must be at least 1");
    }
    let mode = match a.rate {
        Some(r) if r.is_finite() && r > 0.0 => Mode::Rate(r),
        Some(_) => return crate::usage("--rate must be positive"),
        None => Mode::Closed(a.in_flight),
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, a.clients);
    let private = a.private || a.client_events;
    let prefix = if private { "private-bench-" } else { "bench-" };
    let plan = Arc::new(Plan {
        ws_targets,
        api_targets,
        app_id: a.app_id.clone(),
        app_key: a.app_key.clone(),
        app_secret: a.app_secret.clone(),
        clients: a.clients,
        channels: a.channels,
        channel_names: (0..a.channels).map(|k| format!("{prefix}{k}")).collect(),
        private,
        client_events: a.client_events,
        publishers: a.publishers,
        threads,
        mode,
        batch: a.batch,
        template: event::template(a.size),
        start: Instant::now(),
        warmup: a.warmup,
        duration: a.duration,
        drain: a.drain,
        settle: a.settle,
        connect_timeout: a.connect_timeout,
        sources,
        quiet: a.quiet,
        subscribed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        go: OnceLock::new(),
        accepted: (0..a.channels).map(|_| AtomicU64::new(0)).collect(),
        publishers_done: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
    });
    // With client events the publishers are clients, not threads.
    let api_publishers = if a.client_events { 0 } else { a.publishers };
    let publishers: Vec<_> = (0..api_publishers)
        .map(|p| {
            let plan = plan.clone();
            std::thread::Builder::new()
                .name(format!("publisher-{p}"))
                .spawn(move || publisher::run(p, plan))
        })
        .collect();
    let (tx, rx) = mpsc::channel::<Snapshot>();
    let opts = LoopOptions {
        pin: a.pin,
        backend: a.backend,
        ..Default::default()
    };
    let workers = {
        let plan = plan.clone();
        std::thread::spawn(move || {
            ringws::runtime::client::run_loops(
                threads,
                opts,
                move |i, io| subscriber::Worker::new(i, plan.clone(), tx.clone(), io),
                subscriber::Worker::into_outcome,
            )
        })
    };
    let p = plan.clone();
    crate::progress(rx, threads, a.quiet, "deliveries/s", move |sec| {
        let at = Duration::from_secs(sec);
        if at <= p.warmup {
            "warm-up"
        } else if at <= p.warmup + p.duration {
            "measure"
        } else {
            "drain  "
        }
    });
    let outcomes = workers.join();
    if !matches!(outcomes, Ok(Ok(_))) {
        plan.abort.store(true, Ordering::Release);
    }
    let mut api = ApiCounts::default();
    let mut publisher_panicked = false;
    for p in publishers {
        match p.map(|h| h.join()) {
            Ok(Ok(c)) => api.merge(&c),
            Ok(Err(_)) => publisher_panicked = true,
            Err(e) => {
                eprintln!("loadgen: cannot start a publisher thread: {e}");
                return ExitCode::from(4);
            }
        }
    }
    let outcomes = match outcomes {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            eprintln!("loadgen: cannot start the client threads: {e}");
            return ExitCode::from(4);
        }
        Err(_) => {
            eprintln!("loadgen: a client thread panicked");
            return ExitCode::from(4);
        }
    };
    if publisher_panicked {
        eprintln!("loadgen: a publisher thread panicked");
        return ExitCode::from(4);
    }
    let mut total = Stats::default();
    let mut checks = Checks::default();
    for o in &outcomes {
        total.merge(&o.stats);
        checks.add(&o.checks);
        // Client events: the clients' sends stand for the API's.
        api.events += o.sent;
        api.window_events += o.sent_window;
    }
    let accepted: Vec<u64> = plan
        .accepted
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let targets = per_target(&plan, &accepted, outcomes.iter().flat_map(|o| &o.received));
    checks.missing = targets.iter().map(|t| t.missing).sum();
    let r = Outcome {
        args: &a,
        plan: &plan,
        stats: total,
        checks,
        api,
        accepted: accepted.iter().sum(),
        targets,
    };
    print!("{}", r.table());
    if let Some(path) = &a.json {
        if let Err(e) = std::fs::write(path, r.json(&Machine::probe())) {
            eprintln!("loadgen: cannot write {}: {e}", path.display());
            return ExitCode::from(4);
        }
    }
    if r.stats.connected == 0 {
        eprintln!(
            "loadgen: no client could subscribe at {}",
            a.urls.join(" or ")
        );
        return ExitCode::from(3);
    }
    if r.errors() > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Per URL: clients assigned and subscribed, events they received once
/// each, and those they should have and did not.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PerTarget {
    clients: usize,
    subscribed: usize,
    delivered: u64,
    missing: u64,
}

/// Sums `received` by URL; a subscriber of channel k should have had
/// `accepted[k]`, less the client events it sent itself.
fn per_target<'a>(
    plan: &Plan,
    accepted: &[u64],
    received: impl IntoIterator<Item = &'a ReceivedBy>,
) -> Vec<PerTarget> {
    let n = plan.ws_targets.len();
    let mut t = vec![PerTarget::default(); n];
    for i in 0..plan.clients {
        t[i % n].clients += 1;
    }
    for (i, got) in received {
        if let Some(r) = got {
            let p = &mut t[i % n];
            p.subscribed += 1;
            p.delivered += r.got;
            p.missing += accepted[r.channel].saturating_sub(r.own + r.got);
        }
    }
    t
}

/// A finished run, for the table and the JSON.
struct Outcome<'a> {
    args: &'a PusherArgs,
    plan: &'a Plan,
    stats: Stats,
    checks: Checks,
    api: ApiCounts,
    /// Events the API accepted, whole run.
    accepted: u64,
    targets: Vec<PerTarget>,
}

impl Outcome<'_> {
    fn secs(&self) -> f64 {
        self.args.duration.as_secs_f64().max(1e-6)
    }

    fn errors(&self) -> u64 {
        self.stats.errors.total() + self.api.errors() + self.checks.total()
    }

    fn mode(&self) -> String {
        let per = match self.plan.batch {
            Some(n) => format!(", batches of {n}"),
            None => String::new(),
        };
        match self.plan.mode {
            Mode::Rate(r) if self.plan.client_events => format!("client events at {r:.0} events/s"),
            Mode::Closed(n) => format!("closed loop, {n} in flight per publisher{per}"),
            Mode::Rate(r) => format!("open loop at {r:.0} events/s{per}"),
        }
    }

    fn table(&self) -> String {
        use std::fmt::Write as _;
        let (a, p, s, api) = (self.args, self.plan, &self.stats, &self.api);
        let secs = self.secs();
        let (how, who) = if p.client_events {
            ("as client events", ", each but the sender gets an event")
        } else {
            ("to the API", "")
        };
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\npusher: {} clients on {} channel{} ({}…), {} publisher{} ({}), {} B events, {} threads, {} ({} warm-up)",
            p.clients,
            p.channels,
            if p.channels == 1 { "" } else { "s" },
            p.channel_name(0),
            p.publishers,
            if p.publishers == 1 { "" } else { "s" },
            self.mode(),
            a.size,
            p.threads,
            humantime(a.duration),
            humantime(a.warmup),
        );
        let _ = writeln!(t, "  deliveries/s {:>12.0}", s.messages as f64 / secs);
        let _ = writeln!(t, "  deliveries   {:>12}   (in the window)", s.messages);
        let _ = writeln!(
            t,
            "  events/s     {:>12.0}   (sent {how} in the window; {} subscribers per channel{who})",
            api.window_events as f64 / secs,
            fan_out(p.clients, p.channels),
        );
        self.api_lines(&mut t);
        let mut rows = Vec::new();
        if matches!(p.mode, Mode::Rate(_)) {
            rows.push(("from intended send", &s.latency));
            rows.push(("from actual send", &s.latency_actual));
        } else {
            rows.push(("publish to receive", &s.latency));
        }
        if !p.client_events {
            rows.push(("API response", &api.latency));
        }
        rows.push(("connect + subscribe", &s.connect));
        t += &latency_rows("delivery latency", &rows);
        self.check_lines(&mut t);
        t
    }

    /// The HTTP API's requests and statuses (none with client events).
    fn api_lines(&self, t: &mut String) {
        use std::fmt::Write as _;
        let (secs, api) = (self.secs(), &self.api);
        if self.plan.client_events {
            return;
        }
        let _ = writeln!(
            t,
            "  requests/s   {:>12.0}   (API requests sent in the window)",
            api.window_requests as f64 / secs
        );
        let statuses: Vec<String> = api
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let _ = writeln!(
            t,
            "  API status   {:>12}   (whole run: {} requests, {} events, {} accepted{})",
            statuses.join(", "),
            api.requests,
            api.events,
            self.accepted,
            if api.reconnects > 0 {
                format!("; {} reconnects", api.reconnects)
            } else {
                String::new()
            }
        );
    }

    /// Per URL, the delivery checks and the errors.
    fn check_lines(&self, t: &mut String) {
        use std::fmt::Write as _;
        let (a, s, api) = (self.args, &self.stats, &self.api);
        let _ = writeln!(
            t,
            "  {:<22}{:>12}{:>12}{:>12}   (events: whole run)",
            "per URL", "subscribed", "received", "missing"
        );
        for (url, pt) in a.urls.iter().zip(&self.targets) {
            let _ = writeln!(
                t,
                "  {:<22}{:>12}{:>12}{:>12}",
                url,
                format!("{}/{}", pt.subscribed, pt.clients),
                pt.delivered,
                pt.missing
            );
        }
        let c = &self.checks;
        let _ = writeln!(
            t,
            "  checks       {:>12}   (missing {}, duplicated {}, reordered {}, malformed {}; every subscriber, whole run)",
            c.total(),
            c.missing,
            c.duplicated,
            c.reordered,
            c.malformed
        );
        let kinds: Vec<String> = s
            .errors
            .by_kind()
            .iter()
            .filter(|(k, _)| !matches!(*k, "mismatch" | "lost"))
            .map(|(k, n)| format!("{} {n}", k.replace('_', " ")))
            .collect();
        let _ = writeln!(
            t,
            "  errors       {:>12}   (clients: {}; API: refused {}, unanswered {}, io {}; checks {})",
            self.errors(),
            kinds.join(", "),
            api.refused(),
            api.unanswered,
            api.io,
            c.total()
        );
        for m in s.samples.iter().chain(&api.samples).take(8) {
            let _ = writeln!(t, "    e.g. {m}");
        }
    }

    fn json(&self, m: &Machine) -> String {
        let (a, p, s, api, c) = (self.args, self.plan, &self.stats, &self.api, &self.checks);
        let secs = self.secs();
        let statuses: Vec<String> = api
            .statuses
            .iter()
            .map(|(code, n)| format!("{}: {n}", js(&code.to_string())))
            .collect();
        let errors: String = s
            .errors
            .by_kind()
            .iter()
            .filter(|(k, _)| !matches!(*k, "mismatch" | "lost"))
            .map(|(k, n)| format!(", {}: {n}", js(k)))
            .collect();
        let urls: Vec<String> = a.urls.iter().map(|u| js(u)).collect();
        let targets: Vec<String> = a
            .urls
            .iter()
            .zip(&self.targets)
            .map(|(u, t)| {
                format!(
                    "{{\"url\": {}, \"clients\": {}, \"subscribed\": {}, \"received\": {}, \"missing\": {}}}",
                    js(u),
                    t.clients,
                    t.subscribed,
                    t.delivered,
                    t.missing
                )
            })
            .collect();
        let samples: Vec<String> = s
            .samples
            .iter()
            .chain(&api.samples)
            .map(|m| js(m))
            .collect();
        format!(
            "{{\n  \"tool\": \"loadgen pusher\",\n  \"version\": {},\n  \"machine\": {{\"kernel\": {}, \"cpu\": {}, \"cores\": {}}},\n  \"params\": {{\"urls\": [{}], \"app_id\": {}, \"clients\": {}, \"channels\": {}, \"private\": {}, \"client_events\": {}, \"publishers\": {}, \"threads\": {}, \"rate\": {}, \"in_flight\": {}, \"batch\": {}, \"size\": {}, \"duration_s\": {}, \"warmup_s\": {}, \"settle_s\": {}}},\n  \"deliveries\": {}, \"deliveries_per_sec\": {:.1}, \"subscribed\": {},\n  \"events\": {}, \"events_per_sec\": {:.1}, \"requests\": {}, \"requests_per_sec\": {:.1},\n  \"api\": {{\"requests\": {}, \"events\": {}, \"accepted\": {}, \"status\": {{{}}}, \"refused\": {}, \"unanswered\": {}, \"io\": {}, \"reconnects\": {}}},\n  \"latency_ns\": {},\n  \"latency_actual_ns\": {},\n  \"api_latency_ns\": {},\n  \"connect_ns\": {},\n  \"targets\": [{}],\n  \"checks\": {{\"total\": {}, \"missing\": {}, \"duplicated\": {}, \"reordered\": {}, \"malformed\": {}}},\n  \"errors\": {{\"total\": {}{errors}, \"api\": {}, \"checks\": {}}},\n  \"error_samples\": [{}]\n}}\n",
            js(env!("CARGO_PKG_VERSION")),
            js(&m.kernel),
            js(&m.cpu),
            m.cores,
            urls.join(", "),
            js(&p.app_id),
            p.clients,
            p.channels,
            p.private,
            p.client_events,
            p.publishers,
            p.threads,
            match p.mode {
                Mode::Rate(r) => format!("{r}"),
                Mode::Closed(_) => "null".into(),
            },
            match p.mode {
                Mode::Closed(n) => format!("{n}"),
                Mode::Rate(_) => "null".into(),
            },
            p.batch.map_or("null".into(), |n| n.to_string()),
            a.size,
            a.duration.as_secs_f64(),
            a.warmup.as_secs_f64(),
            a.settle.as_secs_f64(),
            s.messages,
            s.messages as f64 / secs,
            s.connected,
            api.window_events,
            api.window_events as f64 / secs,
            api.window_requests,
            api.window_requests as f64 / secs,
            api.requests,
            api.events,
            self.accepted,
            statuses.join(", "),
            api.refused(),
            api.unanswered,
            api.io,
            api.reconnects,
            js_hist(&s.latency),
            js_hist(&s.latency_actual),
            js_hist(&api.latency),
            js_hist(&s.connect),
            targets.join(", "),
            c.total(),
            c.missing,
            c.duplicated,
            c.reordered,
            c.malformed,
            self.errors(),
            api.errors(),
            c.total(),
            samples.join(", "),
        )
    }
}

/// Subscribers per channel, as text: one figure when the clients divide
/// evenly, else the range.
fn fan_out(clients: usize, channels: usize) -> String {
    let (lo, hi) = (clients / channels, clients.div_ceil(channels));
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_bases() {
        let (ws, api) = parse_urls(&["ws://127.0.0.1:6001".into()], "k").unwrap();
        assert_eq!(
            ws[0].path,
            "/app/k?protocol=7&client=js&version=8.4.0&flash=false"
        );
        assert_eq!(
            (api[0].path.as_str(), api[0].host.as_str()),
            ("/", "127.0.0.1:6001")
        );
        assert!(parse_urls(&["ws://127.0.0.1:6001/app/k".into()], "k").is_err());
        assert!(parse_urls(&["wss://127.0.0.1:6001".into()], "k")
            .unwrap_err()
            .contains("ws:// only"));
    }

    #[test]
    fn fan_out_text() {
        assert_eq!(fan_out(100, 1), "100");
        assert_eq!(fan_out(10, 4), "2-3");
    }
}
