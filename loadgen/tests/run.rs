//! loadgen against the real server for about a second: exit codes, counts
//! that add up, and output files that parse.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use ringws::app::{App, Echo};
use ringws::{Config, ServerHandle};

fn server() -> ServerHandle {
    echo_server(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        ..Config::default()
    })
    .unwrap()
}

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
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
    std::env::temp_dir().join(format!("loadgen-test-{}-{name}", std::process::id()))
}

#[test]
fn throughput_run_counts_add_up() {
    let s = server();
    let url = format!("ws://{}/", s.local_addr());
    let (json, hgrm) = (tmp("t.json"), tmp("t.hgrm"));
    let (code, stdout, stderr) = loadgen(&[
        &url,
        "--connections",
        "20",
        "--threads",
        "1",
        "--size",
        "100",
        "--in-flight",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--json",
        json.to_str().unwrap(),
        "--hgrm",
        hgrm.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("messages/s"), "{stdout}");
    assert!(stderr.contains("msgs/s  p99"), "progress lines: {stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &v["runs"][0];
    let messages = run["messages"].as_u64().unwrap();
    assert!(messages > 100, "{run}");
    assert_eq!(run["bytes"].as_u64().unwrap(), messages * 100);
    assert_eq!(run["latency_ns"]["count"].as_u64().unwrap(), messages);
    let rate = run["msgs_per_sec"].as_f64().unwrap();
    assert!(
        (rate - messages as f64).abs() < 1.0,
        "1 s window: {rate} vs {messages}"
    );
    assert_eq!(run["errors"]["total"].as_u64().unwrap(), 0);
    assert_eq!(run["connected"].as_u64().unwrap(), 20);
    assert_eq!(run["connect_ns"]["count"].as_u64().unwrap(), 20);
    let p = &run["latency_ns"];
    assert!(p["p50"].as_u64().unwrap() <= p["p99"].as_u64().unwrap());
    assert!(p["p99"].as_u64().unwrap() <= p["max"].as_u64().unwrap());
    assert_eq!(run["params"]["in_flight"].as_u64().unwrap(), 2);
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    let h = std::fs::read_to_string(&hgrm).unwrap();
    assert!(h.contains("Percentile") && h.contains("#[Max"), "{h}");
    s.shutdown(GRACE);
}

#[test]
fn rate_mode_holds_its_rate_and_reports_both_latencies() {
    let s = server();
    let url = format!("ws://{}/", s.local_addr());
    let json = tmp("r.json");
    let (code, stdout, stderr) = loadgen(&[
        &url,
        "-c",
        "10",
        "-t",
        "1",
        "--text",
        "--fragments",
        "3",
        "--size",
        "64",
        "--rate",
        "1000,2000",
        "-d",
        "1s",
        "-w",
        "200ms",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("from intended send") && stdout.contains("from actual send"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for (run, want) in v["runs"].as_array().unwrap().iter().zip([1000.0, 2000.0]) {
        let got = run["msgs_per_sec"].as_f64().unwrap();
        assert!(
            (got - want).abs() / want < 0.1,
            "asked {want}/s, got {got}/s"
        );
        assert_eq!(run["errors"]["total"].as_u64().unwrap(), 0, "{run}");
        assert_eq!(
            run["latency_actual_ns"]["count"],
            run["latency_ns"]["count"]
        );
    }
    s.shutdown(GRACE);
}

#[test]
fn refused_connection_exits_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stdout, stderr) = loadgen(&[
        &format!("ws://127.0.0.1:{port}"),
        "-c",
        "2",
        "-d",
        "200ms",
        "-w",
        "0s",
    ]);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("connect 2") && stdout.contains("refused"),
        "{stdout}"
    );
}

#[test]
fn non_websocket_server_shows_its_status_line() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        for s in l.incoming().take(2) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (code, stdout, stderr) = loadgen(&[
        &format!("ws://{addr}/nope"),
        "-c",
        "2",
        "-d",
        "200ms",
        "-w",
        "0s",
    ]);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("handshake 2") && stdout.contains("404 Not Found"),
        "{stdout}"
    );
    t.join().unwrap();
}

#[test]
fn bad_arguments_exit_2() {
    assert_eq!(loadgen(&["http://127.0.0.1:1"]).0, 2);
    assert_eq!(loadgen(&[]).0, 2);
    assert_eq!(loadgen(&["ws://127.0.0.1:1", "--rate", "0"]).0, 2);
}

