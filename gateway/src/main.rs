//! The `ringws-gateway` binary: flags, environment variables and a TOML
//! file to a [`GatewayConfig`] and a [`ringws::Config`], then the gateway
//! running until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringws::tls::{Tls, TlsFiles};
use ringws::{BackendKind, Config};
use ringws_gateway::{AppConfig, Gateway, GatewayConfig};
use serde::Deserialize;

/// A Pusher Channels compatible real-time server on ringws.
///
/// One app from the flags (--app-id, --app-key, --app-secret), or any
/// number from a --config file's [[app]] tables. Clients connect to
/// ws://HOST:PORT/app/KEY; server SDKs publish to http://HOST:PORT/apps/ID.
/// Every flag can also be set by the environment variable shown, or as a
/// key of the --config file (flags win).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML file: the flags' keys (listen = "...", redis = [...]) and
    /// [[app]] tables (id, key, secret and the limits).
    #[arg(long, env = "RINGWS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (WebSockets and the HTTP API) [default:
    /// 127.0.0.1:6001].
    #[arg(long, env = "RINGWS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address for /metrics, /livez and /readyz (off when not given).
    #[arg(long, env = "RINGWS_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Worker threads [default: number of available cores].
    #[arg(long, env = "RINGWS_THREADS")]
    threads: Option<usize>,
    /// Kernel interface: auto, io-uring or epoll.
    #[arg(long, env = "RINGWS_BACKEND")]
    backend: Option<BackendKind>,
    /// Most connections open at once on this node, all apps together.
    #[arg(long, env = "RINGWS_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// A Redis server (redis://[user:password@]host:port, or
    /// redis+sentinel://[user:password@]host:port[,host:port...]/master
    /// [?sentinel_password=P]): events reach the subscribers of every node
    /// sharing it. Repeat (or separate by commas) to shard channels across
    /// several.
    #[arg(long, env = "RINGWS_REDIS")]
    redis: Vec<String>,
    /// The app's id (one app from flags).
    #[arg(long, env = "RINGWS_APP_ID")]
    app_id: Option<String>,
    /// The app's key.
    #[arg(long, env = "RINGWS_APP_KEY")]
    app_key: Option<String>,
    /// The app's secret.
    #[arg(long, env = "RINGWS_APP_SECRET")]
    app_secret: Option<String>,
    /// Let the app's clients send client-* events on private and presence
    /// channels.
    #[arg(long, env = "RINGWS_CLIENT_EVENTS")]
    client_events: bool,
    /// Send the app's webhooks (every kind: channel_occupied,
    /// channel_vacated, member_added, member_removed, client_event) to URL,
    /// batched and retried; a --config file's [[app.webhook]] tables set
    /// kinds, batching, retries and queue per endpoint.
    #[arg(long, env = "RINGWS_WEBHOOK_URL", value_name = "URL")]
    webhook_url: Option<String>,
    /// Seconds of silence after which clients ping (and the server does)
    /// [default: 120].
    #[arg(long, env = "RINGWS_ACTIVITY_TIMEOUT")]
    activity_timeout: Option<u64>,
    /// With --redis: seconds between the state each node sends the others;
    /// a node silent for three of these is taken for dead and its presence
    /// members for gone [default: 5].
    #[arg(long, env = "RINGWS_CLUSTER_INTERVAL")]
    cluster_interval: Option<f64>,
    /// Certificate chain (PEM) for wss:// and https:// (a build with the
    /// `tls` feature).
    #[arg(long, env = "RINGWS_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "RINGWS_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Log filter: a level or RUST_LOG-style directives [default: info].
    #[arg(long, env = "RINGWS_LOG_LEVEL")]
    log_level: Option<String>,
    /// Log lines as text or json.
    #[arg(long, env = "RINGWS_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The --config file: every key optional, flags win.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    threads: Option<usize>,
    backend: Option<String>,
    max_connections: Option<usize>,
    #[serde(default)]
    redis: Vec<String>,
    activity_timeout: Option<u64>,
    cluster_interval: Option<f64>,
    /// The gateway's other limits (GatewayConfig's fields; seconds for
    /// the durations): file only, as they rarely change.
    api_timestamp_window: Option<u64>,
    max_event_channels: Option<usize>,
    max_batch_events: Option<usize>,
    cache_ttl: Option<u64>,
    max_cached_channels: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log_level: Option<String>,
    #[serde(default)]
    app: Vec<AppConfig>,
}

