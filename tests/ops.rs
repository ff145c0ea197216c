//! What an operator sees: `/metrics` (parsed by a real Prometheus text
//! parser and checked against known traffic), `/livez`, `/readyz`, the
//! admin listener, and draining. Every test on both backends.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use ringws::app::{App, Echo, Handler, Message, Request, Socket, Upgrade};
use ringws::{BackendKind, Config, ServerHandle};

mod common;
use common::Client;

on_both_backends!(
    metrics_follow_known_traffic,
    health_and_admin_listener,
    drain_fails_readyz_before_any_close,
    a_stuck_worker_fails_livez,
    sigterm_drains_and_sighup_keeps_connections,
    admin_routes_on_the_main_listener,
);

fn start(max_message: u64) -> ServerHandle {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        threads: 2,
        max_message_size: max_message,
        max_frame_size: max_message,
        close_timeout: Duration::from_millis(300),
        backend: common::backend(),
        ..Config::default()
    };
    App::new(cfg)
        .route("/echo", Echo)
        .start()
        .expect("server starts")
}

/// One GET to the admin listener: status and body.
fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn scrape(s: &ServerHandle) -> HashMap<String, f64> {
    let (status, body) = get(s.admin_addr().unwrap(), "/metrics");
    assert_eq!(status, 200);
    // The library user's text is the admin listener's.
    common::parse_metrics(&body)
}

