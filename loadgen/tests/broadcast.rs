//! `loadgen broadcast` against a broadcast server of the library's own
//! (every message to every client, the sender included, across threads):
//! every mode delivers everything exactly once, the server's counts agree
//! with loadgen's, and servers that lose or repeat deliveries are caught.

use std::process::Command;
use std::time::Duration;

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

fn loadgen(s: &ServerHandle, args: &[&str]) -> (i32, String) {
    let url = format!("ws://{}/", s.local_addr());
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["broadcast", &url, "--quiet", "--drain", "3s"])
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
