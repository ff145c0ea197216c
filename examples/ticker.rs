//! A price feed: a thread of the application's own publishes a tick every
//! `--every` milliseconds to every client subscribed to its symbol.
//!
//! ```text
//! cargo run --release --example ticker -- --listen 127.0.0.1:9001
//! websocat ws://127.0.0.1:9001/BTC-USD
//! ```
//!
//! It shows what `App::run` does not: starting the server with
//! `App::start` to keep a `ServerHandle` for a thread started at launch,
//! and stopping everything cleanly on SIGINT or SIGTERM with
//! `StopSignals` (blocked before any thread starts, so that no thread but
//! this one takes them).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ringws::app::{App, Handler, Request, Socket, Upgrade};
use ringws::runtime::StopSignals;
use ringws::Config;

/// The symbols on offer; each is a topic.
const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];

struct Ticker;

impl Handler for Ticker {
    /// The symbol a client follows.
    type Data = &'static str;

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<&'static str> {
        let wanted = req.path().trim_start_matches('/');
        match SYMBOLS.iter().find(|s| **s == wanted) {
            Some(s) => Upgrade::accept(*s),
            None => Upgrade::reject(404, format!("symbols: /{}\n", SYMBOLS.join(", /"))),
        }
    }

    fn open(&self, ws: &mut Socket<'_, &'static str>) {
        let symbol = *ws.data();
        ws.subscribe(symbol);
    }
}

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Milliseconds between ticks.
    #[arg(long, default_value_t = 100)]
    every: u64,
}

fn main() -> Result<(), ringws::StartError> {
    ringws::log::init_from_env();
    let a = Args::parse();
    // Before any thread starts: every thread inherits the blocked mask.
    let signals = StopSignals::block().map_err(ringws::StartError::Thread)?;
    let cfg = Config {
        listen: a.listen,
        ..Config::default()
    };
    let grace = cfg.close_timeout;
    let server = App::new(cfg).route_prefix("/", Ticker).start()?;

    let stop = Arc::new(AtomicBool::new(false));
    let feed = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (i, symbol) in SYMBOLS.iter().enumerate() {
                    // A made-up walk: enough to see it move.
                    let price = 100.0 * (i + 1) as f64 + (seq % 50) as f64 * 0.25;
                    let tick = format!(r#"{{"symbol":"{symbol}","price":{price:.2},"seq":{seq}}}"#);
                    server.publish(symbol, tick.as_str());
                }
                seq += 1;
                std::thread::sleep(Duration::from_millis(a.every));
            }
        })
    };

    signals.wait();
    stop.store(true, Ordering::Relaxed);
    let _ = feed.join();
    server.shutdown(grace);
    Ok(())
}