#[test]
fn a_message_budget_sends_exactly_that_many() {
    let s = server();
    let url = format!("ws://{}/", s.local_addr());
    let json = tmp("m.json");
    let (code, stdout, stderr) = loadgen(&[
        &url,
        "-c",
        "7",
        "-t",
        "1",
        "--messages",
        "700",
        "-d",
        "30s",
        "-w",
        "0s",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &v["runs"][0];
    assert_eq!(run["messages"].as_u64().unwrap(), 700);
    // The window ended with the last echo, not after 30 s.
    let secs = run["params"]["duration_s"].as_f64().unwrap();
    assert!(secs < 10.0, "{secs}");
    let rate = run["msgs_per_sec"].as_f64().unwrap();
    assert!(
        (rate * secs - 700.0).abs() < 1.0,
        "{rate} msgs/s over {secs} s"
    );
    s.shutdown(GRACE);
}

#[test]
fn deflate_compresses_both_ways_in_both_modes_and_is_declined_cleanly() {
    use ringws::proto::deflate::Mode as DeflateMode;
    for mode in [
        DeflateMode::Shared,
        DeflateMode::Dedicated,
        DeflateMode::Off,
    ] {
        let s = echo_server(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            deflate: mode,
            ..Config::default()
        })
        .unwrap();
        let url = format!("ws://{}/", s.local_addr());
        let json = tmp(&format!("z-{mode:?}.json"));
        // Two frames per message: RSV1 on the first only, the compressed
        // payload split between them.
        let (code, stdout, stderr) = loadgen(&[
            &url,
            "-c",
            "6",
            "-t",
            "1",
            "--size",
            "512",
            "--payload",
            "json",
            "--deflate",
            "--fragments",
            "2",
            "--in-flight",
            "3",
            "--messages",
            "600",
            "-d",
            "30s",
            "-w",
            "0s",
            "--json",
            json.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{mode:?}: {stdout}\n{stderr}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let run = &v["runs"][0];
        assert_eq!(run["messages"].as_u64().unwrap(), 600, "{run}");
        let w = &run["wire"];
        let ratio =
            |wire: &str, plain: &str| w[wire].as_f64().unwrap() / w[plain].as_f64().unwrap();
        let (out, back) = (ratio("wire_out", "plain_out"), ratio("wire_in", "plain_in"));
        if mode == DeflateMode::Off {
            assert_eq!(w["deflate_declined"].as_u64().unwrap(), 6, "{run}");
            assert!(out > 1.0 && back > 1.0, "{run}");
            assert!(
                stdout.contains("deflate declined by the server on 6"),
                "{stdout}"
            );
        } else {
            assert_eq!(w["deflate_declined"].as_u64().unwrap(), 0, "{run}");
            // Price-ticker JSON compresses to well under half.
            assert!(out < 0.6 && back < 0.6, "{mode:?}: {run}");
        }
        s.shutdown(GRACE);
    }
}

/// How long a test's shutdown waits for closing handshakes.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The `ringws` binary's server: echo on every path.
fn echo_server(cfg: Config) -> Result<ServerHandle, ringws::StartError> {
    App::new(cfg).route_prefix("/", Echo).start()
}

/// wss://: loadgen's TLS client against the server's TLS, trusting a test
/// CA (`--ca`), and refusing a server its CA did not sign.
#[cfg(feature = "tls")]
#[test]
fn wss_with_a_test_ca() {
    #[path = "../../tests/common/certs.rs"]
    mod certs;
    use ringws::tls::{Tls, TlsFiles};

    let dir = certs::Dir::new("loadgen-wss");
    certs::make_ca(&dir, "ca");
    certs::make_ca(&dir, "other");
    let (cert, key) = certs::make_leaf(&dir, "ca", "leaf", &["localhost"]);
    for backend in ["io-uring", "epoll"] {
        let s = echo_server(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            backend: backend.parse().unwrap(),
            tls: Some(Tls::Files(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                sni: vec![],
            })),
            ..Config::default()
        })
        .unwrap();
        let url = format!("wss://localhost:{}/", s.local_addr().port());
        let ca = dir.path("ca.pem");
        let json = tmp(&format!("wss-{backend}.json"));
        let (code, stdout, stderr) = loadgen(&[
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "-c",
            "5",
            "-t",
            "1",
            "--size",
            "40000",
            "--messages",
            "500",
            "-d",
            "30s",
            "-w",
            "0s",
            "--backend",
            backend,
            "--json",
            json.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{backend}: {stdout}\n{stderr}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["runs"][0]["messages"].as_u64().unwrap(), 500, "{backend}");
        let other = dir.path("other.pem");
        let (code, stdout, stderr) = loadgen(&[
            &url,
            "--ca",
            other.to_str().unwrap(),
            "-c",
            "1",
            "-t",
            "1",
            "-d",
            "1s",
            "-w",
            "0s",
            "--backend",
            backend,
        ]);
        assert_ne!(
            code, 0,
            "{backend}: trusted a server of another CA\n{stdout}\n{stderr}"
        );
        s.shutdown(Duration::ZERO);
    }
}
