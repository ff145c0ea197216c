//! `loadgen broadcast` against a broadcast server of the library's own
//! (every message to every client, the sender included, across threads):
//! every mode delivers everything exactly once, the server's counts agree
//! with loadgen's, and servers that lose or repeat deliveries are caught;
//! with several targets, what one node's clients miss of another's
//! senders is caught too.

use std::process::Command;
use std::time::{Duration, Instant};

use ringws::app::{App, Handler, Message, Request, Socket, Upgrade};
use ringws::{Config, ServerHandle};

/// What the server does with each message besides publishing it.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Sends it back to its sender twice.
    Twice,
    /// Publishes only every other message of each sender.
    LoseHalf,
}

struct Broadcast(Fault);

impl Handler for Broadcast {
    type Data = u64;

    fn upgrade(&self, _req: &Request<'_>) -> Upgrade<u64> {
        Upgrade::accept(0)
    }

    fn open(&self, ws: &mut Socket<'_, u64>) {
        ws.subscribe("all");
    }

    fn message(&self, ws: &mut Socket<'_, u64>, msg: Message<'_>) {
        *ws.data_mut() += 1;
        if self.0 != Fault::LoseHalf || *ws.data() % 2 == 1 {
            ws.publish("all", msg);
        }
        ws.send(msg);
        if self.0 == Fault::Twice {
            ws.send(msg);
        }
    }
}

fn server(threads: usize, fault: Fault) -> ServerHandle {
    App::new(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads,
        ..Config::default()
    })
    .route("/", Broadcast(fault))
    .start()
    .unwrap()
}

fn url(s: &ServerHandle) -> String {
    format!("ws://{}/", s.local_addr())
}

fn loadgen(s: &ServerHandle, args: &[&str]) -> (i32, String) {
    loadgen_to(&[url(s)], &[&["--drain", "3s"], args].concat())
}

/// `loadgen broadcast` against `urls`, quiet: its exit code, stdout and
/// stderr.
fn loadgen_to(urls: &[String], args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("broadcast")
        .args(urls)
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The number after `label` in loadgen's table.
fn figure(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label} in\n{out}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The row of `url` in the per-target table: connections (opened/of),
/// deliveries and lost ones.
fn target_row(out: &str, url: &str) -> (String, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(url))
        .unwrap_or_else(|| panic!("no row for {url} in\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    (
        f[1].to_string(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

/// The server's counts once its workers have published their last turn.
fn settled(s: &ServerHandle, sent: u64) -> ringws::app::ServerStats {
    for _ in 0..200 {
        let st = s.stats();
        if st.messages_received >= sent && st.connections == 0 {
            return st;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    s.stats()
}

#[test]
fn rounds_deliver_every_message_to_every_client_once() {
    let s = server(2, Fault::None);
    let (code, out) = loadgen(
        &s,
        &[
            "-c",
            "30",
            "-t",
            "2",
            "--rounds",
            "--messages",
            "40",
            "-w",
            "0s",
            "-d",
            "30s",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(figure(&out, "messages sent"), 1200.0, "{out}");
    let st = settled(&s, 1200);
    assert_eq!(st.messages_received, 1200);
    // Each message to the 29 others and back to its sender.
    assert_eq!(st.messages_sent, 1200 * 30);
    assert_eq!(st.accepted, 30);
    assert!(st.writes > 0 && st.writes <= st.messages_sent, "{st:?}");
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn closed_loop_and_rate_runs_lose_nothing() {
    let s = server(2, Fault::None);
    let (code, out) = loadgen(
        &s,
        &[
            "-c",
            "20",
            "--senders",
            "5",
            "--in-flight",
            "4",
            "-w",
            "100ms",
            "-d",
            "700ms",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lost 0"), "{out}");
    assert!(figure(&out, "deliveries/s") > 0.0, "{out}");
    let (code, out) = loadgen(
        &s,
        &[
            "-c", "20", "--rate", "2000", "-s", "64", "-w", "100ms", "-d", "700ms",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("from intended send"), "{out}");
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn lost_deliveries_are_counted() {
    let s = server(1, Fault::LoseHalf);
    let (code, out) = loadgen(
        &s,
        &[
            "-c",
            "4",
            "--in-flight",
            "1",
            "--messages",
            "10",
            "-w",
            "0s",
            "-d",
            "10s",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing"), "{out}");
    assert!(!out.contains("lost 0"), "{out}");
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn repeated_deliveries_are_caught() {
    let s = server(1, Fault::Twice);
    let (code, out) = loadgen(&s, &["-c", "3", "--messages", "5", "-w", "0s", "-d", "10s"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("again, or out of order"), "{out}");
    s.shutdown(Duration::from_secs(1));
}

/// Two servers with no broker between them are two separate nodes: a
/// sender's messages reach only the clients on its own node. loadgen must
/// say so (it is what a broken broker would look like), per target too.
#[test]
fn deliveries_missing_across_nodes_are_counted() {
    let (a, b) = (server(1, Fault::None), server(1, Fault::None));
    let started = Instant::now();
    // Clients 0 and 2 on a, 1 and 3 on b; all four send 10 messages.
    let (code, out) = loadgen_to(
        &[url(&a), url(&b)],
        &[
            "-c",
            "4",
            "-t",
            "1",
            "--messages",
            "10",
            "-w",
            "0s",
            "-d",
            "500ms",
            "--drain",
            "500ms",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(figure(&out, "messages sent"), 40.0, "{out}");
    // Each client has its own node's 20 and misses the other's 20; what it
    // does get is in order (nothing "again" or "missing" mid-stream).
    assert!(out.contains("lost 80"), "{out}");
    assert!(out.contains("mismatch 0"), "{out}");
    for u in [url(&a), url(&b)] {
        assert_eq!(target_row(&out, &u), ("2/2".into(), 40, 40), "{out}");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{out}");
    for s in [a, b] {
        assert_eq!(s.stats().accepted, 2);
        s.shutdown(Duration::from_secs(1));
    }
}

/// Two URLs of one server: the clients spread over both, and everything
/// arrives exactly once, after --settle.
#[test]
fn two_targets_on_one_server_deliver_everything_once() {
    let s = server(2, Fault::None);
    let started = Instant::now();
    let (code, out) = loadgen_to(
        &[url(&s), url(&s)],
        &[
            "-c",
            "6",
            "-t",
            "2",
            "--senders",
            "4",
            "--in-flight",
            "2",
            "--messages",
            "25",
            "--settle",
            "300ms",
            "-w",
            "0s",
            "-d",
            "10s",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(started.elapsed() >= Duration::from_millis(300), "{out}");
    assert!(out.contains("lost 0"), "{out}");
    assert_eq!(figure(&out, "messages sent"), 100.0, "{out}");
    // Both rows name the same URL: the first is target 0, the second 1.
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with(&url(&s)))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    for row in rows {
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(f[1..], ["3/3", "300", "0"], "{out}");
    }
    let st = settled(&s, 100);
    assert_eq!((st.accepted, st.messages_received), (6, 100));
    s.shutdown(Duration::from_secs(1));
}

#[test]
fn targets_must_share_their_scheme() {
    let (code, out) = loadgen_to(
        &["ws://127.0.0.1:1/".into(), "wss://127.0.0.1:2/".into()],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("must share their scheme"), "{out}");
}
