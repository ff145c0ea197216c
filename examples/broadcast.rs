//! Broadcast: every message a client sends goes to every client connected,
//! the sender included, on every thread.
//!
//! ```text
//! cargo run --release --example broadcast -- --listen 127.0.0.1:9001
//! ```
//!
//! With `--redis redis://127.0.0.1:6379` (repeatable) several nodes share
//! the topic: `loadgen broadcast ws://127.0.0.1:9001/ ws://127.0.0.1:9002/
//! --settle 500ms` checks that every client gets every message once, in
//! order per sender, across nodes.
//!
//! Each connection subscribes to one topic when it opens; a message is
//! published to the topic (its frame encoded once, its bytes shared by all
//! subscribers) and sent back to its sender, who is left out of its own
//! publish.

use std::net::SocketAddr;

use clap::Parser;
use ringws::app::{App, Handler, Message, Request, Socket, Upgrade};
use ringws::Config;

/// The topic every client is on.
const ALL: &str = "all";

struct Broadcast;

impl Handler for Broadcast {
    type Data = ();

    fn upgrade(&self, _req: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn open(&self, ws: &mut Socket<'_, ()>) {
        ws.subscribe(ALL);
    }

    fn message(&self, ws: &mut Socket<'_, ()>, msg: Message<'_>) {
        ws.publish(ALL, msg);
        ws.send(msg);
    }
}

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Log the server's counts (messages in and out, writes) every this
    /// many seconds; 0: never.
    #[arg(long, default_value_t = 0)]
    stats_interval: u64,
    /// Share the topic with other nodes through this Redis; repeat to
    /// shard over several instances.
    #[arg(long)]
    redis: Vec<String>,
    /// Serve /metrics, /livez and /readyz on this address.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    ringws::log::init_from_env(); // RINGWS_LOG_LEVEL=debug for more
    let a = Args::parse();
    let mut cfg = Config {
        listen: a.listen,
        stats_interval: std::time::Duration::from_secs(a.stats_interval),
        admin_listen: a.admin_listen,
        ..Config::default()
    };
    cfg.threads = a.threads.unwrap_or(cfg.threads);
    let mut app = App::new(cfg).route_prefix("/", Broadcast);
    if !a.redis.is_empty() {
        app = app.broker(ringws::broker::Redis::new(&a.redis)?);
    }
    Ok(app.run()?)
}
