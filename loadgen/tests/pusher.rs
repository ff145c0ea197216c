//! `loadgen pusher` against ringws-gateway, in-process, for about a second
//! per run: every event the API accepted reaches every subscriber of its
//! channel once and in order, and the counts in the JSON add up.

use std::process::Command;

use ringws::{Config, ServerHandle};
use ringws_gateway::{AppConfig, Gateway, GatewayConfig};
use serde_json::Value;

fn gateway() -> ServerHandle {
    gateway_with(AppConfig::new("1", "k", "s"))
}

fn gateway_with(app: AppConfig) -> ServerHandle {
    let gw = Gateway::new(GatewayConfig::new(vec![app])).unwrap();
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        ..Config::default()
    };
    ringws_gateway::app(gw, cfg, None).unwrap().start().unwrap()
}

/// `loadgen pusher` against `s`, quiet, writing its JSON: the exit code,
/// the output (for failure messages) and the JSON.
fn loadgen(s: &ServerHandle, name: &str, args: &[&str]) -> (i32, String, Value) {
    let json = std::env::temp_dir().join(format!(
        "loadgen-pusher-test-{}-{name}.json",
        std::process::id()
    ));
    let url = format!("ws://{}", s.local_addr());
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["pusher", "--url", &url, "--app-id", "1", "--app-key", "k"])
        .args(["--app-secret", "s", "--quiet", "--json"])
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = std::fs::read_to_string(&json)
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&json);
    (out.status.code().unwrap_or(-1), text, v)
}

fn n(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {v}"))
}

/// Nothing missing, repeated, reordered or refused; every client
/// subscribed; and what the subscribers received over the run is what
/// the API accepted times the subscribers per channel.
fn assert_clean(v: &Value, out: &str, clients: u64, per_channel: u64) {
    assert_eq!(n(v, &["errors", "total"]), 0, "{out}");
    assert_eq!(n(v, &["checks", "total"]), 0, "{out}");
    assert_eq!(n(v, &["subscribed"]), clients, "{out}");
    assert!(n(v, &["deliveries"]) > 0, "{out}");
    let accepted = n(v, &["api", "accepted"]);
    assert_eq!(accepted, n(v, &["api", "events"]), "{out}");
    assert_eq!(
        n(&v["targets"][0], &["received"]),
        accepted * per_channel,
        "{out}"
    );
    assert_eq!(
        n(v, &["latency_ns", "count"]),
        n(v, &["deliveries"]),
        "{out}"
    );
}

#[test]
fn closed_loop_delivers_every_event_once_in_order() {
    let s = gateway();
    let (code, out, v) = loadgen(
        &s,
        "closed",
        &[
            "--clients",
            "20",
            "--channels",
            "2",
            "--publishers",
            "2",
            "--in-flight",
            "2",
            "--threads",
            "1",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("deliveries/s"), "{out}");
    assert_clean(&v, &out, 20, 10);
}

#[test]
fn rate_with_private_channels_and_batches() {
    let s = gateway();
    let (code, out, v) = loadgen(
        &s,
        "rate",
        &[
            "--clients",
            "9",
            "--channels",
            "3",
            "--private",
            "--publishers",
            "2",
            "--rate",
            "600",
            "--batch",
            "3",
            "--size",
            "200",
            "--threads",
            "1",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_clean(&v, &out, 9, 3);
    // The schedule, whatever the server does: events are counted in the
    // window by their intended send time, 3 to a request.
    let events = n(&v, &["events"]);
    assert!((590..=610).contains(&events), "{events} events: {out}");
    assert_eq!(n(&v, &["requests"]) * 3, events, "{out}");
    assert_eq!(
        n(&v, &["latency_actual_ns", "count"]),
        n(&v, &["deliveries"]),
        "{out}"
    );
}

#[test]
fn refused_requests_fail_the_run() {
    let s = gateway();
    let url = format!("ws://{}", s.local_addr());
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["pusher", "--url", &url, "--app-id", "1", "--app-key", "k"])
        .args(["--app-secret", "wrong", "--quiet", "--clients", "2"])
        .args(["--duration", "300ms", "--warmup", "0s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("API answered 401"), "{text}");
}

#[test]
fn client_events_reach_every_other_subscriber() {
    let mut app = AppConfig::new("1", "k", "s");
    app.client_events = true;
    app.client_event_rate = 1000;
    let s = gateway_with(app);
    let (code, out, v) = loadgen(
        &s,
        "client-events",
        &[
            "--clients",
            "12",
            "--channels",
            "3",
            "--publishers",
            "3",
            "--client-events",
            "--rate",
            "300",
            "--threads",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("as client events"), "{out}");
    // 4 subscribers per channel, one of them the sender.
    assert_clean(&v, &out, 12, 3);
    let events = n(&v, &["events"]);
    assert!((295..=305).contains(&events), "{events} events: {out}");
    assert_eq!(n(&v, &["requests"]), 0, "{out}");
    assert_eq!(v["params"]["client_events"], true, "{out}");
}

#[test]
fn client_events_refused_by_the_server_fail_the_run() {
    // Client events are off by default: every one gets a pusher:error.
    let s = gateway();
    let (code, out, v) = loadgen(
        &s,
        "client-events-off",
        &[
            "--clients",
            "4",
            "--publishers",
            "1",
            "--client-events",
            "--rate",
            "50",
            "--duration",
            "300ms",
            "--warmup",
            "0s",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(n(&v, &["checks", "missing"]) > 0, "{out}");
    assert!(out.contains("client events"), "{out}");
}