/// Waits until `f` holds for a scrape (workers publish once per turn).
fn eventually(s: &ServerHandle, f: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    for _ in 0..100 {
        let m = scrape(s);
        if f(&m) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("metrics never matched: {:?}", scrape(s));
}

fn metrics_follow_known_traffic() {
    let s = start(1000);
    let before = scrape(&s);
    assert_eq!(before["ringws_messages_received_total"], 0.0);
    assert!(before.contains_key("ringws_process_resident_memory_bytes"));
    assert!(before.contains_key("ringws_loop_turns_total{worker=\"1\"}"));

    // 25 echoes on one connection, then a normal close.
    let mut c = Client::open(s.local_addr(), "/echo");
    for i in 0..25 {
        c.text(&format!("message {i}"));
        assert_eq!(c.frame().unwrap().1, format!("message {i}").into_bytes());
    }
    c.send(0x88, &1000u16.to_be_bytes());
    assert_eq!(c.frame().unwrap().0, 0x88);
    // A refused handshake: no Sec-WebSocket-Key, 400.
    let (_, head) = Client::request(s.local_addr(), "/echo", "Sec-WebSocket-Key: x\r\n");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // No such path: 404.
    let (_, head) = Client::request(s.local_addr(), "/nowhere", "");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // A message past the limit: Close 1009.
    let mut big = Client::open(s.local_addr(), "/echo");
    big.send(0x82, &[7u8; 2000]);
    let (b0, payload) = big.frame().unwrap();
    assert_eq!((b0, &payload[..2]), (0x88, &1009u16.to_be_bytes()[..]));

    let m = eventually(&s, |m| {
        m["ringws_closes_total{reason=\"normal\"}"] == 1.0
            && m["ringws_closes_total{reason=\"too_big\"}"] == 1.0
            && m["ringws_messages_received_total"] == 25.0
    });
    assert_eq!(m["ringws_messages_sent_total"], 25.0);
    assert_eq!(m["ringws_upgrades_total"], 2.0);
    assert_eq!(m["ringws_accepted_total"], 4.0);
    assert_eq!(m["ringws_handshakes_rejected_total{status=\"400\"}"], 1.0);
    assert_eq!(m["ringws_handshakes_rejected_total{status=\"404\"}"], 1.0);
    assert!(m["ringws_writes_total"] >= 25.0);
    // 25 frames of 9-10 bytes with 6-byte headers in, at least.
    assert!(m["ringws_read_bytes_total"] >= 25.0 * 15.0);
    assert!(m["ringws_written_bytes_total"] >= 25.0 * 11.0);
    assert_eq!(m["ringws_ready"], 1.0);
    s.shutdown(Duration::ZERO);
}

fn health_and_admin_listener() {
    let s = start(1 << 20);
    let admin = s.admin_addr().unwrap();
    let (status, body) = get(admin, "/livez");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get(admin, "/livez?verbose");
    assert_eq!(status, 200);
    assert!(
        body.contains("[+]worker-0 turned") && body.contains("[+]worker-1 turned"),
        "{body}"
    );
    assert!(body.ends_with("livez check passed\n"), "{body}");
    let (status, body) = get(admin, "/readyz?verbose");
    assert_eq!(status, 200);
    assert!(body.contains("[+]listening on 127.0.0.1:"), "{body}");
    assert!(body.contains("[+]not-draining ok"), "{body}");
    assert_eq!(get(admin, "/nope").0, 404);
    // The library's own answers are the listener's.
    assert!(s.livez().ok && s.readyz().ok);
    // Keep-alive: two requests on one connection.
    let mut c = TcpStream::connect(admin).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    // Methods other than GET and HEAD: 405 with Allow.
    let mut c = TcpStream::connect(admin).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 405");
    s.shutdown(Duration::ZERO);
    // The admin listener is gone with the server.
    assert!(TcpStream::connect(admin).is_err());
}

/// `ServerHandle::drain` (what SIGTERM does first): `/readyz` answers 503
/// while every connection stays open and served.
fn drain_fails_readyz_before_any_close() {
    let s = start(1 << 20);
    let mut c = Client::open(s.local_addr(), "/echo");
    s.drain();
    let (status, body) = get(s.admin_addr().unwrap(), "/readyz");
    assert_eq!(status, 503);
    assert!(body.contains("[-]not-draining"), "{body}");
    assert_eq!(get(s.admin_addr().unwrap(), "/livez").0, 200);
    c.text("still here");
    assert_eq!(c.frame().unwrap().1, b"still here");
    s.shutdown(Duration::from_secs(1));
    // Then the Close 1001.
    let (b0, payload) = c.frame().unwrap();
    assert_eq!((b0, &payload[..2]), (0x88, &1001u16.to_be_bytes()[..]));
}

/// A handler that blocks its worker when told to.
struct Blocker;

impl Handler for Blocker {
    type Data = ();
    fn upgrade(&self, _req: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }
    fn message(&self, ws: &mut Socket<'_, ()>, msg: Message<'_>) {
        if msg.as_bytes() == b"block" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        ws.send(msg);
    }
}

/// A worker whose loop does not turn within `stall_timeout` makes
/// `/livez` fail, naming it; once it turns again, `/livez` passes.
fn a_stuck_worker_fails_livez() {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        threads: 1,
        stall_timeout: Duration::from_millis(500),
        backend: common::backend(),
        ..Config::default()
    };
    let s = App::new(cfg).route("/", Blocker).start().unwrap();
    let admin = s.admin_addr().unwrap();
    assert_eq!(get(admin, "/livez").0, 200);
    let mut c = Client::open(s.local_addr(), "/");
    c.text("block");
    std::thread::sleep(Duration::from_millis(900));
    let (status, body) = get(admin, "/livez");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("[-]worker-0 stuck: no turn for"), "{body}");
    // Readiness is another question: still listening, not draining.
    assert_eq!(get(admin, "/readyz").0, 200);
    assert_eq!(c.frame().unwrap().1, b"block");
    // The loop publishes the time a turn began: once back in its wait (at
    // most a second when idle), its next turn makes it live again.
    let t = std::time::Instant::now();
    while get(admin, "/livez").0 != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "/livez never recovered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.shutdown(Duration::ZERO);
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary under SIGHUP (nothing dropped) and SIGTERM with a drain
/// delay: `/readyz` answers 503 at once while the connection is still
/// served, and the Close 1001 comes after the delay.
fn sigterm_drains_and_sighup_keeps_connections() {
    let (port, admin_port) = (free_port(), free_port());
    let backend = match common::backend() {
        BackendKind::Epoll => "epoll",
        _ => "io-uring",
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args([
            "--threads",
            "1",
            "--drain-delay",
            "700ms",
            "--backend",
            backend,
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let mut up = false;
    for _ in 0..200 {
        if TcpStream::connect(admin).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(up, "the server did not start");
    let mut c = Client::open(addr, "/");
    let signal = |sig| {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    };
    signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(100));
    c.text("after SIGHUP");
    assert_eq!(c.frame().unwrap().1, b"after SIGHUP");
    assert_eq!(get(admin, "/readyz").0, 200);
    signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    assert_eq!(get(admin, "/readyz").0, 503);
    c.text("while draining");
    assert_eq!(c.frame().unwrap().1, b"while draining");
    let (b0, payload) = c.frame().unwrap();
    assert_eq!((b0, &payload[..2]), (0x88, &1001u16.to_be_bytes()[..]));
    assert!(started.elapsed() >= Duration::from_millis(400));
    c.send(0x88, &1001u16.to_be_bytes());
    assert!(child.wait().unwrap().success());
}

/// `App::admin_routes`: the three endpoints beside the WebSocket routes on
/// the main listener, with no admin listener.
fn admin_routes_on_the_main_listener() {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        backend: common::backend(),
        ..Config::default()
    };
    // With families of the application's own, parsed with ringws's.
    let s = App::new(cfg)
        .route("/echo", Echo)
        .admin_routes()
        .metrics(|e| {
            use ringws::metrics::MetricType;
            e.family(
                "app_widgets_total",
                "Widgets \"made\".",
                MetricType::Counter,
            );
            e.sample("app_widgets_total", &[("kind", "a\"b")], 7u64);
            e.family("app_ratio", "A ratio.", MetricType::Gauge);
            e.sample("app_ratio", &[], 0.25f64);
        })
        .start()
        .unwrap();
    assert_eq!(s.admin_addr(), None);
    let mut c = Client::open(s.local_addr(), "/echo");
    c.text("hello");
    assert_eq!(c.frame().unwrap().1, b"hello");
    let m = loop {
        let (status, body) = get(s.local_addr(), "/metrics");
        assert_eq!(status, 200);
        let m = common::parse_metrics(&body);
        if m["ringws_messages_received_total"] == 1.0 {
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(m["ringws_upgrades_total"], 1.0);
    assert_eq!(m["app_widgets_total{kind=\"a\\\"b\"}"], 7.0, "{m:?}");
    assert_eq!(m["app_ratio"], 0.25);
    assert_eq!(get(s.local_addr(), "/livez"), (200, "ok\n".to_owned()));
    assert_eq!(get(s.local_addr(), "/readyz").0, 200);
    s.shutdown(Duration::ZERO);
}
