//! `loadgen connect` against the real server for about a second: every
//! connection started ends once (completed or one error), the handshake
//! and echo counts agree with the histograms, the rate holds, exit codes,
//! and (with TLS) full and resumed handshakes are told apart.

use std::process::Command;

use ringws::app::{App, Echo};
use ringws::{Config, ServerHandle};

fn server(cfg: Config) -> ServerHandle {
    App::new(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        ..cfg
    })
    .route_prefix("/", Echo)
    .start()
    .unwrap()
}

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("connect")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("loadgen-connect-{}-{name}", std::process::id()))
}

/// Runs with `--json` and returns the document, checking what holds for
/// every clean run.
fn run_json(args: &[&str], name: &str) -> serde_json::Value {
    let json = tmp(name);
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().unwrap()]);
    let (code, stdout, stderr) = loadgen(&all);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("handshakes/s"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap();
    assert_eq!(v["errors"]["total"].as_u64().unwrap(), 0, "{v}");
    // Every connection started ended once, cleanly.
    assert_eq!(n("started"), n("completed"), "{v}");
    assert!(n("handshakes") > 0, "{v}");
    assert_eq!(n("echoes"), n("handshakes"), "{v}");
    assert_eq!(v["upgrade_ns"]["count"].as_u64().unwrap(), n("handshakes"));
    assert_eq!(v["echo_ns"]["count"].as_u64().unwrap(), n("echoes"));
    for h in ["upgrade_ns", "echo_ns"] {
        let p = &v[h];
        assert!(p["p50"].as_u64().unwrap() <= p["p99"].as_u64().unwrap());
        assert!(p["p99"].as_u64().unwrap() <= p["max"].as_u64().unwrap());
    }
    // The echo comes after the 101.
    assert!(v["echo_ns"]["p50"].as_u64().unwrap() >= v["upgrade_ns"]["p50"].as_u64().unwrap());
    let secs = v["params"]["duration_s"].as_f64().unwrap();
    let rate = v["handshakes_per_sec"].as_f64().unwrap();
    assert!((rate * secs - n("handshakes") as f64).abs() < 1.0, "{v}");
    v
}

#[test]
fn closed_loop_counts_add_up() {
    let s = server(Config::default());
    let url = format!("ws://{}/", s.local_addr());
    for backend in ["io-uring", "epoll"] {
        let v = run_json(
            &[
                &url,
                "--concurrency",
                "8",
                "-t",
                "1",
                "-d",
                "1s",
                "-w",
                "200ms",
                "--backend",
                backend,
            ],
            &format!("closed-{backend}.json"),
        );
        assert!(v["handshakes"].as_u64().unwrap() > 20, "{backend}: {v}");
        // Plain ws://: no TLS handshake to count.
        assert_eq!(v["tls"]["full"].as_u64().unwrap(), 0);
        assert_eq!(v["tls"]["resumed"].as_u64().unwrap(), 0);
        assert_eq!(v["params"]["concurrency"].as_u64().unwrap(), 8);
    }
    s.shutdown(std::time::Duration::from_secs(2));
}

#[test]
fn rate_mode_holds_its_rate() {
    let s = server(Config::default());
    let url = format!("ws://{}/", s.local_addr());
    let v = run_json(
        &[&url, "--rate", "200", "-t", "2", "-d", "1s", "-w", "200ms"],
        "rate.json",
    );
    let got = v["handshakes_per_sec"].as_f64().unwrap();
    assert!(
        (got - 200.0).abs() / 200.0 < 0.1,
        "asked 200/s, got {got}/s"
    );
    assert_eq!(v["params"]["rate"].as_f64().unwrap(), 200.0);
    s.shutdown(std::time::Duration::from_secs(2));
}

#[test]
fn refused_connections_exit_3_and_are_counted() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let json = tmp("refused.json");
    let (code, stdout, stderr) = loadgen(&[
        &format!("ws://127.0.0.1:{port}/"),
        "--rate",
        "50",
        "-t",
        "1",
        "-d",
        "200ms",
        "-w",
        "0s",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(stdout.contains("refused"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let started = v["started"].as_u64().unwrap();
    assert!(started >= 5, "{v}");
    assert_eq!(v["errors"]["connect"].as_u64().unwrap(), started, "{v}");
    assert_eq!(v["errors"]["total"].as_u64().unwrap(), started, "{v}");
    assert_eq!(v["completed"].as_u64().unwrap(), 0);
}

#[test]
fn bad_arguments_exit_2() {
    assert_eq!(loadgen(&["http://127.0.0.1:1"]).0, 2);
    assert_eq!(loadgen(&[]).0, 2);
    assert_eq!(loadgen(&["ws://127.0.0.1:1", "--rate", "0"]).0, 2);
    assert_eq!(loadgen(&["ws://127.0.0.1:1", "--concurrency", "0"]).0, 2);
}

/// wss://: the TLS handshakes are counted full or resumed, and
/// `--no-resumption` makes every one full.
#[cfg(feature = "tls")]
#[test]
fn wss_full_and_resumed_handshakes() {
    #[path = "../../tests/common/certs.rs"]
    mod certs;
    use ringws::tls::{Tls, TlsFiles};

    let dir = certs::Dir::new("loadgen-connect");
    certs::make_ca(&dir, "ca");
    let (cert, key) = certs::make_leaf(&dir, "ca", "leaf", &["localhost"]);
    let ca = dir.path("ca.pem");
    for backend in ["io-uring", "epoll"] {
        let s = server(Config {
            backend: backend.parse().unwrap(),
            tls: Some(Tls::Files(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                sni: vec![],
            })),
            ..Config::default()
        });
        let url = format!("wss://localhost:{}/", s.local_addr().port());
        let common = [
            url.as_str(),
            "--ca",
            ca.to_str().unwrap(),
            "--concurrency",
            "2",
            "-t",
            "1",
            "-d",
            "1s",
            "-w",
            "200ms",
            "--backend",
            backend,
        ];
        let v = run_json(&common, &format!("wss-{backend}.json"));
        let (full, resumed, hs) = (
            v["tls"]["full"].as_u64().unwrap(),
            v["tls"]["resumed"].as_u64().unwrap(),
            v["handshakes"].as_u64().unwrap(),
        );
        assert_eq!(full + resumed, hs, "{backend}: {v}");
        // Each handshake leaves a ticket for a later one.
        assert!(resumed > full, "{backend}: {v}");
        assert_eq!(v["params"]["resumption"], true);

        let mut off = common.to_vec();
        off.push("--no-resumption");
        let v = run_json(&off, &format!("wss-full-{backend}.json"));
        assert_eq!(v["tls"]["resumed"].as_u64().unwrap(), 0, "{backend}: {v}");
        assert_eq!(v["tls"]["full"], v["handshakes"], "{backend}: {v}");
        assert_eq!(v["params"]["resumption"], false);
        s.shutdown(std::time::Duration::ZERO);
    }
}
