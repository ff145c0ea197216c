//! The gateway driven by the official packages: `pusher-js` (the browser
//! and Node client) and `pusher` (the Node server SDK), pinned in
//! `tests/js/package-lock.json`, which `scripts/test.sh` installs
//! (`npm ci`). `tests/js/conformance.js` runs each scenario and prints a
//! line for each. Without node or the packages the test says so and
//! passes; `RINGWS_REQUIRE_NPM=1` (scripts/test.sh sets it) makes that a
//! failure instead.

#[cfg(feature = "tls")]
#[path = "../../tests/common/certs.rs"]
mod certs;
#[path = "../../tests/common/redis.rs"]
mod redis_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringws::Config;
use ringws_gateway::{AppConfig, Gateway, GatewayConfig};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Whether node and the packages are there (or a failure when they must be).
fn npm_ready() -> bool {
    let ok = js_dir().join("node_modules/pusher-js").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = "node or the npm packages are missing (scripts/test.sh installs them)";
        assert!(std::env::var_os("RINGWS_REQUIRE_NPM").is_none(), "{msg}");
        eprintln!("skipped: {msg}");
    }
    ok
}

fn app() -> AppConfig {
    let mut a = AppConfig::new("1", "app-key", "app-secret");
    a.client_events = true;
    a.client_event_rate = 10;
    a
}

fn start(threads: usize, redis: Option<&str>) -> ringws::app::ServerHandle {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads,
        ..Config::default()
    };
    start_with(cfg, redis)
}

fn start_with(cfg: Config, redis: Option<&str>) -> ringws::app::ServerHandle {
    let mut g = GatewayConfig::new(vec![app()]);
    g.cluster_interval = Duration::from_millis(500);
    let broker = redis.map(|u| ringws::broker::Redis::new([u]).unwrap());
    let s = ringws_gateway::app(Gateway::new(g).unwrap(), cfg, broker)
        .unwrap()
        .start()
        .unwrap();
    while !s.readyz().ok {
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

/// Runs conformance.js against `port` (and `second`, only the cross-node
/// scenario), returning whether every scenario passed; its output goes to
/// the test's output.
fn run(port: u16, second: Option<u16>) -> bool {
    run_with(port, second, &[])
}

/// [`run`] with more environment variables for conformance.js.
fn run_with(port: u16, second: Option<u16>, env: &[(&str, &str)]) -> bool {
    let a = app();
    let mut cmd = Command::new("node");
    cmd.arg("conformance.js")
        .current_dir(js_dir())
        .env("GATEWAY_HOST", "127.0.0.1")
        .env("GATEWAY_PORT", port.to_string())
        .env("APP_ID", &a.id)
        .env("APP_KEY", &a.key)
        .env("APP_SECRET", &a.secret)
        .env("CLIENT_EVENT_RATE", a.client_event_rate.to_string());
    if let Some(p) = second {
        cmd.env("SECOND_PORT", p.to_string())
            .env("SCENARIOS", "cross_node");
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("node runs");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    out.status.success()
}

#[test]
fn pusher_js_and_the_server_sdk() {
    if !npm_ready() {
        return;
    }
    let s = start(2, None);
    let ok = run(s.local_addr().port(), None);
    s.shutdown(Duration::from_secs(1));
    assert!(ok, "conformance.js: some scenarios failed (above)");
}

/// Two nodes through a real redis-server: events, client events and
/// presence across them, as pusher-js and the SDK see it.
#[test]
fn pusher_js_across_two_nodes() {
    if !npm_ready() {
        return;
    }
    let Some(r) = redis_server::start(None, &[]) else {
        return;
    };
    let (a, b) = (start(2, Some(&r.url())), start(2, Some(&r.url())));
    let ok = run(a.local_addr().port(), Some(b.local_addr().port()));
    a.shutdown(Duration::from_secs(1));
    b.shutdown(Duration::from_secs(1));
    assert!(ok, "conformance.js cross_node failed (above)");
}

/// Over wss:// and https:// (a `tls` build): pusher-js and the SDK trust a
/// test CA (NODE_EXTRA_CA_CERTS), the gateway serves the certificate it
/// signed.
#[cfg(feature = "tls")]
#[test]
fn pusher_js_over_tls() {
    use ringws::tls::{Tls, TlsFiles};
    if !npm_ready() {
        return;
    }
    let dir = certs::Dir::new("gateway");
    certs::make_ca(&dir, "ca");
    let (cert, key) = certs::make_leaf(&dir, "ca", "leaf", &["localhost"]);
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        tls: Some(Tls::Files(TlsFiles {
            cert,
            key,
            sni: Vec::new(),
        })),
        ..Config::default()
    };
    let s = start_with(cfg, None);
    let ca = dir.path("ca.pem");
    let env = [
        ("GATEWAY_TLS", "1"),
        ("NODE_EXTRA_CA_CERTS", ca.to_str().unwrap()),
        (
            "SCENARIOS",
            "connect,public,private,presence,channel_queries,errors",
        ),
    ];
    let ok = run_with(s.local_addr().port(), None, &env);
    s.shutdown(Duration::from_secs(1));
    assert!(ok, "conformance.js over TLS: some scenarios failed (above)");
}