/// Both configurations, from the flags and the file.
fn settings(a: Args) -> Result<(GatewayConfig, Config, Vec<String>), String> {
    let f: File = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => File::default(),
    };
    let mut apps = f.app;
    match (a.app_id, a.app_key, a.app_secret) {
        (Some(id), Some(key), Some(secret)) => {
            let mut app = AppConfig::new(&id, &key, &secret);
            app.client_events = a.client_events;
            if let Some(url) = &a.webhook_url {
                app.webhooks
                    .push(ringws_gateway::webhook::WebhookConfig::new(url));
            }
            apps.push(app);
        }
        (None, None, None) if a.webhook_url.is_some() => {
            return Err("--webhook-url goes with --app-id, --app-key and --app-secret (in a --config file: [[app.webhook]])".into());
        }
        (None, None, None) => {}
        _ => return Err("--app-id, --app-key and --app-secret go together".into()),
    }
    let mut gw = GatewayConfig::new(apps);
    if let Some(t) = a.activity_timeout.or(f.activity_timeout) {
        gw.activity_timeout = Duration::from_secs(t);
    }
    if let Some(t) = a.cluster_interval.or(f.cluster_interval) {
        gw.cluster_interval = Duration::try_from_secs_f64(t)
            .ok()
            .filter(|d| *d >= Duration::from_millis(10))
            .ok_or("--cluster-interval must be at least 0.01 (seconds)")?;
    }
    if let Some(s) = f.api_timestamp_window {
        gw.api_timestamp_window = Duration::from_secs(s);
    }
    if let Some(n) = f.max_event_channels {
        gw.max_event_channels = n;
    }
    if let Some(n) = f.max_batch_events {
        gw.max_batch_events = n;
    }
    if let Some(s) = f.cache_ttl {
        gw.cache_ttl = Duration::from_secs(s);
    }
    if let Some(n) = f.max_cached_channels {
        gw.max_cached_channels = n;
    }
    gw.validate()?;
    let defaults = Config::default();
    let backend = match (a.backend, f.backend) {
        (Some(b), _) => b,
        (None, Some(s)) => s.parse().map_err(|e| format!("backend: {e}"))?,
        (None, None) => defaults.backend,
    };
    let tls = match (a.tls_cert.or(f.tls_cert), a.tls_key.or(f.tls_key)) {
        (Some(cert), Some(key)) => Some(Tls::Files(TlsFiles {
            cert,
            key,
            sni: Vec::new(),
        })),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let mut cfg = Config {
        listen: a
            .listen
            .or(f.listen)
            .unwrap_or_else(|| "127.0.0.1:6001".parse().expect("an address")),
        admin_listen: a.admin_listen.or(f.admin_listen),
        threads: a.threads.or(f.threads).unwrap_or(defaults.threads),
        max_connections: a
            .max_connections
            .or(f.max_connections)
            .unwrap_or(defaults.max_connections),
        backend,
        tls,
        // Pusher's messages are small: an event's data is at most
        // max_event_bytes; the largest message a client may send is that
        // plus its envelope. A batch of events through the API is the
        // largest request body.
        max_message_size: 64 << 10,
        max_frame_size: 64 << 10,
        ..defaults
    };
    let max_event = gw.apps.iter().map(|a| a.max_event_bytes).max().unwrap_or(0);
    cfg.max_message_size = cfg.max_message_size.max(2 * max_event as u64 + 4096);
    cfg.max_frame_size = cfg.max_message_size;
    cfg.max_http_body = cfg
        .max_http_body
        .max(gw.max_batch_events * (2 * max_event + 1024) + 4096);
    cfg.validate()?;
    let redis = if a.redis.is_empty() { f.redis } else { a.redis };
    let redis: Vec<String> = redis.iter().flat_map(|v| split_urls(v)).collect();
    let log = a.log_level.or(f.log_level);
    ringws::log::init(log.as_deref(), matches!(a.log_format, LogFormat::Json));
    Ok((gw, cfg, redis))
}

/// Splits a `--redis` value at the commas that begin another URL; a
/// Sentinel URL's own commas (`redis+sentinel://s1,s2/master`) stay.
fn split_urls(v: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in v.split(',') {
        match out.last_mut() {
            Some(last) if !piece.contains("://") => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_owned()),
        }
    }
    out
}

fn main() -> ExitCode {
    let (gw, cfg, redis) = match settings(Args::parse()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let apps: Vec<String> = gw.apps.iter().map(|a| a.id.clone()).collect();
    let gw = match Gateway::new(gw) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let broker = if redis.is_empty() {
        None
    } else {
        match ringws::broker::Redis::new(&redis) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: --redis: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let hooks = gw.webhooks().clone();
    let app = match ringws_gateway::app(gw, cfg, broker) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("serving apps {}", apps.join(", "));
    let ran = app.run();
    // What the last connections' closes queued goes out before the exit.
    hooks.stop();
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's example file.
    #[test]
    fn the_readme_config_parses() {
        let f: File = toml::from_str(
            r#"
listen = "0.0.0.0:6001"
admin-listen = "127.0.0.1:9100"
redis = ["redis://127.0.0.1:6379"]
activity-timeout = 120
api-timestamp-window = 600
max-event-channels = 100
max-batch-events = 10
cache-ttl = 1800
max-cached-channels = 10000

[[app]]
id = "1"
key = "app-key"
secret = "app-secret"
client-events = true
client-event-rate = 10
max-connections = 10000
max-event-bytes = 10240
max-channel-name = 164
max-presence-members = 100
max-presence-info = 1024
"#,
        )
        .unwrap();
        assert_eq!(f.admin_listen, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(f.app.len(), 1);
        assert!(f.app[0].client_events);
        assert_eq!(f.app[0].max_connections, 10_000);
        assert_eq!((f.max_event_channels, f.cache_ttl), (Some(100), Some(1800)));
        // A misspelt key stops the start.
        assert!(toml::from_str::<File>("listne = \"x\"").is_err());
    }

    #[test]
    fn redis_lists_split_between_urls_only() {
        assert_eq!(
            split_urls("redis://a:6379,redis://:p@b:6380"),
            ["redis://a:6379", "redis://:p@b:6380"]
        );
        assert_eq!(
            split_urls("redis+sentinel://s1:26379,s2,[::1]:26380/m?sentinel_password=x,redis://c"),
            [
                "redis+sentinel://s1:26379,s2,[::1]:26380/m?sentinel_password=x",
                "redis://c"
            ]
        );
        assert_eq!(split_urls("redis://one"), ["redis://one"]);
    }
}
